//! One party per process over TCP: `run_party` runs one party of a job, `spawn_parties`
//! starts all parties as child processes of this executable on loopback and gathers their
//! results. Depends on runtime::{job, local}, offline, proto, transport::{tcp, emulator}.
//!
//! Offline material: every party runs the dry run itself (the plan is public: it depends only
//! on the program and shapes); party 0 is the dealer. It deals, keeps its corrections, and
//! sends every other party its seed and the plan hash over the authenticated connection.
//! A party whose own plan hashes differently refuses the material (different program).
//! All of this happens before the online clock starts.
//!
//! The job: `spawn_parties` hands every child the whole job and the parties' addresses as
//! one JSON document on its stdin (`ChildInput`, read by `mpc-pipe party --job-stdin`), not
//! as a command line rebuilt option by option, so an option added to the job cannot be
//! dropped on the way, and no parties file is left behind if the parent is killed.
//!
//! Results: a party prints one `mpc-pipe-result key=value ...` line on stdout (decoded
//! output, online_s, per-peer counters), which `spawn_parties` parses.
//!
//! Jobs of many sessions (training: `train::parties::OneProcess`) use the same pieces:
//! `with_connection` once, then `session` per session, each on a `PhaseComm` of the one
//! connection; their children print progress lines the parent shows as they come
//! (`PROGRESS_PREFIX`), and the parent bounds no whole run (`ProcessRun::many_sessions`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::job::{Job, JobSpec};
use super::local::{record_plan, PartyOutcome, SessionConfig};
use crate::comm::{Comm, CommStats, PeerStats, Tag};
use crate::error::{Error, Result};
use crate::link::LinkProfile;
use crate::offline::PartyMaterial;
use crate::proto::{Ctx, PairSeeds};
use crate::ring::{FixedPoint, PlainTensor};
use crate::transport::tcp::DEFAULT_INBOX_CAP_MIB;
use crate::transport::{SessionKey, TcpConfig, TcpEndpoint, TcpNetwork};

/// Reserved tag of the dealer's message to each party (seed and plan hash).
pub const MATERIAL_TAG: Tag = Tag(u64::MAX - 1);
/// Environment variable through which `spawn_parties` hands children the session key
/// (not on the command line, where other users could read it).
pub const KEY_ENV: &str = "MPC_PIPE_SESSION_KEY";
/// Prefix of a party's result line.
pub const RESULT_PREFIX: &str = "mpc-pipe-result";
/// Environment variable naming a directory where every `mpc-pipe party` writes the job it
/// runs as `party<id>.json` (tests check that every option reached every child).
pub const ECHO_JOB_ENV: &str = "MPC_PIPE_ECHO_JOB_DIR";
/// Prefix of the line a failed party prints on stderr naming whom it blames: itself, or
/// the peer whose failure or silence stopped it. `spawn_parties` reads it to report the
/// party that failed first, not the first process to exit.
pub const BLAME_PREFIX: &str = "mpc-pipe-blame";
/// Fault injection for tests: `MPC_PIPE_DEBUG_FAIL=<id>` makes party <id> fail just before
/// its online phase and exit only half a second after telling its peers, so they exit
/// first.
pub const DEBUG_FAIL_ENV: &str = "MPC_PIPE_DEBUG_FAIL";

fn debug_fail_party() -> Option<usize> {
    std::env::var(DEBUG_FAIL_ENV).ok()?.parse().ok()
}

/// Whom party `me` blames for `e`: the peer it names, or itself.
pub fn blame_of(e: &Error, me: usize) -> usize {
    match e {
        Error::Peer { peer, .. } | Error::Timeout { peer, .. } => *peer,
        _ => me,
    }
}

/// The blame line of party `me` failing with `e` (see `BLAME_PREFIX`).
pub fn blame_line(e: &Error, me: usize) -> String {
    format!("{BLAME_PREFIX} party={me} blames={}", blame_of(e, me))
}

/// Cap on a job description read from stdin (a few KiB in practice).
pub const MAX_JOB_BYTES: u64 = 1 << 20;

/// Largest `--batch`: 65536 CIFAR images are 1.6 GB of input shares per party before any
/// activation; far larger batches could only end in an allocation failure, which aborts
/// the process instead of reporting an error.
pub const MAX_BATCH: usize = 1 << 16;
/// Largest `--chunks` and `--batches-in-flight`: each is a lane (an OS thread or a
/// coroutine stack) per party.
pub const MAX_LANES: usize = 1 << 10;
/// Largest `--seq-len`: attention holds seq_len^2 scores per head.
pub const MAX_SEQ_LEN: usize = 1 << 14;

/// Refuse sizes in `spec` beyond these caps, with a configuration error naming the option.
pub fn check_sizes(spec: &JobSpec) -> Result<()> {
    let s = &spec.schedule;
    for (option, v, max) in [
        ("--batch", spec.batch, MAX_BATCH),
        ("--chunks", s.chunks, MAX_LANES),
        ("--batches-in-flight", s.batches_in_flight, MAX_LANES),
        ("--seq-len", spec.seq_len.unwrap_or(0), MAX_SEQ_LEN),
    ] {
        if v > max {
            return Err(Error::Config(format!(
                "{option} {v} is too large (at most {max})"
            )));
        }
    }
    Ok(())
}

