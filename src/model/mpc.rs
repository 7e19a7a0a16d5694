//! The MPC interpreter of a model graph: the one traversal every schedule runs. Each node
//! becomes protocol calls on its own context (`Ctx::for_node`), so its material and zero
//! sharings are addressed by node; how a node's work is split into lanes is asked of an
//! `Exec` (a schedule, src/sched), which never walks the graph itself. Depends on
//! model::graph, proto and ring.
//!
//! Secrets: the input belongs to the data owner; constants to the model owner, party 0.
//! With `Weights::Private` every constant a product, a sum or a concatenation uses
//! (weights, biases, added or joined constants) is secret-shared by party 0 for free
//! (PRZS); with `Weights::Public` they are public. Normalisation parameters (LayerNorm γ, β; an unfolded BatchNorm) are
//! public either way, as protocols.md §4.1 takes them.

use std::borrow::Cow;

use super::graph::{infer, pool_valid_counts, Graph, NodeId, Op};
use super::Weights;
use crate::error::{Error, Result};
use crate::proto::approx::{stack, unstack};
use crate::proto::{Ctx, LinearOp, Share};
use crate::ring::Constant;
use crate::ring::{shape, PlainTensor, RingTensor};

/// Work on a node's parts: the parts of each input along the split axis, on a context
/// narrowed to them.
pub type PieceFn<'f> = dyn Fn(&Ctx, &[Share]) -> Result<Share> + Sync + 'f;

/// A product with a constant weight, as the schedules run it: x has its separable rows on
/// axis 0 ([R, k] for a matmul, [B, C, H, W] for a conv).
pub struct LinearLayer<'g> {
    pub node: NodeId,
    pub op: LinearOp,
    /// [k, n] for a matmul, [O, C, KH, KW] for a conv.
    pub weight: Cow<'g, Constant>,
    pub weights: Weights,
}

/// How a schedule runs the nodes the traversal hands it.
pub trait Exec: Sync {
    /// `f` on `xs` (each split alike), whole or in parts along one of `axes` (axes along
    /// which the node is separable and a part is contiguous), each part on
    /// `ctx.narrow(..)`; the parts' outputs concatenated along that axis. Must leave `ctx`
    /// at the operation index its parts reached (`Ctx::set_op_index`).
    fn split(&self, ctx: &Ctx, xs: &[Share], axes: &[usize], f: &PieceFn) -> Result<Share>;
    /// `layer` on x, truncated, without bias.
    fn linear(&self, ctx: &Ctx, layer: &LinearLayer, x: &Share) -> Result<Share>;
}

/// The run-time (micro-batch) shape of a reshape's target: a graph tensor whose axis 0 is
/// the batch keeps the lane's batch.
fn reshape_target(g: &Graph, out: usize, op: &Op, x: &[usize]) -> Result<Vec<usize>> {
    let op = match (op, g.tensors[out].batch) {
        (Op::Reshape { shape }, true) if !shape.is_empty() => {
            let mut s = shape.clone();
            s[0] = 0;
            Cow::Owned(Op::Reshape { shape: s })
        }
        _ => Cow::Borrowed(op),
    };
    infer(&op, &[x]).map_err(Error::Shape)
}

fn broadcast(t: &RingTensor, to: &[usize]) -> Result<RingTensor> {
    match shape::broadcast_shape(t.shape(), to) {
        Some(s) if s == to && t.is_unstored_zeros() => Ok(RingTensor::zeros(to)),
        Some(s) if s == to => Ok(RingTensor::from_vec(
            to,
            shape::broadcast_to(t.data(), t.shape(), to),
        )),
        _ => Err(Error::Shape(format!(
            "{:?} does not broadcast to {to:?}",
            t.shape()
        ))),
    }
}

fn permute(x: &Share, perm: &[usize]) -> Share {
    Share(x.0.permute(perm))
}

fn swap_last2(x: &Share) -> Share {
    let n = x.shape().len();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.swap(n - 2, n - 1);
    permute(x, &perm)
}

