//! The `--protocols fss` piecewise-constant gate and the approximations built on it
//! (proto::spline): the gate exact against a plaintext piecewise-constant function on
//! ring edges, breakpoints and their neighbours; reciprocal, inv_sqrt and sqrt against f64
//! within bounds derived here from the approximation and the truncations; their online
//! costs; the plan's one key request per call; keys through material files (a truncated
//! file and one made for another plan refused). Models under fss with softmax and
//! layernorm: tests/schemes.rs (bert-small against plaintext and the crypten suite) and
//! tests/bit_identical.rs (every scheme's shares the same).

mod common;
use common::*;

use std::path::PathBuf;

use mpc_pipe::fss::{dcf, mic_layout, Keys};
use mpc_pipe::offline::file::{self, Expect, MaterialKey};
use mpc_pipe::offline::{deal, deal_with, dealer_seeds, Plan, Request};
use mpc_pipe::proto::spline::{
    exp_lower_limit, exp_pieces, inv_sqrt_pieces, reciprocal_pieces, Pieces, EXP_POLY,
    EXP_POLY_ERR, INV_SQRT_HI_LOG2, INV_SQRT_LO_LOG2, Q_EXTRA_BITS, RECIPROCAL_HI_LOG2,
    RECIPROCAL_LO_LOG2,
};
use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::{FixedPoint, PlainTensor, Protocols, RingTensor, Trunc};
use mpc_pipe::runtime::{record_plan, run_local, run_online, SessionConfig};
use mpc_pipe::Error;

fn fss() -> SessionConfig {
    SessionConfig {
        fixed: FixedPoint::default().with_protocols(Protocols::Fss),
        ..SessionConfig::new(2)
    }
}

/// The plaintext piecewise-constant function: function k's value at x is the constant of
/// the piece x lies in, i.e. values[k][number of breakpoints ≤ x] (signed comparison).
fn plain_pwc(p: &Pieces, k: usize, x: u64) -> u64 {
    let i = p
        .breaks
        .iter()
        .filter(|&&b| (b as i64) <= (x as i64))
        .count();
    p.values[k][i]
}

/// Every edge of the ring's signed order, each breakpoint and its ±1 and ±2 neighbours,
/// uniform words and small fixed-point values.
fn probes(d: &mut Data, p: &Pieces, random: usize) -> Vec<u64> {
    let mut v: Vec<u64> = vec![
        0,
        1,
        u64::MAX,
        1 << 63,
        (1 << 63) + 1,
        (1 << 63) - 1,
        1 << 62,
        (1u64 << 62).wrapping_neg(),
    ];
    for &b in &p.breaks {
        for o in [-2i64, -1, 0, 1, 2] {
            v.push(b.wrapping_add(o as u64));
        }
    }
    let fp = FixedPoint::default();
    for _ in 0..random {
        v.push(d.next_u64());
        v.push(fp.encode(d.uniform(-8.0, 8.0)));
    }
    v
}

/// The gate gives exactly the plaintext piecewise-constant functions (two over the same
/// breakpoints, random 64-bit constants) at every probe, for 1, 7 and 300 breakpoints
/// that include the ring's extremes (i64::MIN: [x < b] is never true; i64::MAX) and
/// adjacent values.
#[test]
fn spline_gate_is_exact_at_breakpoints_their_neighbours_and_ring_edges() {
    let mut d = Data::new(31);
    for m in [1usize, 7, 300] {
        let mut breaks: Vec<i64> = vec![i64::MIN, i64::MAX, 0, -1, 1, 5, 6];
        while breaks.len() < m + 7 {
            breaks.push(d.next_u64() as i64 >> d.below(60));
        }
        breaks.sort();
        breaks.dedup();
        breaks.truncate(m.max(1));
        if m >= 7 {
            breaks.push(i64::MAX);
            breaks.sort();
            breaks.dedup();
        }
        let p = Pieces {
            breaks: breaks.iter().map(|&b| b as u64).collect(),
            values: (0..2)
                .map(|_| (0..=breaks.len()).map(|_| d.next_u64()).collect())
                .collect(),
        };
        let words = probes(&mut d, &p, 200);
        let x = RingTensor::from_vec(&[words.len()], words.clone());
        let got = agree_with(&fss(), |ctx| {
            let xs = ctx.share_input(1, Some(&x), x.shape())?;
            let out = ctx.piecewise_constant(&xs, &p)?;
            out.iter()
                .map(|s| ctx.reveal(s))
                .collect::<Result<Vec<_>, _>>()
        });
        for (k, g) in got.iter().enumerate() {
            for (i, &w) in words.iter().enumerate() {
                assert_eq!(
                    g.data()[i],
                    plain_pwc(&p, k, w),
                    "m={} function {k} at {:#x}",
                    p.breaks.len(),
                    w
                );
            }
        }
    }
}

