//! All parties in one process, one thread per party, over in-memory links (or, for
//! measuring the TCP transport and its secure channels, loopback TCP between the threads).
//! Depends on proto, offline, transport::{memory, tcp}, comm.
//!
//! A program is one function every party runs on its own `Ctx`. `record_plan` runs it once
//! over a `NullComm` and a `RecordingSource` (the dry run), `offline::deal` makes the
//! material, and `run_online` expands it, sets up the session (pairwise seeds), and only
//! then starts each party's online clock. `run_dealt` chooses between that and a streamed
//! dealer (`offline::stream`), which makes the material while the online phase runs, for
//! plans whose material does not fit `Dealing::window_bytes` (see `Dealing`).

use std::time::{Duration, Instant};

use crate::comm::{Comm, CommStats};
use crate::error::{Error, Result};
use crate::offline::{MaterialSource, PartyMaterial, Plan, RecordingSource};
use crate::prg::fresh_seed;
use crate::profile::{Recorder, TracedComm};
use crate::proto::{Ctx, NullComm, PairSeeds};
use crate::ring::FixedPoint;
use crate::transport::emulator::LinkProfile;
use crate::transport::MemoryNetwork;

/// Which links the parties of an in-process run talk over: what a bench row records in
/// its `channels` column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Channels {
    /// In-memory queues (the default: no transport cost, only the emulated link's).
    #[default]
    Memory,
    /// Loopback TCP, every frame sealed with AEGIS-256X4 (what `party` uses).
    Sealed,
    /// Loopback TCP in clear (`--insecure-plaintext-channels`).
    Plaintext,
}

impl Channels {
    pub fn as_str(self) -> &'static str {
        match self {
            Channels::Memory => "memory",
            Channels::Sealed => "sealed",
            Channels::Plaintext => "plaintext",
        }
    }
}

impl std::fmt::Display for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Channels {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "memory" => Ok(Channels::Memory),
            "sealed" => Ok(Channels::Sealed),
            "plaintext" => Ok(Channels::Plaintext),
            other => Err(Error::Config(format!(
                "channels must be \"memory\", \"sealed\" or \"plaintext\", got \"{other}\""
            ))),
        }
    }
}

/// One endpoint per party over `channels`: in-memory, or loopback TCP connected on one
/// thread per party (with a fresh session key; the setup is not timed).
fn endpoints(
    cfg: &SessionConfig,
    link: &LinkProfile,
    channels: Channels,
) -> Result<Vec<Box<dyn Comm + Send + Sync>>> {
    use crate::transport::{SessionKey, TcpConfig, TcpNetwork};
    if channels == Channels::Memory {
        return Ok(
            MemoryNetwork::endpoints_with_links(cfg.parties, cfg.timeout, link.clone())
                .into_iter()
                .map(|e| Box::new(e) as Box<dyn Comm + Send + Sync>)
                .collect(),
        );
    }
    let listeners = (0..cfg.parties)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let (key, session) = (SessionKey::fresh(), fresh_session());
    std::thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let mut t = TcpConfig::new(i, addrs.clone(), session, key.clone());
                t.timeout = cfg.timeout;
                t.link = link.clone();
                t.plaintext = channels == Channels::Plaintext;
                s.spawn(move || TcpNetwork::connect_with(&t, l))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let ep = h.join().unwrap_or_else(|_| {
                    Err(Error::Protocol("a connecting thread panicked".into()))
                })?;
                Ok(Box::new(ep) as Box<dyn Comm + Send + Sync>)
            })
            .collect()
    })
}

/// Largest total of expanded material (all parties of this process) held in memory before
/// the online phase; larger plans draw material on demand.
pub const EAGER_MATERIAL_BYTES: usize = 4 << 30;

/// Where the online phase's material comes from, so results can say whether their online
/// times include seed expansion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaterialMode {
    /// Expanded before the online clock starts: no offline work is timed.
    Eager,
    /// Drawn from the seeds when taken: the AES-CTR expansion is inside the online times
    /// (party 0's corrections are still computed offline, by the dealer).
    Lazy,
    /// Made by a streaming dealer while the online phase runs (`offline::stream`): the
    /// online times include any wait for a key the dealer had not made yet.
    Streamed,
}

