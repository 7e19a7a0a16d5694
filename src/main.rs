//! The `mpc-pipe` binary: parse arguments, run, map errors to a message and exit code.

use clap::Parser;

/// Large blocks get transparent huge pages (see `mpc_pipe::alloc`).
#[global_allocator]
static ALLOC: mpc_pipe::alloc::HugePages = mpc_pipe::alloc::HugePages;

fn main() {
    mpc_pipe::alloc::configure();
    // Exit quietly when stdout is a closed pipe (`mpc-pipe run | head`), as Unix tools do,
    // instead of panicking in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default SIGPIPE disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if std::env::var_os("MPC_PIPE_HUGEPAGES").is_some_and(|v| v == "1") {
        mpc_pipe::alloc::set_enabled(true);
    }
    let cli = mpc_pipe::cli::Cli::parse();
    // Every protocol round allocates multi-MiB message and tensor buffers; keep them in the
    // heap instead of mmap/munmap per buffer (see tune_allocator_for_messages).
    mpc_pipe::transport::tcp::tune_allocator_for_messages();
    // Every process of a job must block large layers alike (sched::linear).
    let run = mpc_pipe::sched::block_bytes_from_env().and_then(|()| mpc_pipe::cli::main_with(cli));
    if let Err(e) = run {
        eprintln!("mpc-pipe: error: {e}");
        std::process::exit(match e {
            mpc_pipe::Error::Config(_) => 2,
            _ => 1,
        });
    }
}
