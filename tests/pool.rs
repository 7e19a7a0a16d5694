//! Max/argmax along a dimension, max-pool, average-pool and global average-pool against
//! plaintext f64 references written here, for 2, 3 and 4 parties, plus the tournament's
//! round/traffic cost.
//!
//! Bounds: max, argmax and max-pool are exact (0 error): the tournament only compares and
//! selects with untruncated products by scale-1 bits, so the result is one of the quantized
//! inputs. Average pools have one truncation (2 ulp, see `TRUNC_ULPS`) after a product by
//! the encoded public 1/k².

mod common;
use common::*;
use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::{FixedPoint, PlainTensor};

const PARTIES: [usize; 3] = [2, 3, 4];

/// One truncation: 2-party local truncation rounds each share toward zero (< 1 ulp each);
/// the N-party dealer-assisted truncation is a floor minus at most 1 (as tests/arith.rs).
/// 2-party truncation fails with probability ~|v|/2^31 for a result v; results here are
/// below 10, i.e. under 1e-8 per element.
const TRUNC_ULPS: f64 = 2.0;

/// Integer-valued data in -3..=3 (many ties), with a few large reals mixed in.
fn tied_data(d: &mut Data, shape: &[usize], large: bool) -> PlainTensor {
    let len: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..len).map(|_| d.below(7) as f64 - 3.0).collect();
    if large {
        for _ in 0..len / 8 {
            let i = d.below(len);
            v[i] = d.uniform(-1e9, 1e9);
        }
    }
    PlainTensor::from_vec(shape, v)
}

/// Plaintext max (keepdim) and first-index one-hot argmax along `dim`.
fn max_argmax_ref(x: &PlainTensor, dim: usize) -> (PlainTensor, PlainTensor) {
    let s = x.shape();
    let outer: usize = s[..dim].iter().product();
    let k = s[dim];
    let inner: usize = s[dim + 1..].iter().product();
    let mut mshape = s.to_vec();
    mshape[dim] = 1;
    let mut m = vec![0.0; outer * inner];
    let mut hot = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * k + j) * inner + i;
            let mut best = 0;
            for j in 1..k {
                if x.data()[at(j)] > x.data()[at(best)] {
                    best = j;
                }
            }
            m[o * inner + i] = x.data()[at(best)];
            hot[at(best)] = 1.0;
        }
    }
    (
        PlainTensor::from_vec(&mshape, m),
        PlainTensor::from_vec(s, hot),
    )
}

/// Plaintext NCHW pooling: each window's entries (None = padding) reduced by `f`.
fn pool_ref(
    x: &PlainTensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    f: impl Fn(&[Option<f64>]) -> f64,
) -> PlainTensor {
    let s = x.shape();
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    let oh = (h + 2 * padding - kernel) / stride + 1;
    let ow = (w + 2 * padding - kernel) / stride + 1;
    let mut out = Vec::new();
    for p in 0..b * c {
        for i in 0..oh {
            for j in 0..ow {
                let mut win = Vec::new();
                for di in 0..kernel {
                    for dj in 0..kernel {
                        let y = (i * stride + di) as isize - padding as isize;
                        let z = (j * stride + dj) as isize - padding as isize;
                        win.push(
                            (y >= 0 && z >= 0 && (y as usize) < h && (z as usize) < w)
                                .then(|| x.data()[p * h * w + y as usize * w + z as usize]),
                        );
                    }
                }
                out.push(f(&win));
            }
        }
    }
    PlainTensor::from_vec(&[b, c, oh, ow], out)
}

#[test]
fn max_and_argmax_along_every_dim_are_exact_with_ties_and_large_values() {
    for n in PARTIES {
        let mut d = Data::new(200 + n as u64);
        for (shape, large) in [
            (vec![3, 5, 7], false),
            (vec![4, 1, 6], true),
            (vec![9, 2], true),
        ] {
            let x = tied_data(&mut d, &shape, large);
            let xq = quantize(&x);
            for dim in 0..shape.len() {
                let got = agree(n, |ctx| {
                    let xs = ctx.share_plain(0, Some(&x), x.shape())?;
                    let m = ctx.max_dim(&xs, dim)?;
                    let a = ctx.argmax_dim(&xs, dim)?;
                    let (m2, a2) = ctx.max_argmax_dim(&xs, dim)?;
                    Ok((
                        ctx.reveal_plain(&m)?,
                        ctx.reveal_plain(&ctx.bit_to_fixed(&a))?,
                        ctx.reveal_plain(&m2)?,
                        ctx.reveal_plain(&ctx.bit_to_fixed(&a2))?,
                    ))
                });
                let (wm, wa) = max_argmax_ref(&xq, dim);
                let what = format!("{n} parties, shape {shape:?}, dim {dim}");
                assert_close(&got.0, &wm, |_| 0.0, &format!("max_dim {what}"));
                assert_close(&got.1, &wa, |_| 0.0, &format!("argmax_dim {what}"));
                assert_close(&got.2, &wm, |_| 0.0, &format!("max_argmax max {what}"));
                assert_close(&got.3, &wa, |_| 0.0, &format!("max_argmax argmax {what}"));
            }
        }
    }
}

