//! The link emulator: `delivery_time` against its formula (exact, on integers), the profile
//! file against the built-ins, and the in-memory emulated link against the formula with
//! generous timing bounds (precise timing is netcheck's job, not a unit test's).

use std::path::Path;
use std::time::{Duration, Instant};

use mpc_pipe::comm::{Comm, Tag};
use mpc_pipe::transport::emulator::{delivery_time, Link, LinkProfile};
use mpc_pipe::transport::MemoryNetwork;
use proptest::prelude::*;

fn link(bw: Option<f64>, lat: f64) -> LinkProfile {
    LinkProfile::custom(bw, lat).unwrap()
}

proptest! {
    #[test]
    fn delivery_time_is_max_of_now_and_free_plus_size_over_bandwidth_plus_latency(
        free in 0u64..1_000_000_000, t in 0u64..1_000_000_000, bytes in 0u64..100_000_000,
        bw_mbps in 1u32..100_000, lat_us in 0u32..100_000,
    ) {
        let p = link(Some(bw_mbps as f64), lat_us as f64 / 1000.0);
        let (new_free, deliver) = delivery_time(free, t, bytes, &p);
        // Reference in f64 nanoseconds: s*8 bits / (bw * 1e6 bit/s) seconds.
        let tx = bytes as f64 * 8.0 / (bw_mbps as f64 * 1e6) * 1e9;
        let start = t.max(free) as f64;
        prop_assert!((new_free as f64 - (start + tx)).abs() <= 1.0);
        prop_assert!((deliver as f64 - (start + tx + lat_us as f64 * 1e3)).abs() <= 1.0);
    }

    #[test]
    fn back_to_back_messages_are_serialised_on_the_link(
        sizes in proptest::collection::vec(0u64..10_000_000, 1..20),
    ) {
        // All handed over at t = 0: the k-th is delivered after the sum of the first k
        // transmit times plus one latency.
        let p = link(Some(1000.0), 2.0);
        let l = Link::new(p.clone());
        let mut total = 0u64;
        for s in sizes {
            total += s;
            let d = l.schedule(0, s);
            let expect = total as f64 * 8.0 / 1e9 * 1e9 + 2e6;
            prop_assert!((d as f64 - expect).abs() <= 1.0 * 20.0, "{d} vs {expect}");
        }
    }
}

#[test]
fn unshaped_link_delivers_at_hand_over() {
    let p = LinkProfile::unshaped();
    assert_eq!(delivery_time(50, 100, 1 << 30, &p), (100, 100));
    assert_eq!(delivery_time(500, 100, 1 << 30, &p), (500, 500));
}

#[test]
fn links_file_agrees_with_the_builtin_profiles() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-configs/links.toml");
    let all = LinkProfile::load_all(&path).unwrap();
    for b in LinkProfile::builtin() {
        let f = all
            .iter()
            .find(|p| p.name == b.name)
            .expect("profile in file");
        assert_eq!(*f, b);
    }
    assert_eq!(LinkProfile::load(&path, "wan").unwrap().latency_ms, 20.0);
}

#[test]
fn command_line_values_override_a_profile() {
    let p = LinkProfile::from_options(Some("wan"), None, Some(100.0), None).unwrap();
    assert_eq!((p.bandwidth_mbps, p.latency_ms), (Some(100.0), 20.0));
    let c = LinkProfile::from_options(None, None, None, Some(3.0)).unwrap();
    assert_eq!((c.bandwidth_mbps, c.latency_ms), (None, 3.0));
    assert!(LinkProfile::from_options(None, None, Some(-1.0), None).is_err());
}

#[test]
fn memory_link_holds_messages_until_their_delivery_time_without_blocking_post() {
    // 80 Mbit/s, 30 ms one way. A 1 MB message takes 100 ms to serialise, so three back
    // to back are delivered at about 130, 230 and 330 ms after hand-over.
    let p = link(Some(80.0), 30.0);
    let mut eps = MemoryNetwork::endpoints_with_links(2, Duration::from_secs(10), p.clone());
    let b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    let words = 125_000; // 1 MB
    let t0 = Instant::now();
    for i in 0..3 {
        a.post(1, Tag(i), vec![i; words].into()).unwrap();
    }
    let post_s = t0.elapsed().as_secs_f64();
    // post only queues: far below one message's 100 ms serialisation (generous bound).
    assert!(post_s < 0.05, "post took {post_s} s");
    for i in 0..3u64 {
        let got = b.wait(0, Tag(i), words).unwrap();
        assert_eq!(got[0], i);
        let t = t0.elapsed().as_secs_f64();
        let formula = (i + 1) as f64 * 0.1 + 0.03;
        // Never early; late by at most a generous scheduling allowance.
        assert!(
            t >= formula - 1e-3,
            "message {i} at {t} s, formula {formula} s"
        );
        assert!(
            t < formula + 0.25,
            "message {i} at {t} s, formula {formula} s"
        );
    }
}