/// Everything a party runs besides the session wiring (its id, the addresses, the session
/// id and key): the job and how to run it. `spawn_parties` sends it to each child as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyJob {
    pub spec: JobSpec,
    pub fixed: FixedPoint,
    /// Bound on connection setup and on any single wait for a peer, in seconds.
    pub timeout_s: f64,
    pub link: LinkProfile,
    /// See `PartyConfig::material_dir`.
    pub material_dir: Option<PathBuf>,
    /// Cap on what one peer may hold unread in this party's inbox, in MiB (`TcpConfig::
    /// max_inbox_bytes`).
    pub inbox_cap_mib: u64,
    /// Frames in clear (`--insecure-plaintext-channels`, to measure what sealing costs).
    pub plaintext_channels: bool,
}

/// The bytes of `--inbox-cap-mib`, checked (at least 1 MiB, at most 1 TiB).
pub fn inbox_cap_bytes(mib: u64) -> Result<u64> {
    if !(1..=1 << 20).contains(&mib) {
        return Err(Error::Config(format!(
            "--inbox-cap-mib must be between 1 and {} (1 TiB), got {mib}",
            1u64 << 20
        )));
    }
    Ok(mib << 20)
}

impl PartyJob {
    /// Parse a description made by `to_json` (from the parent process) and check it as
    /// the command-line options are checked.
    pub fn from_json(text: &str) -> Result<Self> {
        let job: PartyJob = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("job description: {e}")))?;
        job.check()?;
        Ok(job)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job description always serializes")
    }

    /// The checks `cli::args` makes on the options a job comes from.
    pub fn check(&self) -> Result<()> {
        check_sizes(&self.spec)?;
        let s = &self.spec.schedule;
        if s.chunks == 0 || s.batches_in_flight == 0 {
            return Err(Error::Config(
                "--chunks and --batches-in-flight must be at least 1".into(),
            ));
        }
        if !(1..=40).contains(&self.fixed.frac_bits) {
            return Err(Error::Config(format!(
                "--frac-bits must be in 1..=40, got {}",
                self.fixed.frac_bits
            )));
        }
        crate::error::seconds_option("--timeout-s", self.timeout_s, false)?;
        inbox_cap_bytes(self.inbox_cap_mib)?;
        self.link.check()
    }
}

/// What `spawn_parties` writes on a child's stdin: the job and every party's address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildInput {
    pub job: PartyJob,
    pub parties: PartiesFile,
}

impl ChildInput {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job description always serializes")
    }

    /// Read it from standard input (`mpc-pipe party --job-stdin`), checked as the
    /// command-line options are.
    pub fn from_stdin() -> Result<Self> {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_JOB_BYTES + 1)
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_JOB_BYTES {
            return Err(Error::Config(format!(
                "job description on stdin is larger than {MAX_JOB_BYTES} bytes"
            )));
        }
        let text = String::from_utf8(buf)
            .map_err(|_| Error::Config("job description on stdin is not UTF-8".into()))?;
        let input: ChildInput = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("job description: {e}")))?;
        input.job.check()?;
        Ok(input)
    }
}

/// Cap on a parties file (8 parties take a few hundred bytes).
const MAX_PARTIES_FILE_BYTES: u64 = 64 << 10;

/// One entry of a parties file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartyEntry {
    pub id: usize,
    pub addr: String,
}

/// `parties.toml`: every party's listening address (`[[party]]` tables with id, addr).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartiesFile {
    pub party: Vec<PartyEntry>,
}

impl PartiesFile {
    pub fn from_addrs(addrs: &[SocketAddr]) -> Self {
        PartiesFile {
            party: addrs
                .iter()
                .enumerate()
                .map(|(id, a)| PartyEntry {
                    id,
                    addr: a.to_string(),
                })
                .collect(),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::error::read_capped(path, MAX_PARTIES_FILE_BYTES, "parties file")?;
        Self::parse(&text)
            .map_err(|e| Error::Config(format!("parties file {}: {e}", path.display())))
    }

    /// A parties file's text; the error says what is wrong (the caller names the file).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The addresses by id; ids must be exactly 0..n.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>> {
        let n = self.party.len();
        let mut out: Vec<Option<SocketAddr>> = vec![None; n];
        for e in &self.party {
            if e.id >= n || out[e.id].is_some() {
                return Err(Error::Config(format!(
                    "parties file: ids must be 0..{n} without repeats, found {}",
                    e.id
                )));
            }
            let a = std::net::ToSocketAddrs::to_socket_addrs(&e.addr)
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| {
                    Error::Config(format!("party {}: bad address '{}'", e.id, e.addr))
                })?;
            out[e.id] = Some(a);
        }
        Ok(out.into_iter().map(Option::unwrap).collect())
    }
}

