//! Training in MPC over the model graph: the forward pass with secret weights that keeps
//! what the backward rules need (activations, relu bits, max-pool one-hots), the one
//! backward traversal (the graph's nodes in reverse order), the softmax cross-entropy
//! loss, SGD, and a training step over m micro-batches. Every rule is protocol calls on
//! `Ctx` (Beaver products of proto::linear, comparisons of proto::compare); the schedule
//! only decides which lane runs what: micro-batches (inter-batch), chunks of relu and
//! max-pool (inner-layer, through `sched::chunked`; inside micro-batches only the layers
//! where `sched::cost::chunk_in_micro_batch` says chunks pay on the link) and a weights
//! lane opening weight masks ahead, one round per layer and pass for all micro-batches
//! (inter-linear, `sched::beside` and `sched::slots`). Depends on
//! model::{graph, backward}, proto, ring and sched.
//!
//! Keys. A node's protocol calls run on `ctx.for_node(id)` with id = (step, micro-batch,
//! phase, node), so material is addressed by node and part like the inference traversal's,
//! the dry run records the plan, and every epoch (which repeats the steps' ids) has the
//! same plan. Micro-batches other than the first run on `Ctx::uncounted` lanes: their
//! rounds go alongside the first's and `rounds` stays serial's count.
//!
//! Fixed point (16 fractional bits, CrypTen's practice): every product is truncated once;
//! the loss gradient is divided by the mini-batch size B once, at the loss, so backward
//! values are O(1/B) (0.03 at B = 32: 2,000 ulp) and weight gradients, sums over B rows,
//! are O(1); the learning rate multiplies the gradient as a public fixed-point constant
//! (one more truncation), so lr·g keeps lr·2^16 ulp of resolution per unit of gradient.

use crate::error::{Error, Result};
use crate::model::graph::{infer, Graph, NodeId, Op, TensorId};
use crate::model::Node;
use crate::proto::pool::pool_scatter;
use crate::proto::{Ctx, LinearOp, Share};
use crate::ring::{shape, RingTensor};
use crate::sched::slots::Slots;
use crate::sched::{Lanes, Schedule};
use crate::transport::emulator::LinkProfile;

pub use crate::model::backward::Sgd;

/// Who holds what: the model owner (initial weights, revealed loss and accuracy, saved
/// weights) is party 0; the data owner (images and labels) the last party.
pub const MODEL_OWNER: usize = 0;

/// Phases of a step, part of every node's key.
#[derive(Clone, Copy)]
enum Phase {
    Forward = 1,
    Loss = 2,
    Backward = 3,
    Update = 4,
    Eval = 5,
}

/// The key id of (step, micro-batch, phase, node): injective for node < 2^12, micro-batch
/// < 2^8, phase < 2^4.
fn node_id(step: usize, micro: usize, phase: Phase, node: usize) -> u64 {
    ((step as u64) << 24) | ((micro as u64) << 16) | ((phase as u64) << 12) | node as u64
}

/// Largest node count and micro-batch count the key layout allows.
pub const MAX_NODES: usize = 1 << 12;
pub const MAX_MICRO_BATCHES: usize = 1 << 8;

/// A graph with its trainable constants (model::backward::parameters), and the schedule
/// its steps run under.
pub struct Trainable<'g> {
    pub g: &'g Graph,
    pub params: Vec<TensorId>,
    /// Micro-batches per mini-batch (inter-batch).
    m: usize,
    /// Weight masks opened ahead by a weights lane (inter-linear).
    ahead: bool,
    /// Chunks of each non-linear layer, forward and backward (inner-layer); inside
    /// micro-batches only where `cost::chunk_in_micro_batch` says they pay (`chunks`).
    k: usize,
    lanes: Lanes,
    /// One-way latency and bandwidth of the link, for that rule (0 and None: unshaped).
    latency_ms: f64,
    bandwidth_mbps: Option<f64>,
}

/// What one forward pass keeps for the backward one.
struct Tape {
    vals: Vec<Option<Share>>,
    /// Per node: relu's bit [x ≥ 0] or max-pool's one-hot windows (scale 1).
    masks: Vec<Option<Share>>,
}

/// Where in the key space a pass runs, and the weight masks opened ahead (inter-linear).
#[derive(Clone, Copy)]
struct At<'s> {
    step: usize,
    micro: usize,
    /// Micro-batches in flight in this step.
    m: usize,
    ahead: Option<&'s Ahead>,
}

/// Inter-linear in training: at the start of a step every weight is known, so a weights
/// lane takes the triple of each product whose second operand is a weight (the forward
/// products X·W and conv(X, W), and the backward input gradients: dX = dY·Wᵀ of gemm and
/// matmul, and a conv's dX = conv2d_grad_input(dY, W), a bilinear map of its own with the
/// same Beaver halves) and opens its weight mask F = W − B as background traffic while the
/// activations run; the product then opens only E = X − A (E = dY − A backward). The
/// weight gradients dW (both operands activations) open their masks inline.
struct Ahead {
    slots: Slots,
    /// Node id (`node_id`) of each product -> its slot.
    index: std::collections::HashMap<u64, usize>,
}

