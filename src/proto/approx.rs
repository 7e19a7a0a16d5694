//! Function approximations on fixed-point shares (protocols.md §4): exp (limit form),
//! reciprocal and inverse square root (Newton–Raphson), sqrt, and division by a public
//! integer; under `--protocols fss` reciprocal and inverse square root are proto::spline's,
//! and so is softmax's exp on x ≤ 0 (`exp_nonpos`, `--exp`). Defaults are CrypTen's (configs/default.yaml): exp 8 iterations, reciprocal
//! 10 NR iterations from y0 = 3·exp(1 − 2x) + 0.003, inv_sqrt 3 NR iterations from
//! y0 = 2.2·exp(−(x/2 + 0.2)) + 0.2 − x/1024. Depends on proto::{ctx, share, arith, trunc,
//! compare} and ring.
//!
//! Costs are given per element as "rounds, words sent per party" for 2 parties with the
//! default local truncation; for N > 2 (or `--trunc dealer`) every truncation is one more
//! round (protocols.md §3.5). u = 2^-f is one ulp; every truncation errs by less than 2u
//! (local: each share rounds toward zero; dealer: floor or floor + 1), and local truncation
//! fails outright with probability ≈ |v|/2^31 for a result v.

use super::ctx::Ctx;
use super::share::Share;
use crate::error::{Error, Result};
use crate::ring::{ExpApprox, Protocols, RingTensor};

/// CrypTen's `exp_iterations`: e^x ≈ (1 + x/2^8)^(2^8).
pub const EXP_ITERATIONS: u32 = 8;
/// CrypTen's `reciprocal_nr_iters`.
pub const RECIPROCAL_NR_ITERS: usize = 10;
/// CrypTen's `sqrt_nr_iters`.
pub const SQRT_NR_ITERS: usize = 3;
/// Householder iterations and series order of `ln` (CrypTen's log_iterations, log_order).
pub const LOG_ITERATIONS: usize = 2;
pub const LOG_ORDER: usize = 8;
/// Extra fractional bits of ln's series coefficients 1/i.
const LOG_COEFF_EXTRA_BITS: u32 = 8;

/// Stack shares of one length into one flat share, so one protocol call (one round)
/// serves them all; `unstack` undoes it. Element-major ([n][k]: element i of every part,
/// then element i + 1): a lane's part of each input is then one contiguous run of the
/// stack, so its material is its part of the whole tensor's (bit-identical schedules).
pub(crate) fn stack(parts: &[&Share]) -> Share {
    let n = parts[0].len();
    assert!(
        parts.iter().all(|p| p.len() == n),
        "stack of shares of different lengths"
    );
    let mut flat = Vec::with_capacity(n * parts.len());
    for i in 0..n {
        flat.extend(parts.iter().map(|p| p.0.data()[i]));
    }
    let len = flat.len();
    Share(RingTensor::from_vec(&[len], flat))
}

/// Split a stacked share back into pieces of the given shapes (each of the stacked length).
pub(crate) fn unstack(x: &Share, shapes: &[&[usize]]) -> Vec<Share> {
    let k = shapes.len();
    (0..k)
        .map(|j| {
            let data = x.0.data().iter().skip(j).step_by(k).copied().collect();
            Share(RingTensor::from_vec(shapes[j], data))
        })
        .collect()
}

impl<'a> Ctx<'a> {
    /// e^x by the limit form (1 + x/2^8)^(2^8) (§4): one truncation by 8 bits, then 8
    /// squarings. 2PC: 8 rounds, 8n words; N > 2: 17 rounds (1 + 8·2).
    ///
    /// Accuracy of the approximation: for |x| < 256, |256·ln(1 + x/256) − x| ≤
    /// x²/(512·(1 − |x|/256)), so the relative error is at most
    /// exp(x²/(512·(1 − |x|/256))) − 1: 5.1% at x = 5, 22% at x = −10 (absolute 1e-5 there).
    /// Fixed point: the 2u error of x/256 is raised to the power 256, i.e. a relative error
    /// of about 256·2u = 2^-7 of the result, plus 2u per squaring amplified by the later
    /// squarings. For x < −256 the base turns negative and the result is wrong; for
    /// x > ~10 the result grows large and 2PC truncation failures become likely.
    pub fn exp(&self, x: &Share) -> Result<Share> {
        let mut y = self.add_const(&self.trunc_bits(x, EXP_ITERATIONS)?, 1.0);
        for _ in 0..EXP_ITERATIONS {
            y = self.square(&y)?;
        }
        Ok(y)
    }

