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
//! kernels); link_util = link_bytes·8·reps / (bandwidth · online_s), empty when
//! unshaped. link_bytes is what the busiest directed link carried: the most any party sent
//! to one peer. Every directed link has the profile's bandwidth to itself, so with more
//! than two parties a party's bytes (bytes_per_party, to all its peers together) go out
//! over several links at once; T_comm and the cost model use link_bytes for that reason.
//! material is `eager` when every party's material was expanded before the
//! online clock started, `lazy` when it was too large (runtime::local::EAGER_MATERIAL_BYTES)
//! and each request was drawn from its seed when taken: those online times include the
//! AES-CTR expansion (party 0's corrections are always dealt offline). Empty in rows
//! written before the column existed. trunc is the truncation mode after products (`local`:
//! each party divides its share, CrypTen's 2-party protocol; `dealer`: one round with a
//! dealer's mask, see proto::trunc), from the config's `trunc` key or the default for the
//! party count; rows of the other mode are another configuration for resume. Empty in rows
//! written before the column existed (they used the default).
//!
//! Robustness. Rows are appended one `write` each to a file opened in append mode and
//! flushed with fsync, so a crash leaves every finished row intact; on start, rows already
//! in the output file are read and their configurations skipped (resume). A row is written
//! as soon as it is measured; with `interleave`, the rows of a configuration finish
//! together, after its last turn.

pub mod config;
pub mod csv_out;
pub mod progress;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error::{Error, Result};
use crate::model::Weights;
use crate::offline::deal;
use crate::ring::{FixedPoint, Trunc};
use crate::runtime::job::{self, JobSpec};
use crate::runtime::local::{fresh_session, material_mode, run_online_with_link, MaterialMode};
use crate::runtime::{record_plan, SessionConfig};
use crate::sched::cost::CostInputs;
use crate::sched::{Lanes, Schedule, Scheme};
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
    /// The most bytes any party sent to one peer: the busiest directed link's traffic.
    pub link_bytes: u64,
    pub rounds: u64,
    /// Messages the busiest party sent in one repetition.
    pub messages: u64,
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
    /// Resolved for `parties` (never the unset default).
    pub trunc: Trunc,
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

/// A job ready to run repetitions: built, with its plan recorded (untimed).
pub struct Runner {
    spec: JobSpec,
    job: job::Job,
    cfg: SessionConfig,
    plan: crate::offline::Plan,
}

impl Runner {
    pub fn new(spec: &JobSpec, fixed: FixedPoint, timeout: Duration) -> Result<Runner> {
        let job = job::build(spec)?;
        let cfg = SessionConfig {
            parties: spec.parties,
            fixed,
            timeout,
            dealer_seed: None,
        };
        let plan = record_plan(&cfg, &*job.program)?;
        Ok(Runner {
            spec: spec.clone(),
            job,
            cfg,
            plan,
        })
    }

    /// One repetition on `link`: fresh material from the dealer (offline, untimed), then
    /// the timed online phase, added to `into` (None: a warm-up).
    pub fn rep(&self, link: &LinkProfile, into: Option<&mut Measured>) -> Result<()> {
        let material = deal(&self.plan, self.spec.parties, fresh_session());
        let mode = material_mode(&material);
        let cpu0 = process_cpu_s();
        let outs = run_online_with_link(&self.cfg, link, material, &*self.job.program)?;
        let cpu = process_cpu_s() - cpu0;
        let Some(m) = into else { return Ok(()) };
        if mode == MaterialMode::Lazy {
            m.material = mode;
        }
        let lat = outs.iter().map(|o| o.online_s).fold(0.0, f64::max);
        m.latencies_s.push(lat);
        m.online_s += lat;
        m.cpu_s += cpu / self.spec.parties as f64;
        m.wait_s += outs
            .iter()
            .map(|o| o.stats.wait_ns() as f64 * 1e-9)
            .fold(0.0, f64::max);
        m.bytes_per_party = outs.iter().map(|o| o.stats.bytes_sent()).max().unwrap_or(0);
        m.link_bytes = outs
            .iter()
            .flat_map(|o| o.stats.per_peer.iter().map(|p| p.bytes_sent))
            .max()
            .unwrap_or(0);
        m.rounds = outs.iter().map(|o| o.stats.rounds).max().unwrap_or(0);
        m.messages = outs.iter().map(|o| o.stats.msgs_sent()).max().unwrap_or(0);
        m.max_abs_err = m
            .max_abs_err
            .max(outs[0].value.max_abs_diff(&self.job.reference));
        Ok(())
    }
}