/// One product the weights lane prepares.
struct Planned {
    id: u64,
    /// The layer and pass (`node_id` of micro-batch 0): the products of one layer, one
    /// per micro-batch, open their weight masks together.
    layer: u64,
    op: LinearOp,
    x_shape: Vec<usize>,
    w: Share,
}

impl<'g> Trainable<'g> {
    pub fn new(g: &'g Graph) -> Result<Self> {
        // Node MAX_NODES - 1's keys are the weight sharing's and the evaluation's.
        if g.nodes.len() >= MAX_NODES {
            return Err(Error::Config(format!(
                "model '{}' has {} nodes; training supports fewer than {MAX_NODES}",
                g.name,
                g.nodes.len()
            )));
        }
        let params = crate::model::backward::parameters(g)?;
        Ok(Trainable {
            g,
            params,
            m: 1,
            ahead: false,
            k: 1,
            lanes: Lanes::Threads,
            latency_ms: 0.0,
            bandwidth_mbps: None,
        })
    }

    /// Steps under `schedule`: its micro-batches (inter-batch) and chunks (inner-layer).
    pub fn with_schedule(mut self, schedule: &Schedule) -> Result<Self> {
        self.ahead = schedule.scheme.inter_linear;
        self.m = schedule.m();
        self.k = schedule.k();
        self.lanes = schedule.lanes;
        if self.m > MAX_MICRO_BATCHES {
            return Err(Error::Config(format!(
                "training supports at most {MAX_MICRO_BATCHES} micro-batches, got {}",
                self.m
            )));
        }
        Ok(self)
    }

    /// Steps over `link` (the parties' link profile; public, so every party chunks
    /// alike).
    pub fn on_link(mut self, link: &LinkProfile) -> Self {
        let l = link.latency_ms;
        self.latency_ms = if l.is_finite() { l.max(0.0) } else { 0.0 };
        self.bandwidth_mbps = link.bandwidth_mbps.filter(|b| b.is_finite() && *b > 0.0);
        self
    }

    /// Chunks of a non-linear layer whose tensor on this lane has `elements` elements,
    /// with `m` micro-batches in flight: inner-layer's k alone (m = 1), or inside
    /// micro-batches, k where chunking pays by the rule of `cost::chunk_in_micro_batch`
    /// and 1 elsewhere. Outputs do not depend on it: chunks use their parts of the same
    /// material.
    pub fn chunks(&self, m: usize, elements: usize) -> usize {
        if self.k > 1
            && m > 1
            && !crate::sched::cost::chunk_in_micro_batch(
                elements,
                self.latency_ms,
                self.bandwidth_mbps,
            )
        {
            1
        } else {
            self.k
        }
    }

    /// relu and its bit [x ≥ 0] on the flattened tensor, in `chunks` chunks.
    fn relu(&self, c: &Ctx, m: usize, x: &Share) -> Result<(Share, Share)> {
        let n = x.len();
        let out = crate::sched::chunked(
            c,
            &[x.reshape(&[n])?],
            &[0],
            self.chunks(m, n),
            self.lanes,
            &|cx, p| {
                let (y, m) = cx.relu_with_mask(&p[0])?;
                Ok(pack(&[&y, &m], p[0].len()))
            },
        )?;
        let mut parts = unpack(&out, &[1, 1]).into_iter();
        let y = parts.next().expect("two parts").into_shape(x.shape())?;
        let m = parts.next().expect("two parts").into_shape(x.shape())?;
        Ok((y, m))
    }