/// Everything one party process needs.
#[derive(Clone, Debug)]
pub struct PartyConfig {
    pub id: usize,
    pub addrs: Vec<SocketAddr>,
    pub session: u64,
    pub key: SessionKey,
    /// Bound on connection setup and on any single wait for a peer.
    pub timeout: Duration,
    pub link: LinkProfile,
    pub fixed: FixedPoint,
    /// Load this party's material from `mpc-pipe offline` files in this directory instead
    /// of receiving it from party 0 (the parties check they hold the same dealing).
    pub material_dir: Option<PathBuf>,
    /// Fault injection for tests: sleep this long after setup, before the online phase
    /// (announced on stderr), to play a silent or about-to-be-killed peer.
    pub stall_before_online: Option<Duration>,
    /// See `TcpConfig::max_inbox_bytes`.
    pub max_inbox_bytes: u64,
    /// See `TcpConfig::plaintext`.
    pub plaintext_channels: bool,
}

impl PartyConfig {
    /// Party `id` of a session running `job`.
    pub fn from_job(
        id: usize,
        addrs: Vec<SocketAddr>,
        session: u64,
        key: SessionKey,
        job: &PartyJob,
    ) -> Result<Self> {
        Ok(PartyConfig {
            id,
            addrs,
            session,
            key,
            timeout: crate::error::seconds_option("--timeout-s", job.timeout_s, false)?,
            link: job.link.clone(),
            fixed: job.fixed,
            material_dir: job.material_dir.clone(),
            stall_before_online: None,
            max_inbox_bytes: inbox_cap_bytes(job.inbox_cap_mib)?,
            plaintext_channels: job.plaintext_channels,
        })
    }

    /// Unshaped, 60 s timeout, default fixed point.
    pub fn new(id: usize, addrs: Vec<SocketAddr>, session: u64, key: SessionKey) -> Self {
        PartyConfig {
            id,
            addrs,
            session,
            key,
            timeout: Duration::from_secs(60),
            link: LinkProfile::unshaped(),
            fixed: FixedPoint::default(),
            material_dir: None,
            stall_before_online: None,
            max_inbox_bytes: DEFAULT_INBOX_CAP_MIB << 20,
            plaintext_channels: false,
        }
    }

    fn tcp(&self) -> TcpConfig {
        let mut t = TcpConfig::new(self.id, self.addrs.clone(), self.session, self.key.clone());
        t.timeout = self.timeout;
        t.link = self.link.clone();
        t.max_inbox_bytes = self.max_inbox_bytes;
        t.plaintext = self.plaintext_channels;
        t
    }

    /// The session parameters this party's dry runs and online phases use.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            parties: self.addrs.len(),
            fixed: self.fixed,
            timeout: self.timeout,
            dealer_seed: None,
        }
    }
}

/// Run party `cfg.id` of `job` over TCP: connect, receive (or deal) the material, set up
/// the session, then time the online phase.
pub fn run_party(cfg: &PartyConfig, job: &Job) -> Result<PartyOutcome<PlainTensor>> {
    run_party_with(cfg, job, None)
}

/// `run_party` on an already bound listener (tests bind port 0 to run in parallel).
pub fn run_party_on(
    cfg: &PartyConfig,
    job: &Job,
    listener: TcpListener,
) -> Result<PartyOutcome<PlainTensor>> {
    run_party_with(cfg, job, Some(listener))
}

fn run_party_with(
    cfg: &PartyConfig,
    job: &Job,
    listener: Option<TcpListener>,
) -> Result<PartyOutcome<PlainTensor>> {
    let scfg = cfg.session_config();
    scfg.check()?;
    if job.spec.parties != scfg.parties {
        return Err(Error::Config(format!(
            "the job is for {} parties but the parties file lists {}",
            job.spec.parties, scfg.parties
        )));
    }
    let t_plan = std::time::Instant::now();
    let plan = record_plan(&scfg, &*job.plan_program)?;
    let plan_s = t_plan.elapsed().as_secs_f64();
    let mut out = with_connection(cfg, listener, |ep| {
        session(cfg, job.spec.dealer_seed, plan, ep, &*job.program)
    })?;
    out.offline.plan_s = plan_s;
    Ok(out)
}

/// Connect party `cfg.id` to its peers (on `listener` when given) and run `body` over the
/// connection. If `body` fails, the peers are told whom this party blames, so they stop at
/// once and name the root cause. Jobs of one session (`run_party`) and of many over one
/// connection (training, each session on a `PhaseComm`) share this.
pub fn with_connection<T>(
    cfg: &PartyConfig,
    listener: Option<TcpListener>,
    body: impl FnOnce(&TcpEndpoint) -> Result<T>,
) -> Result<T> {
    let ep = match listener {
        Some(l) => TcpNetwork::connect_with(&cfg.tcp(), l)?,
        None => TcpNetwork::connect(&cfg.tcp())?,
    };
    match body(&ep) {
        Ok(out) => {
            drop(ep);
            Ok(out)
        }
        Err(e) => {
            ep.abort_with(blame_of(&e, cfg.id), &format!("party {}: {e}", cfg.id));
            if debug_fail_party() == Some(cfg.id) {
                // Exit after the peers this failure stops (see `DEBUG_FAIL_ENV`).
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e)
        }
    }
}

/// One session of party `cfg.id` over `comm`: the material for `plan` (party 0 deals and
/// sends each other party its seed and the plan's hash; or each loads its file from
/// `cfg.material_dir`), the pairwise seeds (from `dealer_seed`, or agreed with the
/// neighbours), then `program`'s timed online phase. `comm` is the connection, or one
/// phase of it (`PhaseComm`) when a job runs several sessions over one connection.
pub fn session<T>(
    cfg: &PartyConfig,
    dealer_seed: Option<u64>,
    plan: crate::offline::Plan,
    comm: &dyn Comm,
    program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
) -> Result<PartyOutcome<T>> {
    prepare(cfg, dealer_seed, plan, comm)?.run(cfg, comm, program)
}