#[test]
fn argmax_breaks_ties_to_the_first_index_for_every_row_length() {
    // All-equal rows and rows whose maximum repeats, for k = 1..=9 (odd carries at
    // several levels): the one-hot must mark the first maximum, as torch.argmax.
    for n in [2, 3] {
        let mut d = Data::new(210 + n as u64);
        for k in 1..=9 {
            let rows = 6;
            let mut v: Vec<f64> = (0..rows * k).map(|_| d.below(3) as f64).collect();
            v[..k].iter_mut().for_each(|e| *e = -1.5);
            let x = PlainTensor::from_vec(&[rows, k], v);
            let got = agree(n, |ctx| {
                let xs = ctx.share_plain(1, Some(&x), x.shape())?;
                let (m, a) = ctx.max_argmax_dim(&xs, 1)?;
                Ok((
                    ctx.reveal_plain(&m)?,
                    ctx.reveal_plain(&ctx.bit_to_fixed(&a))?,
                ))
            });
            let (wm, wa) = max_argmax_ref(&x, 1);
            assert_close(&got.0, &wm, |_| 0.0, &format!("max k={k} {n} parties"));
            assert_close(&got.1, &wa, |_| 0.0, &format!("argmax k={k} {n} parties"));
        }
    }
}

#[test]
fn maxpool2d_matches_plaintext_exactly_with_padding_and_negatives() {
    for n in PARTIES {
        let mut d = Data::new(220 + n as u64);
        // Mostly negative data, so a padding value that won would show.
        let mut x = tied_data(&mut d, &[2, 3, 7, 6], true);
        x.data_mut().iter_mut().for_each(|v| {
            if *v > 0.0 && *v < 10.0 {
                *v = -*v - 0.5
            }
        });
        for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1), (3, 3, 0)] {
            let got = agree(n, |ctx| {
                let xs = ctx.share_plain(0, Some(&x), x.shape())?;
                ctx.reveal_plain(&ctx.maxpool2d(&xs, k, s, p)?)
            });
            let want = pool_ref(&quantize(&x), k, s, p, |w| {
                w.iter().flatten().fold(f64::NEG_INFINITY, |a, &b| a.max(b))
            });
            assert_close(
                &got,
                &want,
                |_| 0.0,
                &format!("maxpool k{k} s{s} p{p} {n} parties"),
            );
        }
    }
}

#[test]
fn avgpool2d_and_global_avgpool_match_plaintext() {
    let fp = FixedPoint::default();
    for n in PARTIES {
        let mut d = Data::new(230 + n as u64);
        let x = d.tensor(&[2, 3, 7, 6], -10.0, 10.0);
        let xq = quantize(&x);
        for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
            let got = agree(n, |ctx| {
                let xs = ctx.share_plain(n - 1, Some(&x), x.shape())?;
                ctx.reveal_plain(&ctx.avgpool2d(&xs, k, s, p)?)
            });
            let kk = (k * k) as f64;
            // The protocol multiplies the exact window sum by the encoded 1/k², then
            // truncates once: TRUNC_ULPS from that reference.
            let cq = fp.decode(fp.encode(1.0 / kk));
            let sum = |w: &[Option<f64>]| w.iter().flatten().sum::<f64>();
            let want = pool_ref(&xq, k, s, p, |w| sum(w) * cq);
            assert_close(
                &got,
                &want,
                |_| TRUNC_ULPS * ULP,
                &format!("avgpool k{k} s{s} p{p} {n}"),
            );
            // Against the true average (count_include_pad): the encoding of 1/k² errs by
            // less than 1 ulp, scaled by |sum|, plus the truncation.
            let exact = pool_ref(&xq, k, s, p, |w| sum(w) / kk);
            let sums = pool_ref(&xq, k, s, p, |w| sum(w).abs());
            assert_close(
                &got,
                &exact,
                |i| (sums.data()[i] + TRUNC_ULPS) * ULP,
                &format!("avgpool vs true average k{k} s{s} p{p} {n}"),
            );
        }
        let got = agree(n, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            ctx.reveal_plain(&ctx.global_avgpool(&xs)?)
        });
        // Global pool: the sum of each 7×6 plane times the encoded 1/42, then one truncation.
        let cq = fp.decode(fp.encode(1.0 / 42.0));
        let want = PlainTensor::from_vec(
            &[2, 3, 1, 1],
            xq.data()
                .chunks(42)
                .map(|p| p.iter().sum::<f64>() * cq)
                .collect(),
        );
        assert_close(
            &got,
            &want,
            |_| TRUNC_ULPS * ULP,
            &format!("global_avgpool {n}"),
        );
    }
}

