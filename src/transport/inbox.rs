//! The receive side shared by both transports: per peer, a lock-free queue the I/O side
//! pushes arrived messages onto, and a tag-addressed mailbox the compute side drains it
//! into. Depends on comm, error, transport::emulator (and crossbeam).
//!
//! Why a queue and a map: the I/O thread (or a posting thread) must never wait for compute,
//! so it only pushes onto a `SegQueue`; it takes the mailbox lock only when a waiter is
//! asleep, to wake it. Waiters need lookup by tag (messages arrive in any order), so they
//! move queued messages into a map under the mailbox lock and take their own tag from it.
//!
//! Emulated links: every arrival carries the time it is due (its emulated delivery time;
//! 0 when unshaped), and a waiter does not take a message, nor report a departure, before
//! that time. The waiter itself sleeps until the due time rather than a delivery thread
//! waking it then: each thread-to-thread wake-up after a long idle spell costs tens of
//! microseconds or more (more on idle virtual CPUs), and a chain of them (delivery thread,
//! then waiter) made emulated latencies late by 0.1-0.2 ms. See `emulator::wake_before`.
//!
//! Wake-ups are directed: a sleeping waiter registers its thread under the tag it waits
//! for, and a push unparks only that thread (a departure unparks all). Pipeline lanes wait
//! on the same peer at once, and waking every one of them for each message (a condvar's
//! notify_all) tripled the context switches of a 4-lane run.
//!
//! Lost-wakeup freedom (a Dekker pattern): the pusher does push; fence; load(sleepers). A
//! waiter, under the lock, registers itself, does sleepers += 1; fence; drain; and then
//! parks. Either the waiter's drain sees the message, or the pusher sees the sleeper, takes
//! the lock (so it sees the registration) and unparks the thread; an unpark that comes
//! before the park makes the park return at once.
//!
//! Liveness (TCP only, `with_liveness`): the I/O side records when bytes last came from
//! each peer (`heard`); every peer sends at least a heartbeat frame when idle. When a wait
//! on peer j times out while j is still heard from, and another peer k has been silent
//! longer than the bound, the timeout names k: j is alive but waiting, most likely on k
//! (`silent_suspect`). Without it, the third party of a chain 1 -> 0 -> stopped 2 named 0.
//! When liveness finds a silent peer (j or another) the timeout is reported at once, with
//! no grace: a silent peer sends no abort.

use crate::lanes::Waker;
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;

use super::emulator::{self, Clock};
use crate::comm::{Counters, PartyId, Payload, Tag};
use crate::error::{Error, Result};

/// What the I/O side hands to the compute side.
pub enum Arrival {
    Msg(Tag, Payload),
    /// The peer is gone (finished, disconnected, failed); no more messages will come.
    Gone(Departure),
}

/// Why a peer left. `blame` names another party when the peer stopped because of that
/// party's failure (it said so in its abort frame), so errors name the root cause.
#[derive(Clone, Debug)]
pub struct Departure {
    pub why: String,
    pub blame: Option<PartyId>,
}

impl Departure {
    pub fn new(why: impl Into<String>) -> Self {
        Departure {
            why: why.into(),
            blame: None,
        }
    }
}

/// How long a timed-out wait goes on listening for the silent peer's abort: half the
/// timeout, at most 30 s; not at all when liveness already names a silent peer (see
/// `wait`). A peer that is really gone is reported after at most 1.5 times
/// the timeout.
fn grace_ns(timeout_ns: u64) -> u64 {
    (timeout_ns / 2).min(30_000_000_000)
}

/// What the inbox knows of its peers' liveness (see the module doc).
struct Liveness {
    /// A peer heard from within this many ns is alive; one silent longer is suspect.
    bound_ns: u64,
    /// Per peer, when its last bytes came (on the inbox's clock).
    heard: Vec<AtomicU64>,
    /// Per peer: its silence is no sign of failure (it said goodbye or left, or is us).
    left: Vec<AtomicBool>,
    /// Per peer, how errors name it ("party 2 (127.0.0.1:7002)").
    names: Vec<String>,
}