/// A session of one party made ready for its online phase (`prepare`).
pub struct Prepared {
    store: Box<dyn crate::offline::MaterialSource>,
    seeds: PairSeeds,
    deal_s: f64,
    expand_s: f64,
}

impl Prepared {
    /// The online phase of `program` over `comm`, timed (the comm of `prepare`).
    pub fn run<T>(
        self,
        cfg: &PartyConfig,
        comm: &dyn Comm,
        program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    ) -> Result<PartyOutcome<T>> {
        let ctx = Ctx::new(comm, self.store.as_ref(), &self.seeds, cfg.fixed);
        let mut out = crate::runtime::local::timed_online(&ctx, program)?;
        out.offline.deal_s = self.deal_s;
        out.offline.expand_s = self.expand_s;
        Ok(out)
    }
}

/// Everything of `session` before the online clock starts: material and pairwise seeds
/// (and the fault injection of tests). Callers that measure the online phase alone
/// (training's process CPU time) run `Prepared::run` themselves.
pub fn prepare(
    cfg: &PartyConfig,
    dealer_seed: Option<u64>,
    plan: crate::offline::Plan,
    comm: &dyn Comm,
) -> Result<Prepared> {
    let scfg = cfg.session_config();
    let n = scfg.parties;
    let t_deal = std::time::Instant::now();
    let material = if let Some(dir) = &cfg.material_dir {
        let m = crate::offline::file::load(
            &crate::offline::file::party_file(dir, cfg.id),
            &crate::offline::file::Expect {
                session: None,
                party: cfg.id,
                parties: n,
                plan_hash: plan.hash(),
            },
            &crate::offline::file::MaterialKey::from_session_key(&cfg.key.0),
        )?;
        // Files of different dealings would silently give wrong results: compare the
        // dealing's session id with every peer before using them.
        for j in (0..n).filter(|&j| j != cfg.id) {
            comm.post(j, MATERIAL_TAG, vec![m.session].into())?;
        }
        for j in (0..n).filter(|&j| j != cfg.id) {
            let theirs = comm.wait(j, MATERIAL_TAG, 1)?[0];
            if theirs != m.session {
                return Err(Error::Material(format!(
                    "party {j} loaded material of dealing {theirs:#x}, we loaded {:#x}: the files come from different `mpc-pipe offline` runs",
                    m.session
                )));
            }
        }
        m
    } else if cfg.id == 0 {
        // Seeds first, so the other parties expand their material while this one deals
        // (and keeps its own material as it draws it, rather than drawing it again).
        let seeds = crate::offline::dealer_seeds(n, dealer_seed);
        let hash = plan.hash();
        for (j, seed) in seeds.iter().enumerate().skip(1) {
            comm.post(j, MATERIAL_TAG, material_words(seed, &hash).into())?;
        }
        let mut keep = vec![false; n];
        keep[0] = true;
        let mut dealt = crate::offline::deal_with(&plan, &seeds, cfg.session, &keep);
        // FSS keys: the correction words every party must receive (its seed cannot make
        // them), one message per party in plan order, before the online clock.
        for m in dealt.iter().skip(1) {
            let words = dealt_words(&plan, m)?;
            if !words.is_empty() {
                comm.post(m.party, DEALT_TAG, words.into())?;
            }
        }
        dealt.swap_remove(0)
    } else {
        let w = comm.wait(0, MATERIAL_TAG, 6)?;
        let hash = plan.hash();
        let mut got = [0u8; 32];
        for (i, x) in w[2..].iter().enumerate() {
            got[8 * i..8 * i + 8].copy_from_slice(&x.to_le_bytes());
        }
        if got != hash {
            return Err(Error::Material(
                "the dealer (party 0) recorded a different plan: the parties run different programs (model, batch, parties, --trunc or --protocols differ)".into(),
            ));
        }
        let mut seed = [0u8; 16];
        seed[..8].copy_from_slice(&w[0].to_le_bytes());
        seed[8..].copy_from_slice(&w[1].to_le_bytes());
        let corrections = receive_dealt(comm, &plan, cfg.id)?;
        PartyMaterial {
            party: cfg.id,
            parties: n,
            session: cfg.session,
            plan: Arc::new(plan),
            plan_hash: hash,
            seed,
            corrections,
            expanded: None,
        }
    };
    let deal_s = t_deal.elapsed().as_secs_f64();
    // One party per process: the same budget as in-process runs, for this party alone.
    let t_expand = std::time::Instant::now();
    let store =
        crate::runtime::local::material_mode(std::slice::from_ref(&material)).source(material)?;
    let expand_s = t_expand.elapsed().as_secs_f64();
    let seeds = match dealer_seed {
        Some(s) => PairSeeds::from_dealer_seed(s, cfg.id, n),
        None => PairSeeds::establish(comm)?,
    };
    if debug_fail_party() == Some(cfg.id) {
        return Err(Error::Protocol(format!(
            "fault injection: party {} fails before its online phase",
            cfg.id
        )));
    }
    if let Some(d) = cfg.stall_before_online {
        eprintln!(
            "party {}: stalling {:.1}s before the online phase (fault injection)",
            cfg.id,
            d.as_secs_f64()
        );
        std::thread::sleep(d);
    }
    Ok(Prepared {
        store,
        seeds,
        deal_s,
        expand_s,
    })
}