impl MaterialMode {
    /// The store one party's online phase reads, made this way. The material is moved, not
    /// copied, into it.
    pub fn source(self, m: PartyMaterial) -> Result<Box<dyn MaterialSource>> {
        Ok(match self {
            // Material an in-process dealer already drew is stored as it is.
            MaterialMode::Lazy if m.expanded.is_none() => Box::new(m.into_lazy()),
            MaterialMode::Lazy => Box::new(m.into_store()?),
            MaterialMode::Eager => Box::new(m.into_store()?),
            MaterialMode::Streamed => return Err(Error::Material(
                "streamed material comes from a running dealer (run_dealt), not from dealt files"
                    .into(),
            )),
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            MaterialMode::Eager => "eager",
            MaterialMode::Lazy => "lazy",
            MaterialMode::Streamed => "streamed",
        }
    }
}

impl std::fmt::Display for MaterialMode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mode `run_online` uses for `material` (all parties of this process).
pub fn material_mode(material: &[PartyMaterial]) -> MaterialMode {
    let total: usize = material.iter().map(|m| m.expanded_bytes()).sum();
    if total > EAGER_MATERIAL_BYTES {
        MaterialMode::Lazy
    } else {
        MaterialMode::Eager
    }
}

/// Most computing parties a session may have.
pub const MAX_PARTIES: usize = 8;

/// The in-process dealer for `plan`: when every party's material fits the eager budget,
/// the dealer keeps what it draws for the parties' stores (it draws all of it anyway to
/// make party 0's corrections), so nothing is drawn twice; otherwise parties draw their
/// material on demand (`MaterialMode::Lazy`).
pub fn deal_in_process(plan: &Plan, cfg: &SessionConfig, session: u64) -> Vec<PartyMaterial> {
    let eager = 8 * plan.total_words() * cfg.parties <= EAGER_MATERIAL_BYTES;
    crate::offline::deal_with(
        plan,
        &crate::offline::dealer_seeds(cfg.parties, cfg.dealer_seed),
        session,
        &vec![eager; cfg.parties],
    )
}

/// Session parameters shared by every party.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    pub parties: usize,
    /// Fractional bits and truncation mode: the dry run, the dealer's plan and every
    /// party's `Ctx` take them from here.
    pub fixed: FixedPoint,
    /// Bound on any single wait for a peer.
    pub timeout: Duration,
    /// `--dealer-seed`: the dealer's and the pairwise seeds derived from this value, so
    /// the same job gives bit-identical shares (reproducible experiments only: anyone who
    /// knows it knows every mask). None: fresh OS entropy.
    pub dealer_seed: Option<u64>,
}

impl SessionConfig {
    pub fn new(parties: usize) -> Self {
        SessionConfig {
            parties,
            fixed: FixedPoint::default(),
            timeout: Duration::from_secs(120),
            dealer_seed: None,
        }
    }

    pub fn check(&self) -> Result<()> {
        if !(2..=MAX_PARTIES).contains(&self.parties) {
            return Err(Error::Config(format!(
                "--parties must be between 2 and {MAX_PARTIES}, got {}",
                self.parties
            )));
        }
        // A mode the parties cannot run (local truncation for N > 2) fails here, before
        // the dry run or the dealer, rather than at the first truncation.
        self.fixed.trunc_for(self.parties)?;
        self.fixed.protocols_for(self.parties)?;
        Ok(())
    }
}

/// Wall times of the phases before a party's online clock starts, as that party saw
/// them (seconds). In-process runs share one plan and one dealer, whose times the caller
/// fills in; a party process times its own (party 0 deals; the others wait for it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Offline {
    /// The dry run that records the plan.
    pub plan_s: f64,
    /// The dealer (or, for a party that is not the dealer, the wait for its seed).
    pub deal_s: f64,
    /// AES-CTR expansion of the material into the store the online phase reads (0 when
    /// the material is drawn on demand inside the online phase, see `MaterialMode::Lazy`).
    pub expand_s: f64,
}

impl Offline {
    pub fn total_s(&self) -> f64 {
        self.plan_s + self.deal_s + self.expand_s
    }
}

/// What one party ends with.
#[derive(Debug)]
pub struct PartyOutcome<T> {
    pub value: T,
    /// Online wall time of this party (after setup and material expansion).
    pub online_s: f64,
    /// The phases before the online clock.
    pub offline: Offline,
    /// Traffic during the online phase.
    pub stats: CommStats,
}

