//! Truncation after fixed-point products (protocols.md §3.5). Depends on proto::ctx, ring,
//! offline.
//!
//! Two protocols; `FixedPoint::trunc` chooses (`--trunc`, bench key `trunc`), and every
//! party and the dry run that records the plan see the same choice through the `Ctx`.
//!
//! Local (the default for N = 2, as CrypTen; refused for N > 2): every party divides its
//! signed share by 2^s rounding toward zero. No communication, off by less than 2 ulp
//! (each share rounds), except when the two signed shares' sum overflows, with probability
//! |x|/2^64 per element for a uniform share (one run of tests/arith.rs saw 124 failures in
//! 4102 elements where this predicts ~130): then the result is off by about 2^(64-s) (2^48 at s = 16, a
//! real error of 2^32 ≈ 4e9).
//!
//! Dealer (the default for N > 2, and chosen for N = 2 with `--trunc dealer`):
//! dealer-assisted, one round, correct for every |x| < 2^62. The reference's wraps
//! protocol (CrypTen) ignores the wrap of x + r, which fails with probability ~|x|/2^64 and
//! needs a gather plus count_wraps; this equivalent always returns floor(x / 2^s) or that
//! plus one (error below one ulp, mean about zero). The
//! dealer gives shares of a uniform r, of r_hi = (r mod 2^63) >> s and of r_msb = r >> 63.
//!   x' = x + 2^62 ∈ [0, 2^63)          (party 0 adds 2^62)
//!   c  = open(x' + r)                   (uniform: hides x)
//!   s_msb = c_msb XOR r_msb             (bit 63 of x' + (r mod 2^63), which cannot wrap)
//!   x' >> s ≈ (c mod 2^63) >> s - r_hi + s_msb·2^(63-s)   (floor(a) - floor(b) is
//!            floor(a - b) or one more)
//!   x >> s = x' >> s - 2^(62-s)
//! Each party sends n words to each peer.

use super::approx::{stack, unstack};
use super::ctx::{Combine, Ctx};
use super::share::Share;
use crate::error::{Error, Result};
use crate::offline::{Request, TruncMask};
use crate::ring::{RingTensor, Trunc};

/// The signed share `v` divided by 2^bits, rounding toward zero (`(v as i64) / 2^bits`),
/// for 1 ≤ bits ≤ 63, as shifts: negative values get 2^bits - 1 added first. Written out
/// because the divisor is known only at run time, so `/` compiled to a 64-bit `idiv` per
/// element (~7 ns: the local truncation of W3's 200k outputs was 18% of its online
/// samples in `perf`); the shifts vectorize. Test `shifts_equal_signed_division`.
#[inline]
fn div_pow2_toward_zero(v: u64, bits: u32) -> u64 {
    let v = v as i64;
    let bias = ((v >> 63) as u64) >> (64 - bits);
    (v.wrapping_add(bias as i64) >> bits) as u64
}

impl<'a> Ctx<'a> {
    /// Divide a share by 2^f (after a product of two fixed-point values).
    pub fn trunc(&self, x: &Share) -> Result<Share> {
        self.trunc_bits(x, self.frac_bits())
    }

    /// As `trunc`, consuming x: the local truncation divides in its buffer instead of
    /// writing a new one (a product's output is truncated once and dropped).
    pub fn trunc_owned(&self, mut x: Share) -> Result<Share> {
        let bits = self.frac_bits();
        if bits == 0
            || bits >= 62
            || self.fixed().trunc_for(self.parties())? != Trunc::Local
            || x.0.is_unstored_zeros()
        {
            return self.trunc_bits(&x, bits);
        }
        x.0.data_mut()
            .iter_mut()
            .for_each(|v| *v = div_pow2_toward_zero(*v, bits));
        Ok(x)
    }

