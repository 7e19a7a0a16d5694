//! TCP transport: one party of a session over real sockets (loopback or remote hosts).
//! Depends on comm, error, transport::{frame, handshake, inbox, emulator, bulk} (and mio,
//! crossbeam, libc).
//!
//! Setup (blocking, untimed): every party listens on its address, dials every lower id and
//! accepts every higher id, and authenticates each connection (`handshake`). Then one
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
//!
//! Shutdown: dropping the endpoint flushes what was posted, sends a bye frame, half-closes,
//! and drains the peers until they close too (bounded), so no party loses data to a reset.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;
use mio::{Events, Interest, Poll, Token, Waker};

use super::bulk::BulkPump;
use super::emulator::{Clock, Link, LinkProfile, BULK_FRAGMENT_BYTES};
use super::frame::{self, Decoder, Event, FLAG_BULK, FLAG_FIN, HEADER_BYTES, KIND_BYE, KIND_DATA};
use super::handshake::{handshake, HelloParams, SessionKey, PROTOCOL_VERSION};
use super::inbox::{Arrival, Departure, Inbox};
use crate::comm::{Comm, Counters, PartyId, Payload, Tag};
use crate::error::{Error, Result};

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
}

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
        }
    }
}

const WAKER: Token = Token(usize::MAX);
/// Payload remainders at least this big are read straight into the message.
const DIRECT_MIN: usize = 16 << 10;
const STAGING_BYTES: usize = 256 << 10;
/// Bound on the goodbye drain at shutdown.
const LINGER_MAX: Duration = Duration::from_secs(10);
/// Bound on the drain after an abort frame (peers stop at once when they read it).
const ABORT_LINGER: Duration = Duration::from_secs(1);

struct Shared {
    n: usize,
    me: PartyId,
    timeout: Duration,
    outq: Vec<SegQueue<(Tag, Payload)>>,
    /// Background messages (`post_bulk`), per peer.
    bulkq: Vec<SegQueue<(Tag, Payload)>>,
    waker: Waker,
    /// A wake-up is outstanding; posters skip the syscall while it is.
    wake_pending: AtomicBool,
    inbox: Arc<Inbox>,
    /// Peers we may no longer send to, with the reason.
    gone: Vec<Mutex<Option<String>>>,
    gone_flag: Vec<AtomicBool>,
    shutdown: AtomicBool,
    abort: AtomicBool,
    /// Set by `abort_with`: whom to blame and why, sent to every peer in an abort frame.
    abort_msg: Mutex<Option<(u32, String)>>,
}

impl Shared {
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
    fn mark_gone(&self, p: PartyId, why: &str) {
        let mut g = self.gone[p].lock().unwrap();
        if g.is_none() {
            *g = Some(why.to_string());
        }
        self.gone_flag[p].store(true, Ordering::Release);
    }
}

/// One party's end of a TCP session.
pub struct TcpEndpoint {
    shared: Arc<Shared>,
    counters: Counters,
    io: Option<JoinHandle<()>>,
}

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

