//! Transformer non-linearities (softmax, GeLU, LayerNorm) against (a) an f64 twin of the
//! same algorithm with a rigorous fixed-point bound propagated beside it (tests/twins), and
//! (b) the exact function (softmax, x·Φ(x), LayerNorm) with the approximation's documented
//! error, both at the quantized inputs. 2, 3 and 4 parties; softmax and LayerNorm also
//! under `--protocols fss` (proto::spline's reciprocal and inv_sqrt, with their bounds),
//! against the same references and the crypten suite. Also the per-element costs.

mod common;
mod twins;
use common::*;
use mpc_pipe::proto::nn::GeluApprox;
use mpc_pipe::proto::spline::{exp_lower_limit, EXP_POLY, EXP_POLY_ERR};
use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::{FixedPoint, PlainTensor, Protocols, RingTensor};
use mpc_pipe::runtime::SessionConfig;
use twins::*;

const PARTIES: [usize; 3] = [2, 3, 4];

/// Standard normal CDF by composite Simpson on [0, x] with 4000 panels (error < 1e-12 for
/// |x| ≤ 10, far below every bound here).
fn phi_cdf(x: f64) -> f64 {
    let m = 4000;
    let h = x / m as f64;
    let pdf = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mut s = pdf(0.0) + pdf(x);
    for i in 1..m {
        s += pdf(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    0.5 + s * h / 3.0
}

fn gelu_exact(x: f64) -> f64 {
    x * phi_cdf(x)
}

// ---------------------------------------------------------------- softmax

/// f64 twin of `Ctx::softmax` on one row: m = max (exact: the MPC max is one of the
/// inputs), E_i = exp(x_i − m), R = reciprocal_pos(ΣE), out_i = E_i·R (one truncation).
/// Returns (values, bounds).
fn softmax_twin(row: &[f64], recip: Ref) -> (Vec<f64>, Vec<f64>) {
    softmax_twin_with(row, exp_ref, recip)
}

/// `--protocols fss`'s exp on z ≤ 0 (proto::spline's half-unit cubic spline) at an exact
/// input: e^z, with the bound tests/spline.rs checks, e^c·EXP_POLY_ERR for the cubic on
/// its piece [c, c + 1/2), (u/2)(1 + f + f² + f³) for the constants on the grid and 2u per
/// truncation, weighted (1 + e^c·(a2 + a3·f) + f²); below −L e^z + 2u.
fn exp_spline_ref(z: f64, ex: f64) -> (f64, f64) {
    assert_eq!(ex, 0.0, "softmax's z = x − max is exact");
    let (u, a) = (ULP, EXP_POLY);
    if z < -(exp_lower_limit(16) as f64) {
        return (z.exp(), z.exp() + 2.0 * u);
    }
    let c = ((2.0 * z).floor() / 2.0).min(-0.5);
    let (f, g) = (z - c, c.exp());
    let b = g * EXP_POLY_ERR
        + (u / 2.0) * (1.0 + f + f * f + f.powi(3))
        + 2.0 * u * (1.0 + g * (a[2] + a[3] * f) + f * f);
    (z.exp(), b)
}

fn softmax_twin_with(row: &[f64], exp: Ref, recip: Ref) -> (Vec<f64>, Vec<f64>) {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ee: Vec<(f64, f64)> = row.iter().map(|&x| exp(x - m, 0.0)).collect();
    let s: f64 = ee.iter().map(|p| p.0).sum();
    let es: f64 = ee.iter().map(|p| p.1).sum();
    let (r, er) = recip(s, es);
    ee.iter()
        .map(|&(e, eb)| (e * r, e * er + r * eb + eb * er + T))
        .unzip()
}

/// Rows of 10: random, all tied, a tie at the max, a spread of 55, small values, zeros.
fn softmax_rows(d: &mut Data) -> PlainTensor {
    let mut v: Vec<f64> = (0..10).map(|_| d.uniform(-5.0, 5.0)).collect();
    v.extend([1.5; 10]);
    v.extend([3.0, -1.0, 3.0, 0.0, 2.9, -4.0, 1.0, 3.0, -0.5, 2.0]);
    v.extend([20.0, -20.0, 0.0, 5.0, -10.0, 19.5, -30.0, 10.0, 20.0, -35.0]);
    v.extend((0..10).map(|_| d.uniform(-1.0, 1.0)));
    v.extend([0.0; 10]);
    quantize(&PlainTensor::from_vec(&[6, 10], v))
}

/// A reference of an approximation at an input known to ±ex: (value, bound).
type Ref = fn(f64, f64) -> (f64, f64);

/// `--protocols fss`'s reciprocal (proto::spline) at x known to ±ex: the value 1/x and
/// the bound tests/spline.rs derives, e⁴/x + (2·S'·y0 + 2·e·y0 + 7)u with |e| ≤ 0.0436 +
/// x·u/2 and y0 = (1 − e)/x ≤ (1 + |e|)/x, taken at x − ex (it falls with x), plus the
/// input's |1/x̂ − 1/x| ≤ ex/(x(x − ex)). Its own error is in the bound, so the value is
/// the exact 1/x (check (b) adds nothing for it).
fn recip_spline_ref(x: f64, ex: f64) -> (f64, f64) {
    let lo = x - ex;
    let e = 0.0436 + x * ULP / 2.0;
    let y0 = (1.0 + e) / lo;
    let eps = e + 2.0 * ULP;
    let ds = 1.0 + 2.0 * eps + 3.0 * eps * eps;
    let own = e.powi(4) / lo + (2.0 * ds * y0 + 2.0 * e * y0 + 7.0) * ULP;
    (1.0 / x, own + ex / (x * lo))
}

/// `--protocols fss`'s inv_sqrt (proto::spline) at x known to ±ex, as above: 1/√x, with
/// the relative bound of tests/spline.rs, |(1 + η)^(−1/2) − 1| + (35/128)·e⁴/(1 − |e|)^4
/// (here |e| ≤ 0.0436; η = q/y0² − 1 is q's rounding, 2^-25 at scale 2^-24, over
/// y0² ≥ 0.9/x: |η| ≤ 1.2·2^-25·x, so the first term is at most |η|/2 + η²), plus
/// (1.2·y0 + 5)u with y0 ≤ 1.05/√x, taken at x − ex, plus the input's
/// |1/√x̂ − 1/√x| ≤ ex/(2·(x − ex)^1.5).
fn inv_sqrt_spline_ref(x: f64, ex: f64) -> (f64, f64) {
    let lo = x - ex;
    let e: f64 = 0.0436;
    let eta = 1.2 * x * 2f64.powi(-25);
    let rel = eta / 2.0 + eta * eta + 35.0 / 128.0 * e.powi(4) / (1.0 - e).powi(4);
    let y0 = 1.05 / lo.sqrt();
    let own = rel * y0 + (1.2 * y0 + 5.0) * ULP;
    (1.0 / x.sqrt(), own + ex / (2.0 * lo.powf(1.5)))
}

/// Check one revealed row (a) against the twin and (b) against the exact softmax; the
/// reciprocal's relative residual (b) adds: 5e-8 for CrypTen's Newton iterations
/// (tests/approx.rs), 0 for the spline (its twin's value is exact, its error bounded).
fn check_softmax_row(row: &[f64], got: &[f64], what: &str) {
    check_softmax_row_with(row, got, what, false, recip_ref, 5e-8)
}

/// `spline_exp`: exp is `--protocols fss`'s spline, whose twin value is the exact e^z (its
/// error is in the bound), so (b) adds no exp error for it.
fn check_softmax_row_with(
    row: &[f64],
    got: &[f64],
    what: &str,
    spline_exp: bool,
    recip: Ref,
    recip_rel: f64,
) {
    let exp: Ref = if spline_exp { exp_spline_ref } else { exp_ref };
    let (want, bound) = softmax_twin_with(row, exp, recip);
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ez: Vec<f64> = row.iter().map(|&x| (x - m).exp()).collect();
    let sz: f64 = ez.iter().sum();
    let p: Vec<f64> = ez.iter().map(|e| e / sz).collect();
    // Approximation error (b): E_j = e^{z_j}(1 + r_j) with |r_j| ≤ ρ_j (the limit form's
    // documented relative error at z_j = x_j − m), so ΣE = Σe^z·(1 + r̄) with
    // |r̄| ≤ ρ̄ = Σ p_j ρ_j and |E_i/ΣE − p_i| ≤ p_i(ρ_i + ρ̄)/(1 − ρ̄); the reciprocal adds
    // its relative residual (≤ 5e-8 on [1, 10], see tests/approx.rs).
    let rho: Vec<f64> = row
        .iter()
        .map(|&x| {
            if spline_exp {
                0.0
            } else {
                exp_limit_rel_err(x - m)
            }
        })
        .collect();
    let rho_bar: f64 = p.iter().zip(&rho).map(|(a, b)| a * b).sum();
    assert!(
        rho_bar < 0.5,
        "{what}: documented exp error too large to use"
    );
    for i in 0..row.len() {
        assert!(
            (got[i] - want[i]).abs() <= bound[i],
            "{what} entry {i} (x = {}): got {}, twin {}, bound {}",
            row[i],
            got[i],
            want[i],
            bound[i]
        );
        let approx = p[i] * (rho[i] + rho_bar) / (1.0 - rho_bar) + recip_rel * p[i];
        assert!(
            (got[i] - p[i]).abs() <= bound[i] + approx,
            "{what} entry {i} (x = {}): got {}, softmax {}, bound {}",
            row[i],
            got[i],
            p[i],
            bound[i] + approx
        );
    }
}

#[test]
fn softmax_rows_of_10_with_ties_and_large_spreads_match_twin_and_exact() {
    for n in PARTIES {
        let mut d = Data::new(600 + n as u64);
        let x = softmax_rows(&mut d);
        let got = reveal_all(n, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            ctx.reveal_plain(&ctx.softmax(&xs, 1)?)
        });
        for r in 0..6 {
            let (row, g) = (
                &x.data()[r * 10..r * 10 + 10],
                &got.data()[r * 10..r * 10 + 10],
            );
            check_softmax_row(row, g, &format!("softmax {n}p row {r}"));
            // All-equal rows are exactly uniform in the twin: 0.1 within the bound.
            if r == 1 || r == 5 {
                assert!(g.iter().all(|&v| (v - 0.1).abs() < 1e-3));
            }
        }
    }
}

#[test]
fn softmax_along_a_middle_dim() {
    for n in PARTIES {
        let mut d = Data::new(700 + n as u64);
        let x = quantize(&d.tensor(&[2, 7, 3], -4.0, 4.0));
        let got = reveal_all(n, |ctx| {
            let xs = ctx.share_plain(n - 1, Some(&x), x.shape())?;
            ctx.reveal_plain(&ctx.softmax(&xs, 1)?)
        });
        for b in 0..2 {
            for c in 0..3 {
                let idx: Vec<usize> = (0..7).map(|k| b * 21 + k * 3 + c).collect();
                let row: Vec<f64> = idx.iter().map(|&i| x.data()[i]).collect();
                let g: Vec<f64> = idx.iter().map(|&i| got.data()[i]).collect();
                check_softmax_row(&row, &g, &format!("softmax dim 1 {n}p ({b}, ., {c})"));
            }
        }
    }
}

// ---------------------------------------------------------------- GeLU

// PUMA's coefficients, restated rather than imported from src/proto/nn.rs so that the twin
// stays independent of the code under test.
const PUMA_A: [f64; 4] = [
    -0.5054031199708174,
    -0.42226581151983866,
    -0.11807612951181953,
    -0.011034134030615728,
];
const PUMA_B: [f64; 7] = [
    0.008526321541038084,
    0.5,
    0.3603292692789629,
    0.0,
    -0.037688200365904236,
    0.0,
    0.0018067462606141187,
];

/// f64 twin of PUMA's GeLU at a quantized x, with its bound. Region by exact comparisons
/// against the encoded thresholds (x + enc(1.95) < 0 etc.). Powers: x² (T), x³ = x²·x
/// (|x|T + T), x⁴ = (x²)² (2x²T + T² + T), x⁶ = (x³)² (2|x³|e3 + e3² + T). The polynomial
/// is one truncation of Σ c_k·x^k with coefficients encoded with ≥ 24 fractional bits
/// (each off by < 2^-24) and the constant with 16 (off by < 1 ulp); the selection by bits
/// is exact.
fn puma_twin(x: f64) -> (f64, f64) {
    puma_twin_with(x, false)
}

/// As `puma_twin`; `fss`: proto::spline's `gelu_puma_fss`, whose x⁶ is (x²)·x⁴ (error
/// x²·e4 + x⁴·T + T·e4 + T) and whose constants carry 2f + 8 bits (the ULP term stays as
/// a margin).
fn puma_twin_with(x: f64, fss: bool) -> (f64, f64) {
    let (e2, e3) = (T, x.abs() * T + T);
    let e4 = 2.0 * x * x * T + T * T + T;
    let e6 = if fss {
        x * x * e4 + x.powi(4) * T + T * e4 + T
    } else {
        2.0 * x.abs().powi(3) * e3 + e3 * e3 + T
    };
    let c_err = 1.0 / (1u64 << 24) as f64;
    if x < -q(4.0) {
        (0.0, 0.0)
    } else if x < -q(1.95) {
        let v = PUMA_A[0] + PUMA_A[1] * x + PUMA_A[2] * x * x + PUMA_A[3] * x.powi(3);
        let b = PUMA_A[2].abs() * e2
            + PUMA_A[3].abs() * e3
            + c_err * (x.abs() + x * x + x.abs().powi(3))
            + T
            + ULP;
        (v, b)
    } else if x <= 3.0 {
        let v = PUMA_B[0]
            + PUMA_B[1] * x
            + PUMA_B[2] * x * x
            + PUMA_B[4] * x.powi(4)
            + PUMA_B[6] * x.powi(6);
        let b = PUMA_B[2].abs() * e2
            + PUMA_B[4].abs() * e4
            + PUMA_B[6].abs() * e6
            + c_err * (x.abs() + x * x + x.powi(4) + x.powi(6))
            + T
            + ULP;
        (v, b)
    } else {
        (x, 0.0)
    }
}

/// Documented |PUMA − x·Φ(x)| by region (f64 on a grid of 2e5 points over [−10, 10],
/// rounded up; see `Ctx::gelu_puma`).
fn puma_documented_err(x: f64) -> f64 {
    if x < -4.0 {
        1.3e-4
    } else if x < -1.95 {
        7.6e-4
    } else if x <= 3.0 {
        0.0200
    } else {
        4.1e-3
    }
}

fn gelu_inputs(d: &mut Data) -> PlainTensor {
    let mut v: Vec<f64> = (0..80).map(|_| d.uniform(-6.0, 6.0)).collect();
    v.extend([
        -4.0, -4.001, -3.999, -1.95, -1.951, -1.949, 3.0, 3.001, 2.999, 0.0, -8.0, 8.0, 1.0, -1.0,
        2.5, -0.5,
    ]);
    quantize(&PlainTensor::from_vec(&[v.len()], v))
}

fn run_gelu(n: usize, x: &PlainTensor, approx: Option<GeluApprox>) -> PlainTensor {
    reveal_all(n, |ctx| {
        let xs = ctx.share_plain(0, Some(x), x.shape())?;
        let y = match approx {
            None => ctx.gelu(&xs)?,
            Some(a) => ctx.gelu_with(&xs, a)?,
        };
        ctx.reveal_plain(&y)
    })
}

#[test]
fn gelu_default_is_puma_and_matches_twin_and_exact_gelu() {
    for n in PARTIES {
        let mut d = Data::new(800 + n as u64);
        let x = gelu_inputs(&mut d);
        let got = run_gelu(n, &x, None);
        let got_puma = run_gelu(n, &x, Some(GeluApprox::Puma));
        for (i, &xi) in x.data().iter().enumerate() {
            let g = got.data()[i];
            let (w, b) = puma_twin(xi);
            assert!(
                (g - w).abs() <= b,
                "gelu {n}p x={xi}: got {g}, PUMA twin {w}, bound {b}"
            );
            assert!((got_puma.data()[i] - w).abs() <= b, "explicit Puma x={xi}");
            let t = gelu_exact(xi);
            let bt = b + puma_documented_err(xi);
            assert!(
                (g - t).abs() <= bt,
                "gelu {n}p x={xi}: got {g}, x·Φ(x) {t}, bound {bt}"
            );
        }
    }
}

#[test]
fn gelu_quad_and_relu_options() {
    for n in PARTIES {
        let mut d = Data::new(900 + n as u64);
        let mut v: Vec<f64> = (0..40).map(|_| d.uniform(-4.0, 4.0)).collect();
        v.extend([0.0, -4.0, 4.0, -1e-4, 1e-4]);
        let x = quantize(&PlainTensor::from_vec(&[v.len()], v));
        let quad = run_gelu(n, &x, Some(GeluApprox::Quad));
        let relu = run_gelu(n, &x, Some(GeluApprox::Relu));
        for (i, &xi) in x.data().iter().enumerate() {
            // Quad: x² exact in the ring, x²/8 + x/2 under one truncation: T.
            let wq = 0.125 * xi * xi + 0.5 * xi + 0.25;
            assert!(
                (quad.data()[i] - wq).abs() <= T,
                "quad {n}p x={xi}: got {}, want {wq}",
                quad.data()[i]
            );
            // Documented |Quad − GeLU| ≤ 0.2502 on [−4, 4] (0.25 at 0, 0.25013 at −4).
            assert!((quad.data()[i] - gelu_exact(xi)).abs() <= T + 0.2502);
            // ReLU is exact; |ReLU − GeLU| = |x|Φ(−|x|) ≤ 0.170 (max near |x| = 0.75).
            assert_eq!(relu.data()[i], xi.max(0.0), "relu {n}p x={xi}");
            assert!((relu.data()[i] - gelu_exact(xi)).abs() <= 0.170);
        }
    }
}

// ---------------------------------------------------------------- LayerNorm

/// f64 twin of `Ctx::layernorm` on one row, with bounds. μ̂ = div_public(Σx, h):
/// error |μ|·2^-17 + T (multiplier rounded to f + 1 significant bits, or exact for powers
/// of two); d_i = x_i − μ̂; sq_i = d̂_i² (2|d|eμ + eμ² + T); v̂ = div_public(Σ sq)
/// ((Σe_sq)/h·(1 + 2^-17) + |v|·2^-17 + T); eps is encoded (< 1 ulp off); r = inv_sqrt
/// with that input error; y = d̂·r̂ (|d|er + |r|eμ + eμ·er + T); ·γ (|γ|e_y + T); + β exact.
/// Also returns r.
fn layernorm_twin(
    row: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    inv_sqrt: Ref,
) -> (Vec<f64>, Vec<f64>, f64) {
    let h = row.len() as f64;
    let mu = row.iter().sum::<f64>() / h;
    let e_mu = mu.abs() * ULP / 2.0 + T;
    let d: Vec<f64> = row.iter().map(|x| x - mu).collect();
    let v = d.iter().map(|x| x * x).sum::<f64>() / h;
    let e_sq: f64 = d
        .iter()
        .map(|x| 2.0 * x.abs() * e_mu + e_mu * e_mu + T)
        .sum();
    let e_v = e_sq / h * (1.0 + ULP / 2.0) + v * ULP / 2.0 + T;
    let (r, er) = inv_sqrt(v + eps, e_v + ULP);
    let mut out = Vec::new();
    let mut bound = Vec::new();
    for i in 0..row.len() {
        let ey = d[i].abs() * er + r * e_mu + e_mu * er + T;
        out.push(d[i] * r * gamma[i] + beta[i]);
        bound.push(gamma[i].abs() * ey + T);
    }
    (out, bound, r)
}

/// A row with exactly the given mean and variance before quantization.
fn row_with(d: &mut Data, h: usize, mean: f64, var: f64) -> Vec<f64> {
    let u: Vec<f64> = (0..h).map(|_| d.uniform(-1.0, 1.0)).collect();
    let m = u.iter().sum::<f64>() / h as f64;
    let s = (u.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / h as f64).sqrt();
    u.iter().map(|x| mean + var.sqrt() * (x - m) / s).collect()
}

fn check_layernorm(n: usize, h: usize, eps: f64, seed: u64) {
    check_layernorm_with(&SessionConfig::new(n), h, eps, seed, inv_sqrt_ref, true);
}

/// LayerNorm under `cfg` against its twin (with the session's inv_sqrt reference) and the
/// exact function (`documented_rel`: add CrypTen's documented relative error of inv_sqrt,
/// which its twin's value carries; the spline twin's value is exact). Returns the output
/// and each element's bound against the exact LayerNorm.
fn check_layernorm_with(
    cfg: &SessionConfig,
    h: usize,
    eps: f64,
    seed: u64,
    inv_sqrt: Ref,
    documented_rel: bool,
) -> (PlainTensor, Vec<f64>) {
    let n = cfg.parties;
    let mut d = Data::new(seed);
    // (mean, variance): small variances 0.07 and 0.15, unit, large, with offsets.
    let stats = [
        (0.0, 0.07),
        (3.0, 0.15),
        (-2.0, 1.0),
        (10.0, 12.0),
        (-5.0, 80.0),
        (0.5, 0.5),
    ];
    let mut v = Vec::new();
    for &(m, var) in &stats {
        v.extend(row_with(&mut d, h, m, var));
    }
    let rows = stats.len();
    let x = quantize(&PlainTensor::from_vec(&[rows, h], v));
    let gamma = quantize(&d.tensor(&[h], 0.5, 1.5));
    let beta = quantize(&d.tensor(&[h], -1.0, 1.0));
    let fp = FixedPoint::default();
    let (g_enc, b_enc) = (fp.encode_tensor(&gamma), fp.encode_tensor(&beta));
    let got = reveal_all_with(cfg, |ctx| {
        let xs = ctx.share_plain(0, Some(&x), x.shape())?;
        ctx.reveal_plain(&ctx.layernorm(&xs, &g_enc, &b_enc, eps)?)
    });
    let mut exact_bounds = Vec::new();
    for r in 0..rows {
        let row = &x.data()[r * h..(r + 1) * h];
        let (want, bound, _) = layernorm_twin(row, gamma.data(), beta.data(), eps, inv_sqrt);
        let mu = row.iter().sum::<f64>() / h as f64;
        let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / h as f64;
        let inv = 1.0 / (var + eps).sqrt();
        let rel = if documented_rel {
            inv_sqrt_rel_err(var + eps)
        } else {
            0.0
        };
        for i in 0..h {
            let g = got.data()[r * h + i];
            assert!(
                (g - want[i]).abs() <= bound[i],
                "layernorm {n}p h={h} row {r} (var {var:.3}) [{i}]: got {g}, twin {}, bound {}",
                want[i],
                bound[i]
            );
            // (b) exact LayerNorm: the twin differs by |x − μ|·|γ|·|r − 1/√(v+eps)|, at most
            // the documented relative error of inv_sqrt on v + eps.
            let t = (row[i] - mu) * inv * gamma.data()[i] + beta.data()[i];
            let bt = bound[i] + (row[i] - mu).abs() * gamma.data()[i].abs() * inv * rel;
            exact_bounds.push(bt);
            assert!(
                (g - t).abs() <= bt,
                "layernorm {n}p h={h} row {r} (var {var:.3}) [{i}]: got {g}, exact {t}, bound {bt}"
            );
        }
    }
    (got, exact_bounds)
}

#[test]
fn layernorm_matches_twin_and_exact_power_of_two_hidden() {
    for n in PARTIES {
        check_layernorm(n, 16, 1e-5, 1000 + n as u64);
    }
}

#[test]
fn layernorm_matches_twin_and_exact_other_hidden_and_large_eps() {
    for n in PARTIES {
        check_layernorm(n, 24, 0.01, 1100 + n as u64);
    }
}

// ---------------------------------------------------------------- --protocols fss

fn fss_cfg() -> SessionConfig {
    SessionConfig {
        fixed: FixedPoint::default().with_protocols(Protocols::Fss),
        ..SessionConfig::new(2)
    }
}

/// GeLU under `--protocols fss` (proto::spline's `gelu_puma_fss`: the indicators from one
/// interval-containment key, x⁶ as x²·x⁴) against the PUMA twin with its bound and
/// against x·Φ(x) with PUMA's documented error, at random inputs, the thresholds and
/// their ±1, ±2 ulp neighbours, 0, ±8 and inputs far out (±2^20, where the unselected
/// powers overflow and must vanish); the default and the dealer truncation.
#[test]
fn fss_gelu_matches_puma_twin_and_exact_gelu_at_thresholds() {
    let mut d = Data::new(4242);
    let mut v = gelu_inputs(&mut d).data().to_vec();
    for t in [-4.0, -1.95, 3.0] {
        let raw = FixedPoint::default().encode(t) as i64;
        for o in [-2i64, -1, 0, 1, 2] {
            v.push((raw + o) as f64 * ULP);
        }
    }
    v.extend([0.0, 1048576.0, -1048576.0, 30000.0, -30000.0]);
    let x = PlainTensor::from_vec(&[v.len()], v);
    for trunc in [None, Some(mpc_pipe::ring::Trunc::Dealer)] {
        let mut cfg = fss_cfg();
        cfg.fixed = cfg.fixed.with_trunc(trunc);
        let got = reveal_all_with(&cfg, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            ctx.reveal_plain(&ctx.gelu(&xs)?)
        });
        for (i, &xi) in x.data().iter().enumerate() {
            let g = got.data()[i];
            let (w, b) = puma_twin_with(xi, true);
            assert!(
                (g - w).abs() <= b,
                "fss gelu {trunc:?} x={xi}: got {g}, PUMA twin {w}, bound {b}"
            );
            if xi.abs() <= 10.0 {
                let bt = b + puma_documented_err(xi);
                assert!((g - gelu_exact(xi)).abs() <= bt, "fss gelu x={xi}: {g}");
            }
        }
    }
}