/// Dry run of `program` (as party 0): the plan of every material request.
pub fn record_plan<T>(
    cfg: &SessionConfig,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<Plan> {
    cfg.check()?;
    let comm = NullComm::new(0, cfg.parties);
    let rec = RecordingSource::new();
    let seeds = PairSeeds::dry();
    {
        let ctx = Ctx::for_plan(&comm, &rec, &seeds, cfg.fixed);
        program(&ctx)?;
    }
    rec.into_plan()
}

/// A fresh random session id.
pub fn fresh_session() -> u64 {
    let s = fresh_seed();
    u64::from_le_bytes(s[..8].try_into().unwrap())
}

/// Run the online phase of `program` with the given per-party material, unshaped links.
/// The material is consumed: each request's share of it is freed once taken.
pub fn run_online<T: Send>(
    cfg: &SessionConfig,
    material: Vec<PartyMaterial>,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<Vec<PartyOutcome<T>>> {
    run_online_with_link(cfg, &LinkProfile::unshaped(), material, program)
}

/// Run the online phase with every directed link emulated as `link`.
pub fn run_online_with_link<T: Send>(
    cfg: &SessionConfig,
    link: &LinkProfile,
    material: Vec<PartyMaterial>,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<Vec<PartyOutcome<T>>> {
    run_online_traced(cfg, link, material, program, None)
}

/// As `run_online_with_link`, recording every wait into `trace` when given.
pub fn run_online_traced<T: Send>(
    cfg: &SessionConfig,
    link: &LinkProfile,
    material: Vec<PartyMaterial>,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    trace: Option<&Recorder>,
) -> Result<Vec<PartyOutcome<T>>> {
    let mode = material_mode(&material);
    run_online_as(cfg, link, material, mode, program, trace)
}

/// As `run_online_traced`, with the material mode chosen by the caller (tests use it to
/// run small plans lazily).
pub fn run_online_as<T: Send>(
    cfg: &SessionConfig,
    link: &LinkProfile,
    material: Vec<PartyMaterial>,
    mode: MaterialMode,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    trace: Option<&Recorder>,
) -> Result<Vec<PartyOutcome<T>>> {
    run_online_over(cfg, link, material, mode, program, trace, Channels::Memory)
}

/// As `run_online_as`, over the given channels.
pub fn run_online_over<T: Send>(
    cfg: &SessionConfig,
    link: &LinkProfile,
    material: Vec<PartyMaterial>,
    mode: MaterialMode,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    trace: Option<&Recorder>,
    channels: Channels,
) -> Result<Vec<PartyOutcome<T>>> {
    cfg.check()?;
    if material.len() != cfg.parties {
        return Err(Error::Material(format!(
            "{} parties but material for {}",
            cfg.parties,
            material.len()
        )));
    }
    for (i, m) in material.iter().enumerate() {
        if m.party != i || m.parties != cfg.parties {
            return Err(Error::Material(format!(
                "material slot {i} holds party {} of {}",
                m.party, m.parties
            )));
        }
    }
    // Eager: expanded before the clock starts. Lazy (what `material_mode` picks when all
    // parties' expanded material would exceed EAGER_MATERIAL_BYTES; a full-size 3-party VGG16
    // needs 11 GiB per party): each request is drawn from the seed when used, and that AES-CTR
    // expansion is timed too.
    if mode == MaterialMode::Lazy {
        let total: usize = material.iter().map(|m| m.expanded_bytes()).sum();
        eprintln!("mpc-pipe: material of {:.1} GiB expanded on demand (PRG expansion inside the online phase)", total as f64 / (1u64 << 30) as f64);
    }
    let t_expand = Instant::now();
    let stores = material
        .into_iter()
        .map(|m| mode.source(m))
        .collect::<Result<Vec<_>>>()?;
    let expand_s = t_expand.elapsed().as_secs_f64();
    run_parties(cfg, link, stores, expand_s, program, trace, channels)
}

/// Each party's online phase on its own thread, reading its material from `stores`.
fn run_parties<T: Send>(
    cfg: &SessionConfig,
    link: &LinkProfile,
    stores: Vec<Box<dyn MaterialSource>>,
    expand_s: f64,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    trace: Option<&Recorder>,
    channels: Channels,
) -> Result<Vec<PartyOutcome<T>>> {
    let endpoints = endpoints(cfg, link, channels)?;
    let results: Vec<Result<PartyOutcome<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = endpoints
            .into_iter()
            .zip(&stores)
            .enumerate()
            .map(|(i, (ep, store))| {
                let t = std::thread::Builder::new().name(format!("party {i}"));
                t.spawn_scoped(s, move || {
                    let ep: &dyn Comm = &*ep;
                    let seeds = match cfg.dealer_seed {
                        Some(s) => PairSeeds::from_dealer_seed(s, i, cfg.parties),
                        None => PairSeeds::establish(ep)?,
                    };
                    let traced = trace.map(|recorder| TracedComm {
                        inner: ep,
                        recorder,
                    });
                    let comm: &dyn Comm = match &traced {
                        Some(t) => t,
                        None => ep,
                    };
                    let mut out =
                        timed_online(&Ctx::new(comm, store.as_ref(), &seeds, cfg.fixed), program)?;
                    out.offline.expand_s = expand_s;
                    Ok(out)
                })
                .expect("cannot spawn a party thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Protocol("a party thread panicked".into())))
            })
            .collect()
    });
    // Report the root cause: a peer's departure is usually the echo of another failure.
    let mut first_err = None;
    let mut outs = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(o) => outs.push(o),
            Err(e) => {
                let echo = matches!(e, Error::Peer { .. });
                if first_err
                    .as_ref()
                    .is_none_or(|(was_echo, _)| *was_echo && !echo)
                {
                    first_err = Some((echo, e));
                }
            }
        }
    }
    match first_err {
        Some((_, e)) => Err(e),
        None => Ok(outs),
    }
}