/// One phase of a connection that carries several sessions (a training run's epochs,
/// evaluations and final reveal): every tag is mixed with the phase number, so a party
/// that runs ahead into the next session never sends a tag its peer still waits for in
/// this one (a mailbox holds one message per tag).
pub struct PhaseComm<'a> {
    inner: &'a dyn Comm,
    salt: u64,
}

impl<'a> PhaseComm<'a> {
    pub fn new(inner: &'a dyn Comm, phase: u64) -> Self {
        // An odd multiplier is a bijection on u64: distinct phases, distinct salts.
        PhaseComm {
            inner,
            salt: phase.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    fn tag(&self, t: Tag) -> Tag {
        Tag(t.0 ^ self.salt)
    }
}

impl Comm for PhaseComm<'_> {
    fn party(&self) -> usize {
        self.inner.party()
    }
    fn parties(&self) -> usize {
        self.inner.parties()
    }
    fn post(&self, to: usize, tag: Tag, data: crate::comm::Payload) -> Result<()> {
        self.inner.post(to, self.tag(tag), data)
    }
    fn post_bulk(&self, to: usize, tag: Tag, data: crate::comm::Payload) -> Result<()> {
        self.inner.post_bulk(to, self.tag(tag), data)
    }
    fn wait(&self, from: usize, tag: Tag, len: usize) -> Result<crate::comm::Payload> {
        self.inner.wait(from, self.tag(tag), len)
    }
    fn counters(&self) -> &crate::comm::Counters {
        self.inner.counters()
    }
}

/// Reserved tag of the dealer's words for a party other than 0 (FSS correction words).
pub const DEALT_TAG: Tag = Tag(u64::MAX - 3);

/// The words the dealer hands party `m.party` (`Request::dealt_lens`), in plan order.
fn dealt_words(plan: &crate::offline::Plan, m: &PartyMaterial) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for (key, req) in &plan.entries {
        if req.dealt_lens(m.party).is_empty() {
            continue;
        }
        let c = m.corrections.get(key).ok_or_else(|| {
            Error::Material(format!(
                "the dealer made no words for party {} of operation {key:#018x}",
                m.party
            ))
        })?;
        c.iter().for_each(|comp| out.extend_from_slice(comp));
    }
    Ok(out)
}

/// The dealer's words for party `me`, split by the plan it recorded itself (so their
/// size is the plan's, never the sender's choice).
fn receive_dealt(
    ep: &dyn Comm,
    plan: &crate::offline::Plan,
    me: usize,
) -> Result<std::collections::HashMap<u64, crate::offline::Material>> {
    let total: usize = plan
        .entries
        .iter()
        .map(|(_, r)| r.dealt_lens(me).iter().sum::<usize>())
        .sum();
    let mut out = std::collections::HashMap::new();
    if total == 0 {
        return Ok(out);
    }
    let w = ep.wait(0, DEALT_TAG, total)?;
    let mut off = 0;
    for (key, req) in &plan.entries {
        let lens = req.dealt_lens(me);
        if lens.is_empty() {
            continue;
        }
        let comps = lens
            .iter()
            .map(|&l| {
                let c = w[off..off + l].to_vec();
                off += l;
                c
            })
            .collect();
        out.insert(*key, comps);
    }
    Ok(out)
}

/// What the dealer sends a party: its seed and the plan's hash.
fn material_words(seed: &crate::prg::Seed, plan_hash: &[u8; 32]) -> Vec<u64> {
    let mut w = vec![
        u64::from_le_bytes(seed[..8].try_into().unwrap()),
        u64::from_le_bytes(seed[8..].try_into().unwrap()),
    ];
    w.extend(
        plan_hash
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
    );
    w
}

