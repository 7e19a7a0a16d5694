//! Build script: records which commit the binary is built from, so the `commit` column of
//! bench and train CSVs names the build, not whatever the checkout holds when the binary
//! runs (a binary kept and run after the checkout moved on reported the new HEAD).
//! Depends on git being on PATH at build time; without it (a source tarball) the binary
//! falls back to asking at run time (`bench::commit_id`).

use std::process::Command;

// `commit_id_of` and `COMMIT_SOURCES`: the same code `bench` runs.
include!("src/bench/commit.rs");

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
    // What the id depends on: the sources, and where git keeps HEAD, the branch it names
    // and the index (a worktree has its own).
    for p in COMMIT_SOURCES {
        println!("cargo:rerun-if-changed={p}");
    }
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
    let id = commit_id_of(std::path::Path::new("."));
    if id != "unknown" {
        println!("cargo:rustc-env=MPC_PIPE_BUILD_COMMIT={id}");
    }
}
