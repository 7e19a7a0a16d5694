//! `mpc-pipe train`: secure training of a built-in model (default digits-cnn) or an ONNX
//! model on the committed digits data or synthetic data, all parties in this process.
//! Prints each epoch's loss and test accuracy (what the model owner learns) with its
//! online time and traffic; `--out` appends one CSV row per epoch (bench's columns, plus
//! epoch, loss and accuracy); `--plaintext` runs the same training in f64; `--save-weights
//! DIR` writes the trained weights (revealed to the model owner) as .npy. Depends on
//! train, bench (the CSV row and writer), model, onnx, runtime, cli::args.

use std::path::{Path, PathBuf};

use clap::Args;

use super::args::{schedule_of, LinkArgs};
use crate::bench::csv_out::append_row;
use crate::bench::Row;
use crate::error::{Error, Result};
use crate::model::backward::{self, Sgd};
use crate::model::{zoo, Graph};
use crate::ring::{FixedPoint, PlainTensor};
use crate::runtime::SessionConfig;
use crate::train::{data, EpochReport, Job, TrainConfig};

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
    /// Where micro-batch lanes run: threads or coroutines.
    #[arg(long, default_value = "threads")]
    pub lanes: String,
    /// Number of computing parties, 2..=8.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Run every party as a child process (not supported by train yet: refused).
    #[arg(long)]
    pub processes: bool,
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

fn load_model(a: &TrainArgs) -> Result<Graph> {
    if a.model.ends_with(".onnx") {
        crate::onnx::load(Path::new(&a.model), None)
    } else {
        zoo::build(&a.model, a.seed, a.batch.max(1))
    }
}

fn load_data(a: &TrainArgs, g: &Graph) -> Result<data::Split> {
    match a.data.as_str() {
        "digits" => data::digits(),
        "synthetic" => {
            let classes = g.output_shape().get(1).copied().unwrap_or(0);
            data::synthetic(
                a.synthetic_train,
                a.synthetic_test,
                &g.input_shape()[1..],
                classes,
                a.data_seed,
            )
        }
        other => Err(Error::Config(format!(
            "--data must be digits or synthetic, got '{other}'"
        ))),
    }
}

fn print_epoch(r: &EpochReport, plaintext: bool) {
    let per_s = r.samples as f64 / r.online_s;
    if plaintext {
        println!(
            "epoch {}: loss {:.4}  test accuracy {:.4}  ({:.2} s, {per_s:.0} samples/s, f64)",
            r.epoch, r.loss, r.accuracy, r.online_s
        );
        return;
    }
    let bytes = r.stats.iter().map(|s| s.bytes_sent()).max().unwrap_or(0);
    let rounds = r.stats.iter().map(|s| s.rounds).max().unwrap_or(0);
    println!(
        "epoch {}: loss {:.4}  test accuracy {:.4}  (online {:.2} s, {per_s:.1} samples/s, {:.1} MB/party, {rounds} rounds)",
        r.epoch, r.loss, r.accuracy, r.online_s, bytes as f64 / 1e6
    );
}

/// The CSV row of one epoch: bench's columns with the epoch's training as the measured
/// work (reps = steps).
fn row_of(
    a: &TrainArgs,
    r: &EpochReport,
    link: &crate::link::LinkProfile,
    scheme: &str,
    (k, m): (usize, usize),
) -> Row {
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
        scheme: scheme.into(),
        chunks: k,
        batches_in_flight: m,
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
        // In-process parties (train has no --processes yet); empty for f64 rows.
        channels: if a.plaintext {
            String::new()
        } else {
            "memory".into()
        },
        epoch: Some(r.epoch),
        loss: Some(r.loss),
        accuracy: Some(r.accuracy),
        ..Row::default()
    }
}

fn save_weights(dir: &Path, g: &Graph, w: &[PlainTensor]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Config(format!("--save-weights {}: {e}", dir.display())))?;
    let params = backward::parameters(g)?;
    for (i, (&t, v)) in params.iter().zip(w).enumerate() {
        let name: String = g.tensors[t]
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("{i:02}_{name}.npy"));
        crate::onnx::npy::write(&path, v, crate::onnx::npy::Dtype::F64)?;
    }
    println!("trained weights: {} files in {}", w.len(), dir.display());
    Ok(())
}

pub fn run(a: &TrainArgs) -> Result<()> {
    if a.processes {
        return Err(Error::Config(
            "train --processes is not supported yet: training runs its parties in this process"
                .into(),
        ));
    }
    let schedule = schedule_of(&a.scheme, a.chunks, a.batches_in_flight, &a.lanes)?;
    let link = a.link.profile()?;
    let g = load_model(a)?;
    let split = load_data(a, &g)?;
    let job = Job {
        graph: &g,
        data: &split,
        config: TrainConfig {
            epochs: a.epochs,
            batch: a.batch,
            sgd: Sgd {
                lr: a.lr,
                momentum: a.momentum,
                weight_decay: a.weight_decay,
            },
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
            format!("{} parties, scheme {scheme}, network {}", a.parties, link.name)
        }
    );
    if let Some(out) = &a.out {
        crate::bench::csv_out::upgrade(out)?;
    }
    let mut write_err = None;
    let mut on_epoch = |r: &EpochReport| {
        print_epoch(r, a.plaintext);
        if let (Some(out), None) = (&a.out, &write_err) {
            if let Err(e) = append_row(out, &row_of(a, r, &link, &scheme, km)) {
                write_err = Some(e);
            }
        }
    };
    let (_, weights) = if a.plaintext {
        job.run_plain(&mut on_epoch)?
    } else {
        let session = SessionConfig {
            parties: a.parties,
            fixed: FixedPoint::default(),
            timeout: crate::error::seconds_option("--timeout-s", a.timeout_s, false)?,
            dealer_seed: a.dealer_seed,
        };
        session.check()?;
        job.run_mpc(&session, &link, &mut on_epoch)?
    };
    if let Some(e) = write_err {
        return Err(e);
    }
    if let Some(dir) = &a.save_weights {
        save_weights(dir, &g, &weights)?;
    }
    Ok(())
}
