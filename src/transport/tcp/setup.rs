//! Joining a session: bind, dial every lower id and accept every higher one, authenticate
//! each connection (`handshake`), then hand the sockets to a new I/O thread. Depends on
//! transport::{handshake, emulator, inbox}, tcp::{sys, conn, io_loop}.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;
use mio::{Interest, Poll, Token, Waker};

use super::conn::Conn;
use super::io_loop::{IoThread, WAKER};
use super::sys::{enable_rx_stamps, limit_unsent};
use super::{Shared, TcpConfig, TcpEndpoint};
use crate::comm::{Counters, PartyId};
use crate::error::{Error, Result};
use crate::transport::emulator::{Clock, Link};
use crate::transport::frame::sanitize;
use crate::transport::handshake::{
    handshake, is_connection_failure, ChannelKeys, HelloParams, PROTOCOL_VERSION,
};
use crate::transport::inbox::Inbox;

/// Connection setup for one party.
pub struct TcpNetwork;

impl TcpNetwork {
    /// Bind this party's address from `cfg.addrs` and join the session.
    pub fn connect(cfg: &TcpConfig) -> Result<TcpEndpoint> {
        let addr = *cfg.addrs.get(cfg.party).ok_or_else(|| {
            Error::Config(format!(
                "party {} has no address ({} listed)",
                cfg.party,
                cfg.addrs.len()
            ))
        })?;
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::Config(format!("party {} cannot listen on {addr}: {e}", cfg.party))
        })?;
        Self::connect_with(cfg, listener)
    }

    /// Join the session with an already bound listener (e.g. bound to port 0 by a test).
    pub fn connect_with(cfg: &TcpConfig, listener: TcpListener) -> Result<TcpEndpoint> {
        let (n, me) = (cfg.addrs.len(), cfg.party);
        if n < 2 || me >= n {
            return Err(Error::Config(format!("party {me} of {n} parties")));
        }
        let deadline = Instant::now().checked_add(cfg.timeout).ok_or_else(|| {
            Error::Config(format!(
                "timeout of {} s is too large",
                cfg.timeout.as_secs_f64()
            ))
        })?;
        let params = |expect| HelloParams {
            party: me,
            parties: n,
            session: cfg.session,
            version: PROTOCOL_VERSION,
            expect,
            plaintext: cfg.plaintext,
        };
        let mut socks: Vec<Option<Peer>> = (0..n).map(|_| None).collect();
        // Dial lower ids first, then accept higher ids: party 0 only accepts, so by
        // induction every dial is eventually answered.
        for (j, (slot, &addr)) in socks.iter_mut().zip(&cfg.addrs).enumerate().take(me) {
            // A listener flooded by strangers may evict our connection before its hello
            // is answered: dial again until the deadline. A refusal is final.
            let auth = loop {
                let mut s = dial(addr, j, deadline, cfg.timeout)?;
                set_timeouts(&s, deadline)?;
                // Named by party and address, so a party that never answers its hello
                // (stopped, hung) is named in the error as every other failed peer is.
                let peer = format!("party {j} ({addr})");
                match handshake(&mut s, &params(Some(j)), &cfg.key, &peer) {
                    Ok(a) => break (s, a.keys),
                    Err(e) if is_connection_failure(&e) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e),
                }
            };
            *slot = Some(auth);
        }
        accept_peers(cfg, &listener, &params(None), &mut socks, deadline)?;
        drop(listener);
        Self::start(cfg, socks)
    }

    fn start(cfg: &TcpConfig, socks: Vec<Option<Peer>>) -> Result<TcpEndpoint> {
        let n = socks.len();
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let mut conns = Vec::with_capacity(n);
        for (p, s) in socks.into_iter().enumerate() {
            let Some((s, keys)) = s else {
                conns.push(None);
                continue;
            };
            s.set_read_timeout(None)?;
            s.set_write_timeout(None)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            if !cfg.link.is_unshaped() {
                enable_rx_stamps(&s)?;
            }
            limit_unsent(&s)?;
            let mut ms = mio::net::TcpStream::from_std(s);
            poll.registry()
                .register(&mut ms, Token(p), Interest::READABLE | Interest::WRITABLE)?;
            conns.push(Some(Conn::new(
                ms,
                cfg.max_frame,
                cfg.max_inbox_bytes,
                keys.as_ref(),
            )));
        }
        let clock = Clock::default();
        let names = cfg
            .addrs
            .iter()
            .enumerate()
            .map(|(p, a)| format!("party {p} ({a})"))
            .collect();
        let inbox = Arc::new(
            Inbox::with_cap(n, clock, cfg.max_inbox_bytes).with_liveness(
                cfg.party,
                super::silence_bound(cfg.timeout),
                names,
            ),
        );
        let shared = Arc::new(Shared {
            n,
            me: cfg.party,
            timeout: cfg.timeout,
            outq: (0..n).map(|_| SegQueue::new()).collect(),
            bulkq: (0..n).map(|_| SegQueue::new()).collect(),
            waker,
            wake_pending: AtomicBool::new(false),
            inbox: inbox.clone(),
            gone: (0..n).map(|_| Mutex::new(None)).collect(),
            gone_flag: (0..n).map(|_| AtomicBool::new(false)).collect(),
            shutdown: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            abort_msg: Mutex::new(None),
            stall_io_until: Mutex::new(None),
        });
        let shaping = (!cfg.link.is_unshaped()).then(|| {
            (0..n)
                .map(|_| Arc::new(Link::new(cfg.link.clone())))
                .collect()
        });
        let io = IoThread {
            sh: shared.clone(),
            poll,
            conns,
            clock,
            shaping,
            pumps: (0..n).map(|_| None).collect(),
            max_frame: cfg.max_frame,
            max_inbox_bytes: cfg.max_inbox_bytes,
            heartbeat: super::heartbeat_interval(cfg.timeout),
        };
        let handle = std::thread::Builder::new()
            .name(format!("mpc-io-{}", cfg.party))
            .spawn(move || io.run())?;
        Ok(TcpEndpoint {
            shared,
            counters: Counters::new(n),
            io: Some(handle),
        })
    }
}

