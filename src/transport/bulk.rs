//! Background (bulk) traffic on an emulated link: a pump thread per directed link takes bulk
//! messages one at a time, claims idle link time for each until all its bytes are through
//! (`Link::claim_bulk`), and hands it on with its delivery time. Used on the sending side by
//! the in-memory transport and on the receiving side by the TCP transport (whose emulation
//! sits there); the latter also queues its peer's departure behind the pump's messages
//! (`then`), so a departure is never reported before a message sent ahead of it. Depends on
//! comm, error, transport::emulator.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::emulator::{self, Clock, Link};
use crate::comm::{Payload, Tag};
use crate::error::{Error, Result};

/// Shortest sleep of a pump between claims. Idle stretches while it sleeps are credited to
/// it, so a longer nap costs no link time; it saves wake-ups that would compete with the
/// parties' compute (a 13 us fragment per wake-up meant 40k wake-ups per second at lan).
const NAP_NS: u64 = 200_000;

/// What a pump has queued: a bulk message and the time it was handed over, or an action
/// to run once everything before it is delivered.
enum Pending {
    Msg(u64, Tag, Payload),
    Then(Box<dyn FnOnce() + Send>),
}

/// Work waiting, oldest first; `closing` tells the pump to exit once it is empty.
#[derive(Default)]
struct Queue {
    state: Mutex<(VecDeque<Pending>, bool)>,
    ready: Condvar,
}

/// The pump of one directed link. Dropping it delivers what was pushed, then stops.
pub struct BulkPump {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl BulkPump {
    /// Start a pump named `name` on `link`; `deliver(tag, data, due)` gets each message
    /// once its last byte is through, with its delivery time on `clock`.
    pub fn start(
        name: String,
        link: Arc<Link>,
        clock: Clock,
        mut deliver: impl FnMut(Tag, Payload, u64) + Send + 'static,
    ) -> Result<Self> {
        let queue = Arc::new(Queue::default());
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                emulator::fine_timer_slack();
                while let Some(p) = q.next() {
                    match p {
                        Pending::Msg(since, tag, data) => {
                            let due = transmit(&link, &clock, since, 8 * data.len() as u64);
                            deliver(tag, data, due);
                        }
                        Pending::Then(f) => f(),
                    }
                }
            })
            .map_err(|e| Error::Protocol(format!("cannot start a bulk sender: {e}")))?;
        Ok(BulkPump {
            queue,
            thread: Some(thread),
        })
    }

    /// Queue a message handed over at `since` (on the pump's clock).
    pub fn push(&self, since: u64, tag: Tag, data: Payload) {
        self.enqueue(Pending::Msg(since, tag, data));
    }

    /// Run `f` on the pump's thread once every message pushed before it is delivered.
    pub fn then(&self, f: impl FnOnce() + Send + 'static) {
        self.enqueue(Pending::Then(Box::new(f)));
    }

    fn enqueue(&self, p: Pending) {
        self.queue.state.lock().unwrap().0.push_back(p);
        self.queue.ready.notify_one();
    }

    /// Stop without delivering the messages still queued and without waiting: for an
    /// owner that is going away, where waiting out the emulated transfer of a large message
    /// would only delay it. Queued actions (`then`) run at once on the caller's thread, as
    /// they report what a waiter must not miss (a departure). The message on the link, if
    /// any, still finishes on the detached thread.
    pub fn abandon(mut self) {
        let queued = {
            let mut g = self.queue.state.lock().unwrap();
            g.1 = true;
            std::mem::take(&mut g.0)
        };
        self.queue.ready.notify_one();
        self.thread = None;
        for p in queued {
            if let Pending::Then(f) = p {
                f();
            }
        }
    }
}

impl Queue {
    fn next(&self) -> Option<Pending> {
        let mut g = self.state.lock().unwrap();
        loop {
            if let Some(m) = g.0.pop_front() {
                return Some(m);
            }
            if g.1 {
                return None;
            }
            g = self.ready.wait(g).unwrap();
        }
    }
}

impl Drop for BulkPump {
    fn drop(&mut self) {
        self.queue.state.lock().unwrap().1 = true;
        self.queue.ready.notify_one();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// Claim idle time on `link` for `bytes` handed over at `since`, sleeping while the link is
/// busy; returns when the last byte is delivered.
fn transmit(link: &Link, clock: &Clock, since: u64, bytes: u64) -> u64 {
    let mut left = bytes;
    link.begin_bulk(since);
    let due = loop {
        let now = clock.now_ns();
        let claim = link.claim_bulk(since, now, left);
        if claim.bytes == left {
            break claim.deliver_ns;
        }
        left -= claim.bytes;
        let until = link.free_ns().max(now + NAP_NS);
        std::thread::sleep(Duration::from_nanos(until - now));
    };
    link.end_bulk();
    due
}
