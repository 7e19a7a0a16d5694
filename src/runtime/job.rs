//! A job: a named program every party runs, with its plaintext reference. The CLI's `run`,
//! `party` and `offline` subcommands and the bench harness all build jobs here, so a job
//! runs the same in-process, across processes, and from offline files. `infer` builds its
//! jobs here too (`InferJob`: a user's ONNX model on the data owner's .npy input).
//! Depends on onnx, model, sched, proto, ring.

use crate::error::{Error, Result};
use crate::model::{plain, zoo, Graph, Weights};
use crate::proto::Ctx;
use crate::ring::PlainTensor;
use crate::sched::{self, Schedule};

/// What to run (all parties must agree on it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub model: String,
    pub parties: usize,
    pub batch: usize,
    pub weights: Weights,
    /// Seed of the synthetic weights and input.
    pub seed: u64,
    /// Pipeline scheme and its parameters.
    pub schedule: Schedule,
    /// Sequence length of a BERT model (None: the model's default).
    pub seq_len: Option<usize>,
    /// `--dealer-seed` (see `SessionConfig::dealer_seed`).
    pub dealer_seed: Option<u64>,
    /// A user's ONNX model (`mpc-pipe infer`) instead of the built-in `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer: Option<InferJob>,
    /// Training (`mpc-pipe train --processes`) of `model` (a built-in name or an .onnx
    /// file) instead of one inference. Each party process runs it through `train`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainJob>,
}

/// `mpc-pipe train --processes`: the training options beyond the `JobSpec`'s model,
/// parties, batch, seed (of a built-in model's initial weights), schedule and dealer seed.
/// Only the model owner's process (party 0) reads the initial weights, writes `out` and
/// `save_weights`; only the data owner's (the last party) reads the data; the others
/// know the data's public shape from `data_shape`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    /// `--data`: digits or synthetic.
    pub data: String,
    pub synthetic_train: usize,
    pub synthetic_test: usize,
    pub data_seed: u64,
    pub epochs: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// `--out`: the CSV the model owner appends one row per epoch to.
    pub out: Option<std::path::PathBuf>,
    /// `--save-weights`: where the model owner writes the trained weights.
    pub save_weights: Option<std::path::PathBuf>,
    pub data_shape: DataShape,
}

/// The public shape of a training run's data: what the parties that do not hold it need
/// to run the same program.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataShape {
    pub train: usize,
    pub test: usize,
    /// One sample's shape ([C, H, W] or [features]).
    pub sample: Vec<usize>,
    pub classes: usize,
}

/// `mpc-pipe infer`'s job: the data owner's .npy input through a user's ONNX model, the
/// output revealed to the data owner only.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferJob {
    /// The .onnx file. Every party reads it: the graph is public, and with private weights
    /// only party 0's copy of the values is used (mpc.rs shares them).
    pub model: std::path::PathBuf,
    /// The data owner's input (.npy); no other party opens it.
    pub input: std::path::PathBuf,
    /// The input's shape: the model's, or `--input-shape` for dynamic dims.
    pub input_shape: Vec<usize>,
    /// The party that holds the input and alone receives the output.
    pub data_owner: usize,
}

impl JobSpec {
    pub fn new(model: &str, parties: usize, batch: usize) -> Self {
        JobSpec {
            model: model.into(),
            parties,
            batch,
            weights: Weights::Private,
            seed: 1,
            schedule: Schedule::serial(),
            seq_len: None,
            dealer_seed: None,
            infer: None,
            train: None,
        }
    }
}

/// A program every party runs; returns the decoded output revealed to all parties.
pub type Program = Box<dyn Fn(&Ctx) -> Result<PlainTensor> + Send + Sync>;

/// The program of a job and its plaintext reference output.
pub struct Job {
    pub spec: JobSpec,
    /// Runs at every party; returns the decoded output revealed to all parties.
    pub program: Program,
    /// The same program under the serial schedule, for the dry run that records the plan:
    /// material is addressed by (node, part of the tensor), so every schedule needs the
    /// same plan, and serial records it without lanes.
    pub plan_program: Program,
    /// The same computation in plaintext f64 (empty for an `InferJob`: `infer` evaluates
    /// its graph itself, and a party process without the input could not).
    pub reference: PlainTensor,
    /// Words of weight masks F = W - B each party opens (0 with public weights); the cost
    /// model's input for what inter-linear moves off the critical path.
    pub weight_mask_words: usize,
}