#[test]
fn tournament_costs_one_ltz_and_one_product_round_per_level() {
    // Expected from the tournament's structure (pool.rs doc): per level with p pairs whose
    // one-hot blocks cover w entries, one ltz on p elements and one untruncated product
    // round on p + w factor pairs (2 words each). ltz per element (tests/compare.rs,
    // protocols.md §3.1): 2PC 8 rounds, 21 words; N = 3: 15 rounds, 41 words per peer
    // (two adder levels + B2A). Average pooling: no rounds in 2PC, one truncation round
    // (n words per peer) for N > 2.
    fn expected(k: usize, onehot: bool, ltz: (u64, u64)) -> (u64, u64) {
        let (mut blocks, mut rounds, mut words) = (vec![1usize; k], 0u64, 0u64);
        let mut first = true;
        while blocks.len() > 1 {
            let p = blocks.len() / 2;
            let w: usize = if onehot && !first {
                blocks[..2 * p].iter().sum()
            } else {
                0
            };
            rounds += ltz.0 + 1;
            words += ltz.1 * p as u64 + 2 * (p + w) as u64;
            blocks = blocks.chunks(2).map(|c| c.iter().sum()).collect();
            first = false;
        }
        (rounds, words)
    }
    let mut d = Data::new(240);
    let rows = 20u64;
    let x = d.tensor(&[rows as usize, 10], -5.0, 5.0);
    let img = d.tensor(&[1, 5, 8, 8], -5.0, 5.0);
    let windows = 5 * 4 * 4;
    for (n, ltz) in [(2usize, (8u64, 21u64)), (3, (15, 41))] {
        let outs = run(n, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            let is = ctx.share_plain(0, Some(&img), img.shape())?;
            let mut laps = Vec::new();
            let mut at = ctx.counters().snapshot();
            let mut lap = |ctx: &Ctx, _: Share| {
                let now = ctx.counters().snapshot();
                let words = (now.bytes_sent() - at.bytes_sent()) / 8 / (n as u64 - 1);
                laps.push((now.rounds - at.rounds, words));
                at = now;
            };
            lap(ctx, ctx.max_dim(&xs, 1)?);
            lap(ctx, ctx.argmax_dim(&xs, 1)?);
            lap(ctx, ctx.maxpool2d(&is, 2, 2, 0)?);
            lap(ctx, ctx.avgpool2d(&is, 2, 2, 0)?);
            Ok(laps)
        });
        let (mr, mw) = expected(10, false, ltz);
        let (ar, aw) = expected(10, true, ltz);
        let (pr, pw) = expected(4, false, ltz);
        if n == 2 {
            assert_eq!(
                (ar, aw),
                (36, 259),
                "hand count for k = 10 (10 → 5 → 3 → 2 → 1)"
            );
            assert_eq!((pr, pw), (18, 69), "hand count for a 2×2 window");
        }
        let avg = if n == 2 { (0, 0) } else { (1, windows) };
        let want = vec![(mr, mw * rows), (ar, aw * rows), (pr, pw * windows), avg];
        for o in &outs {
            assert_eq!(
                o.value, want,
                "(rounds, words per peer) of max, argmax, maxpool, avgpool; {n} parties"
            );
        }
        eprintln!(
            "{n} parties, (rounds, words per row/window per peer): max k=10 {:?}, argmax k=10 {:?}, maxpool 2x2 {:?}, avgpool 2x2 {:?}",
            (outs[0].value[0].0, outs[0].value[0].1 / rows),
            (outs[0].value[1].0, outs[0].value[1].1 / rows),
            (outs[0].value[2].0, outs[0].value[2].1 / windows),
            (outs[0].value[3].0, outs[0].value[3].1 / windows)
        );
    }
}