/// The graph on the secret input `x` (the whole batch, or a micro-batch on a context
/// narrowed to it). Returns the secret output.
pub fn forward(ctx: &Ctx, g: &Graph, x: Share, weights: Weights, exec: &dyn Exec) -> Result<Share> {
    let mut vals: Vec<Option<Share>> = vec![None; g.tensors.len()];
    let mut left = g.readers();
    vals[g.input] = Some(x);
    if crate::alloc::rss_trace() && !ctx.is_dry() {
        if let Some((rss, hwm)) = crate::alloc::resident_mib() {
            eprintln!("rss: party {} start: {rss} MiB (peak {hwm})", ctx.party());
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let nctx = ctx.for_node(i as u64);
        // An activation this node reads last (and once) is handed over, not borrowed, so
        // reshapes and in-place steps need no copy of it.
        let mut owned: Vec<Option<Share>> = n
            .inputs
            .iter()
            .map(|&t| {
                let once = n.inputs.iter().filter(|&&u| u == t).count() == 1;
                if once && left[t] == 1 {
                    vals[t].take()
                } else {
                    None
                }
            })
            .collect();
        for &t in &n.inputs {
            left[t] -= 1;
        }
        let y = {
            let acts = n
                .inputs
                .iter()
                .zip(owned.iter_mut())
                .map(|(&t, o)| match o.take() {
                    Some(s) => Some(Cow::Owned(s)),
                    None => vals[t].as_ref().map(Cow::Borrowed),
                })
                .collect();
            let env = Node {
                g,
                i,
                weights,
                exec,
                acts,
            };
            env.run(&nctx).map_err(|e| name_node(e, &n.to_string()))?
        };
        for &t in &n.inputs {
            if left[t] == 0 {
                vals[t] = None;
            }
        }
        vals[n.output] = Some(y);
        if crate::alloc::rss_trace() && !ctx.is_dry() {
            if let Some((rss, hwm)) = crate::alloc::resident_mib() {
                eprintln!(
                    "rss: party {} node {i} {n}: {rss} MiB (peak {hwm})",
                    ctx.party()
                );
            }
        }
    }
    vals[g.output]
        .take()
        .ok_or_else(|| Error::Protocol("the graph's output was never computed".into()))
}

/// Shape and configuration errors say which node they came from; peer errors already name
/// the operation, and keep their kind.
fn name_node(e: Error, node: &str) -> Error {
    match e {
        Error::Shape(m) => Error::Shape(format!("{node}: {m}")),
        Error::Config(m) if !m.starts_with("node ") => Error::Config(format!("{node}: {m}")),
        other => other,
    }
}

struct Node<'a, 'g> {
    g: &'g Graph,
    i: NodeId,
    weights: Weights,
    exec: &'a dyn Exec,
    /// The node's activation inputs (None for constants), owned where it reads them last.
    acts: Vec<Option<Cow<'a, Share>>>,
}

impl<'g> Node<'_, 'g> {
    fn act(&self, k: usize) -> Result<&Share> {
        self.acts.get(k).and_then(|a| a.as_deref()).ok_or_else(|| {
            Error::Protocol(format!("input {k} is not an activation computed before"))
        })
    }
    /// Input `k` by value (a copy only when another node still reads it).
    fn own(&mut self, k: usize) -> Result<Share> {
        self.acts
            .get_mut(k)
            .and_then(Option::take)
            .map(Cow::into_owned)
            .ok_or_else(|| {
                Error::Protocol(format!("input {k} is not an activation computed before"))
            })
    }
    /// Constant input `k` as the graph stores it (a linear layer's weight).
    fn weight(&self, k: usize) -> Option<&'g Constant> {
        let t = *self.g.nodes[self.i].inputs.get(k)?;
        self.g.tensors[t].constant()
    }
    /// Constant input `k` in f64 (a bias or normalisation parameter: small).
    fn cst(&self, k: usize) -> Option<Cow<'g, PlainTensor>> {
        self.weight(k).map(Constant::plain)
    }

    /// y + a model constant: a share of party 0's constant (private weights), or the
    /// public constant added by party 0; broadcast in place.
    fn add_constant(&self, ctx: &Ctx, y: Share, c: &PlainTensor, negate_y: bool) -> Result<Share> {
        let mut y = if negate_y { y.neg() } else { y };
        let enc = ctx.fixed().encode_tensor(c);
        match self.weights {
            Weights::Private => {
                let share = ctx.share_input(0, Some(&enc), enc.shape())?;
                y.0.add_broadcast_assign(&share.0)?;
            }
            // (Not in the dry run, whose y is a placeholder that adding would allocate.)
            Weights::Public if ctx.party() == 0 && !ctx.is_dry() => {
                y.0.add_broadcast_assign(&enc)?
            }
            Weights::Public => {}
        }
        Ok(y)
    }

    /// A model constant as a share: party 0's secret-shared (private weights, free, PRZS),
    /// or public and held by party 0.
    fn constant_share(&self, ctx: &Ctx, c: &PlainTensor) -> Result<Share> {
        let enc = ctx.fixed().encode_tensor(c);
        match self.weights {
            Weights::Private => ctx.share_input(0, Some(&enc), enc.shape()),
            Weights::Public if ctx.party() == 0 => Ok(Share(enc)),
            Weights::Public => Ok(Share(RingTensor::zeros(enc.shape()))),
        }
    }

    /// The rows of constant `c` (axis 0: the whole batch, as the node's output has it) that
    /// belong to this lane's micro-batch: all of them unless a schedule runs the traversal
    /// on part of the batch (`ctx.window()`, units of the batch).
    fn lane_rows<'c>(&self, ctx: &Ctx, c: &'c PlainTensor) -> Result<Cow<'c, PlainTensor>> {
        let out = &self.g.tensors[self.g.nodes[self.i].output];
        let lane = (0..self.acts.len())
            .find_map(|k| self.act(k).ok())
            .map(|a| a.shape()[0]);
        let whole = c.shape()[0];
        if !out.batch || lane == Some(whole) {
            return Ok(Cow::Borrowed(c));
        }
        let w = ctx.window();
        let per = whole / w.total.max(1);
        if per * w.total != whole || Some(per * w.count) != lane {
            return Err(Error::Shape(format!(
                "a constant of {whole} rows does not split like the activations' {lane:?} (lane {}/{} of {})",
                w.start, w.count, w.total
            )));
        }
        let (s, e) = (w.start * per, (w.start + w.count) * per);
        let mut shape = c.shape().to_vec();
        shape[0] = e - s;
        Ok(Cow::Owned(PlainTensor::from_vec(
            &shape,
            shape::slice_axis(c.data(), c.shape(), 0, s, e),
        )))
    }

    fn linear(&self, ctx: &Ctx, op: LinearOp, w: Cow<'g, Constant>, x: &Share) -> Result<Share> {
        let layer = LinearLayer {
            node: self.i,
            op,
            weight: w,
            weights: self.weights,
        };
        self.exec.linear(ctx, &layer, x)
    }

    /// x [..., k] · w [k, n] as a linear layer over rows.
    fn rows_times(&self, ctx: &Ctx, x: Share, w: Cow<'g, Constant>) -> Result<Share> {
        let s = x.shape().to_vec();
        let k = *s.last().unwrap_or(&0);
        let n = w.shape()[1];
        let rows = x.into_shape(&[s.iter().product::<usize>() / k.max(1), k])?;
        let y = self.linear(ctx, LinearOp::Matmul, w, &rows)?;
        let mut out = s[..s.len() - 1].to_vec();
        out.push(n);
        y.into_shape(&out)
    }

    /// w [m, k] · x [..., k, n], as (xᵀ · wᵀ)ᵀ over the rows of x's transpose.
    fn const_times(&self, ctx: &Ctx, w: &Constant, x: &Share) -> Result<Share> {
        let y = self.rows_times(ctx, swap_last2(x), Cow::Owned(w.transpose2()))?;
        Ok(swap_last2(&y))
    }

    fn run(mut self, ctx: &Ctx) -> Result<Share> {
        let node = &self.g.nodes[self.i];
        let exec = self.exec;
        match &node.op {
            Op::Conv2d { stride, padding } => {
                let w = self.weight(1).expect("checked when built");
                let op = LinearOp::Conv2d {
                    stride: *stride,
                    padding: *padding,
                };
                let y = self.linear(ctx, op, Cow::Borrowed(w), self.act(0)?)?;
                match self.cst(2) {
                    Some(b) => {
                        let n = b.len();
                        let b = b.into_owned().reshape(&[n, 1, 1]);
                        self.add_constant(ctx, y, &b, false)
                    }
                    None => Ok(y),
                }
            }
            Op::Gemm { trans_a, trans_b } => {
                fn t(x: &Constant, on: bool) -> Cow<'_, Constant> {
                    if on {
                        Cow::Owned(x.transpose2())
                    } else {
                        Cow::Borrowed(x)
                    }
                }
                let y = match (self.weight(0), self.weight(1)) {
                    (None, Some(b)) => {
                        let a = if *trans_a {
                            swap_last2(self.act(0)?)
                        } else {
                            self.own(0)?
                        };
                        self.rows_times(ctx, a, t(b, *trans_b))?
                    }
                    (Some(a), None) => {
                        let b = self.act(1)?;
                        let b = if *trans_b { swap_last2(b) } else { b.clone() };
                        self.const_times(ctx, &t(a, *trans_a), &b)?
                    }
                    _ => {
                        let (a, b) = (self.act(0)?, self.act(1)?);
                        let a = if *trans_a { swap_last2(a) } else { a.clone() };
                        let b = if *trans_b { swap_last2(b) } else { b.clone() };
                        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
                        let (a, b) = (a.into_shape(&[1, m, k])?, b.into_shape(&[1, k, n])?);
                        ctx.matmul_batched(&a, &b)?.into_shape(&[m, n])?
                    }
                };
                match self.cst(2) {
                    Some(c) => self.add_constant(ctx, y, &c, false),
                    None => Ok(y),
                }
            }
            Op::MatMul => match (self.weight(0), self.weight(1)) {
                (None, Some(w)) if w.shape().len() == 2 => {
                    let x = self.own(0)?;
                    self.rows_times(ctx, x, Cow::Borrowed(w))
                }
                (Some(w), None) if w.shape().len() == 2 => self.const_times(ctx, w, self.act(1)?),
                (None, None) => {
                    let (a, b) = (self.act(0)?, self.act(1)?);
                    let (ra, rb) = (a.shape().len(), b.shape().len());
                    if a.shape()[..ra - 2] != b.shape()[..rb - 2] {
                        return Err(Error::Config(format!(
                            "products of two activations need equal leading dims, got {:?} and {:?}",
                            a.shape(),
                            b.shape()
                        )));
                    }
                    let lead: usize = a.shape()[..ra - 2].iter().product();
                    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
                    let mut out = a.shape()[..ra - 2].to_vec();
                    out.extend([m, n]);
                    let a3 = self.own(0)?.into_shape(&[lead, m, k])?;
                    let b3 = self.own(1)?.into_shape(&[lead, k, n])?;
                    let y =
                        exec.split(ctx, &[a3, b3], &[0], &|c, p| c.matmul_batched(&p[0], &p[1]))?;
                    y.into_shape(&out)
                }
                _ => Err(Error::Config(
                    "a constant operand of more than 2 dims is not supported".into(),
                )),
            },
            Op::Add | Op::Sub => {
                let sub = node.op == Op::Sub;
                match (self.cst(0), self.cst(1)) {
                    (None, None) => {
                        let (a, b) = (self.act(0)?, self.act(1)?);
                        if a.shape() == b.shape() {
                            return Ok(if sub { a.sub(b) } else { a.add(b) });
                        }
                        let to = shape::broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
                            Error::Shape(format!(
                                "{:?} and {:?} do not broadcast",
                                a.shape(),
                                b.shape()
                            ))
                        })?;
                        let (a, b) = (Share(broadcast(&a.0, &to)?), Share(broadcast(&b.0, &to)?));
                        Ok(if sub { a.sub(&b) } else { a.add(&b) })
                    }
                    (None, Some(c)) => {
                        let c = if sub { c.map(|v| -v) } else { c.into_owned() };
                        let y = self.own(0)?;
                        self.add_constant(ctx, y, &c, false)
                    }
                    (Some(c), None) => {
                        let y = self.own(1)?;
                        self.add_constant(ctx, y, &c, sub)
                    }
                    _ => unreachable!("checked when built"),
                }
            }
            Op::Mul => {
                let (x, c) = match (self.cst(0), self.cst(1)) {
                    (None, None) => (self.act(0)?, None),
                    (None, Some(c)) => (self.act(0)?, Some(c)),
                    (Some(c), None) => (self.act(1)?, Some(c)),
                    _ => unreachable!("checked when built"),
                };
                let other = match &c {
                    None => self.act(1)?.clone(),
                    // The public tensor rides along as a Share so the schedule splits it
                    // like x; it is never opened or added to. With private weights it is
                    // the model owner's, secret-shared (free, PRZS) in its own shape, so
                    // every lane and schedule gets the same sharing.
                    Some(c) => {
                        let enc = ctx.fixed().encode_tensor(c);
                        match self.weights {
                            Weights::Private => ctx.share_input(0, Some(&enc), enc.shape())?,
                            Weights::Public => Share(enc),
                        }
                    }
                };
                let to = shape::broadcast_shape(x.shape(), other.shape()).ok_or_else(|| {
                    Error::Shape(format!(
                        "{:?} and {:?} do not broadcast",
                        x.shape(),
                        other.shape()
                    ))
                })?;
                let n: usize = to.iter().product();
                let other = Share(broadcast(&other.0, &to)?.reshape(&[n])?);
                let x = Share(broadcast(&x.0, &to)?.reshape(&[n])?);
                let public = c.is_some() && self.weights == Weights::Public;
                self.exec
                    .split(ctx, &[x, other], &[0], &|cx, p| {
                        if public {
                            cx.mul_public_tensor(&p[0], &p[1].0)
                        } else {
                            cx.mul(&p[0], &p[1])
                        }
                    })?
                    .into_shape(&to)
            }
            Op::Sigmoid => self.elementwise(ctx, &sigmoid),
            Op::GeluErf => self.elementwise(ctx, &gelu_erf),
            Op::MulConst(c) => {
                let c = *c;
                self.elementwise(ctx, &move |cx, p| cx.mul_public(&p[0], c))
            }
            Op::DivConst(c) => {
                let c = *c;
                self.elementwise(ctx, &move |cx, p| cx.mul_public(&p[0], 1.0 / c))
            }
            Op::Relu => self.elementwise(ctx, &|cx, p| cx.relu(&p[0])),
            Op::Gelu => self.elementwise(ctx, &|cx, p| cx.gelu(&p[0])),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let (k, s, p) = (*kernel, *stride, *padding);
                self.planes(ctx, &|cx, x| cx.maxpool2d(&x[0], k, s, p))
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let (k, s, p) = (*kernel, *stride, *padding);
                self.planes(ctx, &|cx, x| cx.avgpool2d(&x[0], k, s, p))
            }
            Op::AvgPoolValid {
                kernel,
                stride,
                padding,
            } => {
                // The pool counting pads, then a product by the public k² / count of each
                // output position (one more truncation: < 2 ulp).
                let (k, s, p) = (*kernel, *stride, *padding);
                let y = self.planes(ctx, &|cx, x| cx.avgpool2d(&x[0], k, s, p))?;
                let x = self.act(0)?.shape().to_vec();
                let counts = pool_valid_counts(x[2], x[3], k, s, p);
                let plane = counts.len();
                let scale: Vec<f64> = (0..y.len())
                    .map(|i| (k * k) as f64 / counts[i % plane])
                    .collect();
                let scale = ctx
                    .fixed()
                    .encode_tensor(&PlainTensor::from_vec(y.shape(), scale));
                ctx.mul_public_tensor(&y, &scale)
            }
            Op::GlobalAvgPool => self.planes(ctx, &|cx, x| cx.global_avgpool(&x[0])),
            Op::Flatten { .. } | Op::Reshape { .. } => {
                let x = self.own(0)?;
                let to = reshape_target(self.g, node.output, &node.op, x.shape())?;
                x.into_shape(&to)
            }
            Op::Transpose { perm } => Ok(permute(self.act(0)?, perm)),
            Op::Concat { axis } => {
                let parts = (0..node.inputs.len())
                    .map(|k| match self.cst(k) {
                        None => self.act(k).map(|s| s.0.clone()),
                        Some(c) => {
                            let rows = self.lane_rows(ctx, &c)?;
                            Ok(self.constant_share(ctx, &rows)?.0)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Share(RingTensor::concat(*axis, &parts)))
            }
            Op::Slice { axis, start, end } => {
                Ok(Share(self.act(0)?.0.slice_axis(*axis, *start, *end)))
            }
            Op::Identity => self.own(0),
            Op::Softmax { axis } => {
                let x = self.own(0)?;
                let s = x.shape().to_vec();
                let outer: usize = s[..*axis].iter().product();
                let rest = x.len() / outer.max(1);
                let x3 = x.into_shape(&[outer, s[*axis], rest / s[*axis]])?;
                let y = exec.split(ctx, &[x3], &[0], &|c, p| c.softmax(&p[0], 1))?;
                y.into_shape(&s)
            }
            Op::LayerNorm { eps } => {
                let x = self.own(0)?;
                let s = x.shape().to_vec();
                let h = *s.last().unwrap_or(&1);
                let fp = ctx.fixed();
                let g = fp.encode_tensor(&self.cst(1).unwrap());
                let b = fp.encode_tensor(&self.cst(2).unwrap());
                let eps = *eps;
                let rows = x.len() / h;
                let y = exec.split(ctx, &[x.into_shape(&[rows, h])?], &[0], &|c, p| {
                    c.layernorm(&p[0], &g, &b, eps)
                })?;
                y.into_shape(&s)
            }
            Op::BatchNorm { eps } => {
                let x = self.act(0)?;
                let p = [1, 2, 3, 4].map(|k| self.cst(k).unwrap());
                let (sc, sh) = super::plain::batchnorm_affine([&p[0], &p[1], &p[2], &p[3]], *eps);
                let c = sc.len();
                let mut bshape = vec![c];
                bshape.extend(std::iter::repeat_n(1, x.shape().len() - 2));
                let fp = ctx.fixed();
                let s_enc = fp.encode_tensor(&PlainTensor::from_vec(&bshape, sc));
                let t_enc = fp.encode_tensor(&PlainTensor::from_vec(&bshape, sh));
                let mut y = ctx.mul_public_tensor(x, &broadcast(&s_enc, x.shape())?)?;
                if ctx.party() == 0 {
                    y.0.add_broadcast_assign(&t_enc)?;
                }
                Ok(y)
            }
        }
    }

    /// An elementwise node: the flattened tensor (no copy), split anywhere.
    fn elementwise(&mut self, ctx: &Ctx, f: &PieceFn) -> Result<Share> {
        let x = self.own(0)?;
        let s = x.shape().to_vec();
        let n = x.len();
        self.exec
            .split(ctx, &[x.into_shape(&[n])?], &[0], f)?
            .into_shape(&s)
    }

    /// A pooling node: windows never cross planes, so split the batch, or the channels of
    /// a single sample (contiguous only then).
    fn planes(&self, ctx: &Ctx, f: &PieceFn) -> Result<Share> {
        let x = self.act(0)?;
        let axes: &[usize] = if x.shape()[0] == 1 { &[0, 1] } else { &[0] };
        self.exec.split(ctx, std::slice::from_ref(x), axes, f)
    }
}