/// How an in-process run deals its material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dealing {
    /// All of it before the online phase (`deal_in_process`), then `run_online`.
    Upfront,
    /// A streaming dealer beside the online phase holding at most `window_bytes` of
    /// material not yet taken (all parties, FSS correction words once).
    Streamed { window_bytes: usize },
}

/// Default window of a streamed run. Smaller than what decides to stream
/// (`EAGER_MATERIAL_BYTES`): every byte the dealer holds ahead is memory the kernel zeroes
/// afresh, and on a 2-core machine a dealer far ahead only takes the online phase's cores.
/// A 2-party VGG16 (`run --model W7`, loaded machine, 2026-12-07) with a 4 GiB window: 6.1-6.7
/// s of system time, 6.6 GB peak RSS, 19.2-21.3 s wall; 1 GiB: 3.1-3.3 s, 5.4-5.7 GB,
/// 15.1-17.2 s; 256 MiB: 2.6 s, 4.7 GB, 15.1 s. 1 GiB was kept while fc1's weight mask
/// (0.8 GB a party) was one request; with large layers in column blocks (sched::linear,
/// 64 MiB a block) no request of VGG16 needs it, and 256 MiB took W7's peak RSS from
/// 3.8-4.0 GB to 2.75-2.9 GB and its system time from 2.2-3.2 s to 1.4-1.7 s, at no cost in
/// wall time (results/e2e/README.md, "column blocks"). A request larger than the window is
/// still made, alone, when the window is empty; a plan with such requests gets a window of
/// 5/4 of its largest instead (`window_for`).
pub const STREAM_WINDOW_BYTES: usize = 256 << 20;

/// The window of a streamed run of `plan`: `STREAM_WINDOW_BYTES`, or 5/4 of the plan's
/// largest request when that is larger. With a request larger than the window the dealer
/// makes it only once the window is empty and a party waits for it, so the online phase
/// waits for its whole making: BERT-base under fss, whose GeLU keys are 603 MB a layer,
/// waited 35-40 times per inference (6-11 of them forced) with 256 MiB and 14-30 times
/// (none forced) with 754-768 MiB; online time against 256 MiB, alternating pairs on an
/// otherwise idle machine, 2026-12-08: 0.84-1.13, median 0.92 over 18 pairs (8 pairs
/// while the host was quieter: median 0.90, all but one faster; 10 pairs later, when
/// every run was ~15% slower: median 1.0). 1536 MiB took 9-11 s against 6.8-8.3 (the
/// dealer far ahead, in fresh memory, on the online phase's cores). The crypten suite's
/// BERT-base (largest request below 256 MiB) ran alike at 256 and 768 MiB.
pub fn window_for(plan: &Plan, parties: usize) -> usize {
    let largest = plan
        .entries
        .iter()
        .map(|(_, r)| crate::offline::stream::window_bytes(r, parties))
        .max()
        .unwrap_or(0);
    if largest > STREAM_WINDOW_BYTES {
        largest + largest / 4
    } else {
        STREAM_WINDOW_BYTES
    }
}