/// softmax under `--protocols fss --exp spline` (its max by ReLU gates, exact; its exp and
/// reciprocal the splines') against the twin with the spline reciprocal's bound and the exact softmax,
/// and against the crypten suite's output within the two twins' bounds plus the twins'
/// difference (which is the Newton reciprocal's own error).
#[test]
fn fss_softmax_matches_twin_exact_and_the_crypten_suite() {
    let mut d = Data::new(602);
    let mut spline = fss_cfg();
    spline.fixed = spline
        .fixed
        .with_exp(Some(mpc_pipe::ring::ExpApprox::Spline));
    let x = softmax_rows(&mut d);
    let run = |cfg: &SessionConfig| {
        reveal_all_with(cfg, |ctx| {
            let xs = ctx.share_plain(0, Some(&x), x.shape())?;
            ctx.reveal_plain(&ctx.softmax(&xs, 1)?)
        })
    };
    let (fss, crypten) = (run(&spline), run(&SessionConfig::new(2)));
    for r in 0..6 {
        let row = &x.data()[r * 10..r * 10 + 10];
        let g = &fss.data()[r * 10..r * 10 + 10];
        let c = &crypten.data()[r * 10..r * 10 + 10];
        check_softmax_row_with(
            row,
            g,
            &format!("fss softmax row {r}"),
            true,
            recip_spline_ref,
            0.0,
        );
        let (wf, bf) = softmax_twin_with(row, exp_spline_ref, recip_spline_ref);
        let (wc, bc) = softmax_twin(row, recip_ref);
        for i in 0..10 {
            let b = bf[i] + bc[i] + (wf[i] - wc[i]).abs();
            assert!(
                (g[i] - c[i]).abs() <= b,
                "row {r} [{i}]: fss {} crypten {} bound {b}",
                g[i],
                c[i]
            );
        }
    }
}