    /// `trunc_bits` of two shares of one shape, in one round when the mode has rounds: a
    /// dealer truncation opens both in one message (one mask request of twice the
    /// length), as a stack of the two; a local one divides each share where it is, with
    /// no stacked copy.
    pub fn trunc_bits_pair(&self, a: &Share, b: &Share, bits: u32) -> Result<(Share, Share)> {
        if self.fixed().trunc_for(self.parties())? == Trunc::Local {
            return Ok((self.trunc_bits(a, bits)?, self.trunc_bits(b, bits)?));
        }
        let t = self.trunc_bits(&stack(&[a, b]), bits)?;
        let mut t = unstack(&t, &[a.shape(), b.shape()]).into_iter();
        Ok((t.next().expect("two parts"), t.next().expect("two parts")))
    }

    /// Divide a share by 2^bits (signed), by the session's truncation mode.
    pub fn trunc_bits(&self, x: &Share, bits: u32) -> Result<Share> {
        self.trunc_bits_by(x, bits, self.fixed().trunc_for(self.parties())?)
    }

    /// Divide a share by 2^bits (signed), by truncation mode `mode`.
    pub fn trunc_bits_by(&self, x: &Share, bits: u32, mode: Trunc) -> Result<Share> {
        if bits == 0 {
            return Ok(x.clone());
        }
        if bits >= 62 {
            return Err(Error::Config(format!(
                "truncation by {bits} bits exceeds the ring's range"
            )));
        }
        if mode == Trunc::Local {
            return Ok(Share(x.0.map(|v| div_pow2_toward_zero(v, bits))));
        }
        let key = self.next_key();
        let req = Request::Trunc {
            len: x.len(),
            shift: bits,
        };
        let TruncMask { r, r_hi, r_msb } = TruncMask::from_material(self.material(key, req)?)?;
        if self.is_dry() {
            // Its mask is recorded and its round counted; the values are placeholders.
            self.open_flat("trunc", Vec::new(), &[x.shape()], Combine::Add)?;
            return Ok(Share(RingTensor::zeros(x.shape())));
        }
        let p0 = self.party() == 0;
        let offset = 1u64 << 62;
        let mut masked = x.0.clone();
        if r.len() != x.len() || r_hi.len() != x.len() || r_msb.len() != x.len() {
            return Err(Error::Material(format!(
                "truncation mask of {} words for {} elements",
                r.len(),
                x.len()
            )));
        }
        for (v, ri) in masked.data_mut().iter_mut().zip(r.iter()) {
            *v = v
                .wrapping_add(*ri)
                .wrapping_add(if p0 { offset } else { 0 });
        }
        let c = self.open("trunc", &[&masked], Combine::Add)?.pop().unwrap();
        let out: Vec<u64> = c
            .data()
            .iter()
            .zip(r_hi.iter().zip(r_msb.iter()))
            .map(|(&c, (&hi, &msb))| {
                let c_msb = c >> 63;
                // [s_msb] = c_msb + [r_msb] - 2·c_msb·[r_msb] = (1 - 2 c_msb)[r_msb] + c_msb[p0]
                let mut s_msb = msb.wrapping_mul(1u64.wrapping_sub(2 * c_msb));
                let mut v = 0u64.wrapping_sub(hi);
                if p0 {
                    s_msb = s_msb.wrapping_add(c_msb);
                    v = v
                        .wrapping_add((c & (u64::MAX >> 1)) >> bits)
                        .wrapping_sub(offset >> bits);
                }
                v.wrapping_add(s_msb.wrapping_mul(1u64 << (63 - bits)))
            })
            .collect();
        Ok(Share(RingTensor::from_vec(x.shape(), out)))
    }
}

#[cfg(test)]
mod tests {
    use super::div_pow2_toward_zero;

    #[test]
    fn shifts_equal_signed_division() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut values = vec![0, 1, u64::MAX, i64::MIN as u64, i64::MAX as u64];
        for k in 0..64 {
            for d in [0u64, 1, u64::MAX] {
                values.push((1u64 << k).wrapping_add(d));
                values.push((1u64 << k).wrapping_neg().wrapping_add(d));
            }
        }
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x);
            values.push(x >> (x % 64));
        }
        for bits in 1..=63 {
            let d = 1i128 << bits;
            for &v in &values {
                // The reference in i128, where 2^63 is a divisor like any other.
                let want = ((v as i64 as i128) / d) as i64 as u64;
                assert_eq!(div_pow2_toward_zero(v, bits), want, "v {v:#x} bits {bits}");
            }
        }
    }
}
