//! `mpc-pipe run`: private inference of a built-in model, all parties in this process.
//! Prints the decoded MPC output beside the plaintext output, `max_abs_err: <value>`,
//! `output_sha256: <hex>` (of the revealed output's f64 bits), and each party's online
//! time, bytes, messages and rounds. With `--material DIR` the offline material
//! comes from `mpc-pipe offline` files instead of an in-process dealer.
//! Depends on runtime, model, offline.

use std::path::PathBuf;

use sha2::Digest;

use clap::Args;

use super::args::{JobArgs, LinkArgs};
use super::key::KeyArgs;

use std::time::Instant;

use crate::error::{Error, Result};
use crate::link::LinkProfile;
use crate::offline::file::{self, Expect, MaterialKey};
use crate::profile::Recorder;
use crate::ring::PlainTensor;
use crate::runtime::job::{self, Job, JobSpec};
use crate::runtime::local::{run_online_traced, Channels};
use crate::runtime::{record_plan, run_dealt, Dealing, PartyOutcome, SessionConfig};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Number of computing parties, 2..=8.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    /// Seconds a party waits for a peer before failing.
    #[arg(long, default_value_t = 120.0, allow_negative_numbers = true)]
    pub timeout_s: f64,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Write a Chrome trace event timeline (Perfetto, chrome://tracing) of the online phase.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Read offline material from this directory (written by `mpc-pipe offline`).
    #[arg(long)]
    pub material: Option<PathBuf>,
    #[command(flatten)]
    pub parties_as: super::args::ProcessArgs,
    /// With --material: the session key the files were MACed with by `mpc-pipe offline`.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Do not measure the GEMM and keystream rates after the job for the `bound:` line
    /// (about 0.1 s on 2 cores; for scripts that run many jobs or compare CPU time).
    #[arg(long)]
    pub no_bound: bool,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            job: JobArgs::default(),
            parties: 2,
            timeout_s: 120.0,
            link: LinkArgs::default(),
            trace: None,
            material: None,
            parties_as: Default::default(),
            key: KeyArgs::default(),
            no_bound: false,
        }
    }
}

impl RunArgs {
    pub fn job_spec(&self) -> Result<JobSpec> {
        self.job.spec(self.parties)
    }

    pub fn session_config(&self) -> Result<SessionConfig> {
        let fixed = self.job.fixed(self.parties)?;
        let cfg = SessionConfig {
            parties: self.parties,
            fixed,
            timeout: crate::error::seconds_option("--timeout-s", self.timeout_s, false)?,
            dealer_seed: self.job.dealer_seed,
        };
        cfg.check()?;
        Ok(cfg)
    }
}

/// Load every party's material file from `dir`, checked against this program's plan.
pub fn load_material(
    dir: &std::path::Path,
    cfg: &SessionConfig,
    job: &Job,
    key: &MaterialKey,
) -> Result<Vec<crate::offline::PartyMaterial>> {
    load_material_planned(dir, cfg, &record_plan(cfg, &*job.plan_program)?, key)
}

/// As `load_material`, with the program's plan already recorded.
pub fn load_material_planned(
    dir: &std::path::Path,
    cfg: &SessionConfig,
    plan: &crate::offline::Plan,
    key: &MaterialKey,
) -> Result<Vec<crate::offline::PartyMaterial>> {
    let mut session = None;
    (0..cfg.parties)
        .map(|party| {
            let m = file::load(
                &file::party_file(dir, party),
                &Expect {
                    session,
                    party,
                    parties: cfg.parties,
                    plan_hash: plan.hash(),
                },
                key,
            )?;
            session = Some(m.session);
            Ok(m)
        })
        .collect()
}

