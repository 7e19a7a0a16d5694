//! `mpc-pipe train`: secure training of a built-in model (default digits-cnn) or an ONNX
//! model on the committed digits data or synthetic data, all parties in this process, or
//! each in its own process over loopback TCP (`--processes`: the children run
//! `run_party`, started as `run --processes` starts its parties). Prints each epoch's loss
//! and test accuracy (what the model owner learns) with its online time and traffic;
//! `--out` appends one CSV row per epoch (bench's columns, plus epoch, loss and
//! accuracy); `--plaintext` runs the same training in f64; `--save-weights DIR` writes the
//! trained weights (revealed to the model owner) as .npy, and as ONNX when the model came
//! from an .onnx file. Depends on train, bench (the CSV row and writer), model, onnx,
//! runtime, cli::args.

use std::path::{Path, PathBuf};

use clap::Args;

use super::args::{schedule_of, LinkArgs};
use crate::bench::csv_out::append_row;
use crate::bench::Row;
use crate::error::{Error, Result};
use crate::model::backward::{self, Sgd};
use crate::model::{zoo, Graph};
use crate::ring::{FixedPoint, PlainTensor};
use crate::runtime::job::{DataShape, JobSpec, TrainJob};
use crate::runtime::process::{
    progress, spawn_party_outputs, with_connection, PartyConfig, PartyJob, ProcessRun,
};
use crate::runtime::SessionConfig;
use crate::train::mpc::MODEL_OWNER;
use crate::train::{data, EpochReport, Job, OneProcess, TrainConfig};

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Built-in model (digits-cnn, digits-mlp, or any built-in whose layers have backward
    /// rules) or an .onnx file.
    #[arg(long, default_value = "digits-cnn")]
    pub model: String,
    /// Data set: digits (the committed UCI digits, 1437 train / 360 test) or synthetic
    /// (seeded, shaped for the model; see --synthetic-train).
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Training samples of --data synthetic.
    #[arg(long, default_value_t = 1024)]
    pub synthetic_train: usize,
    /// Test samples of --data synthetic.
    #[arg(long, default_value_t = 256)]
    pub synthetic_test: usize,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Learning rate (public).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub lr: f64,
    /// SGD momentum (public), 0 for none.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub momentum: f64,
    /// Weight decay (public), 0 for none.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub weight_decay: f64,
    /// Seed of a built-in model's initial weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seed of the data order (and of synthetic data).
    #[arg(long, default_value_t = 1)]
    pub data_seed: u64,
    /// Append one CSV row per epoch to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pipeline scheme: serial, or inter-batch (micro-batches forward and backward in
    /// pipeline, one update per mini-batch), inner-layer (non-linear layers of both passes
    /// in chunks), inter-linear (weight masks opened ahead by a weights lane) joined by
    /// '+', or all.
    #[arg(long, default_value = "serial")]
    pub scheme: String,
    /// Chunks of each non-linear layer (relu, max-pool, both passes) for inner-layer (k).
    #[arg(long, default_value_t = 2)]
    pub chunks: usize,
    /// Micro-batches in flight for inter-batch (m).
    #[arg(long, default_value_t = 2)]
    pub batches_in_flight: usize,
    /// Where micro-batch lanes run: threads or coroutines. Coroutines by default: a
    /// training round computes for tens to a few hundred µs (digits-cnn: 54 µs at batch 32,
    /// 170 µs at 128), under bench's 250 µs `auto` threshold, and on the 2-core VM
    /// inter-batch trained 1.51x serial's samples/s with coroutines against 1.35x with
    /// threads (batch 128, 10 Gbit/s, 0.02 ms, 5 alternating reps; README, Training).
    #[arg(long, default_value = "coroutines")]
    pub lanes: String,
    /// Number of computing parties, 2..=8.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub parties_as: super::args::ProcessArgs,
    /// Run the same training in f64 (same initial weights, data order and batches).
    #[arg(long)]
    pub plaintext: bool,
    /// Write the trained weights (revealed to the model owner) to DIR as .npy files.
    #[arg(long)]
    pub save_weights: Option<PathBuf>,
    /// Seconds a party waits for a peer before failing.
    #[arg(long, default_value_t = 120.0, allow_negative_numbers = true)]
    pub timeout_s: f64,
    /// Derive the dealer's and pairwise seeds from this value (reproducible experiments
    /// only: it makes every mask predictable).
    #[arg(long)]
    pub dealer_seed: Option<u64>,
}

