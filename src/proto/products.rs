//! Products of values each opened once (2PC and N parties alike): a group of secret values
//! v_0 … v_(k−1) of one shape, each with its own dealer mask a_i, and a fixed list of
//! pairs whose products the protocol needs. Value i is opened once, ε_i = v_i − a_i (one
//! word per element), whenever it is known (values of one round share its message); then
//! for every pair (i, j), with the dealer's shares of a_i·a_j,
//!   v_i·v_j = a_i·a_j + ε_i·a_j + ε_j·a_i + ε_i·ε_j      (the last term at party 0)
//! locally, without truncation. A Beaver triple is the group {x, y} with the pair (0, 1),
//! a square pair {x} with (0, 0); the gain is in a value that meets several others: each
//! Beaver product opens both its operands, so x·y, x·z and y·z cost 6 words per element
//! where the group {x, y, z} costs 3. Security is Beaver's: each ε_i is v_i plus a
//! uniform mask used for that one opening, and the products' shares are uniform.
//! Depends on proto::{ctx, share}, offline, ring, error.

use super::ctx::{Combine, Ctx};
use super::share::Share;
use crate::error::{Error, Result};
use crate::offline::{ProductMasks, Request};
use crate::ring::RingTensor;

/// One group's material and the openings made so far.
pub struct Products {
    shape: Vec<usize>,
    len: usize,
    pairs: Vec<[u8; 2]>,
    m: ProductMasks,
    eps: Vec<Option<RingTensor>>,
    party0: bool,
    dry: bool,
}

impl<'a> Ctx<'a> {
    /// The material of a group of `values` values of `shape` and the products `pairs`
    /// (i ≤ j < values) will be taken of: one `Request::Products`.
    pub fn products(&self, shape: &[usize], values: usize, pairs: &[[u8; 2]]) -> Result<Products> {
        let len: usize = shape.iter().product();
        if pairs
            .iter()
            .any(|&[i, j]| i > j || usize::from(j) >= values)
        {
            return Err(Error::Protocol(format!(
                "a product group of {values} values with pairs {pairs:?}"
            )));
        }
        let key = self.next_key();
        let req = Request::Products {
            len,
            values,
            pairs: pairs.to_vec(),
        };
        let m = ProductMasks::from_material(self.material(key, req)?, values, pairs.len())?;
        if m.masks.iter().chain(&m.products).any(|w| w.len() != len) {
            return Err(Error::Material(format!(
                "product masks for {} elements, not {len}",
                m.masks.first().map_or(0, |w| w.len())
            )));
        }
        Ok(Products {
            shape: shape.to_vec(),
            len,
            pairs: pairs.to_vec(),
            m,
            eps: vec![None; values],
            party0: self.party() == 0,
            dry: self.is_dry(),
        })
    }
}

impl Products {
    /// Value k exists, is not opened yet (a mask serves one opening) and has the group's
    /// shape.
    fn check(&self, k: usize, shape: &[usize]) -> Result<()> {
        if k >= self.eps.len() || self.eps[k].is_some() || shape != self.shape.as_slice() {
            return Err(Error::Protocol(format!(
                "value {k} of {shape:?} for a product group of {} values of {:?} (each \
                 opened once)",
                self.eps.len(),
                self.shape
            )));
        }
        Ok(())
    }

    /// v − a_k: the words value k's opening sends, for a gate whose message carries them
    /// (`opened` then records what came back). Empty in the dry run, which sends nothing.
    pub fn masked(&self, k: usize, v: &Share) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        self.masked_into(k, v, &mut out)?;
        Ok(out)
    }

    /// `masked`, appended to a message being built (no vector of its own per value).
    fn masked_into(&self, k: usize, v: &Share, out: &mut Vec<u64>) -> Result<()> {
        self.check(k, v.shape())?;
        if !self.dry {
            out.extend(
                v.0.data()
                    .iter()
                    .zip(self.m.masks[k].iter())
                    .map(|(x, a)| x.wrapping_sub(*a)),
            );
        }
        Ok(())
    }

    /// Record ε_k = v_k − a_k, opened in another gate's message.
    pub fn opened(&mut self, k: usize, eps: RingTensor) -> Result<()> {
        self.check(k, eps.shape())?;
        self.eps[k] = Some(eps);
        Ok(())
    }

    /// Open the values `items` (index, share) together: one round, one word per element
    /// per value.
    pub fn open(&mut self, ctx: &Ctx, label: &str, items: &[(usize, &Share)]) -> Result<()> {
        let mut msg = Vec::with_capacity(if self.dry { 0 } else { items.len() * self.len });
        for &(k, v) in items {
            self.masked_into(k, v, &mut msg)?;
        }
        let shapes: Vec<&[usize]> = items.iter().map(|_| self.shape.as_slice()).collect();
        let opened = ctx.open_flat(label, msg, &shapes, Combine::Add)?;
        for (&(k, _), e) in items.iter().zip(opened) {
            self.opened(k, e)?;
        }
        Ok(())
    }

    /// Shares of v_i·v_j for pair `p` of the group (both values opened), untruncated.
    pub fn product(&self, p: usize) -> Result<Share> {
        let [i, j] = *self.pairs.get(p).ok_or_else(|| {
            Error::Protocol(format!("product {p} of a group of {}", self.pairs.len()))
        })?;
        let (i, j) = (usize::from(i), usize::from(j));
        let (Some(ei), Some(ej)) = (&self.eps[i], &self.eps[j]) else {
            return Err(Error::Protocol(format!(
                "product of values {i} and {j} before both are opened"
            )));
        };
        if self.dry {
            return Ok(Share(RingTensor::zeros(&self.shape)));
        }
        let n = self.len;
        let (ai, aj, c) = (
            &self.m.masks[i][..n],
            &self.m.masks[j][..n],
            &self.m.products[p][..n],
        );
        let (ei, ej) = (&ei.data()[..n], &ej.data()[..n]);
        let p0 = u64::from(self.party0);
        let z: Vec<u64> = (0..n)
            .map(|e| {
                c[e].wrapping_add(ei[e].wrapping_mul(aj[e]))
                    .wrapping_add(ej[e].wrapping_mul(ai[e]))
                    .wrapping_add(ei[e].wrapping_mul(ej[e]).wrapping_mul(p0))
            })
            .collect();
        Ok(Share(RingTensor::try_from_vec(&self.shape, z)?))
    }
}
