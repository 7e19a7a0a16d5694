//! Fixed-point encoding of reals into Z_2^64 (protocols.md §1), and the choice of how
//! shares are truncated after a product. Depends on std and crate::error only.
//!
//! A real v is stored as the two's-complement integer round(v * 2^f), the nearest point of
//! the grid (`encode_at`: the one encoding every input, weight and public constant goes
//! through). CrypTen truncates toward zero instead (protocols.md §1); `encode_at` says why
//! we round. Decoding reads the ring element as i64 and divides by 2^f, so negative values
//! come back negative.
//!
//! The truncation mode and the protocol suite (`Protocols`) live here, beside `frac_bits`,
//! because every party, the dry run that records the offline plan and the dealer must
//! agree on them: they decide what material the plan holds (truncation masks,
//! proto::trunc; comparison keys, proto::fss).

use std::fmt;
use std::str::FromStr;

use super::{PlainTensor, RingTensor};
use crate::error::{Error, Result};

/// Default number of fractional bits, as CrypTen's `encoder.precision_bits`.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// v as the two's-complement integer nearest v·2^bits (half away from zero). CrypTen's
/// encoder truncates instead (`(scale * x).long()`), which shrinks every weight's
/// magnitude by half an ulp on average; the bias compounds through a deep network
/// (torchvision's ResNet-18 with random weights at 16 bits, two exports: 1.5e-2 and 9.0e-3
/// off onnxruntime when truncating, 2.7e-3 and 2.3e-3 when rounding), so we round: the
/// error is at most half an ulp and unbiased. Values beyond ±2^(63-bits) saturate, which callers must avoid (`infer`
/// refuses inputs and constants beyond its fixed-point range).
///
/// Every weight and input goes through here, so it is written for speed: 2^bits is built
/// from its exponent and the rounding from a truncating conversion, both inline. With
/// `exp2` and `f64::round` (two libm calls per value) the model owner's encoding of W1's
/// 1M weights was 6.5% of a whole `bench` process's samples (`perf`, 2026-12-07); the result
/// is the same word for every input (test `fast_encoding_equals_exp2_and_round`).
#[inline]
pub fn encode_at(v: f64, bits: u32) -> u64 {
    round_half_away(v * pow2(bits)) as u64
}

/// 2^bits exactly (infinity past f64's range, as `exp2`).
#[inline]
fn pow2(bits: u32) -> f64 {
    if bits > 1023 {
        f64::INFINITY
    } else {
        f64::from_bits((1023 + bits as u64) << 52)
    }
}

/// `x.round() as i64` without the libm call and without branches (weights are random, so
/// a branch on the remainder's sign mispredicts half the time: the branching version ran
/// at ~8 ns per value in a `perf` profile of W1's bench). The conversion truncates toward zero (saturating, NaN to 0); the
/// remainder says whether to step one away from zero. Below 2^53 every step is exact in
/// f64; from there x is an integer (remainder 0), and past ±2^63 the final conversion
/// saturates as `round() as i64` does.
#[inline]
fn round_half_away(x: f64) -> i64 {
    let t = x as i64;
    let rest = x - t as f64;
    let step = f64::from(u8::from(rest >= 0.5)) - f64::from(u8::from(rest <= -0.5));
    (t as f64 + step) as i64
}

/// How shares are divided by 2^f after a fixed-point product (proto::trunc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trunc {
    /// Each party divides its own share (CrypTen's 2-party truncation): no communication,
    /// but wrong by about 2^(64-f) with probability about |x|/2^64 per element. Only
    /// defined for 2 parties: with more, the shares' sum wraps several times and the
    /// result is wrong almost always.
    Local,
    /// One round with a mask from the dealer: floor(x/2^f) or one more, for every
    /// |x| < 2^62, for any number of parties.
    Dealer,
}

impl Trunc {
    /// The mode used when none is chosen: CrypTen's local truncation for 2 parties (so
    /// numbers stay comparable with CrypTen's), the dealer-assisted one for more.
    pub fn default_for(parties: usize) -> Trunc {
        if parties == 2 {
            Trunc::Local
        } else {
            Trunc::Dealer
        }
    }

    /// Refuse a mode that is not defined for `parties` parties.
    pub fn check(self, parties: usize) -> Result<()> {
        if self == Trunc::Local && parties != 2 {
            return Err(Error::Config(format!(
                "truncation mode 'local' needs exactly 2 parties, got {parties}: with more \
                 parties the sum of the shares wraps around the ring several times and \
                 dividing each share is almost always wrong; use 'dealer'"
            )));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Trunc::Local => "local",
            Trunc::Dealer => "dealer",
        }
    }
}

