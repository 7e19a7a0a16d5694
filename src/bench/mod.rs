//! Benchmark harness: `mpc-pipe bench --config FILE [--out FILE.csv]` runs a matrix of
//! models × network profiles × schemes × batch sizes × party counts × weight modes, with
//! warm-up and repetitions, and appends one CSV row per (configuration, scheme).
//! Depends on runtime, sched, model, offline, transport::emulator.
//!
//! Measurement. Each repetition gets fresh material from the dealer (offline, untimed);
//! the online phase is timed per party from after session setup to the revealed output.
//! A repetition's latency is the slowest party's online time; online_s sums them over the
//! measured repetitions, so throughput_per_s = batch · reps / online_s. comm_wait_s is the
//! slowest party's time blocked in `wait` (summed over its lanes, so overlapping lanes can
//! count the same wall time twice); compute_busy_s is the process CPU time during the
//! online phases divided by the number of parties (all parties share this process and do
//! symmetric work). cpu_util = compute_busy_s / online_s (can exceed 1 with parallel
//! kernels); link_util = bytes_per_party·8·reps / (bandwidth · online_s), empty when
//! unshaped. material is `eager` when every party's material was expanded before the
//! online clock started, `lazy` when it was too large (runtime::local::EAGER_MATERIAL_BYTES)
//! and each request was drawn from its seed when taken: those online times include the
//! AES-CTR expansion (party 0's corrections are always dealt offline). Empty in rows
//! written before the column existed.
//!
//! Robustness. Rows are appended one `write` each to a file opened in append mode and
//! flushed with fsync, so a crash leaves every finished row intact; on start, rows already
//! in the output file are read and their configurations skipped (resume).

pub mod config;
pub mod csv_out;

use std::io::Write;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::{Error, Result};
use crate::model::Weights;
use crate::offline::deal;
use crate::runtime::job::{self, JobSpec};
use crate::runtime::local::{fresh_session, material_mode, run_online_with_link, MaterialMode};
use crate::runtime::{record_plan, SessionConfig};
use crate::sched::cost::CostInputs;
use crate::sched::{Schedule, Scheme};
use crate::transport::emulator::LinkProfile;

pub use config::{BenchConfig, Count};
pub use csv_out::{Row, RowKey};

/// Process CPU time (user + system) in seconds, from /proc/self/stat.
pub fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Results of the repetitions of one (configuration, scheme).
pub struct Measured {
    pub latencies_s: Vec<f64>,
    pub online_s: f64,
    pub cpu_s: f64,
    pub wait_s: f64,
    pub bytes_per_party: u64,
    pub rounds: u64,
    pub max_abs_err: f64,
    /// Lazy if any repetition drew its material on demand (inside the online times).
    pub material: MaterialMode,
}

/// One point of the matrix, without the scheme.
#[derive(Clone, Debug)]
pub struct Point {
    pub model: String,
    pub batch: usize,
    pub parties: usize,
    pub weights: Weights,
    pub link: LinkProfile,
}

/// Upper bound on the repetitions `min_time_s` can add.
pub const MAX_REPS: usize = 10_000;

/// How many repetitions to measure: at least `reps`, and more (up to MAX_REPS) until the
/// measured online times add up to `min_time_s`.
#[derive(Clone, Copy, Debug)]
pub struct Reps {
    pub warmup: usize,
    pub reps: usize,
    pub min_time_s: f64,
}

