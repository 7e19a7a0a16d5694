//! `mpc-pipe offline`: dry-run a job to record its plan, deal the material, and write one
//! file per party (`DIR/party<i>.mat`, see offline::file for the format). The online phase
//! (`mpc-pipe run --material DIR`) refuses files of another session, party or plan, and
//! files whose MAC under the session key does not verify (`--key-file`, created with a
//! fresh key when missing; see cli::key). Depends on runtime, offline, cli::{args, key}.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::JobArgs;
use super::key::KeyArgs;
use crate::error::{Error, Result};
use crate::offline::{deal_seeded, file};
use crate::runtime::job;
use crate::runtime::local::fresh_session;
use crate::runtime::{record_plan, SessionConfig};

#[derive(Args, Debug)]
pub struct OfflineArgs {
    /// Directory to write party<i>.mat into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of computing parties, 2..=8.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    #[command(flatten)]
    pub job: JobArgs,
    /// The session key the files are MACed with (`--key-file` is created with a fresh key
    /// if it does not exist); the online phase needs the same key.
    #[command(flatten)]
    pub key: KeyArgs,
}

pub fn run(a: &OfflineArgs) -> Result<()> {
    let spec = a.job.spec(a.parties)?;
    let cfg = SessionConfig {
        parties: a.parties,
        fixed: a.job.fixed(a.parties)?,
        timeout: std::time::Duration::from_secs(60),
        dealer_seed: spec.dealer_seed,
    };
    cfg.check()?;
    let key = a
        .key
        .get_or_create("mpc-pipe offline (the files are MACed with it)")?;
    let mac_key = file::MaterialKey::from_session_key(&key.0);
    let job = job::build(&spec)?;
    let t0 = Instant::now();
    let plan = record_plan(&cfg, &*job.plan_program)?;
    let session = fresh_session();
    let material = deal_seeded(&plan, cfg.parties, session, cfg.dealer_seed);
    std::fs::create_dir_all(&a.out)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", a.out.display())))?;
    for m in &material {
        file::save(m, &file::party_file(&a.out, m.party), &mac_key)?;
    }
    let hash: String = plan
        .hash()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "session {session:#018x}  plan {hash}...  requests {}  parties {}  wrote {}/party0..{}.mat in {:.2}s",
        plan.entries.len(),
        cfg.parties,
        a.out.display(),
        cfg.parties - 1,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