impl Measured {
    /// The median repetition latency: what η and the cost model use, being robust to the
    /// odd repetition that a noisy host slowed down.
    pub fn median_s(&self) -> f64 {
        median(&self.latencies_s)
    }
    fn new() -> Self {
        Measured {
            latencies_s: Vec::new(),
            online_s: 0.0,
            cpu_s: 0.0,
            wait_s: 0.0,
            bytes_per_party: 0,
            link_bytes: 0,
            rounds: 0,
            messages: 0,
            max_abs_err: 0.0,
            material: MaterialMode::Eager,
        }
    }
    /// Whether `reps` asks for another repetition.
    fn wants_more(&self, reps: &Reps) -> bool {
        let n = self.latencies_s.len();
        n < reps.reps || (self.online_s < reps.min_time_s && n < MAX_REPS)
    }
}

/// Run the measured repetitions of `spec` on `link` after `warmup` unmeasured ones.
pub fn measure(
    spec: &JobSpec,
    fixed: FixedPoint,
    link: &LinkProfile,
    reps: Reps,
    timeout: Duration,
) -> Result<Measured> {
    measure_runner(&Runner::new(spec, fixed, timeout)?, link, reps)
}

/// As `measure`, with a runner built already.
pub fn measure_runner(runner: &Runner, link: &LinkProfile, reps: Reps) -> Result<Measured> {
    for _ in 0..reps.warmup {
        runner.rep(link, None)?;
    }
    let mut m = Measured::new();
    while m.wants_more(&reps) {
        runner.rep(link, Some(&mut m))?;
    }
    Ok(m)
}

/// Measure several runners in turns, one repetition each per turn, until every runner
/// marked `paced` has what `reps` asks for: a host whose speed drifts over seconds then
/// slows them all alike, and repetition t of every runner (`latencies_s[t]`) comes from the
/// same turn, so they can be compared pairwise. Each runner has its own link.
pub fn measure_interleaved(
    runners: &[(&Runner, &LinkProfile, bool)],
    reps: Reps,
) -> Result<Vec<Measured>> {
    for _ in 0..reps.warmup {
        for (r, link, _) in runners {
            r.rep(link, None)?;
        }
    }
    let mut ms: Vec<Measured> = runners.iter().map(|_| Measured::new()).collect();
    while runners
        .iter()
        .zip(&ms)
        .any(|((_, _, paced), m)| *paced && m.wants_more(&reps))
    {
        for ((r, link, _), m) in runners.iter().zip(&mut ms) {
            r.rep(link, Some(m))?;
        }
    }
    Ok(ms)
}

/// η = (T_serial - T_scheme) / (T_serial - max(T_compute, T_comm)), or None when serial is
/// not slower than the bound (no room to overlap anything).
fn eta(t_serial: f64, t_scheme: f64, t_compute: f64, t_comm: f64) -> Option<f64> {
    let room = t_serial - t_compute.max(t_comm);
    (room > 0.0).then(|| (t_serial - t_scheme) / room)
}

/// The median of η over turns: each turn's serial, scheme and T_compute repetitions ran
/// back to back, so host drift between turns cancels.
fn paired_eta(serial: &[f64], scheme: &[f64], compute: &[f64], t_comm: f64) -> Option<f64> {
    let per_turn: Vec<f64> = serial
        .iter()
        .zip(scheme)
        .zip(compute)
        .filter_map(|((&s, &x), &c)| eta(s, x, c, t_comm))
        .collect();
    (!per_turn.is_empty()).then(|| median(&per_turn))
}

fn percentile_ms(lat: &[f64], q: f64) -> f64 {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    for &l in lat {
        h.saturating_record((l * 1e6).max(1.0) as u64);
    }
    h.value_at_quantile(q) as f64 / 1e3
}

