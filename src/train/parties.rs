//! Where a training run's parties are, and how each online session of the run (an epoch's
//! steps, an evaluation, the final reveal of the weights) runs there: all parties as
//! threads of this process over in-memory links (`InProcess`), or this process's one party
//! over a TCP connection to the others (`OneProcess`, `train --processes`). The epoch loop
//! (train::Job::run_on) is the same for both. Depends on runtime::{local, process}, offline,
//! proto, comm, kernels::bound (the process CPU clock).
//!
//! A party process runs every session of the run over one connection, each on its own
//! `PhaseComm` (tags mixed with the session's number), with fresh dealer material per
//! session as in-process runs have. After an epoch, each party sends its counters to the
//! model owner (`gather`), who writes the epoch's report: traffic counters and times are
//! public, and nothing secret travels this way.

use std::collections::HashMap;
use std::time::Instant;

use crate::comm::{Comm, CommStats, PeerStats, Tag};
use crate::error::{Error, Result};
use crate::offline::Plan;
use crate::proto::Ctx;
use crate::runtime::local::Offline;
use crate::runtime::local::{deal_in_process, fresh_session, record_plan, run_online_with_link};
use crate::runtime::process::{PartyConfig, PhaseComm};
use crate::runtime::{PartyOutcome, SessionConfig};
use crate::transport::emulator::LinkProfile;

/// The programs of a run whose plans differ (each kind is recorded once and reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanKind {
    /// The first epoch: no momentum buffers yet, so its plan is its own.
    FirstEpoch,
    /// Every later epoch (same steps, same keys, same shapes).
    Epoch,
    Evaluation,
    /// The trained weights revealed to the model owner (openings only).
    Reveal,
}

/// What one party measured of an epoch: its training session's online phase, and the
/// whole epoch (training and evaluation sessions, each with its plan, dealer and
/// expansion).
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub online_s: f64,
    /// Process CPU time attributed to this party during the session.
    pub cpu_s: f64,
    pub stats: CommStats,
    /// The epoch's sessions' phases before their online clocks, summed.
    pub offline: Offline,
    /// Wall time of the whole epoch at this party.
    pub e2e_s: f64,
}

/// The outcomes of the parties of this process, by id.
pub type Local<T> = Vec<(usize, PartyOutcome<T>)>;

/// One session at this process: its parties' outcomes, and what it cost.
pub struct Session<T> {
    /// The local parties' ids and outcomes, in id order.
    pub outs: Local<T>,
    /// Process CPU seconds per local party of the online phase.
    pub cpu_s: f64,
    /// The dry run (0 when the plan of its kind was recorded before), the dealer (or the
    /// wait for its seed) and the expansion, as the slowest local party saw them.
    pub offline: Offline,
}

/// The parties of a training run, as seen from this process.
pub trait Parties {
    /// Number of computing parties.
    fn parties(&self) -> usize;
    /// The link between them (the same at every party: it is a public option).
    fn link(&self) -> &LinkProfile;
    /// Whether party `p` runs in this process.
    fn is_local(&self, p: usize) -> bool;
    /// One online session of `program` (whose plan is that of every program of `kind`)
    /// for the parties of this process: the plan (recorded once per kind), fresh dealer
    /// material, the online phase.
    fn session<T: Send>(
        &mut self,
        kind: PlanKind,
        program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    ) -> Result<Session<T>>;
    /// Every party's measurements of a session, at the model owner's process (None in
    /// the others'), from this process's parties' `mine` (in id order).
    fn gather(&mut self, mine: Vec<Measured>) -> Result<Option<Vec<Measured>>>;
}

/// All parties in this process, one thread each, over links emulated as `link`.
pub struct InProcess<'a> {
    pub session: &'a SessionConfig,
    pub link: &'a LinkProfile,
    plans: HashMap<PlanKind, Plan>,
}

impl<'a> InProcess<'a> {
    pub fn new(session: &'a SessionConfig, link: &'a LinkProfile) -> Self {
        InProcess {
            session,
            link,
            plans: HashMap::new(),
        }
    }
}

