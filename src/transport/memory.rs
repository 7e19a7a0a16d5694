//! In-process transport: every party is a thread of one process and messages move through
//! shared mailboxes. Depends on comm, error,
//! transport::{inbox, emulator, bulk}.
//!
//! Each directed link (from, to) ends in the receiver's `Inbox`; `post` pushes the message
//! there at once (stamped with its emulated delivery time when shaped), `wait` sleeps until
//! its own tag is there and due. On a shaped link, `post_bulk` hands the message to the
//! link's `BulkPump`, which feeds it into idle link time and delivers it when its last
//! byte is through. When an endpoint is dropped (its party finished or failed), peers still waiting
//! on it fail at once with an error naming it, rather than waiting out the timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bulk::BulkPump;
use super::emulator::{Clock, Link};
use super::inbox::{Arrival, Departure, Inbox};
use crate::comm::{Comm, Counters, PartyId, Payload, Tag};
use crate::error::{Error, Result};
use crate::link::LinkProfile;

struct Shared {
    n: usize,
    /// inbox[to]: what party `to` receives, per sender.
    inbox: Arc<Vec<Inbox>>,
    gone: Vec<AtomicBool>,
    timeout: Duration,
    /// links[from * n + to]; only used when shaped.
    links: Vec<Arc<Link>>,
    /// The time base of the links and of every inbox's due times.
    clock: Clock,
    shaped: bool,
}

impl Shared {
    fn deliver(&self, from: PartyId, to: PartyId, bytes: u64, a: Arrival) {
        if self.shaped {
            let due = self.links[from * self.n + to].schedule(self.clock.now_ns(), bytes);
            self.inbox[to].push_at(from, due, a);
        } else {
            self.inbox[to].push(from, a);
        }
    }
}

/// Constructor of the endpoints of one in-process session.
pub struct MemoryNetwork;

impl MemoryNetwork {
    /// Unshaped endpoints for `n` parties; `timeout` bounds every wait.
    pub fn endpoints(n: usize, timeout: Duration) -> Vec<MemoryEndpoint> {
        Self::endpoints_with_links(n, timeout, LinkProfile::unshaped())
    }

    /// Endpoints whose every directed link is emulated with `link` (bandwidth and one-way
    /// latency). Receivers do not take a message before its delivery time; `post` never
    /// sleeps.
    pub fn endpoints_with_links(
        n: usize,
        timeout: Duration,
        link: LinkProfile,
    ) -> Vec<MemoryEndpoint> {
        let clock = Clock::default();
        let inbox: Arc<Vec<Inbox>> = Arc::new((0..n).map(|_| Inbox::new(n, clock)).collect());
        let shaped = !link.is_unshaped();
        let shared = Arc::new(Shared {
            n,
            inbox,
            gone: (0..n).map(|_| AtomicBool::new(false)).collect(),
            timeout,
            links: (0..n * n)
                .map(|_| Arc::new(Link::new(link.clone())))
                .collect(),
            clock,
            shaped,
        });
        (0..n)
            .map(|id| MemoryEndpoint {
                id,
                shared: shared.clone(),
                counters: Counters::new(n),
                pumps: Mutex::new((0..n).map(|_| None).collect()),
            })
            .collect()
    }
}

/// One party's end of an in-process session.
pub struct MemoryEndpoint {
    id: PartyId,
    shared: Arc<Shared>,
    counters: Counters,
    /// This party's bulk pump per peer, started by its first `post_bulk` to that peer.
    pumps: Mutex<Vec<Option<BulkPump>>>,
}

impl MemoryEndpoint {
    /// Refuse a send to no one, to oneself, or to a peer that has left.
    fn check_peer(&self, to: PartyId, tag: Tag) -> Result<()> {
        if to >= self.shared.n || to == self.id {
            return Err(Error::Protocol(format!(
                "party {} cannot send to party {to}",
                self.id
            )));
        }
        if self.shared.gone[to].load(Ordering::Acquire) {
            return Err(Error::Peer {
                peer: to,
                op: format!("send of tag {:#x}", tag.0),
                msg: "peer has left the session".into(),
            });
        }
        Ok(())
    }
}

impl Comm for MemoryEndpoint {
    fn party(&self) -> PartyId {
        self.id
    }
    fn parties(&self) -> usize {
        self.shared.n
    }