/// Keep message buffers in the process heap (glibc): every message is a fresh `Vec`, and by
/// default glibc serves multi-MiB ones with mmap and returns them with munmap, so each
/// message costs page faults on receipt and a TLB flush on free (expensive IPIs in a VM).
/// Measured with `netcheck --tcp-throughput` (1 GiB in 4 MiB messages, 2 shared vCPUs): our
/// median time went from 0.58-0.81 s to 0.40-0.47 s, a plain socket copy taking 0.33-0.48 s.
/// Process-wide, so called once by the binary's `main`, not by the library. The same
/// change made an in-process ResNet inference (resnet_cifar-tiny, batch 8) 2.9x faster.
///
/// The top pad does the same for the per-thread arenas of pipeline lanes: glibc grows them
/// in 64 MiB heaps and unmaps a heap as soon as it is all free, unless what would be left
/// is under the pad, so lanes whose buffers came and went mapped and faulted in fresh
/// heaps all the time. With a pad of a whole heap none is unmapped: inter-batch on
/// `balanced` (m 8) took 140k page faults instead of 0.5-0.8M, and its slowest party's
/// busy time fell 15-20% (`perf stat`, alternating runs). Peak RSS did not change.
pub fn tune_allocator_for_messages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before heavy allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// `recv` into uninitialised memory (std's `Read` wants initialised buffers, which would
/// cost a memset of every message before the kernel overwrites it).
fn recv_uninit(
    s: &mio::net::TcpStream,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the pointer and length describe writable memory we own; recv writes at most
    // `len` bytes and reports how many.
    let r = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Ask the kernel to stamp received data with its arrival time (read back by
/// `recv_stamped`). Only shaped sessions use it: it is what the emulated link's clock starts
/// from, and it costs a cmsg per read.
fn enable_rx_stamps(s: &TcpStream) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return set_int_option(s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = s;
        Ok(())
    }
}

/// setsockopt with an int value.
#[cfg(target_os = "linux")]
fn set_int_option(
    s: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and an int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Most bytes a socket holds that the kernel has not sent yet (`TCP_NOTSENT_LOWAT`).
const NOTSENT_LOWAT_BYTES: libc::c_int = 128 << 10;

/// Keep the kernel from queueing more than `NOTSENT_LOWAT_BYTES` of unsent data per socket.
/// Our send queues give ordinary messages priority over bulk ones, but only for what is
/// still ours: on a slow real link, an autotuned send buffer full of bulk fragments would
/// sit between an urgent message and the wire (4 MB are 80 ms at 400 Mbit/s). With the cap
/// an urgent message queues behind at most about this much (2.6 ms at 400 Mbit/s). It does
/// not limit data in flight (sent, not yet acknowledged), so the window, and with it the
/// throughput of large messages, is unchanged; it only makes the I/O thread refill the
/// socket in smaller steps (the 12 MB loopback test took the same time without it).
fn limit_unsent(s: &TcpStream) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return set_int_option(
        s,
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT_BYTES,
    );
    #[cfg(not(target_os = "linux"))]
    {
        let _ = s;
        Ok(())
    }
}

/// Bound on how far before the read a kernel receive stamp may move a message's start on
/// the emulated link. Stamps are on the wall clock, so a clock step between arrival and read
/// could otherwise move it arbitrarily (and make a message early); an I/O thread that
/// really is this far behind is rare, and the message is then only late, never early.
const MAX_STAMP_AGE_NS: u64 = 50_000_000;

/// As `recv_uninit`, and the emulator time at which the data reached the socket, from the
/// kernel's receive stamp (`t_read`, the emulator time just before the call, when there is
/// no stamp). TCP stamps a read with the arrival of the last segment it consumed, so the
/// result is never earlier than the message's real arrival.
///
/// Why not just `t_read`: the I/O thread's own wake-up after an idle spell (tens of us to
/// over 0.1 ms on idle virtual CPUs) would be added to every emulated latency, though on a
/// real link the bytes are already there, waiting.
fn recv_stamped(
    s: &mio::net::TcpStream,
    buf: &mut [std::mem::MaybeUninit<u8>],
    t_read: u64,
) -> io::Result<(usize, u64)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let real_read = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // u64s keep the control buffer aligned for cmsghdr.
        let mut ctrl = [0u64; 16];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: iov describes writable memory we own, the control buffer is ours and its
        // length is given; recvmsg writes at most those lengths.
        let r = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut arrived = t_read;
        // SAFETY: walking the control messages the kernel wrote, with the libc macros.
        unsafe {
            let mut cm = libc::CMSG_FIRSTHDR(&msg);
            while !cm.is_null() {
                if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cm) as *const libc::timespec);
                    let stamp = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                    let age = real_read.saturating_sub(stamp).min(MAX_STAMP_AGE_NS);
                    arrived = t_read.saturating_sub(age);
                }
                cm = libc::CMSG_NXTHDR(&msg, cm);
            }
        }
        Ok((r as usize, arrived))
    }
    #[cfg(not(target_os = "linux"))]
    recv_uninit(s, buf).map(|n| (n, t_read))
}

/// A message being written: its frames go out in order.
struct OutMsg {
    tag: Tag,
    data: Payload,
    /// Next frame's first word, and bytes of the current frame (header + payload) written.
    frame_start: usize,
    frame_done: usize,
}

/// How far a write took a message.
#[derive(PartialEq, Eq)]
enum Wrote {
    /// Part of a frame: the rest of it must follow before any other frame.
    Partial,
    Frame,
    Message,
}

impl OutMsg {
    fn new(tag: Tag, data: Payload) -> Self {
        OutMsg {
            tag,
            data,
            frame_start: 0,
            frame_done: 0,
        }
    }

