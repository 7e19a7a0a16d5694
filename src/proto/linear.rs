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
use crate::offline::{Request, Triple};
use crate::ring::{Constant, RingTensor, Values};

/// The bilinear product of a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearOp {
    /// X [m×k] · W [k×n]
    Matmul,
    /// conv2d(X [B,C,H,W], W [O,C,KH,KW])
    Conv2d { stride: usize, padding: usize },
    /// A convolution's input gradient (training): conv2d_grad_input(dY [B,O,OH,OW],
    /// W [O,C,KH,KW]) for an input of spatial size `in_hw`. Row-separable along the batch
    /// like the others, so its weight mask can be opened ahead (inter-linear).
    ConvGradInput {
        in_hw: (usize, usize),
        stride: usize,
        padding: usize,
    },
}

impl LinearOp {
    pub fn apply(&self, x: &RingTensor, w: &RingTensor) -> RingTensor {
        match *self {
            LinearOp::Matmul => kernels::matmul(x, w),
            LinearOp::Conv2d { stride, padding } => kernels::conv2d(x, w, stride, padding),
            LinearOp::ConvGradInput {
                in_hw,
                stride,
                padding,
            } => kernels::conv2d_grad_input(x, w, in_hw, stride, padding),
        }
    }

    /// op(x, w) added to `out` (the output's words): a Beaver product's terms summed in
    /// one buffer, with no output tensor per term and no pass to add them.
    pub fn apply_add(&self, x: &RingTensor, w: &RingTensor, out: &mut [u64]) {
        match *self {
            LinearOp::Matmul => {
                let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[1]);
                assert!(
                    x.shape().len() == 2 && w.shape() == [k, n] && out.len() == m * n,
                    "matmul {:?}·{:?} into {} words",
                    x.shape(),
                    w.shape(),
                    out.len()
                );
                kernels::gemm_into(m, k, n, x.data(), w.data(), out, true)
            }
            LinearOp::Conv2d { stride, padding } => {
                kernels::conv2d_into(x, w, stride, padding, out, true)
            }
            // Training only, and small: no accumulating kernel of its own, so its output is
            // added to `out` in one more pass.
            LinearOp::ConvGradInput { .. } => {
                let y = self.apply(x, w);
                assert_eq!(
                    y.len(),
                    out.len(),
                    "conv input gradient into {} words",
                    out.len()
                );
                for (o, v) in out.iter_mut().zip(y.data()) {
                    *o = o.wrapping_add(*v);
                }
            }
        }
    }

    /// The shape of op(x, w) (shapes checked by `request`).
    pub fn out_shape(&self, x: &[usize], w: &[usize]) -> Vec<usize> {
        match *self {
            LinearOp::Matmul => vec![x[0], w[1]],
            LinearOp::Conv2d { stride, padding } => vec![
                x[0],
                w[0],
                (x[2] + 2 * padding - w[2]) / stride + 1,
                (x[3] + 2 * padding - w[3]) / stride + 1,
            ],
            LinearOp::ConvGradInput { in_hw, .. } => vec![x[0], w[1], in_hw.0, in_hw.1],
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
            LinearOp::ConvGradInput {
                in_hw,
                stride,
                padding,
            } => {
                let (dy, w) = (x, w);
                if dy.len() != 4
                    || w.len() != 4
                    || dy[1] != w[0]
                    || stride == 0
                    || in_hw.0 + 2 * padding < w[2]
                    || in_hw.1 + 2 * padding < w[3]
                    || dy[2] != kernels::conv_out(in_hw.0, w[2], stride, padding)
                    || dy[3] != kernels::conv_out(in_hw.1, w[3], stride, padding)
                {
                    return Err(Error::Shape(format!(
                        "conv2d input gradient of dy {dy:?} by w {w:?} for input {in_hw:?}"
                    )));
                }
                Ok(Request::ConvGradInput {
                    dy: [dy[0], dy[1], dy[2], dy[3]],
                    w: [w[0], w[1], w[2], w[3]],
                    in_hw: [in_hw.0, in_hw.1],
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
    key: u64,
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

/// The keys of one private-weight layer (`Ctx::linear_keys`).
#[derive(Clone, Copy, Debug)]
pub struct LinearKeys {
    /// Zero sharing of the weight.
    pub weight: u64,
    /// The Beaver triple (whole input).
    pub triple: u64,
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
    /// op(x, w) on local values; zeros of its shape in the dry run, which needs no values.
    fn product(&self, op: LinearOp, x: &RingTensor, w: &RingTensor) -> RingTensor {
        if self.is_dry() {
            RingTensor::zeros(&op.out_shape(x.shape(), w.shape()))
        } else {
            op.apply(x, w)
        }
    }

    /// Private-weight linear product op(x, w), truncated. One round (§3.2).
    pub fn linear(&self, op: LinearOp, x: &Share, w: &Share) -> Result<Share> {
        let req = op.request(x.shape(), w.shape())?;
        let out = op.out_shape(x.shape(), w.shape());
        let z = self.beaver("linear", req, &x.0, &w.0, &out, |a, b| op.apply(a, b))?;
        self.trunc_owned(Share(z))
    }

    /// As `linear`, consuming the weight share so that it is freed once masked (a large
    /// layer's share then never coexists with the whole message of the open).
    pub fn linear_owned(&self, op: LinearOp, x: &Share, w: Share) -> Result<Share> {
        let req = op.request(x.shape(), w.shape())?;
        let out = op.out_shape(x.shape(), w.shape());
        let z = self.beaver("linear", req, &x.0, w.0, &out, |a, b| op.apply(a, b))?;
        self.trunc_owned(Share(z))
    }

    /// Public-weight linear product: each party multiplies its own share, no round (N = 2).
    pub fn linear_public(&self, op: LinearOp, x: &Share, w: &RingTensor) -> Result<Share> {
        op.request(x.shape(), w.shape())?;
        self.trunc_owned(Share(self.product(op, &x.0, w)))
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

    /// Reserve the keys of one private-weight layer: every lane of the layer calls this
    /// first, whichever steps it then runs, so that the keys after it agree across lanes
    /// and schedules.
    pub fn linear_keys(&self) -> LinearKeys {
        LinearKeys {
            weight: self.next_key(),
            triple: self.next_key(),
        }
    }

    /// Party `owner`'s real-valued weight `w` (or bias), encoded in fixed point and
    /// secret-shared for free (PRZS under `key`): encoded as the sharing is written, so the
    /// encoded weight is never a tensor of its own.
    pub fn share_constant(
        &self,
        key: u64,
        owner: usize,
        w: Option<&Constant>,
        shape: &[usize],
    ) -> Result<Share> {
        let w = self.owner_value(owner, w.map(|w| (w, w.shape())), shape, "a constant")?;
        let fp = self.fixed();
        // One loop per storage type (no call per value): the value is encoded as the
        // sharing is written.
        let (add, no) = (Combine::Add, None::<fn(usize) -> u64>);
        Ok(Share(match w.map(Constant::values) {
            None => self.zero_sharing(key, shape, add, false, no),
            Some(Values::F32(d)) => {
                let v = |i: usize| fp.encode(d[i] as f64);
                self.zero_sharing(key, shape, add, false, Some(v))
            }
            Some(Values::F64(d)) => {
                let v = |i: usize| fp.encode(d[i]);
                self.zero_sharing(key, shape, add, false, Some(v))
            }
        }))
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
        let keys = self.linear_keys();
        let t = self.take_linear_triple(&keys, op, x_shape, w.shape())?;
        self.open_weight_mask(t, w)
    }

    /// The triple of a private-weight layer for its whole input (no communication).
    pub fn take_linear_triple(
        &self,
        keys: &LinearKeys,
        op: LinearOp,
        x_shape: &[usize],
        w_shape: &[usize],
    ) -> Result<LinearTriple> {
        let req = op.request(x_shape, w_shape)?;
        let material = self.material_whole(keys.triple, req)?;
        if self.is_dry() {
            // Placeholders never read: zeros stored nowhere, and no C (`prepared` reads
            // it only online).
            return Ok(LinearTriple {
                op,
                key: keys.triple,
                a: Arc::new(RingTensor::zeros(x_shape)),
                b: RingTensor::zeros(w_shape),
                c: Vec::new(),
            });
        }
        let Triple { a, b, c } = Triple::from_material(material)?;
        let a = RingTensor::try_from_vec(x_shape, a.into_vec())?;
        let b = RingTensor::try_from_vec(w_shape, b.into_vec())?;
        Ok(LinearTriple {
            op,
            key: keys.triple,
            a: Arc::new(a),
            b,
            c: c.into_vec(),
        })
    }

    /// W - B into the weight's own buffer, after checking it fits the triple.
    fn mask_weight(&self, t: &LinearTriple, w: Share) -> Result<RingTensor> {
        if w.shape() != t.b.shape() {
            return Err(Error::Shape(format!(
                "weight {:?} for a triple made for {:?}",
                w.shape(),
                t.b.shape()
            )));
        }
        let mut masked = w.0;
        if !self.is_dry() {
            masked.sub_assign(&t.b);
        }
        Ok(masked)
    }

    /// C + A·F (in C's buffer) and B + F (party 0) or B: the layer with its weight mask
    /// F known.
    fn prepared(&self, t: LinearTriple, f: &RingTensor) -> Result<PreparedLinear> {
        let LinearTriple {
            op, a, mut b, c, ..
        } = t;
        let out = op.out_shape(a.shape(), f.shape());
        let base = if self.is_dry() {
            RingTensor::zeros(&out)
        } else {
            let mut base = RingTensor::try_from_vec(&out, c)?;
            op.apply_add(&a, f, base.data_mut());
            if self.party() == 0 {
                b.add_assign(f);
            }
            base
        };
        Ok(PreparedLinear {
            op,
            a,
            base,
            b_side: b,
        })
    }

    /// Open F = W - B alone (one round, ahead of the input: inter-linear's weights lanes),
    /// then compute C + A·F.
    pub fn open_weight_mask(&self, t: LinearTriple, w: Share) -> Result<PreparedLinear> {
        let w_shape = w.shape().to_vec();
        let masked = self.mask_weight(&t, w)?;
        // The dry run sends nothing (and a placeholder's words would be allocated here).
        let msg = if self.is_dry() {
            Vec::new()
        } else {
            masked.into_data()
        };
        let f = self
            .open_flat_keyed(
                "linear weight mask",
                mix_key(t.key),
                msg,
                &[&w_shape],
                Combine::Add,
            )?
            .pop()
            .unwrap();
        self.prepared(t, &f)
    }

    /// Open the weight masks F = W - B of several products together, in one message (one
    /// round), ahead of their inputs; returns each product's F, in order, for
    /// `prepare_with_mask`. For a lane that knows many weights at once and has nothing
    /// to gain from opening them one round after another (training's weights lane: every
    /// weight of a step is known at its start). The message is tagged by the first
    /// triple's key, so every party must pass the same products in the same order.
    pub fn open_weight_masks(&self, items: Vec<(&LinearTriple, Share)>) -> Result<Vec<RingTensor>> {
        let Some(key) = items.first().map(|(t, _)| mix_key(t.key)) else {
            return Ok(Vec::new());
        };
        let shapes: Vec<Vec<usize>> = items.iter().map(|(t, _)| t.b.shape().to_vec()).collect();
        let mut msg = Vec::with_capacity(if self.is_dry() {
            0
        } else {
            items.iter().map(|(t, _)| t.b.len()).sum()
        });
        for (t, w) in items {
            let masked = self.mask_weight(t, w)?;
            if !self.is_dry() {
                msg.extend_from_slice(masked.data());
            }
        }
        let shapes: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        self.open_flat_keyed("linear weight masks", key, msg, &shapes, Combine::Add)
    }

    /// C + A·F for a triple whose weight mask F was opened by `open_weight_masks`.
    pub fn prepare_with_mask(&self, t: LinearTriple, f: &RingTensor) -> Result<PreparedLinear> {
        if f.shape() != t.b.shape() {
            return Err(Error::Shape(format!(
                "weight mask {:?} for a triple made for {:?}",
                f.shape(),
                t.b.shape()
            )));
        }
        self.prepared(t, f)
    }

    /// Open F = W - B and E = X - A for rows `row0..` of the input together, in one
    /// message (one round: the serial form of a private layer), where W is party `owner`'s
    /// weight `w` (None at the other parties), secret-shared under `weight_key` as the
    /// message is written: the share of W is never a tensor of its own (VGG16's first FC
    /// layer: 0.8 GB per party), and W - B costs one pass. Returns the prepared layer and
    /// the opened rows of E. F goes first: the opening hands its first part back in the
    /// message's own buffer, and F is the larger.
    pub fn open_masks(
        &self,
        t: LinearTriple,
        weight_key: u64,
        owner: usize,
        w: Option<&Constant>,
        x: &Share,
        row0: usize,
    ) -> Result<(PreparedLinear, RingTensor)> {
        check_rows(t.a.shape(), x.shape(), row0)?;
        let w_shape = t.b.shape().to_vec();
        let w = self.owner_value(owner, w.map(|w| (w, w.shape())), &w_shape, "a constant")?;
        let msg = if self.is_dry() {
            Vec::new()
        } else {
            let (nw, nx) = (t.b.len(), x.len());
            let a = rows_of(&t.a, row0, x.shape()[0]);
            let b = t.b.data();
            assert!(
                a.len() == nx && b.len() == nw,
                "checked against the triple above"
            );
            let mut msg = Vec::with_capacity(nw + nx);
            let (f_part, e_part) = msg.spare_capacity_mut()[..nw + nx].split_at_mut(nw);
            let fp = self.fixed();
            match w.map(Constant::values) {
                Some(Values::F32(d)) => self.zero_sharing_into(weight_key, 0, f_part, |i, z| {
                    z.wrapping_add(fp.encode(d[i] as f64)).wrapping_sub(b[i])
                }),
                Some(Values::F64(d)) => self.zero_sharing_into(weight_key, 0, f_part, |i, z| {
                    z.wrapping_add(fp.encode(d[i])).wrapping_sub(b[i])
                }),
                None => self.zero_sharing_into(weight_key, 0, f_part, |i, z| z.wrapping_sub(b[i])),
            }
            for ((o, &xv), &av) in e_part.iter_mut().zip(x.0.data()).zip(a.data()) {
                o.write(xv.wrapping_sub(av));
            }
            // SAFETY: the sharing wrote the first nw spare slots, the loop the next nx.
            unsafe { msg.set_len(nw + nx) };
            msg
        };
        let mut opened =
            self.open_flat("linear masks", msg, &[&w_shape, x.shape()], Combine::Add)?;
        let e = opened.pop().unwrap();
        let f = opened.pop().unwrap();
        Ok((self.prepared(t, &f)?, e))
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
        check_rows(a.shape(), x.shape(), row0)?;
        let a = rows_of(a, row0, x.shape()[0]);
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
        if self.is_dry() {
            return self.trunc_owned(Share(self.product(prep.op, e, &prep.b_side)));
        }
        let mut z = rows_of(&prep.base, row0, rows).into_owned();
        prep.op.apply_add(e, &prep.b_side, z.data_mut());
        self.trunc_owned(Share(z))
    }

    /// `finish_with_mask` for the whole input, by a lane that alone uses the prepared
    /// layer (serial): E·b_side is added into C + A·F's own buffer.
    pub fn finish_owned(&self, prep: PreparedLinear, e: &RingTensor) -> Result<Share> {
        if e.shape() != prep.a.shape() {
            return Err(Error::Shape(format!(
                "opened {:?} for a layer prepared for {:?}",
                e.shape(),
                prep.a.shape()
            )));
        }
        if self.is_dry() {
            return self.trunc_owned(Share(self.product(prep.op, e, &prep.b_side)));
        }
        let PreparedLinear {
            op,
            a,
            mut base,
            b_side,
        } = prep;
        drop(a);
        op.apply_add(e, &b_side, base.data_mut());
        drop(b_side);
        self.trunc_owned(Share(base))
    }
}

impl<'a> Ctx<'a> {
    /// Batched products X_i·Y_i of two secret operands x [b, m, k] and y [b, k, n] (the
    /// attention scores Q·Kᵀ and P·V of every sample and head): every mask opened in one
    /// round, one truncation. The Beaver math of `linear`, per matrix; the batch axis is
    /// the one lanes split (a lane's matrices are its part of the node's batch).
    pub fn matmul_batched(&self, x: &Share, y: &Share) -> Result<Share> {
        let (xs, ys) = (x.shape(), y.shape());
        if xs.len() != 3 || ys.len() != 3 || xs[0] != ys[0] || xs[2] != ys[1] {
            return Err(Error::Shape(format!("batched matmul of {xs:?} by {ys:?}")));
        }
        let (b, m, k, n) = (xs[0], xs[1], xs[2], ys[2]);
        let key = self.next_key();
        let req = Request::BatchMatmul { batch: b, m, k, n };
        let Triple { a, b: bm, c } = Triple::from_material(self.material(key, req)?)?;
        let msg = crate::kernels::ew::concat_with(
            &[(x.0.data(), &a), (y.0.data(), &bm)],
            u64::wrapping_sub,
        );
        let opened = self.open_flat("batched matmul", msg, &[xs, ys], Combine::Add)?;
        let (eps, delta) = (opened[0].data(), opened[1].data());
        let p0 = self.party() == 0;
        let mut z = c.into_vec();
        for i in 0..b {
            let (ea, aa) = (
                &eps[i * m * k..(i + 1) * m * k],
                &a[i * m * k..(i + 1) * m * k],
            );
            let db = &delta[i * k * n..(i + 1) * k * n];
            let mut bside = bm[i * k * n..(i + 1) * k * n].to_vec();
            if p0 {
                bside
                    .iter_mut()
                    .zip(db)
                    .for_each(|(v, d)| *v = v.wrapping_add(*d));
            }
            let zi = &mut z[i * m * n..(i + 1) * m * n];
            let mut t = vec![0u64; m * n];
            kernels::gemm_into(m, k, n, ea, &bside, &mut t, false);
            kernels::gemm_into(m, k, n, aa, db, &mut t, true);
            zi.iter_mut()
                .zip(&t)
                .for_each(|(z, t)| *z = z.wrapping_add(*t));
        }
        self.trunc_owned(Share(RingTensor::try_from_vec(&[b, m, n], z)?))
    }
}

impl<'a> Ctx<'a> {
    /// The input gradient of a private-weight convolution (training):
    /// dx = conv2d_grad_input(dy, w) for an input of spatial size `in_hw`, both operands
    /// secret. A Beaver product over its own triple (`Request::ConvGradInput`), then one
    /// truncation: the bilinear map changes (`LinearOp::ConvGradInput`), the protocol is
    /// `linear`'s.
    pub fn conv2d_grad_input(
        &self,
        dy: &Share,
        w: &Share,
        in_hw: (usize, usize),
        stride: usize,
        padding: usize,
    ) -> Result<Share> {
        let op = LinearOp::ConvGradInput {
            in_hw,
            stride,
            padding,
        };
        let req = op.request(dy.shape(), w.shape())?;
        let out = op.out_shape(dy.shape(), w.shape());
        let z = self.beaver("conv input gradient", req, &dy.0, &w.0, &out, |a, b| {
            op.apply(a, b)
        })?;
        self.trunc_owned(Share(z))
    }

    /// The weight gradient of a convolution (training): dw = conv2d_grad_weight(x, dy)
    /// for a kernel of size `k_hw`, both operands secret; a Beaver product over its own
    /// triple (`Request::ConvGradWeight`), then one truncation.
    pub fn conv2d_grad_weight(
        &self,
        x: &Share,
        dy: &Share,
        k_hw: (usize, usize),
        stride: usize,
        padding: usize,
    ) -> Result<Share> {
        let (xs, ds) = (x.shape(), dy.shape());
        if xs.len() != 4
            || ds.len() != 4
            || xs[0] != ds[0]
            || stride == 0
            || xs[2] + 2 * padding < k_hw.0
            || xs[3] + 2 * padding < k_hw.1
            || ds[2] != kernels::conv_out(xs[2], k_hw.0, stride, padding)
            || ds[3] != kernels::conv_out(xs[3], k_hw.1, stride, padding)
        {
            return Err(Error::Shape(format!(
                "conv2d weight gradient of x {xs:?} by dy {ds:?} for kernel {k_hw:?}"
            )));
        }
        let req = Request::ConvGradWeight {
            x: [xs[0], xs[1], xs[2], xs[3]],
            dy: [ds[0], ds[1], ds[2], ds[3]],
            k_hw: [k_hw.0, k_hw.1],
            stride,
            padding,
        };
        let out = [ds[1], xs[1], k_hw.0, k_hw.1];
        let z = self.beaver("conv weight gradient", req, &x.0, &dy.0, &out, |a, b| {
            kernels::conv2d_grad_weight(a, b, k_hw, stride, padding)
        })?;
        self.trunc_owned(Share(z))
    }
}

/// Check that `x` is rows `row0..` of an input of shape `full`.
fn check_rows(full: &[usize], x: &[usize], row0: usize) -> Result<()> {
    let rows = x.first().copied().unwrap_or(0);
    if x.len() != full.len() || x[1..] != full[1..] || row0 + rows > full[0] {
        return Err(Error::Shape(format!(
            "rows {row0}..{} of input {x:?} prepared for {full:?}",
            row0 + rows
        )));
    }
    Ok(())
}

/// The tag key of a layer's separately opened weight mask, from its triple's key.
fn mix_key(k: u64) -> u64 {
    k ^ 0x5745_4947_4854_4d4b
}
