//! The TCP transport in one process (every party a thread, loopback ports chosen by the OS
//! so tests run in parallel): the selftest program agrees with the in-memory transport and
//! the plaintext reference, tags arrive out of order, and bad peers are refused: wrong key,
//! wrong session, wrong party id, oversized frame, silence past the timeout, departure,
//! more unread data than the inbox cap; strangers and duplicates do not stop a listener.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mpc_pipe::comm::{Comm, Tag};
use mpc_pipe::runtime::job::{build, JobSpec};
use mpc_pipe::runtime::process::{run_party_on, PartyConfig};
use mpc_pipe::runtime::{run_local, SessionConfig};
use mpc_pipe::transport::frame::{self, header, FLAG_FIN, KIND_DATA};
use mpc_pipe::transport::handshake::{handshake, HelloParams, PROTOCOL_VERSION};
use mpc_pipe::transport::seal::{Opener, Sealer};
use mpc_pipe::transport::{LinkProfile, SessionKey, TcpConfig, TcpEndpoint, TcpNetwork};
use mpc_pipe::Error;

const ULP: f64 = 1.0 / 65536.0;

fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    (ls, addrs)
}

/// Connect `n` parties; `tweak` may change each party's config.
fn connect(n: usize, tweak: impl Fn(&mut TcpConfig) + Sync) -> Vec<mpc_pipe::Result<TcpEndpoint>> {
    let (ls, addrs) = listeners(n);
    let key = SessionKey::fresh();
    std::thread::scope(|s| {
        let hs: Vec<_> = ls
            .into_iter()
            .enumerate()
            .map(|(id, l)| {
                let mut c = TcpConfig::new(id, addrs.clone(), 77, key.clone());
                c.timeout = Duration::from_secs(5);
                tweak(&mut c);
                s.spawn(move || TcpNetwork::connect_with(&c, l))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Endpoints linger at drop until their peers close too (so no party loses data to a
/// reset), so a session's endpoints are dropped concurrently, as separate parties would.
fn drop_all(eps: Vec<TcpEndpoint>) {
    std::thread::scope(|s| {
        for e in eps {
            s.spawn(move || drop(e));
        }
    });
}

fn frame_msg(r: &mpc_pipe::Result<TcpEndpoint>) -> String {
    match r {
        Err(Error::Frame(m)) => m.clone(),
        Err(e) => panic!("expected a frame error, got {e}"),
        Ok(_) => panic!("expected a frame error, got a connection"),
    }
}

#[test]
fn selftest_agrees_in_memory_and_over_tcp_for_2_and_3_parties() {
    for n in [2, 3] {
        let job = build(&JobSpec::new("selftest", n, 3)).unwrap();
        let mem = run_local(&SessionConfig::new(n), &*job.program).unwrap();
        let (ls, addrs) = listeners(n);
        let key = SessionKey::fresh();
        let tcp: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = ls
                .into_iter()
                .enumerate()
                .map(|(id, l)| {
                    let mut cfg = PartyConfig::new(id, addrs.clone(), 0xabc, key.clone());
                    cfg.timeout = Duration::from_secs(20);
                    let job = &job;
                    s.spawn(move || run_party_on(&cfg, job, l))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        // Error bound: inputs are multiples of 1/8 (exact in fixed point); x*x is truncated
        // once (<= 1 ULP), the matmul sums 4 such terms times |w| <= 0.875 (<= 3.5 ULP) and
        // truncates once more (<= 1 ULP): 4.5 ULP, rounded up to 5.
        let bound = 5.0 * ULP;
        for (m, t) in mem.iter().zip(&tcp) {
            assert_eq!(m.value.shape(), job.reference.shape());
            assert!(m.value.max_abs_diff(&job.reference) <= bound);
            assert!(t.value.max_abs_diff(&job.reference) <= bound, "n={n}");
            // Same program, same traffic: per-peer bytes, messages and rounds are equal.
            let strip = |s: &mpc_pipe::comm::CommStats| {
                (
                    s.rounds,
                    s.per_peer
                        .iter()
                        .map(|p| (p.bytes_sent, p.bytes_recv, p.msgs_sent, p.msgs_recv))
                        .collect::<Vec<_>>(),
                )
            };
            assert_eq!(strip(&m.stats), strip(&t.stats), "n={n}");
        }
        // Every party revealed the same value.
        for t in &tcp[1..] {
            assert_eq!(t.value.data(), tcp[0].value.data());
        }
    }
}

#[test]
fn tags_arrive_in_any_order_and_large_messages_span_frames() {
    let mut eps: Vec<TcpEndpoint> = connect(2, |_| {}).into_iter().map(|r| r.unwrap()).collect();
    let b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    let big: Vec<u64> = (0..1_500_000u64).map(|i| i * 3).collect(); // 12 MB: 3 frames
    a.post(1, Tag(3), big.clone().into()).unwrap();
    a.post(1, Tag(2), vec![].into()).unwrap();
    a.post(1, Tag(1), vec![5, 6].into()).unwrap();
    assert_eq!(b.wait(0, Tag(1), 2).unwrap(), vec![5, 6]);
    assert_eq!(b.wait(0, Tag(2), 0).unwrap(), Vec::<u64>::new());
    assert_eq!(b.wait(0, Tag(3), big.len()).unwrap(), big);
    let s = b.counters().snapshot();
    assert_eq!(s.per_peer[0].bytes_recv, 8 * (big.len() as u64 + 2));
    assert_eq!(s.per_peer[0].msgs_recv, 3);
    assert_eq!(
        a.counters().snapshot().per_peer[1].bytes_sent,
        8 * (big.len() as u64 + 2)
    );
    // A wrong expected length is refused.
    b.post(0, Tag(4), vec![1, 2, 3].into()).unwrap();
    assert!(matches!(a.wait(1, Tag(4), 2), Err(Error::Protocol(_))));
    let t = Instant::now();
    drop_all(vec![a, b]);
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// The accepting side of a refused connection keeps waiting for its real peer and, when
/// none comes, times out naming it and the refusal.
fn setup_timeout_msg(r: &mpc_pipe::Result<TcpEndpoint>) -> String {
    match r {
        Err(e @ Error::Timeout { peer: 1, op, .. }) if op.contains("refused meanwhile") => {
            e.to_string()
        }
        Err(e) => panic!("expected a setup timeout naming party 1, got {e}"),
        Ok(_) => panic!("expected a setup timeout, got a connection"),
    }
}

#[test]
fn wrong_key_is_refused_on_both_sides() {
    let r = connect(2, |c| {
        c.timeout = Duration::from_secs(1);
        if c.party == 1 {
            c.key = SessionKey::fresh();
        }
    });
    let m = frame_msg(&r[1]);
    assert!(m.contains("wrong session key"), "{m}");
    let m = setup_timeout_msg(&r[0]);
    assert!(m.contains("wrong session key"), "{m}");
}

#[test]
fn wrong_session_is_refused_on_both_sides() {
    let r = connect(2, |c| {
        c.timeout = Duration::from_secs(1);
        if c.party == 0 {
            c.session = 78;
        }
    });
    let m = frame_msg(&r[1]);
    assert!(m.contains("session id mismatch"), "{m}");
    let m = setup_timeout_msg(&r[0]);
    assert!(m.contains("session id mismatch"), "{m}");
}

#[test]
fn wrong_party_id_is_refused_on_both_sides() {
    // Party 1 of a 2-party session dials party 0, but a raw client claiming to be party 0
    // (not a higher id) is refused by party 0, and learns why.
    let (mut ls, addrs) = listeners(2);
    let key = SessionKey::fresh();
    let l0 = ls.remove(0);
    let mut c0 = TcpConfig::new(0, addrs.clone(), 5, key.clone());
    c0.timeout = Duration::from_secs(1);
    let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let client = handshake(&mut s, &hello(0, 2, 5), &key, "party 0");
    match client {
        Err(Error::Frame(m)) => {
            assert!(m.contains("refused our hello: unexpected party id"), "{m}")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let m = setup_timeout_msg(&h.join().unwrap());
    assert!(m.contains("unexpected party id"), "{m}");
}

/// The hello of a raw client claiming to be `party` of `parties`, dialling party 0.
fn hello(party: usize, parties: usize, session: u64) -> HelloParams {
    HelloParams {
        party,
        parties,
        session,
        version: PROTOCOL_VERSION,
        expect: Some(0),
        plaintext: false,
    }
}

/// True once the other end has closed `s` (a read gives end of stream or an error).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            // Frames the endpoint sends (its goodbye) before closing.
            Ok(_) => continue,
        }
    }
}

#[test]
fn strangers_do_not_stop_the_listener_and_the_real_peer_is_served() {
    let (mut ls, addrs) = listeners(2);
    let key = SessionKey::fresh();
    let l0 = ls.remove(0);
    let mut c0 = TcpConfig::new(0, addrs.clone(), 11, key.clone());
    c0.timeout = Duration::from_secs(20);
    let t = Instant::now();
    let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
    // A silent client, one sending 64 bytes of noise, and one with a wrong key, all before
    // the real peer.
    let silent = TcpStream::connect(addrs[0]).unwrap();
    let mut noise = TcpStream::connect(addrs[0]).unwrap();
    let junk: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    noise.write_all(&junk).unwrap();
    let mut wrong = TcpStream::connect(addrs[0]).unwrap();
    wrong
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = handshake(
        &mut wrong,
        &hello(1, 2, 11),
        &SessionKey::fresh(),
        "party 0",
    );
    assert!(
        matches!(r, Err(Error::Frame(ref m)) if m.contains("wrong session key")),
        "{r:?}"
    );
    // The real party 1.
    let mut c1 = TcpConfig::new(1, addrs.clone(), 11, key);
    c1.timeout = Duration::from_secs(20);
    let l1 = ls.remove(0);
    let e1 = TcpNetwork::connect_with(&c1, l1).unwrap();
    let e0 = h.join().unwrap().unwrap();
    // The silent stranger held up nobody: setup took far less than the 10 s a handshake
    // may take.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "setup took {:?}",
        t.elapsed()
    );
    e1.post(0, Tag(4), vec![42].into()).unwrap();
    assert_eq!(e0.wait(1, Tag(4), 1).unwrap(), vec![42]);
    assert!(closed_by_peer(&mut noise));
    drop(silent);
    drop_all(vec![e0, e1]);
}

/// A flood of strangers that connect and stay silent, four times the cap on pending
/// handshakes and still open when the real peer comes, neither ends the listener nor keeps
/// the real peer out: pending handshakes are capped (the oldest gives way to a newcomer,
/// and an evicted dialler dials again), so the session is set up long before the 10 s a
/// silent stranger may hold its handshake.
#[test]
fn a_flood_of_silent_connections_does_not_lock_the_real_peer_out() {
    use mpc_pipe::transport::tcp::MAX_PENDING_HANDSHAKES;
    let (mut ls, addrs) = listeners(2);
    let key = SessionKey::fresh();
    let l0 = ls.remove(0);
    let mut c0 = TcpConfig::new(0, addrs.clone(), 12, key.clone());
    c0.timeout = Duration::from_secs(30);
    let t = Instant::now();
    let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
    let flood: Vec<TcpStream> = (0..4 * MAX_PENDING_HANDSHAKES)
        .map(|_| TcpStream::connect(addrs[0]).unwrap())
        .collect();
    // Let the listener take them all before the real peer dials.
    std::thread::sleep(Duration::from_millis(300));
    let mut c1 = TcpConfig::new(1, addrs.clone(), 12, key);
    c1.timeout = Duration::from_secs(30);
    let e1 = TcpNetwork::connect_with(&c1, ls.remove(0)).unwrap();
    let e0 = h.join().unwrap().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "setup took {:?}",
        t.elapsed()
    );
    e1.post(0, Tag(5), vec![43].into()).unwrap();
    assert_eq!(e0.wait(1, Tag(5), 1).unwrap(), vec![43]);
    drop(flood);
    drop_all(vec![e0, e1]);
}

#[test]
fn a_second_connection_for_a_connected_party_is_refused_without_ending_the_session() {
    let (mut ls, addrs) = listeners(3);
    let key = SessionKey::fresh();
    let l0 = ls.remove(0);
    let mut c0 = TcpConfig::new(0, addrs.clone(), 12, key.clone());
    c0.timeout = Duration::from_secs(20);
    let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
    let shake = |party| {
        let mut s = TcpStream::connect(addrs[0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let keys = handshake(&mut s, &hello(party, 3, 12), &key, "party 0")
            .unwrap()
            .keys
            .unwrap();
        (s, keys)
    };
    let (mut first, keys) = shake(1);
    let (mut second, _) = shake(1);
    // Party 0 drops the second connection claiming party 1 and keeps waiting for party 2.
    assert!(closed_by_peer(&mut second));
    let (third, _) = shake(2);
    let e0 = h
        .join()
        .unwrap()
        .expect("the session survives the duplicate");
    // Party 0 talks to the first connection of party 1: a message it posts arrives there.
    e0.post(1, Tag(9), vec![5].into()).unwrap();
    let mut d = mpc_pipe::transport::frame::Decoder::new(1 << 10).sealed(Opener::new(&keys.recv));
    let mut buf = [0u8; 64];
    let got = loop {
        let k = first.read(&mut buf).unwrap();
        assert!(k > 0, "party 0 closed its connection to party 1");
        d.feed(&buf[..k]).unwrap();
        if let Some(ev) = d.next_event() {
            break ev;
        }
    };
    assert_eq!(got, mpc_pipe::transport::frame::Event::Msg(Tag(9), vec![5]));
    drop((first, third.shutdown(std::net::Shutdown::Both)));
    drop(e0);
}

#[test]
fn a_peer_holding_more_than_the_inbox_cap_is_dropped_naming_it() {
    let cap = 1 << 20;
    let mut eps: Vec<TcpEndpoint> = connect(2, |c| {
        c.timeout = Duration::from_secs(20);
        c.max_inbox_bytes = cap;
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    let half = (cap / 16) as usize; // words of half the cap
                                    // Up to the cap, messages posted ahead are held until asked for.
    b.post(0, Tag(50), vec![1; half].into()).unwrap();
    b.post(0, Tag(51), vec![2; half].into()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a.wait(1, Tag(51), half).unwrap()[0], 2);
    assert_eq!(a.wait(1, Tag(50), half).unwrap()[0], 1);
    // Past it (three halves that no one asks for), the peer is dropped.
    for t in 100..103 {
        b.post(0, Tag(t), vec![3; half].into()).unwrap();
    }
    match a.wait(1, Tag(1), 1) {
        Err(Error::Peer { peer: 1, msg, .. }) => {
            assert!(
                msg.contains("--inbox-cap-mib") && msg.contains("cap of 1 MiB"),
                "{msg}"
            )
        }
        other => panic!("expected a peer error, got {other:?}"),
    }
    drop_all(vec![a, b]);
}

#[test]
fn oversized_frame_closes_the_connection_with_a_clear_error() {
    let (mut ls, addrs) = listeners(2);
    let key = SessionKey::fresh();
    let l0 = ls.remove(0);
    let mut c0 = TcpConfig::new(0, addrs.clone(), 9, key.clone());
    c0.timeout = Duration::from_secs(10);
    let h = std::thread::spawn(move || {
        let ep = TcpNetwork::connect_with(&c0, l0)?;
        let t = Instant::now();
        let r = ep.wait(1, Tag(1), 1);
        Ok::<_, Error>((r, t.elapsed()))
    });
    // A peer with the right key that then announces a 64 MiB frame (cap: 4 MiB).
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    handshake(&mut s, &hello(1, 2, 9), &key, "party 0").unwrap();
    s.write_all(&header(KIND_DATA, FLAG_FIN, 64 << 20, Tag(1)))
        .unwrap();
    let (r, took) = h.join().unwrap().unwrap();
    match r {
        Err(Error::Peer { peer: 1, msg, .. }) => assert!(msg.contains("exceeds the cap"), "{msg}"),
        other => panic!("expected a peer error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "refusal took {took:?}");
    // The bad peer sees its connection closed.
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn silent_peer_times_out_naming_it() {
    let mut eps: Vec<TcpEndpoint> = connect(2, |c| c.timeout = Duration::from_millis(400))
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let _b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    let t = Instant::now();
    match a.wait(1, Tag(1), 1) {
        Err(Error::Timeout { peer: 1, op, .. }) => assert!(op.contains("receive"), "{op}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop_all(vec![a, _b]);
}

#[test]
fn a_waiting_party_is_told_from_a_stalled_one_and_the_stalled_one_is_named() {
    // The fault campaign's chain: party 2 stops (its I/O stalled, as by SIGSTOP); party 0
    // waits on party 2; party 1 waits on party 0 and times out first (party 0 computed
    // for a while before waiting). Party 0 is alive (its heartbeats keep coming), so
    // party 1's timeout must name party 2, not party 0; party 0's names party 2 too.
    let timeout = Duration::from_secs(1);
    let eps: Vec<TcpEndpoint> = connect(3, |c| c.timeout = timeout)
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    eps[2].debug_stall_io(Duration::from_secs(30));
    let t = Instant::now();
    let (e0, e1) = std::thread::scope(|s| {
        let p0 = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            eps[0].wait(2, Tag(7), 1)
        });
        let p1 = s.spawn(|| eps[1].wait(0, Tag(8), 1));
        (p0.join().unwrap(), p1.join().unwrap())
    });
    let took = t.elapsed();
    match e1 {
        Err(Error::Timeout { peer: 2, op, .. }) => {
            assert!(op.contains("party 0 ("), "{op}");
            assert!(op.contains("alive but waiting"), "{op}");
        }
        other => panic!("party 1: expected a timeout naming party 2, got {other:?}"),
    }
    match e0 {
        Err(Error::Timeout { peer: 2, op, .. }) => assert!(op.contains("silent for"), "{op}"),
        other => panic!("party 0: expected a timeout naming party 2, got {other:?}"),
    }
    // Party 0 timed out after its 0.5 s of work and the timeout (no grace: party 2 is
    // silent), at most 1.5 times the timeout.
    assert!(took < Duration::from_secs(4), "{took:?}");
    drop_all(eps);
}

#[test]
fn heartbeats_keep_an_idle_peer_alive_and_are_not_counted() {
    // Two parties idle for several heartbeat intervals: a wait then times out naming the
    // awaited peer as alive (heard within the bound), and the user-visible counters saw
    // no bytes and no messages.
    let eps: Vec<TcpEndpoint> = connect(2, |c| c.timeout = Duration::from_millis(400))
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    match eps[0].wait(1, Tag(1), 1) {
        Err(Error::Timeout { peer: 1, op, .. }) => assert!(op.contains("alive"), "{op}"),
        other => panic!("expected a timeout naming party 1 as alive, got {other:?}"),
    }
    for e in &eps {
        let c = e.counters().snapshot();
        assert_eq!((c.bytes_sent(), c.bytes_recv(), c.msgs_sent()), (0, 0, 0));
    }
    drop_all(eps);
}

#[test]
fn departed_peer_fails_waiters_at_once_but_its_last_messages_arrive() {
    let mut eps: Vec<TcpEndpoint> = connect(3, |c| c.timeout = Duration::from_secs(20))
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let c = eps.pop().unwrap();
    let b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    b.post(0, Tag(1), vec![42].into()).unwrap();
    // Clean goodbye; it lingers until its peers close too, so on another thread.
    let gone_b = std::thread::spawn(move || drop(b));
    assert_eq!(a.wait(1, Tag(1), 1).unwrap(), vec![42]);
    let t = Instant::now();
    match a.wait(1, Tag(2), 1) {
        Err(Error::Peer { peer: 1, msg, .. }) => assert!(msg.contains("finished"), "{msg}"),
        other => panic!("expected a peer error, got {other:?}"),
    }
    // A late post to a peer that finished cleanly is not an error (it drains it).
    assert!(a.post(1, Tag(5), vec![1].into()).is_ok());
    // An abort (as after a failure) is reported as a lost connection, also at once.
    c.abort();
    match a.wait(2, Tag(3), 1) {
        Err(Error::Peer { peer: 2, msg, .. }) => {
            assert!(msg.contains("without a goodbye"), "{msg}")
        }
        other => panic!("expected a peer error, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(a.post(2, Tag(4), vec![1].into()).is_err());
    drop(a);
    gone_b.join().unwrap();
}

#[test]
fn tcp_link_emulation_delays_delivery_by_the_latency() {
    let link = LinkProfile::custom(Some(200.0), 25.0).unwrap();
    let mut eps: Vec<TcpEndpoint> = connect(2, |c| c.link = link.clone())
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    let t = Instant::now();
    a.post(1, Tag(1), vec![7; 125_000].into()).unwrap(); // 1 MB: 40 ms at 200 Mbit/s
    assert_eq!(b.wait(0, Tag(1), 125_000).unwrap()[0], 7);
    let s = t.elapsed().as_secs_f64();
    // Formula: 0.040 + 0.025 s; never early, generously bounded above.
    assert!((0.064..0.4).contains(&s), "delivered after {s} s");
    drop_all(vec![a, b]);
}

/// Background traffic (`post_bulk`) over loopback TCP: with an emulated link it only takes
/// idle link time, so an ordinary message overtakes it; every message arrives intact; a
/// peer's departure is reported only after the bulk messages it sent before leaving.
mod bulk {
    use super::*;

    fn pair(link: &LinkProfile, max_frame: usize) -> (TcpEndpoint, TcpEndpoint) {
        let mut eps: Vec<TcpEndpoint> = connect(2, |c| {
            c.link = link.clone();
            c.max_frame = max_frame;
            c.timeout = Duration::from_secs(20);
        })
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let b = eps.pop().unwrap();
        (eps.pop().unwrap(), b)
    }

    /// Words of the message with tag `t` (so a receiver can check it against its tag).
    fn payload(t: u64, words: usize) -> Vec<u64> {
        (0..words as u64)
            .map(|i| (t << 32 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect()
    }

    #[test]
    fn an_ordinary_message_overtakes_a_bulk_message_on_an_emulated_link() {
        // 80 Mbit/s, 30 ms: the 2 MB bulk message takes 200 ms on the wire. Were it
        // emulated first-in first-out, the small message would arrive after 230 ms. Posted
        // at once, the small message also overtakes it on the real socket; posted 20 ms
        // later, when the bulk message is all there, only the receiver's emulation can let
        // it overtake.
        let link = LinkProfile::custom(Some(80.0), 30.0).unwrap();
        for delay in [0.0, 0.02] {
            let (a, b) = pair(&link, frame::MAX_FRAME_BYTES);
            let big = payload(1, 250_000);
            let t0 = Instant::now();
            a.post_bulk(1, Tag(1), big.clone().into()).unwrap();
            std::thread::sleep(Duration::from_secs_f64(delay));
            a.post(1, Tag(2), vec![1, 2].into()).unwrap();
            assert_eq!(b.wait(0, Tag(2), 2).unwrap(), vec![1, 2]);
            let t_small = t0.elapsed().as_secs_f64() - delay;
            // Latency + at most one 16 KiB fragment (1.6 ms) + a generous allowance.
            assert!(
                (0.0299..0.15).contains(&t_small),
                "small message {t_small} s after its post (delay {delay} s)"
            );
            assert_eq!(b.wait(0, Tag(1), big.len()).unwrap(), big);
            let t_bulk = t0.elapsed().as_secs_f64();
            assert!(
                (0.2299..1.0).contains(&t_bulk),
                "bulk message after {t_bulk} s"
            );
            let s = b.counters().snapshot().per_peer[0];
            assert_eq!((s.bytes_recv, s.msgs_recv), (8 * 250_002, 2));
            let s = a.counters().snapshot().per_peer[1];
            assert_eq!((s.bytes_sent, s.msgs_sent), (8 * 250_002, 2));
            drop_all(vec![a, b]);
        }
    }

    #[test]
    fn on_the_wire_an_ordinary_message_goes_before_the_rest_of_a_bulk_message() {
        // A raw peer that does not read at first: the sender's socket fills with the start
        // of an 8 MB bulk message. An ordinary message posted then must come next, after
        // at most what the kernel buffers hold, not after the whole bulk message. Seen
        // here: ~0.3 MB (the peer's receive buffer and the 128 KiB TCP_NOTSENT_LOWAT);
        // ~4.2 MB without that option (the autotuned send buffer), which the bound refuses.
        let (mut ls, addrs) = listeners(2);
        let key = SessionKey::fresh();
        let l0 = ls.remove(0);
        let mut c0 = TcpConfig::new(0, addrs.clone(), 11, key.clone());
        c0.timeout = Duration::from_secs(10);
        let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
        let mut s = TcpStream::connect(addrs[0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let p = HelloParams {
            party: 1,
            parties: 2,
            session: 11,
            version: PROTOCOL_VERSION,
            expect: Some(0),
            plaintext: false,
        };
        let keys = handshake(&mut s, &p, &key, "party 0")
            .unwrap()
            .keys
            .unwrap();
        let a = h.join().unwrap().unwrap();
        let big = payload(5, 1 << 20);
        a.post_bulk(1, Tag(5), big.clone().into()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        a.post(1, Tag(6), vec![6; 10].into()).unwrap();
        let gone_a = std::thread::spawn(move || drop(a));
        let mut d = frame::Decoder::new(frame::MAX_FRAME_BYTES)
            .sealed(mpc_pipe::transport::seal::Opener::new(&keys.recv));
        let (mut read, mut buf, mut got) = (0usize, vec![0u8; 1 << 16], vec![]);
        while got.len() < 3 {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "connection closed after {read} bytes, got {got:?}");
            d.feed(&buf[..k]).unwrap();
            read += k;
            while let Some(e) = d.next_event() {
                got.push(match e {
                    frame::Event::Msg(t, data) => {
                        assert_eq!(data, vec![6; 10]);
                        ("msg", t, read)
                    }
                    frame::Event::Bulk(t, data) => {
                        assert!(data == big);
                        ("bulk", t, read)
                    }
                    frame::Event::Bye => ("bye", Tag(0), read),
                    // Written when the connection was idle for a while (a loaded machine).
                    frame::Event::Heartbeat => continue,
                    other => panic!("unexpected {other:?}"),
                });
            }
        }
        assert_eq!(got[0].0, "msg", "{got:?}");
        assert_eq!((got[1].0, got[1].1), ("bulk", Tag(5)));
        assert_eq!(got[2].0, "bye");
        assert!(
            got[0].2 < 2 << 20,
            "the ordinary message came after {} bytes",
            got[0].2
        );
        drop(s);
        gone_a.join().unwrap();
    }

    #[test]
    fn interleaved_bulk_and_ordinary_messages_of_any_size_arrive_intact() {
        // Both directions at once, a small frame cap (so ordinary messages span frames
        // too), sizes from empty to many bulk fragments; unshaped and on a fast link.
        let links = [
            LinkProfile::unshaped(),
            LinkProfile::custom(Some(10_000.0), 0.1).unwrap(),
        ];
        for link in links {
            let (a, b) = pair(&link, 64 << 10);
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            // (tag, words, bulk), the same plan for both directions.
            let plan: Vec<(u64, usize, bool)> = (0..150u64)
                .map(|t| {
                    let words = match next() % 5 {
                        0 => 0,
                        1 => (next() % 64) as usize,
                        2 => 2048, // exactly one bulk fragment
                        _ => (next() % 100_000) as usize,
                    };
                    (t, words, next() % 2 == 0)
                })
                .collect();
            std::thread::scope(|s| {
                for (me, ep) in [(0, &a), (1, &b)] {
                    let plan = &plan;
                    s.spawn(move || {
                        for &(t, words, bulk) in plan {
                            let data = payload(t + 1000 * me as u64, words);
                            if bulk {
                                ep.post_bulk(1 - me, Tag(t), data.into()).unwrap();
                            } else {
                                ep.post(1 - me, Tag(t), data.into()).unwrap();
                            }
                        }
                        // Tags arrive in any order; wait for them backwards.
                        for &(t, words, _) in plan.iter().rev() {
                            let got = ep.wait(1 - me, Tag(t), words).unwrap();
                            let from = 1 - me as u64;
                            assert!(got == payload(t + 1000 * from, words), "tag {t}");
                        }
                    });
                }
            });
            let total: u64 = plan.iter().map(|&(_, w, _)| 8 * w as u64).sum();
            for ep in [&a, &b] {
                let s = ep.counters().snapshot();
                assert_eq!((s.bytes_sent(), s.bytes_recv()), (total, total));
            }
            drop_all(vec![a, b]);
        }
    }

    #[test]
    fn a_peer_that_posts_bulk_then_leaves_is_reported_gone_only_after_it_arrives() {
        for shaped in [true, false] {
            let link = if shaped {
                LinkProfile::custom(Some(80.0), 30.0).unwrap()
            } else {
                LinkProfile::unshaped()
            };
            let (a, b) = pair(&link, frame::MAX_FRAME_BYTES);
            let big = payload(3, 250_000);
            let t0 = Instant::now();
            a.post_bulk(1, Tag(3), big.clone().into()).unwrap();
            // A clean goodbye lingers until the peer closes too, so on another thread.
            let gone_a = std::thread::spawn(move || drop(a));
            // Waiting for a tag that never comes ends with the departure, which must not
            // come before the bulk message (200 ms on the emulated wire, plus 30 ms).
            match b.wait(0, Tag(4), 1) {
                Err(Error::Peer { peer: 0, msg, .. }) => assert!(msg.contains("finished"), "{msg}"),
                other => panic!("expected a peer error, got {other:?}"),
            }
            let t_gone = t0.elapsed().as_secs_f64();
            if shaped {
                assert!(
                    (0.2299..2.0).contains(&t_gone),
                    "departure after {t_gone} s"
                );
            }
            // The message it sent before leaving is still there, intact.
            assert_eq!(b.wait(0, Tag(3), big.len()).unwrap(), big);
            drop(b);
            gone_a.join().unwrap();
        }
    }
}

/// A raw client that completes the handshake as party 1 of 2 with party 0 (a
/// `TcpNetwork` on its own thread), and the sealer of its direction.
fn raw_party_1(
    session: u64,
) -> (
    TcpStream,
    Sealer,
    std::thread::JoinHandle<mpc_pipe::Result<TcpEndpoint>>,
) {
    let (mut ls, addrs) = listeners(2);
    let key = SessionKey::fresh();
    let l0 = ls.remove(0);
    let mut c0 = TcpConfig::new(0, addrs.clone(), session, key.clone());
    c0.timeout = Duration::from_secs(10);
    let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let keys = handshake(&mut s, &hello(1, 2, session), &key, "party 0")
        .unwrap()
        .keys
        .unwrap();
    (s, Sealer::new(&keys.send), h)
}

/// A data frame of `words` tagged `tag`, sealed as the next frame of `sealer`.
fn sealed_msg(sealer: &mut Sealer, tag: u64, words: &[u64]) -> Vec<u8> {
    let mut w = frame::encode_message(Tag(tag), words, 1 << 20);
    sealer.seal(&mut w, frame::HEADER_BYTES);
    w
}

#[test]
fn frames_are_sealed_and_a_flipped_bit_or_a_replayed_frame_is_refused() {
    // One good frame arrives; then a copy of it (a replay) is refused, naming the peer.
    let (mut s, mut sealer, h) = raw_party_1(21);
    let ep = h.join().unwrap().unwrap();
    let good = sealed_msg(&mut sealer, 3, &[0x5eed_5eed; 4]);
    s.write_all(&good).unwrap();
    assert_eq!(ep.wait(1, Tag(3), 4).unwrap(), vec![0x5eed_5eed; 4]);
    s.write_all(&good).unwrap();
    match ep.wait(1, Tag(4), 4) {
        Err(Error::Peer { peer: 1, msg, .. }) => assert!(msg.contains("authentication"), "{msg}"),
        other => panic!("expected a peer error, got {other:?}"),
    }
    drop(s);
    drop(ep);
    // Every bit of a sealed frame matters: flip one (header, payload or tag), 40 positions.
    for i in 0..40usize {
        let (mut s, mut sealer, h) = raw_party_1(22);
        let ep = h.join().unwrap().unwrap();
        let mut w = sealed_msg(&mut sealer, 3, &[7; 4]);
        let bit = (i * 37) % (8 * w.len());
        // Flipping the length or kind can make the header itself invalid: refused too.
        w[bit / 8] ^= 1 << (bit % 8);
        s.write_all(&w).unwrap();
        // A longer length waits for bytes that never come: the close ends it.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(
            matches!(ep.wait(1, Tag(3), 4), Err(Error::Peer { peer: 1, .. })),
            "bit {bit} flipped was accepted"
        );
        drop(s);
        drop(ep);
    }
}

#[test]
fn plaintext_channels_must_be_chosen_by_every_party() {
    let r = connect(2, |c| {
        c.timeout = Duration::from_secs(1);
        c.plaintext = c.party == 1;
    });
    let m = frame_msg(&r[1]);
    assert!(m.contains("--insecure-plaintext-channels"), "{m}");
    let m = setup_timeout_msg(&r[0]);
    assert!(m.contains("plaintext channels"), "{m}");
}

#[test]
fn selftest_matches_the_reference_over_plaintext_channels_too() {
    let eps: Vec<TcpEndpoint> = connect(2, |c| c.plaintext = true)
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    eps[1].post(0, Tag(2), vec![9, 8, 7].into()).unwrap();
    assert_eq!(eps[0].wait(1, Tag(2), 3).unwrap(), vec![9, 8, 7]);
    drop_all(eps);
}

/// Party 1 reaches party 0 through a proxy that flips one bit of the first frame after the
/// handshake (the issue-23 probe). Returns what party 0 got for party 1's message.
fn through_bit_flipping_proxy(plaintext: bool) -> mpc_pipe::Result<Vec<u64>> {
    let (mut ls, addrs) = listeners(2);
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut via_proxy = addrs.clone();
    via_proxy[0] = proxy.local_addr().unwrap();
    let key = SessionKey::fresh();
    let real0 = addrs[0];
    std::thread::spawn(move || {
        let (from1, _) = proxy.accept().unwrap();
        let to0 = TcpStream::connect(real0).unwrap();
        let (mut r0, mut w1) = (to0.try_clone().unwrap(), from1.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut r0, &mut w1));
        let (mut r1, mut w0) = (from1, to0);
        // The handshake is 97 bytes each way; byte 97 + 20 is in the first frame's payload.
        let flip_at = 97 + 20;
        let (mut seen, mut buf) = (0usize, [0u8; 4096]);
        loop {
            let k = match r1.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => k,
            };
            if (seen..seen + k).contains(&flip_at) {
                buf[flip_at - seen] ^= 0x10;
            }
            seen += k;
            if w0.write_all(&buf[..k]).is_err() {
                break;
            }
        }
        let _ = w0.shutdown(std::net::Shutdown::Write);
    });
    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    let cfg = |id: usize, addrs: Vec<SocketAddr>| {
        let mut c = TcpConfig::new(id, addrs, 31, key.clone());
        c.timeout = Duration::from_secs(5);
        c.plaintext = plaintext;
        c
    };
    let (c0, c1) = (cfg(0, addrs), cfg(1, via_proxy));
    let h = std::thread::spawn(move || TcpNetwork::connect_with(&c0, l0));
    let e1 = TcpNetwork::connect_with(&c1, l1).unwrap();
    let e0 = h.join().unwrap().unwrap();
    e1.post(0, Tag(1), vec![1000; 4].into()).unwrap();
    let got = e0.wait(1, Tag(1), 4).map(|p| p.to_vec());
    drop_all(vec![e0, e1]);
    got
}

#[test]
fn a_bit_flipped_on_the_wire_is_refused_naming_the_peer_where_plaintext_took_it() {
    // The old plaintext framing delivers the changed value: the attack the probe found.
    let got = through_bit_flipping_proxy(true).unwrap();
    assert_ne!(got, vec![1000; 4]);
    match through_bit_flipping_proxy(false) {
        Err(Error::Peer { peer: 1, msg, .. }) => assert!(msg.contains("authentication"), "{msg}"),
        other => panic!("expected a peer error naming party 1, got {other:?}"),
    }
}

/// A party 0 that accepts the connection but never answers the hello (stopped, hung):
/// party 1's setup error names it by id, not only by address.
#[test]
fn a_peer_silent_in_the_hello_is_named_by_its_party_id() {
    let (mut ls, addrs) = listeners(2);
    let mine = ls.pop().unwrap();
    let silent = ls.pop().unwrap();
    let holder = std::thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(s);
    });
    let mut c = TcpConfig::new(1, addrs.clone(), 77, SessionKey::fresh());
    c.timeout = Duration::from_millis(500);
    let r = TcpNetwork::connect_with(&c, mine);
    let m = frame_msg(&r);
    assert!(m.contains("party 0"), "{m}");
    holder.join().unwrap();
}