impl Dealing {
    /// The default for `plan`: streamed when its material (all parties, FSS correction
    /// words once) exceeds `EAGER_MATERIAL_BYTES` (4 GiB), or upfront dealing could not
    /// hold it expanded (each party's copy of the correction words counted); upfront
    /// otherwise. The environment can override it: `MPC_PIPE_STREAM=on|off|auto` (default
    /// auto) and `MPC_PIPE_STREAM_WINDOW_MB` (the window, default `window_for`: 256, or
    /// 5/4 of the largest request when that is larger).
    pub fn auto(plan: &Plan, parties: usize) -> Result<Dealing> {
        let window_bytes = match std::env::var("MPC_PIPE_STREAM_WINDOW_MB") {
            Err(_) => window_for(plan, parties),
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(mb) if mb > 0 => mb << 20,
                _ => {
                    return Err(Error::Config(format!(
                        "MPC_PIPE_STREAM_WINDOW_MB must be a positive number of MiB, got \"{v}\""
                    )))
                }
            },
        };
        let streamed = Dealing::Streamed { window_bytes };
        match std::env::var("MPC_PIPE_STREAM").as_deref().map(str::trim) {
            Ok("on") => Ok(streamed),
            Ok("off") => {
                let need = crate::offline::stream::plan_bytes(plan, parties)
                    .max(8 * plan.total_words() * parties) as u64;
                upfront_fits(need, crate::alloc::available_bytes()).map(|()| Dealing::Upfront)
            }
            // Upfront is kept for plans it holds expanded (`material_mode` Eager), so
            // their online times stay the online phase alone.
            Err(_) | Ok("auto") | Ok("") => Ok(
                if crate::offline::stream::plan_bytes(plan, parties) > EAGER_MATERIAL_BYTES
                    || 8 * plan.total_words() * parties > EAGER_MATERIAL_BYTES
                {
                    streamed
                } else {
                    Dealing::Upfront
                },
            ),
            Ok(other) => Err(Error::Config(format!(
                "MPC_PIPE_STREAM must be \"on\", \"off\" or \"auto\", got \"{other}\""
            ))),
        }
    }
}