fn load_model(model: &str, seed: u64, batch: usize) -> Result<Graph> {
    if model.ends_with(".onnx") {
        crate::onnx::load(Path::new(model), None)
    } else {
        zoo::build(model, seed, batch.max(1))
    }
}

/// `--data` for graph `g`: its samples' shape and classes size synthetic data.
fn load_data(
    data: &str,
    synthetic_train: usize,
    synthetic_test: usize,
    data_seed: u64,
    g: &Graph,
) -> Result<data::Split> {
    match data {
        "digits" => data::digits(),
        "synthetic" => {
            let classes = g.output_shape().get(1).copied().unwrap_or(0);
            data::synthetic(
                synthetic_train,
                synthetic_test,
                &g.input_shape()[1..],
                classes,
                data_seed,
            )
        }
        other => Err(Error::Config(format!(
            "--data must be digits or synthetic, got '{other}'"
        ))),
    }
}

/// The line printed for an epoch.
fn epoch_line(r: &EpochReport, plaintext: bool) -> String {
    let per_s = r.samples as f64 / r.online_s;
    if plaintext {
        return format!(
            "epoch {}: loss {:.4}  test accuracy {:.4}  ({:.2} s, {per_s:.0} samples/s, f64)",
            r.epoch, r.loss, r.accuracy, r.online_s
        );
    }
    let bytes = r.stats.iter().map(|s| s.bytes_sent()).max().unwrap_or(0);
    let rounds = r.stats.iter().map(|s| s.rounds).max().unwrap_or(0);
    let o = &r.offline;
    format!(
        "epoch {}: loss {:.4}  test accuracy {:.4}  (online {:.2} s, {per_s:.1} samples/s, {:.1} MB/party, {rounds} rounds; whole epoch {:.2} s: plan {:.2} s, deal {:.2} s, expand {:.2} s)",
        r.epoch, r.loss, r.accuracy, r.online_s, bytes as f64 / 1e6, r.e2e_s, o.plan_s, o.deal_s, o.expand_s
    )
}

/// What every epoch's line and CSV row say about the run: the same whichever process
/// writes them (this one, or the model owner's under --processes).
struct RunInfo {
    model: String,
    batch: usize,
    parties: usize,
    plaintext: bool,
    lanes: String,
    /// The CSV's channels column: memory, sealed or plaintext (empty for f64 rows).
    channels: String,
    link: crate::link::LinkProfile,
    scheme: String,
    km: (usize, usize),
}

/// The CSV row of one epoch: bench's columns with the epoch's training as the measured
/// work (reps = steps).
fn row_of(a: &RunInfo, r: &EpochReport) -> Row {
    let link = &a.link;
    let steps = (r.samples / a.batch.max(1)).max(1);
    let per_step_ms = r.online_s / steps as f64 * 1e3;
    let bytes = r.stats.iter().map(|s| s.bytes_sent()).max().unwrap_or(0);
    let link_bytes = r
        .stats
        .iter()
        .flat_map(|s| s.per_peer.iter().map(|p| p.bytes_sent))
        .max()
        .unwrap_or(0);
    let wait_s = r
        .stats
        .iter()
        .map(|s| s.wait_ns() as f64 * 1e-9)
        .fold(0.0, f64::max);
    Row {
        model: a.model.clone(),
        batch: a.batch,
        parties: if a.plaintext { 1 } else { a.parties },
        weights: "private".into(),
        network: link.name.clone(),
        bandwidth_mbps: link.bandwidth_mbps,
        latency_ms: link.latency_ms,
        scheme: a.scheme.clone(),
        chunks: a.km.0,
        batches_in_flight: a.km.1,
        reps: steps,
        latency_ms_p50: per_step_ms,
        latency_ms_p99: per_step_ms,
        throughput_per_s: r.samples as f64 / r.online_s,
        online_s: r.online_s,
        compute_busy_s: r.cpu_s,
        comm_wait_s: wait_s,
        bytes_per_party: bytes,
        rounds: r.stats.iter().map(|s| s.rounds).max().unwrap_or(0),
        cpu_util: r.cpu_s / r.online_s,
        link_util: link
            .bandwidth_mbps
            .map(|mbps| link_bytes as f64 * 8.0 / (mbps * 1e6 * r.online_s)),
        max_abs_err: f64::NAN,
        commit: crate::bench::commit_id(),
        host: crate::bench::host_name(),
        isa: crate::kernels::selected()
            .map(|k| k.isa.name())
            .unwrap_or("?")
            .to_string(),
        material: "eager".into(),
        trunc: if a.plaintext {
            String::new()
        } else {
            crate::ring::Trunc::default_for(a.parties)
                .as_str()
                .to_string()
        },
        link_bytes: Some(link_bytes),
        lanes: a.lanes.clone(),
        messages: Some(r.stats.iter().map(|s| s.msgs_sent()).max().unwrap_or(0)),
        channels: a.channels.clone(),
        // Per epoch here (bench's are per inference): the epoch's training and evaluation
        // sessions' dry runs, dealers and expansions, and its whole wall time.
        plan_s: (!a.plaintext).then_some(r.offline.plan_s),
        deal_s: (!a.plaintext).then_some(r.offline.deal_s),
        expand_s: (!a.plaintext).then_some(r.offline.expand_s),
        e2e_s: Some(r.e2e_s),
        epoch: Some(r.epoch),
        loss: Some(r.loss),
        accuracy: Some(r.accuracy),
        ..Row::default()
    }
}

