//! `mpc-pipe offline`: dry-run a job to record its plan, deal the material, and write one
//! file per party (`DIR/party<i>.mat`, see offline::file for the format). The online phase
//! (`mpc-pipe run --material DIR`) refuses files of another session, party or plan.
//! Depends on runtime, offline, cli::args (shared job options).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::JobArgs;
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
    let job = job::build(&spec)?;
    let t0 = Instant::now();
    let plan = record_plan(&cfg, &*job.plan_program)?;
    let session = fresh_session();
    let material = deal_seeded(&plan, cfg.parties, session, cfg.dealer_seed);
    std::fs::create_dir_all(&a.out)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", a.out.display())))?;
    for m in &material {
        file::save(m, &file::party_file(&a.out, m.party))?;
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
