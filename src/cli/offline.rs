//! `mpc-pipe offline`: dry-run a model, deal its material, write one file per party.

use clap::Args;

use crate::error::{Error, Result};

#[derive(Args, Debug, Default)]
pub struct OfflineArgs {}

pub fn run(_a: &OfflineArgs) -> Result<()> {
    Err(Error::Config(
        "mpc-pipe offline is not available in this build yet".into(),
    ))
}
