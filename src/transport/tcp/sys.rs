//! Socket syscalls std does not offer (receive into uninitialised memory, kernel receive
//! stamps, socket options) and the allocator tuning for message buffers. Depends on libc
//! only; every `unsafe` block of the TCP transport is here.

use std::io;
use std::net::TcpStream;

/// Keep message buffers in the process heap (glibc): every message is a fresh `Vec`, and by
/// default glibc serves multi-MiB ones with mmap and returns them with munmap, so each
/// message costs page faults on receipt and a TLB flush on free (expensive IPIs in a VM).
/// Measured with `netcheck --tcp-throughput` (1 GiB in 4 MiB messages, 2 shared vCPUs): our
/// median time went from 0.58-0.81 s to 0.40-0.47 s, a plain socket copy taking 0.33-0.48 s.
/// Process-wide, so called once by the binary's `main`, not by the library. The same
/// change made an in-process ResNet inference (resnet_cifar-tiny, batch 8) 2.9x faster.
///
/// The top pad does the same for the per-thread arenas of pipeline lanes: glibc grows them
/// in 64 MiB heaps and unmaps a heap as soon as it is all free, unless what would be left
/// is under the pad, so lanes whose buffers came and went mapped and faulted in fresh
/// heaps all the time. With a pad of a whole heap none is unmapped: inter-batch on
/// `balanced` (m 8) took 140k page faults instead of 0.5-0.8M, and its slowest party's
/// busy time fell 15-20% (`perf stat`, alternating runs). Peak RSS did not change.
///
/// One arena: glibc gives each thread an arena of 64 MiB heaps, and a block larger than a
/// heap (a full-size model's activations, bit decompositions and weight masks are 0.1 to
/// 1 GB) is mmapped outside the threshold and unmapped on free, whatever the threshold, so
/// every such block of a party thread or rayon worker was faulted in afresh. With every
/// thread on the main arena they come from the one heap and are reused. A 2-party VGG16
/// (`run --model W7`, back to back under the same background load) took 4.5 s of system
/// time instead of 21.5 s, 2.5M page faults instead of 5.8M, 9.2 GB peak RSS instead of
/// 11.4 GB, and 49.5 s instead of 103 s; small blocks still come from each thread's cache.
pub fn tune_allocator_for_messages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before heavy allocation
    // and before any thread has allocated.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        // -1, not i32::MAX: the threshold is a byte count, and i32::MAX (2 GiB) still let
        // glibc give back the top of a heap that a full-size model's repetition had freed
        // (bench: every VGG16 repetition faulted its memory in afresh, 1.5M faults each).
        // -1 turns trimming off (mallopt(3)).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        // `MPC_PIPE_MALLOC_ARENAS=N` (N > 1) gives threads arenas of their own again, to
        // measure what the one arena changes.
        let arenas = std::env::var("MPC_PIPE_MALLOC_ARENAS")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(1);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// `recv` into uninitialised memory (std's `Read` wants initialised buffers, which would
/// cost a memset of every message before the kernel overwrites it).
pub(super) fn recv_uninit(
    s: &mio::net::TcpStream,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the pointer and length describe writable memory we own; recv writes at most
    // `len` bytes and reports how many.
    let r = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Ask the kernel to stamp received data with its arrival time (read back by
/// `recv_stamped`). Only shaped sessions use it: it is what the emulated link's clock starts
/// from, and it costs a cmsg per read.
pub(super) fn enable_rx_stamps(s: &TcpStream) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return set_int_option(s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = s;
        Ok(())
    }
}

/// setsockopt with an int value.
#[cfg(target_os = "linux")]
fn set_int_option(
    s: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and an int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Most bytes a socket holds that the kernel has not sent yet (`TCP_NOTSENT_LOWAT`).
const NOTSENT_LOWAT_BYTES: libc::c_int = 128 << 10;

/// Keep the kernel from queueing more than `NOTSENT_LOWAT_BYTES` of unsent data per socket.
/// Our send queues give ordinary messages priority over bulk ones, but only for what is
/// still ours: on a slow real link, an autotuned send buffer full of bulk fragments would
/// sit between an urgent message and the wire (4 MB are 80 ms at 400 Mbit/s). With the cap
/// an urgent message queues behind at most about this much (2.6 ms at 400 Mbit/s). It does
/// not limit data in flight (sent, not yet acknowledged), so the window, and with it the
/// throughput of large messages, is unchanged; it only makes the I/O thread refill the
/// socket in smaller steps (the 12 MB loopback test took the same time without it).
pub(super) fn limit_unsent(s: &TcpStream) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return set_int_option(
        s,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT_BYTES,
    );
    #[cfg(not(target_os = "linux"))]
    {
        let _ = s;
        Ok(())
    }
}

/// Bound on how far before the read a kernel receive stamp may move a message's start on
/// the emulated link. Stamps are on the wall clock, so a clock step between arrival and read
/// could otherwise move it arbitrarily (and make a message early); an I/O thread that
/// really is this far behind is rare, and the message is then only late, never early.
const MAX_STAMP_AGE_NS: u64 = 50_000_000;

/// As `recv_uninit`, and the emulator time at which the data reached the socket, from the
/// kernel's receive stamp (`t_read`, the emulator time just before the call, when there is
/// no stamp). TCP stamps a read with the arrival of the last segment it consumed, so the
/// result is never earlier than the message's real arrival.
///
/// Why not just `t_read`: the I/O thread's own wake-up after an idle spell (tens of us to
/// over 0.1 ms on idle virtual CPUs) would be added to every emulated latency, though on a
/// real link the bytes are already there, waiting.
pub(super) fn recv_stamped(
    s: &mio::net::TcpStream,
    buf: &mut [std::mem::MaybeUninit<u8>],
    t_read: u64,
) -> io::Result<(usize, u64)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let real_read = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // u64s keep the control buffer aligned for cmsghdr.
        let mut ctrl = [0u64; 16];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: iov describes writable memory we own, the control buffer is ours and its
        // length is given; recvmsg writes at most those lengths.
        let r = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut arrived = t_read;
        // SAFETY: walking the control messages the kernel wrote, with the libc macros.
        unsafe {
            let mut cm = libc::CMSG_FIRSTHDR(&msg);
            while !cm.is_null() {
                if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cm) as *const libc::timespec);
                    let stamp = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                    let age = real_read.saturating_sub(stamp).min(MAX_STAMP_AGE_NS);
                    arrived = t_read.saturating_sub(age);
                }
                cm = libc::CMSG_NXTHDR(&msg, cm);
            }
        }
        Ok((r as usize, arrived))
    }
    #[cfg(not(target_os = "linux"))]
    recv_uninit(s, buf).map(|n| (n, t_read))
}
