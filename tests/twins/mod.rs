//! f64 twins of the approximation protocols (same algorithm, same public constants as
//! encoded), each returning the value and a rigorous bound on the MPC result's distance
//! from it, plus the documented accuracy of the approximations against the true functions.
//! Shared by tests/approx.rs and tests/nn.rs; written independently of src/proto.
//!
//! Error model: every truncation errs by less than T = 2 ulp (2PC: each share is rounded
//! toward zero; N > 2: floor minus at most one). Products of scale-1 bits and integer
//! products are exact. The propagation formulas are exact identities for each step's
//! polynomial map plus the truncation terms, so the bounds hold for any rounding pattern
//! (barring the 2PC truncation failure, probability ≈ |v|/2^31 per product v).
#![allow(dead_code)]

use super::common::ULP;

/// Error bound of one truncation.
pub const T: f64 = 2.0 * ULP;

/// A public constant as the encoder stores it (truncated toward zero at 16 bits).
pub fn q(c: f64) -> f64 {
    ((c * 65536.0) as i64) as f64 / 65536.0
}

/// f64 twin of `Ctx::exp` for an input known up to `ex`: returns (value, bound on the MPC
/// error). y0 = 1 + x/256 (one truncation), then y ← y² 8 times; a squaring maps an error
/// e on y to at most 2|y|e + e² plus T.
pub fn exp_ref(x: f64, ex: f64) -> (f64, f64) {
    let (mut y, mut e) = (1.0 + x / 256.0, ex / 256.0 + T);
    for _ in 0..8 {
        e = 2.0 * y.abs() * e + e * e + T;
        y *= y;
    }
    (y, e)
}

/// Documented relative error of the limit form at x (|x| < 256):
/// |256·ln(1 + x/256) − x| ≤ x²/(512·(1 − |x|/256)).
pub fn exp_limit_rel_err(x: f64) -> f64 {
    (x * x / (512.0 * (1.0 - x.abs() / 256.0))).exp() - 1.0
}

/// f64 twin of `Ctx::reciprocal_pos` for x > 0 known up to `ex`: y0 = 3·exp(1 − 2x) + 0.003,
/// then 10 × y ← 2y − x·y². With x̂ = x + ξ and ŷ = y + e the MPC step computes
/// 2ŷ − (x̂(ŷ² + δ1) + δ2), and 2ŷ − x̂ŷ² − (2y − xy²) = (2 − 2xy)e − x e² − ξ(y + e)², so
/// e' ≤ |2 − 2xy|e + x e² + ex(|y| + e)² + (x + ex)T + T.
pub fn recip_ref(x: f64, ex: f64) -> (f64, f64) {
    let (ev, ee) = exp_ref(1.0 - 2.0 * x, 2.0 * ex);
    let (mut y, mut e) = (3.0 * ev + q(0.003), 3.0 * ee);
    for _ in 0..10 {
        e = (2.0 - 2.0 * x * y).abs() * e
            + x * e * e
            + ex * (y.abs() + e).powi(2)
            + (x + ex) * T
            + T;
        y = 2.0 * y - x * y * y;
    }
    (y, e)
}

/// f64 twin of `Ctx::inv_sqrt` for x > 0 known up to `ex`: x/2 and x/1024 (one truncation
/// each), y0 = 2.2·exp(−x/2 − 0.2) + 0.2 − x/1024, then 3 × y ← y(3 − x·y²)/2 computed as
/// s = ŷ² + δ1, t = x̂s + δ2, ŷ' = ŷ(3 − t)/2 + δ3. With g(y) = (3y − xy³)/2:
/// g(y + e) − g(y) = (3 − 3xy²)e/2 − x(3ye² + e³)/2, the input error adds ξŷ³/2 and the
/// roundings ŷ(x̂δ1 + δ2)/2 + δ3.
pub fn inv_sqrt_ref(x: f64, ex: f64) -> (f64, f64) {
    let (ev, ee) = exp_ref(-(x / 2.0) + q(-0.2), ex / 2.0 + T);
    let mut y = q(2.2) * ev + q(0.2) - x / 1024.0;
    let mut e = q(2.2) * ee + T + ex / 1024.0 + T;
    for _ in 0..3 {
        let ya = y.abs() + e;
        e = (3.0 - 3.0 * x * y * y).abs() / 2.0 * e
            + x * (3.0 * y.abs() * e * e + e * e * e) / 2.0
            + ex * ya.powi(3) / 2.0
            + ya * ((x + ex) * T + T) / 2.0
            + T;
        y = y * (3.0 - x * y * y) / 2.0;
    }
    (y, e)
}

/// Documented relative error |y·√x − 1| of CrypTen's inv_sqrt approximation (f64, measured
/// on geometric grids of 8000-40000 points per interval, rounded up; see `Ctx::inv_sqrt`).
pub fn inv_sqrt_rel_err(x: f64) -> f64 {
    if (0.1..=150.0).contains(&x) {
        0.005
    } else if (0.049..0.1).contains(&x) {
        0.056
    } else if (150.0..=200.0).contains(&x) {
        0.78
    } else {
        panic!("inv_sqrt accuracy not documented at {x}")
    }
}
