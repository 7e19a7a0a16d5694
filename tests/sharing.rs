//! Secret sharing: shares of a constant are uniformly distributed and no party's share
//! equals the secret; zero sharings and reveal are consistent.

mod common;
use common::*;
use mpc_pipe::ring::RingTensor;

const SAMPLES: usize = 8192;

/// Per-bit frequency test of one party's shares of a constant. Each of the 64 bit
/// positions of a uniform word is 1 with probability 1/2, so over SAMPLES draws the count
/// is Binomial(SAMPLES, 1/2) with standard deviation sqrt(SAMPLES)/2 ≈ 45.3. We flag
/// |count - SAMPLES/2| > 5.3σ (two-sided tail 1.2e-7 per bit); over the 64 bits × up to
/// 4 parties × 4 configurations tested here the false-positive rate is below 1.2e-4.
fn assert_bits_uniform(shares: &[u64], who: &str) {
    let sigma = (SAMPLES as f64).sqrt() / 2.0;
    for bit in 0..64 {
        let ones = shares.iter().filter(|&&s| (s >> bit) & 1 == 1).count() as f64;
        let z = (ones - SAMPLES as f64 / 2.0) / sigma;
        assert!(
            z.abs() < 5.3,
            "{who}: bit {bit} is 1 in {ones} of {SAMPLES} shares (z = {z:.2})"
        );
    }
}

/// Chi-square test of the top 4 bits (16 cells, 15 degrees of freedom): the 1 - 1e-6
/// quantile of chi2(15) is about 57.4 (Wilson-Hilferty), so a uniform source fails with
/// probability about 1e-6.
fn assert_top_nibble_uniform(shares: &[u64], who: &str) {
    let mut cells = [0f64; 16];
    shares.iter().for_each(|s| cells[(s >> 60) as usize] += 1.0);
    let e = SAMPLES as f64 / 16.0;
    let chi2: f64 = cells.iter().map(|c| (c - e) * (c - e) / e).sum();
    assert!(chi2 < 57.4, "{who}: chi-square {chi2:.1} of the top nibble");
}

#[test]
fn shares_of_a_constant_are_uniform_and_never_equal_the_secret() {
    for (n, owner) in [(2, 0), (2, 1), (3, 2), (4, 1)] {
        let secret = 42u64 << 16;
        let outs = run(n, |ctx| {
            let v = RingTensor::filled(&[SAMPLES], secret);
            let s = ctx.share_input(owner, Some(&v), &[SAMPLES])?;
            // The sharing must still reconstruct the secret.
            let opened = ctx.reveal(&s)?;
            Ok((s.0, opened))
        });
        for (i, o) in outs.iter().enumerate() {
            let (share, opened) = &o.value;
            assert!(
                opened.data().iter().all(|&v| v == secret),
                "reveal of the sharing is not the secret"
            );
            assert!(
                share.data().iter().all(|&v| v != secret),
                "party {i}'s share equals the secret"
            );
            let who = format!("{n} parties, owner {owner}, party {i}");
            assert_bits_uniform(share.data(), &who);
            assert_top_nibble_uniform(share.data(), &who);
        }
    }
}

#[test]
fn reveal_to_one_party_only_gives_it_the_value() {
    for n in [2, 3, 4] {
        let mut d = Data::new(n as u64);
        let x = d.tensor(&[9], -100.0, 100.0);
        let outs = run(n, |ctx| {
            let s = ctx.share_plain(0, Some(&x), &[9])?;
            ctx.reveal_to(n - 1, &s)
        });
        for (i, o) in outs.iter().enumerate() {
            match (&o.value, i == n - 1) {
                (Some(v), true) => assert_close(
                    &mpc_pipe::ring::FixedPoint::default().decode_tensor(v),
                    &quantize(&x),
                    |_| 0.0,
                    "reveal_to",
                ),
                (None, false) => {}
                (v, _) => panic!("party {i} of {n} got {v:?}"),
            }
        }
    }
}

#[test]
fn reveal_larger_than_a_stream_piece_is_exact_and_one_round() {
    // ctx.rs streams an open in pieces of 2^23 words, two ahead at a time: 2.5 pieces
    // cover a first, a middle (sent once the first is combined) and a short last piece.
    let len = (5 << 23) / 2 + 3;
    let mut d = Data::new(99);
    let x = RingTensor::from_vec(&[len], (0..len).map(|_| d.next_u64()).collect());
    for n in [2, 3] {
        let outs = run(n, |ctx| {
            let s = ctx.share_input(n - 1, Some(&x), &[len])?;
            let b = ctx.share_input_bin(0, Some(&x), &[len])?;
            let before = ctx.counters().snapshot();
            let got = ctx.reveal(&s)?;
            let cost = ctx.counters().snapshot().since(&before);
            let got_bin = ctx.reveal_bin(&b)?;
            Ok((got == x, got_bin == x, cost.rounds, cost.bytes_sent()))
        });
        for (i, o) in outs.iter().enumerate() {
            let (add_ok, xor_ok, rounds, bytes) = o.value;
            assert!(
                add_ok,
                "party {i} of {n}: additive reveal differs from the input"
            );
            assert!(
                xor_ok,
                "party {i} of {n}: XOR reveal differs from the input"
            );
            assert_eq!(rounds, 1, "party {i} of {n}: a streamed open is one round");
            // Every word goes once to each peer, nothing more.
            assert_eq!(bytes, 8 * len as u64 * (n as u64 - 1), "party {i} of {n}");
        }
    }
}
