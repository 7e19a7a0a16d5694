//! Transformer non-linearities (protocols.md §4, §4.1): softmax along a dim (CrypTen's,
//! with max subtraction), GeLU (PUMA piecewise polynomial by default; MPCFormer's Quad or
//! ReLU selectable) and LayerNorm over the last dim with public γ, β. Depends on
//! proto::{ctx, share, arith, trunc, approx, compare, pool} and ring.
//!
//! Costs are per element, 2 parties with local truncation, "rounds, words sent per party"
//! unless stated; with `--trunc dealer` or N > 2 each truncation adds a round, and for
//! N > 2 a comparison costs 7·⌈log2 N⌉ + 1 rounds.

use super::approx::{stack, unstack};
use super::ctx::Ctx;
use super::share::Share;
use crate::error::{Error, Result};
use crate::ring::{Protocols, RingTensor};

/// Which approximation `gelu_with` evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApprox {
    /// PUMA's piecewise polynomial (SPU `hack_gelu`): the default.
    #[default]
    Puma,
    /// MPCFormer's "Quad": 0.125x² + 0.5x + 0.25 (coefficients as in MPCFormer's code).
    Quad,
    /// Plain ReLU (MPCFormer's other option).
    Relu,
}

/// PUMA, x in [−4, −1.95): a0 + a1·x + a2·x² + a3·x³.
pub(crate) const PUMA_A: [f64; 4] = [
    -0.5054031199708174,
    -0.42226581151983866,
    -0.11807612951181953,
    -0.011034134030615728,
];
/// PUMA, x in [−1.95, 3]: b0 + b1·x + b2·x² + b4·x⁴ + b6·x⁶ (b3 = b5 = 0).
pub(crate) const PUMA_B: [f64; 7] = [
    0.008526321541038084,
    0.5,
    0.3603292692789629,
    0.0,
    -0.037688200365904236,
    0.0,
    0.0018067462606141187,
];

/// Extra fractional bits of the public polynomial coefficients: a coefficient encoded with
/// f bits errs by up to 1 ulp, which x⁶ would multiply by up to 729 on PUMA's range.
pub const POLY_COEFF_EXTRA_BITS: u32 = 8;

/// (outer, size of `dim`, inner) of a shape, after checking `dim` exists.
fn dims(shape: &[usize], dim: usize) -> Result<(usize, usize, usize)> {
    if dim >= shape.len() || shape[dim] == 0 {
        return Err(Error::Shape(format!(
            "reduction along dim {dim} of shape {shape:?}"
        )));
    }
    let outer = shape[..dim].iter().product();
    let inner = shape[dim + 1..].iter().product();
    Ok((outer, shape[dim], inner))
}

/// Sum along `dim`, keeping it with size 1 (local on shares).
fn sum_dim(t: &RingTensor, dim: usize) -> Result<RingTensor> {
    let (outer, k, inner) = dims(t.shape(), dim)?;
    let mut out = vec![0u64; outer * inner];
    for o in 0..outer {
        for j in 0..k {
            let row = &t.data()[(o * k + j) * inner..(o * k + j + 1) * inner];
            for (acc, &v) in out[o * inner..(o + 1) * inner].iter_mut().zip(row) {
                *acc = acc.wrapping_add(v);
            }
        }
    }
    let mut shape = t.shape().to_vec();
    shape[dim] = 1;
    Ok(RingTensor::from_vec(&shape, out))
}

/// Broadcast a tensor whose `dim` has size 1 back to size `k` along `dim`.
fn expand_dim(t: &RingTensor, dim: usize, k: usize) -> RingTensor {
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    let mut data = Vec::with_capacity(outer * k * inner);
    for o in 0..outer {
        let blk = &t.data()[o * inner..(o + 1) * inner];
        for _ in 0..k {
            data.extend_from_slice(blk);
        }
    }
    let mut shape = t.shape().to_vec();
    shape[dim] = k;
    RingTensor::from_vec(&shape, data)
}