/// Whom to blame when a wait on `from` times out at `now`: `Some((k, silence of k))` when
/// `from` was heard within `bound_ns` (alive, so likely waiting itself) and another peer
/// `k`, not `left`, has been silent longer than `bound_ns` (the longest silent such peer);
/// None when `from` itself is silent, or no one else is. Pure, so tested with made-up times.
fn silent_suspect(
    from: PartyId,
    now: u64,
    heard: &[u64],
    left: &[bool],
    bound_ns: u64,
) -> Option<(PartyId, u64)> {
    let silence = |p: PartyId| now.saturating_sub(heard[p]);
    if silence(from) > bound_ns {
        return None;
    }
    (0..heard.len())
        .filter(|&k| k != from && !left[k] && silence(k) > bound_ns)
        .map(|k| (k, silence(k)))
        .max_by_key(|&(k, s)| (s, std::cmp::Reverse(k)))
}

struct PeerBox {
    /// (due time on the inbox's clock, how long before it the wait spins, arrival).
    queue: SegQueue<(u64, u64, Arrival)>,
    /// Bytes of this peer's messages admitted (`admit`) and not yet taken by a waiter.
    held: AtomicU64,
    sleepers: AtomicUsize,
    map: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    msgs: HashMap<Tag, (u64, u64, Payload)>,
    gone: Option<(u64, Departure)>,
    /// The parked thread waiting for each tag.
    waiters: HashMap<Tag, Waker>,
}

/// The mailboxes of one party, one per peer.
pub struct Inbox {
    peers: Vec<PeerBox>,
    clock: Clock,
    /// Cap on `PeerBox::held` (`admit`); None: messages are not metered (the in-memory
    /// transport, whose peers are threads of this process).
    cap_bytes: Option<u64>,
    /// None: no heartbeats (the in-memory transport); a timeout names the peer waited on.
    live: Option<Liveness>,
}

/// `admit` refused a message: the peer would hold more than the cap in our inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverCap {
    /// What the peer would hold with the message, and the cap, in bytes.
    pub held: u64,
    pub cap: u64,
}

impl Inbox {
    /// Mailboxes for `parties` peers; due times of `push_at` are on `clock`.
    pub fn new(parties: usize, clock: Clock) -> Self {
        Inbox {
            peers: (0..parties)
                .map(|_| PeerBox {
                    queue: SegQueue::new(),
                    held: AtomicU64::new(0),
                    sleepers: AtomicUsize::new(0),
                    map: Mutex::new(Slot::default()),
                })
                .collect(),
            clock,
            cap_bytes: None,
            live: None,
        }
    }

