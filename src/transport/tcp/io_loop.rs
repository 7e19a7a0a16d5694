//! The I/O thread's event loop: one mio `Poll` over every peer's socket and the waker,
//! reading frames into the inbox, writing queued messages, departures and shutdown.
//! Depends on tcp::{conn, sys}, transport::{frame, inbox, emulator, bulk}, comm.

use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::conn::{
    take_posts, Conn, Control, Farewell, OutMsg, Outgoing, State, Wrote, DIRECT_MIN,
};
use super::sys::{recv_stamped, recv_uninit};
use super::Shared;
use crate::comm::{PartyId, Tag};
use crate::transport::bulk::BulkPump;
use crate::transport::emulator::{Clock, Link, BULK_FRAGMENT_BYTES};
use crate::transport::frame::{self, Event, FLAG_BULK, KIND_BYE};
use crate::transport::inbox::{Arrival, Departure};

/// Which ends of a connection a departure closes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The peer's input ended; we may still write to it.
    Input,
    /// Sending failed: nothing more either way.
    Output,
    /// The peer broke the protocol: shut the socket down both ways at once.
    Both,
}

pub(super) const WAKER: Token = Token(usize::MAX);
/// Bound on the goodbye drain at shutdown.
const LINGER_MAX: Duration = Duration::from_secs(10);
/// Bound on the drain after an abort frame (peers stop at once when they read it).
const ABORT_LINGER: Duration = Duration::from_secs(1);

pub(super) struct IoThread {
    pub(super) sh: Arc<Shared>,
    pub(super) poll: Poll,
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) clock: Clock,
    /// Per-peer incoming links, when shaped (their times are on `clock`, as the inbox's).
    pub(super) shaping: Option<Vec<Arc<Link>>>,
    /// Per peer, when shaped: the pump that emulates its bulk messages on its incoming link,
    /// started by the first one.
    pub(super) pumps: Vec<Option<BulkPump>>,
    pub(super) max_frame: usize,
    pub(super) max_inbox_bytes: u64,
    /// `tcp::heartbeat_interval` of the session's timeout.
    pub(super) heartbeat: Duration,
}

impl Drop for IoThread {
    /// The I/O thread ends when the endpoint goes away (or its poll failed): bulk messages
    /// still on an emulated link are not waited for, though departures queued behind them
    /// are still reported (see `BulkPump::abandon`).
    fn drop(&mut self) {
        for p in self.pumps.iter_mut().filter_map(Option::take) {
            p.abandon();
        }
    }
}

