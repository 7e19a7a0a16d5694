//! Linear layers: matmul and conv2d with private weights (Beaver, §3.2) or public weights
//! (local product on shares, no triple), then truncation. Depends on proto::ctx, kernels.
//!
//! A private-weight layer is also offered in two halves for the inter-linear pipeline:
//! `prepare_linear` opens the weight mask F = W - B, which does not depend on the input,
//! and computes the input-independent part C + A·F; `finish_linear` opens E = X - A and
//! adds E·(B + F) (party 0) or E·B (others). Same triple, same math as `beaver`:
//! z = C + E·B + A·F + E·F, with the terms regrouped by when their inputs are known.
//! Each half splits once more so that a scheduler can open E while F is in flight:
//! `take_linear_triple` + `open_weight_mask`, and `open_input_mask` + `finish_with_mask`.

use std::sync::Arc;

use super::ctx::{Combine, Ctx};
use super::share::Share;
use crate::error::{Error, Result};
use crate::kernels;
use crate::offline::Request;
use crate::ring::RingTensor;

/// The bilinear product of a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearOp {
    /// X [m×k] · W [k×n]
    Matmul,
    /// conv2d(X [B,C,H,W], W [O,C,KH,KW])
    Conv2d { stride: usize, padding: usize },
}

impl LinearOp {
    pub fn apply(&self, x: &RingTensor, w: &RingTensor) -> RingTensor {
        match *self {
            LinearOp::Matmul => kernels::matmul(x, w),
            LinearOp::Conv2d { stride, padding } => kernels::conv2d(x, w, stride, padding),
        }
    }

    /// The triple this product needs, after checking the shapes fit.
    pub fn request(&self, x: &[usize], w: &[usize]) -> Result<Request> {
        match *self {
            LinearOp::Matmul => {
                if x.len() != 2 || w.len() != 2 || x[1] != w[0] {
                    return Err(Error::Shape(format!("matmul of {x:?} by {w:?}")));
                }
                Ok(Request::Matmul {
                    m: x[0],
                    k: x[1],
                    n: w[1],
                })
            }
            LinearOp::Conv2d { stride, padding } => {
                if x.len() != 4
                    || w.len() != 4
                    || x[1] != w[1]
                    || stride == 0
                    || x[2] + 2 * padding < w[2]
                    || x[3] + 2 * padding < w[3]
                {
                    return Err(Error::Shape(format!(
                        "conv2d of {x:?} by {w:?} (stride {stride}, padding {padding})"
                    )));
                }
                Ok(Request::Conv2d {
                    x: [x[0], x[1], x[2], x[3]],
                    w: [w[0], w[1], w[2], w[3]],
                    stride,
                    padding,
                })
            }
        }
    }
}

/// A private-weight layer's Beaver triple, taken before anything is opened. Its input mask
/// A is all a lane needs to open E = X - A, so schedulers hand A out at once and open E
/// while F = W - B is still in flight.
pub struct LinearTriple {
    op: LinearOp,
    a: Arc<RingTensor>,
    b: RingTensor,
    /// C, flat: its shape is that of op(A, B).
    c: Vec<u64>,
}

impl LinearTriple {
    /// The input mask A (shape of the full input).
    pub fn mask(&self) -> Arc<RingTensor> {
        self.a.clone()
    }
}

/// A private-weight linear layer whose weight mask has been opened (inter-linear).
pub struct PreparedLinear {
    op: LinearOp,
    a: Arc<RingTensor>,
    /// C + A·F: everything that does not depend on the input.
    base: RingTensor,
    /// B + F at party 0, B elsewhere: the factor of the one product left for the input.
    b_side: RingTensor,
}

impl PreparedLinear {
    /// Shape of the input this layer was prepared for.
    pub fn input_shape(&self) -> &[usize] {
        self.a.shape()
    }
}

/// Rows `row0..row0 + rows` of `t` along axis 0 (all of it without a copy when that is all).
fn rows_of(t: &RingTensor, row0: usize, rows: usize) -> std::borrow::Cow<'_, RingTensor> {
    if row0 == 0 && rows == t.shape()[0] {
        std::borrow::Cow::Borrowed(t)
    } else {
        std::borrow::Cow::Owned(t.slice_axis(0, row0, row0 + rows))
    }
}

impl<'a> Ctx<'a> {
    /// Private-weight linear product op(x, w), truncated. One round (§3.2).
    pub fn linear(&self, op: LinearOp, x: &Share, w: &Share) -> Result<Share> {
        let req = op.request(x.shape(), w.shape())?;
        let z = self.beaver("linear", req, &x.0, &w.0, |a, b| op.apply(a, b))?;
        self.trunc(&Share(z))
    }

