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

use crate::error::{Error, Result};
use crate::ring::FixedPoint;
use crate::runtime::job::{self, JobSpec};
use crate::runtime::process::{format_result, run_party, PartiesFile, PartyConfig, KEY_ENV};
use crate::transport::{LinkProfile, SessionKey};

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
    /// Program to run.
    #[arg(long, default_value = "selftest")]
    pub model: String,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Who knows the weights: private or public.
    #[arg(long, default_value = "private")]
    pub weights: String,
    /// Seed of the synthetic weights and input (the same at every party).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pipeline scheme (as `mpc-pipe run --scheme`).
    #[arg(long, default_value = "serial")]
    pub scheme: String,
    /// Chunks per layer for inner-layer.
    #[arg(long, default_value_t = 2)]
    pub chunks: usize,
    /// Sequence length of a BERT model.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Micro-batches in flight for inter-batch.
    #[arg(long, default_value_t = 2)]
    pub batches_in_flight: usize,
    /// Bound on connection setup and on any single wait for a peer, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// Link profile to emulate on incoming links (local, lan, wan, or one of --links-file).
    #[arg(long)]
    pub link: Option<String>,
    /// TOML file of link profiles (e.g. bench-configs/links.toml).
    #[arg(long)]
    pub links_file: Option<PathBuf>,
    /// Emulated bandwidth per directed link in Mbit/s (overrides the profile).
    #[arg(long)]
    pub bandwidth_mbps: Option<f64>,
    /// Emulated one-way latency in ms (overrides the profile).
    #[arg(long)]
    pub latency_ms: Option<f64>,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = 16)]
    pub frac_bits: u32,
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
    crate::transport::tcp::tune_allocator_for_messages();
    let addrs = PartiesFile::load(&a.parties)?.addrs()?;
    let session = u64::from_str_radix(a.session.trim_start_matches("0x"), 16)
        .map_err(|_| Error::Config(format!("--session '{}' is not a hex number", a.session)))?;
    if !(a.timeout_s.is_finite() && a.timeout_s > 0.0) {
        return Err(Error::Config("--timeout-s must be positive".into()));
    }
    let link = LinkProfile::from_options(
        a.link.as_deref(),
        a.links_file.as_deref(),
        a.bandwidth_mbps,
        a.latency_ms,
    )?;
    let cfg = PartyConfig {
        id: a.id,
        session,
        key: session_key(a)?,
        timeout: Duration::from_secs_f64(a.timeout_s),
        link,
        fixed: FixedPoint::new(a.frac_bits),
        addrs,
        material_dir: a.material.clone(),
        stall_before_online: a.debug_stall_s.map(Duration::from_secs_f64),
    };
    if !(1..=40).contains(&a.frac_bits) {
        return Err(Error::Config(format!(
            "--frac-bits must be in 1..=40, got {}",
            a.frac_bits
        )));
    }
    if a.chunks == 0 || a.batches_in_flight == 0 {
        return Err(Error::Config(
            "--chunks and --batches-in-flight must be at least 1".into(),
        ));
    }
    let job = job::build(&JobSpec {
        model: a.model.clone(),
        parties: cfg.addrs.len(),
        batch: a.batch,
        weights: a.weights.parse::<crate::model::Weights>()?,
        seed: a.seed,
        schedule: crate::sched::Schedule {
            scheme: a.scheme.parse::<crate::sched::Scheme>()?,
            chunks: a.chunks,
            batches_in_flight: a.batches_in_flight,
        },
        seq_len: a.seq_len,
    })?;
    let out = run_party(&cfg, &job)?;
    println!("{}", format_result(a.id, &out));
    Ok(())
}