    /// Max-pooling and its one-hot windows, the batch in `chunks` chunks.
    fn maxpool(
        &self,
        c: &Ctx,
        m: usize,
        x: &Share,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<(Share, Share)> {
        let b = x.shape()[0];
        let out = crate::sched::chunked(
            c,
            std::slice::from_ref(x),
            &[0],
            self.chunks(m, x.len()),
            self.lanes,
            &|cx, p| {
                let (y, hot) = cx.maxpool2d_with_mask(&p[0], kernel, stride, padding)?;
                Ok(pack(&[&y, &hot], p[0].shape()[0]))
            },
        )?;
        let cols = out.shape()[1];
        let kk = kernel * kernel;
        let per = cols / (1 + kk);
        let mut parts = unpack(&out, &[per, per * kk]).into_iter();
        let y = parts.next().expect("two parts");
        let hot = parts.next().expect("two parts");
        let ys = infer(
            &Op::MaxPool {
                kernel,
                stride,
                padding,
            },
            &[x.shape()],
        )
        .map_err(Error::Shape)?;
        Ok((y.into_shape(&ys)?, hot.into_shape(&[b * per, kk])?))
    }

    /// x·bit for a scale-1 bit of x's shape (relu's and max-pool's backward), rows in
    /// `chunks` chunks.
    fn select(&self, c: &Ctx, m: usize, x: &Share, bit: &Share) -> Result<Share> {
        let s = x.shape().to_vec();
        let rows = if s.len() == 2 { s[0] } else { x.len() };
        let cols = x.len() / rows.max(1);
        let (x2, b2) = (x.reshape(&[rows, cols])?, bit.reshape(&[rows, cols])?);
        let k = self.chunks(m, x.len());
        crate::sched::chunked(c, &[x2, b2], &[0], k, self.lanes, &|cx, p| {
            cx.mul_raw(&p[0], &p[1])
        })?
        .into_shape(&s)
    }

    fn param(&self, t: TensorId) -> Option<usize> {
        self.params.iter().position(|&p| p == t)
    }

    /// Model owner's initial weights, secret-shared (free, PRZS).
    pub fn share_weights(&self, ctx: &Ctx) -> Result<Vec<Share>> {
        let c = ctx.for_node(node_id(0, 0, Phase::Update, MAX_NODES - 1));
        self.params
            .iter()
            .map(|&t| {
                let v = self.g.tensors[t].constant().expect("a parameter");
                let enc = (ctx.party() == MODEL_OWNER).then(|| c.fixed().encode_tensor(&v.plain()));
                c.share_input(MODEL_OWNER, enc.as_ref(), v.shape())
            })
            .collect()
    }

    fn weight<'w>(&self, w: &'w [Share], t: TensorId) -> Result<&'w Share> {
        self.param(t).map(|i| &w[i]).ok_or_else(|| {
            Error::Config(format!(
                "tensor '{}' is read as a weight but is not trainable",
                self.g.tensors[t].name
            ))
        })
    }

    /// The forward pass on secret x with secret weights `w`; with `keep`, the tape.
    fn forward(
        &self,
        ctx: &Ctx,
        at: At,
        phase: Phase,
        w: &[Share],
        x: Share,
        keep: bool,
    ) -> Result<(Share, Tape)> {
        let g = self.g;
        let mut vals: Vec<Option<Share>> = vec![None; g.tensors.len()];
        let mut masks: Vec<Option<Share>> = vec![None; g.nodes.len()];
        let mut left = g.readers();
        vals[g.input] = Some(x);
        for (i, n) in g.nodes.iter().enumerate() {
            let c = ctx.for_node(node_id(at.step, at.micro, phase, i));
            let act = |k: usize| -> Result<&Share> {
                vals[n.inputs[k]]
                    .as_ref()
                    .ok_or_else(|| Error::Protocol(format!("{n}: input {k} is not an activation")))
            };
            let (y, mask) = self
                .node_forward(&c, at, phase, i, n, w, &act)
                .map_err(|e| named(e, n))?;
            masks[i] = mask.filter(|_| keep);
            if !keep {
                for &t in &n.inputs {
                    left[t] -= 1;
                    if left[t] == 0 && t != g.input {
                        vals[t] = None;
                    }
                }
            }
            vals[n.output] = Some(y);
        }
        let out = vals[g.output]
            .clone()
            .ok_or_else(|| Error::Protocol("the graph's output was never computed".into()))?;
        Ok((out, Tape { vals, masks }))
    }

    #[allow(clippy::too_many_arguments)]
    fn node_forward<'v>(
        &self,
        c: &Ctx,
        at: At,
        phase: Phase,
        i: NodeId,
        n: &Node,
        w: &[Share],
        act: &dyn Fn(usize) -> Result<&'v Share>,
    ) -> Result<(Share, Option<Share>)> {
        let g = self.g;
        let is_param = |k: usize| n.inputs.get(k).and_then(|&t| self.param(t)).is_some();
        Ok(match &n.op {
            Op::Conv2d { stride, padding } => {
                let wt = self.weight(w, n.inputs[1])?;
                let op = LinearOp::Conv2d {
                    stride: *stride,
                    padding: *padding,
                };
                let mut y = self.product(
                    c,
                    at.slot(node_id(at.step, at.micro, phase, i)),
                    op,
                    act(0)?,
                    wt,
                )?;
                if n.inputs.len() > 2 {
                    let b = self.weight(w, n.inputs[2])?;
                    y.0.add_broadcast_assign(&b.0.reshaped(&[b.len(), 1, 1])?)?;
                }
                (y, None)
            }
            Op::Gemm { trans_b, .. } => {
                let wt = self.weight(w, n.inputs[1])?;
                let wt = if *trans_b {
                    Share(wt.0.transpose2())
                } else {
                    wt.clone()
                };
                let slot = at.slot(node_id(at.step, at.micro, phase, i));
                let mut y = self.product(c, slot, LinearOp::Matmul, act(0)?, &wt)?;
                if n.inputs.len() > 2 {
                    y.0.add_broadcast_assign(&self.weight(w, n.inputs[2])?.0)?;
                }
                (y, None)
            }
            Op::MatMul => {
                let x = act(0)?;
                let wt = self.weight(w, n.inputs[1])?;
                let (k, nn) = (wt.shape()[0], wt.shape()[1]);
                let rows = x.reshape(&[x.len() / k, k])?;
                let mut out = x.shape().to_vec();
                *out.last_mut().unwrap() = nn;
                let slot = at.slot(node_id(at.step, at.micro, phase, i));
                let y = self.product(c, slot, LinearOp::Matmul, &rows, wt)?;
                (y.into_shape(&out)?, None)
            }
            Op::Add => {
                let y = match (is_param(0), is_param(1)) {
                    (false, false) => {
                        let (a, b) = (act(0)?, act(1)?);
                        if a.shape() == b.shape() {
                            a.add(b)
                        } else {
                            let to = shape::broadcast_shape(a.shape(), b.shape())
                                .ok_or_else(|| Error::Shape("operands do not broadcast".into()))?;
                            let mut y = Share(RingTensor::zeros(&to));
                            y.0.add_broadcast_assign(&a.0)?;
                            y.0.add_broadcast_assign(&b.0)?;
                            y
                        }
                    }
                    (false, true) | (true, false) => {
                        let (x, b) = if is_param(1) {
                            (act(0)?, self.weight(w, n.inputs[1])?)
                        } else {
                            (act(1)?, self.weight(w, n.inputs[0])?)
                        };
                        let mut y = x.clone();
                        y.0.add_broadcast_assign(&b.0)?;
                        y
                    }
                    (true, true) => unreachable!("refused by parameters()"),
                };
                (y, None)
            }
            Op::Relu => {
                let (y, m) = self.relu(c, at.m, act(0)?)?;
                (y, Some(m))
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let (y, hot) = self.maxpool(c, at.m, act(0)?, *kernel, *stride, *padding)?;
                (y, Some(hot))
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => (c.avgpool2d(act(0)?, *kernel, *stride, *padding)?, None),
            Op::GlobalAvgPool => (c.global_avgpool(act(0)?)?, None),
            Op::Flatten { .. } | Op::Reshape { .. } => {
                let x = act(0)?;
                let op = match (&n.op, g.tensors[n.output].batch) {
                    (Op::Reshape { shape }, true) if !shape.is_empty() => {
                        let mut s = shape.clone();
                        s[0] = 0;
                        Op::Reshape { shape: s }
                    }
                    (op, _) => op.clone(),
                };
                let to = infer(&op, &[x.shape()]).map_err(Error::Shape)?;
                (x.reshape(&to)?, None)
            }
            Op::Identity => (act(0)?.clone(), None),
            other => {
                return Err(Error::Config(format!(
                    "{} has no training rule",
                    other.kind()
                )))
            }
        })
    }

    /// The backward traversal: gradients of the weights (aligned with `params`) from the
    /// tape and the output's gradient `dout`. The data input gets no gradient.
    fn backward(
        &self,
        ctx: &Ctx,
        at: At,
        w: &[Share],
        tape: &Tape,
        dout: Share,
    ) -> Result<Vec<Share>> {
        let g = self.g;
        let mut grads: Vec<Option<Share>> = vec![None; g.tensors.len()];
        grads[g.output] = Some(dout);
        for (i, n) in g.nodes.iter().enumerate().rev() {
            let Some(dy) = grads[n.output].take() else {
                continue;
            };
            let c = ctx.for_node(node_id(at.step, at.micro, Phase::Backward, i));
            let slot = at.slot(node_id(at.step, at.micro, Phase::Backward, i));
            let d = self
                .node_backward(&c, slot, at.m, i, n, w, tape, dy)
                .map_err(|e| named(e, n))?;
            for (&t, d) in n.inputs.iter().zip(d) {
                let Some(d) = d else { continue };
                grads[t] = Some(match grads[t].take() {
                    Some(acc) => acc.add(&d),
                    None => d,
                });
            }
        }
        self.params
            .iter()
            .zip(w)
            .map(|(&t, wt)| {
                Ok(grads[t]
                    .take()
                    .unwrap_or_else(|| Share(RingTensor::zeros(wt.shape()))))
            })
            .collect()
    }

    /// Whether tensor `t` needs a gradient: an activation other than the data input, or
    /// a weight.
    fn wants(&self, t: TensorId) -> bool {
        t != self.g.input && (self.param(t).is_some() || self.g.tensors[t].constant().is_none())
    }

    #[allow(clippy::too_many_arguments)]
    fn node_backward(
        &self,
        c: &Ctx,
        slot: Option<&crate::sched::slots::Slot>,
        m: usize,
        i: NodeId,
        n: &Node,
        w: &[Share],
        tape: &Tape,
        dy: Share,
    ) -> Result<Vec<Option<Share>>> {
        let val = |k: usize| -> Result<&Share> {
            let t = n.inputs[k];
            match self.param(t) {
                Some(p) => Ok(&w[p]),
                None => tape.vals[t]
                    .as_ref()
                    .ok_or_else(|| Error::Protocol(format!("input {k} is not on the tape"))),
            }
        };
        let mask = || {
            tape.masks[i]
                .as_ref()
                .ok_or_else(|| Error::Protocol("no mask on the tape".into()))
        };
        let wants = |k: usize| self.wants(n.inputs[k]);
        Ok(match &n.op {
            Op::Conv2d { stride, padding } => {
                let (x, wt) = (val(0)?, val(1)?);
                let (s, p) = (*stride, *padding);
                let dx = if wants(0) {
                    let op = LinearOp::ConvGradInput {
                        in_hw: (x.shape()[2], x.shape()[3]),
                        stride: s,
                        padding: p,
                    };
                    Some(self.product(c, slot, op, &dy, wt)?)
                } else {
                    None
                };
                let khw = (wt.shape()[2], wt.shape()[3]);
                let dw = c.conv2d_grad_weight(x, &dy, khw, s, p)?;
                let mut out = vec![dx, Some(dw)];
                if n.inputs.len() > 2 {
                    // Σ over batch and positions: local.
                    let o = dy.shape()[1];
                    out.push(Some(Share(
                        reduce_to(&dy.0, &[1, o, 1, 1])?.reshaped(&[o])?,
                    )));
                }
                out
            }
            Op::Gemm { trans_b, .. } => {
                let (x, wt) = (val(0)?, val(1)?);
                let w_eff = if *trans_b {
                    wt.clone()
                } else {
                    Share(wt.0.transpose2())
                };
                // dx = dy·W_effᵀ, with W_effᵀ = W when trans_b.
                let dx = if wants(0) {
                    Some(self.product(c, slot, LinearOp::Matmul, &dy, &w_eff)?)
                } else {
                    None
                };
                let dw = c.matmul(&Share(x.0.transpose2()), &dy)?;
                let dw = if *trans_b {
                    Share(dw.0.transpose2())
                } else {
                    dw
                };
                let mut out = vec![dx, Some(dw)];
                if n.inputs.len() > 2 {
                    out.push(Some(Share(reduce_to(&dy.0, val(2)?.shape())?)));
                }
                out
            }
            Op::MatMul => {
                let (x, wt) = (val(0)?, val(1)?);
                let (k, nn) = (wt.shape()[0], wt.shape()[1]);
                let rows = x.len() / k;
                let x2 = x.reshape(&[rows, k])?;
                let dy2 = dy.reshape(&[rows, nn])?;
                let dx = if wants(0) {
                    let wt_t = Share(wt.0.transpose2());
                    let d = self.product(c, slot, LinearOp::Matmul, &dy2, &wt_t)?;
                    Some(d.into_shape(x.shape())?)
                } else {
                    None
                };
                let dw = c.matmul(&Share(x2.0.transpose2()), &dy2)?;
                vec![dx, Some(dw)]
            }
            Op::Add => (0..2)
                .map(|k| {
                    Ok(if wants(k) {
                        Some(Share(reduce_to(&dy.0, val(k)?.shape())?))
                    } else {
                        None
                    })
                })
                .collect::<Result<_>>()?,
            Op::Relu => vec![Some(self.select(c, m, &dy, mask()?)?)],
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let hot = mask()?;
                let kk = kernel * kernel;
                let rows = Share(RingTensor::from_vec(
                    hot.shape(),
                    repeat_each(dy.0.data(), kk),
                ));
                let picked = self.select(c, m, &rows, hot)?;
                let x = val(0)?;
                vec![Some(Share(pool_scatter(
                    &picked.0,
                    x.shape(),
                    *kernel,
                    *stride,
                    *padding,
                )?))]
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let kk = kernel * kernel;
                let d = c.mul_public(&dy, 1.0 / kk as f64)?;
                let rows = RingTensor::from_vec(&[d.len(), kk], repeat_each(d.0.data(), kk));
                let x = val(0)?;
                vec![Some(Share(pool_scatter(
                    &rows,
                    x.shape(),
                    *kernel,
                    *stride,
                    *padding,
                )?))]
            }
            Op::GlobalAvgPool => {
                let x = val(0)?;
                let hw = x.shape()[2] * x.shape()[3];
                let d = c.mul_public(&dy, 1.0 / hw as f64)?;
                vec![Some(Share(RingTensor::from_vec(
                    x.shape(),
                    repeat_each(d.0.data(), hw),
                )))]
            }
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => {
                vec![Some(dy.into_shape(val(0)?.shape())?)]
            }
            other => {
                return Err(Error::Config(format!(
                    "{} has no backward rule",
                    other.kind()
                )))
            }
        })
    }

    /// Logits of `x` (no tape), for evaluation.
    fn logits(&self, ctx: &Ctx, step: usize, w: &[Share], x: Share) -> Result<Share> {
        let at = At {
            step,
            micro: 0,
            m: 1,
            ahead: None,
        };
        Ok(self.forward(ctx, at, Phase::Eval, w, x, false)?.0)
    }

    /// Correct predictions (a raw integer share) of `x` against one-hot labels `y` (raw
    /// 0/1): Σ argmax-one-hot(logits) · y, never revealing a prediction.
    pub fn correct(
        &self,
        ctx: &Ctx,
        step: usize,
        w: &[Share],
        x: Share,
        y: &Share,
    ) -> Result<Share> {
        let z = self.logits(ctx, step, w, x)?;
        let c = ctx.for_node(node_id(step, 0, Phase::Eval, MAX_NODES - 1));
        let hot = c.argmax_dim(&z, 1)?;
        let hit = c.mul_raw(&hot, y)?;
        Ok(Share(reduce_to(&hit.0, &[1])?))
    }

    /// One micro-batch: forward, loss, backward. Returns the weight gradients and the
    /// loss summed over the micro-batch's rows (a share at scale 2^f). `batch`: the
    /// mini-batch size the loss is the mean over.
    fn micro_step(
        &self,
        ctx: &Ctx,
        at: At,
        w: &[Share],
        x: Share,
        y: &Share,
        batch: usize,
    ) -> Result<(Vec<Share>, Share)> {
        let (z, tape) = self.forward(ctx, at, Phase::Forward, w, x, true)?;
        let c = ctx.for_node(node_id(at.step, at.micro, Phase::Loss, 0));
        let (loss, dz) = softmax_xent(&c, &z, y, batch)?;
        let grads = self.backward(ctx, at, w, &tape, dz)?;
        Ok((grads, loss))
    }

    /// One SGD step on a mini-batch x [B, ...] with one-hot labels y [B, K] (raw 0/1), in
    /// the schedule's m micro-batches (each a lane; gradients summed, one update). Returns
    /// the loss summed over the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        ctx: &Ctx,
        step: usize,
        w: &mut [Share],
        velocity: &mut Vec<Share>,
        sgd: &Sgd,
        x: &Share,
        y: &Share,
    ) -> Result<Share> {
        let batch = x.shape()[0];
        let m = self.m.clamp(1, batch.max(1));
        let lanes = self.lanes;
        let ranges = crate::ring::tensor::split_ranges(batch, m);
        let wr: &[Share] = w;
        let parts: Vec<(Ctx, usize, Share, Share)> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(s, e))| {
                let c = if i == 0 {
                    ctx.for_node(0)
                } else {
                    ctx.uncounted()
                };
                (
                    c,
                    i,
                    Share(x.0.slice_axis(0, s, e)),
                    Share(y.0.slice_axis(0, s, e)),
                )
            })
            .collect();
        let rows: Vec<usize> = ranges.iter().map(|&(s, e)| e - s).collect();
        let planned = if self.ahead {
            self.planned(step, &rows, wr)?
        } else {
            Vec::new()
        };
        let ahead = self.ahead.then(|| Ahead {
            slots: Slots::new(planned.len()),
            index: planned.iter().enumerate().map(|(i, p)| (p.id, i)).collect(),
        });
        let run = |(c, i, xb, yb): (Ctx, usize, Share, Share)| {
            let at = At {
                step,
                micro: i,
                m,
                ahead: ahead.as_ref(),
            };
            self.micro_step(&c, at, wr, xb, &yb, batch)
        };
        let activations = || -> Result<Vec<(Vec<Share>, Share)>> {
            if m == 1 {
                Ok(vec![run(parts.into_iter().next().expect("one part"))?])
            } else {
                crate::sched::in_lanes(lanes, "micro-batch", parts, &run)
            }
        };
        let outs = match &ahead {
            None => activations()?,
            Some(a) => {
                // The activations on this lane, the weights lane beside it, with each
                // product's own keys (its node's first operations) and its own tags. Its
                // messages go as foreground traffic, not background as in inference: a
                // step's weights are new, so its masks are wanted almost at once, and as
                // background they waited behind the micro-batches' traffic (all three
                // schemes 0.90x inter-batch's samples/s with it, 0.98x without: batch 128,
                // 10 Gbit/s, 0.02 ms, paired, results/train-lanes/README.md).
                let work: Vec<(Ctx, Planned)> = planned
                    .into_iter()
                    .map(|p| (ctx.for_node(p.id).weights_lane().counted_ahead(), p))
                    .collect();
                let weights = move || -> Result<()> {
                    // Layer by layer, in the order the lanes reach them (`planned`): the
                    // layer's triple for every micro-batch (their input masks A go to the
                    // slots at once, so a lane can open E while F is in flight), their
                    // weight masks in one round, then C + A·F for each.
                    let n = work.len();
                    let mut ready = 0;
                    let mut work = work.into_iter().enumerate().peekable();
                    let r = (|| -> Result<()> {
                        while let Some((k0, (c0, p0))) = work.next() {
                            let mut group = vec![(k0, c0, p0)];
                            while let Some((k, (c, p))) =
                                work.next_if(|(_, (_, p))| p.layer == group[0].2.layer)
                            {
                                group.push((k, c, p));
                            }
                            let mut triples = Vec::with_capacity(group.len());
                            let mut ws = Vec::with_capacity(group.len());
                            let mut cs = Vec::with_capacity(group.len());
                            for (k, c, p) in group {
                                let keys = c.linear_keys();
                                let t =
                                    c.take_linear_triple(&keys, p.op, &p.x_shape, p.w.shape())?;
                                a.slots.get(k).set_mask(t.mask());
                                triples.push((k, t));
                                ws.push(p.w);
                                cs.push(c);
                            }
                            let fs = cs[0].open_weight_masks(
                                triples.iter().map(|(_, t)| t).zip(ws).collect(),
                            )?;
                            for (((k, t), f), c) in triples.into_iter().zip(&fs).zip(&cs) {
                                let prep = c.prepare_with_mask(t, f)?;
                                a.slots.get(k).set(std::sync::Arc::new(prep));
                                ready = k + 1;
                            }
                        }
                        Ok(())
                    })();
                    if let Err(e) = &r {
                        for k in ready..n {
                            a.slots.get(k).fail(e.duplicate());
                        }
                    }
                    r
                };
                let (y, done) = crate::sched::beside(lanes, activations, weights);
                let y = y?;
                done??;
                y
            }
        };
        let mut it = outs.into_iter();
        let (mut grads, mut loss) = it.next().expect("at least one micro-batch");
        for (g, l) in it {
            for (a, b) in grads.iter_mut().zip(&g) {
                a.0.add_assign(&b.0);
            }
            loss.0.add_assign(&l.0);
        }
        let c = ctx.for_node(node_id(step, 0, Phase::Update, 0));
        sgd_step(&c, sgd, w, &grads, velocity)?;
        Ok(loss)
    }
}

