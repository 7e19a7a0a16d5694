//! `mpc-pipe netcheck`: configured against measured bandwidth and latency of each link
//! profile. (Filled in by the networking work.)

use clap::Args;

use crate::error::{Error, Result};

#[derive(Args, Debug, Default)]
pub struct NetcheckArgs {
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
}

pub fn run(_a: &NetcheckArgs) -> Result<()> {
    Err(Error::Config(
        "mpc-pipe netcheck is not available in this build yet".into(),
    ))
}
