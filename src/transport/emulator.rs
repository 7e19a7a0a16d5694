//! Link emulator: per directed link, a bandwidth and a one-way latency, applied in the I/O
//! layer of both transports. Depends on link.
//!
//! Model (a store-and-forward link with a FIFO serialiser): a message of `s` bytes handed to
//! the link at time `t` starts serialising when the link is free, takes `s / bandwidth`, and
//! arrives `latency` later:
//!
//! ```text
//!   start   = max(t, link_free)
//!   free'   = start + s / bandwidth
//!   deliver = free' + latency
//! ```
//!
//! `delivery_time` is that formula and nothing else, so it can be tested on its own. A
//! message goes into the receiver's `Inbox` at once, stamped with its delivery time, and the
//! receiving thread does not take it before then (sleeping, then spinning the last
//! `WAKE_EARLY_NS`, or `LAN_WAKE_EARLY_NS` of a short delay), so neither `post` nor the socket I/O thread ever sleeps for the
//! emulator and no extra thread's wake-up sits between the due time and the receiver.
//!
//! The profiles themselves (`LinkProfile`, re-exported here) live in `crate::link`, where
//! layers above the transports name them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::link::LinkProfile;

/// The emulator's timing formula. Times are nanoseconds since any common origin.
/// Returns (the time the link becomes free again, the delivery time).
pub fn delivery_time(link_free: u64, t: u64, bytes: u64, link: &LinkProfile) -> (u64, u64) {
    // Saturating: a checked profile keeps these far from 2^64 ns, and a wrapped sum would
    // deliver a message at once instead of never.
    let start = t.max(link_free);
    let free = start.saturating_add(link.transmit_ns(bytes));
    (free, free.saturating_add(link.latency_ns()))
}

/// The serialiser state of one directed link, shared by all threads that send on it.
/// Lock-free: concurrent senders claim link time with a compare-and-swap.
///
/// Background traffic (`Comm::post_bulk`) has lower priority than ordinary messages: it
/// gets the link only when no ordinary message is on it. It is fed in by a pump thread
/// that wakes now and then (`claim_bulk`); the idle stretches between ordinary messages
/// that passed while it slept are credited to it (`credit_ns`), so how often it wakes
/// changes its CPU cost, not the link time it gets. An ordinary message handed over while
/// bulk traffic is on the wire waits for at most the one fragment the pump claimed ahead
/// (`BULK_FRAGMENT_BYTES`); one handed over in an idle stretch that bulk traffic is later
/// credited with does not wait at all, as if bulk fragments were preempted at once.
pub struct Link {
    profile: LinkProfile,
    free_ns: AtomicU64,
    /// Handover time of the bulk message being sent, or `NO_BULK`.
    bulk_since: AtomicU64,
    /// Idle link time since then, before ordinary messages, not yet used by bulk traffic.
    credit_ns: AtomicU64,
}

const NO_BULK: u64 = u64::MAX;

/// Largest piece of background traffic the link is committed to ahead of time: an
/// ordinary message handed over while bulk traffic is on the wire waits for at most this
/// much (13 us at 10 Gbit/s, 0.33 ms at 400 Mbit/s), as behind one TLS-record-sized
/// write of a sender that interleaves a bulk stream with its urgent one.
pub const BULK_FRAGMENT_BYTES: u64 = 16 * 1024;

/// A bulk claim: bytes now on the link, and when the last of them is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkClaim {
    pub bytes: u64,
    pub deliver_ns: u64,
}

impl Link {
    pub fn new(profile: LinkProfile) -> Self {
        Link {
            profile,
            free_ns: AtomicU64::new(0),
            bulk_since: AtomicU64::new(NO_BULK),
            credit_ns: AtomicU64::new(0),
        }
    }

    pub fn profile(&self) -> &LinkProfile {
        &self.profile
    }