/// Short commit id of the checkout this binary was built from (its crate directory), with
/// `-dirty` when the tracked sources there differ from that commit: such a run did not
/// measure the commit. "unknown" outside a git checkout.
pub fn commit_id() -> String {
    commit_id_of(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// `commit_id` of the checkout at `dir`. Only what builds the binary counts as a source
/// (src/, benches/, Cargo.toml, Cargo.lock): a sweep appends to results/ as it runs, and
/// notes or configs do not change what is measured.
pub fn commit_id_of(dir: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(id) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let sources = ["src", "benches", "Cargo.toml", "Cargo.lock"];
    let status = [
        &["status", "--porcelain", "--untracked-files=no", "--"][..],
        &sources,
    ]
    .concat();
    match git(&status) {
        Some(changed) if !changed.is_empty() => format!("{id}-dirty"),
        _ => id,
    }
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What one scheme of a point runs with: its chunks k and micro-batches m (resolved from
/// `auto`), and the cost model's predicted time per repetition, if asked.
struct Choice {
    scheme: Scheme,
    key: RowKey,
    k: usize,
    m: usize,
    lanes: Lanes,
    predicted: Option<f64>,
}

/// Run the whole matrix, appending rows to `out`; returns every row of this configuration
/// matrix (resumed ones included) for the summary.
pub fn run_matrix(cfg: &BenchConfig, out: &std::path::Path) -> Result<Vec<Row>> {
    let _lock = csv_out::lock(out)?;
    csv_out::upgrade(out)?;
    let done = csv_out::read_rows(out)?;
    let points = cfg.points()?;
    let schemes = cfg
        .schemes
        .iter()
        .map(|s| s.parse::<Scheme>())
        .collect::<Result<Vec<_>>>()?;
    let total = points.len() * schemes.len();
    let (commit, host) = (commit_id(), host_name());
    let isa = crate::kernels::selected()
        .map(|k| k.isa.name())
        .unwrap_or("scalar");
    let mut rows = Vec::new();
    let bar = progress::Progress::new(total);
    let mut finished = 0usize;
    let reps = Reps {
        warmup: cfg.warmup,
        reps: cfg.reps,
        min_time_s: cfg.min_time_s,
    };
    let timeout = Duration::from_secs_f64(cfg.timeout_s);
    let lanes = cfg.fixed_lanes()?;
    for p in &points {
        let mut base = JobSpec::new(&p.model, p.parties, p.batch);
        base.weights = p.weights;
        let fixed = FixedPoint::default().with_trunc(Some(p.trunc));
        let spec_of = |scheme: Scheme, k: usize, m: usize, lanes: Lanes| {
            let mut spec = base.clone();
            spec.schedule = Schedule {
                scheme,
                chunks: k.max(1),
                batches_in_flight: m.max(1),
                lanes,
            };
            spec
        };
        let keys: Vec<RowKey> = schemes
            .iter()
            .map(|s| RowKey::new(p, &s.to_string()))
            .collect();
        let resumed: Vec<Option<&Row>> = keys
            .iter()
            .map(|k| done.iter().find(|r| r.key() == *k))
            .collect();
        for (key, r) in keys.iter().zip(&resumed) {
            if r.is_some() {
                finished += 1;
                bar.skip(
                    finished - 1,
                    &format!(
                        "[{finished}/{total}] {key} (already in {}, skipped)",
                        out.display()
                    ),
                );
            }
        }
        if resumed.iter().all(Option::is_some) {
            rows.extend(resumed.iter().map(|r| (*r).unwrap().clone()));
            continue;
        }
        // T_compute: the serial run over an unshaped, zero-latency link (median
        // repetition); also the serial traffic and rounds for T_comm and the cost model,
        // which `auto` needs before the schemes run.
        let unshaped = LinkProfile::unshaped();
        let serial_unshaped = Runner::new(
            &spec_of(Scheme::SERIAL, 1, 1, Lanes::Threads),
            fixed,
            timeout,
        )?;
        let probe = measure_runner(
            &serial_unshaped,
            &unshaped,
            Reps {
                reps: cfg.reps.min(3),
                ..reps
            },
        )?;
        let ci = CostInputs {
            t_compute_s: probe.median_s(),
            link_bytes: probe.link_bytes as f64,
            rounds: probe.rounds as f64,
            bandwidth_mbps: p.link.bandwidth_mbps,
            latency_ms: p.link.latency_ms,
            // Each party sends its share of every weight mask to each peer once.
            weight_mask_bytes: (serial_unshaped.job.weight_mask_words * 8) as f64,
        };
        let t_comm = ci.t_bw() + ci.t_lat();
        let choices: Vec<Choice> = schemes
            .iter()
            .zip(&keys)
            .zip(&resumed)
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
            .collect();
        // Serial's throughput and median latency, once known (from the file, or measured).
        let mut serial = schemes.iter().zip(&resumed).find_map(|(s, r)| {
            r.filter(|_| s.is_serial())
                .map(|r| (r.throughput_per_s, r.latency_ms_p50 / 1e3))
        });
        let serial_of = |m: &Measured| {
            let n = m.latencies_s.len();
            ((p.batch * n) as f64 / m.online_s, m.median_s())
        };
        // A row from a measurement; `turns`: serial's and T_compute's repetitions taken in
        // the same turns (interleaved), for a paired η.
        let row_of = |c: &Choice,
                      meas: &Measured,
                      serial: Option<(f64, f64)>,
                      turns: Option<(&Measured, &Measured)>,
                      tc: f64| {
            let n_reps = meas.latencies_s.len();
            let throughput = (p.batch * n_reps) as f64 / meas.online_s;
            let overlap_efficiency = if c.scheme.is_serial() {
                None
            } else {
                match turns {
                    Some((st, ct)) => {
                        paired_eta(&st.latencies_s, &meas.latencies_s, &ct.latencies_s, t_comm)
                    }
                    None => serial.and_then(|(_, ts)| eta(ts, meas.median_s(), tc, t_comm)),
                }
            };
            let link_util = p.link.bandwidth_mbps.map(|mbps| {
                meas.link_bytes as f64 * 8.0 * n_reps as f64 / (mbps * 1e6 * meas.online_s)
            });
            Row {
                model: p.model.clone(),
                batch: p.batch,
                parties: p.parties,
                weights: format!("{:?}", p.weights).to_lowercase(),
                network: p.link.name.clone(),
                bandwidth_mbps: p.link.bandwidth_mbps,
                latency_ms: p.link.latency_ms,
                scheme: c.scheme.to_string(),
                chunks: c.k,
                batches_in_flight: c.m,
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
                speedup_vs_serial: serial.map(|(s, _)| throughput / s),
                commit: commit.clone(),
                host: host.clone(),
                isa: isa.to_string(),
                predicted_s: c.predicted.map(|t| t * n_reps as f64),
                t_compute_s: tc,
                t_comm_s: t_comm,
                overlap_efficiency,
                material: meas.material.to_string(),
                trunc: p.trunc.to_string(),
                link_bytes: Some(meas.link_bytes),
                lanes: c.lanes.to_string(),
                messages: Some(meas.messages),
            }
        };
        if cfg.interleave {
            // Every row of the point is written once all its turns are done.
            let what: Vec<String> = choices
                .iter()
                .map(|c| format!("{} k={} m={}", c.scheme, c.k, c.m))
                .collect();
            bar.at(
                finished,
                &format!("{} interleaved: {}", choices[0].key, what.join(", ")),
            );
            let runners = choices
                .iter()
                .map(|c| {
                    Runner::new(&spec_of(c.scheme, c.k, c.m, c.lanes), fixed, timeout)
                        .map_err(|e| Error::Config(format!("{}: {e}", c.key)))
                })
                .collect::<Result<Vec<_>>>()?;
            // The probe's unshaped serial run (T_compute) goes every turn, but its own
            // min_time_s does not make the others repeat.
            let list: Vec<(&Runner, &LinkProfile, bool)> =
                std::iter::once((&serial_unshaped, &unshaped, false))
                    .chain(runners.iter().map(|r| (r, &p.link, true)))
                    .collect();
            let mut measured = measure_interleaved(&list, reps)?;
            let tc_turns = measured.remove(0);
            finished += choices.len();
            let tc = tc_turns.median_s();
            let serial_turns = choices
                .iter()
                .zip(&measured)
                .find(|(c, _)| c.scheme.is_serial())
                .map(|(_, m)| m);
            serial = serial_turns.map(serial_of).or(serial);
            let turns = serial_turns.map(|st| (st, &tc_turns));
            let mut fresh = choices.iter().zip(&measured);
            for r in &resumed {
                let row = match r {
                    Some(r) => (*r).clone(),
                    None => {
                        let (c, meas) = fresh.next().expect("a measurement per scheme not resumed");
                        let row = row_of(c, meas, serial, turns, tc);
                        csv_out::append_row(out, &row)?;
                        row
                    }
                };
                rows.push(row);
            }
        } else {
            // One scheme after another, each row written as soon as it is measured.
            let tc = probe.median_s();
            let mut fresh = choices.iter();
            for r in &resumed {
                if let Some(r) = r {
                    rows.push((*r).clone());
                    continue;
                }
                let c = fresh.next().expect("a choice per scheme not resumed");
                bar.at(finished, &format!("{} k={} m={}", c.key, c.k, c.m));
                finished += 1;
                let meas = measure(
                    &spec_of(c.scheme, c.k, c.m, c.lanes),
                    fixed,
                    &p.link,
                    reps,
                    timeout,
                )
                .map_err(|e| Error::Config(format!("{}: {e}", c.key)))?;
                if c.scheme.is_serial() {
                    serial = Some(serial_of(&meas));
                }
                let row = row_of(c, &meas, serial, None, tc);
                csv_out::append_row(out, &row)?;
                rows.push(row);
            }
        }
    }
    bar.finish(finished);
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