fn join<T: ToString>(v: impl Iterator<Item = T>) -> String {
    v.map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The one result line a party prints (decoded output and counters; no shares).
pub fn format_result(id: usize, o: &PartyOutcome<PlainTensor>) -> String {
    let p = &o.stats.per_peer;
    format!(
        "{RESULT_PREFIX} party={id} online_s={:?} plan_s={:?} deal_s={:?} expand_s={:?} rounds={} ahead_rounds={} bytes_sent={} bytes_recv={} msgs_sent={} msgs_recv={} wait_ns={} shape={} values={}",
        o.online_s,
        o.offline.plan_s,
        o.offline.deal_s,
        o.offline.expand_s,
        o.stats.rounds,
        o.stats.ahead_rounds,
        join(p.iter().map(|s| s.bytes_sent)),
        join(p.iter().map(|s| s.bytes_recv)),
        join(p.iter().map(|s| s.msgs_sent)),
        join(p.iter().map(|s| s.msgs_recv)),
        join(p.iter().map(|s| s.wait_ns)),
        join(o.value.shape().iter()),
        join(o.value.data().iter().map(|x| format!("{x:?}"))),
    )
}

/// Parse a line made by `format_result`.
pub fn parse_result(line: &str) -> Result<(usize, PartyOutcome<PlainTensor>)> {
    let bad = |what: &str| Error::Protocol(format!("malformed party result line ({what})"));
    let rest = line
        .strip_prefix(RESULT_PREFIX)
        .ok_or_else(|| bad("prefix"))?;
    let mut kv = std::collections::HashMap::new();
    for item in rest.split_whitespace() {
        let (k, v) = item.split_once('=').ok_or_else(|| bad(item))?;
        kv.insert(k, v);
    }
    let get = |k: &str| kv.get(k).copied().ok_or_else(|| bad(k));
    fn list<T: std::str::FromStr>(s: &str) -> Option<Vec<T>> {
        if s.is_empty() {
            return Some(vec![]);
        }
        s.split(',').map(|x| x.parse().ok()).collect()
    }
    let ints = |k: &str| list::<u64>(get(k)?).ok_or_else(|| bad(k));
    let secs = |k: &str| -> Result<f64> {
        get(k)?
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| bad(k))
    };
    let (bs, br, ms, mr, wn) = (
        ints("bytes_sent")?,
        ints("bytes_recv")?,
        ints("msgs_sent")?,
        ints("msgs_recv")?,
        ints("wait_ns")?,
    );
    let per_peer = (0..bs.len())
        .map(|i| {
            Some(PeerStats {
                bytes_sent: bs[i],
                bytes_recv: *br.get(i)?,
                msgs_sent: *ms.get(i)?,
                msgs_recv: *mr.get(i)?,
                wait_ns: *wn.get(i)?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("counter lengths"))?;
    let shape = list::<usize>(get("shape")?).ok_or_else(|| bad("shape"))?;
    let values = list::<f64>(get("values")?).ok_or_else(|| bad("values"))?;
    if shape.iter().product::<usize>() != values.len() {
        return Err(bad("shape and values disagree"));
    }
    Ok((
        get("party")?.parse().map_err(|_| bad("party"))?,
        PartyOutcome {
            value: PlainTensor::from_vec(&shape, values),
            online_s: secs("online_s")?,
            offline: super::Offline {
                plan_s: secs("plan_s")?,
                deal_s: secs("deal_s")?,
                expand_s: secs("expand_s")?,
            },
            stats: CommStats {
                per_peer,
                rounds: get("rounds")?.parse().map_err(|_| bad("rounds"))?,
                ahead_rounds: get("ahead_rounds")?
                    .parse()
                    .map_err(|_| bad("ahead_rounds"))?,
            },
        },
    ))
}

/// How to run all parties as child processes on loopback.
#[derive(Clone, Debug)]
pub struct ProcessRun {
    pub spec: JobSpec,
    pub timeout: Duration,
    pub link: LinkProfile,
    /// The `mpc-pipe` executable (default: the current one).
    pub exe: Option<PathBuf>,
    pub fixed: FixedPoint,
    /// Each party loads its own material file from here (see `PartyConfig::material_dir`).
    pub material_dir: Option<PathBuf>,
    /// Extra arguments given to every `mpc-pipe party` (hidden debug options).
    pub extra_args: Vec<String>,
    /// See `PartyJob::inbox_cap_mib`.
    pub inbox_cap_mib: u64,
    /// See `PartyJob::plaintext_channels`.
    pub plaintext_channels: bool,
    /// The session key handed to every child (None: a fresh one). Material files need the
    /// key that `mpc-pipe offline` MACed them with.
    pub key: Option<SessionKey>,
    /// The job runs many sessions one after another (training: each epoch, evaluation and
    /// the final reveal), for as long as it takes: no bound on the whole run. Each wait of
    /// each party is still bounded by `timeout`.
    pub many_sessions: bool,
}

impl ProcessRun {
    /// What every child runs.
    pub fn party_job(&self) -> PartyJob {
        PartyJob {
            spec: self.spec.clone(),
            fixed: self.fixed,
            timeout_s: self.timeout.as_secs_f64(),
            link: self.link.clone(),
            material_dir: self.material_dir.clone(),
            inbox_cap_mib: self.inbox_cap_mib,
            plaintext_channels: self.plaintext_channels,
        }
    }
}

impl ProcessRun {
    pub fn new(spec: JobSpec) -> Self {
        ProcessRun {
            spec,
            timeout: Duration::from_secs(60),
            link: LinkProfile::unshaped(),
            exe: None,
            fixed: FixedPoint::default(),
            material_dir: None,
            extra_args: vec![],
            inbox_cap_mib: DEFAULT_INBOX_CAP_MIB,
            plaintext_channels: false,
            key: None,
            many_sessions: false,
        }
    }
}

/// Free loopback ports: bind port 0, note the port, release it. Another process may take
/// one before the child binds it; `spawn_parties` retries on that.
fn free_loopback_addrs(n: usize) -> Result<Vec<SocketAddr>> {
    let ls = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    ls.iter().map(|l| Ok(l.local_addr()?)).collect()
}

/// The last `lines` lines of a child's stderr, without its blame line (read separately).
fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().filter(|l| !l.starts_with(BLAME_PREFIX)).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Run every party of `run.spec` as a child process (`mpc-pipe party ...`) on loopback and
/// return their outcomes by party id. If a child fails, the others are killed and the error
/// names the first party that failed, with the tail of its stderr.
pub fn spawn_parties(run: &ProcessRun) -> Result<Vec<PartyOutcome<PlainTensor>>> {
    let outputs = spawn_party_outputs(run)?;
    let mut outs = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.starts_with(RESULT_PREFIX))
            .ok_or_else(|| Error::Peer {
                peer: i,
                op: "party process".into(),
                msg: "exited successfully but printed no result".into(),
            })?;
        let (id, o) = parse_result(line)?;
        if id != i {
            return Err(Error::Protocol(format!(
                "party process {i} reported itself as party {id}"
            )));
        }
        outs.push(o);
    }
    Ok(outs)
}

/// Run every party of `run.spec` as a child process, as `spawn_parties` does, and return
/// what each printed on stdout, by party id, once all have exited successfully. Lines a
/// child prints with `PROGRESS_PREFIX` are also shown on this process's stdout as they
/// come (training's per-epoch lines).
pub fn spawn_party_outputs(run: &ProcessRun) -> Result<Vec<String>> {
    let mut last = None;
    for _attempt in 0..3 {
        match spawn_once(run) {
            Err(SpawnError::PortTaken(e)) => last = Some(e),
            Err(SpawnError::Fatal(e)) => return Err(e),
            Ok(v) => return Ok(v),
        }
    }
    Err(last.unwrap())
}

/// Prefix of a line a party process prints for its parent to show at once (without the
/// prefix): progress a user follows while the job runs.
pub const PROGRESS_PREFIX: &str = "mpc-pipe-progress ";

/// Print `line` for the parent of this party process to show (`PROGRESS_PREFIX`).
pub fn progress(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for l in line.lines() {
        let _ = writeln!(out, "{PROGRESS_PREFIX}{l}");
    }
    let _ = out.flush();
}

enum SpawnError {
    PortTaken(Error),
    Fatal(Error),
}

struct Running {
    child: Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

/// How long the other parties get to exit on their own after the first failure.
const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// Whom a failed party's stderr blames (its `BLAME_PREFIX` line), if it says.
fn blamed_by(stderr: &str) -> Option<usize> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(BLAME_PREFIX))
        .and_then(|rest| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix("blames="))
        })
        .and_then(|v| v.parse().ok())
}

