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
        a.post(1, Tag(i), vec![i; words]).unwrap();
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
    a.post(1, Tag(9), vec![1, 2, 3]).unwrap();
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
