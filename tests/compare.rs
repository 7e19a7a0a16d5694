//! Conversions and comparisons against plaintext references: a2b, the binary adder, b2a,
//! ltz/msb, lt/gt/le/ge/eq (shares and public constants), sign, abs, relu, for 2, 3 and 4
//! parties (a2b also for 5, an odd carry at two tree levels), and their round/traffic costs
//! against protocols.md §3.1.
//!
//! Every check here is exact (0 error): conversions and comparisons work on ring integers,
//! and the products inside abs/relu multiply by a scale-1 value without truncation.

mod common;
use common::*;
use mpc_pipe::comm::CommStats;
use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::{FixedPoint, PlainTensor, RingTensor};
use mpc_pipe::Result;

const PARTIES: [usize; 3] = [2, 3, 4];

/// A plaintext relation between two reals.
type Relation<'a> = &'a dyn Fn(f64, f64) -> bool;

/// Reveal a share and read the ring values as signed integers.
fn reveal_int(ctx: &Ctx, x: &Share) -> Result<Vec<i64>> {
    Ok(ctx.reveal(x)?.data().iter().map(|&v| v as i64).collect())
}

/// Signed ring encodings of test values, to be shared raw.
fn encode(values: &[f64]) -> RingTensor {
    let fp = FixedPoint::default();
    RingTensor::from_vec(
        &[values.len()],
        values.iter().map(|&v| fp.encode(v)).collect(),
    )
}

/// Values around every interesting point for a sign test: zeros, ±1 ulp, small reals,
/// and reals near ±2^30 (ring values near ±2^46, the edge of the useful fixed-point range
/// for comparisons of shares).
fn sign_test_values(d: &mut Data) -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        ULP,
        -ULP,
        1.0,
        -1.0,
        (1u64 << 30) as f64 - ULP,
        -((1u64 << 30) as f64) + ULP,
        1e9,
        -1e9,
    ];
    for _ in 0..30 {
        v.push(d.uniform(-5.0, 5.0));
    }
    for _ in 0..10 {
        v.push(d.uniform(-1e9, 1e9));
    }
    v
}

#[test]
fn a2b_reveals_the_ring_value_for_2_to_5_parties() {
    for n in [2, 3, 4, 5] {
        let mut d = Data::new(100 + n as u64);
        let mut words: Vec<u64> = (0..37).map(|_| d.next_u64()).collect();
        words[..5].copy_from_slice(&[0, u64::MAX, 1 << 63, (1 << 63) - 1, 1]);
        let x = RingTensor::from_vec(&[37], words);
        let got = agree(n, |ctx| {
            let xs = ctx.share_input(n - 1, Some(&x), x.shape())?;
            ctx.reveal_bin(&ctx.a2b(&xs)?)
        });
        // Reference: the plaintext ring value itself (the XOR sharing opens to x exactly).
        assert_eq!(got, x, "a2b {n} parties");
    }
}

#[test]
fn binary_adder_matches_wrapping_add_with_long_carries() {
    for n in PARTIES {
        let mut d = Data::new(110 + n as u64);
        let mut xv: Vec<u64> = (0..25).map(|_| d.next_u64()).collect();
        let mut yv: Vec<u64> = (0..25).map(|_| d.next_u64()).collect();
        // Carry chains through all 64 bits, and the wrap past 2^64.
        xv[..4].copy_from_slice(&[u64::MAX, u64::MAX, 1 << 63, 0x7fff_ffff_ffff_ffff]);
        yv[..4].copy_from_slice(&[1, u64::MAX, 1 << 63, 1]);
        let x = RingTensor::from_vec(&[5, 5], xv);
        let y = RingTensor::from_vec(&[5, 5], yv);
        let got = agree(n, |ctx| {
            let xs = ctx.share_input_bin(0, Some(&x), x.shape())?;
            let ys = ctx.share_input_bin(n - 1, Some(&y), y.shape())?;
            ctx.reveal_bin(&ctx.add_bin(&xs, &ys)?)
        });
        assert_eq!(got, x.add(&y), "add_bin {n} parties");
    }
}

