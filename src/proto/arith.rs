//! Arithmetic protocols: Beaver multiplication (elementwise, with the bilinear op as a
//! parameter so matmul and conv share it), square, binary AND, and products with public
//! constants (protocols.md §3.2-§3.4). Depends on proto::ctx, proto::share, ring, kernels (elementwise products), offline.

use super::ctx::{Combine, Ctx};
use super::share::{BinShare, Share};
use crate::error::{Error, Result};
use crate::kernels::ew;
use crate::offline::{AndTriple, Request, SquarePair, Triple};
use crate::ring::RingTensor;

impl<'a> Ctx<'a> {
    /// Beaver product z = op(x, y) of a bilinear `op`, without truncation (§3.2):
    /// open ε = x - a and δ = y - b in one round, then
    /// z = c + op(ε, b) + op(a, δ) (+ op(ε, δ) at party 0).
    /// Party 0 folds its extra term into op(ε, b + δ), so every party runs two products.
    /// An owned `y` (a layer's weight share) is freed as soon as it is masked.
    pub(crate) fn beaver<Y: std::borrow::Borrow<RingTensor>>(
        &self,
        label: &str,
        req: Request,
        x: &RingTensor,
        y: Y,
        op: impl Fn(&RingTensor, &RingTensor) -> RingTensor,
    ) -> Result<RingTensor> {
        let key = self.next_key();
        let Triple { a, b, c } = Triple::from_material(self.material(key, req)?)?;
        let y_shape = y.borrow().shape().to_vec();
        let a = RingTensor::try_from_vec(x.shape(), a)?;
        let mut b = RingTensor::try_from_vec(&y_shape, b)?;
        // X - A and Y - B straight into the message: for a large weight (VGG16's first FC
        // layer is 0.8 GB per party, times three parties in one process) every copy counts.
        let masked = ew::concat_with(
            &[(x.data(), a.data()), (y.borrow().data(), b.data())],
            u64::wrapping_sub,
        );
        drop(y);
        let opened = self.open_flat(label, masked, &[x.shape(), &y_shape], Combine::Add)?;
        let (eps, delta) = (&opened[0], &opened[1]);
        if self.party() == 0 {
            b.add_assign(delta);
        }
        let b_side = b;
        let mut z = op(eps, &b_side);
        z.add_assign(&op(&a, delta));
        let c = RingTensor::try_from_vec(z.shape(), c)?;
        z.add_assign(&c);
        Ok(z)
    }

    /// Elementwise x·y of two fixed-point shares, truncated back to scale 2^f.
    pub fn mul(&self, x: &Share, y: &Share) -> Result<Share> {
        let z = self.mul_raw(x, y)?;
        self.trunc(&z)
    }

    /// Elementwise x·y without truncation: for products where one side has scale 1
    /// (a comparison bit, an integer), as CrypTen's scale bookkeeping does (§1).
    pub fn mul_raw(&self, x: &Share, y: &Share) -> Result<Share> {
        if x.shape() != y.shape() {
            return Err(Error::Shape(format!(
                "mul of shapes {:?} and {:?}",
                x.shape(),
                y.shape()
            )));
        }
        let z = self.beaver(
            "mul",
            Request::Mul { len: x.len() },
            &x.0,
            &y.0,
            ew::mul_tensors,
        )?;
        Ok(Share(z))
    }

    /// x² of a fixed-point share, truncated (§3.3).
    pub fn square(&self, x: &Share) -> Result<Share> {
        let z = self.square_raw(x)?;
        self.trunc(&z)
    }

