//! `mpc-pipe party`: run one party of a job over TCP, as one process of a multi-process or
//! multi-host session. Prints one `mpc-pipe-result ...` line on stdout; exits non-zero with
//! an error naming the peer and the operation when a peer fails, disconnects or stays
//! silent past --timeout-s.
//!
//! The session key comes from --key-file, or the MPC_PIPE_SESSION_KEY environment variable,
//! or --key (visible to other users in the process list; for quick manual runs only); see
//! cli::key. With --material it also checks the files' MACs.

use clap::Args;
use std::path::PathBuf;

use super::args::{JobArgs, LinkArgs};
use super::key::KeyArgs;

use crate::error::{Error, Result};
use crate::runtime::job;
use crate::runtime::process::{
    blame_line, format_result, run_party, ChildInput, PartiesFile, PartyConfig, PartyJob,
    ECHO_JOB_ENV,
};
use crate::transport::SessionKey;

#[derive(Args, Debug)]
pub struct PartyArgs {
    /// This party's id (0-based; party 0 deals the offline material).
    #[arg(long)]
    pub id: usize,
    /// TOML file listing every party's address ([[party]] id = 0, addr = "host:port").
    #[arg(long, required_unless_present = "job_stdin")]
    pub parties: Option<PathBuf>,
    /// Session id (hex), the same at every party.
    #[arg(long)]
    pub session: String,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub job: JobArgs,
    /// Bound on connection setup and on any single wait for a peer, in seconds.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true)]
    pub timeout_s: f64,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Load this party's offline material from `mpc-pipe offline` files in this directory
    /// (default: party 0 deals and sends each party its material at setup).
    #[arg(long)]
    pub material: Option<PathBuf>,
    /// Fault injection for tests: sleep this many seconds before the online phase.
    #[arg(long, hide = true, allow_negative_numbers = true)]
    pub debug_stall_s: Option<f64>,
    /// Most MiB a peer may have sent that no one has asked for yet (messages it posts
    /// ahead); past it the peer is dropped with an error naming it.
    #[arg(long, default_value_t = crate::transport::tcp::DEFAULT_INBOX_CAP_MIB)]
    pub inbox_cap_mib: u64,
    /// Send frames in clear instead of sealed (AEGIS-256X4): for measuring what the secure
    /// channels cost only; every party of the session must give it.
    #[arg(long)]
    pub insecure_plaintext_channels: bool,
    /// Internal (`run`, `infer` and `train --processes`): read the whole job, as JSON,
    /// from standard input; the job, link, timeout and material options are then not used.
    #[arg(long, hide = true)]
    pub job_stdin: bool,
}

fn session_key(a: &PartyArgs) -> Result<SessionKey> {
    a.key.require("a party")
}

/// The addresses and the job this party runs: from stdin (`--job-stdin`, as
/// `run --processes` starts its children), or from --parties and the job, link and timeout
/// options.
fn addrs_and_job(a: &PartyArgs) -> Result<(Vec<std::net::SocketAddr>, PartyJob)> {
    if a.job_stdin {
        die_with_parent();
        let input = ChildInput::from_stdin()?;
        let addrs = input.parties.addrs()?;
        if input.job.spec.parties != addrs.len() {
            return Err(Error::Config(format!(
                "the job is for {} parties but {} addresses came with it",
                input.job.spec.parties,
                addrs.len()
            )));
        }
        return Ok((addrs, input.job));
    }
    let file = a.parties.as_ref().ok_or_else(|| {
        Error::Config("--parties is required (a TOML file of every party's address)".into())
    })?;
    let addrs = PartiesFile::load(file)?.addrs()?;
    let parties = addrs.len();
    let job = PartyJob {
        spec: a.job.spec(parties)?,
        fixed: a.job.fixed(parties)?,
        timeout_s: a.timeout_s,
        link: a.link.profile()?,
        material_dir: a.material.clone(),
        inbox_cap_mib: a.inbox_cap_mib,
        plaintext_channels: a.insecure_plaintext_channels,
    };
    job.check()?;
    Ok((addrs, job))
}

/// A child of `run --processes` (`--job-stdin`) ends with its parent: killed, the parent
/// could not stop its parties, which would run on as orphans until their timeouts.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_PDEATHSIG only sets the signal this process gets when its parent dies.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

/// With `ECHO_JOB_ENV` set, write the job as `<dir>/party<id>.json`.
fn echo_job(id: usize, job: &PartyJob) -> Result<()> {
    if let Some(dir) = std::env::var_os(ECHO_JOB_ENV) {
        let path = std::path::Path::new(&dir).join(format!("party{id}.json"));
        std::fs::write(&path, job.to_json())
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

pub fn run(a: &PartyArgs) -> Result<()> {
    let r = run_party_args(a);
    // For `run --processes`, which reports the party that failed first.
    if let (Err(e), true) = (&r, a.job_stdin) {
        eprintln!("{}", blame_line(e, a.id));
    }
    r
}

fn run_party_args(a: &PartyArgs) -> Result<()> {
    let session = u64::from_str_radix(a.session.trim_start_matches("0x"), 16)
        .map_err(|_| Error::Config(format!("--session '{}' is not a hex number", a.session)))?;
    let (addrs, pjob) = addrs_and_job(a)?;
    echo_job(a.id, &pjob)?;
    let mut cfg = PartyConfig::from_job(a.id, addrs, session, session_key(a)?, &pjob)?;
    cfg.stall_before_online = a
        .debug_stall_s
        .map(|s| crate::error::seconds_option("--debug-stall-s", s, true))
        .transpose()?;
    if pjob.spec.train.is_some() {
        // `train --processes`: the whole training run, many sessions over one connection.
        if pjob.material_dir.is_some() {
            return Err(Error::Config(
                "a training job deals fresh material for every epoch; --material is not for it"
                    .into(),
            ));
        }
        return super::train::run_party(&cfg, &pjob);
    }
    let job = job::build_at(&pjob.spec, Some(a.id))?;
    let out = run_party(&cfg, &job)?;
    println!("{}", format_result(a.id, &out));
    Ok(())
}
