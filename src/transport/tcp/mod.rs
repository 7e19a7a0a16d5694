//! TCP transport: one party of a session over real sockets (loopback or remote hosts).
//! Depends on comm, link, error, transport::{frame, handshake, inbox, emulator, bulk, seal}
//! (and mio, crossbeam, libc).
//!
//! Files: `setup.rs` dials, accepts and authenticates the connections; `sys.rs` holds the
//! socket syscalls std does not offer; `conn.rs` one connection (its send queues and its
//! lifecycle, one `State`); `io_loop.rs` the I/O thread's event loop. This file holds the
//! endpoint the compute side uses (`Comm`) and what it shares with the I/O thread.
//!
//! Setup (blocking, untimed): every party listens on its address, dials every lower id and
//! accepts every higher id, and authenticates each connection (`handshake`; accepted ones
//! concurrently, each with its own deadline, so a stranger that fails it or stays silent
//! is logged and dropped while the real peers are served). Then one
//! dedicated I/O thread owns all sockets, driven by a mio `Poll`:
//!
//! - `post` pushes the message onto the peer's lock-free `SegQueue` and wakes the I/O thread
//!   through the poll's `Waker` (at most one wake-up outstanding), so it never blocks.
//!   `post_bulk` does the same on the peer's bulk queue.
//! - The I/O thread writes queued messages as frames (vectored writes, until `WouldBlock`),
//!   and reads every readable socket until `WouldBlock`, large payloads straight into the
//!   message's memory. Complete messages go to the `Inbox` at once (when the session is
//!   shaped, stamped with their emulated delivery time, counted on the receiver side from
//!   the arrival of the message's first byte, so a slow real link only ever adds delay).
//! - Bulk (background) messages are a second stream on each connection (`FLAG_BULK`
//!   frames): per peer, ordinary messages are written first, and a bulk message goes out
//!   one `BULK_FRAGMENT_BYTES` frame at a time only while no ordinary one is queued, so an
//!   urgent message waits for at most one fragment in our queues; `TCP_NOTSENT_LOWAT`
//!   keeps the kernel's queue short too. This matters on a real slow link. On an emulated
//!   one the emulation happens on receipt, where a real loopback link delivers everything
//!   at once, so a completed bulk message goes to a `BulkPump` on the peer's incoming link,
//!   which feeds it into the link time ordinary messages leave idle, as the in-memory
//!   transport does on its sending side. A peer's departure is queued behind its pump.
//! - A peer that closes, resets or sends a bad frame is marked gone with the reason; waiters
//!   on it fail at once naming it, and a silent peer fails them after the timeout.
//! - Liveness: on a connection where it has written nothing for `heartbeat_interval`, the
//!   I/O thread writes a heartbeat frame (sealed like every frame; not in the counters),
//!   and it tells the inbox when bytes last came from each peer. A timed-out wait can so
//!   tell a peer that is alive but waiting itself from one that is stopped or cut off
//!   (`silence_bound`), and names the silent one (`inbox::Inbox::with_liveness`).
//!
//! Shutdown: dropping the endpoint flushes what was posted, sends a bye frame, half-closes,
//! and drains the peers until they close too (bounded), so no party loses data to a reset.

mod conn;
mod io_loop;
mod setup;
mod sys;

use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::queue::SegQueue;
use mio::Waker;

use super::frame;
use super::handshake::SessionKey;
use super::inbox::Inbox;
use crate::comm::{Comm, Counters, PartyId, Payload, Tag};
use crate::error::{Error, Result};
use crate::link::LinkProfile;

pub use setup::{TcpNetwork, MAX_PENDING_HANDSHAKES};
pub use sys::tune_allocator_for_messages;

/// Everything one party needs to join a TCP session.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    pub party: PartyId,
    /// Every party's listening address, by id.
    pub addrs: Vec<SocketAddr>,
    pub session: u64,
    pub key: SessionKey,
    /// Bound on connection setup and on any single wait for a peer.
    pub timeout: Duration,
    /// Emulated link applied to every incoming directed link.
    pub link: LinkProfile,
    /// Cap on one frame's payload (what a peer can make us allocate at once).
    pub max_frame: usize,
    /// Cap on what one peer may hold in our inbox: bytes of messages it sent that no one
    /// has waited for yet (and of one message being received). Past it the peer is dropped
    /// with an error naming it.
    pub max_inbox_bytes: u64,
    /// Send and accept frames in clear (`--insecure-plaintext-channels`, to measure what
    /// sealing costs); every party of a session must agree.
    pub plaintext: bool,
}

/// Default of `TcpConfig::max_inbox_bytes` (`--inbox-cap-mib`): far above what a model run
/// here holds ahead (inter-linear's weight masks of VGG16, about 1.1 GB, are the most),
/// and far below what would exhaust a 24 GiB machine with two peers.
pub const DEFAULT_INBOX_CAP_MIB: u64 = 8 << 10;

impl TcpConfig {
    pub fn new(party: PartyId, addrs: Vec<SocketAddr>, session: u64, key: SessionKey) -> Self {
        TcpConfig {
            party,
            addrs,
            session,
            key,
            timeout: Duration::from_secs(60),
            link: LinkProfile::unshaped(),
            max_frame: frame::MAX_FRAME_BYTES,
            max_inbox_bytes: DEFAULT_INBOX_CAP_MIB << 20,
            plaintext: false,
        }
    }
}

