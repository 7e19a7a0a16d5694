//! The one small interface protocol code uses to talk to peers, and its counters.
//! Depends on error only. Implemented by `transport` (in-memory, TCP), so protocols never
//! name a socket, a thread or a clock.
//!
//! Messages are flat vectors of ring elements tagged with a `Tag`. `post` never blocks on
//! the network; `wait` blocks only until the message with its own tag from that peer is
//! there, so many operations, chunks and batches can be in flight at once and arrive in
//! any order. The receiver always knows how long a message must be (shapes are public),
//! which lets transports reject a wrong-length message instead of trusting the peer.

use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::error::Result;

/// Index of a computing party, 0..n.
pub type PartyId = usize;

/// Message tag. Derived from the operation's key (see `proto::ctx`), never from arrival
/// order, so it is the same under every schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u64);

/// Reserved tag for the session-setup exchange of pairwise PRG seeds.
pub const SETUP_TAG: Tag = Tag(u64::MAX);

/// The words of one message: a buffer of its own, or a range of a buffer its sender shares
/// with it. An opening sends the same share to every peer and keeps it to combine with
/// theirs; shared, it goes to all of them without a copy, and an in-process transport hands
/// the sender's buffer itself to the receiver. A transport that must copy the words anyway
/// (a socket) just reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Owned(Vec<u64>),
    Shared(Arc<Vec<u64>>, Range<usize>),
}

impl Payload {
    /// `buf[range]`, shared.
    pub fn shared(buf: &Arc<Vec<u64>>, range: Range<usize>) -> Self {
        assert!(
            range.start <= range.end && range.end <= buf.len(),
            "payload range {range:?} of a {}-word buffer",
            buf.len()
        );
        Payload::Shared(buf.clone(), range)
    }
}

impl Deref for Payload {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        match self {
            Payload::Owned(v) => v,
            Payload::Shared(buf, r) => &buf[r.clone()],
        }
    }
}

impl PartialEq<Vec<u64>> for Payload {
    fn eq(&self, other: &Vec<u64>) -> bool {
        **self == other[..]
    }
}

impl From<Vec<u64>> for Payload {
    fn from(v: Vec<u64>) -> Self {
        Payload::Owned(v)
    }
}

/// Point-to-point tagged messaging between the parties of one session.
pub trait Comm: Send + Sync {
    /// This party's id.
    fn party(&self) -> PartyId;
    /// Number of computing parties.
    fn parties(&self) -> usize;
    /// Queue `data` for `to`. Returns once the I/O side owns it; never waits for the peer.
    fn post(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()>;
    /// Queue `data` for `to` as background traffic: on an emulated link it only uses link
    /// time that no ordinary message wants (ordinary messages wait for at most one bulk
    /// fragment), so bandwidth-heavy messages that nobody needs yet (inter-linear's weight
    /// masks) do not hold up the rounds on the critical path. Delivery order between the
    /// two classes is not kept; tags make that harmless. Transports without priorities
    /// send it as `post` does.
    fn post_bulk(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        self.post(to, tag, data)
    }
    /// The message from `from` with `tag`, which must hold exactly `len` words.
    fn wait(&self, from: PartyId, tag: Tag, len: usize) -> Result<Payload>;
    /// Traffic counters of this party.
    fn counters(&self) -> &Counters;
}

/// Per-party traffic counters, updated by transports (bytes, messages, waiting time) and by
/// the protocol context (rounds). Lock-free so lanes on many threads can share them.
#[derive(Debug)]
pub struct Counters {
    peers: Vec<PeerCounters>,
    rounds: AtomicU64,
    ahead_rounds: AtomicU64,
}

#[derive(Debug, Default)]
struct PeerCounters {
    bytes_sent: AtomicU64,
    bytes_recv: AtomicU64,
    msgs_sent: AtomicU64,
    msgs_recv: AtomicU64,
    wait_ns: AtomicU64,
}

/// A snapshot of one peer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub msgs_sent: u64,
    pub msgs_recv: u64,
    /// Time this party spent blocked in `wait` on this peer.
    pub wait_ns: u64,
}

