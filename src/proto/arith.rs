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
        out_shape: &[usize],
        op: impl Fn(&RingTensor, &RingTensor) -> RingTensor,
    ) -> Result<RingTensor> {
        let key = self.next_key();
        let material = self.material(key, req)?;
        let y_shape = y.borrow().shape().to_vec();
        if self.is_dry() {
            // The same keys as online (the opening's too), no product.
            self.open_flat(label, Vec::new(), &[x.shape(), &y_shape], Combine::Add)?;
            return Ok(RingTensor::zeros(out_shape));
        }
        let Triple { a, b, c } = Triple::from_material(material)?;
        let a = RingTensor::try_from_vec(x.shape(), a.into_vec())?;
        let mut b = RingTensor::try_from_vec(&y_shape, b.into_vec())?;
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
        let c = RingTensor::try_from_vec(z.shape(), c.into_vec())?;
        z.add_assign(&c);
        Ok(z)
    }

    /// Elementwise x·y of two fixed-point shares, truncated back to scale 2^f.
    pub fn mul(&self, x: &Share, y: &Share) -> Result<Share> {
        let z = self.mul_raw(x, y)?;
        self.trunc_owned(z)
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
        // Elementwise, straight from the material's words (a lane's part is a view of the
        // whole): z = c + ε·(b + δ at party 0, b elsewhere) + a·δ, one pass.
        let n = x.len();
        let key = self.next_key();
        let Triple { a, b, c } =
            Triple::from_material(self.material(key, Request::Mul { len: n })?)?;
        if a.len() != n || b.len() != n || c.len() != n {
            return Err(Error::Material(format!(
                "Beaver triple of {} words for {n} elements",
                a.len()
            )));
        }
        let msg = if self.is_dry() {
            Vec::new()
        } else {
            ew::concat_with(&[(x.0.data(), &a), (y.0.data(), &b)], u64::wrapping_sub)
        };
        let Some(mut z) = self.open_flat_raw("mul", msg, Combine::Add)? else {
            return Ok(Share(RingTensor::zeros(x.shape())));
        };
        // The opened [ε | δ] is read in place and z written over ε (z_i reads only ε_i),
        // then δ's half is freed: no copy of δ, no result buffer beside them.
        let (eps, delta) = z.split_at_mut(n);
        // Slices of exactly n, so the loop has no bounds checks and vectorizes.
        let (a, b, c, delta) = (&a[..n], &b[..n], &c[..n], &delta[..n]);
        if self.party() == 0 {
            for i in 0..n {
                let bs = b[i].wrapping_add(delta[i]);
                eps[i] = c[i]
                    .wrapping_add(eps[i].wrapping_mul(bs))
                    .wrapping_add(a[i].wrapping_mul(delta[i]));
            }
        } else {
            for i in 0..n {
                eps[i] = c[i]
                    .wrapping_add(eps[i].wrapping_mul(b[i]))
                    .wrapping_add(a[i].wrapping_mul(delta[i]));
            }
        }
        z.truncate(n);
        z.shrink_to_fit();
        let z = RingTensor::try_from_vec(x.shape(), z)?;
        Ok(Share(z))
    }

    /// x² of a fixed-point share, truncated (§3.3).
    pub fn square(&self, x: &Share) -> Result<Share> {
        let z = self.square_raw(x)?;
        self.trunc_owned(z)
    }

    /// x² without truncation: open ε = x - r, then z = r² + 2ε·r (+ ε² at party 0).
    pub fn square_raw(&self, x: &Share) -> Result<Share> {
        let key = self.next_key();
        let SquarePair { r, r2 } =
            SquarePair::from_material(self.material(key, Request::Square { len: x.len() })?)?;
        let n = x.len();
        if r.len() != n || r2.len() != n {
            return Err(Error::Material(format!(
                "square pair of {} words for {n} elements",
                r.len()
            )));
        }
        let msg = ew::concat_with(&[(x.0.data(), &r)], u64::wrapping_sub);
        let eps = self
            .open_flat("square", msg, &[x.shape()], Combine::Add)?
            .pop()
            .unwrap();
        let eps = eps.data();
        // z = r² + 2ε·r (+ ε² at party 0), one pass from the material's words.
        let (r, r2, eps) = (&r[..n], &r2[..n], &eps[..n]);
        let p0 = u64::from(self.party() == 0);
        let mut z = vec![0u64; n];
        for i in 0..n {
            let e = eps[i];
            z[i] = r2[i]
                .wrapping_add(e.wrapping_mul(r[i]).wrapping_mul(2))
                .wrapping_add(e.wrapping_mul(e).wrapping_mul(p0));
        }
        Ok(Share(RingTensor::try_from_vec(x.shape(), z)?))
    }

    /// x·c for a public real c: local product, then truncation.
    pub fn mul_public(&self, x: &Share, c: f64) -> Result<Share> {
        let z = Share(ew::scale_tensor(&x.0, self.fixed().encode(c)));
        self.trunc_owned(z)
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
        self.trunc_owned(Share(ew::mul_tensors(&x.0, c)))
    }

    /// x AND y over XOR shares (§3.4). `y` holds `rep` words per element of x, element-major
    /// (rep = y.len() / x.len(); y[i·rep + r] pairs with x[i]), and x is broadcast over
    /// them: one triple, one round, opening |x| + |y| words. The parallel-prefix adder
    /// uses rep = 2 (through `and_triple` and `and_open`, without building its y).
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
        let AndTriple { a, b, c } = self.and_triple(len, rep)?;
        // The message [y ^ b, x ^ a], written in one pass: this is the hottest opening of
        // every comparison.
        let msg = if self.is_dry() {
            Vec::new()
        } else {
            ew::concat_with(&[(y.0.data(), &b), (x.0.data(), &a)], |v, m| v ^ m)
        };
        let Some(mut z) = self.and_open(msg)? else {
            return Ok(BinShare(RingTensor::zeros(y.shape())));
        };
        // The opened [δ | ε] becomes z: z_j is written over δ_j, its only reader.
        let (delta, eps) = z.split_at_mut(ylen);
        let p0 = self.party() == 0;
        // y, δ, b and c are element-major: element i's `rep` words follow each other (so a
        // lane's part of them is contiguous). z = c ^ (ε & b) ^ (a & δ) ^ (ε & δ)[party 0];
        // party 0 folds as ε & (b ^ δ). The party test is outside the loops.
        let k = AndTerms {
            a: &a[..len],
            eps: &eps[..len],
            b: &b[..ylen],
            c: &c[..ylen],
        };
        match (rep, p0) {
            (1, true) => k.run::<1, true>(delta),
            (1, false) => k.run::<1, false>(delta),
            (2, true) => k.run::<2, true>(delta),
            (2, false) => k.run::<2, false>(delta),
            (_, p0) => k.run_any(rep, p0, delta),
        }
        // ε's words are freed (glibc shrinks the block in place): an AND's result may live
        // long, as the adder's G does.
        z.truncate(ylen);
        z.shrink_to_fit();
        Ok(BinShare(RingTensor::try_from_vec(y.shape(), z)?))
    }

    /// The AND triple of one AND of `len` elements broadcast over `rep` words each (its
    /// key, then its material, as `and` takes them), checked against those lengths.
    pub(crate) fn and_triple(&self, len: usize, rep: usize) -> Result<AndTriple> {
        let ylen = len * rep;
        let key = self.next_key();
        let t = AndTriple::from_material(self.material(key, Request::And { len, rep })?)?;
        if t.a.len() != len || t.b.len() != ylen || t.c.len() != ylen {
            return Err(Error::Material(format!(
                "AND triple of lengths {}/{}/{} for operands of {len} and {ylen}",
                t.a.len(),
                t.b.len(),
                t.c.len()
            )));
        }
        Ok(t)
    }

    /// The AND's one round: `msg` = [y ^ b, x ^ a] opened to [δ | ε] (XOR), one buffer
    /// (`open_flat_raw`); `None` in the dry run.
    pub(crate) fn and_open(&self, msg: Vec<u64>) -> Result<Option<Vec<u64>>> {
        self.open_flat_raw("and", msg, Combine::Xor)
    }
}