/// Build the job for `spec`: a built-in model (see `model::zoo`), or "selftest", a small
/// fixed program (input sharing, mul, matmul, reveal) used by transport tests.
pub fn build(spec: &JobSpec) -> Result<Job> {
    build_at(spec, None)
}

/// `build` in the process of party `me` (None: every party in this process). Only an
/// `InferJob` depends on it: the data owner's process alone reads the input.
pub fn build_at(spec: &JobSpec, me: Option<usize>) -> Result<Job> {
    if spec.batch == 0 {
        return Err(Error::Config("--batch must be at least 1".into()));
    }
    if spec.train.is_some() {
        return Err(Error::Config(
            "a training job runs through `train`, not as an inference job".into(),
        ));
    }
    if let Some(ij) = &spec.infer {
        let graph = crate::onnx::load(&ij.model, Some(&ij.input_shape))?;
        let input = match me {
            Some(id) if id != ij.data_owner => None,
            _ => Some(read_input(&ij.input, graph.input_shape())?.0),
        };
        return infer(spec, graph, input);
    }
    if spec.model == "selftest" {
        return Ok(selftest(spec));
    }
    let model = zoo::build_with(&spec.model, spec.seed, spec.seq_len, spec.batch)?;
    let shape = model.input_shape().to_vec();
    let input = zoo::Synth::new(spec.seed ^ 0x1234_5678).tensor(&shape, 0.0, 1.0);
    let reference = plain::forward(&model, &input)?;
    let weight_mask_words = match spec.weights {
        Weights::Private => model.linear_weight_words(),
        Weights::Public => 0,
    };
    let weights = spec.weights;
    let data = std::sync::Arc::new((model, input, shape));
    let under = |schedule: Schedule| -> Program {
        let data = data.clone();
        Box::new(move |ctx: &Ctx| -> Result<PlainTensor> {
            let (model, input, shape) = &*data;
            // The data owner is the last party; the model owner (weights) is party 0.
            let x = ctx.share_plain(ctx.parties() - 1, Some(input), shape)?;
            let y = sched::forward(ctx, model, &x, weights, &schedule)?;
            ctx.reveal_plain(&y)
        })
    };
    Ok(Job {
        spec: spec.clone(),
        program: under(spec.schedule),
        plan_program: under(Schedule::serial()),
        reference,
        weight_mask_words,
    })
}

/// The data owner's input and its dtype, checked against the model's input shape.
pub fn read_input(
    path: &std::path::Path,
    shape: &[usize],
) -> Result<(PlainTensor, crate::onnx::npy::Dtype)> {
    let (x, dtype) = crate::onnx::npy::read(path, "--input")?;
    if x.shape() != shape {
        return Err(Error::Config(format!(
            "--input {} has shape {:?}, but the model takes {shape:?}",
            path.display(),
            x.shape(),
        )));
    }
    Ok((x, dtype))
}

/// The job of `spec.infer` on `graph`: the data owner shares `input` (None in the other
/// parties' processes), and alone receives the decoded output; every other party's
/// program returns an empty tensor.
pub fn infer(spec: &JobSpec, graph: Graph, input: Option<PlainTensor>) -> Result<Job> {
    let ij = spec
        .infer
        .as_ref()
        .ok_or_else(|| Error::Config("not an infer job".into()))?;
    let owner = ij.data_owner;
    if owner >= spec.parties {
        return Err(Error::Config(format!(
            "--data-owner {owner} is not one of the {} parties (0..={})",
            spec.parties,
            spec.parties - 1
        )));
    }
    let weight_mask_words = match spec.weights {
        Weights::Private => graph.linear_weight_words(),
        Weights::Public => 0,
    };
    // The dry run that records the plan plays party 0 in every process; when party 0 is
    // the data owner, another party's process plays it with zeros (the plan depends on
    // shapes only). Online, a process only ever runs its own party, so a party without
    // the input never shares one.
    let zeros = PlainTensor::zeros(graph.input_shape());
    let data = std::sync::Arc::new((graph, input, zeros));
    let weights = spec.weights;
    let under = |schedule: Schedule| -> Program {
        let data = data.clone();
        Box::new(move |ctx: &Ctx| -> Result<PlainTensor> {
            let (graph, input, zeros) = &*data;
            let mine = (ctx.party() == owner).then(|| input.as_ref().unwrap_or(zeros));
            let x = ctx.share_plain(owner, mine, graph.input_shape())?;
            let y = sched::forward(ctx, graph, &x, weights, &schedule)?;
            Ok(match ctx.reveal_to(owner, &y)? {
                Some(r) => ctx.fixed().decode_tensor(&r),
                None => PlainTensor::zeros(&[0]),
            })
        })
    };
    Ok(Job {
        spec: spec.clone(),
        program: under(spec.schedule),
        plan_program: under(Schedule::serial()),
        reference: PlainTensor::zeros(&[0]),
        weight_mask_words,
    })
}