    /// Claim the link for a message of `bytes` handed over at `t`; returns its delivery time.
    pub fn schedule(&self, t: u64, bytes: u64) -> u64 {
        let mut cur = self.free_ns.load(Ordering::Acquire);
        loop {
            let (free, deliver) = delivery_time(cur, t, bytes, &self.profile);
            match self
                .free_ns
                .compare_exchange_weak(cur, free, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // The link stood idle from `cur` to `t`: bulk traffic waiting since
                    // before `t` could have used that stretch.
                    let since = self.bulk_since.load(Ordering::Acquire);
                    if since != NO_BULK && t > cur.max(since) {
                        self.credit_ns
                            .fetch_add(t - cur.max(since), Ordering::AcqRel);
                    }
                    return deliver;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// When the link is next free (nanoseconds on the session clock).
    pub fn free_ns(&self) -> u64 {
        self.free_ns.load(Ordering::Acquire)
    }

    /// A bulk message handed over at `since` starts waiting for idle link time (one at a
    /// time per link).
    pub fn begin_bulk(&self, since: u64) {
        self.credit_ns.store(0, Ordering::Release);
        self.bulk_since.store(since, Ordering::Release);
    }

    /// The bulk message is through.
    pub fn end_bulk(&self) {
        self.bulk_since.store(NO_BULK, Ordering::Release);
        self.credit_ns.store(0, Ordering::Release);
    }

    /// Claim link time for up to `left` more bytes of the bulk message begun at `since`:
    /// the credited idle stretches, then, if the link is idle at `now`, the time since it
    /// went idle and one fragment past `now`. Returns what was claimed (possibly nothing).
    ///
    /// Claiming the current idle stretch back to its start cannot delay an ordinary
    /// message: any that was handed over in it claimed the link first and moved `free_ns`
    /// (the stretch before it is credit, the one after it is claimed here).
    pub fn claim_bulk(&self, since: u64, now: u64, left: u64) -> BulkClaim {
        let bw = match self.profile.bandwidth_mbps {
            Some(bw) => bw,
            None => {
                return BulkClaim {
                    bytes: left,
                    deliver_ns: now.max(since) + self.profile.latency_ns(),
                }
            }
        };
        // ns * Mbit/s / 8e3 = bytes.
        let bytes_in = |ns: u64| (ns as f64 * bw / 8e3) as u64;
        let credit = self.credit_ns.swap(0, Ordering::AcqRel);
        let from_credit = bytes_in(credit).min(left);
        let mut cur = self.free_ns.load(Ordering::Acquire);
        if from_credit == left {
            // Every credited stretch ended at an ordinary message's start, before `cur`.
            return BulkClaim {
                bytes: left,
                deliver_ns: cur.min(now).max(since) + self.profile.latency_ns(),
            };
        }
        let want = left - from_credit;
        let frag_ns = self.profile.transmit_ns(BULK_FRAGMENT_BYTES);
        loop {
            if cur > now {
                return BulkClaim {
                    bytes: from_credit,
                    deliver_ns: cur.min(now).max(since) + self.profile.latency_ns(),
                };
            }
            let start = cur.max(since);
            let bytes = bytes_in(now + frag_ns - start).clamp(1, want);
            let (free, deliver) = delivery_time(cur, start, bytes, &self.profile);
            match self
                .free_ns
                .compare_exchange_weak(cur, free, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return BulkClaim {
                        bytes: from_credit + bytes,
                        deliver_ns: deliver,
                    }
                }
                Err(now_free) => cur = now_free,
            }
        }
    }
}

/// A monotonic clock in nanoseconds since a fixed origin (the emulator's time base).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }
}

impl Clock {
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
    pub fn instant(&self, ns: u64) -> Instant {
        self.origin + Duration::from_nanos(ns)
    }
}

/// How long before a due time a waiting receiver's sleep ends; it spins the rest. Timed
/// sleeps end late by ~10-30 us on an idle machine (timer slack, waking an idle CPU), more
/// on a busy one; this margin absorbs the usual overshoot while bounding the spin, which
/// is the only CPU an emulated latency costs.
const WAKE_EARLY_NS: u64 = 100_000;

/// The margin for a message handed over less than this before its due time (a lan-scale
/// link), instead of `WAKE_EARLY_NS`. A sleep of 20-100 us on this VM ends 24-26 us late
/// (median; p10 17-21, p90 31-41 us, at the 1 us slack: waking an idle virtual CPU), and
/// every round of a lan run waits for one: slept out to the due time, 78 rounds of LeNet
/// were each a quarter of their latency late, and pipelined lanes, whose round trips are
/// the critical path, lost most of it (`all` p50 13.9-14.8 ms against 12.2-12.9 with a
/// 30 us spin). The spin costs at most this much CPU per message waited for.
const LAN_WAKE_EARLY_NS: u64 = 30_000;

/// Delays from this long up use `WAKE_EARLY_NS`.
const SPIN_MIN_DELAY_NS: u64 = 1_000_000;

/// How long before its due time the receiver of a message handed over at `pushed` and due
/// at `due` ends its sleep and spins out the rest (0: nothing to wait for).
pub(crate) fn spin_margin(pushed: u64, due: u64) -> u64 {
    let delay = due.saturating_sub(pushed);
    if delay >= SPIN_MIN_DELAY_NS {
        WAKE_EARLY_NS
    } else {
        delay.min(LAN_WAKE_EARLY_NS)
    }
}

/// When a receiver waiting for something due at `due` should end its sleep.
pub(crate) fn wake_before(due: u64, margin: u64) -> u64 {
    due.saturating_sub(margin)
}

/// True when the receiver should spin now: the message's due time is within its margin.
pub(crate) fn near(now: u64, due: u64, margin: u64) -> bool {
    margin > 0 && due.saturating_sub(now) <= margin
}

/// Busy-wait until `due`: only ever called when `near`, so it spins at most the message's
/// margin (plus however long the thread is preempted).
pub(crate) fn spin_until(clock: &Clock, due: u64) {
    while clock.now_ns() < due {
        std::hint::spin_loop();
    }
}

/// Give the calling thread a 1 us timer slack, once per thread. The default (50 us) lets
/// the kernel end a sleep up to that much late, which would eat most of `WAKE_EARLY_NS`.
/// Only threads that wait on an emulated link get here; a finer slack only makes their
/// timed sleeps end closer to what they asked for.
pub(crate) fn fine_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        DONE.with(|d| {
            if !d.replace(true) {
                // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
                unsafe {
                    libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
                }
            }
        });
    }
}