impl fmt::Display for Trunc {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trunc {
    type Err = Error;
    fn from_str(s: &str) -> Result<Trunc> {
        match s {
            "local" => Ok(Trunc::Local),
            "dealer" => Ok(Trunc::Dealer),
            _ => Err(Error::Config(format!(
                "unknown truncation mode '{s}': expected 'local' or 'dealer'"
            ))),
        }
    }
}

/// Which protocols compute comparisons and everything built on them (ReLU, max, argmax,
/// pooling, sign steps). `--protocols`, bench key `protocols`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Protocols {
    /// CrypTen's: A2B and B2A with AND and bit material, any number of parties
    /// (2PC ReLU: 9 rounds, 23 words per element).
    #[default]
    Crypten,
    /// Function secret sharing (proto::fss): a dealer's DCF key per comparison, one
    /// opening of x + r (2PC ReLU: 2 rounds, 2 words). Exactly 2 parties.
    Fss,
}

impl Protocols {
    /// Refuse a suite that is not defined for `parties` parties.
    pub fn check(self, parties: usize) -> Result<()> {
        if self == Protocols::Fss && parties != 2 {
            return Err(Error::Config(format!(
                "protocols 'fss' need exactly 2 parties, got {parties}: a comparison key \
                 (DCF) splits a function between two parties; use 'crypten'"
            )));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Protocols::Crypten => "crypten",
            Protocols::Fss => "fss",
        }
    }
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocols {
    type Err = Error;
    fn from_str(s: &str) -> Result<Protocols> {
        match s {
            "crypten" => Ok(Protocols::Crypten),
            "fss" => Ok(Protocols::Fss),
            _ => Err(Error::Config(format!(
                "unknown protocols '{s}': expected 'crypten' or 'fss'"
            ))),
        }
    }
}

/// Which exp softmax uses on its inputs x − max ≤ 0 (`Ctx::exp_nonpos`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpApprox {
    /// CrypTen's limit form (1 + x/2^8)^(2^8): 8 rounds (proto::approx `exp`).
    Limit,
    /// `--protocols fss` only (`--exp spline`): the spline of proto::spline (`exp_fss`):
    /// one interval-containment key, 3 rounds, within a few ulp of e^x.
    Spline,
}

impl ExpApprox {
    /// The choice when none is made: the limit form, under both suites. The spline is
    /// far more accurate (2.3 ulp against ~2^-7 relative) and saves 5 rounds per softmax,
    /// but on BERT-base it is slower end to end on this 2-vCPU host: its 25 DCF points per
    /// attention element (~59M per party) and 2.4M more keys (3.7 GB per party to deal)
    /// cost more than the 60 rounds save (wan: 53.1-59.6 s online against 48.6-48.9 s;
    /// results/fss-runs.md, "exp spline and GeLU on one key").
    pub fn default_for(_protocols: Protocols) -> ExpApprox {
        ExpApprox::Limit
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExpApprox::Limit => "limit",
            ExpApprox::Spline => "spline",
        }
    }
}

impl FromStr for ExpApprox {
    type Err = Error;
    fn from_str(s: &str) -> Result<ExpApprox> {
        match s {
            "limit" => Ok(ExpApprox::Limit),
            "spline" => Ok(ExpApprox::Spline),
            _ => Err(Error::Config(format!(
                "unknown exp approximation '{s}': expected 'limit' or 'spline'"
            ))),
        }
    }
}

/// Fixed-point codec with `frac_bits` fractional bits, the truncation mode of products and
/// the protocol suite of comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedPoint {
    pub frac_bits: u32,
    /// `None`: `Trunc::default_for` the session's number of parties.
    pub trunc: Option<Trunc>,
    /// Absent in job descriptions from before the fss suite: crypten.
    #[serde(default)]
    pub protocols: Protocols,
    /// softmax's exp; `None`: `ExpApprox::default_for` the protocols. Absent in job
    /// descriptions from before the choice: the default; not written when `None`, so
    /// descriptions without the choice read the same to older binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<ExpApprox>,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            frac_bits: DEFAULT_FRAC_BITS,
            trunc: None,
            protocols: Protocols::Crypten,
            exp: None,
        }
    }
}

impl FixedPoint {
    pub fn new(frac_bits: u32) -> Self {
        assert!(frac_bits < 62, "fixed point needs frac_bits < 62");
        FixedPoint {
            frac_bits,
            ..FixedPoint::default()
        }
    }

    /// The same codec with truncation mode `trunc` (`None`: the default for N).
    pub fn with_trunc(self, trunc: Option<Trunc>) -> Self {
        FixedPoint { trunc, ..self }
    }

    /// The same codec with protocol suite `protocols`.
    pub fn with_protocols(self, protocols: Protocols) -> Self {
        FixedPoint { protocols, ..self }
    }

    /// The same codec with softmax's exp `exp` (`None`: the default for the protocols).
    pub fn with_exp(self, exp: Option<ExpApprox>) -> Self {
        FixedPoint { exp, ..self }
    }

    /// softmax's exp: the chosen one, or the default for the protocols.
    pub fn exp_approx(&self) -> ExpApprox {
        self.exp
            .unwrap_or_else(|| ExpApprox::default_for(self.protocols))
    }