/// 1 / (1 + e^-x), from the engine's exp and reciprocal on |x| (so e^-|x| ∈ (0, 1] and
/// the reciprocal's argument lies in [1, 2], where it is accurate), and the symmetry
/// σ(-x) = 1 - σ(x): y = 1/2 + s·(σ(|x|) - 1/2) with s = ±1 the sign of x as a scale-1
/// share (a product without truncation, as `Ctx::reciprocal` does). Accuracy: e^-a
/// (a = |x|) errs by at most e^-a·[(e^(a²/512) - 1) + 512u] (the limit form, and exp's
/// fixed-point error, 256·2u relative; u one ulp), σ by that over (1 + e^-a)², plus the
/// reciprocal's (2x + 2)u on [1, 2] (under `--protocols fss` proto::spline's, at most
/// ~(2.3/x + 7)u there: 1.4e-4 against 9e-5, well inside the total): at most 2.1e-3 at
/// f = 16 (largest near x = 0, where the fixed-point term dominates; 1.5e-3 measured). Beyond |x| = 256 the exp's base turns
/// negative and the result is wrong.
fn sigmoid(ctx: &Ctx, p: &[Share]) -> Result<Share> {
    let x = &p[0];
    let s = ctx.add_raw(&ctx.ltz(x)?.mul_int(-2), 1);
    let abs = ctx.mul_raw(x, &s)?;
    let e = ctx.exp(&abs.neg())?;
    let r = ctx.reciprocal_pos(&ctx.add_const(&e, 1.0))?;
    let centred = ctx.add_const(&r, -0.5);
    Ok(ctx.add_const(&ctx.mul_raw(&centred, &s)?, 0.5))
}

