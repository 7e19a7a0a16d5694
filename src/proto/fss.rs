//! The `--protocols fss` comparison gate (2 parties): [x < 0] and ReLU each in one round
//! of one word per element, from a dealer's DCF key (Boyle, Chandran, Gilboa, Gupta,
//! Ishai, Kumar, Rathee, EUROCRYPT 2021, the signed comparison and ReLU of §4 built from a
//! DCF). Depends on proto::{ctx, share}, fss, offline, ring. Chosen by `Ctx::ltz` and
//! `Ctx::relu_with_mask` (proto::compare) when the session's `Protocols` is `Fss`;
//! everything built on them (lt/gt, sign, abs, max, argmax, max-pooling, the
//! approximations' sign steps) follows.
//!
//! Derivation. The dealer draws r (shared: r_0 + r_1) and a DCF key pair for
//! f(z) = β·[z < r'] over 63 bits, r' = r mod 2^63. Online:
//!   y = open(x + r)                         1 round, 1 word per element per party
//!   y' = y mod 2^63, and x = y − r, so the subtraction's low 63 bits borrow iff y' < r':
//!   msb(x) = msb(y) ⊕ msb(r) ⊕ [y' < r']
//!          = msb(y) ⊕ u,  u = msb(r) ⊕ c,  c = [y' < r']
//!   u = msb(r) + (1 − 2·msb(r))·c = [msb(r)] + DCF₀(y')       (payload β₀ = 1 − 2·msb(r))
//!   [x < 0] = msb(x) = msb(y) + (1 − 2·msb(y))·u               (msb(y) public)
//! Exact for every 64-bit x: the comparison's domain is the ring's own (no bound to
//! overflow). The opened y is uniform, so it hides x.
//!
//! ReLU = x·d, d = 1 − msb(x) = 1 − msb(y) − (1 − 2·msb(y))·u. With x = y − r,
//!   x·d = y·d − r·d,  r·d = (1 − msb(y))·r − (1 − 2·msb(y))·r·u,
//!   r·u = r·msb(r) + r·(1 − 2·msb(r))·c = [r·msb(r)] + DCF₁(y')  (payload β₁ = r·β₀)
//! so a second payload word in the same key and shares of r·msb(r) from the dealer make
//! ReLU and its mask local after the one opening: 1 round, 1 word per element per party,
//! exactly x or 0 (no truncation). (A Beaver product reusing y as its opened operand
//! would take a second round.) The dry run that records the plan requests the key and
//! makes the opening, but evaluates nothing.

use super::ctx::{Combine, Ctx};
use super::share::Share;
use crate::error::{Error, Result};
use crate::fss::{dcf, ltz_layout};
use crate::offline::{FssLtzKeys, Request};
use crate::ring::RingTensor;

impl<'a> Ctx<'a> {
    /// [x < 0] as a bit of scale 1, by the FSS gate (module doc): 1 round, 1 word.
    pub(crate) fn ltz_fss(&self, x: &Share) -> Result<Share> {
        Ok(self.sign_gate(x, false)?.0)
    }

    /// (ReLU(x), [x ≥ 0]) by the FSS gate: 1 round, 1 word.
    pub(crate) fn relu_fss(&self, x: &Share) -> Result<(Share, Share)> {
        let (ltz, z) = self.sign_gate(x, true)?;
        let d = self.bit_not(&ltz);
        Ok((z.expect("ReLU asked for"), d))
    }

    /// Open y = x + r for a gate's input mask r (the shares of r from its key): one round,
    /// one word per element. The mask is uniform, so y hides x.
    pub(crate) fn open_masked(&self, label: &str, x: &Share, r: &[u64]) -> Result<RingTensor> {
        let masked: Vec<u64> =
            x.0.data()
                .iter()
                .zip(r)
                .map(|(a, r)| a.wrapping_add(*r))
                .collect();
        Ok(self
            .open_flat(label, masked, &[x.shape()], Combine::Add)?
            .pop()
            .expect("one part"))
    }

    /// The gate: shares of [x < 0] and, with `relu`, of x·(1 − [x < 0]).
    fn sign_gate(&self, x: &Share, relu: bool) -> Result<(Share, Option<Share>)> {
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
        let layout = ltz_layout(relu);
        let w = layout.width;
        if k.r.len() != len || k.r_msb.len() != len || k.dcf.last.len() != len * w {
            return Err(Error::Material(format!(
                "comparison key of {} elements for {len} elements",
                k.r.len()
            )));
        }
        let p0 = self.party() == 0;
        let y = self.open_masked("fss comparison", x, &k.r)?;
        let y = y.data();
        let low = u64::MAX >> 1;
        let v = if self.is_dry() {
            vec![0; len * w]
        } else {
            let y_low: Vec<u64> = y.iter().map(|v| v & low).collect();
            dcf::eval(self.party(), k.dcf.keys(layout), &y_low)?
        };
        let own = u64::from(p0);
        let mut ltz = Vec::with_capacity(len);
        let mut z = Vec::with_capacity(if relu { len } else { 0 });
        for i in 0..len {
            let y_msb = y[i] >> 63;
            // 1 − 2·msb(y): ±1.
            let flip = 1u64.wrapping_sub(2 * y_msb);
            let u = k.r_msb[i].wrapping_add(v[i * w]);
            let l = u.wrapping_mul(flip).wrapping_add(own * y_msb);
            ltz.push(l);
            if let Some(rr) = &k.r_r_msb {
                let ru = rr[i].wrapping_add(v[i * w + 1]);
                let d = own.wrapping_sub(l);
                z.push(
                    y[i].wrapping_mul(d)
                        .wrapping_sub((1 - y_msb).wrapping_mul(k.r[i]))
                        .wrapping_add(flip.wrapping_mul(ru)),
                );
            }
        }
        let ltz = Share(RingTensor::from_vec(x.shape(), ltz));
        let z = relu.then(|| Share(RingTensor::from_vec(x.shape(), z)));
        Ok((ltz, z))
    }
}
