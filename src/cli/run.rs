//! `mpc-pipe run`: private inference of a built-in model.

use clap::Args;

use crate::error::Result;

#[derive(Args, Debug, Default)]
pub struct RunArgs {}

pub fn run(_a: &RunArgs) -> Result<()> {
    Ok(())
}