/// Bad piece tables are refused before any material is asked for.
#[test]
fn spline_gate_refuses_unordered_breakpoints_and_short_value_lists() {
    for p in [
        Pieces {
            breaks: vec![5, 3],
            values: vec![vec![0; 3]],
        },
        Pieces {
            breaks: vec![3, 5],
            values: vec![vec![0; 2]],
        },
    ] {
        let e = run_local(&fss(), &|ctx: &Ctx| {
            let x = ctx.share_input(0, Some(&RingTensor::zeros(&[4])), &[4])?;
            ctx.piecewise_constant(&x, &p).map(drop)
        })
        .map(drop)
        .unwrap_err()
        .to_string();
        assert!(e.contains("breakpoints"), "{e}");
    }
}

fn fp() -> FixedPoint {
    FixedPoint::default()
}

/// Inputs for the approximations: log-uniform over [2^lo, 2^hi), every breakpoint and
/// its neighbours ±1 ulp, the domain's ends.
fn domain_inputs(d: &mut Data, p: &Pieces, lo: i32, hi: i32, signed: bool) -> Vec<f64> {
    let u = ULP;
    let mut v = Vec::new();
    for _ in 0..400 {
        v.push(2f64.powf(d.uniform(lo as f64, hi as f64)));
    }
    for &b in &p.breaks {
        let b = (b as i64) as f64 * u;
        if b > 0.0 {
            for o in [-1.0, 0.0, 1.0] {
                v.push(b + o * u);
            }
        }
    }
    v.push(2f64.powi(lo));
    v.push(2f64.powi(hi) - u);
    let v: Vec<f64> = v
        .into_iter()
        .map(|x| fp().decode(fp().encode(x)))
        .filter(|&x| x >= 2f64.powi(lo) && x < 2f64.powi(hi))
        .collect();
    if signed {
        v.iter().flat_map(|&x| [x, -x]).collect()
    } else {
        v
    }
}