    /// Write more of the current frame (payload at most `max_frame` bytes; `flags` besides
    /// FIN). The frame is cut from what is left each time, so it is the same frame until
    /// it is complete.
    fn write(
        &mut self,
        sock: &mio::net::TcpStream,
        max_frame: usize,
        flags: u8,
    ) -> io::Result<Wrote> {
        let (start, len, fin) = frame::frames_of(self.data.len() - self.frame_start, max_frame)
            .next()
            .unwrap();
        debug_assert_eq!(start, 0);
        let words = &self.data[self.frame_start..self.frame_start + len];
        let hdr = frame::header(
            KIND_DATA,
            flags | if fin { FLAG_FIN } else { 0 },
            len * 8,
            self.tag,
        );
        let payload = frame::words_as_bytes(words);
        let done = self.frame_done;
        let k = if done < HEADER_BYTES {
            (&*sock).write_vectored(&[IoSlice::new(&hdr[done..]), IoSlice::new(&payload)])?
        } else {
            (&*sock).write(&payload[done - HEADER_BYTES..])?
        };
        if k == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.frame_done += k;
        if self.frame_done < HEADER_BYTES + len * 8 {
            return Ok(Wrote::Partial);
        }
        self.frame_start += len;
        self.frame_done = 0;
        Ok(if self.frame_start == self.data.len() {
            Wrote::Message
        } else {
            Wrote::Frame
        })
    }
}

/// What a connection has queued for writing.
enum Outgoing {
    Msg(OutMsg),
    Bye,
    /// Pre-encoded frame bytes (abort) and how many are written.
    Raw(Vec<u8>, usize),
}

struct Conn {
    sock: mio::net::TcpStream,
    dec: Decoder,
    staging: Vec<u8>,
    out: VecDeque<Outgoing>,
    /// Background messages, written a frame at a time while `out` holds no message.
    bulk: VecDeque<OutMsg>,
    /// After an abort: drop the bulk queue as soon as the frame on the wire is complete.
    bulk_cut: bool,
    /// Buffers of fully written messages, freed just before the thread sleeps: freeing a
    /// large buffer (munmap, TLB flush) would otherwise delay the next write.
    sent: Vec<Payload>,
    write_blocked: bool,
    got_bye: bool,
    sent_bye: bool,
    closed_write: bool,
    /// Reading ended (EOF, error) — the connection is finished for input.
    read_done: bool,
    write_failed: bool,
}

impl Conn {
    fn new(sock: mio::net::TcpStream, max_frame: usize) -> Self {
        Conn {
            sock,
            dec: Decoder::new(max_frame),
            staging: vec![0; STAGING_BYTES],
            out: VecDeque::new(),
            bulk: VecDeque::new(),
            bulk_cut: false,
            sent: Vec::new(),
            write_blocked: false,
            got_bye: false,
            sent_bye: false,
            closed_write: false,
            read_done: false,
            write_failed: false,
        }
    }
}