impl<'s> At<'s> {
    /// The slot of the product of node `id` when its weight mask was opened ahead.
    fn slot(&self, id: u64) -> Option<&'s crate::sched::slots::Slot> {
        let a = self.ahead?;
        a.index.get(&id).map(|&k| a.slots.get(k))
    }
}

impl Trainable<'_> {
    /// x·w (a matmul or conv) as a Beaver product: inline (E and F in one message), or
    /// with the weight mask opened ahead in `slot` (only E = X − A opened here).
    fn product(
        &self,
        c: &Ctx,
        slot: Option<&crate::sched::slots::Slot>,
        op: LinearOp,
        x: &Share,
        w: &Share,
    ) -> Result<Share> {
        let Some(slot) = slot else {
            return c.linear(op, x, w);
        };
        // The same keys the weights lane took (the node's first operations).
        let _keys = c.linear_keys();
        let a = slot.mask()?;
        let e = c.open_input_mask(&a, x, 0)?;
        let y = c.finish_with_mask(&*slot.peek()?, &e, 0);
        slot.done(x.shape()[0]);
        y
    }

    /// The products of step `step` whose weight masks the weights lane opens ahead, in
    /// the order the activations reach them: the forward products, then the backward ones
    /// (reverse graph order), each layer's for every micro-batch. `rows`: each
    /// micro-batch's size.
    fn planned(&self, step: usize, rows: &[usize], w: &[Share]) -> Result<Vec<Planned>> {
        let g = self.g;
        let weight = |t: TensorId| self.weight(w, t).cloned();
        let shape_at = |t: TensorId, b: usize| {
            let mut s = g.tensors[t].shape.clone();
            if g.tensors[t].batch && !s.is_empty() {
                s[0] = b;
            }
            s
        };
        let mut fwd = Vec::new();
        let mut bwd = Vec::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for (micro, &b) in rows.iter().enumerate() {
                let id = node_id(step, micro, Phase::Forward, i);
                let bid = node_id(step, micro, Phase::Backward, i);
                let wants_dx = self.wants(n.inputs[0]);
                match &n.op {
                    Op::Conv2d { stride, padding } => {
                        let xs = shape_at(n.inputs[0], b);
                        let wt = weight(n.inputs[1])?;
                        if wants_dx {
                            bwd.push(Planned {
                                id: bid,
                                layer: node_id(step, 0, Phase::Backward, i),
                                op: LinearOp::ConvGradInput {
                                    in_hw: (xs[2], xs[3]),
                                    stride: *stride,
                                    padding: *padding,
                                },
                                x_shape: shape_at(n.output, b),
                                w: wt.clone(),
                            });
                        }
                        fwd.push(Planned {
                            id,
                            layer: node_id(step, 0, Phase::Forward, i),
                            op: LinearOp::Conv2d {
                                stride: *stride,
                                padding: *padding,
                            },
                            x_shape: xs,
                            w: wt,
                        })
                    }
                    Op::Gemm { trans_b, .. } => {
                        let wt = weight(n.inputs[1])?;
                        let w_eff = if *trans_b {
                            Share(wt.0.transpose2())
                        } else {
                            wt.clone()
                        };
                        let xs = shape_at(n.inputs[0], b);
                        let ys = shape_at(n.output, b);
                        if wants_dx {
                            bwd.push(Planned {
                                id: bid,
                                layer: node_id(step, 0, Phase::Backward, i),
                                op: LinearOp::Matmul,
                                x_shape: ys,
                                w: Share(w_eff.0.transpose2()),
                            });
                        }
                        fwd.push(Planned {
                            id,
                            layer: node_id(step, 0, Phase::Forward, i),
                            op: LinearOp::Matmul,
                            x_shape: xs,
                            w: w_eff,
                        });
                    }
                    Op::MatMul => {
                        let wt = weight(n.inputs[1])?;
                        let (k, nn) = (wt.shape()[0], wt.shape()[1]);
                        let r = shape_at(n.inputs[0], b).iter().product::<usize>() / k.max(1);
                        if wants_dx {
                            bwd.push(Planned {
                                id: bid,
                                layer: node_id(step, 0, Phase::Backward, i),
                                op: LinearOp::Matmul,
                                x_shape: vec![r, nn],
                                w: Share(wt.0.transpose2()),
                            });
                        }
                        fwd.push(Planned {
                            id,
                            layer: node_id(step, 0, Phase::Forward, i),
                            op: LinearOp::Matmul,
                            x_shape: vec![r, k],
                            w: wt,
                        });
                    }
                    _ => {}
                }
            }
        }
        // Micro-batches run side by side and reach a layer at about the same time: the
        // forward products layer by layer, each layer's for every micro-batch, then the
        // backward ones the same way, last layer first.
        bwd.reverse();
        fwd.extend(bwd);
        Ok(fwd)
    }
}