/// Whether upfront dealing of `need` bytes fits the `have` bytes of memory available
/// (unknown: assumed to). Upfront holds every party's material at once, and a plan larger
/// than the machine's memory was killed by the kernel with no word (BERT-base under fss
/// needs ~27 GiB, 2026-12-07), so `MPC_PIPE_STREAM=off` is refused instead.
fn upfront_fits(need: u64, have: Option<u64>) -> Result<()> {
    match have {
        Some(have) if need > have => Err(Error::Config(format!(
            "MPC_PIPE_STREAM=off deals all material before the online phase: this plan's is \
             {:.1} GiB, more than the {:.1} GiB of memory available; unset MPC_PIPE_STREAM \
             (or set it to auto or on) to stream it",
            need as f64 / (1u64 << 30) as f64,
            have as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// What `run_dealt` returns: every party's outcome (`offline.deal_s` filled in: the
/// dealer's wall time upfront, its busy time streamed), the material mode, and the
/// streaming dealer's account when it streamed.
pub struct DealtRun<T> {
    pub outs: Vec<PartyOutcome<T>>,
    pub mode: MaterialMode,
    pub stream: Option<crate::offline::StreamStats>,
}

/// Deal `plan`'s material as `dealing` says (fresh session, `cfg.dealer_seed`'s seeds) and
/// run `program`'s online phase over it. Streamed, the parties start at once and each
/// `take` waits for its key; an error of the dealer is returned as such (not as the
/// parties' echo of it).
#[allow(clippy::too_many_arguments)]
pub fn run_dealt<T: Send>(
    cfg: &SessionConfig,
    link: &LinkProfile,
    plan: &std::sync::Arc<Plan>,
    dealing: Dealing,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    trace: Option<&Recorder>,
    channels: Channels,
) -> Result<DealtRun<T>> {
    cfg.check()?;
    let window_bytes = match dealing {
        Dealing::Upfront => {
            let t = Instant::now();
            let material = deal_in_process(plan, cfg, fresh_session());
            let deal_s = t.elapsed().as_secs_f64();
            let mode = material_mode(&material);
            let mut outs = run_online_over(cfg, link, material, mode, program, trace, channels)?;
            outs.iter_mut().for_each(|o| o.offline.deal_s = deal_s);
            return Ok(DealtRun {
                outs,
                mode,
                stream: None,
            });
        }
        Dealing::Streamed { window_bytes } => window_bytes,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dealer = crate::offline::StreamDealer::start(
        plan.clone(),
        crate::offline::dealer_seeds(cfg.parties, cfg.dealer_seed),
        window_bytes,
        threads,
    )?;
    let stores = (0..cfg.parties)
        .map(|i| Box::new(dealer.source(i)) as Box<dyn MaterialSource>)
        .collect();
    let result = run_parties(cfg, link, stores, 0.0, program, trace, channels);
    let (stats, dealer_err) = dealer.finish();
    // A dealer error wins even over parties that finished: a key it failed to make was
    // one the parties did not reach, and a run whose dealer failed is not reported sound.
    let mut outs = match (result, dealer_err) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(e),
        (Ok(outs), None) => outs,
    };
    outs.iter_mut()
        .for_each(|o| o.offline.deal_s = stats.busy_s);
    Ok(DealtRun {
        outs,
        mode: MaterialMode::Streamed,
        stream: Some(stats),
    })
}

/// The online phase of one party: run `program` on `ctx`, timing it and counting its
/// traffic (setup and material expansion are done before, and not counted).
pub fn timed_online<T>(
    ctx: &Ctx,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<PartyOutcome<T>> {
    let before = ctx.counters().snapshot();
    let t0 = Instant::now();
    let value = program(ctx)?;
    let online_s = t0.elapsed().as_secs_f64();
    let stats = ctx.counters().snapshot().since(&before);
    Ok(PartyOutcome {
        value,
        online_s,
        offline: Offline::default(),
        stats,
    })
}

/// Dry run, deal and run: the whole in-process pipeline for tests and the CLI.
pub fn run_local<T: Send>(
    cfg: &SessionConfig,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<Vec<PartyOutcome<T>>> {
    let plan = std::sync::Arc::new(record_plan(cfg, program)?);
    let dealing = Dealing::auto(&plan, cfg.parties)?;
    run_local_with(cfg, &plan, dealing, program)
}

/// As `run_local`, with the plan recorded and the dealing chosen by the caller (tests
/// compare streamed and upfront runs).
pub fn run_local_with<T: Send>(
    cfg: &SessionConfig,
    plan: &std::sync::Arc<Plan>,
    dealing: Dealing,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<Vec<PartyOutcome<T>>> {
    let link = LinkProfile::unshaped();
    run_dealt(cfg, &link, plan, dealing, program, None, Channels::Memory).map(|d| d.outs)
}

#[cfg(test)]
mod tests {
    use super::{upfront_fits, window_for, STREAM_WINDOW_BYTES};
    use crate::offline::{stream::window_bytes, Plan, Request};

    /// The window is the default while every request fits it, and 5/4 of the largest
    /// request (all parties, correction words once) when one does not.
    #[test]
    fn the_window_holds_the_largest_request_and_a_quarter_more() {
        let small = Plan::from_entries(vec![(1, Request::Mul { len: 1 << 20 })]);
        assert_eq!(window_for(&small, 2), STREAM_WINDOW_BYTES);
        let big = Request::FssMic { len: 400_000 };
        let b = window_bytes(&big, 2);
        assert!(b > STREAM_WINDOW_BYTES, "{b}");
        let plan = Plan::from_entries(vec![(1, Request::Mul { len: 1 << 20 }), (2, big)]);
        assert_eq!(window_for(&plan, 2), b + b / 4);
        assert_eq!(window_for(&Plan::default(), 2), STREAM_WINDOW_BYTES);
    }

    /// Upfront dealing is refused exactly when the plan is larger than the memory
    /// available, with an error that names the override and both sizes; an unknown amount
    /// of memory does not refuse.
    #[test]
    fn upfront_dealing_larger_than_memory_is_refused_by_name() {
        const GIB: u64 = 1 << 30;
        assert!(upfront_fits(2 * GIB, Some(2 * GIB)).is_ok());
        assert!(upfront_fits(2 * GIB, None).is_ok());
        let e = upfront_fits(27 * GIB, Some(22 * GIB))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MPC_PIPE_STREAM"), "{e}");
        assert!(e.contains("27.0 GiB") && e.contains("22.0 GiB"), "{e}");
        assert!(upfront_fits(2 * GIB + 1, Some(2 * GIB)).is_err());
    }
}