/// The party whose failure ended a session, from every party's exit status (None: still
/// running when stopped) and stderr: a failed party that blames itself (lowest id first);
/// else one that died without saying whom it blames (killed, crashed); else the party
/// most of the failed ones blame. None if nothing failed.
fn culprit(status: &[Option<std::process::ExitStatus>], errs: &[&str]) -> Option<usize> {
    let failed: Vec<usize> = (0..status.len())
        .filter(|&i| status[i].is_some_and(|s| !s.success()))
        .collect();
    let blames: Vec<(usize, Option<usize>)> =
        failed.iter().map(|&i| (i, blamed_by(errs[i]))).collect();
    if let Some(&(i, _)) = blames.iter().find(|(i, b)| *b == Some(*i)) {
        return Some(i);
    }
    if let Some(&(i, _)) = blames.iter().find(|(_, b)| b.is_none()) {
        return Some(i);
    }
    let mut votes = vec![0usize; status.len()];
    for b in blames.iter().filter_map(|(_, b)| *b) {
        if b < votes.len() {
            votes[b] += 1;
        }
    }
    let most = *votes.iter().max()?;
    (most > 0).then(|| votes.iter().position(|&v| v == most).unwrap())
}

/// Everything `r` yields, as text; with `show`, its `PROGRESS_PREFIX` lines are printed
/// on this process's stdout as they arrive.
fn reader(r: impl Read + Send + 'static, show: bool) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut s = String::new();
        let mut r = std::io::BufReader::new(r);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            if let Some(p) = line.strip_prefix(PROGRESS_PREFIX).filter(|_| show) {
                print!("{p}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            s.push_str(&line);
            line.clear();
        }
        s
    })
}