/// An error inside a node names the node.
fn named(e: Error, n: &Node) -> Error {
    match e {
        Error::Shape(m) => Error::Shape(format!("{n}: {m}")),
        Error::Config(m) => Error::Config(format!("{n}: {m}")),
        Error::Protocol(m) => Error::Protocol(format!("{n}: {m}")),
        other => other,
    }
}

/// Parts with `rows` rows each (any shape, row-major) side by side: [rows, Σ cols], so one
/// lane's outputs travel as one tensor whose axis 0 is the chunked one.
fn pack(parts: &[&Share], rows: usize) -> Share {
    let cols: Vec<usize> = parts.iter().map(|p| p.len() / rows.max(1)).collect();
    let total: usize = cols.iter().sum();
    let mut out = Vec::with_capacity(rows * total);
    for r in 0..rows {
        for (p, &c) in parts.iter().zip(&cols) {
            out.extend_from_slice(&p.0.data()[r * c..(r + 1) * c]);
        }
    }
    Share(RingTensor::from_vec(&[rows, total], out))
}

/// The inverse of `pack`: [rows, c_i] for each of `cols`.
fn unpack(t: &Share, cols: &[usize]) -> Vec<Share> {
    let rows = t.shape()[0];
    let total: usize = cols.iter().sum();
    let mut outs: Vec<Vec<u64>> = cols.iter().map(|&c| Vec::with_capacity(rows * c)).collect();
    for r in 0..rows {
        let mut at = r * total;
        for (o, &c) in outs.iter_mut().zip(cols) {
            o.extend_from_slice(&t.0.data()[at..at + c]);
            at += c;
        }
    }
    outs.into_iter()
        .zip(cols)
        .map(|(d, &c)| Share(RingTensor::from_vec(&[rows, c], d)))
        .collect()
}