    /// e^x for inputs known to be ≤ 0 (softmax's x − max): the session's `ExpApprox`,
    /// `exp`'s limit form by default, or (`--exp spline`, fss only) proto::spline's
    /// `exp_fss` (3 rounds, within a few ulp; its doc).
    pub fn exp_nonpos(&self, x: &Share) -> Result<Share> {
        match self.fixed().exp_approx() {
            ExpApprox::Spline => self.exp_fss(x),
            ExpApprox::Limit => self.exp(x),
        }
    }

    /// 1/x for x > 0 (CrypTen `reciprocal(all_pos=True)`, method "NR"): initial guess
    /// y0 = 3·exp(1 − 2x) + 0.003, then 10 iterations y ← 2y − x·y² (a square, then a
    /// product by x, in CrypTen's order). 2PC: 8 + 10·2 = 28 rounds, 8n + 10·3n = 38n
    /// words; N > 2: 17 + 10·4 = 57 rounds.
    ///
    /// Domain: 0.0012 ≲ x < 256. Above 256.5 the exp of the initial guess blows up (its
    /// base 1 + (1 − 2x)/256 falls below −1); below ~0.0012 ten iterations no longer
    /// converge from y0 ≈ 8.15. On [0.003, 250] the iteration converges (relative
    /// residual ≤ 4e-8 in f64, worst near x = 5 where y0 ≈ 0.003 starts far below 1/x),
    /// so the error is the fixed-point one: each iteration adds (2x + 2)u (the 2u error of
    /// y² is multiplied by x), which Newton's contraction does not remove, i.e. about
    /// (2x + 2)u absolute in the result (e.g. 3e-3 at x = 100, where 1/x = 0.01: y² is
    /// only ~6 ulp there).
    ///
    /// Under `--protocols fss`: proto::spline's piecewise-constant guess and a cubic
    /// refinement instead (4 rounds; its doc gives domain and accuracy).
    pub fn reciprocal_pos(&self, x: &Share) -> Result<Share> {
        if self.fixed().protocols == Protocols::Fss {
            return self.reciprocal_fss(x, false);
        }
        // 1 − 2x: integer product, no truncation; then exp and ·3 (integer) + 0.003.
        let arg = self.add_const(&x.mul_int(-2), 1.0);
        let mut y = self.add_const(&self.exp(&arg)?.mul_int(3), 0.003);
        for _ in 0..RECIPROCAL_NR_ITERS {
            let xy2 = self.mul(x, &self.square(&y)?)?;
            y = y.mul_int(2).sub(&xy2);
        }
        Ok(y)
    }

    /// 1/x for x of either sign (CrypTen `reciprocal`): s = 1 − 2·ltz(x), work on s·x
    /// (a product by a scale-1 bit, no truncation), multiply the result by s.
    /// 2PC: 8 + 1 + 28 + 1 = 38 rounds, 21n + 2n + 38n + 2n = 63n words.
    /// Domain and accuracy as `reciprocal_pos` on |x|; x = 0 gives a large garbage value.
    ///
    /// Under `--protocols fss`: proto::spline's guess mirrored to x < 0, so the sign needs
    /// no comparison of its own (4 rounds).
    pub fn reciprocal(&self, x: &Share) -> Result<Share> {
        if self.fixed().protocols == Protocols::Fss {
            return self.reciprocal_fss(x, true);
        }
        let s = self.add_raw(&self.ltz(x)?.mul_int(-2), 1);
        let abs = self.mul_raw(x, &s)?;
        let r = self.reciprocal_pos(&abs)?;
        self.mul_raw(&r, &s)
    }

    /// 1/√x for x > 0 (CrypTen `inv_sqrt`, NR): y0 = 2.2·exp(−(x/2 + 0.2)) + 0.2 − x/1024,
    /// then 3 iterations y ← y·(3 − x·y²)/2 (square, product by x, product by y).
    /// 2PC: 8 + 3·3 = 17 rounds, 8n + 3·5n = 23n words. N > 2: 1 + 17 + 1 + 3·6 = 37
    /// rounds: x/2 and x/1024 come from one truncation of the stack [512x, x] by 10 bits,
    /// and the halving is folded into the truncation of the product by y (CrypTen truncates
    /// twice there; one truncation is both cheaper and more accurate).
    ///
    /// Accuracy of the approximation (relative error |y·√x − 1|, f64, measured on a
    /// geometric grid): ≤ 0.5% on [0.1, 150] (≤ 0.31% on [0.2, 100]), 5.6% on [0.049, 0.1],
    /// 40% at x = 0.01 (too few iterations from y0 ≈ 2), and it degrades fast above 150
    /// (78% at 200; y0 turns negative above ~205).
    ///
    /// Under `--protocols fss`: proto::spline's piecewise-constant y0 and y0² and a cubic
    /// refinement instead (4 rounds; its doc gives domain and accuracy).
    pub fn inv_sqrt(&self, x: &Share) -> Result<Share> {
        if self.fixed().protocols == Protocols::Fss {
            return self.inv_sqrt_fss(x);
        }
        let f = self.frac_bits();
        let (x_half, x_1024) = self.trunc_bits_pair(&x.mul_int(512), x, 10)?;
        let e = self.exp(&self.add_const(&x_half.neg(), -0.2))?;
        let mut y = self.add_const(&self.mul_public(&e, 2.2)?, 0.2).sub(&x_1024);
        for _ in 0..SQRT_NR_ITERS {
            let xy2 = self.mul(x, &self.square(&y)?)?;
            let w = self.add_const(&xy2.neg(), 3.0);
            y = self.trunc_bits(&self.mul_raw(&y, &w)?, f + 1)?;
        }
        Ok(y)
    }