/// The local step of an AND: z = c ^ (ε & b) ^ (a & δ) (^ (ε & δ) at party 0, folded as
/// ε & (b ^ δ)), with a and ε broadcast over each element's `rep` words. Const `REP` and
/// party so the common cases (rep 1 and 2) compile to straight vector code; the old
/// five-way iterator zip did not vectorize.
struct AndTerms<'a> {
    a: &'a [u64],
    eps: &'a [u64],
    b: &'a [u64],
    c: &'a [u64],
}

impl AndTerms<'_> {
    /// z over δ: `dz` holds δ on entry and z on return (z_j reads only δ_j).
    fn run<const REP: usize, const P0: bool>(&self, dz: &mut [u64]) {
        let n = self.a.len();
        let (b, c) = (&self.b[..n * REP], &self.c[..n * REP]);
        let dz = &mut dz[..n * REP];
        for i in 0..n {
            let (ai, ei) = (self.a[i], self.eps[i]);
            for r in 0..REP {
                let j = i * REP + r;
                let d = dz[j];
                let bj = if P0 { b[j] ^ d } else { b[j] };
                dz[j] = c[j] ^ (ei & bj) ^ (ai & d);
            }
        }
    }

    fn run_any(&self, rep: usize, p0: bool, dz: &mut [u64]) {
        for (i, zr) in dz.chunks_mut(rep).enumerate() {
            for (r, zj) in zr.iter_mut().enumerate() {
                let j = i * rep + r;
                let d = *zj;
                let bj = if p0 { self.b[j] ^ d } else { self.b[j] };
                *zj = self.c[j] ^ (self.eps[i] & bj) ^ (self.a[i] & d);
            }
        }
    }
}