fn spawn_once(run: &ProcessRun) -> std::result::Result<Vec<String>, SpawnError> {
    let fatal = SpawnError::Fatal;
    let n = run.spec.parties;
    let exe = match &run.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().map_err(|e| fatal(e.into()))?,
    };
    let addrs = free_loopback_addrs(n).map_err(fatal)?;
    let session = super::local::fresh_session();
    let key = run.key.clone().unwrap_or_else(SessionKey::fresh);
    let job_json = ChildInput {
        job: run.party_job(),
        parties: PartiesFile::from_addrs(&addrs),
    }
    .to_json();
    let mut kids: Vec<Running> = Vec::with_capacity(n);
    let kill_all = |kids: &mut Vec<Running>| {
        for k in kids.iter_mut() {
            let _ = k.child.kill();
            let _ = k.child.wait();
        }
    };
    for id in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.arg("party")
            .args(["--id", &id.to_string()])
            .args(["--session", &format!("{session:016x}")])
            .arg("--job-stdin")
            .args(&run.extra_args)
            .env(KEY_ENV, key.to_hex())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.spawn() {
            Ok(mut child) => {
                // A few KiB: fits the pipe, so this never waits for the child. A child
                // that died at once is reported from its exit status below.
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = std::io::Write::write_all(&mut stdin, job_json.as_bytes());
                }
                let out = reader(child.stdout.take().unwrap(), true);
                let err = reader(child.stderr.take().unwrap(), false);
                kids.push(Running { child, out, err });
            }
            Err(e) => {
                kill_all(&mut kids);
                return Err(fatal(Error::Config(format!(
                    "cannot start {}: {e}",
                    exe.display()
                ))));
            }
        }
    }
    // Every child bounds its own setup and waits by the timeout; this outer bound only
    // guards against a child that hangs outside them.
    let outer = run
        .timeout
        .saturating_mul(3)
        .saturating_add(Duration::from_secs(30));
    let deadline = if run.many_sessions {
        None
    } else {
        Some(Instant::now().checked_add(outer).ok_or_else(|| {
            fatal(Error::Config(format!(
                "timeout of {} s is too large",
                run.timeout.as_secs_f64()
            )))
        })?)
    };
    let past_deadline = || deadline.is_some_and(|d| Instant::now() >= d);
    let mut status: Vec<Option<std::process::ExitStatus>> = vec![None; n];
    let mut first_failed: Option<usize> = None;
    // After the first failure the others get a moment to exit on their own (an abort
    // frame stops them at once) and say whom they blame: the first process to exit is
    // often a party stopped by another's failure, not the one that failed.
    let mut grace_end: Option<Instant> = None;
    while status.iter().any(Option::is_none) {
        for (i, k) in kids.iter_mut().enumerate() {
            if status[i].is_none() {
                if let Ok(Some(st)) = k.child.try_wait() {
                    status[i] = Some(st);
                    if !st.success() && first_failed.is_none() {
                        first_failed = Some(i);
                        let g = Instant::now() + FAILURE_GRACE;
                        grace_end = Some(deadline.map_or(g, |d| g.min(d)));
                    }
                }
            }
        }
        if grace_end.is_some_and(|g| Instant::now() >= g) || past_deadline() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let timed_out = first_failed.is_none() && status.iter().any(Option::is_none);
    kill_all(&mut kids);
    let outputs: Vec<(String, String)> = kids
        .into_iter()
        .map(|k| {
            (
                k.out.join().unwrap_or_default(),
                k.err.join().unwrap_or_default(),
            )
        })
        .collect();
    if timed_out {
        let i = status.iter().position(Option::is_none).unwrap();
        return Err(fatal(Error::Timeout {
            peer: i,
            op: "party process (it neither finished nor failed)".into(),
            secs: outer.as_secs_f64(),
        }));
    }
    if let Some(first) = first_failed {
        let errs: Vec<&str> = outputs.iter().map(|(_, e)| e.as_str()).collect();
        let i = culprit(&status, &errs).unwrap_or(first);
        let msg = match status[i] {
            Some(st) => format!("exited with {st}: {}", tail(errs[i], 5)),
            // Blamed by the others, but it had not exited (stalled or hung): quote them.
            None => {
                let j = (0..n)
                    .find(|&j| blamed_by(errs[j]) == Some(i) && j != i)
                    .unwrap_or(first);
                format!("stopped party {j}, which reported: {}", tail(errs[j], 5))
            }
        };
        let e = Error::Peer {
            peer: i,
            op: "party process".into(),
            msg,
        };
        return Err(if errs.iter().any(|e| e.contains("cannot listen on")) {
            SpawnError::PortTaken(e)
        } else {
            fatal(e)
        });
    }
    Ok(outputs.into_iter().map(|(out, _)| out).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_culprit_is_the_party_the_others_blame_not_the_first_to_exit() {
        let failed = Some(std::process::ExitStatus::from_raw(1 << 8));
        let killed = Some(std::process::ExitStatus::from_raw(9));
        let ok = Some(std::process::ExitStatus::from_raw(0));
        let line = |me, b| format!("mpc-pipe: error: ...\n{BLAME_PREFIX} party={me} blames={b}\n");
        let (l0, l1, l2) = (line(0, 2), line(1, 2), line(2, 2));
        // Party 2 failed on its own; 0 and 1 exited first, blaming it.
        assert_eq!(
            culprit(&[failed, failed, failed], &[&l0, &l1, &l2]),
            Some(2)
        );
        // Party 2 was killed: it says nothing, the others blame it.
        assert_eq!(culprit(&[failed, failed, killed], &[&l0, &l1, ""]), Some(2));
        // Party 2 stalled (still running when stopped): the others' blame decides.
        assert_eq!(culprit(&[failed, failed, None], &[&l0, &l1, ""]), Some(2));
        assert_eq!(culprit(&[ok, ok, ok], &["", "", ""]), None);
        assert_eq!(blamed_by(&l1), Some(2));
    }

    #[test]
    fn a_job_description_round_trips_and_unknown_keys_are_refused() {
        let mut run = ProcessRun::new(JobSpec::new("lenet", 2, 3));
        run.inbox_cap_mib = 77;
        let job = run.party_job();
        assert_eq!(PartyJob::from_json(&job.to_json()).unwrap(), job);
        let extra = job.to_json().replacen('{', "{\"surprise\":1,", 1);
        assert!(PartyJob::from_json(&extra).is_err());
    }
}
