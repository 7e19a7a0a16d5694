//! `mpc-pipe kernels`: GMAC/s of each kernel path against the register-only bound and
//! f64 dgemm. (Filled in by the kernels work.)

use clap::Args;

use crate::error::{Error, Result};

#[derive(Args, Debug, Default)]
pub struct KernelsArgs {
    /// Print CSV, one row per (shape, path, threads).
    #[arg(long)]
    pub csv: bool,
}

pub fn run(_a: &KernelsArgs) -> Result<()> {
    Err(Error::Config(
        "mpc-pipe kernels is not available in this build yet".into(),
    ))
}
