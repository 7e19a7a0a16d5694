// The commit id of a checkout, shared by `bench` (at run time) and build.rs (at build time,
// through `include!`, hence std only and no inner doc comment).

/// Short commit id of the checkout at `dir`, with `-dirty` when its tracked sources differ
/// from that commit. Only what builds the binary counts as a source (src/, benches/,
/// Cargo.toml, Cargo.lock): a sweep appends to results/ as it runs, and notes or configs do
/// not change what is measured. "unknown" outside a git checkout.
pub fn commit_id_of(dir: &std::path::Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(id) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let status = [
        &["status", "--porcelain", "--untracked-files=no", "--"][..],
        &COMMIT_SOURCES,
    ]
    .concat();
    match git(&status) {
        Some(changed) if !changed.is_empty() => format!("{id}-dirty"),
        _ => id,
    }
}

/// The paths whose changes make a build differ from its commit.
pub const COMMIT_SOURCES: [&str; 4] = ["src", "benches", "Cargo.toml", "Cargo.lock"];
