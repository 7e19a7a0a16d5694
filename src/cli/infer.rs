//! `mpc-pipe infer`: private inference of a user's ONNX model on a user's .npy input, all
//! parties in this process, or each in its own process over loopback TCP (`--processes`,
//! as `run --processes`: each child gets the job as JSON on stdin, reads the model itself,
//! and only the data owner's child opens the input). The model owner (party 0) holds the
//! weights, the data owner (the last party, or `--data-owner`) the input; the output is
//! revealed to the data owner only and written as .npy in the input's dtype. Prints each
//! party's online time, bytes, messages and rounds, and the max abs difference from the
//! engine's f64 evaluation of the same graph (and from `--reference`): a diagnostic this
//! launcher can afford, since it starts every party on one host; in a real deployment no
//! party holds both model and input. Everything that can be checked is checked before the
//! parties start; nothing is written unless the run succeeds.
//! Depends on onnx, model, runtime (job, local, process), offline.

use std::path::PathBuf;

use clap::Args;

use super::args::{JobArgs, LinkArgs};

use crate::error::{Error, Result};
use crate::model::{plain, Graph, Weights};
use crate::onnx::{self, npy};
use crate::profile::Recorder;
use crate::ring::PlainTensor;
use crate::runtime::job::{self, InferJob, JobSpec};
use crate::runtime::local::{record_plan, SessionConfig};
use crate::runtime::process::{spawn_parties, ProcessRun};
use crate::sched::Schedule;

#[derive(Args, Debug, Clone)]
pub struct InferArgs {
    /// The model: an .onnx file (opset 13 to 21; see README for the supported ops).
    #[arg(long)]
    pub model: PathBuf,
    /// The data owner's input: a float32 or float64 .npy of the model's input shape.
    #[arg(long)]
    pub input: PathBuf,
    /// Where the data owner writes the output (.npy, in the input's dtype).
    #[arg(long)]
    pub output: PathBuf,
    /// An expected output (.npy, e.g. onnxruntime's) to print the difference from.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// The party holding the input and receiving the output (default: the last party).
    #[arg(long)]
    pub data_owner: Option<usize>,
    /// The input's shape, comma-separated (e.g. 1,3,32,32), for a model whose input has
    /// dynamic dims.
    #[arg(long, value_delimiter = ',')]
    pub input_shape: Option<Vec<usize>>,
    /// Number of computing parties, 2..=8.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    /// Who knows the weights: private (secret-shared by party 0) or public.
    #[arg(long, default_value = "private")]
    pub weights: String,
    /// Pipeline scheme: serial, or inter-linear, inner-layer, inter-batch joined by '+', or all.
    #[arg(long, default_value = "serial")]
    pub scheme: String,
    /// Chunks per layer for inner-layer (k).
    #[arg(long, default_value_t = 2)]
    pub chunks: usize,
    /// Micro-batches in flight for inter-batch (m).
    #[arg(long, default_value_t = 2)]
    pub batches_in_flight: usize,
    /// Where pipeline lanes run: threads or coroutines.
    #[arg(long, default_value = "threads")]
    pub lanes: String,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = 16)]
    pub frac_bits: u32,
    /// Truncation after products: local (2 parties only) or dealer.
    #[arg(long)]
    pub trunc: Option<String>,
    /// Protocols of comparisons: crypten or fss (2 parties only); see `run --help`.
    #[arg(long, default_value = "crypten")]
    pub protocols: String,
    /// Derive the dealer's and pairwise seeds from this value (reproducible experiments
    /// only: it makes every mask predictable).
    #[arg(long)]
    pub dealer_seed: Option<u64>,
    /// Seconds a party waits for a peer before failing.
    #[arg(long, default_value_t = 120.0, allow_negative_numbers = true)]
    pub timeout_s: f64,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Write a Chrome trace event timeline (Perfetto, chrome://tracing) of the online phase.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub parties_as: super::args::ProcessArgs,
}

impl InferArgs {
    /// The session and schedule, every option checked (configuration errors, exit 2).
    fn session(&self) -> Result<(SessionConfig, Schedule, Weights)> {
        let schedule = super::args::schedule_of(
            &self.scheme,
            self.chunks,
            self.batches_in_flight,
            &self.lanes,
        )?;
        // The fixed-point options are the job options `run` has; reuse their checks.
        let job = JobArgs {
            frac_bits: self.frac_bits,
            trunc: self.trunc.clone(),
            protocols: self.protocols.clone(),
            ..JobArgs::default()
        };
        let cfg = SessionConfig {
            parties: self.parties,
            fixed: job.fixed(self.parties)?,
            timeout: crate::error::seconds_option("--timeout-s", self.timeout_s, false)?,
            dealer_seed: self.dealer_seed,
        };
        cfg.check()?;
        Ok((cfg, schedule, self.weights.parse()?))
    }
}

/// Largest magnitude of an input or constant: 2^(62 - 2f) (2^30 at f = 16). A product's
/// intermediate |a·b|·2^(2f) must fit the signed ring (below 2^63), which a value this
/// large still does when multiplied by a weight of magnitude up to 2.
fn fixed_point_limit(frac_bits: u32) -> f64 {
    2f64.powi(62 - 2 * frac_bits as i32)
}

fn check_range(t: &PlainTensor, limit: f64, what: &str) -> Result<()> {
    match t.data().iter().map(|v| v.abs()).fold(0.0, f64::max) {
        m if m < limit => Ok(()),
        m => Err(Error::Config(format!(
            "{what} holds a value of magnitude {m:.3e}, beyond the fixed-point range (below {limit:.3e} at these --frac-bits)"
        ))),
    }
}