struct IoThread {
    sh: Arc<Shared>,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    clock: Clock,
    /// Per-peer incoming links, when shaped (their times are on `clock`, as the inbox's).
    shaping: Option<Vec<Arc<Link>>>,
    /// Per peer, when shaped: the pump that emulates its bulk messages on its incoming link,
    /// started by the first one.
    pumps: Vec<Option<BulkPump>>,
    max_frame: usize,
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

/// Move what was posted to `p` into its connection's send queues.
fn take_posts(sh: &Shared, p: PartyId, c: &mut Conn) {
    while let Some((tag, data)) = sh.outq[p].pop() {
        if !c.write_failed {
            c.out.push_back(Outgoing::Msg(OutMsg::new(tag, data)));
        }
    }
    while let Some((tag, data)) = sh.bulkq[p].pop() {
        if !c.write_failed {
            c.bulk.push_back(OutMsg::new(tag, data));
        }
    }
}

impl IoThread {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut linger_deadline: Option<Instant> = None;
        loop {
            if self.sh.abort.load(Ordering::Acquire) {
                return;
            }
            for c in self.conns.iter_mut().flatten() {
                c.sent.clear();
            }
            let timeout = linger_deadline.map(|d| d.saturating_duration_since(Instant::now()));
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
                    let started = matches!(c.out.front(), Some(Outgoing::Msg(m)) if m.frame_start > 0 || m.frame_done > 0);
                    c.out.truncate(started as usize);
                    // Of bulk traffic only a frame half on the wire: the abort frame makes
                    // the peer drop the unfinished message.
                    let bulk_mid = c.bulk.front().is_some_and(|m| m.frame_done > 0);
                    c.bulk.truncate(bulk_mid as usize);
                    c.bulk_cut = true;
                    if !c.sent_bye && !c.write_failed {
                        c.out.push_back(Outgoing::Raw(f.clone(), 0));
                        c.sent_bye = true;
                    }
                }
                linger_deadline = Some(Instant::now() + self.sh.timeout.min(ABORT_LINGER));
            }
            for p in 0..self.sh.n {
                if let Some(c) = self.conns[p].as_mut() {
                    take_posts(&self.sh, p, c);
                    // The goodbye goes last, also after the bulk queue (see `write_peer`).
                    if shutting && !c.sent_bye && !c.write_failed {
                        c.out.push_back(Outgoing::Bye);
                        c.sent_bye = true;
                    }
                }
                self.write_peer(p);
            }
            if shutting {
                let deadline = *linger_deadline
                    .get_or_insert_with(|| Instant::now() + self.sh.timeout.min(LINGER_MAX));
                let done = self
                    .conns
                    .iter()
                    .flatten()
                    .all(|c| (c.closed_write || c.write_failed) && c.read_done);
                if done || Instant::now() >= deadline {
                    return;
                }
            }
        }
    }

    /// The peer is gone: tell the compute side (after whatever is still being delivered).
    fn fail(&mut self, p: PartyId, why: &str) {
        self.depart(p, Departure::new(why), false)
    }

    /// As `fail`; `hard` also drops the connection at once (a peer that broke the protocol
    /// gets no goodbye).
    fn fail_as(&mut self, p: PartyId, why: &str, hard: bool) {
        self.depart(p, Departure::new(why), hard)
    }

    fn depart(&mut self, p: PartyId, d: Departure, hard: bool) {
        let Some(c) = self.conns[p].as_mut() else {
            return;
        };
        if hard {
            let _ = c.sock.shutdown(Shutdown::Both);
            c.write_failed = true;
            c.out.clear();
            c.bulk.clear();
        }
        if c.read_done {
            return;
        }
        c.read_done = true;
        // A peer that finished cleanly needs nothing more from us: late posts to it are
        // still written (it drains them), not errors. Any other departure fails posts.
        if !c.got_bye || hard {
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
            if c.read_done {
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
                    let why = if c.got_bye && !c.dec.mid_message() {
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
                    let res = if direct {
                        // SAFETY: recv initialised the first `n` bytes of the slice.
                        unsafe { c.dec.advance_direct(n) };
                        Ok(())
                    } else {
                        let Conn { dec, staging, .. } = c;
                        dec.feed(&staging[..n])
                    };
                    if let Err(e) = res {
                        self.fail_as(p, &format!("bad frame, connection closed: {e}"), true);
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
                Event::Msg(..) | Event::Bulk(..) if c.got_bye => {
                    bad = Some("data after the peer's goodbye".to_string());
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
                Event::Bye => c.got_bye = true,
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
            self.fail_as(p, &why, true);
        } else if let Some(d) = abort {
            self.depart(p, d, false);
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
        while !c.write_blocked && !c.write_failed {
            // A frame once begun must be completed before any other can follow.
            let bulk_mid = c.bulk.front().is_some_and(|m| m.frame_done > 0);
            if !bulk_mid {
                take_posts(sh, p, c);
            }
            // The goodbye is queued behind the ordinary messages but must also follow
            // every bulk message.
            let use_bulk = bulk_mid
                || (!c.bulk.is_empty() && matches!(c.out.front(), None | Some(Outgoing::Bye)));
            let res = if use_bulk {
                let m = c.bulk.front_mut().unwrap();
                m.write(&c.sock, bulk_frame, FLAG_BULK).map(|w| {
                    if w == Wrote::Message {
                        let m = c.bulk.pop_front().unwrap();
                        c.sent.push(m.data);
                    }
                    if w != Wrote::Partial && c.bulk_cut {
                        c.bulk.clear();
                    }
                })
            } else {
                let Some(front) = c.out.front_mut() else {
                    break;
                };
                let finished = match front {
                    Outgoing::Bye => {
                        let hdr = frame::header(KIND_BYE, 0, 0, Tag(0));
                        match (&c.sock).write(&hdr[..]) {
                            Ok(HEADER_BYTES) => Ok(true),
                            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                            // A 16-byte write is never split on a fresh buffer in practice;
                            // treat a partial one as a failed goodbye.
                            Ok(_) => Err(io::Error::other("short write of the goodbye")),
                            Err(e) => Err(e),
                        }
                    }
                    Outgoing::Raw(b, done) => match (&c.sock).write(&b[*done..]) {
                        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                        Ok(k) => {
                            *done += k;
                            Ok(*done == b.len())
                        }
                        Err(e) => Err(e),
                    },
                    Outgoing::Msg(m) => m.write(&c.sock, max_frame, 0).map(|w| w == Wrote::Message),
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
                Ok(()) => {}
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
        if err.is_none() && c.sent_bye && c.out.is_empty() && c.bulk.is_empty() && !c.closed_write {
            let _ = c.sock.shutdown(Shutdown::Write);
            c.closed_write = true;
        }
        if let Some(why) = err {
            c.write_failed = true;
            c.out.clear();
            c.bulk.clear();
            self.fail(p, &why);
        }
    }
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