    /// √x = x · inv_sqrt(x) (CrypTen). 2PC: 18 rounds, 25n words. Domain as `inv_sqrt`;
    /// the relative error is inv_sqrt's plus x·(its absolute error)/√x from fixed point.
    pub fn sqrt(&self, x: &Share) -> Result<Share> {
        let r = self.inv_sqrt(x)?;
        self.mul(x, &r)
    }

    /// ln(x) for x > 0 (CrypTen `log`): y0 = x/120 − 20·exp(−2x − 1) + 3, then
    /// `LOG_ITERATIONS` (2) Householder iterations of order 8: h = 1 − x·exp(−y),
    /// y ← y − Σ_{i=1..8} h^i/i. The series is summed with coefficients carrying
    /// `LOG_COEFF_EXTRA_BITS` more fractional bits and truncated once. 2PC rounds:
    /// 8 + 2·(8 + 1 + 7 + 1) = 42 (+ the division by 120, free).
    ///
    /// Used for the training loss, on x = Σ exp(z − max z) ∈ [1, K]. The iteration
    /// converges to the y with x·exp(−y) = 1 for the engine's exp, so ln's error is exp's
    /// relative error at −y taken as an absolute error in y: the limit form's
    /// e^(y²/512/(1 − y/256)) − 1 (1.05e-2 at x = 10) plus exp's fixed-point 2^-7 at most
    /// (tests/approx.rs: 1.3e-2 measured on [1, 10]), the same as CrypTen's log with its
    /// default exp.
    pub fn ln(&self, x: &Share) -> Result<Share> {
        let term1 = self.div_public(x, 120)?;
        let term2 = self.exp(&self.add_const(&x.mul_int(-2), -1.0))?.mul_int(20);
        let mut y = self.add_const(&term1.sub(&term2), 3.0);
        let g = LOG_COEFF_EXTRA_BITS;
        for _ in 0..LOG_ITERATIONS {
            let e = self.exp(&y.neg())?;
            let h = self.add_const(&self.mul(x, &e)?.neg(), 1.0);
            let mut acc = h.0.scale(1 << g);
            let mut p = h.clone();
            for i in 2..=LOG_ORDER {
                p = self.mul(&p, &h)?;
                let c = ((1u64 << g) as f64 / i as f64).round() as u64;
                acc.add_assign(&p.0.scale(c));
            }
            y = y.sub(&self.trunc_bits(&Share(acc), g)?);
        }
        Ok(y)
    }

    /// x / d for a public positive integer d, as CrypTen's division of a share by an int
    /// (used by `mean`). A power of two is one truncation. Otherwise x is multiplied by the
    /// integer c = round(2^(f+k)/d) with 2^(k-1) < d ≤ 2^k, so c has f + 1 significant bits,
    /// and truncated by f + k bits: relative error ≤ 2^-(f+1) plus 2u, where a
    /// `mul_public(x, 1/d)` would lose up to d·u relative to the encoding of 1/d. Free in
    /// 2PC; 1 round for N > 2. The value before truncation is |x|·2^(2f)·2^k/d < |x|·2^(2f+1),
    /// so in 2PC it fails with probability about 2|x|/2^31, as a product of size 2|x|.
    /// d up to 2^(61 − f) (the truncation must stay below 62 bits).
    pub fn div_public(&self, x: &Share, d: u64) -> Result<Share> {
        if d == 0 {
            return Err(Error::Config("division of a share by zero".into()));
        }
        if d.is_power_of_two() {
            return self.trunc_bits(x, d.trailing_zeros());
        }
        let k = 64 - (d - 1).leading_zeros();
        let shift = self.frac_bits() + k;
        let c = (((1u128 << shift) + (d as u128) / 2) / d as u128) as u64;
        self.trunc_bits(&Share(x.0.scale(c)), shift)
    }
}
