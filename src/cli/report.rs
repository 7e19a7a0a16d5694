//! `mpc-pipe report RESULTS.csv... --out DIR`: the paper's tables and figures from
//! benchmark CSVs, as DIR/report.md with SVG figures in DIR/figures/. Depends on report.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Bench CSVs (other CSVs are listed and skipped) and bench trace files
    /// (trace-<configuration>--<scheme>.json); traces beside the CSVs, or in a traces/
    /// folder there, are found without being named.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory to write report.md and figures/ into (created if missing; its figures/
    /// folder and report.md are replaced, nothing else in it is touched).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let command = format!(
        "mpc-pipe report {} --out {}",
        a.inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        a.out.display()
    );
    let r = crate::report::render(&a.inputs, &a.out, &command)?;
    println!(
        "wrote {} ({} tables, {} figures, {} warnings) in {:.2} s",
        r.report.display(),
        r.tables,
        r.figures.len(),
        r.warnings,
        t0.elapsed().as_secs_f64()
    );
    for f in &r.figures {
        println!("  {}", f.display());
    }
    Ok(())
}