impl Measured {
    /// The median repetition latency: what η and the cost model use, being robust to the
    /// odd repetition that a noisy host slowed down.
    pub fn median_s(&self) -> f64 {
        median(&self.latencies_s)
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Run the measured repetitions of `spec` on `link` after `warmup` unmeasured ones.
pub fn measure(
    spec: &JobSpec,
    link: &LinkProfile,
    reps: Reps,
    timeout: Duration,
) -> Result<Measured> {
    let Reps {
        warmup,
        reps,
        min_time_s,
    } = reps;
    let job = job::build(spec)?;
    let cfg = SessionConfig {
        parties: spec.parties,
        fixed: Default::default(),
        timeout,
    };
    let plan = record_plan(&cfg, &*job.program)?;
    let mut m = Measured {
        latencies_s: Vec::new(),
        online_s: 0.0,
        cpu_s: 0.0,
        wait_s: 0.0,
        bytes_per_party: 0,
        rounds: 0,
        max_abs_err: 0.0,
        material: MaterialMode::Eager,
    };
    let mut rep = 0usize;
    while rep < warmup + reps || (m.online_s < min_time_s && rep < warmup + MAX_REPS) {
        rep += 1;
        let material = deal(&plan, spec.parties, fresh_session());
        let mode = material_mode(&material);
        let cpu0 = process_cpu_s();
        let outs = run_online_with_link(&cfg, link, material, &*job.program)?;
        let cpu = process_cpu_s() - cpu0;
        if rep <= warmup {
            continue;
        }
        if mode == MaterialMode::Lazy {
            m.material = mode;
        }
        let lat = outs.iter().map(|o| o.online_s).fold(0.0, f64::max);
        m.latencies_s.push(lat);
        m.online_s += lat;
        m.cpu_s += cpu / spec.parties as f64;
        m.wait_s += outs
            .iter()
            .map(|o| o.stats.wait_ns() as f64 * 1e-9)
            .fold(0.0, f64::max);
        m.bytes_per_party = outs.iter().map(|o| o.stats.bytes_sent()).max().unwrap_or(0);
        m.rounds = outs.iter().map(|o| o.stats.rounds).max().unwrap_or(0);
        m.max_abs_err = m
            .max_abs_err
            .max(outs[0].value.max_abs_diff(&job.reference));
    }
    Ok(m)
}

fn percentile_ms(lat: &[f64], q: f64) -> f64 {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    for &l in lat {
        h.saturating_record((l * 1e6).max(1.0) as u64);
    }
    h.value_at_quantile(q) as f64 / 1e3
}

/// Short commit id of the working tree, if this is a git checkout.
pub fn commit_id() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Run the whole matrix, appending rows to `out`; returns every row of this configuration
/// matrix (resumed ones included) for the summary.
pub fn run_matrix(cfg: &BenchConfig, out: &std::path::Path) -> Result<Vec<Row>> {
    csv_out::upgrade(out)?;
    let done = csv_out::read_rows(out)?;
    let points = cfg.points()?;
    let total = points.len() * cfg.schemes.len();
    let (commit, host) = (commit_id(), host_name());
    let isa = crate::kernels::selected()
        .map(|k| k.isa.name())
        .unwrap_or("scalar");
    let mut rows = Vec::new();
    let started = Instant::now();
    let mut finished = 0usize;
    let reps = Reps {
        warmup: cfg.warmup,
        reps: cfg.reps,
        min_time_s: cfg.min_time_s,
    };
    for p in &points {
        let mut serial_throughput: Option<f64> = None;
        let mut serial_latency: Option<f64> = None;
        let mut t_compute: Option<(f64, u64, u64)> = None;
        for scheme_name in &cfg.schemes {
            finished += 1;
            let scheme: Scheme = scheme_name.parse()?;
            let key = RowKey::new(p, &scheme.to_string());
            if let Some(r) = done.iter().find(|r| r.key() == key) {
                if scheme.is_serial() {
                    serial_throughput = Some(r.throughput_per_s);
                    serial_latency = Some(r.latency_ms_p50 / 1e3);
                }
                rows.push(r.clone());
                eprintln!(
                    "[{finished}/{total}] {key} (already in {}, skipped)",
                    out.display()
                );
                continue;
            }
            let mut spec = JobSpec::new(&p.model, p.parties, p.batch);
            spec.weights = p.weights;
            let timeout = Duration::from_secs_f64(cfg.timeout_s);
            // `auto`: the cost model needs the serial compute time on an unshaped link and
            // the serial traffic; measured once per point.
            let (mut k, mut m) = (
                cfg.chunks.fixed().unwrap_or(0),
                cfg.batches_in_flight.fixed().unwrap_or(0),
            );
            let mut predicted = None;
            if t_compute.is_none() {
                // T_compute: the serial run over an unshaped, zero-latency link (median
                // repetition); also the serial traffic and rounds for T_comm and the model.
                let r = Reps {
                    reps: cfg.reps.min(3),
                    ..reps
                };
                let s = measure(&spec, &LinkProfile::unshaped(), r, timeout)?;
                t_compute = Some((s.median_s(), s.bytes_per_party, s.rounds));
            }
            let (tc, bytes, rounds) = t_compute.unwrap();
            let t_comm = p
                .link
                .bandwidth_mbps
                .map_or(0.0, |mbps| bytes as f64 * 8.0 / (mbps * 1e6))
                + rounds as f64 * p.link.latency_ms * 1e-3;
            if k == 0 || m == 0 || cfg.predict {
                let ci = CostInputs {
                    t_compute_s: tc,
                    bytes_per_party: bytes as f64,
                    rounds: rounds as f64,
                    bandwidth_mbps: p.link.bandwidth_mbps,
                    latency_ms: p.link.latency_ms,
                };
                let (ak, am, _) = ci.choose(scheme.inner_layer, scheme.inter_batch, p.batch);
                if k == 0 {
                    k = ak;
                }
                if m == 0 {
                    m = am;
                }
                predicted = Some(ci.predict(
                    if scheme.inner_layer { k } else { 1 },
                    if scheme.inter_batch { m } else { 1 },
                ));
            }
            spec.schedule = Schedule {
                scheme,
                chunks: k.max(1),
                batches_in_flight: m.max(1),
            };
            let elapsed = started.elapsed().as_secs_f64();
            let eta = if finished > 1 {
                elapsed / (finished - 1) as f64 * (total - finished + 1) as f64
            } else {
                0.0
            };
            eprintln!(
                "[{finished}/{total}] {key} k={k} m={m}  (elapsed {elapsed:.0}s, eta {eta:.0}s)"
            );
            let meas = measure(&spec, &p.link, reps, timeout)
                .map_err(|e| Error::Config(format!("{key}: {e}")))?;
            let n_reps = meas.latencies_s.len();
            let throughput = (p.batch * n_reps) as f64 / meas.online_s;
            let t_scheme = meas.median_s();
            if scheme.is_serial() {
                serial_throughput = Some(throughput);
                serial_latency = Some(t_scheme);
            }
            // η = (T_serial - T_scheme) / (T_serial - max(T_compute, T_comm)), each T the
            // median repetition.
            let overlap_efficiency =
                serial_latency
                    .filter(|_| !scheme.is_serial())
                    .and_then(|ts| {
                        let room = ts - tc.max(t_comm);
                        (room > 0.0).then(|| (ts - t_scheme) / room)
                    });
            let link_util = p.link.bandwidth_mbps.map(|mbps| {
                meas.bytes_per_party as f64 * 8.0 * n_reps as f64 / (mbps * 1e6 * meas.online_s)
            });
            let row = Row {
                model: p.model.clone(),
                batch: p.batch,
                parties: p.parties,
                weights: format!("{:?}", p.weights).to_lowercase(),
                network: p.link.name.clone(),
                bandwidth_mbps: p.link.bandwidth_mbps,
                latency_ms: p.link.latency_ms,
                scheme: scheme.to_string(),
                chunks: if scheme.inner_layer { k } else { 1 },
                batches_in_flight: if scheme.inter_batch { m } else { 1 },
                reps: n_reps,
                latency_ms_p50: percentile_ms(&meas.latencies_s, 0.5),
                latency_ms_p99: percentile_ms(&meas.latencies_s, 0.99),
                throughput_per_s: throughput,
                online_s: meas.online_s,
                compute_busy_s: meas.cpu_s,
                comm_wait_s: meas.wait_s,
                bytes_per_party: meas.bytes_per_party,
                rounds: meas.rounds,
                cpu_util: meas.cpu_s / meas.online_s,
                link_util,
                max_abs_err: meas.max_abs_err,
                speedup_vs_serial: serial_throughput.map(|s| throughput / s),
                commit: commit.clone(),
                host: host.clone(),
                isa: isa.to_string(),
                predicted_s: predicted.map(|t| t * n_reps as f64),
                t_compute_s: tc,
                t_comm_s: t_comm,
                overlap_efficiency,
                material: meas.material.to_string(),
            };
            csv_out::append_row(out, &row)?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Print each scheme's gain over serial and its overlap efficiency, per configuration.
pub fn print_summary(rows: &[Row], w: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<18} {:>5} {:>2} {:>8} {:>6} {:<38} {:>9} {:>9} {:>9} {:>6}",
        "model", "batch", "N", "weights", "net", "scheme", "p50 ms", "inf/s", "vs serial", "eta"
    )?;
    for r in rows {
        let gain = r
            .speedup_vs_serial
            .map_or("-".to_string(), |g| format!("{g:.2}x"));
        let eta = r
            .overlap_efficiency
            .map_or("-".to_string(), |e| format!("{e:.2}"));
        writeln!(
            w,
            "{:<18} {:>5} {:>2} {:>8} {:>6} {:<38} {:>9.2} {:>9.2} {:>9} {:>6}",
            r.model,
            r.batch,
            r.parties,
            r.weights,
            r.network,
            r.scheme,
            r.latency_ms_p50,
            r.throughput_per_s,
            gain,
            eta
        )?;
    }
    Ok(())
}