    /// The protocol suite for `parties` parties; refuses `fss` for more than 2.
    pub fn protocols_for(&self, parties: usize) -> Result<Protocols> {
        self.protocols.check(parties)?;
        Ok(self.protocols)
    }

    /// The truncation mode for `parties` parties; refuses `local` for more than 2.
    pub fn trunc_for(&self, parties: usize) -> Result<Trunc> {
        let t = self.trunc.unwrap_or(Trunc::default_for(parties));
        t.check(parties)?;
        Ok(t)
    }

    /// 2^f as f64.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// One unit in the last place, as a real: the encoding's resolution.
    pub fn ulp(&self) -> f64 {
        1.0 / self.scale()
    }

    /// Encode a real with `frac_bits` fractional bits (`encode_at`).
    pub fn encode(&self, v: f64) -> u64 {
        encode_at(v, self.frac_bits)
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
    fn fast_encoding_equals_exp2_and_round() {
        // The reference: std's exp2 and round (half away from zero), saturating cast.
        let reference = |v: f64, bits: u32| ((v * (bits as f64).exp2()).round() as i64) as u64;
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4503599627370495.5,
            -4503599627370495.5,
            9007199254740993.0,
            9.3e18,
            -9.3e18,
            9.223372036854775e18,
            -9.223372036854776e18,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
        ];
        for _ in 0..200_000 {
            // Any bit pattern (every magnitude, subnormals, NaNs), and halves of integers.
            values.push(f64::from_bits(next()));
            let k = (next() >> 11) as i64 - (1 << 52);
            values.push((k as f64 + 0.5) / 2f64.powi((next() % 40) as i32));
        }
        for &v in &values {
            for bits in [
                0, 1, 3, 8, 12, 16, 20, 24, 32, 40, 52, 62, 63, 64, 1023, 1024, 2000,
            ] {
                assert_eq!(
                    encode_at(v, bits),
                    reference(v, bits),
                    "v {v:e}, bits {bits}"
                );
            }
        }
    }

    #[test]
    fn roundtrip_within_half_an_ulp_including_negatives() {
        let fp = FixedPoint::default();
        for &v in &[
            0.0, 1.0, -1.0, 3.25, -3.25, 1e-5, -1e-5, 12345.678, -12345.678, 1e9, -1e9,
        ] {
            let d = fp.decode(fp.encode(v));
            // Encoding rounds to nearest: error at most half an ulp, same sign as v.
            assert!((d - v).abs() <= fp.ulp() / 2.0, "v={v} d={d}");
            assert!(d == 0.0 || d.signum() == v.signum());
        }
    }

    #[test]
    fn encoding_rounds_to_the_nearest_grid_point_on_both_sides_of_zero() {
        let fp = FixedPoint::default();
        let u = fp.ulp();
        // (value, expected integer): below, at and above half an ulp, both signs.
        for (v, k) in [
            (0.25 * u, 0i64),
            (0.75 * u, 1),
            (-0.75 * u, -1),
            (-0.25 * u, 0),
            (2.5 * u, 3),
            (-2.5 * u, -3),
            (1.0 - 0.4 * u, 1 << 16),
            (-1.0 + 0.6 * u, -(1 << 16) + 1),
        ] {
            assert_eq!(fp.encode(v) as i64, k, "v = {v:e}");
        }
        // 2^-3 at 2 bits is exact; 0.3 at 4 bits is 4.8/16, so 5/16.
        assert_eq!(encode_at(0.125, 3) as i64, 1);
        assert_eq!(encode_at(0.3, 4) as i64, 5);
    }

    #[test]
    fn trunc_defaults_by_party_count_and_refuses_local_beyond_two() {
        let fp = FixedPoint::default();
        assert_eq!(fp.trunc_for(2).unwrap(), Trunc::Local);
        assert_eq!(fp.trunc_for(3).unwrap(), Trunc::Dealer);
        let dealer = fp.with_trunc(Some(Trunc::Dealer));
        assert_eq!(dealer.trunc_for(2).unwrap(), Trunc::Dealer);
        let local = fp.with_trunc(Some(Trunc::Local));
        assert_eq!(local.trunc_for(2).unwrap(), Trunc::Local);
        let e = local.trunc_for(3).unwrap_err().to_string();
        assert!(e.contains("'local'") && e.contains("2 parties"), "{e}");
        for t in [Trunc::Local, Trunc::Dealer] {
            assert_eq!(t.to_string().parse::<Trunc>().unwrap(), t);
        }
        let e = "exact".parse::<Trunc>().unwrap_err().to_string();
        assert!(e.contains("'exact'") && e.contains("'dealer'"), "{e}");
    }

    #[test]
    fn negative_values_wrap_to_the_top_of_the_ring() {
        let fp = FixedPoint::default();
        assert_eq!(fp.encode(-1.0), 0u64.wrapping_sub(1 << 16));
    }
}