impl<'a> Ctx<'a> {
    /// softmax along `dim` as CrypTen: m = max(x, dim), e = exp(x − m),
    /// out = e · reciprocal_pos(Σ e) with the row sum broadcast back.
    /// Rounds (2PC): max_dim + 8 + 28 + 1; words: max_dim + 8n + 38·(n/k) + 2n for rows of
    /// length k. Under `--protocols fss` the reciprocal is proto::spline's (4 rounds,
    /// 11·(n/k) words), and with `--exp spline` so is exp (`exp_nonpos`: 3 rounds, 11n
    /// words, within a few ulp): max_dim + 3 + 4 + 1 rounds.
    ///
    /// Accuracy (limit form; the spline's is in proto::spline): the row maximum maps to exp(0) = 1 exactly in 2PC, so Σe ∈ [1, k] and the
    /// reciprocal is in its converged range; entries with x − m < −10 come out as ~0
    /// (exp's limit form, relative error ≤ exp(z²/(512(1 − |z|/256))) − 1 at z = x − m).
    /// Spreads x − m below −256 break exp (protocols.md §4), as in CrypTen.
    pub fn softmax(&self, x: &Share, dim: usize) -> Result<Share> {
        let (outer, k, inner) = dims(x.shape(), dim)?;
        let mut keep = x.shape().to_vec();
        keep[dim] = 1;
        let m = self.max_dim(x, dim)?;
        if m.len() != outer * inner {
            return Err(Error::Shape(format!(
                "max along dim {dim} of {:?} has shape {:?}",
                x.shape(),
                m.shape()
            )));
        }
        let m = m.reshape(&keep)?;
        let z = x.sub(&Share(expand_dim(&m.0, dim, k)));
        let e = self.exp_nonpos(&z)?;
        let r = self.reciprocal_pos(&Share(sum_dim(&e.0, dim)?))?;
        self.mul(&e, &Share(expand_dim(&r.0, dim, k)))
    }

    /// GeLU by the default approximation (`GeluApprox::Puma`).
    pub fn gelu(&self, x: &Share) -> Result<Share> {
        self.gelu_with(x, GeluApprox::default())
    }

    /// GeLU by the chosen approximation.
    pub fn gelu_with(&self, x: &Share, approx: GeluApprox) -> Result<Share> {
        match approx {
            GeluApprox::Puma => self.gelu_puma(x),
            GeluApprox::Quad => self.gelu_quad(x),
            GeluApprox::Relu => self.relu(x),
        }
    }

    /// PUMA's GeLU (protocols.md §4.1 [M]): 0 for x < −4, a cubic on [−4, −1.95), a
    /// degree-6 even-plus-linear polynomial on [−1.95, 3], x above 3.
    /// The three comparisons x < −4, x < −1.95, x > 3 are one `ltz` on the stacked shifted
    /// copies [x + 4, x + 1.95, 3 − x]; the powers x², then (x³, x⁴) in one product, then
    /// x⁶ = (x³)² take 3 rounds (degree 6 needs ⌈log2 6⌉ = 3; protocols.md's "2 mul
    /// rounds" is one short); both polynomials are sums of raw public-coefficient products
    /// (coefficients with f + 8 fractional bits) under one truncation; the selection
    /// z1·p3 + z2·p6 + z3·x by the disjoint indicator bits is one product round without
    /// truncation. 2PC: 8 + 3 + 1 = 12 rounds, 63n + 6n + 6n = 75n words; N > 2:
    /// (7·⌈log2 N⌉ + 1) + 6 + 1 + 1 rounds.
    ///
    /// Accuracy against the exact GeLU x·Φ(x) (f64, fine grid): ≤ 1.3e-4 for x < −4,
    /// ≤ 7.6e-4 on [−4, −1.95), ≤ 8.6e-3 on [−1.95, 2.5] (8.5e-3 at 0, the polynomial's
    /// constant term), 0.020 at x = 3 (the polynomial's end), ≤ 4.1e-3 for x > 3.
    /// Out-of-range powers (|x| large) may overflow or fail to truncate, but they are
    /// multiplied by a zero bit and vanish exactly.
    ///
    /// Under `--protocols fss`: proto::spline's `gelu_puma_fss`, the same polynomials with
    /// the three indicators from one interval-containment key and the powers and selection
    /// regrouped, each value opened once (3 rounds, 10 words; its doc gives the costs and
    /// the rounding).
    pub fn gelu_puma(&self, x: &Share) -> Result<Share> {
        if self.fixed().protocols == Protocols::Fss {
            return self.gelu_puma_fss(x);
        }
        let f = self.frac_bits();
        let n = x.shape();
        // Bits: b0 = [x < −4], b1 = [x < −1.95], b2 = [3 − x < 0] = [x > 3].
        let shifted = stack(&[
            &self.add_const(x, 4.0),
            &self.add_const(x, 1.95),
            &self.add_const(&x.neg(), 3.0),
        ]);
        let bits = unstack(&self.ltz(&shifted)?, &[n, n, n]);
        let (b0, b1, b2) = (&bits[0], &bits[1], &bits[2]);
        let z1 = b1.sub(b0);
        let z2 = self.add_raw(&b1.add(b2).neg(), 1);

        let x2 = self.square(x)?;
        let x34 = unstack(&self.mul(&stack(&[&x2, &x2]), &stack(&[x, &x2]))?, &[n, n]);
        let (x3, x4) = (&x34[0], &x34[1]);
        let x6 = self.square(x3)?;

        let g = POLY_COEFF_EXTRA_BITS;
        let coeff = |c: f64| crate::ring::encode_at(c, f + g);
        let weighted = |terms: &[(f64, &Share)]| {
            let mut acc = RingTensor::zeros(n);
            for (c, p) in terms {
                acc.add_assign(&p.0.scale(coeff(*c)));
            }
            acc
        };
        let p3 = weighted(&[(PUMA_A[1], x), (PUMA_A[2], &x2), (PUMA_A[3], x3)]);
        let p6 = weighted(&[
            (PUMA_B[1], x),
            (PUMA_B[2], &x2),
            (PUMA_B[4], x4),
            (PUMA_B[6], &x6),
        ]);
        let (p3, p6) = self.trunc_bits_pair(&Share(p3), &Share(p6), f + g)?;
        let p3 = self.add_const(&p3, PUMA_A[0]);
        let p6 = self.add_const(&p6, PUMA_B[0]);

        let sel = self.mul_raw(&stack(&[&z1, &z2, b2]), &stack(&[&p3, &p6, x]))?;
        let sel = unstack(&sel, &[n, n, n]);
        Ok(sel[0].add(&sel[1]).add(&sel[2]))
    }