    /// As `linear`, consuming the weight share so that it is freed once masked (a large
    /// layer's share then never coexists with the whole message of the open).
    pub fn linear_owned(&self, op: LinearOp, x: &Share, w: Share) -> Result<Share> {
        let req = op.request(x.shape(), w.shape())?;
        let z = self.beaver("linear", req, &x.0, w.0, |a, b| op.apply(a, b))?;
        self.trunc(&Share(z))
    }

    /// Public-weight linear product: each party multiplies its own share, no round (N = 2).
    pub fn linear_public(&self, op: LinearOp, x: &Share, w: &RingTensor) -> Result<Share> {
        op.request(x.shape(), w.shape())?;
        self.trunc(&Share(op.apply(&x.0, w)))
    }

    /// X·W with private weights.
    pub fn matmul(&self, x: &Share, w: &Share) -> Result<Share> {
        self.linear(LinearOp::Matmul, x, w)
    }

    /// X·W with public (fixed-point encoded) weights.
    pub fn matmul_public(&self, x: &Share, w: &RingTensor) -> Result<Share> {
        self.linear_public(LinearOp::Matmul, x, w)
    }

    /// conv2d with private weights.
    pub fn conv2d(&self, x: &Share, w: &Share, stride: usize, padding: usize) -> Result<Share> {
        self.linear(LinearOp::Conv2d { stride, padding }, x, w)
    }

    /// conv2d with public (fixed-point encoded) weights.
    pub fn conv2d_public(
        &self,
        x: &Share,
        w: &RingTensor,
        stride: usize,
        padding: usize,
    ) -> Result<Share> {
        self.linear_public(LinearOp::Conv2d { stride, padding }, x, w)
    }

    /// First half of a private-weight layer: open F = W - B (one round, input-independent)
    /// and compute C + A·F. The input only needs to be known by shape. The weight share is
    /// consumed: W - B is computed in its buffer, which becomes the message.
    pub fn prepare_linear(
        &self,
        op: LinearOp,
        x_shape: &[usize],
        w: Share,
    ) -> Result<PreparedLinear> {
        let t = self.take_linear_triple(op, x_shape, w.shape())?;
        self.open_weight_mask(t, w)
    }

    /// The triple of a private-weight layer (no communication): the first step of
    /// `prepare_linear`.
    pub fn take_linear_triple(
        &self,
        op: LinearOp,
        x_shape: &[usize],
        w_shape: &[usize],
    ) -> Result<LinearTriple> {
        let req = op.request(x_shape, w_shape)?;
        let key = self.next_key();
        let m = self.material(key, req)?;
        let [a, b, c]: [Vec<u64>; 3] = m
            .try_into()
            .map_err(|_| Error::Material("linear triple must have 3 components".into()))?;
        let a = RingTensor::try_from_vec(x_shape, a)?;
        let b = RingTensor::try_from_vec(w_shape, b)?;
        Ok(LinearTriple {
            op,
            a: Arc::new(a),
            b,
            c,
        })
    }

    /// The second step of `prepare_linear`: open F = W - B (one round), compute C + A·F.
    pub fn open_weight_mask(&self, t: LinearTriple, w: Share) -> Result<PreparedLinear> {
        let LinearTriple { op, a, mut b, c } = t;
        if w.shape() != b.shape() {
            return Err(Error::Shape(format!(
                "weight {:?} for a triple made for {:?}",
                w.shape(),
                b.shape()
            )));
        }
        let w_shape = w.shape().to_vec();
        let mut masked = w.0;
        masked.sub_assign(&b);
        let f = self
            .open_flat(
                "linear weight mask",
                masked.into_data(),
                &[&w_shape],
                Combine::Add,
            )?
            .pop()
            .unwrap();
        let mut base = op.apply(&a, &f);
        base.add_assign(&RingTensor::try_from_vec(base.shape(), c)?);
        if self.party() == 0 {
            b.add_assign(&f);
        }
        Ok(PreparedLinear {
            op,
            a,
            base,
            b_side: b,
        })
    }

    /// Second half: open E = X - A (one round), z = base + E·b_side, truncated.
    pub fn finish_linear(&self, prep: &PreparedLinear, x: &Share) -> Result<Share> {
        if x.shape() != prep.a.shape() {
            return Err(Error::Shape(format!(
                "layer prepared for input {:?} got {:?}",
                prep.a.shape(),
                x.shape()
            )));
        }
        self.finish_linear_rows(prep, x, 0)
    }

