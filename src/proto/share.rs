//! Share types and their local (communication-free) operations, plus input sharing and
//! reveal (protocols.md §2.1, §2.2). Depends on ring and proto::ctx.

use super::ctx::{Combine, Ctx};
use crate::comm::PartyId;
use crate::error::{Error, Result};
use crate::ring::{PlainTensor, RingTensor};

/// This party's additive share of a ring tensor: Σ_i x_i = x mod 2^64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share(pub RingTensor);

/// This party's XOR share of a tensor of 64-bit words: XOR_i x_i = x.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinShare(pub RingTensor);

impl Share {
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn add(&self, y: &Share) -> Share {
        Share(self.0.add(&y.0))
    }
    pub fn sub(&self, y: &Share) -> Share {
        Share(self.0.sub(&y.0))
    }
    pub fn neg(&self) -> Share {
        Share(self.0.neg())
    }
    /// Multiply by a public integer (no truncation: the scale is unchanged).
    pub fn mul_int(&self, k: i64) -> Share {
        Share(self.0.scale(k as u64))
    }
    pub fn reshape(&self, shape: &[usize]) -> Result<Share> {
        Ok(Share(self.0.reshaped(shape)?))
    }
    /// The same share with another shape of the same size, without a copy.
    pub fn into_shape(self, shape: &[usize]) -> Result<Share> {
        Ok(Share(self.0.reshape(shape)?))
    }
}

impl BinShare {
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    pub fn xor(&self, y: &BinShare) -> BinShare {
        BinShare(self.0.xor(&y.0))
    }
    /// AND with a public mask: every party masks its own share.
    pub fn and_public(&self, mask: u64) -> BinShare {
        BinShare(self.0.map(|x| x & mask))
    }
    pub fn shl(&self, s: u32) -> BinShare {
        BinShare(self.0.shl(s))
    }
    pub fn shr_logical(&self, s: u32) -> BinShare {
        BinShare(self.0.shr_logical(s))
    }
}

impl<'a> Ctx<'a> {
    /// x + c for public c (encoded ring values): only party 0 adds it.
    pub fn add_public(&self, x: &Share, c: &RingTensor) -> Share {
        if self.party() == 0 {
            Share(x.0.add(c))
        } else {
            x.clone()
        }
    }

    /// x + c for a public real constant c.
    pub fn add_const(&self, x: &Share, c: f64) -> Share {
        let e = self.fixed().encode(c);
        if self.party() == 0 {
            Share(x.0.add_scalar(e))
        } else {
            x.clone()
        }
    }

    /// x + k for a public raw ring constant k (no encoding).
    pub fn add_raw(&self, x: &Share, k: u64) -> Share {
        if self.party() == 0 {
            Share(x.0.add_scalar(k))
        } else {
            x.clone()
        }
    }

    /// x XOR c for public c: only party 0 applies it.
    pub fn xor_public(&self, x: &BinShare, c: u64) -> BinShare {
        if self.party() == 0 {
            BinShare(x.0.map(|v| v ^ c))
        } else {
            x.clone()
        }
    }

    /// Secret-share `owner`'s ring tensor (PRZS plus the owner's value; no communication,
    /// protocols.md §2.2). `value` is read only at the owner; all parties pass the shape.
    pub fn share_input(
        &self,
        owner: PartyId,
        value: Option<&RingTensor>,
        shape: &[usize],
    ) -> Result<Share> {
        let key = self.next_key();
        let v = self.owner_value(owner, value.map(|v| (v, v.shape())), shape, "an input")?;
        let value = v.map(|v| {
            let d = v.data();
            move |i: usize| d[i]
        });
        Ok(Share(self.zero_sharing(
            key,
            shape,
            Combine::Add,
            false,
            value,
        )))
    }

    /// Secret-share `owner`'s real-valued tensor in fixed point (encoded as the sharing
    /// is written).
    pub fn share_plain(
        &self,
        owner: PartyId,
        value: Option<&PlainTensor>,
        shape: &[usize],
    ) -> Result<Share> {
        let key = self.next_key();
        let v = self.owner_value(owner, value.map(|v| (v, v.shape())), shape, "an input")?;
        let fp = self.fixed();
        let value = v.map(|v| {
            let d = v.data();
            move |i: usize| fp.encode(d[i])
        });
        Ok(Share(self.zero_sharing(
            key,
            shape,
            Combine::Add,
            false,
            value,
        )))
    }

    /// The value a sharing adds: `value` at the owner (checked against `shape`), none at
    /// the other parties, and none in the dry run, whose shares are placeholders.
    pub(crate) fn owner_value<'v, T>(
        &self,
        owner: PartyId,
        value: Option<(&'v T, &[usize])>,
        shape: &[usize],
        what: &str,
    ) -> Result<Option<&'v T>> {
        if self.party() != owner || self.is_dry() {
            return Ok(None);
        }
        let (v, vs) = value.ok_or_else(|| {
            Error::Config(format!("party {owner} shares {what} but was given none"))
        })?;
        if vs != shape {
            return Err(Error::Shape(format!(
                "{what} of shape {vs:?} shared as {shape:?}"
            )));
        }
        Ok(Some(v))
    }

    /// XOR-share `owner`'s words (free, as `share_input`). The words are this lane's part
    /// of the node's tensor (A2B shares each party's own share this way).
    pub fn share_input_bin(
        &self,
        owner: PartyId,
        value: Option<&RingTensor>,
        shape: &[usize],
    ) -> Result<BinShare> {
        let key = self.next_key();
        let v = self.owner_value(owner, value.map(|v| (v, v.shape())), shape, "an input")?;
        let value = v.map(|v| {
            let d = v.data();
            move |i: usize| d[i]
        });
        Ok(BinShare(self.zero_sharing(
            key,
            shape,
            Combine::Xor,
            true,
            value,
        )))
    }

    /// Open x to every party (one round).
    pub fn reveal(&self, x: &Share) -> Result<RingTensor> {
        Ok(self.open("reveal", &[&x.0], Combine::Add)?.pop().unwrap())
    }

    /// Open and decode a fixed-point share.
    pub fn reveal_plain(&self, x: &Share) -> Result<PlainTensor> {
        let opened = self.reveal(x)?;
        if self.is_dry() {
            // The dry run's output is never read: an empty placeholder, not a decoded copy
            // of the whole output.
            return Ok(PlainTensor::zeros(&[0]));
        }
        Ok(self.fixed().decode_tensor(&opened))
    }

    /// Open an XOR sharing to every party (one round).
    pub fn reveal_bin(&self, x: &BinShare) -> Result<RingTensor> {
        Ok(self.open("reveal", &[&x.0], Combine::Xor)?.pop().unwrap())
    }

    /// Open x to `to` only (one round); the other parties get `None`.
    pub fn reveal_to(&self, to: PartyId, x: &Share) -> Result<Option<RingTensor>> {
        self.open_to(to, "reveal_to", &x.0)
    }
}
