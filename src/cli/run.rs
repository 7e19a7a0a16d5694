//! `mpc-pipe run`: private inference of a built-in model, all parties in this process.
//! Prints the decoded MPC output beside the plaintext output, `max_abs_err: <value>`, and
//! each party's online time, bytes and rounds. With `--material DIR` the offline material
//! comes from `mpc-pipe offline` files instead of an in-process dealer.
//! Depends on runtime, model, offline.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::model::Weights;
use crate::offline::file::{self, Expect};
use crate::profile::Recorder;
use crate::ring::{FixedPoint, PlainTensor};
use crate::runtime::job::{self, Job, JobSpec};
use crate::runtime::local::fresh_session;
use crate::runtime::local::run_online_traced;
use crate::runtime::{record_plan, PartyOutcome, SessionConfig};
use crate::sched::{Schedule, Scheme};
use crate::transport::emulator::LinkProfile;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Built-in model to run (lenet; see README for the list).
    #[arg(long, default_value = "lenet")]
    pub model: String,
    /// Number of computing parties, 2..=8.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Who knows the weights: private (secret-shared by party 0) or public.
    #[arg(long, default_value = "private")]
    pub weights: String,
    /// Seed of the synthetic weights and input.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = 16)]
    pub frac_bits: u32,
    /// Seconds a party waits for a peer before failing.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_s: f64,
    /// Sequence length of a BERT model (default: 128 for bert-base, 16 for bert-small).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Pipeline scheme: serial, or inter-linear, inner-layer, inter-batch joined by '+'
    /// (e.g. inter-linear+inner-layer), or all.
    #[arg(long, default_value = "serial")]
    pub scheme: String,
    /// Chunks per layer for inner-layer (k).
    #[arg(long, default_value_t = 2)]
    pub chunks: usize,
    /// Micro-batches in flight for inter-batch (m).
    #[arg(long, default_value_t = 2)]
    pub batches_in_flight: usize,
    /// Write a Chrome trace event timeline (Perfetto, chrome://tracing) of the online phase.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Read offline material from this directory (written by `mpc-pipe offline`).
    #[arg(long)]
    pub material: Option<PathBuf>,
    /// Run every party as a child process (`mpc-pipe party`) over loopback TCP.
    #[arg(long)]
    pub processes: bool,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            model: "lenet".into(),
            parties: 2,
            batch: 1,
            weights: "private".into(),
            seed: 1,
            frac_bits: 16,
            timeout_s: 120.0,
            scheme: "serial".into(),
            chunks: 2,
            batches_in_flight: 2,
            seq_len: None,
            trace: None,
            material: None,
            processes: false,
        }
    }
}

impl RunArgs {
    pub fn job_spec(&self) -> Result<JobSpec> {
        if self.chunks == 0 || self.batches_in_flight == 0 {
            return Err(Error::Config(
                "--chunks and --batches-in-flight must be at least 1".into(),
            ));
        }
        let schedule = Schedule {
            scheme: self.scheme.parse::<Scheme>()?,
            chunks: self.chunks,
            batches_in_flight: self.batches_in_flight,
        };
        Ok(JobSpec {
            model: self.model.clone(),
            parties: self.parties,
            batch: self.batch,
            weights: self.weights.parse::<Weights>()?,
            seed: self.seed,
            schedule,
            seq_len: self.seq_len,
        })
    }

    pub fn session_config(&self) -> Result<SessionConfig> {
        if !(1..=40).contains(&self.frac_bits) {
            return Err(Error::Config(format!(
                "--frac-bits must be in 1..=40, got {}",
                self.frac_bits
            )));
        }
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return Err(Error::Config(format!(
                "--timeout-s must be positive, got {}",
                self.timeout_s
            )));
        }
        let cfg = SessionConfig {
            parties: self.parties,
            fixed: FixedPoint::new(self.frac_bits),
            timeout: Duration::from_secs_f64(self.timeout_s),
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
) -> Result<Vec<crate::offline::PartyMaterial>> {
    let plan = record_plan(cfg, &*job.program)?;
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
            )?;
            session = Some(m.session);
            Ok(m)
        })
        .collect()
}

pub fn run(a: &RunArgs) -> Result<()> {
    let spec = a.job_spec()?;
    let cfg = a.session_config()?;
    let job = job::build(&spec)?;
    if a.processes {
        let mut pr = crate::runtime::process::ProcessRun::new(spec.clone());
        pr.timeout = cfg.timeout;
        pr.fixed = cfg.fixed;
        pr.material_dir = a.material.clone();
        let outs = crate::runtime::process::spawn_parties(&pr)?;
        report(&spec, &job.reference, &outs, a.material.is_some());
        return Ok(());
    }
    let material = match &a.material {
        Some(dir) => load_material(dir, &cfg, &job)?,
        None => crate::offline::deal(
            &record_plan(&cfg, &*job.program)?,
            cfg.parties,
            fresh_session(),
        ),
    };
    let recorder = a.trace.as_ref().map(|_| Recorder::new());
    let outs = run_online_traced(
        &cfg,
        &LinkProfile::unshaped(),
        &material,
        &*job.program,
        recorder.as_ref(),
    )?;
    if let (Some(path), Some(rec)) = (&a.trace, &recorder) {
        let f = std::fs::File::create(path)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", path.display())))?;
        rec.write_chrome_trace(&mut std::io::BufWriter::new(f))?;
        eprintln!(
            "timeline of {} waits written to {}",
            rec.len(),
            path.display()
        );
    }
    report(&spec, &job.reference, &outs, a.material.is_some());
    Ok(())
}

fn fmt_row(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:>9.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Print the run's outputs, error and per-party counters.
pub fn report(
    spec: &JobSpec,
    reference: &PlainTensor,
    outs: &[PartyOutcome<PlainTensor>],
    from_files: bool,
) {
    let out = &outs[0].value;
    println!(
        "model {}  parties {}  batch {}  weights {:?}  scheme {} (k {}, m {})  material {}",
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
        }
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
}