    /// MPCFormer's Quad GeLU 0.125x² + 0.5x + 0.25: one square, and x²/8 + x/2 under one
    /// truncation by f + 3 bits. 2PC: 1 round, n words; N > 2: 2 rounds. Accuracy against
    /// GeLU is poor by design (0.25 at x = 0); MPCFormer distils the model to it.
    pub fn gelu_quad(&self, x: &Share) -> Result<Share> {
        let f = self.frac_bits();
        let mut raw = self.square_raw(x)?;
        raw.0.add_assign(&x.0.scale(1u64 << (f + 2)));
        let y = self.trunc_bits(&raw, f + 3)?;
        Ok(self.add_const(&y, 0.25))
    }

    /// LayerNorm over the last dim (protocols.md §4.1 [I], exact form):
    /// μ = mean(x), d = x − μ, v = mean(d²), r = inv_sqrt(v + eps), y = d·r·γ + β, with γ,
    /// β public fixed-point tensors of shape [h]. Means are a local sum and `div_public` by
    /// h. 2PC: 1 (square) + 17 (inv_sqrt) + 1 (d·r) = 19 rounds, 3n + 23·(n/h) words;
    /// N > 2: 1 + 2 + 1 + 37 + 2 + 1 = 44 rounds. Under `--protocols fss` inv_sqrt is
    /// proto::spline's: 1 + 4 + 1 = 6 rounds.
    ///
    /// Accuracy is inv_sqrt's on v + eps: relative error of r ≤ 0.5% for variances in
    /// [0.1, 150], 5.6% down to 0.049, 40% at 0.01 (CrypTen's 3 iterations from y0 ≈ 2 do
    /// not reach 1/√v); eps below one ulp (e.g. 1e-5 at f = 16) encodes to 0. Under fss:
    /// within (1.2/√v + 5)u + 1.6e-5 of 1/√v for v in [2^-8, 2^20) (proto::spline's bound
    /// with its largest relative terms; 1.1e-4 at v = 1), so BERT-base's
    /// max_abs_err falls from ~0.4 to ~0.05 (results/fss-runs.md).
    pub fn layernorm(
        &self,
        x: &Share,
        gamma: &RingTensor,
        beta: &RingTensor,
        eps: f64,
    ) -> Result<Share> {
        let nd = x.shape().len();
        if nd == 0 {
            return Err(Error::Shape("layernorm of a scalar".into()));
        }
        let last = nd - 1;
        let (_, h, _) = dims(x.shape(), last)?;
        if gamma.shape() != [h] || beta.shape() != [h] {
            return Err(Error::Shape(format!(
                "layernorm over {h} features with gamma {:?} and beta {:?}",
                gamma.shape(),
                beta.shape()
            )));
        }
        let rows = x.len() / h;
        let mu = self.div_public(&Share(sum_dim(&x.0, last)?), h as u64)?;
        let d = x.sub(&Share(expand_dim(&mu.0, last, h)));
        let v = self.div_public(&Share(sum_dim(&self.square(&d)?.0, last)?), h as u64)?;
        let r = self.inv_sqrt(&self.add_const(&v, eps))?;
        let y = self.mul(&d, &Share(expand_dim(&r.0, last, h)))?;
        let tile = |t: &RingTensor| t.repeat_leading(rows).reshape(x.shape());
        let y = self.mul_public_tensor(&y, &tile(gamma)?)?;
        Ok(self.add_public(&y, &tile(beta)?))
    }
}
