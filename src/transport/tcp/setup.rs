//! Joining a session: bind, dial every lower id and accept every higher one, authenticate
//! each connection (`handshake`), then hand the sockets to a new I/O thread. Depends on
//! transport::{handshake, emulator, inbox}, tcp::{sys, conn, io_loop}.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
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
use crate::transport::handshake::{handshake, HelloParams, PROTOCOL_VERSION};
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
        let deadline = Instant::now() + cfg.timeout;
        let params = |expect| HelloParams {
            party: me,
            parties: n,
            session: cfg.session,
            version: PROTOCOL_VERSION,
            expect,
        };
        let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        // Dial lower ids first, then accept higher ids: party 0 only accepts, so by
        // induction every dial is eventually answered.
        for (j, (slot, &addr)) in socks.iter_mut().zip(&cfg.addrs).enumerate().take(me) {
            let mut s = dial(addr, j, deadline, cfg.timeout)?;
            set_timeouts(&s, deadline)?;
            handshake(&mut s, &params(Some(j)), &cfg.key, &addr.to_string())?;
            *slot = Some(s);
        }
        listener.set_nonblocking(true)?;
        while let Some(missing) = (me + 1..n).find(|&k| socks[k].is_none()) {
            match listener.accept() {
                Ok((mut s, from)) => {
                    s.set_nonblocking(false)?;
                    set_timeouts(&s, deadline)?;
                    let k = handshake(&mut s, &params(None), &cfg.key, &from.to_string())?;
                    if socks[k].is_some() {
                        return Err(Error::Frame(format!(
                            "party {k} connected twice (second time from {from})"
                        )));
                    }
                    socks[k] = Some(s);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            peer: missing,
                            op: "connection setup (waiting for it to connect)".into(),
                            secs: cfg.timeout.as_secs_f64(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        drop(listener);
        Self::start(cfg, socks)
    }

    fn start(cfg: &TcpConfig, socks: Vec<Option<TcpStream>>) -> Result<TcpEndpoint> {
        let n = socks.len();
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let mut conns = Vec::with_capacity(n);
        for (p, s) in socks.into_iter().enumerate() {
            let Some(s) = s else {
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
            conns.push(Some(Conn::new(ms, cfg.max_frame)));
        }
        let clock = Clock::default();
        let inbox = Arc::new(Inbox::new(n, clock));
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
