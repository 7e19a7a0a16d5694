//! Benchmark harness: `mpc-pipe bench --config FILE [--out FILE.csv]` runs a matrix of
//! models × network profiles × schemes × batch sizes × party counts × weight modes, with
//! warm-up and repetitions, and appends one CSV row per (configuration, scheme).
//! Depends on runtime, sched, model, offline, profile (traces), transport::emulator.
//!
//! Files: bound.rs (a job's floor: its products at the GEMM rate, its keystream at the
//! PRG rate), config.rs (the TOML matrix), jobs.rs (a point's resumed rows, serial probe and
//! per-scheme jobs), row.rs (a row from a measurement, η and its 5% threshold), csv_out.rs
//! (the CSV), progress.rs; this file measures: repetitions, interleaved turns, the sweep.
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
//! online clock started, `streamed` when it was too large (runtime::local::Dealing::auto)
//! and a streaming dealer made it beside the online phase: those online times include
//! waits for keys not made yet, and cpu includes the dealer's (`lazy`, in older rows: each
//! request drawn from its seed when taken). deal_s is the dealer's wall time upfront, its
//! busy time streamed; e2e_s is plan_s plus the repetition's measured wall time. Empty in
//! rows written before the column existed. trunc is the truncation mode after products (`local`:
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

pub mod bound;
mod commit;
pub mod config;
pub mod csv_out;
pub mod jobs;
pub mod progress;
pub mod row;

pub use commit::commit_id_of;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::Weights;
use crate::profile::Recorder;
use crate::ring::{FixedPoint, Protocols, Trunc};
use crate::runtime::job::{self, JobSpec};
use crate::runtime::local::{
    fresh_session, run_dealt, run_online_traced, Channels, Dealing, MaterialMode,
};
use crate::runtime::SessionConfig;
use crate::sched::{Lanes, Scheme};
use crate::transport::emulator::LinkProfile;

