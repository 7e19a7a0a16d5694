//! Fixed-point encoding of reals into Z_2^64 (protocols.md §1). Depends on std only.
//!
//! A real v is stored as the two's-complement integer trunc(v * 2^f). Decoding reads the
//! ring element as i64 and divides by 2^f, so negative values come back negative.

use super::{PlainTensor, RingTensor};

/// Default number of fractional bits, as CrypTen's `encoder.precision_bits`.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// Fixed-point codec with `frac_bits` fractional bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedPoint {
    pub frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            frac_bits: DEFAULT_FRAC_BITS,
        }
    }
}

impl FixedPoint {
    pub fn new(frac_bits: u32) -> Self {
        assert!(frac_bits < 62, "fixed point needs frac_bits < 62");
        FixedPoint { frac_bits }
    }

    /// 2^f as f64.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// One unit in the last place, as a real: the encoding's resolution.
    pub fn ulp(&self) -> f64 {
        1.0 / self.scale()
    }

    /// Encode a real. The fraction is truncated toward zero, as CrypTen's encoder does
    /// (a float-to-int cast); values beyond ±2^(63-f) saturate, which callers must avoid.
    pub fn encode(&self, v: f64) -> u64 {
        ((v * self.scale()) as i64) as u64
    }

    /// Decode a ring element as a signed real.
    pub fn decode(&self, x: u64) -> f64 {
        (x as i64) as f64 / self.scale()
    }

    pub fn encode_tensor(&self, t: &PlainTensor) -> RingTensor {
        RingTensor::from_vec(
            t.shape(),
            t.data().iter().map(|&v| self.encode(v)).collect(),
        )
    }

    pub fn decode_tensor(&self, t: &RingTensor) -> PlainTensor {
        PlainTensor::from_vec(
            t.shape(),
            t.data().iter().map(|&x| self.decode(x)).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_within_one_ulp_including_negatives() {
        let fp = FixedPoint::default();
        for &v in &[
            0.0, 1.0, -1.0, 3.25, -3.25, 1e-5, -1e-5, 12345.678, -12345.678, 1e9, -1e9,
        ] {
            let d = fp.decode(fp.encode(v));
            // Encoding truncates toward zero: error below one ulp, same sign as v.
            assert!((d - v).abs() < fp.ulp(), "v={v} d={d}");
            assert!(d == 0.0 || d.signum() == v.signum());
        }
    }

    #[test]
    fn negative_values_wrap_to_the_top_of_the_ring() {
        let fp = FixedPoint::default();
        assert_eq!(fp.encode(-1.0), 0u64.wrapping_sub(1 << 16));
    }
}