    fn post(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        self.check_peer(to, tag)?;
        let bytes = 8 * data.len() as u64;
        self.counters.sent(to, bytes);
        self.shared
            .deliver(self.id, to, bytes, Arrival::Msg(tag, data));
        Ok(())
    }

    fn post_bulk(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        if !self.shared.shaped {
            return self.post(to, tag, data);
        }
        self.check_peer(to, tag)?;
        self.counters.sent(to, 8 * data.len() as u64);
        let since = self.shared.clock.now_ns();
        let mut pumps = self.pumps.lock().unwrap();
        if pumps[to].is_none() {
            let (sh, from) = (&self.shared, self.id);
            let inbox = sh.inbox.clone();
            pumps[to] = Some(BulkPump::start(
                format!("bulk {from}->{to}"),
                sh.links[from * sh.n + to].clone(),
                sh.clock,
                move |tag, data, due| inbox[to].push_at(from, due, Arrival::Msg(tag, data)),
            )?);
        }
        pumps[to].as_ref().unwrap().push(since, tag, data);
        Ok(())
    }

    fn wait(&self, from: PartyId, tag: Tag, len: usize) -> Result<Payload> {
        self.shared.inbox[self.id].receive(
            self.id,
            from,
            tag,
            len,
            self.shared.timeout,
            &self.counters,
        )
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for MemoryEndpoint {
    fn drop(&mut self) {
        self.shared.gone[self.id].store(true, Ordering::Release);
        // Background messages already posted are delivered first (dropping a pump waits
        // for its queue): a peer may still wait for them.
        self.pumps.get_mut().unwrap().clear();
        // Tell every peer, behind whatever is still in flight on the link, so messages
        // posted before leaving are still delivered.
        for to in (0..self.shared.n).filter(|&to| to != self.id) {
            self.shared.deliver(
                self.id,
                to,
                0,
                Arrival::Gone(Departure::new("peer left the session before sending")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_tags_are_delivered_to_their_own_waiters() {
        let mut eps = MemoryNetwork::endpoints(2, Duration::from_secs(5));
        let b = eps.pop().unwrap();
        let a = eps.pop().unwrap();
        a.post(1, Tag(2), vec![2, 2].into()).unwrap();
        a.post(1, Tag(1), vec![1].into()).unwrap();
        assert_eq!(b.wait(0, Tag(1), 1).unwrap(), vec![1]);
        assert_eq!(b.wait(0, Tag(2), 2).unwrap(), vec![2, 2]);
        assert_eq!(b.counters().snapshot().bytes_recv(), 24);
    }

    #[test]
    fn a_shared_payload_reaches_every_peer_without_a_copy() {
        let eps = MemoryNetwork::endpoints(3, Duration::from_secs(5));
        let buf = Arc::new(vec![4u64, 5, 6, 7]);
        eps[0].post(1, Tag(1), Payload::shared(&buf, 0..4)).unwrap();
        eps[0].post(2, Tag(1), Payload::shared(&buf, 1..3)).unwrap();
        let got1 = eps[1].wait(0, Tag(1), 4).unwrap();
        let got2 = eps[2].wait(0, Tag(1), 2).unwrap();
        assert_eq!((&*got1, &*got2), (&[4, 5, 6, 7][..], &[5, 6][..]));
        assert_eq!(got1.as_ptr(), buf.as_ptr());
        assert_eq!(eps[2].counters().snapshot().bytes_recv(), 16);
    }

    #[test]
    fn waiting_on_a_departed_peer_fails_naming_it() {
        let mut eps = MemoryNetwork::endpoints(2, Duration::from_secs(30));
        let b = eps.pop().unwrap();
        drop(eps);
        match b.wait(0, Tag(7), 1) {
            Err(Error::Peer { peer: 0, .. }) => {}
            other => panic!("expected peer error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_length_is_refused() {
        let mut eps = MemoryNetwork::endpoints(2, Duration::from_secs(5));
        let b = eps.pop().unwrap();
        let a = eps.pop().unwrap();
        a.post(1, Tag(1), vec![1, 2, 3].into()).unwrap();
        assert!(matches!(b.wait(0, Tag(1), 2), Err(Error::Protocol(_))));
    }
}
