//! In-process transport: every party is a thread of one process and messages move through
//! shared mailboxes. Depends on comm and error.
//!
//! Each directed link (from, to) has a mailbox keyed by tag; `post` drops the message in the
//! receiver's mailbox and wakes waiters, `wait` sleeps on that mailbox until its own tag
//! arrives. When an endpoint is dropped (its party finished or failed), peers still waiting
//! on it fail at once with an error naming it, rather than waiting out the timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::comm::{Comm, Counters, PartyId, Tag};
use crate::error::{Error, Result};

struct Mailbox {
    msgs: Mutex<HashMap<Tag, Vec<u64>>>,
    arrived: Condvar,
}

struct Shared {
    n: usize,
    /// mailbox[to * n + from]
    mailbox: Vec<Mailbox>,
    gone: Vec<AtomicBool>,
    timeout: Duration,
}

/// Constructor of the endpoints of one in-process session.
pub struct MemoryNetwork;

impl MemoryNetwork {
    /// Endpoints for `n` parties; `timeout` bounds every wait.
    pub fn endpoints(n: usize, timeout: Duration) -> Vec<MemoryEndpoint> {
        let shared = Arc::new(Shared {
            n,
            mailbox: (0..n * n)
                .map(|_| Mailbox {
                    msgs: Mutex::new(HashMap::new()),
                    arrived: Condvar::new(),
                })
                .collect(),
            gone: (0..n).map(|_| AtomicBool::new(false)).collect(),
            timeout,
        });
        (0..n)
            .map(|id| MemoryEndpoint {
                id,
                shared: shared.clone(),
                counters: Counters::new(n),
            })
            .collect()
    }
}

/// One party's end of an in-process session.
pub struct MemoryEndpoint {
    id: PartyId,
    shared: Arc<Shared>,
    counters: Counters,
}

impl Comm for MemoryEndpoint {
    fn party(&self) -> PartyId {
        self.id
    }
    fn parties(&self) -> usize {
        self.shared.n
    }

    fn post(&self, to: PartyId, tag: Tag, data: Vec<u64>) -> Result<()> {
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
        self.counters.sent(to, 8 * data.len() as u64);
        let mb = &self.shared.mailbox[to * self.shared.n + self.id];
        let prev = mb.msgs.lock().unwrap().insert(tag, data);
        if prev.is_some() {
            return Err(Error::Protocol(format!(
                "party {} sent tag {:#x} to party {to} twice",
                self.id, tag.0
            )));
        }
        mb.arrived.notify_all();
        Ok(())
    }

    fn wait(&self, from: PartyId, tag: Tag, len: usize) -> Result<Vec<u64>> {
        if from >= self.shared.n || from == self.id {
            return Err(Error::Protocol(format!(
                "party {} cannot receive from party {from}",
                self.id
            )));
        }
        let mb = &self.shared.mailbox[self.id * self.shared.n + from];
        let start = Instant::now();
        let mut msgs = mb.msgs.lock().unwrap();
        let data = loop {
            if let Some(d) = msgs.remove(&tag) {
                break d;
            }
            if self.shared.gone[from].load(Ordering::Acquire) {
                return Err(Error::Peer {
                    peer: from,
                    op: format!("receive of tag {:#x}", tag.0),
                    msg: "peer left the session before sending".into(),
                });
            }
            let left = self.shared.timeout.checked_sub(start.elapsed());
            let Some(left) = left else {
                return Err(Error::Timeout {
                    peer: from,
                    op: format!("receive of tag {:#x}", tag.0),
                    secs: self.shared.timeout.as_secs_f64(),
                });
            };
            msgs = mb.arrived.wait_timeout(msgs, left).unwrap().0;
        };
        drop(msgs);
        self.counters
            .waited(from, start.elapsed().as_nanos() as u64);
        self.counters.received(from, 8 * data.len() as u64);
        if data.len() != len {
            return Err(Error::Protocol(format!(
                "message {:#x} from party {from} has {} words, expected {len}",
                tag.0,
                data.len()
            )));
        }
        Ok(data)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for MemoryEndpoint {
    fn drop(&mut self) {
        self.shared.gone[self.id].store(true, Ordering::Release);
        // Wake everyone who might be waiting on us so they see we are gone.
        for to in 0..self.shared.n {
            let mb = &self.shared.mailbox[to * self.shared.n + self.id];
            let _guard = mb.msgs.lock().unwrap();
            mb.arrived.notify_all();
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
        a.post(1, Tag(2), vec![2, 2]).unwrap();
        a.post(1, Tag(1), vec![1]).unwrap();
        assert_eq!(b.wait(0, Tag(1), 1).unwrap(), vec![1]);
        assert_eq!(b.wait(0, Tag(2), 2).unwrap(), vec![2, 2]);
        assert_eq!(b.counters().snapshot().bytes_recv(), 24);
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
        a.post(1, Tag(1), vec![1, 2, 3]).unwrap();
        assert!(matches!(b.wait(0, Tag(1), 2), Err(Error::Protocol(_))));
    }
}
