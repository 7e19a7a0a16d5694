//! Comparisons (protocols.md §3.8, §3.9): msb/ltz by A2B and the sign bit, the derived
//! lt/gt/le/ge/eq/sign/abs against shares and public constants, and ReLU. Results of
//! comparisons are raw bits of scale 1 (ring value 0 or 1), so multiplying a fixed-point
//! value by them needs no truncation. Depends on proto::{ctx, share, arith, convert}, ring.

use super::ctx::Ctx;
use super::share::Share;
use crate::error::{Error, Result};
use crate::ring::Protocols;

impl<'a> Ctx<'a> {
    /// [x < 0] as a bit of scale 1 (§3.8): A2B, bit 63 (shifted down locally, XOR-linear),
    /// B2A of that bit. 2PC: 8 rounds, 21n words per party; N > 2: 7·⌈log2 N⌉ + 1 rounds.
    /// Exact whenever the ring value is the intended signed 64-bit integer. Under
    /// `--protocols fss`, the FSS gate instead (proto::fss: 1 round, n words, 2PC only).
    pub fn ltz(&self, x: &Share) -> Result<Share> {
        if self.fixed().protocols == Protocols::Fss {
            return self.ltz_fss(x);
        }
        let b = self.a2b(x)?;
        self.b2a_bit(&b.shr_logical(63))
    }

    /// The most significant bit of x, i.e. `ltz` (CrypTen's name for the same circuit).
    pub fn msb(&self, x: &Share) -> Result<Share> {
        self.ltz(x)
    }

    /// 1 − b for bits b of scale 1 (party 0 adds the 1).
    pub fn bit_not(&self, b: &Share) -> Share {
        self.add_raw(&b.neg(), 1)
    }

    /// A scale-1 value (a bit, a small integer) as fixed point: local multiply by 2^f, so
    /// it can be revealed with `reveal_plain` or added to fixed-point values.
    pub fn bit_to_fixed(&self, b: &Share) -> Share {
        Share(b.0.scale(1u64 << self.frac_bits()))
    }

    /// [x < y] = ltz(x − y).
    pub fn lt(&self, x: &Share, y: &Share) -> Result<Share> {
        self.ltz(&sub_checked(x, y, "lt")?)
    }
    /// [x > y] = ltz(y − x).
    pub fn gt(&self, x: &Share, y: &Share) -> Result<Share> {
        self.ltz(&sub_checked(y, x, "gt")?)
    }
    /// [x ≥ y] = 1 − ltz(x − y).
    pub fn ge(&self, x: &Share, y: &Share) -> Result<Share> {
        Ok(self.bit_not(&self.lt(x, y)?))
    }
    /// [x ≤ y] = 1 − ltz(y − x).
    pub fn le(&self, x: &Share, y: &Share) -> Result<Share> {
        Ok(self.bit_not(&self.gt(x, y)?))
    }

    /// x − c for a public real c, encoded as the inputs are.
    fn sub_const(&self, x: &Share, c: f64) -> Share {
        self.add_raw(x, self.fixed().encode(c).wrapping_neg())
    }
    /// [x < c] for a public real c (same cost as against a share).
    pub fn lt_const(&self, x: &Share, c: f64) -> Result<Share> {
        self.ltz(&self.sub_const(x, c))
    }
    /// [x > c] for a public real c.
    pub fn gt_const(&self, x: &Share, c: f64) -> Result<Share> {
        self.ltz(&self.sub_const(x, c).neg())
    }
    /// [x ≥ c] for a public real c.
    pub fn ge_const(&self, x: &Share, c: f64) -> Result<Share> {
        Ok(self.bit_not(&self.lt_const(x, c)?))
    }
    /// [x ≤ c] for a public real c.
    pub fn le_const(&self, x: &Share, c: f64) -> Result<Share> {
        Ok(self.bit_not(&self.gt_const(x, c)?))
    }