#[test]
fn latency_applies_to_small_messages_and_departure_follows_in_flight_data() {
    let p = link(None, 40.0);
    let mut eps = MemoryNetwork::endpoints_with_links(2, Duration::from_secs(10), p);
    let b = eps.pop().unwrap();
    let a = eps.pop().unwrap();
    let t0 = Instant::now();
    a.post(1, Tag(9), vec![1, 2, 3].into()).unwrap();
    drop(a);
    // The message posted before leaving is still delivered, after the latency.
    assert_eq!(b.wait(0, Tag(9), 3).unwrap(), vec![1, 2, 3]);
    let t = t0.elapsed().as_secs_f64();
    assert!((0.039..0.3).contains(&t), "delivered after {t} s");
    // Then the departure is reported naming the peer.
    match b.wait(0, Tag(10), 1) {
        Err(mpc_pipe::Error::Peer { peer: 0, .. }) => {}
        other => panic!("expected a peer error, got {other:?}"),
    }
}

/// Bulk (background) traffic: the link time it gets, and what it costs ordinary messages.
mod bulk {
    use super::*;
    use mpc_pipe::transport::emulator::BULK_FRAGMENT_BYTES;

    /// Transmit time in ns at `bw` Mbit/s, computed here independently of the emulator.
    fn tx(bytes: u64, bw: f64) -> f64 {
        bytes as f64 * 8.0 / (bw * 1e6) * 1e9
    }

    #[test]
    fn alone_on_the_link_bulk_traffic_gets_the_full_bandwidth() {
        // 1000 Mbit/s, 1 ms: 10 MB take 80 ms whatever the pump's wake-up pattern.
        let p = link(Some(1000.0), 1.0);
        let l = Link::new(p);
        let left0 = 10_000_000u64;
        l.begin_bulk(0);
        let (mut left, mut now) = (left0, 0u64);
        let deliver = loop {
            let c = l.claim_bulk(0, now, left);
            if c.bytes == left {
                break c.deliver_ns;
            }
            left -= c.bytes;
            // Wake up late, by 0.37 ms, every time: the idle stretch is still claimed.
            now = l.free_ns() + 370_000;
        };
        let expect = tx(left0, 1000.0) + 1e6;
        assert!(
            (deliver as f64 - expect).abs() < 1e3,
            "{deliver} vs {expect}"
        );
    }

    #[test]
    fn an_ordinary_message_waits_for_at_most_one_bulk_fragment() {
        let p = link(Some(400.0), 20.0);
        let l = Link::new(p);
        l.begin_bulk(0);
        let c = l.claim_bulk(0, 0, 100_000_000);
        assert!(c.bytes < 100_000_000);
        // Handed over at once after the claim: it goes before the rest of the bulk message.
        let d = l.schedule(0, 1000);
        let frag = tx(BULK_FRAGMENT_BYTES, 400.0);
        let alone = tx(1000, 400.0) + 20e6;
        assert!(d as f64 <= alone + frag + 2.0, "{d} vs {alone} + {frag}");
        assert!(d as f64 >= alone - 1.0);
    }

    #[test]
    fn idle_stretches_between_ordinary_messages_are_credited_to_bulk() {
        // Bulk waits from t = 0; ordinary messages occupy [1, 2] ms and [3, 4] ms (1 Gbit/s:
        // 125 kB per ms). The pump sleeps through it and wakes at 4 ms: the stretches
        // [0, 1] and [2, 3] ms are credited, 250 kB, which completes a 200 kB message.
        let p = link(Some(1000.0), 0.5);
        let l = Link::new(p);
        l.begin_bulk(0);
        l.schedule(1_000_000, 125_000);
        l.schedule(3_000_000, 125_000);
        let c = l.claim_bulk(0, 4_000_000, 200_000);
        assert_eq!(c.bytes, 200_000);
        // Delivered no later than the wake-up plus the latency, never before its last byte
        // could have crossed (the second stretch ends at 3 ms).
        assert!(c.deliver_ns <= 4_000_000 + 500_000);
        assert!(c.deliver_ns as f64 >= tx(200_000, 1000.0) + 1e6 + 500_000.0 - 1.0);
    }