/// The op on `xs` under fss with the default (local) truncation and with the
/// dealer-assisted one (`--trunc dealer`: floor or floor + 1, also < 2u per truncation, so
/// the same bounds hold for both).
fn run_approx(
    xs: &[f64],
    op: impl Fn(&Ctx, &Share) -> mpc_pipe::Result<Share> + Sync,
) -> [(&'static str, Vec<f64>); 2] {
    let x = PlainTensor::from_vec(&[xs.len()], xs.to_vec());
    let run = |cfg: &SessionConfig| {
        agree_with(cfg, |ctx| {
            let s = ctx.share_plain(0, Some(&x), x.shape())?;
            ctx.reveal_plain(&op(ctx, &s)?)
        })
        .data()
        .to_vec()
    };
    let mut dealer = fss();
    dealer.fixed = dealer.fixed.with_trunc(Some(Trunc::Dealer));
    [("local", run(&fss())), ("dealer", run(&dealer))]
}

/// reciprocal (both signs) and reciprocal_pos against 1/x on their domain. With y0 the
/// piece's constant (read from the plaintext table) and e = 1 − x·y0 exact, the
/// approximation y0·(1 + e + e² + e³) = (1 − e⁴)/x errs by exactly e⁴/|x|. The five
/// truncations (x·y0, e², y0·e, y0e·e, y0e·e², each < 2u) move e by δ1, which moves y by
/// at most |y0|·S'·2u, S' = 1 + 2ε + 3ε² (ε = |e| + 2u), and the result by at most
/// 2u·(1 + |e| + e²) + 2u + 2u + |y0|·|e|·2u from the others:
/// |y − 1/x| ≤ e⁴/|x| + (2·S'·|y0| + 2·|e|·|y0| + 7)u.
/// Also checked, as the module doc states: |e| ≤ 0.0436 + |x|·u/2 (the piece's
/// (ρ − 1)/(ρ + 1) = 0.0433 with breakpoints rounded up to the ulp, plus the rounding of
/// y0 by u/2 times x: y0 has few bits near 2^14).
#[test]
fn fss_reciprocal_is_within_its_derived_bound_on_the_domain() {
    let u = ULP;
    for signed in [false, true] {
        let p = reciprocal_pieces(16, signed);
        let xs = domain_inputs(
            &mut Data::new(5),
            &p,
            RECIPROCAL_LO_LOG2,
            RECIPROCAL_HI_LOG2,
            signed,
        );
        let runs = run_approx(&xs, |c, s| {
            if signed {
                c.reciprocal(s)
            } else {
                c.reciprocal_pos(s)
            }
        });
        let mut worst: f64 = 0.0;
        for (trunc, got) in &runs {
            for (&x, &y) in xs.iter().zip(got) {
                let y0 = fp().decode(plain_pwc(&p, 0, fp().encode(x)));
                let e = 1.0 - x * y0;
                assert!(e.abs() <= 0.0436 + x.abs() * u / 2.0, "x={x}: |e| = {e}");
                let eps = e.abs() + 2.0 * u;
                let ds = 1.0 + 2.0 * eps + 3.0 * eps * eps;
                let bound = e.powi(4) / x.abs()
                    + (2.0 * ds * y0.abs() + 2.0 * e.abs() * y0.abs() + 7.0) * u;
                let err = (y - 1.0 / x).abs();
                assert!(
                err <= bound,
                "signed {signed} trunc {trunc} x={x}: got {y}, want {}, err {err:.3e} > {bound:.3e}",
                1.0 / x
            );
                worst = worst.max(err / ((1.0 / x.abs() + 1.0) * u));
            }
        }
        eprintln!("reciprocal signed {signed}: worst error {worst:.2} × (1/|x| + 1) ulp");
    }
}

/// Outside the domain (documented): on [0, 2^-8) the result lies in [2^8, 2^10] (e ∈
/// (0, 1], y = 2^8·(1 + e + e² + e³)), 1024 at 0; from 2^14 up it is 0 up to the
/// truncations' few ulp (1/x < 4u there); reciprocal_pos of x < 0 likewise ~0;
/// reciprocal mirrors both to x < 0. Slack of 8u for the truncations of products of 0.
#[test]
fn fss_reciprocal_outside_its_domain_saturates_as_documented() {
    let u = ULP;
    let small = [0.0, u, 2.0 * u, 100.0 * u, 255.0 * u];
    let large = [16384.0, 20000.0, 1e6, 3e9];
    let xs: Vec<f64> = small.iter().chain(&large).copied().collect();
    for signed in [false, true] {
        let inputs: Vec<f64> = if signed {
            xs.iter().flat_map(|&x| [x, -x]).collect()
        } else {
            xs.iter()
                .chain(&[-1.0, -0.001, -50000.0])
                .copied()
                .collect()
        };
        let runs = run_approx(&inputs, |c, s| {
            if signed {
                c.reciprocal(s)
            } else {
                c.reciprocal_pos(s)
            }
        });
        for (&x, &y) in inputs.iter().cycle().zip(runs.iter().flat_map(|r| &r.1)) {
            let a = x.abs();
            let sign = if signed && x < 0.0 { -1.0 } else { 1.0 };
            if !signed && x < 0.0 || a >= 16384.0 {
                assert!(y.abs() <= 8.0 * u, "signed {signed} x={x}: {y}");
            } else if x == 0.0 {
                assert!((y - 1024.0).abs() <= 8.0 * 256.0 * u, "x=0: {y}");
            } else {
                let y = y * sign;
                assert!(
                    (256.0 - 8.0 * u..=1024.0 + 0.1).contains(&y),
                    "signed {signed} x={x}: {y}"
                );
            }
        }
    }
}

/// inv_sqrt against 1/√x on [2^-8, 2^20) and sqrt against √x. The approximation's own
/// output y0·T(e), e = 1 − x·q, T(e) = 1 + e/2 + 3e²/8 + 5e³/16 (y0, q from the plaintext
/// table), is computed in f64 and compared with 1/√x against the documented relative
/// bound: 1/√x = √q/√(1 − e), so y0·T(e) = (y0/√q)·(1/√x)·(1 − R·√(1 − e)/y0) with R the
/// series' remainder ≤ y0·(35/128)·e⁴/(1 − |e|)^(9/2) and y0/√q = (1 + η)^(−1/2)
/// (η = q/y0² − 1, q's rounding): relative error ≤ |(1 + η)^(−1/2) − 1| +
/// (1 + η)^(−1/2)·(35/128)·e⁴/(1 − |e|)^4. The truncations: δ1 of
/// x·q (< 2u) moves y by y0·T'(e)·δ1 ≤ 1.1·y0·u; δ3 of y0·e by ≤ 0.54·2u, δ4 and δ5 by
/// 6/16·2u and 5/16·2u, δ2 of e² by y0·e·(5/16)·2u, the final truncation by 4 bits < 2u:
/// |y − y0·T(e)| ≤ (1.2·y0 + 5)u. sqrt = x·inv_sqrt(x), one more truncation:
/// |√ − x·y| ≤ x·(the bound above) + 2u.
#[test]
fn fss_inv_sqrt_and_sqrt_are_within_their_derived_bounds_on_the_domain() {
    let u = ULP;
    let p = inv_sqrt_pieces(16);
    let xs = domain_inputs(
        &mut Data::new(6),
        &p,
        INV_SQRT_LO_LOG2,
        INV_SQRT_HI_LOG2,
        false,
    );
    let runs = run_approx(&xs, |c, s| c.inv_sqrt(s));
    let qscale = 2f64.powi(16 + Q_EXTRA_BITS as i32);
    let mut bounds = Vec::new();
    for &x in &xs {
        let w = fp().encode(x);
        let y0 = fp().decode(plain_pwc(&p, 0, w));
        let q = plain_pwc(&p, 1, w) as f64 / qscale;
        let e = 1.0 - x * q;
        let eta = q / (y0 * y0) - 1.0;
        let approx = y0 * (1.0 + e / 2.0 + 3.0 * e * e / 8.0 + 5.0 * e.powi(3) / 16.0);
        let k = (1.0 + eta).powf(-0.5);
        let rel = (k - 1.0).abs() + k * 35.0 / 128.0 * e.powi(4) / (1.0 - e.abs()).powi(4);
        let truth = 1.0 / x.sqrt();
        assert!(e.abs() < 0.08, "x={x}: |e| = {e}");
        assert!(
            (approx - truth).abs() <= rel * truth * 1.0001 + 1e-15,
            "x={x}: approximation {approx} vs {truth}, rel bound {rel:.3e}"
        );
        let bound = rel * truth * 1.0001 + (1.2 * y0 + 5.0) * u;
        bounds.push(bound);
    }
    for (trunc, got) in &runs {
        for ((&x, &y), bound) in xs.iter().zip(got).zip(&bounds) {
            let err = (y - 1.0 / x.sqrt()).abs();
            assert!(
                err <= *bound,
                "inv_sqrt trunc {trunc} x={x}: got {y}, err {err:.3e} > {bound:.3e}"
            );
        }
    }
    // sqrt on the part of the domain where x·(bound) stays meaningful.
    let small: Vec<(usize, f64)> = xs
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, x)| *x <= 1024.0)
        .collect();
    let sx: Vec<f64> = small.iter().map(|(_, x)| *x).collect();
    for (trunc, got) in run_approx(&sx, |c, s| c.sqrt(s)) {
        for ((i, x), y) in small.iter().zip(&got) {
            let bound = x * bounds[*i] + 2.0 * u;
            let err = (y - x.sqrt()).abs();
            assert!(
                err <= bound,
                "sqrt trunc {trunc} x={x}: got {y}, want {}, err {err:.3e} > {bound:.3e}",
                x.sqrt()
            );
        }
    }
}