#[test]
fn and_broadcasts_x_over_rep_words_of_y_as_plaintext_and() {
    // rep 1 and 2 take the const kernels, 3 the general one; z is written over the
    // opened δ, so every word of the result is checked against the plaintext AND.
    for n in PARTIES {
        for rep in [1usize, 2, 3] {
            let mut d = Data::new(120 + 10 * n as u64 + rep as u64);
            let mut xv: Vec<u64> = (0..13).map(|_| d.next_u64()).collect();
            let mut yv: Vec<u64> = (0..13 * rep).map(|_| d.next_u64()).collect();
            xv[..3].copy_from_slice(&[u64::MAX, 0, 1 << 63]);
            yv[..3].copy_from_slice(&[u64::MAX, u64::MAX, 1 << 63]);
            let x = RingTensor::from_vec(&[13], xv);
            let y = RingTensor::from_vec(&[13, rep], yv);
            let got = agree(n, |ctx| {
                let xs = ctx.share_input_bin(0, Some(&x), x.shape())?;
                let ys = ctx.share_input_bin(n - 1, Some(&y), y.shape())?;
                ctx.reveal_bin(&ctx.and(&xs, &ys)?)
            });
            let want: Vec<u64> = (0..13 * rep)
                .map(|j| x.data()[j / rep] & y.data()[j])
                .collect();
            assert_eq!(got.shape(), y.shape(), "and shape, {n} parties, rep {rep}");
            assert_eq!(got.data(), &want[..], "and {n} parties, rep {rep}");
        }
    }
}

#[test]
fn a2b_keeps_the_shape_of_a_multi_axis_input() {
    for n in [2, 3, 5] {
        let mut d = Data::new(130 + n as u64);
        let x = RingTensor::from_vec(&[2, 3, 5], (0..30).map(|_| d.next_u64()).collect());
        let got = agree(n, |ctx| {
            let xs = ctx.share_input(0, Some(&x), x.shape())?;
            ctx.reveal_bin(&ctx.a2b(&xs)?)
        });
        assert_eq!(got, x, "a2b of shape [2, 3, 5], {n} parties");
    }
}

#[test]
fn b2a_of_bits_and_of_k_bit_words_matches_plaintext() {
    for n in PARTIES {
        let mut d = Data::new(120 + n as u64);
        let x = RingTensor::from_vec(&[29], (0..29).map(|_| d.next_u64()).collect());
        let got = agree(n, |ctx| {
            let xs = ctx.share_input_bin(1, Some(&x), x.shape())?;
            let bit = ctx.b2a_bit(&xs)?;
            let low16 = ctx.b2a(&xs, 16)?;
            let full = ctx.b2a(&xs, 64)?;
            Ok((ctx.reveal(&bit)?, ctx.reveal(&low16)?, ctx.reveal(&full)?))
        });
        assert_eq!(got.0, x.map(|v| v & 1), "b2a_bit {n} parties");
        assert_eq!(got.1, x.map(|v| v & 0xffff), "b2a 16 bits {n} parties");
        assert_eq!(got.2, x, "b2a 64 bits {n} parties");
    }
}

#[test]
fn ltz_and_msb_are_exact_up_to_2_pow_62_ring_units() {
    for n in PARTIES {
        let mut d = Data::new(130 + n as u64);
        let vals = sign_test_values(&mut d);
        let mut ring = encode(&vals).into_data();
        // Raw ring values at the edge of the exact range |x| < 2^62.
        ring.extend([(1i64 << 62) - 1, -(1i64 << 62) + 1, 1 << 61, -(1 << 61)].map(|v| v as u64));
        let x = RingTensor::from_vec(&[ring.len()], ring);
        let got = agree(n, |ctx| {
            let xs = ctx.share_input(0, Some(&x), x.shape())?;
            let a = ctx.ltz(&xs)?;
            let b = ctx.msb(&xs)?;
            Ok((reveal_int(ctx, &a)?, reveal_int(ctx, &b)?))
        });
        let want: Vec<i64> = x
            .data()
            .iter()
            .map(|&v| i64::from((v as i64) < 0))
            .collect();
        assert_eq!(got.0, want, "ltz {n} parties");
        assert_eq!(got.1, want, "msb {n} parties");
    }
}

