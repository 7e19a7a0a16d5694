//! `mpc-pipe party`: run one party of a job over TCP, as one process of a multi-process or
//! multi-host session. Prints one `mpc-pipe-result ...` line on stdout; exits non-zero with
//! an error naming the peer and the operation when a peer fails, disconnects or stays
//! silent past --timeout-s.
//!
//! The session key comes from --key-file, or the MPC_PIPE_SESSION_KEY environment variable,
//! or --key (visible to other users in the process list; for quick manual runs only).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::args::{JobArgs, LinkArgs};

use crate::error::{Error, Result};
use crate::runtime::job;
use crate::runtime::process::{format_result, run_party, PartiesFile, PartyConfig, KEY_ENV};
use crate::transport::SessionKey;

#[derive(Args, Debug)]
pub struct PartyArgs {
    /// This party's id (0-based; party 0 deals the offline material).
    #[arg(long)]
    pub id: usize,
    /// TOML file listing every party's address ([[party]] id = 0, addr = "host:port").
    #[arg(long)]
    pub parties: PathBuf,
    /// Session id (hex), the same at every party.
    #[arg(long)]
    pub session: String,
    /// Session key, 64 hex digits (prefer --key-file or MPC_PIPE_SESSION_KEY).
    #[arg(long)]
    pub key: Option<String>,
    /// File holding the session key as 64 hex digits.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
    /// Bound on connection setup and on any single wait for a peer, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Load this party's offline material from `mpc-pipe offline` files in this directory
    /// (default: party 0 deals and sends each party its material at setup).
    #[arg(long)]
    pub material: Option<PathBuf>,
    /// Fault injection for tests: sleep this many seconds before the online phase.
    #[arg(long, hide = true)]
    pub debug_stall_s: Option<f64>,
}

fn session_key(a: &PartyArgs) -> Result<SessionKey> {
    if let Some(f) = &a.key_file {
        let s = std::fs::read_to_string(f)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", f.display())))?;
        return SessionKey::from_hex(&s);
    }
    if let Ok(s) = std::env::var(KEY_ENV) {
        return SessionKey::from_hex(&s);
    }
    match &a.key {
        Some(s) => SessionKey::from_hex(s),
        None => Err(Error::Config(format!(
            "no session key: give --key-file, set {KEY_ENV}, or give --key"
        ))),
    }
}

pub fn run(a: &PartyArgs) -> Result<()> {
    let addrs = PartiesFile::load(&a.parties)?.addrs()?;
    let session = u64::from_str_radix(a.session.trim_start_matches("0x"), 16)
        .map_err(|_| Error::Config(format!("--session '{}' is not a hex number", a.session)))?;
    if !(a.timeout_s.is_finite() && a.timeout_s > 0.0) {
        return Err(Error::Config("--timeout-s must be positive".into()));
    }
    let link = a.link.profile()?;
    let cfg = PartyConfig {
        id: a.id,
        session,
        key: session_key(a)?,
        timeout: Duration::from_secs_f64(a.timeout_s),
        link,
        fixed: a.job.fixed(addrs.len())?,
        addrs,
        material_dir: a.material.clone(),
        stall_before_online: a.debug_stall_s.map(Duration::from_secs_f64),
    };
    let job = job::build(&a.job.spec(cfg.addrs.len())?)?;
    let out = run_party(&cfg, &job)?;
    println!("{}", format_result(a.id, &out));
    Ok(())
}