/// Chebyshev coefficients c0..c10 of h(a) = a·Φ(-a) on a ∈ [0, 4], in u = a/2 - 1 ∈ [-1, 1]
/// (least squares on a grid of 40 001 points; max error of the series 1.6e-5).
const GELU_ERF_CHEB: [f64; 11] = [
    0.052378731144879835,
    -0.05614578544376955,
    -0.024558214461542306,
    0.05145653913315968,
    -0.029746203561201695,
    0.005977536816961061,
    0.0018726924042298575,
    -0.0013201774112714339,
    0.00014343273045062743,
    0.00010145801801493422,
    -3.6435662782449264e-05,
];

/// Extra fractional bits of the Chebyshev coefficients (as proto::nn's polynomial ones).
const CHEB_EXTRA_BITS: u32 = 8;

/// GeLU within 3e-4 of x·Φ(x) (`Op::GeluErf`). x·Φ(x) = relu(x) - h(|x|) with
/// h(a) = a·Φ(-a), which is smooth on a ≥ 0 and below h(4) = 1.3e-4 beyond 4; so
/// h(|x|) ≈ Σ c_k T_k(|x|/2 - 1) for |x| ≤ 4 and 0 beyond.
///
/// Rounds: one comparison of the stacked [x, x + 4, 4 - x] (bits x < 0, x < -4, x > 4);
/// one product by the scale-1 bits giving relu(x) and |x| (no truncation); u = |x|/2 - 1
/// (a 1-bit truncation); T_2 = 2u² - 1, then (T_3, T_4), (T_5..T_8), (T_9, T_10) from
/// products of lower ones in three stacked rounds (depth 4 instead of 9 for the
/// recurrence); one truncation of the coefficient sum; one product by the in-range bit.
/// Outside |x| ≤ 4 the T_k overflow harmlessly: they are multiplied by a zero bit.
///
/// Error (measured in f64 on [-10, 10]): 1.27e-4, the tail h(4) dropped beyond |x| = 4;
/// the series adds 1.6e-5; fixed point adds the truncations of u (1 ulp, times
/// |h'| ≤ 0.5 for the series) and of the T_k products (each T_k errs by O(k²) ulp, but the
/// coefficients past c_4 are below 0.006), under 1e-4 at f = 16.
fn gelu_erf(ctx: &Ctx, p: &[Share]) -> Result<Share> {
    let x = &p[0];
    let n = x.shape();
    let shifted = stack(&[x, &ctx.add_const(x, 4.0), &ctx.add_const(&x.neg(), 4.0)]);
    let bits = unstack(&ctx.ltz(&shifted)?, &[n, n, n]);
    let (neg, below, above) = (&bits[0], &bits[1], &bits[2]);
    let inside = ctx.add_raw(&below.add(above).neg(), 1);
    let pos = ctx.add_raw(&neg.neg(), 1);
    let sign = ctx.add_raw(&neg.mul_int(-2), 1);
    let ra = unstack(
        &ctx.mul_raw(&stack(&[&pos, &sign]), &stack(&[x, x]))?,
        &[n, n],
    );
    let (relu, a) = (&ra[0], &ra[1]);
    let u = ctx.add_const(&ctx.trunc_bits(a, 1)?, -1.0);
    // T_{i+j} = 2·T_i·T_j - T_{|i-j|}.
    let twice_minus = |prod: &Share, low: Option<&Share>| match low {
        Some(l) => prod.mul_int(2).sub(l),
        None => ctx.add_const(&prod.mul_int(2), -1.0),
    };
    let t2 = twice_minus(&ctx.square(&u)?, None);
    let r = unstack(&ctx.mul(&stack(&[&u, &t2]), &stack(&[&t2, &t2]))?, &[n, n]);
    let (t3, t4) = (twice_minus(&r[0], Some(&u)), twice_minus(&r[1], None));
    let r = unstack(
        &ctx.mul(&stack(&[&t2, &t3, &t3, &t4]), &stack(&[&t3, &t3, &t4, &t4]))?,
        &[n, n, n, n],
    );
    let t5 = twice_minus(&r[0], Some(&u));
    let t6 = twice_minus(&r[1], None);
    let t7 = twice_minus(&r[2], Some(&u));
    let t8 = twice_minus(&r[3], None);
    let r = unstack(&ctx.mul(&stack(&[&t4, &t5]), &stack(&[&t5, &t5]))?, &[n, n]);
    let (t9, t10) = (twice_minus(&r[0], Some(&u)), twice_minus(&r[1], None));
    let f = ctx.frac_bits();
    let g = CHEB_EXTRA_BITS;
    let ts = [&u, &t2, &t3, &t4, &t5, &t6, &t7, &t8, &t9, &t10];
    let mut acc = RingTensor::zeros(n);
    for (c, t) in GELU_ERF_CHEB[1..].iter().zip(ts) {
        let coeff = crate::ring::encode_at(*c, f + g);
        acc.add_assign(&t.0.scale(coeff));
    }
    let h = ctx.add_const(&ctx.trunc_bits(&Share(acc), f + g)?, GELU_ERF_CHEB[0]);
    Ok(relu.sub(&ctx.mul_raw(&inside, &h)?))
}