#[test]
fn comparisons_between_shares_and_constants_are_exact_with_ties() {
    for n in PARTIES {
        let mut d = Data::new(140 + n as u64);
        let len = 48;
        // Integer-valued data with many repeats (ties), plus large and one-ulp gaps.
        let mut xv: Vec<f64> = (0..len).map(|_| d.below(7) as f64 - 3.0).collect();
        let mut yv: Vec<f64> = (0..len).map(|_| d.below(7) as f64 - 3.0).collect();
        let edge = [
            (1e9, -1e9),
            (-1e9, 1e9),
            (1e9, 1e9),
            (2.5, 2.5 + ULP),
            (2.5 + ULP, 2.5),
            (-7.25, -7.25),
            (0.0, -0.0),
            (-1.0, -1.0 + ULP),
        ];
        for (i, &(a, b)) in edge.iter().enumerate() {
            xv[i] = a;
            yv[i] = b;
        }
        let x = PlainTensor::from_vec(&[len], xv);
        let y = PlainTensor::from_vec(&[len], yv);
        let (xq, yq) = (quantize(&x), quantize(&y));
        let consts = [1.0, -2.5, 0.0];
        let got = agree(n, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            let ys = ctx.share_plain(n - 1, Some(&y), y.shape())?;
            let mut out = vec![
                ctx.lt(&xs, &ys)?,
                ctx.gt(&xs, &ys)?,
                ctx.le(&xs, &ys)?,
                ctx.ge(&xs, &ys)?,
                ctx.eq(&xs, &ys)?,
            ];
            for c in consts {
                out.push(ctx.lt_const(&xs, c)?);
                out.push(ctx.gt_const(&xs, c)?);
                out.push(ctx.le_const(&xs, c)?);
                out.push(ctx.ge_const(&xs, c)?);
                out.push(ctx.eq_const(&xs, c)?);
            }
            out.iter()
                .map(|s| reveal_int(ctx, s))
                .collect::<Result<Vec<_>>>()
        });
        let rel = |f: Relation, a: &PlainTensor, b: &dyn Fn(usize) -> f64| {
            (0..len)
                .map(|i| i64::from(f(a.data()[i], b(i))))
                .collect::<Vec<_>>()
        };
        let ops: [(&str, Relation); 5] = [
            ("lt", &|a, b| a < b),
            ("gt", &|a, b| a > b),
            ("le", &|a, b| a <= b),
            ("ge", &|a, b| a >= b),
            ("eq", &|a, b| a == b),
        ];
        for (j, (name, f)) in ops.iter().enumerate() {
            let want = rel(*f, &xq, &|i| yq.data()[i]);
            assert_eq!(got[j], want, "{name} {n} parties");
            for (ci, c) in consts.iter().enumerate() {
                let cq = FixedPoint::default().decode(FixedPoint::default().encode(*c));
                let want = rel(*f, &xq, &|_| cq);
                assert_eq!(got[5 + 5 * ci + j], want, "{name}_const({c}) {n} parties");
            }
        }
    }
}

#[test]
fn sign_abs_and_relu_are_exact() {
    for n in PARTIES {
        let mut d = Data::new(150 + n as u64);
        let vals = sign_test_values(&mut d);
        let x = PlainTensor::from_vec(&[vals.len()], vals);
        let xq = quantize(&x);
        let got = agree(n, |ctx| {
            let xs = ctx.share_plain(1, Some(&x), x.shape())?;
            let sign = ctx.sign(&xs)?;
            let abs = ctx.abs(&xs)?;
            let relu = ctx.relu(&xs)?;
            let (relu2, mask) = ctx.relu_with_mask(&xs)?;
            Ok((
                reveal_int(ctx, &sign)?,
                ctx.reveal_plain(&abs)?,
                ctx.reveal_plain(&relu)?,
                ctx.reveal_plain(&relu2)?,
                ctx.reveal_plain(&ctx.bit_to_fixed(&mask))?,
            ))
        });
        let sign: Vec<i64> = xq
            .data()
            .iter()
            .map(|&v| if v < 0.0 { -1 } else { 1 })
            .collect();
        assert_eq!(got.0, sign, "sign {n} parties");
        // abs and relu multiply by a scale-1 value without truncation: exact (bound 0).
        assert_close(&got.1, &xq.map(f64::abs), |_| 0.0, &format!("abs {n}"));
        assert_close(
            &got.2,
            &xq.map(|v| v.max(0.0)),
            |_| 0.0,
            &format!("relu {n}"),
        );
        assert_close(&got.3, &got.2, |_| 0.0, &format!("relu_with_mask {n}"));
        let mask = xq.map(|v| if v >= 0.0 { 1.0 } else { 0.0 });
        assert_close(&got.4, &mask, |_| 0.0, &format!("relu mask {n}"));
    }
}