/// The model's parameters by name with their values `w` (aligned with
/// `backward::parameters`).
fn named<'w>(g: &Graph, w: &'w [PlainTensor]) -> Result<Vec<(String, &'w PlainTensor)>> {
    let params = backward::parameters(g)?;
    Ok(params
        .iter()
        .zip(w)
        .map(|(&t, v)| (g.tensors[t].name.clone(), v))
        .collect())
}

/// Whether the trained weights of `g` (imported from the .onnx `source`) can be written
/// back into a copy of it; if not, why (said before training, so nobody waits for a file
/// that will not come).
fn onnx_export_check(g: &Graph, source: &Path) -> Result<std::result::Result<(), String>> {
    let params = backward::parameters(g)?;
    let values: Vec<std::borrow::Cow<'_, PlainTensor>> = params
        .iter()
        .map(|&t| {
            g.tensors[t]
                .constant()
                .expect("a parameter is a constant")
                .plain()
        })
        .collect();
    let init: Vec<(&str, &PlainTensor)> = params
        .iter()
        .zip(&values)
        .map(|(&t, c)| (g.tensors[t].name.as_str(), &**c))
        .collect();
    let bytes = crate::onnx::read(source)?;
    Ok(crate::onnx::export::check_initializers(&bytes, &init))
}

/// The file the trained ONNX model is written to: `DIR/<model stem>.trained.onnx`.
pub fn trained_onnx_path(dir: &Path, source: &Path) -> PathBuf {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    dir.join(format!("{stem}.trained.onnx"))
}

/// Write the trained weights `w` of `g` to `dir` as .npy files, and, when the model came
/// from the .onnx file `onnx` and its parameters are its initializers, as a copy of that
/// model with the trained values. `say` prints a line for the user.
fn save_weights(
    dir: &Path,
    g: &Graph,
    w: &[PlainTensor],
    onnx: Option<&Path>,
    say: &dyn Fn(&str),
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Config(format!("--save-weights {}: {e}", dir.display())))?;
    let params = named(g, w)?;
    for (i, (name, v)) in params.iter().enumerate() {
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("{i:02}_{name}.npy"));
        crate::onnx::npy::write(&path, v, crate::onnx::npy::Dtype::F64)?;
    }
    say(&format!(
        "trained weights: {} files in {}",
        w.len(),
        dir.display()
    ));
    if let Some(source) = onnx {
        match onnx_export_check(g, source)? {
            Ok(()) => {
                let bytes = crate::onnx::read(source)?;
                let values: Vec<(&str, &PlainTensor)> =
                    params.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                let out = crate::onnx::export::replace_initializers(
                    &bytes,
                    &values,
                    &source.display().to_string(),
                )?;
                let path = trained_onnx_path(dir, source);
                std::fs::write(&path, out).map_err(|e| {
                    Error::Config(format!(
                        "--save-weights: cannot write {}: {e}",
                        path.display()
                    ))
                })?;
                say(&format!("trained model: {}", path.display()));
            }
            Err(why) => say(&format!("trained model not written as ONNX: {why}")),
        }
    }
    Ok(())
}