    /// [x = y]. 2PC: CrypTen's dedicated circuit on d = x − y (`_eqz_2PC`): party 0
    /// XOR-shares d_0 and party 1 XOR-shares −d_1 for free; d = 0 iff the two words agree,
    /// so XNOR them and AND-reduce the 64 bits in 6 rounds (t ← t AND t≫s, s = 32..1),
    /// then B2A of bit 0: 7 rounds, 13n words. N > 2: 1 − ltz(d) − ltz(−d) with the pair
    /// stacked in one ltz (7·⌈log2 N⌉ + 1 rounds). Exact for |d| < 2^63.
    pub fn eq(&self, x: &Share, y: &Share) -> Result<Share> {
        self.eqz(&sub_checked(x, y, "eq")?)
    }
    /// [x = c] for a public real c.
    pub fn eq_const(&self, x: &Share, c: f64) -> Result<Share> {
        self.eqz(&self.sub_const(x, c))
    }

    /// [d = 0].
    pub fn eqz(&self, d: &Share) -> Result<Share> {
        let n = d.len();
        if self.parties() == 2 {
            let me = self.party();
            let mine = if me == 0 { d.0.clone() } else { d.0.neg() };
            let a = self.share_input_bin(0, (me == 0).then_some(&mine), d.shape())?;
            let b = self.share_input_bin(1, (me == 1).then_some(&mine), d.shape())?;
            // XNOR: party 0 flips every bit.
            let mut t = self.xor_public(&a.xor(&b), u64::MAX);
            for s in [32, 16, 8, 4, 2, 1] {
                t = self.and(&t, &t.shr_logical(s))?;
            }
            return self.b2a_bit(&t);
        }
        let flat = d.reshape(&[n])?;
        let stacked = super::approx::stack(&[&flat, &flat.neg()]);
        let l = self.ltz(&stacked)?;
        let halves = super::approx::unstack(&l, &[&[n], &[n]]);
        let ne = Share(halves[0].0.add(&halves[1].0).reshape(d.shape())?);
        Ok(self.bit_not(&ne))
    }

    /// sign(x) = 1 − 2·ltz(x) ∈ {−1, 1} of scale 1 (sign(0) = 1, as CrypTen).
    pub fn sign(&self, x: &Share) -> Result<Share> {
        let b = self.ltz(x)?;
        Ok(self.add_raw(&b.mul_int(-2), 1))
    }

    /// |x| = x·sign(x): one ltz and one product by a scale-1 value (no truncation, exact).
    pub fn abs(&self, x: &Share) -> Result<Share> {
        let s = self.sign(x)?;
        self.mul_raw(x, &s)
    }

    /// ReLU (§3.9): x·(1 − ltz(x)), the product by a scale-1 bit without truncation, so the
    /// result is exactly the input or 0. 2PC: 9 rounds, 23n words; N > 2: 7·⌈log2 N⌉ + 2.
    pub fn relu(&self, x: &Share) -> Result<Share> {
        Ok(self.relu_with_mask(x)?.0)
    }

    /// ReLU and its mask [x ≥ 0] (scale 1), e.g. for a backward pass. Under
    /// `--protocols fss`: the FSS ReLU gate, both from one opening (1 round, n words).
    pub fn relu_with_mask(&self, x: &Share) -> Result<(Share, Share)> {
        if self.fixed().protocols == Protocols::Fss {
            return self.relu_fss(x);
        }
        let mask = self.bit_not(&self.ltz(x)?);
        let y = self.mul_raw(x, &mask)?;
        Ok((y, mask))
    }
}

fn sub_checked(x: &Share, y: &Share, op: &str) -> Result<Share> {
    if x.shape() != y.shape() {
        return Err(Error::Shape(format!(
            "{op} of shapes {:?} and {:?}",
            x.shape(),
            y.shape()
        )));
    }
    Ok(x.sub(y))
}