fn selftest(spec: &JobSpec) -> Job {
    let b = spec.batch;
    let x = PlainTensor::from_vec(
        &[b, 4],
        (0..4 * b).map(|i| (i as f64) * 0.25 - 1.0).collect(),
    );
    let w = PlainTensor::from_vec(&[4, 3], (0..12).map(|i| 0.5 - (i as f64) * 0.125).collect());
    let reference = x.mul(&x).matmul(&w);
    let (xs, ws) = (x.clone(), w.clone());
    let program = std::sync::Arc::new(move |ctx: &Ctx| -> Result<PlainTensor> {
        let last = ctx.parties() - 1;
        let xv = ctx.share_plain(0, Some(&xs), xs.shape())?;
        let wv = ctx.share_plain(last, Some(&ws), ws.shape())?;
        let sq = ctx.mul(&xv, &xv)?;
        let y = ctx.matmul(&sq, &wv)?;
        ctx.reveal_plain(&y)
    });
    let again = program.clone();
    Job {
        spec: spec.clone(),
        program: Box::new(move |ctx: &Ctx| program(ctx)),
        plan_program: Box::new(move |ctx: &Ctx| again(ctx)),
        reference,
        weight_mask_words: 0,
    }
}

/// Plans recorded in this process, by job description (schedule left out: every schedule
/// needs the serial plan) and fixed-point settings.
#[allow(clippy::type_complexity)]
static PLANS: std::sync::Mutex<Vec<(String, std::sync::Arc<crate::offline::Plan>, f64)>> =
    std::sync::Mutex::new(Vec::new());
/// Plans kept at most: a bench matrix visits its configurations one after another.
const PLANS_KEPT: usize = 16;

/// The plan of `job` under `cfg`, recorded once per job description in this process: the
/// schemes and repetitions of one configuration (bench) share one dry run.
pub fn cached_plan(
    job: &Job,
    cfg: &crate::runtime::SessionConfig,
) -> Result<std::sync::Arc<crate::offline::Plan>> {
    Ok(cached_plan_timed(job, cfg)?.0)
}

/// As `cached_plan`, with the seconds its dry run took when it was recorded.
pub fn cached_plan_timed(
    job: &Job,
    cfg: &crate::runtime::SessionConfig,
) -> Result<(std::sync::Arc<crate::offline::Plan>, f64)> {
    let mut spec = job.spec.clone();
    spec.schedule = Schedule::serial();
    let key = serde_json::to_string(&(spec, cfg.fixed, cfg.parties))
        .map_err(|e| Error::Protocol(format!("job description: {e}")))?;
    if let Some((_, p, s)) = PLANS.lock().unwrap().iter().find(|(k, _, _)| *k == key) {
        return Ok((p.clone(), *s));
    }
    let t = std::time::Instant::now();
    let plan = std::sync::Arc::new(crate::runtime::record_plan(cfg, &*job.plan_program)?);
    let secs = t.elapsed().as_secs_f64();
    let mut plans = PLANS.lock().unwrap();
    if plans.len() >= PLANS_KEPT {
        plans.remove(0);
    }
    plans.push((key, plan.clone(), secs));
    Ok((plan, secs))
}