/// Outside inv_sqrt's domain: [0, 2^-8) gives [16, 35] (y0 = 16, q = 256, e ∈ (0, 1]),
/// 35 at 0; from 2^20 up and below 0 it gives ~0 (1/√x < 2^-10 above).
#[test]
fn fss_inv_sqrt_outside_its_domain_saturates_as_documented() {
    let u = ULP;
    let xs = [0.0, u, 17.0 * u, 255.0 * u, 1048576.0, 3e7, -1.0, -1e-3];
    let runs = run_approx(&xs, |c, s| c.inv_sqrt(s));
    for (&x, &y) in xs.iter().cycle().zip(runs.iter().flat_map(|r| &r.1)) {
        if !(0.0..1048576.0).contains(&x) {
            assert!(y.abs() <= 8.0 * u, "x={x}: {y}");
        } else {
            assert!((16.0 - 8.0 * u..=35.0 + 8.0 * u).contains(&y), "x={x}: {y}");
        }
    }
}

/// (rounds, words sent per element by the busiest party) of `op` on 1024 elements.
fn fss_cost(op: impl Fn(&Ctx, &Share) -> mpc_pipe::Result<Share> + Sync) -> (u64, f64) {
    let n = 1024;
    let x = Data::new(3).tensor(&[n], 0.5, 2.0);
    let outs = run_with(&fss(), |ctx| {
        let xs = ctx.share_plain(0, Some(&x), x.shape())?;
        let before = ctx.counters().snapshot();
        op(ctx, &xs)?;
        Ok(ctx.counters().snapshot().since(&before))
    });
    let worst = outs.iter().map(|o| o.value.bytes_sent()).max().unwrap();
    (outs[0].value.rounds, worst as f64 / 8.0 / n as f64)
}