impl Parties for InProcess<'_> {
    fn parties(&self) -> usize {
        self.session.parties
    }

    fn link(&self) -> &LinkProfile {
        self.link
    }

    fn is_local(&self, _p: usize) -> bool {
        true
    }

    fn session<T: Send>(
        &mut self,
        kind: PlanKind,
        program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    ) -> Result<Session<T>> {
        let mut offline = Offline::default();
        if !self.plans.contains_key(&kind) {
            let t = Instant::now();
            let plan = record_plan(self.session, program)?;
            offline.plan_s = t.elapsed().as_secs_f64();
            self.plans.insert(kind, plan);
        }
        let t = Instant::now();
        let material = deal_in_process(&self.plans[&kind], self.session, fresh_session());
        offline.deal_s = t.elapsed().as_secs_f64();
        let cpu0 = crate::kernels::bound::process_cpu_s();
        let outs = run_online_with_link(self.session, self.link, material, program)?;
        let cpu_s = (crate::kernels::bound::process_cpu_s() - cpu0) / self.parties() as f64;
        offline.expand_s = outs.iter().map(|o| o.offline.expand_s).fold(0.0, f64::max);
        Ok(Session {
            outs: outs.into_iter().enumerate().collect(),
            cpu_s,
            offline,
        })
    }

    fn gather(&mut self, mine: Vec<Measured>) -> Result<Option<Vec<Measured>>> {
        Ok(Some(mine))
    }
}

/// Reserved tag of a party's counters sent to the model owner after a session.
const GATHER_TAG: Tag = Tag(u64::MAX - 3);

/// This process's one party (`cfg.id`), connected to the others by `comm`.
pub struct OneProcess<'a> {
    cfg: &'a PartyConfig,
    comm: &'a dyn Comm,
    dealer_seed: Option<u64>,
    /// Sessions run so far over `comm` (each on its own `PhaseComm`).
    phase: u64,
    plans: HashMap<PlanKind, Plan>,
}

impl<'a> OneProcess<'a> {
    pub fn new(cfg: &'a PartyConfig, comm: &'a dyn Comm, dealer_seed: Option<u64>) -> Self {
        OneProcess {
            cfg,
            comm,
            dealer_seed,
            phase: 0,
            plans: HashMap::new(),
        }
    }
}

impl Parties for OneProcess<'_> {
    fn parties(&self) -> usize {
        self.cfg.addrs.len()
    }

    fn link(&self) -> &LinkProfile {
        &self.cfg.link
    }

    fn is_local(&self, p: usize) -> bool {
        p == self.cfg.id
    }

    fn session<T: Send>(
        &mut self,
        kind: PlanKind,
        program: &(dyn Fn(&Ctx) -> Result<T> + Sync),
    ) -> Result<Session<T>> {
        self.phase += 1;
        let mut offline = Offline::default();
        if !self.plans.contains_key(&kind) {
            let t = Instant::now();
            let plan = record_plan(&self.cfg.session_config(), program)?;
            offline.plan_s = t.elapsed().as_secs_f64();
            self.plans.insert(kind, plan);
        }
        let comm = PhaseComm::new(self.comm, self.phase);
        let ready = crate::runtime::process::prepare(
            self.cfg,
            self.dealer_seed,
            self.plans[&kind].clone(),
            &comm,
        )?;
        // The online phase's CPU time only, as in-process runs measure it (party 0's
        // dealing is not in it).
        let cpu0 = crate::kernels::bound::process_cpu_s();
        let out = ready.run(self.cfg, &comm, program)?;
        let cpu_s = crate::kernels::bound::process_cpu_s() - cpu0;
        offline.deal_s = out.offline.deal_s;
        offline.expand_s = out.offline.expand_s;
        Ok(Session {
            outs: vec![(self.cfg.id, out)],
            cpu_s,
            offline,
        })
    }

    fn gather(&mut self, mine: Vec<Measured>) -> Result<Option<Vec<Measured>>> {
        let n = self.parties();
        let comm = PhaseComm::new(self.comm, self.phase);
        let [m] = &mine[..] else {
            return Err(Error::Protocol("one party per process".into()));
        };
        if self.cfg.id != crate::train::mpc::MODEL_OWNER {
            comm.post(
                crate::train::mpc::MODEL_OWNER,
                GATHER_TAG,
                encode(m, n).into(),
            )?;
            return Ok(None);
        }
        let mut all = Vec::with_capacity(n);
        for j in 0..n {
            if j == self.cfg.id {
                all.push(m.clone());
            } else {
                let w = comm.wait(j, GATHER_TAG, words(n))?;
                all.push(decode(&w, n).ok_or_else(|| Error::Peer {
                    peer: j,
                    op: "counters after an epoch".into(),
                    msg: "counters out of range (times not finite and non-negative, or a count above 2^56)".into(),
                })?);
            }
        }
        Ok(Some(all))
    }
}