pub fn run(a: &RunArgs) -> Result<()> {
    a.parties_as.check(a.trace.as_deref())?;
    let spec = a.job_spec()?;
    let cfg = a.session_config()?;
    let job = job::build(&spec)?;
    let link = a.link.profile()?;
    // The whole job as a user waits for it, from the plan to the last party's output
    // (building the model and its plaintext reference is not counted).
    let t_job = Instant::now();
    let mut work = None;
    let outs = if a.parties_as.processes {
        let mut pr = crate::runtime::process::ProcessRun::new(spec.clone());
        pr.link = link.clone();
        pr.timeout = cfg.timeout;
        pr.fixed = cfg.fixed;
        pr.material_dir = a.material.clone();
        if a.material.is_some() {
            pr.key = Some(a.key.require("run --material (the files' MACs)")?);
        }
        a.parties_as.apply(&mut pr);
        crate::runtime::process::spawn_parties(&pr)?
    } else {
        let t = Instant::now();
        let plan = std::sync::Arc::new(record_plan(&cfg, &*job.plan_program)?);
        let plan_s = t.elapsed().as_secs_f64();
        let recorder = a.trace.as_ref().map(|_| Recorder::new());
        let mut outs = match &a.material {
            Some(dir) => {
                let t = Instant::now();
                let key = a.key.require("run --material (the files' MACs)")?;
                let material = load_material_planned(
                    dir,
                    &cfg,
                    &plan,
                    &MaterialKey::from_session_key(&key.0),
                )?;
                let deal_s = t.elapsed().as_secs_f64();
                drop(plan);
                let mut outs =
                    run_online_traced(&cfg, &link, material, &*job.program, recorder.as_ref())?;
                outs.iter_mut().for_each(|o| o.offline.deal_s = deal_s);
                outs
            }
            None => {
                // The dealer's unavoidable work, to set deal_s against the PRG and GEMM
                // rates `mpc-pipe kernels --prg` measures.
                let w = plan.dealer_work(cfg.parties);
                work = Some(w);
                println!(
                    "dealer_work: keystream_gb {:.3}  gmac {:.3}",
                    8.0 * w.prg_words as f64 / 1e9,
                    w.macs as f64 / 1e9
                );
                let dealing = Dealing::auto(&plan, cfg.parties)?;
                let run = run_dealt(
                    &cfg,
                    &link,
                    &plan,
                    dealing,
                    &*job.program,
                    recorder.as_ref(),
                    Channels::Memory,
                )?;
                if let Some(st) = run.stream {
                    println!(
                        "streamed: window_mb {}  peak_window_mb {:.0}  keys {}  waits {}  forced {}",
                        match dealing {
                            Dealing::Streamed { window_bytes } => window_bytes >> 20,
                            Dealing::Upfront => 0,
                        },
                        st.peak_bytes as f64 / (1u64 << 20) as f64,
                        st.dealt,
                        st.waits,
                        st.forced
                    );
                }
                run.outs
            }
        };
        if let (Some(path), Some(rec)) = (&a.trace, &recorder) {
            write_trace(path, rec)?;
        }
        for o in &mut outs {
            o.offline.plan_s = plan_s;
        }
        outs
    };
    let e2e_s = t_job.elapsed().as_secs_f64();
    report(
        &spec,
        &cfg,
        &job.reference,
        &outs,
        a.material.is_some(),
        &link,
    )?;
    print_phases(&outs, e2e_s);
    if a.material.is_none() && !a.no_bound {
        // The floor of the whole job (untimed): a party process's plan is not here, so it
        // is recorded again (a dry run costs milliseconds).
        let w = match work {
            Some(w) => w,
            None => record_plan(&cfg, &*job.plan_program)?.dealer_work(cfg.parties),
        };
        println!(
            "{}",
            crate::bench::bound::Bound::measure(w, cfg.parties).line(e2e_s)
        );
    }
    Ok(())
}

/// Write `rec`'s timeline to `path` as Chrome trace events (`--trace`).
pub fn write_trace(path: &std::path::Path, rec: &Recorder) -> Result<()> {
    let f = std::fs::File::create(path)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", path.display())))?;
    rec.write_chrome_trace(&mut std::io::BufWriter::new(f))?;
    eprintln!(
        "timeline of {} waits written to {}",
        rec.len(),
        path.display()
    );
    Ok(())
}

