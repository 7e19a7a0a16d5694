//! Config expansion into jobs: for one point of the matrix, which rows are already in the
//! output (resume), the serial probe over an unshaped link (T_compute, and the traffic and
//! rounds the cost model and T_comm need), and each remaining scheme's job: its chunks k,
//! micro-batches m and lanes (resolved from `auto`) and the predicted time.
//! Depends on runtime::job, sched, bench's Runner and config.

use std::time::Duration;

use super::{measure_runner, BenchConfig, Measured, Point, Reps, Row, RowKey, Runner};
use crate::error::Result;
use crate::ring::FixedPoint;
use crate::runtime::job::JobSpec;
use crate::sched::cost::CostInputs;
use crate::sched::{Lanes, Schedule, Scheme};
use crate::transport::emulator::LinkProfile;

/// What one scheme of a point runs with: its chunks k and micro-batches m (resolved from
/// `auto`), and the cost model's predicted time per repetition, if asked.
pub struct Choice {
    pub scheme: Scheme,
    pub key: RowKey,
    pub k: usize,
    pub m: usize,
    pub lanes: Lanes,
    pub predicted: Option<f64>,
}

/// The job of `scheme` at point `p`.
pub fn spec_of(p: &Point, scheme: Scheme, k: usize, m: usize, lanes: Lanes) -> JobSpec {
    let mut spec = JobSpec::new(&p.model, p.parties, p.batch);
    spec.weights = p.weights;
    spec.schedule = Schedule {
        scheme,
        chunks: k.max(1),
        batches_in_flight: m.max(1),
        lanes,
    };
    spec
}

/// Each scheme's row key at `p`, and its row in `done` if it is there already.
pub fn resumed<'a>(
    p: &Point,
    schemes: &[Scheme],
    done: &'a [Row],
) -> (Vec<RowKey>, Vec<Option<&'a Row>>) {
    let keys: Vec<RowKey> = schemes
        .iter()
        .map(|s| RowKey::new(p, &s.to_string()))
        .collect();
    let resumed = keys
        .iter()
        .map(|k| done.iter().find(|r| r.key() == *k))
        .collect();
    (keys, resumed)
}

/// The serial run over an unshaped, zero-latency link: its runner (which interleaved
/// measurement runs again every turn for T_compute), its measurement, and the cost
/// model's inputs from it.
pub struct Probe {
    pub runner: Runner,
    pub measured: Measured,
    pub ci: CostInputs,
    /// T_comm: the link time of the serial traffic and rounds.
    pub t_comm: f64,
}

pub fn probe(
    p: &Point,
    fixed: FixedPoint,
    cfg_reps: usize,
    reps: Reps,
    timeout: Duration,
) -> Result<Probe> {
    let runner = Runner::new(
        &spec_of(p, Scheme::SERIAL, 1, 1, Lanes::Threads),
        fixed,
        timeout,
    )?
    .over(p.channels);
    let measured = measure_runner(
        &runner,
        &LinkProfile::unshaped(),
        Reps {
            reps: cfg_reps.min(3),
            ..reps
        },
    )?;
    let ci = CostInputs {
        t_compute_s: measured.median_s(),
        link_bytes: measured.link_bytes as f64,
        rounds: measured.rounds as f64,
        bandwidth_mbps: p.link.bandwidth_mbps,
        latency_ms: p.link.latency_ms,
        // Each party sends its share of every weight mask to each peer once.
        weight_mask_bytes: (runner.job.weight_mask_words * 8) as f64,
    };
    let t_comm = ci.t_bw() + ci.t_lat();
    Ok(Probe {
        runner,
        measured,
        ci,
        t_comm,
    })
}

/// The jobs of the schemes not resumed, in the config's order.
pub fn choices(
    cfg: &BenchConfig,
    lanes: Option<Lanes>,
    p: &Point,
    schemes: &[Scheme],
    keys: &[RowKey],
    resumed: &[Option<&Row>],
    ci: &CostInputs,
) -> Vec<Choice> {
    schemes
        .iter()
        .zip(keys)
        .zip(resumed)
        .filter(|(_, r)| r.is_none())
        .map(|((&scheme, key), _)| {
            let (ak, am, _) = ci.choose(
                scheme.inter_linear,
                scheme.inner_layer,
                scheme.inter_batch,
                p.batch,
            );
            let k = cfg.chunks.fixed().unwrap_or(ak);
            let m = cfg.batches_in_flight.fixed().unwrap_or(am);
            let (k, m) = (
                if scheme.inner_layer { k } else { 1 },
                if scheme.inter_batch { m } else { 1 },
            );
            let auto = cfg.chunks.fixed().is_none() || cfg.batches_in_flight.fixed().is_none();
            Choice {
                scheme,
                key: key.clone(),
                k,
                m,
                lanes: lanes.unwrap_or_else(|| ci.lanes(m)),
                predicted: (auto || cfg.predict)
                    .then(|| ci.predict_scheme(scheme.inter_linear, k, m)),
            }
        })
        .collect()
}