/// Words of one party's encoded measurements among `n` parties.
fn words(n: usize) -> usize {
    TIMES + 2 + 5 * n
}

/// Times (f64 words) at the head of an encoded `Measured`.
const TIMES: usize = 6;

/// online_s, cpu_s, plan_s, deal_s, expand_s and e2e_s (f64 bits), rounds, ahead rounds,
/// then per peer bytes sent and received, messages sent and received, wait ns.
fn encode(m: &Measured, n: usize) -> Vec<u64> {
    let mut w = vec![
        m.online_s.to_bits(),
        m.cpu_s.to_bits(),
        m.offline.plan_s.to_bits(),
        m.offline.deal_s.to_bits(),
        m.offline.expand_s.to_bits(),
        m.e2e_s.to_bits(),
        m.stats.rounds,
        m.stats.ahead_rounds,
    ];
    for j in 0..n {
        let p = m.stats.per_peer.get(j).copied().unwrap_or_default();
        w.extend([
            p.bytes_sent,
            p.bytes_recv,
            p.msgs_sent,
            p.msgs_recv,
            p.wait_ns,
        ]);
    }
    w
}

/// Largest counter a peer may report (2^56: 72 PB, 2.3 years of waiting in ns), so sums
/// over the parties and peers cannot overflow.
const MAX_COUNTER: u64 = 1 << 56;

fn decode(w: &[u64], n: usize) -> Option<Measured> {
    let secs = |x: u64| Some(f64::from_bits(x)).filter(|s| s.is_finite() && *s >= 0.0);
    if w[TIMES..].iter().any(|&x| x > MAX_COUNTER) {
        return None;
    }
    let per_peer = (0..n)
        .map(|j| {
            let p = &w[TIMES + 2 + 5 * j..TIMES + 7 + 5 * j];
            PeerStats {
                bytes_sent: p[0],
                bytes_recv: p[1],
                msgs_sent: p[2],
                msgs_recv: p[3],
                wait_ns: p[4],
            }
        })
        .collect();
    Some(Measured {
        online_s: secs(w[0])?,
        cpu_s: secs(w[1])?,
        offline: Offline {
            plan_s: secs(w[2])?,
            deal_s: secs(w[3])?,
            expand_s: secs(w[4])?,
        },
        e2e_s: secs(w[5])?,
        stats: CommStats {
            per_peer,
            rounds: w[TIMES],
            ahead_rounds: w[TIMES + 1],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_round_trip_and_bad_times_are_refused() {
        let m = Measured {
            online_s: 1.5,
            cpu_s: 0.25,
            stats: CommStats {
                per_peer: vec![
                    PeerStats::default(),
                    PeerStats {
                        bytes_sent: 7,
                        bytes_recv: 9,
                        msgs_sent: 2,
                        msgs_recv: 3,
                        wait_ns: 11,
                    },
                ],
                rounds: 40,
                ahead_rounds: 6,
            },
            offline: Offline {
                plan_s: 0.125,
                deal_s: 0.5,
                expand_s: 0.0625,
            },
            e2e_s: 3.0,
        };
        let w = encode(&m, 2);
        assert_eq!(w.len(), words(2));
        let back = decode(&w, 2).unwrap();
        assert_eq!(back.stats, m.stats);
        assert_eq!((back.online_s, back.cpu_s), (1.5, 0.25));
        assert_eq!((back.offline, back.e2e_s), (m.offline, 3.0));
        for t in 0..TIMES {
            let mut bad = w.clone();
            bad[t] = f64::NAN.to_bits();
            assert!(decode(&bad, 2).is_none(), "time {t} not finite");
            bad[t] = (-1.0f64).to_bits();
            assert!(decode(&bad, 2).is_none(), "time {t} negative");
        }
        let mut bad = w.clone();
        bad[TIMES + 7] = u64::MAX;
        assert!(decode(&bad, 2).is_none(), "a count past the cap");
    }
}