/// Longest one accepted connection may take to authenticate: a stranger that connects
/// and stays silent costs one handshake thread this long, never the session.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes running at once. A connection beyond them evicts the oldest pending
/// one (which a real peer, answering at once, rarely is; a dialling peer that is evicted
/// dials again): so a flood of strangers that connect and stay silent costs a bounded
/// number of threads and sockets and never locks the real peers out, as dropping the
/// newcomer would.
pub const MAX_PENDING_HANDSHAKES: usize = 32;

/// What a handshake thread reports: its connection's number, who connected, and the
/// authenticated peer's id and socket or why it was refused.
type Handshaken = (u64, SocketAddr, Result<(PartyId, Peer)>);

/// An authenticated connection and its channel keys (None: plaintext channels).
type Peer = (TcpStream, Option<ChannelKeys>);

/// Accept until every higher id is connected or `deadline` passes. Each connection is
/// authenticated on a thread of its own with its own deadline, so strangers (random bytes,
/// a wrong key, silence) and a second connection for a party already connected are
/// logged and dropped while the real peers are served; only the deadline ends the wait,
/// with an error naming the missing party and the last refusal.
fn accept_peers(
    cfg: &TcpConfig,
    listener: &TcpListener,
    params: &HelloParams,
    socks: &mut [Option<Peer>],
    deadline: Instant,
) -> Result<()> {
    let me = cfg.party;
    listener.set_nonblocking(true)?;
    let (tx, rx) = mpsc::channel::<Handshaken>();
    // Pending handshakes, oldest first: number, peer address, a handle to shut it down.
    let mut pending = std::collections::VecDeque::<(u64, SocketAddr, TcpStream)>::new();
    let mut next_id = 0u64;
    let mut refused = 0usize;
    let mut last_refusal = None::<String>;
    let mut refuse = |from: SocketAddr, why: String| {
        let why = sanitize(&why);
        eprintln!("mpc-pipe: party {me}: dropped a connection from {from}: {why}");
        refused += 1;
        last_refusal = Some(why);
    };
    loop {
        while let Ok((id, from, r)) = rx.try_recv() {
            pending.retain(|(p, _, _)| *p != id);
            match r {
                Ok((k, s)) if socks[k].is_none() => socks[k] = Some(s),
                Ok((k, _)) => refuse(
                    from,
                    format!("party {k} is already connected (a second connection claiming it)"),
                ),
                Err(e) => refuse(from, e.to_string()),
            }
        }
        let Some(missing) = (me + 1..socks.len()).find(|&k| socks[k].is_none()) else {
            return Ok(());
        };
        match listener.accept() {
            Ok((s, from)) => {
                if pending.len() >= MAX_PENDING_HANDSHAKES {
                    if let Some((_, old, handle)) = pending.pop_front() {
                        // Its thread sees the shutdown as a failed read and reports it.
                        let _ = handle.shutdown(std::net::Shutdown::Both);
                        eprintln!(
                            "mpc-pipe: party {me}: {MAX_PENDING_HANDSHAKES} handshakes pending; the oldest, from {old}, gives way to {from}"
                        );
                    }
                }
                let handle = match s.try_clone() {
                    Ok(h) => h,
                    Err(e) => {
                        refuse(from, format!("cannot track its handshake: {e}"));
                        continue;
                    }
                };
                let conn_deadline = deadline.min(Instant::now() + HANDSHAKE_TIMEOUT);
                if let Err(e) = s
                    .set_nonblocking(false)
                    .map_err(Error::from)
                    .and_then(|_| set_timeouts(&s, conn_deadline))
                {
                    refuse(from, e.to_string());
                    continue;
                }
                let (tx, params, key) = (tx.clone(), params.clone(), cfg.key.clone());
                let id = next_id;
                next_id += 1;
                let spawned = std::thread::Builder::new()
                    .name(format!("mpc-hello-{me}"))
                    .spawn(move || {
                        let mut s = s;
                        let r = handshake(&mut s, &params, &key, &from.to_string());
                        let _ = tx.send((id, from, r.map(|a| (a.party, (s, a.keys)))));
                    });
                match spawned {
                    Ok(_) => pending.push_back((id, from, handle)),
                    Err(e) => refuse(from, format!("no thread for its handshake: {e}")),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let op = match &last_refusal {
                        None => "connection setup (waiting for it to connect)".to_string(),
                        Some(last) => format!(
                            "connection setup (waiting for it to connect; {refused} other connection(s) refused meanwhile, the last: {last})"
                        ),
                    };
                    return Err(Error::Timeout {
                        peer: missing,
                        op,
                        secs: cfg.timeout.as_secs_f64(),
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A connection that failed before we took it (reset, aborted) or a passing
            // shortage (descriptors): not the session's end, the deadline still rules.
            Err(e) => {
                eprintln!("mpc-pipe: party {me}: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

fn set_timeouts(s: &TcpStream, deadline: Instant) -> Result<()> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))?;
    Ok(())
}

/// Connect to `addr`, retrying while the peer is not listening yet.
fn dial(
    addr: SocketAddr,
    peer: PartyId,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                peer,
                op: format!("connection setup (dialling {addr})"),
                secs: timeout.as_secs_f64(),
            });
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                ) =>
            {
                std::thread::sleep(Duration::from_millis(10).min(left));
            }
            Err(e) => {
                return Err(Error::Peer {
                    peer,
                    op: format!("connection setup (dialling {addr})"),
                    msg: e.to_string(),
                })
            }
        }
    }
}