    /// Timeouts consult liveness (see the module doc): party `me`'s peers send heartbeats,
    /// the I/O side calls `heard` and `left`, and a peer silent for more than `bound` is
    /// suspect. `names` names every party in errors. Every peer counts as heard now.
    pub fn with_liveness(mut self, me: PartyId, bound: Duration, names: Vec<String>) -> Self {
        let now = self.clock.now_ns();
        let n = self.peers.len();
        self.live = Some(Liveness {
            bound_ns: u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX),
            heard: (0..n).map(|_| AtomicU64::new(now)).collect(),
            left: (0..n).map(|p| AtomicBool::new(p == me)).collect(),
            names,
        });
        self
    }

    /// Called by the I/O side when bytes of `from` arrived at `t_ns` (the inbox's clock).
    pub fn heard(&self, from: PartyId, t_ns: u64) {
        if let Some(l) = &self.live {
            l.heard[from].fetch_max(t_ns, Ordering::Relaxed);
        }
    }

    /// Called by the I/O side when `from` said goodbye or left: its silence from now on is
    /// no sign of failure.
    pub fn left(&self, from: PartyId) {
        if let Some(l) = &self.live {
            l.left[from].store(true, Ordering::Relaxed);
        }
    }

    /// As `new`, with at most `cap_bytes` of each peer's messages held at once: messages
    /// it sent that no one has waited for yet (see `admit`).
    pub fn with_cap(parties: usize, clock: Clock, cap_bytes: u64) -> Self {
        Inbox {
            cap_bytes: Some(cap_bytes),
            ..Self::new(parties, clock)
        }
    }

    /// Called by the I/O side for every message of `from` it takes into its custody
    /// (before `push` or a bulk pump): refuses it when `from` would then hold more than the
    /// cap in this inbox. What a peer holds goes down as waiters take its messages.
    pub fn admit(&self, from: PartyId, bytes: u64) -> std::result::Result<(), OverCap> {
        let Some(cap) = self.cap_bytes else {
            return Ok(());
        };
        let held = &self.peers[from].held;
        let now = held
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes);
        if now > cap {
            held.fetch_sub(bytes, Ordering::AcqRel);
            return Err(OverCap { held: now, cap });
        }
        Ok(())
    }

    /// Called by the I/O side: `a` may be taken at once. Never blocks unless a waiter
    /// sleeps on this peer.
    pub fn push(&self, from: PartyId, a: Arrival) {
        self.push_at(from, 0, a)
    }

    /// As `push`, but `a` may not be taken before `due_ns` on the inbox's clock.
    pub fn push_at(&self, from: PartyId, due_ns: u64, a: Arrival) {
        let pb = &self.peers[from];
        let spin = emulator::spin_margin(self.clock.now_ns(), due_ns);
        let tag = match &a {
            Arrival::Msg(t, _) => Some(*t),
            Arrival::Gone(_) => None,
        };
        pb.queue.push((due_ns, spin, a));
        fence(Ordering::SeqCst);
        if pb.sleepers.load(Ordering::SeqCst) > 0 {
            let g = pb.map.lock().unwrap();
            match tag {
                // Woken only if its waiter's thread would otherwise sleep past the due
                // time (`Waker::wake_for`); an unshaped message (due 0) always wakes it.
                Some(t) => g
                    .waiters
                    .get(&t)
                    .into_iter()
                    .for_each(|w| w.wake_for(self.clock.instant(due_ns))),
                None => g.waiters.values().for_each(Waker::wake),
            }
        }
    }

    /// Move queued arrivals into the map; returns how many moved. Errors if a tag arrived
    /// twice.
    fn drain(pb: &PeerBox, slot: &mut Slot, from: PartyId) -> Result<usize> {
        let mut moved = 0;
        while let Some((due, spin, a)) = pb.queue.pop() {
            moved += 1;
            match a {
                Arrival::Msg(tag, data) => {
                    if slot.msgs.insert(tag, (due, spin, data)).is_some() {
                        return Err(Error::Protocol(format!(
                            "party {from} sent tag {:#x} twice",
                            tag.0
                        )));
                    }
                }
                Arrival::Gone(why) => {
                    slot.gone.get_or_insert((due, why));
                }
            }
        }
        Ok(moved)
    }

    /// The `Comm::wait` of both transports: party `me` receives `len` words tagged `tag` from
    /// `from`, counting the bytes and the time blocked in `counters`.
    pub fn receive(
        &self,
        me: PartyId,
        from: PartyId,
        tag: Tag,
        len: usize,
        timeout: Duration,
        counters: &Counters,
    ) -> Result<Payload> {
        if from >= self.peers.len() || from == me {
            return Err(Error::Protocol(format!(
                "party {me} cannot receive from party {from}"
            )));
        }
        let (data, waited) = self.wait(from, tag, timeout)?;
        counters.waited(from, waited.as_nanos() as u64);
        counters.received(from, 8 * data.len() as u64);
        if data.len() != len {
            return Err(Error::Protocol(format!(
                "message {:#x} from party {from} has {} words, expected {len}",
                tag.0,
                data.len()
            )));
        }
        Ok(data)
    }

    /// Block until the message `tag` from `from` is here (and due), the peer is gone, or
    /// `timeout` has passed. Returns the message and the time spent blocked.
    pub fn wait(&self, from: PartyId, tag: Tag, timeout: Duration) -> Result<(Payload, Duration)> {
        let pb = &self.peers[from];
        let start = Instant::now();
        // A timeout past 2^64 ns (584 years) is no deadline at all: saturate rather than
        // let the cast keep only its low 64 bits.
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut deadline = self.clock.now_ns().saturating_add(timeout_ns);
        let mut in_grace = false;
        let mut slot = pb.map.lock().unwrap();
        loop {
            Self::drain(pb, &mut slot, from)?;
            let now = self.clock.now_ns();
            // The earliest time something we wait for becomes due, if it is here already.
            let pending = if let Some(&(due, spin, _)) = slot.msgs.get(&tag) {
                if due <= now {
                    let (_, _, d) = slot.msgs.remove(&tag).unwrap();
                    if self.cap_bytes.is_some() {
                        pb.held.fetch_sub(8 * d.len() as u64, Ordering::AcqRel);
                    }
                    return Ok((d, start.elapsed()));
                }
                Some((due, spin))
            } else if let Some((due, d)) = &slot.gone {
                if *due <= now {
                    return Err(Self::departed(from, tag, d));
                }
                Some((*due, 0))
            } else {
                None
            };
            if now >= deadline && !in_grace {
                // Liveness may tell at once who failed: the peer itself is silent (stopped
                // or cut off: no abort of its own will come), or it is heard while another
                // peer is silent.
                let (e, decisive) = self.timed_out(from, tag, timeout, now);
                if decisive {
                    return Err(e);
                }
                // Otherwise, before blaming this peer, wait a little longer for its abort:
                // it may be silent because it waits, itself, on a failed third party, and
                // its own timeout began later than ours (a party computes before it
                // waits). Its abort then names the party that failed, and so does our error.
                in_grace = true;
                deadline = now.saturating_add(grace_ns(timeout_ns));
                continue;
            }
            if now >= deadline {
                return Err(self.timed_out(from, tag, timeout, now).0);
            }
            if let Some((due, spin)) = pending.filter(|&(d, _)| d <= deadline) {
                if emulator::near(now, due, spin) {
                    // Without the lock: other waiters on this peer must not wait for us.
                    drop(slot);
                    if crate::lanes::in_lane() {
                        // The party's other lanes run meanwhile; the lane driver spins out
                        // the end only if none of them can.
                        let due_at = self.clock.instant(due);
                        crate::lanes::park_timeout(
                            due_at.saturating_duration_since(Instant::now()),
                        );
                    } else {
                        emulator::spin_until(&self.clock, due);
                    }
                    slot = pb.map.lock().unwrap();
                    continue;
                }
            }
            let wake = pending.map_or(deadline, |(d, spin)| {
                emulator::wake_before(d, spin).min(deadline)
            });
            slot.waiters.insert(tag, Waker::current());
            pb.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let moved = Self::drain(pb, &mut slot, from);
            if !matches!(moved, Ok(0)) {
                slot.waiters.remove(&tag);
                pb.sleepers.fetch_sub(1, Ordering::SeqCst);
                moved?;
                continue;
            }
            if pending.is_some() {
                emulator::fine_timer_slack();
            }
            let nap = Duration::from_nanos(wake.saturating_sub(now).max(1));
            drop(slot);
            crate::lanes::park_timeout(nap);
            slot = pb.map.lock().unwrap();
            slot.waiters.remove(&tag);
            pb.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The error of a wait on `from` that timed out at `now`: it names `from`, unless
    /// `from` is alive and another peer is silent (`silent_suspect`); then that peer. And
    /// whether liveness decided it (a silent peer was found; false without liveness, or
    /// when every peer is heard), so the wait need not listen on for an abort.
    fn timed_out(&self, from: PartyId, tag: Tag, timeout: Duration, now: u64) -> (Error, bool) {
        let op = format!("receive of tag {:#x}", tag.0);
        let secs = timeout.as_secs_f64();
        let Some(l) = &self.live else {
            let e = Error::Timeout {
                peer: from,
                op,
                secs,
            };
            return (e, false);
        };
        let heard: Vec<u64> = l.heard.iter().map(|h| h.load(Ordering::Relaxed)).collect();
        let left: Vec<bool> = l.left.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        match silent_suspect(from, now, &heard, &left, l.bound_ns) {
            Some((k, silent_ns)) => {
                let e = Error::Timeout {
                    peer: k,
                    op: format!(
                        "{op} from party {from}: {} silent for {:.1} s; {} alive but waiting",
                        l.names[k],
                        silent_ns as f64 * 1e-9,
                        l.names[from]
                    ),
                    secs,
                };
                (e, true)
            }
            None => {
                let silent_ns = now.saturating_sub(heard[from]);
                let silent_s = silent_ns as f64 * 1e-9;
                let name = &l.names[from];
                let silent = silent_ns > l.bound_ns;
                let state = if silent {
                    format!("{name} silent for {silent_s:.1} s")
                } else {
                    format!("{name} alive (heard {silent_s:.1} s ago) but it sent nothing for it")
                };
                let e = Error::Timeout {
                    peer: from,
                    op: format!("{op}: {state}"),
                    secs,
                };
                (e, silent)
            }
        }
    }

    fn departed(from: PartyId, tag: Tag, d: &Departure) -> Error {
        match d.blame {
            Some(b) if b != from => Error::Peer {
                peer: b,
                op: format!("receive of tag {:#x}", tag.0),
                msg: format!("reported by party {from}, which stopped: {}", d.why),
            },
            _ => Error::Peer {
                peer: from,
                op: format!("receive of tag {:#x}", tag.0),
                msg: d.why.clone(),
            },
        }
    }

    /// Why the peer left, if it has (messages it sent before leaving stay readable).
    pub fn gone(&self, from: PartyId) -> Option<Departure> {
        let pb = &self.peers[from];
        let mut slot = pb.map.lock().unwrap();
        let _ = Self::drain(pb, &mut slot, from);
        let now = self.clock.now_ns();
        slot.gone
            .as_ref()
            .filter(|(due, _)| *due <= now)
            .map(|(_, d)| d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_not_taken_before_it_is_due_nor_holds_up_other_tags() {
        let clock = Clock::default();
        let inbox = Inbox::new(2, clock);
        let due = clock.now_ns() + 30_000_000;
        inbox.push_at(1, due, Arrival::Msg(Tag(5), vec![1].into()));
        inbox.push(1, Arrival::Msg(Tag(6), vec![2].into()));
        assert_eq!(
            inbox.wait(1, Tag(6), Duration::from_secs(5)).unwrap().0,
            vec![2]
        );
        assert_eq!(
            inbox.wait(1, Tag(5), Duration::from_secs(5)).unwrap().0,
            vec![1]
        );
        assert!(clock.now_ns() >= due);
    }

    #[test]
    fn a_departure_counts_only_once_due_and_what_is_due_after_the_timeout_times_out() {
        let clock = Clock::default();
        let inbox = Inbox::new(2, clock);
        let later = clock.now_ns() + 600_000_000_000;
        inbox.push_at(1, later, Arrival::Msg(Tag(1), vec![1].into()));
        inbox.push_at(1, later, Arrival::Gone(Departure::new("bye")));
        assert!(inbox.gone(1).is_none());
        let short = Duration::from_millis(20);
        assert!(matches!(
            inbox.wait(1, Tag(1), short),
            Err(Error::Timeout { .. })
        ));
        assert!(matches!(
            inbox.wait(1, Tag(2), short),
            Err(Error::Timeout { .. })
        ));

        let inbox = Inbox::new(2, clock);
        inbox.push(1, Arrival::Gone(Departure::new("bye")));
        assert!(inbox.gone(1).is_some());
        assert!(matches!(
            inbox.wait(1, Tag(2), short),
            Err(Error::Peer { peer: 1, .. })
        ));
    }

    #[test]
    fn a_peer_that_aborts_just_after_our_timeout_names_the_party_that_failed() {
        // Party 1 waits on party 0, which waits on a stopped party 2; party 0's timeout
        // began 40 ms after ours, so its abort (blaming 2) comes 40 ms after our timeout.
        let clock = Clock::default();
        let inbox = std::sync::Arc::new(Inbox::new(3, clock));
        let i2 = inbox.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(140));
            i2.push(
                0,
                Arrival::Gone(Departure {
                    why: "timed out waiting for peer 2".into(),
                    blame: Some(2),
                }),
            );
        });
        let got = inbox.wait(0, Tag(5), Duration::from_millis(100));
        t.join().unwrap();
        assert!(
            matches!(got, Err(Error::Peer { peer: 2, .. })),
            "{:?}",
            got.err()
        );
        // With nothing from the peer within the grace, the timeout names the peer itself.
        let got = inbox.wait(1, Tag(5), Duration::from_millis(20));
        assert!(matches!(got, Err(Error::Timeout { peer: 1, .. })));
        assert_eq!(grace_ns(100), 50);
        assert_eq!(grace_ns(u64::MAX), 30_000_000_000);
    }

    #[test]
    fn the_silent_suspect_is_a_peer_silent_past_the_bound_while_the_awaited_one_is_heard() {
        // Times in ns on a made-up clock; bound 4; we are party 1 (left: our own slot).
        let left = [false, true, false, false];
        // Party 0 (awaited) heard 1 ago, party 2 silent 8, party 3 heard 2 ago: blame 2.
        assert_eq!(silent_suspect(0, 10, &[9, 0, 2, 8], &left, 4), Some((2, 8)));
        // The awaited party silent too: no suspect, the timeout names it.
        assert_eq!(silent_suspect(0, 10, &[5, 0, 2, 8], &left, 4), None);
        // Exactly at the bound is not past it.
        assert_eq!(silent_suspect(0, 10, &[6, 0, 6, 6], &left, 4), None);
        assert_eq!(silent_suspect(0, 10, &[6, 0, 5, 6], &left, 4), Some((2, 5)));
        // Several silent: the longest silent; a tie goes to the lower id.
        assert_eq!(silent_suspect(0, 10, &[9, 0, 3, 1], &left, 4), Some((3, 9)));
        assert_eq!(silent_suspect(0, 10, &[9, 0, 1, 1], &left, 4), Some((2, 9)));
        // A peer that left (said goodbye) is no suspect, however long it is silent.
        let left2 = [false, true, true, false];
        assert_eq!(silent_suspect(0, 10, &[9, 0, 0, 8], &left2, 4), None);
        // Heard "after" now (a stamp taken just after `now` was read): alive.
        assert_eq!(
            silent_suspect(0, 10, &[12, 0, 0, 11], &left, 4),
            Some((2, 10))
        );
        // Two parties: no one else to blame.
        assert_eq!(silent_suspect(0, 10, &[9, 0], &[false, true], 4), None);
    }

    #[test]
    fn a_timed_out_wait_names_the_silent_third_party_while_the_awaited_one_is_heard() {
        // We are party 1 of 3, waiting on party 0, which is heard throughout (stamped in
        // the future on the inbox's clock); party 2 was last heard when the inbox began.
        let clock = Clock::default();
        let names = |n: usize| {
            (0..n)
                .map(|p| format!("party {p} (10.0.0.{p}:7)"))
                .collect()
        };
        let bound = Duration::from_millis(10);
        let inbox = Inbox::new(3, clock).with_liveness(1, bound, names(3));
        let t = Duration::from_millis(40);
        inbox.heard(0, clock.now_ns() + 60_000_000_000);
        match inbox.wait(0, Tag(5), t) {
            Err(Error::Timeout { peer: 2, op, .. }) => {
                assert!(op.contains("party 2 (10.0.0.2:7) silent for"), "{op}");
                assert!(
                    op.contains("party 0 (10.0.0.0:7) alive but waiting"),
                    "{op}"
                );
            }
            other => panic!("expected a timeout naming party 2, got {:?}", other.err()),
        }
        // Once party 2 said goodbye its silence is no sign of failure: party 0 is named,
        // as alive.
        inbox.left(2);
        match inbox.wait(0, Tag(5), t) {
            Err(Error::Timeout { peer: 0, op, .. }) => assert!(op.contains("alive"), "{op}"),
            other => panic!("expected a timeout naming party 0, got {:?}", other.err()),
        }
        // The awaited party silent itself: it is named, as silent, whoever else is.
        let inbox = Inbox::new(3, clock).with_liveness(1, bound, names(3));
        match inbox.wait(0, Tag(5), t) {
            Err(Error::Timeout { peer: 0, op, .. }) => {
                assert!(op.contains("party 0 (10.0.0.0:7) silent for"), "{op}")
            }
            other => panic!("expected a timeout naming party 0, got {:?}", other.err()),
        }
        // Without liveness (the in-memory transport) the awaited party is named.
        let inbox = Inbox::new(3, clock);
        assert!(matches!(
            inbox.wait(0, Tag(5), t),
            Err(Error::Timeout { peer: 0, .. })
        ));
    }

    #[test]
    fn a_silent_peer_found_by_liveness_is_reported_at_the_timeout_without_the_grace() {
        // Timeout 1 s, so the grace would end at 1.5 s; a silent peer (nothing heard past
        // the 10 ms bound) is named at 1 s. Loose bounds: the machine may be loaded.
        let clock = Clock::default();
        let names = (0..3).map(|p| format!("party {p}")).collect();
        let inbox = Inbox::new(3, clock).with_liveness(1, Duration::from_millis(10), names);
        let t = Instant::now();
        let got = inbox.wait(0, Tag(5), Duration::from_secs(1));
        let took = t.elapsed();
        assert!(matches!(got, Err(Error::Timeout { peer: 0, .. })));
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(1400),
            "{took:?}"
        );
    }

    #[test]
    fn a_timeout_past_2_pow_64_ns_is_no_deadline() {
        // 2^64 ns + 50 ms: its low 64 bits alone would be a 50 ms timeout.
        let long = Duration::from_nanos(u64::MAX) + Duration::from_millis(50);
        let clock = Clock::default();
        let inbox = std::sync::Arc::new(Inbox::new(2, clock));
        let i2 = inbox.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            i2.push(1, Arrival::Msg(Tag(3), vec![9].into()));
        });
        let got = inbox.wait(1, Tag(3), long).map(|(d, _)| d);
        t.join().unwrap();
        assert_eq!(got.unwrap(), vec![9]);
    }

    #[test]
    fn admitted_bytes_are_capped_per_peer_and_freed_when_taken() {
        let inbox = Inbox::with_cap(3, Clock::default(), 64);
        inbox.admit(1, 48).unwrap();
        inbox.push(1, Arrival::Msg(Tag(1), vec![0; 6].into()));
        // Peer 2 has a cap of its own.
        inbox.admit(2, 64).unwrap();
        assert_eq!(inbox.admit(1, 24), Err(OverCap { held: 72, cap: 64 }));
        inbox.wait(1, Tag(1), Duration::from_secs(1)).unwrap();
        inbox.admit(1, 64).unwrap();
    }
}