/// The round and word counts the module doc derives: the gate (1 round, 1 word), then
/// three product rounds of one product group, each value opened once: x·y0 (x, y0: 2
/// words), {e², y0·e} (e: 1), {y0e·e, y0e·e²} (y0e, e²: 2): 4 rounds, 6 words for
/// reciprocal (either sign); inv_sqrt opens x, q, then e, y0: 7 words; sqrt one product
/// more (2 words). As separate Beaver products they were 11, 11 and 13 words.
#[test]
fn fss_reciprocal_and_inv_sqrt_take_four_rounds_and_six_or_seven_words() {
    assert_eq!(fss_cost(|c, x| c.reciprocal_pos(x)), (4, 6.0));
    assert_eq!(fss_cost(|c, x| c.reciprocal(x)), (4, 6.0));
    assert_eq!(fss_cost(|c, x| c.inv_sqrt(x)), (4, 7.0));
    assert_eq!(fss_cost(|c, x| c.sqrt(x)), (5, 9.0));
}

/// exp on x ≤ 0 by the spline (`exp_fss`, softmax's `exp_nonpos` under fss) against f64
/// e^x within the bound its doc derives: e^c·EXP_POLY_ERR for the cubic on the piece
/// [c, c + 1/2), (u/2)(1 + f + f² + f³) for the constants G_k rounded to the grid, and
/// 2u for each of the three truncations, weighted by what multiplies its error
/// (1 for the sum, |G2| + |G3·f| for f², f² for G3·f); below −L exactly 0 (local) or
/// within the dealer truncation's 2u. Inputs: random over [−20, 0], every breakpoint
/// and its ±1, ±2 ulp neighbours, 0, −16, below −16 and the ring's most negative
/// value; the default and the dealer truncation.
#[test]
fn fss_exp_spline_is_within_its_derived_bound_on_x_le_0() {
    let spline = |mut c: SessionConfig| {
        c.fixed = c.fixed.with_exp(Some(mpc_pipe::ring::ExpApprox::Spline));
        c
    };
    let f = 16u32;
    let u = ULP;
    let p = exp_pieces(f);
    let l = exp_lower_limit(f) as f64;
    assert_eq!(p.breaks.len(), 2 * exp_lower_limit(f) as usize);
    let mut d = Data::new(77);
    let mut raw: Vec<u64> = (0..600)
        .map(|_| fp().encode(d.uniform(-20.0, 0.0)))
        .collect();
    for &b in &p.breaks {
        for o in [-2i64, -1, 0, 1, 2] {
            raw.push(b.wrapping_add(o as u64));
        }
    }
    raw.extend([
        0,
        u64::MAX,
        fp().encode(-16.0),
        fp().encode(-16.0) - 1,
        fp().encode(-1000.0),
        1 << 63,
        (1 << 63) + 1,
    ]);
    raw.retain(|&w| (w as i64) <= 0);
    let x = RingTensor::from_vec(&[raw.len()], raw.clone());
    let mut dealer = spline(fss());
    dealer.fixed = dealer.fixed.with_trunc(Some(Trunc::Dealer));
    for cfg in [spline(fss()), dealer] {
        let got = agree_with(&cfg, |ctx| {
            let xs = ctx.share_input(1, Some(&x), x.shape())?;
            ctx.reveal(&ctx.exp_nonpos(&xs)?)
        });
        let mut worst = 0f64;
        for (i, &w) in raw.iter().enumerate() {
            let xv = (w as i64) as f64 * u;
            let y = (got.data()[i] as i64) as f64 * u;
            let want = xv.exp();
            let bound = if xv < -l {
                if cfg.fixed.trunc.is_none() {
                    assert_eq!(got.data()[i], 0, "x={xv}: below −L must be exactly 0");
                }
                want + 2.0 * u
            } else {
                let c = (2.0 * xv).floor() / 2.0;
                let c = c.min(-0.5);
                let fr = xv - c;
                let g = c.exp();
                g * EXP_POLY_ERR
                    + (u / 2.0) * (1.0 + fr + fr * fr + fr.powi(3))
                    + 2.0 * u * (1.0 + g * EXP_POLY[2] + g * EXP_POLY[3] * fr + fr * fr)
            };
            worst = worst.max((y - want).abs() / u);
            assert!(
                (y - want).abs() <= bound,
                "exp({xv}) = {y}, e^x {want}, bound {bound} ({:?})",
                cfg.fixed.trunc
            );
        }
        println!("exp spline {:?}: worst {worst:.2} ulp", cfg.fixed.trunc);
    }
}