/// The .onnx file the model came from, if it did.
fn onnx_source(model: &str) -> Option<&Path> {
    model.ends_with(".onnx").then(|| Path::new(model))
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let schedule = schedule_of(&a.scheme, a.chunks, a.batches_in_flight, &a.lanes)?;
    let link = a.link.profile()?;
    a.parties_as.check(None)?;
    let processes = a.parties_as.processes;
    if processes && a.plaintext {
        return Err(Error::Config(
            "--processes places MPC parties; --plaintext trains in f64 in this process: give one or the other".into(),
        ));
    }
    let g = load_model(&a.model, a.seed, a.batch)?;
    let split = load_data(
        &a.data,
        a.synthetic_train,
        a.synthetic_test,
        a.data_seed,
        &g,
    )?;
    let sgd = Sgd {
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
    };
    let job = Job {
        graph: &g,
        data: &split,
        config: TrainConfig {
            epochs: a.epochs,
            batch: a.batch,
            sgd,
            schedule,
            order_seed: a.data_seed,
        },
    };
    let km = (schedule.k(), schedule.m());
    let scheme = if a.plaintext {
        "plaintext".to_string()
    } else {
        schedule.scheme.to_string()
    };
    println!(
        "training {} on {} ({} train / {} test), {} epochs, batch {}, lr {}, momentum {}, weight decay {}, {}",
        g.name,
        a.data,
        split.train.len(),
        split.test.len(),
        a.epochs,
        a.batch,
        a.lr,
        a.momentum,
        a.weight_decay,
        if a.plaintext {
            "f64 plaintext".to_string()
        } else {
            format!(
                "{} parties as {}, scheme {scheme}, network {}",
                a.parties,
                if processes { "processes" } else { "threads" },
                link.name
            )
        }
    );
    if let Some(out) = &a.out {
        crate::bench::csv_out::upgrade(out)?;
    }
    let onnx = onnx_source(&a.model);
    if let (Some(_), Some(source)) = (&a.save_weights, onnx) {
        if let Err(why) = onnx_export_check(&g, source)? {
            println!("note: the trained model will not be written as ONNX (only .npy): {why}");
        }
    }
    let session = SessionConfig {
        parties: a.parties,
        fixed: FixedPoint::default(),
        timeout: crate::error::seconds_option("--timeout-s", a.timeout_s, false)?,
        dealer_seed: a.dealer_seed,
    };
    if processes {
        session.check()?;
        job.check()?;
        return spawn(a, &job, &session, link);
    }
    let info = RunInfo {
        model: a.model.clone(),
        batch: a.batch,
        parties: a.parties,
        plaintext: a.plaintext,
        lanes: a.lanes.clone(),
        channels: if a.plaintext {
            String::new()
        } else {
            "memory".into()
        },
        link: link.clone(),
        scheme,
        km,
    };
    let mut write_err = None;
    let mut on_epoch = |r: &EpochReport| {
        println!("{}", epoch_line(r, a.plaintext));
        if let (Some(out), None) = (&a.out, &write_err) {
            if let Err(e) = append_row(out, &row_of(&info, r)) {
                write_err = Some(e);
            }
        }
    };
    let (_, weights) = if a.plaintext {
        job.run_plain(&mut on_epoch)?
    } else {
        session.check()?;
        job.run_mpc(&session, &link, &mut on_epoch)?
    };
    if let Some(e) = write_err {
        return Err(e);
    }
    if let Some(dir) = &a.save_weights {
        save_weights(dir, &g, &weights, onnx, &|l| println!("{l}"))?;
    }
    Ok(())
}