/// Each value repeated k times in a row.
fn repeat_each(d: &[u64], k: usize) -> Vec<u64> {
    d.iter().flat_map(|&v| std::iter::repeat_n(v, k)).collect()
}

/// Sum `t` over the axes that `to` broadcasts along (numpy rules), giving shape `to`:
/// the adjoint of broadcasting, local on shares.
pub fn reduce_to(t: &RingTensor, to: &[usize]) -> Result<RingTensor> {
    if t.shape() == to {
        return Ok(t.clone());
    }
    let ts = t.shape();
    if to.len() > ts.len() || shape::broadcast_shape(to, ts).as_deref() != Some(ts) {
        return Err(Error::Shape(format!(
            "gradient of shape {ts:?} does not reduce to {to:?}"
        )));
    }
    let r = ts.len();
    let mut full = vec![1; r - to.len()];
    full.extend_from_slice(to);
    let mut out = RingTensor::zeros(to);
    let o = out.data_mut();
    for (i, &v) in t.data().iter().enumerate() {
        let (mut rem, mut at, mut stride) = (i, 0, 1);
        for ax in (0..r).rev() {
            let c = rem % ts[ax];
            rem /= ts[ax];
            if full[ax] != 1 {
                at += c * stride;
            }
            stride *= full[ax];
        }
        o[at] = o[at].wrapping_add(v);
    }
    Ok(out)
}