    /// Second half for the rows `row0..row0 + x.rows` of the prepared input (axis 0: the
    /// batch of a conv, the rows of a matmul). A and C + A·F are row-separable, so chunks
    /// and micro-batches each use their own rows of one triple, with B and F shared: the
    /// weight mask is opened once for all of them.
    pub fn finish_linear_rows(
        &self,
        prep: &PreparedLinear,
        x: &Share,
        row0: usize,
    ) -> Result<Share> {
        let e = self.open_input_mask(&prep.a, x, row0)?;
        self.finish_with_mask(prep, &e, row0)
    }

    /// Open E = X - A for the rows `row0..row0 + x.rows` of the input mask `a` (one round).
    /// Needs only the triple's A, so it can run before the weight mask is open.
    pub fn open_input_mask(&self, a: &RingTensor, x: &Share, row0: usize) -> Result<RingTensor> {
        let (full, rows) = (a.shape(), x.shape().first().copied().unwrap_or(0));
        if x.shape().len() != full.len() || x.shape()[1..] != full[1..] || row0 + rows > full[0] {
            return Err(Error::Shape(format!(
                "rows {row0}..{} of input {:?} prepared for {full:?}",
                row0 + rows,
                x.shape()
            )));
        }
        let a = rows_of(a, row0, rows);
        Ok(self
            .open("linear input mask", &[&x.0.sub(&a)], Combine::Add)?
            .pop()
            .unwrap())
    }

    /// z = (C + A·F) + E·b_side for the rows of an opened E starting at `row0`, truncated.
    pub fn finish_with_mask(
        &self,
        prep: &PreparedLinear,
        e: &RingTensor,
        row0: usize,
    ) -> Result<Share> {
        let rows = e.shape().first().copied().unwrap_or(0);
        let full = prep.a.shape();
        if e.shape().len() != full.len() || e.shape()[1..] != full[1..] || row0 + rows > full[0] {
            return Err(Error::Shape(format!(
                "opened rows {row0}..{} of {:?} for a layer prepared for {full:?}",
                row0 + rows,
                e.shape()
            )));
        }
        let mut z = prep.op.apply(e, &prep.b_side);
        z.add_assign(&rows_of(&prep.base, row0, rows));
        self.trunc(&Share(z))
    }
}

impl<'a> Ctx<'a> {
    /// Several private products X_i·W_i (both operands secret, e.g. the attention scores
    /// Q·Kᵀ and P·V of every head) with all their masks opened in one round and one batched
    /// truncation: the Beaver math of `linear`, per pair.
    pub fn matmul_many(&self, pairs: &[(&Share, &Share)]) -> Result<Vec<Share>> {
        let mut triples = Vec::with_capacity(pairs.len());
        let mut masked = Vec::with_capacity(2 * pairs.len());
        for (x, w) in pairs {
            let req = LinearOp::Matmul.request(x.shape(), w.shape())?;
            let key = self.next_key();
            let m = self.material(key, req)?;
            let [a, b, c]: [Vec<u64>; 3] = m
                .try_into()
                .map_err(|_| Error::Material("matmul triple must have 3 components".into()))?;
            let a = RingTensor::try_from_vec(x.shape(), a)?;
            let b = RingTensor::try_from_vec(w.shape(), b)?;
            masked.push(x.0.sub(&a));
            masked.push(w.0.sub(&b));
            triples.push((a, b, c));
        }
        let refs: Vec<&RingTensor> = masked.iter().collect();
        let opened = self.open("matmul_many", &refs, Combine::Add)?;
        let mut outs = Vec::with_capacity(pairs.len());
        for (i, (a, b, c)) in triples.into_iter().enumerate() {
            let (eps, delta) = (&opened[2 * i], &opened[2 * i + 1]);
            let b_side = if self.party() == 0 { b.add(delta) } else { b };
            let mut z = kernels::matmul(eps, &b_side);
            z.add_assign(&kernels::matmul(&a, delta));
            z.add_assign(&RingTensor::try_from_vec(z.shape(), c)?);
            outs.push(z);
        }
        // One truncation for all products (one round when N > 2).
        let flat = RingTensor::from_vec(
            &[outs.iter().map(RingTensor::len).sum()],
            RingTensor::flat_concat(&outs.iter().collect::<Vec<_>>()),
        );
        let t = self.trunc(&Share(flat))?;
        let mut off = 0;
        Ok(outs
            .iter()
            .map(|z| {
                let s = Share(RingTensor::from_vec(
                    z.shape(),
                    t.0.data()[off..off + z.len()].to_vec(),
                ));
                off += z.len();
                s
            })
            .collect())
    }
}