    /// x² without truncation: open ε = x - r, then z = r² + 2ε·r (+ ε² at party 0).
    pub fn square_raw(&self, x: &Share) -> Result<Share> {
        let key = self.next_key();
        let SquarePair { r, r2 } =
            SquarePair::from_material(self.material(key, Request::Square { len: x.len() })?)?;
        let r = RingTensor::try_from_vec(x.shape(), r)?;
        let r2 = RingTensor::try_from_vec(x.shape(), r2)?;
        let eps = self
            .open("square", &[&x.0.sub(&r)], Combine::Add)?
            .pop()
            .unwrap();
        let mut z = r2.add(&ew::scale_tensor(&ew::mul_tensors(&eps, &r), 2));
        if self.party() == 0 {
            z.add_assign(&ew::mul_tensors(&eps, &eps));
        }
        Ok(Share(z))
    }

    /// x·c for a public real c: local product, then truncation.
    pub fn mul_public(&self, x: &Share, c: f64) -> Result<Share> {
        let z = Share(ew::scale_tensor(&x.0, self.fixed().encode(c)));
        self.trunc(&z)
    }

    /// x·c elementwise for a public fixed-point tensor c of the same shape, truncated.
    pub fn mul_public_tensor(&self, x: &Share, c: &RingTensor) -> Result<Share> {
        if x.shape() != c.shape() {
            return Err(Error::Shape(format!(
                "mul_public_tensor of shapes {:?} and {:?}",
                x.shape(),
                c.shape()
            )));
        }
        self.trunc(&Share(ew::mul_tensors(&x.0, c)))
    }

    /// x AND y over XOR shares (§3.4). `y` holds `rep` stacked copies of x's shape
    /// (rep = y.len() / x.len()), and x is broadcast over them: one triple, one round,
    /// opening |x| + |y| words. The parallel-prefix adder uses rep = 2.
    pub fn and(&self, x: &BinShare, y: &BinShare) -> Result<BinShare> {
        let (len, ylen) = (x.0.len(), y.0.len());
        if len == 0 || ylen % len != 0 {
            if len == 0 && ylen == 0 {
                return Ok(y.clone());
            }
            return Err(Error::Shape(format!(
                "and of {:?} broadcast over {:?}",
                x.shape(),
                y.shape()
            )));
        }
        let rep = ylen / len;
        let key = self.next_key();
        let AndTriple { a, b, c } =
            AndTriple::from_material(self.material(key, Request::And { len, rep })?)?;
        if a.len() != len || b.len() != ylen || c.len() != ylen {
            return Err(Error::Material(format!(
                "AND triple of lengths {}/{}/{} for operands of {len} and {ylen}",
                a.len(),
                b.len(),
                c.len()
            )));
        }
        // The message [y ^ b, x ^ a], written in one pass: this is the hottest opening of
        // every comparison. The larger part goes first so that the opening hands it back
        // without a move.
        let msg = ew::concat_with(&[(y.0.data(), &b), (x.0.data(), &a)], |v, m| v ^ m);
        let opened = self.open_flat("and", msg, &[y.shape(), x.shape()], Combine::Xor)?;
        let (delta, eps) = (opened[0].data(), opened[1].data());
        let p0 = self.party() == 0;
        let mut z = c;
        // One pass per stacked copy of x: y, δ, b and z are `rep` blocks of x's length.
        // z = c ^ (ε & b) ^ (a & δ) ^ (ε & δ)[party 0]; party 0 folds as ε & (b ^ δ). Indexed
        // over slices of one length, with the party test outside the loop, so that it
        // compiles to vector code (a five-way zip did not).
        let (a, eps) = (&a[..len], &eps[..len]);
        for ((zb, bb), db) in z.chunks_mut(len).zip(b.chunks(len)).zip(delta.chunks(len)) {
            let (zb, bb, db) = (&mut zb[..len], &bb[..len], &db[..len]);
            if p0 {
                for i in 0..len {
                    zb[i] ^= (eps[i] & (bb[i] ^ db[i])) ^ (a[i] & db[i]);
                }
            } else {
                for i in 0..len {
                    zb[i] ^= (eps[i] & bb[i]) ^ (a[i] & db[i]);
                }
            }
        }
        let z = RingTensor::try_from_vec(y.shape(), z)?;
        Ok(BinShare(z))
    }
}