/// Rounds and words per peer of one protocol, from the party counters.
fn cost(stats: &CommStats, parties: usize) -> (u64, u64) {
    let bytes = stats.bytes_sent();
    assert_eq!(bytes % (8 * (parties as u64 - 1)), 0);
    (stats.rounds, bytes / 8 / (parties as u64 - 1))
}

#[test]
fn counters_match_the_cost_model_for_a2b_ltz_relu_and_eq() {
    let len = 50u64;
    for n in [2usize, 3, 4] {
        let mut d = Data::new(160 + n as u64);
        let x = d.tensor(&[len as usize], -10.0, 10.0);
        let outs = run(n, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            let ys = ctx.share_plain(1, Some(&x), x.shape())?;
            let mut costs = Vec::new();
            let mut at = ctx.counters().snapshot();
            let mut lap = |ctx: &Ctx| {
                let now = ctx.counters().snapshot();
                costs.push(now.since(&at));
                at = now;
            };
            ctx.a2b(&xs)?;
            lap(ctx);
            ctx.ltz(&xs)?;
            lap(ctx);
            ctx.relu(&xs)?;
            lap(ctx);
            ctx.eq(&xs, &ys)?;
            lap(ctx);
            let v = ctx.reveal_plain(&xs)?;
            lap(ctx);
            Ok((costs, v))
        });
        // Expected (protocols.md §3.1, §3.6-§3.9): an adder is 7 rounds and 20 words per
        // element per peer; the A2B tree has L = ⌈log2 N⌉ levels, and a level with p pairs
        // runs one adder on p·n elements; ltz adds the 1-round, n-word B2A; relu one
        // untruncated Beaver product (1 round, 2n words). eq: the 2PC circuit is 6 AND
        // rounds of 2n words plus the B2A (7 rounds, 13n); N > 2 one ltz on the stacked
        // (d, −d), i.e. 2n elements. reveal: 1 round, n words.
        let (levels, adder_elems) = match n {
            2 => (1, 1),
            3 => (2, 2), // 3 → 2 (1 pair + carried) → 1
            4 => (2, 3), // 4 → 2 (2 pairs) → 1
            _ => unreachable!(),
        };
        let a2b = (7 * levels, 20 * adder_elems * len);
        let ltz = (a2b.0 + 1, a2b.1 + len);
        let relu = (ltz.0 + 1, ltz.1 + 2 * len);
        let eq = if n == 2 {
            (7, 13 * len)
        } else {
            (ltz.0, 2 * ltz.1)
        };
        let want = [a2b, ltz, relu, eq, (1, len)];
        if n == 2 {
            // The table's 2PC figures, literally.
            assert_eq!(want[1], (8, 21 * len));
            assert_eq!(want[2], (9, 23 * len));
        }
        for o in &outs {
            let got: Vec<(u64, u64)> = o.value.0.iter().map(|s| cost(s, n)).collect();
            assert_eq!(
                got, want,
                "(rounds, words per peer) of a2b, ltz, relu, eq, reveal; {n} parties"
            );
            assert_eq!(
                o.value.0.iter().map(|s| s.rounds).sum::<u64>(),
                o.stats.rounds
            );
        }
        assert_close(&outs[0].value.1, &quantize(&x), |_| 0.0, "reveal");
        let measured: Vec<(u64, u64)> = outs[0].value.0.iter().map(|s| cost(s, n)).collect();
        let per_elem: Vec<(u64, f64)> = measured
            .iter()
            .map(|&(r, w)| (r, w as f64 / len as f64))
            .collect();
        eprintln!(
            "{n} parties, (rounds, words per element per peer): a2b {:?}, ltz {:?}, relu {:?}, eq {:?}",
            per_elem[0], per_elem[1], per_elem[2], per_elem[3]
        );
    }
}