pub use config::{BenchConfig, Count};
pub use csv_out::{Row, RowKey};
pub use jobs::Choice;
pub use row::{row_of, Serial, Stamp, ETA_MIN_ROOM};

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
    /// The plan's dry run for this configuration (recorded once, see `Runner`), seconds.
    pub plan_s: f64,
    /// Per repetition: the dealer's and the material expansion's wall time, seconds.
    pub deal_s: Vec<f64>,
    pub expand_s: Vec<f64>,
    /// Per repetition: wall time from the dealer's start to the last party's output
    /// (deal, expansion and online phase, overlapping when streamed), seconds.
    pub wall_s: Vec<f64>,
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
    /// Comparison protocols (bench key `protocols`; the CSV's `protocols` column).
    pub protocols: Protocols,
    /// The links between the parties (bench key `channels`; the CSV's `channels` column).
    pub channels: Channels,
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
    plan: std::sync::Arc<crate::offline::Plan>,
    /// Seconds the dry run took when this configuration's plan was recorded.
    plan_s: f64,
    channels: Channels,
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
        // One dry run per configuration: every scheme of it records the same plan.
        let (plan, plan_s) = job::cached_plan_timed(&job, &cfg)?;
        Ok(Runner {
            spec: spec.clone(),
            job,
            cfg,
            plan,
            plan_s,
            channels: Channels::Memory,
        })
    }

    /// The same runner with its parties talking over `channels` (default: in memory).
    pub fn over(mut self, channels: Channels) -> Runner {
        self.channels = channels;
        self
    }

    /// One repetition on `link`: fresh material from the dealer (offline, untimed), then
    /// the timed online phase, added to `into` (None: a warm-up).
    pub fn rep(&self, link: &LinkProfile, into: Option<&mut Measured>) -> Result<()> {
        let dealing = Dealing::auto(&self.plan, self.cfg.parties)?;
        // Streamed, the dealer runs beside the online phase, so its CPU time counts in
        // compute_busy_s; upfront it is done before cpu0.
        let t_wall = std::time::Instant::now();
        let cpu0 = process_cpu_s();
        let run = run_dealt(
            &self.cfg,
            link,
            &self.plan,
            dealing,
            &*self.job.program,
            None,
            self.channels,
        )?;
        let cpu = process_cpu_s() - cpu0;
        let wall_s = t_wall.elapsed().as_secs_f64();
        let (outs, mode) = (run.outs, run.mode);
        let Some(m) = into else { return Ok(()) };
        if mode != MaterialMode::Eager {
            m.material = mode;
        }
        let lat = outs.iter().map(|o| o.online_s).fold(0.0, f64::max);
        m.latencies_s.push(lat);
        m.plan_s = self.plan_s;
        m.deal_s
            .push(outs.iter().map(|o| o.offline.deal_s).fold(0.0, f64::max));
        m.wall_s.push(wall_s);
        m.expand_s
            .push(outs.iter().map(|o| o.offline.expand_s).fold(0.0, f64::max));
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

impl Runner {
    /// One more repetition on `link`, untimed, with every wait recorded; its timeline is
    /// written to `path` as Chrome trace events.
    pub fn trace_rep(&self, link: &LinkProfile, path: &Path) -> Result<()> {
        let material = crate::runtime::deal_in_process(&self.plan, &self.cfg, fresh_session());
        let recorder = Recorder::new();
        run_online_traced(
            &self.cfg,
            link,
            material,
            &*self.job.program,
            Some(&recorder),
        )?;
        let f = std::fs::File::create(path)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", path.display())))?;
        let mut w = std::io::BufWriter::new(f);
        recorder.write_chrome_trace(&mut w)?;
        w.flush()?;
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
            plan_s: 0.0,
            deal_s: Vec::new(),
            expand_s: Vec::new(),
            wall_s: Vec::new(),
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

/// Short commit id of the sources this binary was built from, with `-dirty` when the
/// tracked sources differed from that commit: such a run did not measure the commit.
/// Recorded at build time (build.rs), so a binary run after its checkout moved on still
/// names its own build; without git at build time, the checkout's id at run time, and
/// "unknown" outside a git checkout.
pub fn commit_id() -> String {
    match option_env!("MPC_PIPE_BUILD_COMMIT") {
        Some(id) => id.to_string(),
        None => commit_id_of(Path::new(env!("CARGO_MANIFEST_DIR"))),
    }
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Run the whole matrix, appending rows to `out`; returns every row of this configuration
/// matrix (resumed ones included) for the summary.
pub fn run_matrix(cfg: &BenchConfig, out: &Path) -> Result<Vec<Row>> {
    run_matrix_traced(cfg, out, None)
}

/// As `run_matrix`, keeping one timeline per measured row in `trace_dir` (or the config's
/// `trace_dir`): an extra, untimed repetition of the row's job with every wait recorded,
/// written as `trace-<model>-b<batch>-n<parties>-<weights>-<network>-<trunc>--<scheme>.json`
/// (Chrome trace events, as `run --trace`). Rows resumed from the file get none.
pub fn run_matrix_traced(
    cfg: &BenchConfig,
    out: &Path,
    trace_dir: Option<&Path>,
) -> Result<Vec<Row>> {
    // The matrix is checked before the CSV is touched: a config error leaves nothing.
    let points = cfg.points()?;
    let _lock = csv_out::lock(out)?;
    csv_out::upgrade(out)?;
    let done = csv_out::read_rows(out)?;
    let schemes = cfg
        .schemes
        .iter()
        .map(|s| s.parse::<Scheme>())
        .collect::<Result<Vec<_>>>()?;
    let trace_dir = trace_dir
        .map(Path::to_path_buf)
        .or_else(|| cfg.trace_dir.as_ref().map(std::path::PathBuf::from));
    if let Some(d) = &trace_dir {
        std::fs::create_dir_all(d).map_err(|e| {
            Error::Config(format!(
                "cannot create trace directory {}: {e}",
                d.display()
            ))
        })?;
    }
    let total = points.len() * schemes.len();
    let mut sweep = Sweep {
        cfg,
        out,
        stamp: Stamp {
            commit: commit_id(),
            host: host_name(),
            isa: crate::kernels::selected()
                .map(|k| k.isa.name())
                .unwrap_or("scalar")
                .to_string(),
        },
        reps: Reps {
            warmup: cfg.warmup,
            reps: cfg.reps,
            min_time_s: cfg.min_time_s,
        },
        timeout: Duration::from_secs_f64(cfg.timeout_s),
        lanes: cfg.fixed_lanes()?,
        bar: progress::Progress::new(total),
        total,
        finished: 0,
        trace_dir,
    };
    let mut rows = Vec::new();
    for p in &points {
        sweep.point(p, &schemes, &done, &mut rows)?;
    }
    sweep.bar.finish(sweep.finished);
    Ok(rows)
}

/// What every point of a sweep shares, and its progress.
struct Sweep<'a> {
    cfg: &'a BenchConfig,
    out: &'a Path,
    stamp: Stamp,
    reps: Reps,
    timeout: Duration,
    lanes: Option<Lanes>,
    bar: progress::Progress,
    total: usize,
    finished: usize,
    trace_dir: Option<std::path::PathBuf>,
}

impl Sweep<'_> {
    /// Measure the schemes of point `p` not in `done`, appending their rows to the file;
    /// push every scheme's row (resumed or measured) to `rows`, in the config's order.
    fn point(
        &mut self,
        p: &Point,
        schemes: &[Scheme],
        done: &[Row],
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let (keys, resumed) = jobs::resumed(p, schemes, done);
        for (key, r) in keys.iter().zip(&resumed) {
            if r.is_some() {
                self.finished += 1;
                self.bar.skip(
                    self.finished - 1,
                    &format!(
                        "[{}/{}] {key} (already in {}, skipped)",
                        self.finished,
                        self.total,
                        self.out.display()
                    ),
                );
            }
        }
        if resumed.iter().all(Option::is_some) {
            rows.extend(resumed.iter().map(|r| (*r).unwrap().clone()));
            return Ok(());
        }
        let fixed = FixedPoint::default()
            .with_trunc(Some(p.trunc))
            .with_protocols(p.protocols);
        // T_compute: the serial run over an unshaped, zero-latency link (median
        // repetition); also the serial traffic and rounds for T_comm and the cost model,
        // which `auto` needs before the schemes run.
        let probe = jobs::probe(p, fixed, self.cfg.reps, self.reps, self.timeout)?;
        let choices = jobs::choices(self.cfg, self.lanes, p, schemes, &keys, &resumed, &probe.ci);
        // Serial's throughput and median latency, once known (from the file, or measured).
        let serial = schemes.iter().zip(&resumed).find_map(|(s, r)| {
            r.filter(|_| s.is_serial()).map(|r| Serial {
                throughput: r.throughput_per_s,
                median_s: r.latency_ms_p50 / 1e3,
            })
        });
        if self.cfg.interleave {
            self.interleaved(p, fixed, &probe, &choices, &resumed, serial, rows)
        } else {
            self.one_after_another(p, fixed, probe, &choices, &resumed, serial, rows)
        }
    }

    /// The schemes of a point take turns, one repetition each, with the probe's unshaped
    /// serial run (T_compute); every row of the point is written once all turns are done.
    #[allow(clippy::too_many_arguments)]
    fn interleaved(
        &mut self,
        p: &Point,
        fixed: FixedPoint,
        probe: &jobs::Probe,
        choices: &[Choice],
        resumed: &[Option<&Row>],
        serial: Option<Serial>,
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let what: Vec<String> = choices
            .iter()
            .map(|c| format!("{} k={} m={}", c.scheme, c.k, c.m))
            .collect();
        self.bar.at(
            self.finished,
            &format!("{} interleaved: {}", choices[0].key, what.join(", ")),
        );
        let runners = choices
            .iter()
            .map(|c| {
                Runner::new(
                    &jobs::spec_of(p, c.scheme, c.k, c.m, c.lanes),
                    fixed,
                    self.timeout,
                )
                .map(|r| r.over(p.channels))
                .map_err(|e| Error::Config(format!("{}: {e}", c.key)))
            })
            .collect::<Result<Vec<_>>>()?;
        // The probe's unshaped serial run (T_compute) goes every turn, but its own
        // min_time_s does not make the others repeat.
        let unshaped = LinkProfile::unshaped();
        let list: Vec<(&Runner, &LinkProfile, bool)> =
            std::iter::once((&probe.runner, &unshaped, false))
                .chain(runners.iter().map(|r| (r, &p.link, true)))
                .collect();
        let mut measured = measure_interleaved(&list, self.reps)?;
        let tc_turns = measured.remove(0);
        self.finished += choices.len();
        let tc = tc_turns.median_s();
        let serial_turns = choices
            .iter()
            .zip(&measured)
            .find(|(c, _)| c.scheme.is_serial())
            .map(|(_, m)| m);
        let serial = serial_turns.map(|m| Serial::of(m, p.batch)).or(serial);
        let turns = serial_turns.map(|st| (st, &tc_turns));
        let mut fresh = choices.iter().zip(&measured).zip(&runners);
        for r in resumed {
            let row = match r {
                Some(r) => (*r).clone(),
                None => {
                    let ((c, meas), runner) =
                        fresh.next().expect("a measurement per scheme not resumed");
                    let row = row_of(p, c, meas, serial, turns, tc, probe.t_comm, &self.stamp);
                    csv_out::append_row(self.out, &row)?;
                    self.trace(runner, p, c)?;
                    row
                }
            };
            rows.push(row);
        }
        Ok(())
    }

    /// One scheme after another, each row written as soon as it is measured.
    #[allow(clippy::too_many_arguments)]
    fn one_after_another(
        &mut self,
        p: &Point,
        fixed: FixedPoint,
        probe: jobs::Probe,
        choices: &[Choice],
        resumed: &[Option<&Row>],
        mut serial: Option<Serial>,
        rows: &mut Vec<Row>,
    ) -> Result<()> {
        let tc = probe.measured.median_s();
        let t_comm = probe.t_comm;
        // The probe's job is freed before the schemes' jobs are built: a full-size model's
        // weights (VGG16: 1.1 GB of f64) would otherwise stay live below the heap's top,
        // and each scheme's job and its repetitions would be laid out around them, in
        // fresh pages, beside the holes the probe's repetitions left.
        drop(probe);
        let mut fresh = choices.iter();
        for r in resumed {
            if let Some(r) = r {
                rows.push((*r).clone());
                continue;
            }
            let c = fresh.next().expect("a choice per scheme not resumed");
            self.bar
                .at(self.finished, &format!("{} k={} m={}", c.key, c.k, c.m));
            self.finished += 1;
            let runner = Runner::new(
                &jobs::spec_of(p, c.scheme, c.k, c.m, c.lanes),
                fixed,
                self.timeout,
            )
            .map(|r| r.over(p.channels))
            .map_err(|e| Error::Config(format!("{}: {e}", c.key)))?;
            let meas = measure_runner(&runner, &p.link, self.reps)
                .map_err(|e| Error::Config(format!("{}: {e}", c.key)))?;
            if c.scheme.is_serial() {
                serial = Some(Serial::of(&meas, p.batch));
            }
            let row = row_of(p, c, &meas, serial, None, tc, t_comm, &self.stamp);
            csv_out::append_row(self.out, &row)?;
            self.trace(&runner, p, c)?;
            rows.push(row);
        }
        Ok(())
    }

    /// Keep the timeline of one more (untimed) repetition of `c`, if traces are asked for.
    fn trace(&self, runner: &Runner, p: &Point, c: &Choice) -> Result<()> {
        let Some(dir) = &self.trace_dir else {
            return Ok(());
        };
        let path = dir.join(trace_file_name(p, &c.scheme.to_string()));
        runner
            .trace_rep(&p.link, &path)
            .map_err(|e| Error::Config(format!("{}: trace {}: {e}", c.key, path.display())))
    }
}

/// `trace-<model>-b<batch>-n<parties>-<weights>-<network>-<trunc>[-fss]--<scheme>.json`:
/// the report pairs a configuration's traces by the part before `--`.
pub fn trace_file_name(p: &Point, scheme: &str) -> String {
    format!(
        "trace-{}-b{}-n{}-{}-{}-{}{}--{}.json",
        p.model,
        p.batch,
        p.parties,
        format!("{:?}", p.weights).to_lowercase(),
        p.link.name,
        p.trunc,
        match p.protocols {
            Protocols::Crypten => "",
            Protocols::Fss => "-fss",
        },
        scheme
    )
}

/// Print each scheme's gain over serial and its overlap efficiency, per configuration. η
/// is `n/a` with the reason where the row has none (see `eta_note`).
pub fn print_summary(rows: &[Row], w: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<18} {:>5} {:>2} {:>8} {:>6} {:<38} {:>9} {:>9} {:>9}  eta",
        "model", "batch", "N", "weights", "net", "scheme", "p50 ms", "inf/s", "vs serial"
    )?;
    for r in rows {
        let gain = r
            .speedup_vs_serial
            .map_or("-".to_string(), |g| format!("{g:.2}x"));
        let eta = r
            .overlap_efficiency
            .map_or_else(|| eta_note(r, rows), |e| format!("{e:.2}"));
        writeln!(
            w,
            "{:<18} {:>5} {:>2} {:>8} {:>6} {:<38} {:>9.2} {:>9.2} {:>9}  {}",
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

/// Why a row has no η: "-" for serial, else n/a with the room serial left over
/// max(T_compute, T_comm), from the serial row of the same configuration in `rows`.
pub fn eta_note(r: &Row, rows: &[Row]) -> String {
    if r.scheme == "serial" {
        return "-".into();
    }
    let same = |s: &&Row| {
        s.scheme == "serial"
            && (
                &s.model,
                s.batch,
                s.parties,
                &s.weights,
                &s.network,
                &s.trunc,
                s.protocols(),
            ) == (
                &r.model,
                r.batch,
                r.parties,
                &r.weights,
                &r.network,
                &r.trunc,
                r.protocols(),
            )
    };
    let Some(serial) = rows.iter().find(same) else {
        return "n/a (no serial row)".into();
    };
    let t_serial = serial.latency_ms_p50 / 1e3;
    let room = t_serial - r.t_compute_s.max(r.t_comm_s);
    if room <= 0.0 {
        "n/a (serial not slower than max(T_compute, T_comm))".into()
    } else if room < ETA_MIN_ROOM * t_serial {
        format!(
            "n/a (room {:.1}% of T_serial < {:.0}%: ill-conditioned)",
            100.0 * room / t_serial,
            100.0 * ETA_MIN_ROOM
        )
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scheme: &str, p50_ms: f64, tc: f64, tm: f64) -> Row {
        Row {
            model: "lenet".into(),
            batch: 4,
            parties: 2,
            weights: "private".into(),
            network: "wan".into(),
            scheme: scheme.into(),
            latency_ms_p50: p50_ms,
            t_compute_s: tc,
            t_comm_s: tm,
            ..Row::default()
        }
    }

    #[test]
    fn summary_says_why_eta_is_missing() {
        // Serial 1000 ms, T_comm 0.97 s: room 30 ms, 3.0% of T_serial.
        let rows = vec![
            row("serial", 1000.0, 0.1, 0.97),
            row("inner-layer", 900.0, 0.1, 0.97),
        ];
        assert_eq!(
            eta_note(&rows[1], &rows),
            "n/a (room 3.0% of T_serial < 5%: ill-conditioned)"
        );
        let rows = vec![
            row("serial", 1000.0, 1.2, 0.5),
            row("inner-layer", 900.0, 1.2, 0.5),
        ];
        assert_eq!(
            eta_note(&rows[1], &rows),
            "n/a (serial not slower than max(T_compute, T_comm))"
        );
        assert_eq!(eta_note(&rows[0], &rows), "-");
        let mut out = Vec::new();
        print_summary(&rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("n/a (serial not slower"), "{text}");
    }
}