/// The whole job's phases: each the slowest party's, since every party waits for the
/// slowest before its online phase can end.
pub fn print_phases<T>(outs: &[PartyOutcome<T>], e2e_s: f64) {
    let max = |f: &dyn Fn(&PartyOutcome<T>) -> f64| outs.iter().map(f).fold(0.0, f64::max);
    println!(
        "phases: plan_s {:.4}  deal_s {:.4}  expand_s {:.4}  online_s {:.4}  e2e_s {:.4}",
        max(&|o| o.offline.plan_s),
        max(&|o| o.offline.deal_s),
        max(&|o| o.offline.expand_s),
        max(&|o| o.online_s),
        e2e_s
    );
}

/// The first values of a row (a workload such as W2 has rows of 2^20 values, and formatting
/// them all took longer than the job).
fn fmt_row(v: &[f64]) -> String {
    const SHOWN: usize = 10;
    let mut s = v
        .iter()
        .take(SHOWN)
        .map(|x| format!("{x:>9.4}"))
        .collect::<Vec<_>>()
        .join(" ");
    if v.len() > SHOWN {
        s.push_str(&format!(" ... ({} values)", v.len()));
    }
    s
}

/// Print the run's outputs, error and per-party counters.
pub fn report(
    spec: &JobSpec,
    cfg: &SessionConfig,
    reference: &PlainTensor,
    outs: &[PartyOutcome<PlainTensor>],
    from_files: bool,
    link: &LinkProfile,
) -> Result<()> {
    let out = &outs[0].value;
    let net = match link.bandwidth_mbps {
        Some(bw) => format!("{} ({bw} Mbit/s, {} ms)", link.name, link.latency_ms),
        None if link.latency_ms > 0.0 => {
            format!("{} (unlimited, {} ms)", link.name, link.latency_ms)
        }
        None => format!("{} (unshaped)", link.name),
    };
    println!(
        "model {}  parties {}  batch {}  weights {:?}  scheme {} (k {}, m {})  network {net}  material {}  trunc {}  protocols {}",
        spec.model,
        spec.parties,
        spec.batch,
        spec.weights,
        spec.schedule.scheme,
        spec.schedule.chunks,
        spec.schedule.batches_in_flight,
        if from_files {
            "from files"
        } else {
            "in-process dealer"
        },
        cfg.fixed.trunc_for(cfg.parties)?,
        cfg.fixed.protocols
    );
    let cols = *out.shape().last().unwrap_or(&1);
    for (i, (m, p)) in out
        .data()
        .chunks(cols)
        .zip(reference.data().chunks(cols))
        .enumerate()
        .take(8)
    {
        println!("sample {i} mpc:       {}", fmt_row(m));
        println!("sample {i} plaintext: {}", fmt_row(p));
    }
    println!("max_abs_err: {:.6e}", out.max_abs_diff(reference));
    // The revealed output's exact bits, so runs can be compared for bit-identity (same
    // --dealer-seed, any scheme, lane mode or transport) without printing 17 digits.
    let mut h = sha2::Sha256::new();
    out.data()
        .iter()
        .for_each(|v| h.update(v.to_bits().to_le_bytes()));
    let digest: [u8; 32] = h.finalize().into();
    println!(
        "output_sha256: {}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    for (i, o) in outs.iter().enumerate() {
        println!(
            "party {i}: online_s {:.4}  bytes_sent {}  bytes_recv {}  messages {}  rounds {}  wait_s {:.4}",
            o.online_s,
            o.stats.bytes_sent(),
            o.stats.bytes_recv(),
            o.stats.msgs_sent(),
            o.stats.rounds,
            o.stats.wait_ns() as f64 * 1e-9
        );
    }
    Ok(())
}