impl IoThread {
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut linger_deadline: Option<Instant> = None;
        loop {
            if self.sh.abort.load(Ordering::Acquire) {
                return;
            }
            for c in self.conns.iter_mut().flatten() {
                c.sent.clear();
            }
            self.debug_stall();
            // Sleep until the next heartbeat is due at the latest.
            let wake_at = self
                .conns
                .iter()
                .flatten()
                .filter_map(|c| c.heartbeat_due(self.heartbeat))
                .chain(linger_deadline)
                .min();
            let timeout = wake_at.map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    for p in 0..self.sh.n {
                        self.fail(p, &format!("I/O thread poll failed: {e}"));
                    }
                    return;
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.sh.wake_pending.store(false, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    continue;
                }
                let p = ev.token().0;
                if ev.is_writable() {
                    if let Some(c) = self.conns[p].as_mut() {
                        c.write_blocked = false;
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read_peer(p);
                }
            }
            let shutting = self.sh.shutdown.load(Ordering::Acquire);
            let aborting = if shutting {
                self.sh.abort_msg.lock().unwrap().take()
            } else {
                None
            };
            if let Some((blame, reason)) = aborting {
                let f = frame::abort_frame(blame, &reason);
                for (p, c) in self.conns.iter_mut().enumerate() {
                    while self.sh.outq[p].pop().is_some() {}
                    while self.sh.bulkq[p].pop().is_some() {}
                    let Some(c) = c.as_mut() else { continue };
                    // Keep only a message already on the wire (its frames must complete);
                    // nothing else is worth sending now.
                    let started = match c.out.front() {
                        Some(Outgoing::Msg(m)) => m.frame_start > 0 || m.mid_frame(),
                        // Sealed already: its counter is spent, so it must go out.
                        Some(Outgoing::Heartbeat(h)) => h.begun(),
                        _ => false,
                    };
                    c.out.truncate(started as usize);
                    // Of bulk traffic only a frame half on the wire: the abort frame makes
                    // the peer drop the unfinished message.
                    let bulk_mid = c.bulk.front().is_some_and(OutMsg::mid_frame);
                    c.bulk.truncate(bulk_mid as usize);
                    if c.state.may_say_farewell() {
                        c.out.push_back(Outgoing::Abort(Control::new(f.clone())));
                        c.state = c.state.with_farewell(Farewell::Abort);
                    }
                }
                linger_deadline = Some(Instant::now() + self.sh.timeout.min(ABORT_LINGER));
            }
            for p in 0..self.sh.n {
                if let Some(c) = self.conns[p].as_mut() {
                    take_posts(&self.sh, p, c);
                    // The goodbye goes last, also after the bulk queue (see `write_peer`).
                    if shutting && c.state.may_say_farewell() {
                        c.out.push_back(Outgoing::Bye(Control::new(
                            frame::header(KIND_BYE, 0, 0, Tag(0)).to_vec(),
                        )));
                        c.state = c.state.with_farewell(Farewell::Bye);
                    }
                    // Nothing written for an interval: say we are alive (see `tcp` doc).
                    if c.heartbeat_due(self.heartbeat)
                        .is_some_and(|t| t <= Instant::now())
                    {
                        c.out.push_back(Outgoing::Heartbeat(Control::new(
                            frame::heartbeat_frame().to_vec(),
                        )));
                    }
                }
                self.write_peer(p);
            }
            if shutting {
                let deadline = *linger_deadline
                    .get_or_insert_with(|| Instant::now() + self.sh.timeout.min(LINGER_MAX));
                let done = self.conns.iter().flatten().all(|c| c.state.finished());
                if done || Instant::now() >= deadline {
                    return;
                }
            }
        }
    }

    /// Fault injection (`TcpEndpoint::debug_stall_io`): do nothing until the stall ends,
    /// or the endpoint is dropped or aborted.
    fn debug_stall(&self) {
        loop {
            let until = *self.sh.stall_io_until.lock().unwrap();
            let Some(until) = until else { return };
            let now = Instant::now();
            if now >= until
                || self.sh.abort.load(Ordering::Acquire)
                || self.sh.shutdown.load(Ordering::Acquire)
            {
                *self.sh.stall_io_until.lock().unwrap() = None;
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(10)));
        }
    }

    /// The peer is gone: tell the compute side (after whatever is still being delivered).
    fn fail(&mut self, p: PartyId, why: &str) {
        self.depart(p, Departure::new(why), Cut::Input)
    }

    /// As `fail`, and drop the connection at once (a peer that broke the protocol gets no
    /// goodbye).
    fn fail_hard(&mut self, p: PartyId, why: &str) {
        self.depart(p, Departure::new(why), Cut::Both)
    }

    fn depart(&mut self, p: PartyId, d: Departure, cut: Cut) {
        let Some(c) = self.conns[p].as_mut() else {
            return;
        };
        let was = c.state;
        match cut {
            Cut::Input => c.state = was.input_ended(),
            Cut::Both | Cut::Output => {
                if cut == Cut::Both {
                    let _ = c.sock.shutdown(Shutdown::Both);
                }
                c.state = State::Failed;
                c.out.clear();
                c.bulk.clear();
            }
        }
        if !was.reading() {
            return;
        }
        self.sh.inbox.left(p);
        // A peer that finished cleanly needs nothing more from us: late posts to it are
        // still written (it drains them), not errors. Any other departure fails posts.
        if !was.peer_bye() || cut == Cut::Both {
            self.sh.mark_gone(p, &d.why);
        }
        // The socket stays registered: after a clean goodbye we may still have to flush
        // our own data and goodbye to the peer, which needs its writable events.
        match (&self.shaping, &self.pumps[p]) {
            (None, _) => self.sh.inbox.push(p, Arrival::Gone(d)),
            (Some(links), None) => {
                let due = links[p].schedule(self.clock.now_ns(), 0);
                self.sh.inbox.push_at(p, due, Arrival::Gone(d));
            }
            // Bulk messages the peer sent before leaving may still be on the emulated link:
            // a waiter that saw the departure first would give up on them.
            (Some(links), Some(pump)) => {
                let (link, clock, inbox) = (links[p].clone(), self.clock, self.sh.inbox.clone());
                pump.then(move || {
                    let due = link.schedule(clock.now_ns(), 0);
                    inbox.push_at(p, due, Arrival::Gone(d));
                });
            }
        }
    }

    fn read_peer(&mut self, p: PartyId) {
        loop {
            let Some(c) = self.conns[p].as_mut() else {
                return;
            };
            if !c.state.reading() {
                return;
            }
            let mut t_read = self.clock.now_ns();
            let stamped = self.shaping.is_some();
            let r = if let Some(dst) = c.dec.direct(DIRECT_MIN) {
                if stamped {
                    recv_stamped(&c.sock, dst, t_read).map(|(n, t)| {
                        t_read = t;
                        (n, true)
                    })
                } else {
                    recv_uninit(&c.sock, dst).map(|n| (n, true))
                }
            } else if stamped {
                // SAFETY: viewing initialised bytes as MaybeUninit; recv only writes bytes.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        c.staging.as_mut_ptr() as *mut std::mem::MaybeUninit<u8>,
                        c.staging.len(),
                    )
                };
                recv_stamped(&c.sock, dst, t_read).map(|(n, t)| {
                    t_read = t;
                    (n, false)
                })
            } else {
                (&c.sock).read(&mut c.staging).map(|n| (n, false))
            };
            c.dec.set_time(t_read);
            match r {
                Ok((0, _)) => {
                    let why = if c.state.peer_bye() && !c.dec.mid_message() {
                        "peer finished the session and closed its connection".to_string()
                    } else if c.dec.mid_message() {
                        "connection closed in the middle of a message (peer died or disconnected)"
                            .to_string()
                    } else {
                        "connection closed without a goodbye (peer died or disconnected)"
                            .to_string()
                    };
                    self.fail(p, &why);
                    return;
                }
                Ok((n, direct)) => {
                    self.sh.inbox.heard(p, t_read);
                    let res = if direct {
                        // SAFETY: recv initialised the first `n` bytes of the slice.
                        unsafe { c.dec.advance_direct(n) };
                        Ok(())
                    } else {
                        let Conn { dec, staging, .. } = c;
                        dec.feed(&staging[..n])
                    };
                    if let Err(e) = res {
                        self.fail_hard(p, &format!("bad frame, connection closed: {e}"));
                        return;
                    }
                    self.deliver_events(p);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(p, &format!("connection error: {e}"));
                    return;
                }
            }
        }
    }

    fn deliver_events(&mut self, p: PartyId) {
        let c = self.conns[p].as_mut().unwrap();
        let mut bad = None;
        let mut abort = None;
        // `t0`: when the message's first byte arrived, where its time on the link starts.
        while let Some((ev, t0)) = c.dec.next_event_at() {
            match ev {
                Event::Msg(..) | Event::Bulk(..) if c.state.peer_bye() => {
                    bad = Some("data after the peer's goodbye".to_string());
                    break;
                }
                // `admit` counts the message against the peer's cap; when it fits, the
                // arms below deliver it.
                Event::Msg(_, data) | Event::Bulk(_, data)
                    if self.sh.inbox.admit(p, 8 * data.len() as u64).is_err() =>
                {
                    bad = Some(format!(
                        "it sent more than the cap of {} MiB that no one has asked for yet (--inbox-cap-mib; a message of {} bytes came on top)",
                        self.max_inbox_bytes >> 20,
                        8 * data.len()
                    ));
                    break;
                }
                Event::Msg(tag, data) => match &self.shaping {
                    None => self.sh.inbox.push(p, Arrival::Msg(tag, data.into())),
                    Some(links) => {
                        let due = links[p].schedule(t0, 8 * data.len() as u64);
                        self.sh
                            .inbox
                            .push_at(p, due, Arrival::Msg(tag, data.into()));
                    }
                },
                Event::Bulk(tag, data) => match &self.shaping {
                    None => self.sh.inbox.push(p, Arrival::Msg(tag, data.into())),
                    Some(links) => {
                        if self.pumps[p].is_none() {
                            let inbox = self.sh.inbox.clone();
                            self.pumps[p] = BulkPump::start(
                                format!("bulk {p}->{}", self.sh.me),
                                links[p].clone(),
                                self.clock,
                                move |tag, data, due| {
                                    inbox.push_at(p, due, Arrival::Msg(tag, data))
                                },
                            )
                            .ok();
                        }
                        match &self.pumps[p] {
                            Some(pump) => pump.push(t0, tag, data.into()),
                            // No thread for a pump: still deliver it, as ordinary traffic.
                            None => {
                                let due = links[p].schedule(t0, 8 * data.len() as u64);
                                self.sh
                                    .inbox
                                    .push_at(p, due, Arrival::Msg(tag, data.into()));
                            }
                        }
                    }
                },
                Event::Bye => {
                    c.state = c.state.with_peer_bye();
                    self.sh.inbox.left(p);
                }
                // Its bytes were already recorded as heard (`read_peer`).
                Event::Heartbeat => {}
                Event::Abort { blame, reason } => {
                    let blame = blame as usize;
                    abort = Some(Departure {
                        why: reason,
                        blame: (blame < self.sh.n && blame != self.sh.me).then_some(blame),
                    });
                    break;
                }
            }
        }
        if let Some(why) = bad {
            self.fail_hard(p, &why);
        } else if let Some(d) = abort {
            self.depart(p, d, Cut::Input);
        }
    }

    /// Write to `p` until the socket is full. Ordinary messages go first; a bulk message
    /// goes out one frame (`BULK_FRAGMENT_BYTES`) at a time and only while no ordinary
    /// message is queued, looking for new posts before each frame, so an urgent message
    /// waits for at most the one bulk frame being written (plus what the kernel holds,
    /// see `limit_unsent`).
    fn write_peer(&mut self, p: PartyId) {
        let max_frame = self.max_frame;
        let bulk_frame = max_frame.min(BULK_FRAGMENT_BYTES as usize);
        let sh = &self.sh;
        let Some(c) = self.conns[p].as_mut() else {
            return;
        };
        let mut err = None;
        while !c.write_blocked && c.state.may_write() {
            // A frame once begun must be completed before any other can follow.
            let bulk_mid = c.bulk.front().is_some_and(OutMsg::mid_frame);
            if !bulk_mid {
                take_posts(sh, p, c);
            }
            // The goodbye is queued behind the ordinary messages but must also follow
            // every bulk message.
            let use_bulk = bulk_mid
                || (!c.bulk.is_empty()
                    && match c.out.front() {
                        None => true,
                        Some(Outgoing::Bye(b)) => !b.begun(),
                        Some(_) => false,
                    });
            let res = if use_bulk {
                let m = c.bulk.front_mut().unwrap();
                m.write(&c.sock, bulk_frame, FLAG_BULK, c.chan.as_mut())
                    .map(|w| {
                        if w == Wrote::Message {
                            let m = c.bulk.pop_front().unwrap();
                            c.sent.push(m.data);
                        }
                        if w != Wrote::Partial && c.state.leaving() == Some(Farewell::Abort) {
                            c.bulk.clear();
                        }
                    })
            } else {
                let Some(front) = c.out.front_mut() else {
                    break;
                };
                let finished = match front {
                    Outgoing::Bye(b) | Outgoing::Abort(b) | Outgoing::Heartbeat(b) => {
                        b.write(&c.sock, c.chan.as_mut())
                    }
                    Outgoing::Msg(m) => m
                        .write(&c.sock, max_frame, 0, c.chan.as_mut())
                        .map(|w| w == Wrote::Message),
                };
                finished.map(|finished| {
                    if finished {
                        if let Some(Outgoing::Msg(m)) = c.out.pop_front() {
                            c.sent.push(m.data);
                        }
                    }
                })
            };
            match res {
                // Every Ok wrote at least a byte (a 0-byte write is `WriteZero`).
                Ok(()) => c.last_write = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.write_blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WriteZero => {
                    err = Some("connection closed while sending".to_string());
                    break;
                }
                Err(e) => {
                    err = Some(format!("send failed: {e}"));
                    break;
                }
            }
        }
        if err.is_none() && c.state.leaving().is_some() && c.out.is_empty() && c.bulk.is_empty() {
            let _ = c.sock.shutdown(Shutdown::Write);
            c.state = c.state.half_closed();
        }
        if let Some(why) = err {
            self.depart(p, Departure::new(why), Cut::Output);
        }
    }
}
