//! `mpc-pipe bench --config FILE [--out FILE.csv]`: run a benchmark matrix, append one CSV
//! row per (configuration, scheme), resume an interrupted sweep, print a summary of each
//! scheme's gain over serial; `--trace-dir DIR` keeps a timeline per row. Depends on bench.

use std::path::PathBuf;

use clap::Args;

use crate::bench::{print_summary, run_matrix, run_matrix_traced, BenchConfig};
use crate::error::Result;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Matrix to run (see bench-configs/).
    #[arg(long, default_value = "bench-configs/quick.toml")]
    pub config: PathBuf,
    /// CSV to append to (resumes: rows already there are skipped).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep one timeline (Chrome trace JSON) per measured row in this directory, from an
    /// extra untimed repetition; overrides the config's `trace_dir`.
    #[arg(long)]
    pub trace_dir: Option<PathBuf>,
}

/// The quick matrix, embedded so the default job runs from any directory.
pub const QUICK_TOML: &str = include_str!("../../bench-configs/quick.toml");

/// `mpc-pipe` with no subcommand: the quick matrix into a fresh CSV, then the summary of
/// each scheme's gain over serial.
pub fn run_default() -> Result<()> {
    let cfg = BenchConfig::parse(QUICK_TOML)
        .map_err(|e| crate::error::Error::Config(format!("embedded quick.toml: {e}")))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = std::env::temp_dir().join(format!("mpc-pipe-quick-{stamp}.csv"));
    eprintln!("mpc-pipe: running the quick benchmark matrix (bench-configs/quick.toml); `mpc-pipe run` runs one inference");
    let rows = run_matrix(&cfg, &out)?;
    print_summary(&rows, &mut std::io::stdout().lock())?;
    println!("rows in {}", out.display());
    Ok(())
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let cfg = BenchConfig::load(&a.config)?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bench".into());
        PathBuf::from(format!("results/{stem}.csv"))
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let rows = run_matrix_traced(&cfg, &out, a.trace_dir.as_deref())?;
    print_summary(&rows, &mut std::io::stdout().lock())?;
    println!("rows in {}", out.display());
    Ok(())
}
