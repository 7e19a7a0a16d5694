//! Build script: records which commit the binary is built from, so the `commit` column of
//! bench and train CSVs names the build, not whatever the checkout holds when the binary
//! runs (a binary kept and run after the checkout moved on reported the new HEAD).
//! Depends on git being on PATH at build time; without it (a source tarball) the binary
//! falls back to asking at run time (`bench::commit_id`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // What the id depends on: the sources (as `bench::commit_id_of` counts them), and where
    // git keeps HEAD, the branch it names and the index (a worktree has its own).
    let sources = ["src", "benches", "Cargo.toml", "Cargo.lock"];
    for p in sources {
        println!("cargo:rerun-if-changed={p}");
    }
    let Some(id) = git(&["rev-parse", "--short", "HEAD"]) else {
        return;
    };
    for p in ["HEAD", "index"] {
        if let Some(path) = git(&["rev-parse", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let status = [
        &["status", "--porcelain", "--untracked-files=no", "--"][..],
        &sources,
    ]
    .concat();
    let id = match git(&status) {
        Some(changed) if !changed.is_empty() => format!("{id}-dirty"),
        _ => id,
    };
    println!("cargo:rustc-env=MPC_PIPE_BUILD_COMMIT={id}");
}