/// A linear node of the graph at its full batch: what a schedule that prepares weights
/// ahead (inter-linear) needs to take its triple and open its weight mask before the
/// activations arrive.
pub struct PlannedLinear<'g> {
    pub node: NodeId,
    pub op: LinearOp,
    pub weight: Cow<'g, Constant>,
    /// The rows the layer's product sees at the graph's full batch.
    pub input_shape: Vec<usize>,
}

/// Every node that runs as a linear layer with a constant weight, in graph order, with
/// the weight and input shape `forward` hands `Exec::linear`.
pub fn linear_layers(g: &Graph) -> Vec<PlannedLinear<'_>> {
    let mut out = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let cst = |k: usize| n.inputs.get(k).and_then(|&t| g.tensors[t].constant());
        let shp = |k: usize| g.tensors[n.inputs[k]].shape.clone();
        let rows = |s: &[usize], w: &Constant| {
            vec![s.iter().product::<usize>() / w.shape()[0], w.shape()[0]]
        };
        let swap = |s: &[usize]| {
            let mut s = s.to_vec();
            let l = s.len();
            s.swap(l - 2, l - 1);
            s
        };
        let (op, weight, input_shape) = match &n.op {
            Op::Conv2d { stride, padding } => (
                LinearOp::Conv2d {
                    stride: *stride,
                    padding: *padding,
                },
                Cow::Borrowed(cst(1).unwrap()),
                shp(0),
            ),
            Op::Gemm { trans_a, trans_b } => match (cst(0), cst(1)) {
                (None, Some(b)) => {
                    let w = if *trans_b {
                        Cow::Owned(b.transpose2())
                    } else {
                        Cow::Borrowed(b)
                    };
                    let s = if *trans_a { swap(&shp(0)) } else { shp(0) };
                    let r = rows(&s, &w);
                    (LinearOp::Matmul, w, r)
                }
                (Some(a), None) => {
                    let w = if *trans_a {
                        Cow::Borrowed(a)
                    } else {
                        Cow::Owned(a.transpose2())
                    };
                    let s = if *trans_b { shp(1) } else { swap(&shp(1)) };
                    let r = rows(&s, &w);
                    (LinearOp::Matmul, w, r)
                }
                _ => continue,
            },
            Op::MatMul => match (cst(0), cst(1)) {
                (None, Some(b)) if b.shape().len() == 2 => {
                    let r = rows(&shp(0), b);
                    (LinearOp::Matmul, Cow::Borrowed(b), r)
                }
                (Some(a), None) if a.shape().len() == 2 => {
                    let w = Cow::Owned(a.transpose2());
                    let r = rows(&swap(&shp(1)), &w);
                    (LinearOp::Matmul, w, r)
                }
                _ => continue,
            },
            _ => continue,
        };
        out.push(PlannedLinear {
            node: i,
            op,
            weight,
            input_shape,
        });
    }
    out
}
