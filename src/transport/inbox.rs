//! The receive side shared by both transports: per peer, a lock-free queue the I/O side
//! pushes arrived messages onto, and a tag-addressed mailbox the compute side drains it
//! into. Depends on comm, error (and crossbeam).
//!
//! Why a queue and a map: the I/O thread (or delivery thread) must never wait for compute,
//! so it only pushes onto a `SegQueue`; it takes the mailbox lock only when a waiter is
//! asleep, to wake it. Waiters need lookup by tag (messages arrive in any order), so they
//! move queued messages into a map under the mailbox lock and take their own tag from it.
//!
//! Lost-wakeup freedom (a Dekker pattern): the pusher does push; fence; load(sleepers). A
//! waiter does sleepers += 1; fence; drain; then sleeps on the condvar under the lock. Either
//! the waiter's drain sees the message, or the pusher sees the sleeper and notifies under
//! the lock, which the waiter holds until it is inside `wait_timeout`.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;

use crate::comm::{PartyId, Tag};
use crate::error::{Error, Result};

/// What the I/O side hands to the compute side.
pub enum Arrival {
    Msg(Tag, Vec<u64>),
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

struct PeerBox {
    queue: SegQueue<Arrival>,
    sleepers: AtomicUsize,
    map: Mutex<Slot>,
    arrived: Condvar,
}

#[derive(Default)]
struct Slot {
    msgs: HashMap<Tag, Vec<u64>>,
    gone: Option<Departure>,
}

/// The mailboxes of one party, one per peer.
pub struct Inbox {
    peers: Vec<PeerBox>,
}

impl Inbox {
    pub fn new(parties: usize) -> Self {
        Inbox {
            peers: (0..parties)
                .map(|_| PeerBox {
                    queue: SegQueue::new(),
                    sleepers: AtomicUsize::new(0),
                    map: Mutex::new(Slot::default()),
                    arrived: Condvar::new(),
                })
                .collect(),
        }
    }

    /// Called by the I/O side. Never blocks unless a waiter sleeps on this peer.
    pub fn push(&self, from: PartyId, a: Arrival) {
        let pb = &self.peers[from];
        pb.queue.push(a);
        fence(Ordering::SeqCst);
        if pb.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = pb.map.lock().unwrap();
            pb.arrived.notify_all();
        }
    }

    /// Move queued arrivals into the map. Returns an error if a tag arrived twice.
    fn drain(pb: &PeerBox, slot: &mut Slot, from: PartyId) -> Result<()> {
        while let Some(a) = pb.queue.pop() {
            match a {
                Arrival::Msg(tag, data) => {
                    if slot.msgs.insert(tag, data).is_some() {
                        return Err(Error::Protocol(format!(
                            "party {from} sent tag {:#x} twice",
                            tag.0
                        )));
                    }
                }
                Arrival::Gone(why) => {
                    slot.gone.get_or_insert(why);
                }
            }
        }
        Ok(())
    }

    /// Block until the message `tag` from `from` is here, the peer is gone, or `timeout`
    /// has passed. Returns the message and the time spent blocked.
    pub fn wait(&self, from: PartyId, tag: Tag, timeout: Duration) -> Result<(Vec<u64>, Duration)> {
        let pb = &self.peers[from];
        let start = Instant::now();
        let mut slot = pb.map.lock().unwrap();
        loop {
            Self::drain(pb, &mut slot, from)?;
            if let Some(d) = slot.msgs.remove(&tag) {
                return Ok((d, start.elapsed()));
            }
            if let Some(d) = &slot.gone {
                return Err(match d.blame {
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
                });
            }
            let Some(left) = timeout.checked_sub(start.elapsed()) else {
                return Err(Error::Timeout {
                    peer: from,
                    op: format!("receive of tag {:#x}", tag.0),
                    secs: timeout.as_secs_f64(),
                });
            };
            pb.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            Self::drain(pb, &mut slot, from)?;
            if slot.msgs.contains_key(&tag) || slot.gone.is_some() {
                pb.sleepers.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            slot = pb.arrived.wait_timeout(slot, left).unwrap().0;
            pb.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Why the peer left, if it has (messages it sent before leaving stay readable).
    pub fn gone(&self, from: PartyId) -> Option<Departure> {
        let pb = &self.peers[from];
        let mut slot = pb.map.lock().unwrap();
        let _ = Self::drain(pb, &mut slot, from);
        slot.gone.clone()
    }
}