    proptest! {
        #[test]
        fn bulk_only_uses_idle_time_and_delays_ordinary_messages_by_at_most_a_fragment(
            msgs in proptest::collection::vec((0u64..50_000_000, 0u64..2_000_000), 0..30),
            wakes in proptest::collection::vec(0u64..60_000_000, 1..30),
            bulk in 1u64..20_000_000,
        ) {
            let bw = 800.0;
            let p = link(Some(bw), 5.0);
            let lat = 5e6;
            let l = Link::new(p);
            let frag = tx(BULK_FRAGMENT_BYTES, bw);
            let mut msgs = msgs;
            msgs.sort();
            let mut wakes = wakes;
            wakes.sort();
            // Events in time order; on a tie, the ordinary message first.
            let mut events: Vec<(u64, bool, u64)> = msgs.iter().map(|&(t, s)| (t, false, s)).collect();
            events.extend(wakes.iter().map(|&t| (t, true, 0)));
            events.sort();
            l.begin_bulk(0);
            let mut left = bulk;
            let mut done = None;
            let mut fifo_free = 0f64; // ordinary traffic alone, independently
            let mut busy: Vec<(f64, f64)> = Vec::new();
            for (t, is_wake, s) in events {
                if is_wake {
                    if done.is_none() {
                        let c = l.claim_bulk(0, t, left);
                        if c.bytes == left { done = Some(c.deliver_ns); } else { left -= c.bytes; }
                    }
                } else {
                    let d = l.schedule(t, s) as f64;
                    let end = d - lat;
                    let start = end - tx(s, bw);
                    let alone = (t as f64).max(fifo_free);
                    prop_assert!(start <= alone + frag + 2.0, "waited {} ns beyond FIFO", start - alone);
                    fifo_free = alone.max(start) + tx(s, bw);
                    busy.push((start, end));
                }
            }
            let deliver = match done {
                Some(d) => d,
                None => loop {
                    let now = l.free_ns();
                    let c = l.claim_bulk(0, now, left);
                    if c.bytes == left { break c.deliver_ns; }
                    left -= c.bytes;
                },
            } as f64;
            // Reference: the earliest time T at which the link's idle time since 0 (outside
            // the ordinary messages' intervals) adds up to the bulk message's transmit time.
            busy.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let need = tx(bulk, bw);
            let (mut idle, mut t, mut earliest) = (0f64, 0f64, None);
            for &(s, e) in &busy {
                if s > t {
                    if idle + (s - t) >= need { earliest = Some(t + (need - idle)); break; }
                    idle += s - t;
                }
                t = t.max(e);
            }
            let earliest = earliest.unwrap_or(t + (need - idle));
            prop_assert!(deliver >= earliest + lat - 2.0 * (busy.len() as f64 + 2.0),
                "bulk delivered at {deliver}, idle time allows {}", earliest + lat);
        }
    }

    #[test]
    fn on_a_memory_link_a_round_overtakes_a_bulk_message() {
        // 80 Mbit/s, 30 ms: a 2 MB bulk message takes 200 ms on the wire; a small message
        // posted just after it arrives after about the latency, not behind it.
        let p = link(Some(80.0), 30.0);
        let mut eps = MemoryNetwork::endpoints_with_links(2, Duration::from_secs(10), p);
        let b = eps.pop().unwrap();
        let a = eps.pop().unwrap();
        let t0 = Instant::now();
        a.post_bulk(1, Tag(1), vec![7; 250_000].into()).unwrap();
        a.post(1, Tag(2), vec![1, 2].into()).unwrap();
        assert_eq!(b.wait(0, Tag(2), 2).unwrap(), vec![1, 2]);
        let t_small = t0.elapsed().as_secs_f64();
        // Latency + at most one 16 KiB fragment (1.6 ms) + a generous scheduling allowance.
        assert!(
            (0.0299..0.15).contains(&t_small),
            "small message after {t_small} s"
        );
        let got = b.wait(0, Tag(1), 250_000).unwrap();
        assert!(got.iter().all(|&w| w == 7));
        let t_bulk = t0.elapsed().as_secs_f64();
        assert!(
            (0.2299..0.5).contains(&t_bulk),
            "bulk message after {t_bulk} s"
        );
        assert_eq!(b.counters().snapshot().bytes_recv(), 8 * 250_002);
    }
}