/// Load and check everything the run needs: graph, input, reference.
fn prepare(
    a: &InferArgs,
    cfg: &SessionConfig,
) -> Result<(Graph, PlainTensor, npy::Dtype, Option<PlainTensor>)> {
    let graph = onnx::load(&a.model, a.input_shape.as_deref())?;
    let (x, dtype) = job::read_input(&a.input, graph.input_shape())?;
    let limit = fixed_point_limit(cfg.fixed.frac_bits);
    check_range(&x, limit, &format!("--input {}", a.input.display()))?;
    for t in &graph.tensors {
        if let Some(c) = t.constant() {
            check_range(&c.plain(), limit, &format!("model constant '{}'", t.name))?;
        }
    }
    let reference = match &a.reference {
        None => None,
        Some(p) => {
            let (r, _) = npy::read(p, "--reference")?;
            if r.shape() != graph.output_shape() {
                return Err(Error::Config(format!(
                    "--reference {} has shape {:?}, but the model's output is {:?}",
                    p.display(),
                    r.shape(),
                    graph.output_shape()
                )));
            }
            Some(r)
        }
    };
    Ok((graph, x, dtype, reference))
}

pub fn run(a: &InferArgs) -> Result<()> {
    let (cfg, schedule, weights) = a.session()?;
    let owner = a.data_owner.unwrap_or(cfg.parties - 1);
    if owner >= cfg.parties {
        return Err(Error::Config(format!(
            "--data-owner {owner} is not one of the {} parties (0..={})",
            cfg.parties,
            cfg.parties - 1
        )));
    }
    let link = a.link.profile()?;
    a.parties_as.check(a.trace.as_deref())?;
    let (graph, x, dtype, reference) = prepare(a, &cfg)?;
    let plain_y = plain::forward(&graph, &x)?;
    let (in_shape, out_shape) = (graph.input_shape().to_vec(), graph.output_shape().to_vec());
    let absolute = |p: &PathBuf, what: &str| {
        std::path::absolute(p).map_err(|e| Error::Config(format!("{what} {}: {e}", p.display())))
    };
    let spec = JobSpec {
        model: a.model.display().to_string(),
        parties: cfg.parties,
        // A built-in model's batch; an ONNX input's shape is its own (`input_shape`).
        batch: 1,
        weights,
        seed: 0,
        schedule,
        seq_len: None,
        dealer_seed: cfg.dealer_seed,
        infer: Some(InferJob {
            // Children start in this directory, but say exactly which files they read.
            model: absolute(&a.model, "--model")?,
            input: absolute(&a.input, "--input")?,
            input_shape: in_shape.clone(),
            data_owner: owner,
        }),
        train: None,
    };
    // The whole job, as `run` times it (see README, The whole job).
    let t_job = std::time::Instant::now();
    let outs = if a.parties_as.processes {
        // Each child loads the model itself; free this process's copy first.
        drop(graph);
        let mut pr = ProcessRun::new(spec);
        pr.link = link.clone();
        pr.timeout = cfg.timeout;
        pr.fixed = cfg.fixed;
        a.parties_as.apply(&mut pr);
        spawn_parties(&pr)?
    } else {
        let job = job::infer(&spec, graph, Some(x))?;
        let t = std::time::Instant::now();
        let plan = record_plan(&cfg, &*job.plan_program)?;
        let plan_s = t.elapsed().as_secs_f64();
        let plan = std::sync::Arc::new(plan);
        let recorder = a.trace.as_ref().map(|_| Recorder::new());
        let dealing = crate::runtime::Dealing::auto(&plan, cfg.parties)?;
        let mut outs = crate::runtime::run_dealt(
            &cfg,
            &link,
            &plan,
            dealing,
            &*job.program,
            recorder.as_ref(),
            crate::runtime::local::Channels::Memory,
        )?
        .outs;
        if let (Some(path), Some(rec)) = (&a.trace, &recorder) {
            super::run::write_trace(path, rec)?;
        }
        for o in &mut outs {
            o.offline.plan_s = plan_s;
        }
        outs
    };
    let e2e_s = t_job.elapsed().as_secs_f64();
    let y = &outs[owner].value;
    if y.shape() != out_shape {
        return Err(Error::Protocol(format!(
            "the data owner received an output of shape {:?}, the model's is {out_shape:?}",
            y.shape()
        )));
    }
    println!(
        "model {}  input {:?}  output {:?}  parties {}  data owner {owner}  weights {weights:?}  scheme {} (k {}, m {})  network {}  frac_bits {}  trunc {}  protocols {}  parties as {}",
        a.model.display(),
        in_shape,
        out_shape,
        cfg.parties,
        schedule.scheme,
        schedule.chunks,
        schedule.batches_in_flight,
        link.name,
        cfg.fixed.frac_bits,
        cfg.fixed.trunc_for(cfg.parties)?,
        cfg.fixed.protocols,
        if a.parties_as.processes { "processes" } else { "threads" },
    );
    for (i, o) in outs.iter().enumerate() {
        println!(
            "party {i}: online_s {:.4}  bytes_sent {}  bytes_recv {}  messages {}  rounds {}",
            o.online_s,
            o.stats.bytes_sent(),
            o.stats.bytes_recv(),
            o.stats.msgs_sent(),
            o.stats.rounds,
        );
    }
    super::run::print_phases(&outs, e2e_s);
    println!("max_abs_diff_plaintext: {:.6e}", y.max_abs_diff(&plain_y));
    if let Some(r) = &reference {
        println!("max_abs_diff_reference: {:.6e}", y.max_abs_diff(r));
        println!(
            "max_abs_diff_plaintext_reference: {:.6e}",
            plain_y.max_abs_diff(r)
        );
    }
    npy::write(&a.output, y, dtype)?;
    println!("output written to {}", a.output.display());
    Ok(())
}