/// LayerNorm under `--protocols fss` (inv_sqrt by the spline) against its twin and the
/// exact function, for the same rows as the crypten tests (variances 0.07 to 80), and
/// against the crypten suite within the sum of the two runs' bounds against the exact
/// function (CrypTen's includes its documented inv_sqrt error).
#[test]
fn fss_layernorm_matches_twin_exact_and_the_crypten_suite() {
    for (h, eps, seed) in [(16, 1e-5, 1002), (24, 0.01, 1102)] {
        let fss = check_layernorm_with(&fss_cfg(), h, eps, seed, inv_sqrt_spline_ref, false);
        let crypten =
            check_layernorm_with(&SessionConfig::new(2), h, eps, seed, inv_sqrt_ref, true);
        let ((f, bf), (c, bc)) = (fss, crypten);
        eprintln!(
            "layernorm h={h}: fss vs crypten max diff {:.3e}",
            f.max_abs_diff(&c)
        );
        assert_close(
            &f,
            &c,
            |i| bf[i] + bc[i],
            &format!("layernorm h={h}: fss against crypten"),
        );
    }
}

// ---------------------------------------------------------------- costs

/// Rounds and words sent by party 0 for one call (counters around the call; sharing is
/// free and the reveal is outside). Asserted for 2PC against protocols.md, printed for
/// 2 and 3 parties with `--nocapture`.
#[test]
fn costs_per_element_match_protocols_md_in_2pc() {
    let (rows, k) = (8usize, 10usize);
    let len = rows * k;
    let x = PlainTensor::from_vec(&[rows, k], (0..len).map(|i| (i % 7) as f64 - 3.0).collect());
    let gamma = FixedPoint::default().encode_tensor(&PlainTensor::from_vec(&[k], vec![1.0; k]));
    let beta = FixedPoint::default().encode_tensor(&PlainTensor::zeros(&[k]));
    type Op<'g> = Box<dyn Fn(&Ctx, &Share) -> mpc_pipe::Result<Share> + Sync + 'g>;
    // (name, op, the case whose measured 2PC cost it builds on, 2PC (rounds, words) on top
    // of that base per protocols.md; None = measured only, as a base). The bases are the
    // comparison family's (protocols.md: ltz 8 rounds and 21 words per element).
    type Case<'g> = (
        &'static str,
        Op<'g>,
        Option<&'static str>,
        Option<(u64, u64)>,
    );
    let (n_el, n_rows) = (len as u64, rows as u64);
    let cases: Vec<Case> = vec![
        (
            "max_dim (rows of 10)",
            Box::new(|c, x| c.max_dim(x, 1)),
            None,
            None,
        ),
        (
            "ltz (3 stacked copies)",
            Box::new(|c, x| {
                c.ltz(&Share(RingTensor::concat(
                    0,
                    &[x.0.clone(), x.0.clone(), x.0.clone()],
                )))
            }),
            None,
            None,
        ),
        // softmax = max + exp (8 rounds, 8n) + reciprocal_pos of the row sums (28 rounds,
        // 38 words per row) + the product (1 round, 2n).
        (
            "softmax (rows of 10)",
            Box::new(|c, x| c.softmax(x, 1)),
            Some("max_dim (rows of 10)"),
            Some((37, 10 * n_el + 38 * n_rows)),
        ),
        // PUMA = one comparison call on 3n + powers (3 rounds, n + 4n + n) + selection
        // (1 round, 6n).
        (
            "gelu (PUMA)",
            Box::new(|c, x| c.gelu(x)),
            Some("ltz (3 stacked copies)"),
            Some((4, 12 * n_el)),
        ),
        (
            "gelu (Quad)",
            Box::new(|c, x| c.gelu_with(x, GeluApprox::Quad)),
            None,
            Some((1, n_el)),
        ),
        // square (n) + inv_sqrt of the row variances (17 rounds, 23 per row) + d·r (2n).
        (
            "layernorm (h = 10)",
            Box::new(|c, x| c.layernorm(x, &gamma, &beta, 1e-5)),
            None,
            Some((19, 3 * n_el + 23 * n_rows)),
        ),
    ];
    let mut measured = std::collections::HashMap::new();
    for (name, op, base, want) in &cases {
        for n in [2usize, 3] {
            let (rounds, words) = op_cost(n, &x, op);
            println!(
                "{name}: {n} parties: {rounds} rounds, {:.2} words/elem sent by party 0",
                words as f64 / len as f64
            );
            if n != 2 {
                continue;
            }
            measured.insert(*name, (rounds, words));
            if let Some((r, w)) = want {
                let (r0, w0) = base.map_or((0, 0), |b| measured[b]);
                assert_eq!(rounds, r0 + r, "{name} rounds");
                assert_eq!(words, w0 + w, "{name} words");
            }
        }
    }
}