/// A snapshot of a party's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommStats {
    pub per_peer: Vec<PeerStats>,
    /// Openings (communication rounds) this party took part in, summed over all lanes.
    pub rounds: u64,
    /// Openings made ahead by background lanes (inter-linear's weight masks F = W - B),
    /// not in `rounds`: they run beside the rounds, off the critical path.
    pub ahead_rounds: u64,
}

impl CommStats {
    pub fn bytes_sent(&self) -> u64 {
        self.per_peer.iter().map(|p| p.bytes_sent).sum()
    }
    pub fn bytes_recv(&self) -> u64 {
        self.per_peer.iter().map(|p| p.bytes_recv).sum()
    }
    pub fn msgs_sent(&self) -> u64 {
        self.per_peer.iter().map(|p| p.msgs_sent).sum()
    }
    pub fn wait_ns(&self) -> u64 {
        self.per_peer.iter().map(|p| p.wait_ns).sum()
    }
    /// Counter increase from `before` to `self`.
    pub fn since(&self, before: &CommStats) -> CommStats {
        CommStats {
            per_peer: self
                .per_peer
                .iter()
                .zip(&before.per_peer)
                .map(|(a, b)| PeerStats {
                    bytes_sent: a.bytes_sent - b.bytes_sent,
                    bytes_recv: a.bytes_recv - b.bytes_recv,
                    msgs_sent: a.msgs_sent - b.msgs_sent,
                    msgs_recv: a.msgs_recv - b.msgs_recv,
                    wait_ns: a.wait_ns - b.wait_ns,
                })
                .collect(),
            rounds: self.rounds - before.rounds,
            ahead_rounds: self.ahead_rounds - before.ahead_rounds,
        }
    }
}

impl Counters {
    pub fn new(parties: usize) -> Self {
        Counters {
            peers: (0..parties).map(|_| PeerCounters::default()).collect(),
            rounds: AtomicU64::new(0),
            ahead_rounds: AtomicU64::new(0),
        }
    }
    pub fn sent(&self, peer: PartyId, bytes: u64) {
        self.peers[peer].bytes_sent.fetch_add(bytes, Relaxed);
        self.peers[peer].msgs_sent.fetch_add(1, Relaxed);
    }
    pub fn received(&self, peer: PartyId, bytes: u64) {
        self.peers[peer].bytes_recv.fetch_add(bytes, Relaxed);
        self.peers[peer].msgs_recv.fetch_add(1, Relaxed);
    }
    pub fn waited(&self, peer: PartyId, ns: u64) {
        self.peers[peer].wait_ns.fetch_add(ns, Relaxed);
    }
    pub fn round(&self) {
        self.rounds.fetch_add(1, Relaxed);
    }
    pub fn ahead_round(&self) {
        self.ahead_rounds.fetch_add(1, Relaxed);
    }
    pub fn snapshot(&self) -> CommStats {
        CommStats {
            per_peer: self
                .peers
                .iter()
                .map(|p| PeerStats {
                    bytes_sent: p.bytes_sent.load(Relaxed),
                    bytes_recv: p.bytes_recv.load(Relaxed),
                    msgs_sent: p.msgs_sent.load(Relaxed),
                    msgs_recv: p.msgs_recv.load(Relaxed),
                    wait_ns: p.wait_ns.load(Relaxed),
                })
                .collect(),
            rounds: self.rounds.load(Relaxed),
            ahead_rounds: self.ahead_rounds.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_payload_reads_its_range() {
        let buf = Arc::new((0..10u64).collect::<Vec<_>>());
        let part = Payload::shared(&buf, 3..7);
        assert_eq!(&*part, &[3, 4, 5, 6]);
    }

    #[test]
    #[should_panic(expected = "payload range")]
    fn a_range_past_the_buffer_is_refused() {
        let buf = Arc::new(vec![1u64, 2]);
        let _ = Payload::shared(&buf, 1..3);
    }
}