/// `train --processes`: every party a child process (`mpc-pipe party`, the job on its
/// stdin) over loopback TCP; the model owner's child prints the epochs (shown here as
/// they come), writes the CSV rows and the weights.
fn spawn(
    a: &TrainArgs,
    job: &Job,
    session: &SessionConfig,
    link: crate::link::LinkProfile,
) -> Result<()> {
    let schedule = job.config.schedule;
    let data = &job.data;
    let spec = JobSpec {
        model: a.model.clone(),
        parties: a.parties,
        batch: a.batch,
        weights: crate::model::Weights::Private,
        seed: a.seed,
        schedule,
        seq_len: None,
        dealer_seed: a.dealer_seed,
        infer: None,
        train: Some(TrainJob {
            data: a.data.clone(),
            synthetic_train: a.synthetic_train,
            synthetic_test: a.synthetic_test,
            data_seed: a.data_seed,
            epochs: a.epochs,
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            out: a.out.clone(),
            save_weights: a.save_weights.clone(),
            data_shape: DataShape {
                train: data.train.len(),
                test: data.test.len(),
                sample: data.train.sample_shape.clone(),
                classes: data.train.classes,
            },
        }),
    };
    let mut pr = ProcessRun::new(spec);
    pr.link = link;
    pr.timeout = session.timeout;
    pr.fixed = session.fixed;
    pr.many_sessions = true;
    a.parties_as.apply(&mut pr);
    spawn_party_outputs(&pr)?;
    Ok(())
}

/// One party of `train --processes` (`mpc-pipe party --job-stdin` with a training job):
/// the model owner's process alone uses the initial weights (the others zero them after
/// reading the model, whose graph is public), the data owner's alone reads the data (the
/// others run on zeros of its public shape). Every session of the run goes over one
/// connection; the model owner prints the epochs, writes the CSV rows and the weights.
pub fn run_party(cfg: &PartyConfig, pjob: &PartyJob) -> Result<()> {
    let spec = &pjob.spec;
    let tj = spec
        .train
        .as_ref()
        .ok_or_else(|| Error::Config("not a training job".into()))?;
    let (id, n) = (cfg.id, cfg.addrs.len());
    let mut g = load_model(&spec.model, spec.seed, spec.batch)?;
    if id != MODEL_OWNER {
        g = g.map_constants(|c| PlainTensor::zeros(c.shape()));
    }
    let shape = &tj.data_shape;
    let split = if id == n - 1 {
        let s = load_data(
            &tj.data,
            tj.synthetic_train,
            tj.synthetic_test,
            tj.data_seed,
            &g,
        )?;
        let mine = (
            s.train.len(),
            s.test.len(),
            &s.train.sample_shape,
            s.train.classes,
        );
        if mine != (shape.train, shape.test, &shape.sample, shape.classes) {
            return Err(Error::Config(format!(
                "the data owner's data ({} train / {} test samples of {:?}, {} classes) is not the shape the job was started with",
                mine.0, mine.1, mine.2, mine.3
            )));
        }
        s
    } else {
        data::placeholder(shape.train, shape.test, &shape.sample, shape.classes)?
    };
    let job = Job {
        graph: &g,
        data: &split,
        config: TrainConfig {
            epochs: tj.epochs,
            batch: spec.batch,
            sgd: Sgd {
                lr: tj.lr,
                momentum: tj.momentum,
                weight_decay: tj.weight_decay,
            },
            schedule: spec.schedule,
            order_seed: tj.data_seed,
        },
    };
    let info = RunInfo {
        model: spec.model.clone(),
        batch: spec.batch,
        parties: n,
        plaintext: false,
        lanes: spec.schedule.lanes.to_string(),
        channels: if pjob.plaintext_channels {
            "plaintext".into()
        } else {
            "sealed".into()
        },
        link: pjob.link.clone(),
        scheme: spec.schedule.scheme.to_string(),
        km: (spec.schedule.k(), spec.schedule.m()),
    };
    let mut write_err = None;
    let mut on_epoch = |r: &EpochReport| {
        progress(&epoch_line(r, false));
        if let (Some(out), None) = (&tj.out, &write_err) {
            if let Err(e) = append_row(out, &row_of(&info, r)) {
                write_err = Some(e);
            }
        }
    };
    let (_, weights) = with_connection(cfg, None, |ep| {
        job.run_on(
            &mut OneProcess::new(cfg, ep, spec.dealer_seed),
            &mut on_epoch,
        )
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if let (Some(dir), Some(w)) = (&tj.save_weights, &weights) {
        let source = onnx_source(&spec.model);
        save_weights(dir, &g, w, source, &progress)?;
    }
    Ok(())
}