/// exp by the spline (`--exp spline`): the gate (1 round, 1 word), {f·f, G1·f, G3·f}
/// with G2 opened alongside (4 words), {G2·f², G3f·f²} (2 words): 3 rounds, 7 words,
/// one `FssMic` key and one product group (11 words as Beaver products). By
/// default (and plain `exp` always) the limit form: 8 rounds, 8 words.
#[test]
fn fss_exp_spline_takes_three_rounds_seven_words() {
    let cost = |exp: Option<mpc_pipe::ring::ExpApprox>| {
        let mut cfg = fss();
        cfg.fixed = cfg.fixed.with_exp(exp);
        let n = 1024;
        let xs = Data::new(5).tensor(&[n], -3.0, 0.0);
        let outs = run_with(&cfg, |ctx| {
            let s = ctx.share_plain(0, Some(&xs), xs.shape())?;
            let before = ctx.counters().snapshot();
            ctx.exp_nonpos(&s)?;
            Ok(ctx.counters().snapshot().since(&before))
        });
        let worst = outs.iter().map(|o| o.value.bytes_sent()).max().unwrap();
        (outs[0].value.rounds, worst as f64 / 8.0 / n as f64)
    };
    // The gate (1 word), f, G1, G3, G2 (4), then f², G3·f (2): one product group.
    assert_eq!(cost(Some(mpc_pipe::ring::ExpApprox::Spline)), (3, 7.0));
    assert_eq!(cost(Some(mpc_pipe::ring::ExpApprox::Limit)), (8, 8.0));
    assert_eq!(cost(None), (8, 8.0));
    assert_eq!(fss_cost(|c, x| c.exp(x)), (8, 8.0));
}

