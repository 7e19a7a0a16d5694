//! Command-line interface (clap derive): one file per subcommand. Depends on everything
//! below it; nothing depends on it.

pub mod args;
pub mod bench;
pub mod costs;
pub mod infer;
pub mod kernels;
pub mod key;
pub mod netcheck;
pub mod offline;
pub mod party;
pub mod report;
pub mod run;
pub mod train;

use clap::{Parser, Subcommand};

use crate::error::Result;

/// mpc-pipe: secret-sharing MPC inference on CPUs with pipelined compute/communication.
#[derive(Parser, Debug)]
#[command(name = "mpc-pipe", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a private inference (default: a small CNN, 2 parties in one process).
    Run(run::RunArgs),
    /// Private inference of an ONNX model on an .npy input; the output to an .npy.
    Infer(infer::InferArgs),
    /// Record a program's plan and write each party's offline material to files.
    Offline(offline::OfflineArgs),
    /// Measure the u64 GEMM kernels against the register bound and f64 dgemm.
    Kernels(kernels::KernelsArgs),
    /// Run a benchmark matrix and write CSV rows for every scheme.
    Bench(bench::BenchArgs),
    /// Rounds and words per element of every protocol, from the engine's counters.
    Costs(costs::CostsArgs),
    /// Configured against measured bandwidth and latency of each link profile.
    Netcheck(netcheck::NetcheckArgs),
    /// Run one party of a job over TCP (one process of a multi-process session).
    Party(party::PartyArgs),
    /// Tables and SVG figures (report.md) from benchmark CSVs and traces.
    Report(report::ReportArgs),
    /// Secure training (SGD) of a model on the digits or synthetic data, per-epoch loss
    /// and test accuracy to the model owner (default: a small CNN, 2 parties in-process).
    Train(train::TrainArgs),
}

/// Parse arguments and run; `mpc-pipe` with no subcommand runs the quick benchmark matrix.
pub fn main_with(cli: Cli) -> Result<()> {
    match cli.command {
        None => bench::run_default(),
        Some(Command::Run(a)) => run::run(&a),
        Some(Command::Infer(a)) => infer::run(&a),
        Some(Command::Offline(a)) => offline::run(&a),
        Some(Command::Kernels(a)) => kernels::run(&a),
        Some(Command::Costs(a)) => costs::run(&a),
        Some(Command::Bench(a)) => bench::run(&a),
        Some(Command::Netcheck(a)) => netcheck::run(&a),
        Some(Command::Party(a)) => party::run(&a),
        Some(Command::Report(a)) => report::run(&a),
        Some(Command::Train(a)) => train::run(&a),
    }
}
