//! The `--protocols fss` comparison gate (2 parties): [x < 0] in one round and ReLU in
//! two, from a dealer's DCF key (Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee,
//! EUROCRYPT 2021, the signed-comparison construction of §4 from a DCF). Depends on
//! proto::{ctx, share}, fss, offline, ring. Chosen by `Ctx::ltz` and `Ctx::relu_with_mask`
//! (proto::compare) when the session's `Protocols` is `Fss`; everything built on `ltz`
//! (lt/gt, sign, abs, max, argmax, max-pooling, the approximations' sign steps) follows.
//!
//! Derivation. The dealer draws r (shared: r_0 + r_1) and a DCF key pair for
//! f(z) = β·[z < r'] over 63 bits, r' = r mod 2^63, β = 1 − 2·msb(r). Online:
//!   y = open(x + r)                         1 round, 1 word per element per party
//!   y' = y mod 2^63, and x = y − r, so the subtraction's low 63 bits borrow iff y' < r':
//!   msb(x) = msb(y) ⊕ msb(r) ⊕ [y' < r']
//!          = msb(y) ⊕ u,  u = msb(r) ⊕ c,  c = [y' < r']
//!   u = msb(r) + (1 − 2·msb(r))·c = [msb(r)] + DCF(y')        (dealer's payload β)
//!   [x < 0] = msb(x) = msb(y) + (1 − 2·msb(y))·u               (msb(y) public)
//! Exact for every 64-bit x: the comparison's domain is the ring's own (no bound to
//! overflow). The opened y is uniform, so it hides x.
//!
//! ReLU = x·d, d = 1 − [x < 0], as a Beaver product whose first operand's mask is −r:
//! its opening e = x − (−r) = y is the value already opened, so only f = d − m is opened
//! (the second round, 1 word): x·d = e·f + e·[m] + f·[−r] + [c], c = (−r)·m from the
//! dealer. 2 rounds and 2 words per element per party, exactly x or 0 (no truncation).
//! The dry run that records the plan requests the key and makes both openings, but
//! evaluates nothing.

use super::ctx::{Combine, Ctx};
use super::share::Share;
use crate::error::{Error, Result};
use crate::fss::{dcf, Keys, Layout, LTZ_DCF_BITS};
use crate::offline::{FssLtzKeys, Request};
use crate::ring::RingTensor;

impl<'a> Ctx<'a> {
    /// [x < 0] as a bit of scale 1, by the FSS gate (module doc): 1 round, 1 word.
    pub(crate) fn ltz_fss(&self, x: &Share) -> Result<Share> {
        Ok(self.sign_gate(x, false)?.0)
    }

    /// (ReLU(x), [x ≥ 0]) by the FSS gate: 2 rounds, 2 words.
    pub(crate) fn relu_fss(&self, x: &Share) -> Result<(Share, Share)> {
        Ok(self.sign_gate(x, true)?.1.expect("ReLU asked for"))
    }

    /// The gate: shares of [x < 0] and, with `relu`, of (x·d, d) for d = 1 − [x < 0].
    #[allow(clippy::type_complexity)]
    fn sign_gate(&self, x: &Share, relu: bool) -> Result<(Share, Option<(Share, Share)>)> {
        if self.parties() != 2 {
            return Err(Error::Config(format!(
                "--protocols fss needs exactly 2 parties, got {}: its comparison keys split a \
                 function between two parties (a DCF); use --protocols crypten",
                self.parties()
            )));
        }
        let len = x.len();
        let key = self.next_key();
        let k =
            FssLtzKeys::from_material(self.material(key, Request::FssLtz { len, relu })?, relu)?;
        if k.r.len() != len || k.r_msb.len() != len || k.last.len() != len {
            return Err(Error::Material(format!(
                "comparison key of {} elements for {len} elements",
                k.last.len()
            )));
        }
        let p0 = self.party() == 0;
        let masked: Vec<u64> =
            x.0.data()
                .iter()
                .zip(k.r.iter())
                .map(|(a, r)| a.wrapping_add(*r))
                .collect();
        let y = self
            .open_flat("fss comparison", masked, &[x.shape()], Combine::Add)?
            .pop()
            .expect("one part");
        let y = y.data();
        let low = u64::MAX >> 1;
        let v = if self.is_dry() {
            vec![0; len]
        } else {
            let y_low: Vec<u64> = y.iter().map(|v| v & low).collect();
            let keys = Keys {
                layout: Layout { bits: LTZ_DCF_BITS },
                seed: &k.seed,
                scw: &k.scw,
                vcw: &k.vcw,
                tcw: &k.tcw,
                last: &k.last,
            };
            dcf::eval(self.party(), keys, &y_low)?
        };
        let ltz: Vec<u64> = y
            .iter()
            .zip(v.iter().zip(k.r_msb.iter()))
            .map(|(&y, (&v, &r_msb))| {
                let y_msb = y >> 63;
                let u = r_msb.wrapping_add(v);
                let s = u.wrapping_mul(1u64.wrapping_sub(2 * y_msb));
                if p0 {
                    s.wrapping_add(y_msb)
                } else {
                    s
                }
            })
            .collect();
        let ltz = Share(RingTensor::from_vec(x.shape(), ltz));
        if !relu {
            return Ok((ltz, None));
        }
        let (m, c) = (
            k.m.as_ref().expect("ReLU key"),
            k.c.as_ref().expect("ReLU key"),
        );
        let one = u64::from(p0);
        let d: Vec<u64> = ltz.0.data().iter().map(|l| one.wrapping_sub(*l)).collect();
        let fm: Vec<u64> = d
            .iter()
            .zip(m.iter())
            .map(|(d, m)| d.wrapping_sub(*m))
            .collect();
        let f = self
            .open_flat("fss relu", fm, &[x.shape()], Combine::Add)?
            .pop()
            .expect("one part");
        let z: Vec<u64> = (0..len)
            .map(|i| {
                let (e, f) = (y[i], f.data()[i]);
                let mut z = e
                    .wrapping_mul(m[i])
                    .wrapping_sub(f.wrapping_mul(k.r[i]))
                    .wrapping_add(c[i]);
                if p0 {
                    z = z.wrapping_add(e.wrapping_mul(f));
                }
                z
            })
            .collect();
        let d = Share(RingTensor::from_vec(x.shape(), d));
        let z = Share(RingTensor::from_vec(x.shape(), z));
        Ok((ltz, Some((z, d))))
    }
}