/// How many of `reqs` match `pred`.
fn count(reqs: &[&Request], pred: impl Fn(&Request) -> bool) -> usize {
    reqs.iter().filter(|r| pred(r)).count()
}

/// GeLU under fss (`gelu_puma_fss`): the gate with x's product-group opening in its
/// message (1 round, 2 words), x², z1, z2, z3 opened for {x·x², x²·x², z2·x², z3·x}
/// (1 round, 4 words), P3, Q, z2x², x⁴ for {z1·P3, z2·Q, z2x²·x⁴} (1 round, 4 words),
/// then the exact truncation of the sum from 2f + 8 bits (1 round, 1 word, one dealer
/// mask by f + 8 bits even under local truncation); one `FssMic` key and one product group
/// (9 values, 8 pairs) per element, no comparison keys and no Beaver triples or square
/// pairs.
#[test]
fn fss_gelu_takes_four_rounds_eleven_words_one_key_one_product_group_one_mask() {
    assert_eq!(fss_cost(|c, x| c.gelu(x)), (4, 11.0));
    let plan = record_plan(&fss(), &|ctx: &Ctx| {
        let x = ctx.share_input(0, Some(&RingTensor::zeros(&[10])), &[10])?;
        ctx.gelu(&x).map(drop)
    })
    .unwrap();
    let reqs: Vec<&Request> = plan.entries.iter().map(|(_, r)| r).collect();
    assert_eq!(
        count(&reqs, |r| matches!(r, Request::FssMic { len: 10 })),
        1,
        "{reqs:?}"
    );
    assert_eq!(
        count(&reqs, |r| matches!(
            r,
            Request::Products { len: 10, values: 9, pairs } if pairs.len() == 8
        )),
        1,
        "{reqs:?}"
    );
    assert_eq!(
        count(&reqs, |r| matches!(
            r,
            Request::Trunc { len: 10, shift: 24 }
        )),
        1,
        "{reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| matches!(
            r,
            Request::FssLtz { .. } | Request::Mul { .. } | Request::Square { .. }
        )),
        "{reqs:?}"
    );
}

/// One `FssMic` request per call, of one element per input element whatever the number
/// of breakpoints, no comparison keys and no binary material.
#[test]
fn fss_spline_plan_holds_one_key_request_per_call() {
    let plan = record_plan(&fss(), &|ctx: &Ctx| {
        let x = ctx.share_input(0, Some(&RingTensor::zeros(&[10])), &[10])?;
        ctx.reciprocal(&x)?;
        ctx.inv_sqrt(&x).map(drop)
    })
    .unwrap();
    let reqs: Vec<&Request> = plan.entries.iter().map(|(_, r)| r).collect();
    assert_eq!(
        count(&reqs, |r| matches!(r, Request::FssMic { len: 10 })),
        2,
        "{reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| matches!(
            r,
            Request::FssLtz { .. } | Request::And { .. } | Request::Bit { .. }
        )),
        "{reqs:?}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-spline-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Spline keys go through material files: a round trip computes reciprocal and inv_sqrt