/// How long a connection may go without our writing anything before the I/O thread
/// writes a heartbeat: a quarter of the timeout, at most 1 s (and at least 10 ms). 1 s
/// costs 32 bytes a second per idle connection; a quarter of the timeout leaves several
/// heartbeats within any timeout, so one delayed by load does not make a peer look silent.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// A peer not heard from for longer than this is silent (stopped, hung, or cut off): four
/// heartbeat intervals, so a live peer whose I/O thread is held up by load for up to three
/// intervals still counts as alive.
pub fn silence_bound(timeout: Duration) -> Duration {
    4 * heartbeat_interval(timeout)
}

pub(super) struct Shared {
    pub(super) n: usize,
    pub(super) me: PartyId,
    pub(super) timeout: Duration,
    pub(super) outq: Vec<SegQueue<(Tag, Payload)>>,
    /// Background messages (`post_bulk`), per peer.
    pub(super) bulkq: Vec<SegQueue<(Tag, Payload)>>,
    pub(super) waker: Waker,
    /// A wake-up is outstanding; posters skip the syscall while it is.
    pub(super) wake_pending: AtomicBool,
    pub(super) inbox: Arc<Inbox>,
    /// Peers we may no longer send to, with the reason.
    pub(super) gone: Vec<Mutex<Option<String>>>,
    pub(super) gone_flag: Vec<AtomicBool>,
    pub(super) shutdown: AtomicBool,
    pub(super) abort: AtomicBool,
    /// Set by `abort_with`: whom to blame and why, sent to every peer in an abort frame.
    pub(super) abort_msg: Mutex<Option<(u32, String)>>,
    /// Fault injection for tests (`TcpEndpoint::debug_stall_io`): the I/O thread neither
    /// reads nor writes until then.
    pub(super) stall_io_until: Mutex<Option<std::time::Instant>>,
}

impl Shared {
    pub(super) fn wake(&self) {
        fence(Ordering::SeqCst);
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
    pub(super) fn mark_gone(&self, p: PartyId, why: &str) {
        let mut g = self.gone[p].lock().unwrap();
        if g.is_none() {
            *g = Some(why.to_string());
        }
        self.gone_flag[p].store(true, Ordering::Release);
    }
}

/// One party's end of a TCP session.
pub struct TcpEndpoint {
    pub(super) shared: Arc<Shared>,
    pub(super) counters: Counters,
    pub(super) io: Option<JoinHandle<()>>,
}

impl Comm for TcpEndpoint {
    fn party(&self) -> PartyId {
        self.shared.me
    }
    fn parties(&self) -> usize {
        self.shared.n
    }

    fn post(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        self.check_peer(to, tag)?;
        self.counters.sent(to, 8 * data.len() as u64);
        self.shared.outq[to].push((tag, data));
        self.shared.wake();
        Ok(())
    }

    fn post_bulk(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        self.check_peer(to, tag)?;
        self.counters.sent(to, 8 * data.len() as u64);
        self.shared.bulkq[to].push((tag, data));
        self.shared.wake();
        Ok(())
    }

    fn wait(&self, from: PartyId, tag: Tag, len: usize) -> Result<Payload> {
        let sh = &self.shared;
        sh.inbox
            .receive(sh.me, from, tag, len, sh.timeout, &self.counters)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl TcpEndpoint {
    /// Refuse a send to no one, to oneself, or to a peer we may no longer send to.
    fn check_peer(&self, to: PartyId, tag: Tag) -> Result<()> {
        let sh = &self.shared;
        if to >= sh.n || to == sh.me {
            return Err(Error::Protocol(format!(
                "party {} cannot send to party {to}",
                sh.me
            )));
        }
        if sh.gone_flag[to].load(Ordering::Acquire) {
            let why = sh.gone[to].lock().unwrap().clone().unwrap_or_default();
            return Err(Error::Peer {
                peer: to,
                op: format!("send of tag {:#x}", tag.0),
                msg: why,
            });
        }
        Ok(())
    }

    /// Stop after a failure: drop what is not yet on the wire, tell every peer in an abort
    /// frame that we stop because of party `blame` (ourselves if the failure is ours) and
    /// why, then close after a short drain. Peers report the blamed party, not us.
    pub fn abort_with(mut self, blame: PartyId, reason: &str) {
        *self.shared.abort_msg.lock().unwrap() = Some((blame as u32, reason.to_string()));
        if let Some(h) = self.io.take() {
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake_pending.store(false, Ordering::SeqCst);
            self.shared.wake();
            let _ = h.join();
        }
    }

    /// Fault injection for tests: the I/O thread stops reading and writing (no messages,
    /// no heartbeats) for `d`, as if the process were stopped, while the compute side goes
    /// on. Dropping or aborting the endpoint ends the stall.
    #[doc(hidden)]
    pub fn debug_stall_io(&self, d: Duration) {
        *self.shared.stall_io_until.lock().unwrap() = std::time::Instant::now().checked_add(d);
        self.shared.wake_pending.store(false, Ordering::SeqCst);
        self.shared.wake();
    }

    /// Close at once without flushing or saying goodbye (after a failure: peers see the
    /// connection drop and stop).
    pub fn abort(mut self) {
        self.shared.abort.store(true, Ordering::Release);
        self.shared.wake_pending.store(false, Ordering::SeqCst);
        self.shared.wake();
        if let Some(h) = self.io.take() {
            let _ = h.join();
        }
    }
}

impl Drop for TcpEndpoint {
    /// Flush everything posted, say goodbye, and wait (bounded) for the peers to close.
    fn drop(&mut self) {
        if let Some(h) = self.io.take() {
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake_pending.store(false, Ordering::SeqCst);
            self.shared.wake();
            let _ = h.join();
        }
    }
}