/// Softmax cross-entropy of logits z [b, K] against one-hot y (raw 0/1), as CrypTen's
/// softmax inlined so its pieces serve the loss too: m = max z, d = z − m, e = exp(d),
/// s = Σ e ∈ [1, K], p = e·(1/s). Gradient (p − y)/`batch`; loss Σ_rows ln s − Σ d·y (the
/// mean's numerator; divided when revealed).
pub fn softmax_xent(c: &Ctx, z: &Share, y: &Share, batch: usize) -> Result<(Share, Share)> {
    let s = z.shape();
    if s.len() != 2 || y.shape() != s {
        return Err(Error::Shape(format!(
            "cross-entropy of logits {s:?} against labels {:?} (logits must be [batch, classes])",
            y.shape()
        )));
    }
    let (b, k) = (s[0], s[1]);
    let m = c.max_dim(z, 1)?;
    let d = z.sub(&Share(RingTensor::from_vec(s, repeat_each(m.0.data(), k))));
    let e = c.exp(&d)?;
    let sum = Share(reduce_to(&e.0, &[b, 1])?);
    let r = c.reciprocal_pos(&sum)?;
    let p = c.mul(
        &e,
        &Share(RingTensor::from_vec(s, repeat_each(r.0.data(), k))),
    )?;
    let one = 1i64 << c.frac_bits();
    let dz = c.div_public(&p.sub(&y.mul_int(one)), batch as u64)?;
    let lse = c.ln(&sum)?;
    let picked = c.mul_raw(&d, y)?;
    let loss = Share(reduce_to(&lse.0, &[1])?).sub(&Share(reduce_to(&picked.0, &[1])?));
    Ok((loss, dz))
}

/// SGD (model::backward::Sgd's rule) on shares: d = g + wd·w; v = μ·v + d; w −= lr·v.
/// Each product by a public constant is one truncation.
pub fn sgd_step(
    c: &Ctx,
    sgd: &Sgd,
    w: &mut [Share],
    grads: &[Share],
    velocity: &mut Vec<Share>,
) -> Result<()> {
    let first = velocity.is_empty();
    for (i, (wt, g)) in w.iter_mut().zip(grads).enumerate() {
        let d = if sgd.weight_decay != 0.0 {
            g.add(&c.mul_public(wt, sgd.weight_decay)?)
        } else {
            g.clone()
        };
        let v = if sgd.momentum == 0.0 {
            d
        } else if first {
            velocity.push(d.clone());
            d
        } else {
            velocity[i] = c.mul_public(&velocity[i], sgd.momentum)?.add(&d);
            velocity[i].clone()
        };
        *wt = wt.sub(&c.mul_public(&v, sgd.lr)?);
    }
    Ok(())
}