/// as dealt in memory (bit-identical outputs), and a file truncated or made for another
/// plan (the same program on 9 elements instead of 8) is refused.
#[test]
fn fss_spline_keys_round_trip_through_files_and_bad_files_are_refused() {
    let key = MaterialKey::from_session_key(&[7u8; 32]);
    let dir = scratch("files");
    let program = |n: usize| {
        move |ctx: &Ctx| -> mpc_pipe::Result<PlainTensor> {
            let v = PlainTensor::from_vec(&[n], (0..n).map(|i| 0.3 + i as f64).collect());
            let x = ctx.share_plain(0, Some(&v), &[n])?;
            let r = ctx.reciprocal(&x)?;
            let s = ctx.inv_sqrt(&x)?;
            ctx.reveal_plain(&r.add(&s))
        }
    };
    let plan = record_plan(&fss(), &program(8)).unwrap();
    let other = record_plan(&fss(), &program(9)).unwrap();
    assert_ne!(plan.hash(), other.hash());
    for m in deal(&plan, 2, 43) {
        file::save(&m, &file::party_file(&dir, m.party), &key).unwrap();
    }
    let expect = |party: usize, hash: [u8; 32]| Expect {
        session: Some(43),
        party,
        parties: 2,
        plan_hash: hash,
    };
    let material: Vec<_> = (0..2)
        .map(|p| file::load(&file::party_file(&dir, p), &expect(p, plan.hash()), &key).unwrap())
        .collect();
    let from_files = run_online(&fss(), material, &program(8)).unwrap();
    let want: Vec<f64> = (0..8)
        .map(|i| {
            let x = 0.3 + i as f64;
            1.0 / x + 1.0 / x.sqrt()
        })
        .collect();
    for (g, w) in from_files[0].value.data().iter().zip(&want) {
        assert!((g - w).abs() < 1e-3, "from files: {g} vs {w}");
    }
    for p in 0..2 {
        let path = file::party_file(&dir, p);
        match file::load(&path, &expect(p, other.hash()), &key) {
            Err(Error::Material(m)) => assert!(m.contains("another plan"), "{m}"),
            other => panic!("another plan's keys accepted: {:?}", other.map(|_| ())),
        }
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 8)
            .unwrap();
        match file::load(&path, &expect(p, plan.hash()), &key) {
            Err(Error::Material(m)) => assert!(m.contains("truncated"), "{m}"),
            other => panic!("truncated keys accepted: {:?}", other.map(|_| ())),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The dealer's half of the gate, on what the parties' stores hand out (kept as drawn,
/// and expanded from seeds and dealt words: the same): the parties hold the same
/// correction words, and the two keys evaluate at 0, r − 1, r, r + 1, 2^64 − 1 and random
/// points to [z < r] with r the sum of the mask's shares, the comparison the gate's
/// derivation needs.
#[test]
fn fss_dealer_makes_spline_keys_of_the_masks_comparison() {
    let plan = Plan::from_entries(vec![
        (3, Request::FssMic { len: 300 }),
        (4, Request::FssMic { len: 17 }),
    ]);
    let taken = |keep: bool| {
        taken_all(
            &plan,
            deal_with(&plan, &dealer_seeds(2, Some(3)), 5, &[keep; 2]),
        )
    };
    let kept = taken(true);
    assert!(
        kept == taken(false),
        "kept material differs from the seeds' expansion"
    );
    let mut d = Data::new(22);
    for ((_, req), parts) in plan.entries.iter().zip(&kept) {
        let Request::FssMic { len } = *req else {
            unreachable!()
        };
        assert_eq!(parts[0].len(), 6, "r, seed, scw, vcw, tcw, last");
        assert!(
            parts[0][2..] == parts[1][2..],
            "the parties' correction words differ"
        );
        let r: Vec<u64> = (0..len)
            .map(|i| parts[0][0][i].wrapping_add(parts[1][0][i]))
            .collect();
        let x: Vec<u64> = (0..len)
            .map(|i| match i % 6 {
                0 => 0,
                1 => r[i].wrapping_sub(1),
                2 => r[i],
                3 => r[i].wrapping_add(1),
                4 => u64::MAX,
                _ => d.next_u64(),
            })
            .collect();
        let share = |p: usize| {
            let c = &parts[p];
            let keys = Keys {
                layout: mic_layout(),
                seed: &c[1],
                scw: &c[2],
                vcw: &c[3],
                tcw: &c[4],
                last: &c[5],
            };
            dcf::eval(p, keys, &x).unwrap()
        };
        let (y0, y1) = (share(0), share(1));
        for i in 0..len {
            assert_eq!(
                y0[i].wrapping_add(y1[i]),
                u64::from(x[i] < r[i]),
                "element {i}"
            );
        }
    }
}
