//! Training on the graph in f64: which constants are trainable parameters, the forward
//! pass that keeps every activation (the tape), each op's backward rule, softmax
//! cross-entropy and SGD. The reference the MPC training (src/train) is checked against,
//! and what `mpc-pipe train --plaintext` runs. Depends on model::{graph, plain} and ring.
//!
//! Rules (y = op(x), dy given, gradients summed where a tensor has several readers):
//! conv2d dx = conv_transpose(dy, w), dw = Σ_b dy_b ⋆ x_b, db = Σ dy; gemm/matmul
//! dx = dy·Wᵀ, dW = xᵀ·dy, dc = dy summed over broadcast axes; add: dy reduced to each
//! operand's shape; relu dx = dy·[x > 0]; maxpool: dy to the first maximum of each window
//! (the MPC tournament's tie rule); avgpool: dy/k² to every position of the window
//! (padding counted, as the forward); global avgpool dy/(H·W); flatten, reshape,
//! identity: dy reshaped. Loops are direct (no kernels), so they are an independent
//! reference for the MPC side.

use super::graph::{Graph, Op, Producer, TensorId};
use super::plain::eval;
use crate::error::{Error, Result};
use crate::ring::PlainTensor;
use std::borrow::Cow;

/// The trainable parameters of `g`: every constant a conv, gemm, matmul or add reads
/// (weights and biases), in graph order, after checking that every node has a backward
/// rule and reads its parameters where the rules expect them.
pub fn parameters(g: &Graph) -> Result<Vec<TensorId>> {
    let mut out: Vec<TensorId> = Vec::new();
    let refuse = |n: &super::Node, why: &str| Error::Config(format!("{n}: {why}"));
    for n in &g.nodes {
        let cst = |k: usize| {
            n.inputs
                .get(k)
                .is_some_and(|&t| g.tensors[t].constant().is_some())
        };
        let ok = match &n.op {
            Op::Conv2d { .. } => !cst(0) && cst(1) && (n.inputs.len() < 3 || cst(2)),
            Op::Gemm { trans_a, .. } => {
                !trans_a && !cst(0) && cst(1) && (n.inputs.len() < 3 || cst(2))
            }
            Op::MatMul => !cst(0) && cst(1) && g.tensors[n.inputs[1]].shape.len() == 2,
            Op::Add => !(cst(0) && cst(1)),
            Op::Relu
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
            | Op::GlobalAvgPool
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Identity => !cst(0),
            _ => return Err(refuse(n, "has no backward rule, so the model cannot be trained (trainable: conv2d, gemm, matmul by a weight, add, relu, maxpool, avgpool, global_avgpool, flatten, reshape, identity)")),
        };
        if !ok {
            return Err(refuse(
                n,
                "reads its constants where training does not support them (conv2d and gemm need the activation first and the weight second, gemm without trans_a, matmul a 2-D weight second)",
            ));
        }
        for &t in &n.inputs {
            if g.tensors[t].constant().is_some() && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "model '{}' has no weights to train",
            g.name
        )));
    }
    Ok(out)
}

/// The initial values of `params` (the graph's constants).
pub fn initial_values(g: &Graph, params: &[TensorId]) -> Vec<PlainTensor> {
    params
        .iter()
        .map(|&t| g.tensors[t].constant().expect("a parameter").to_plain())
        .collect()
}

/// The value of tensor `t` in a forward pass: a parameter's current value, another
/// constant, or an activation computed before.
fn value<'v>(
    g: &'v Graph,
    vals: &'v [Option<PlainTensor>],
    params: &[TensorId],
    weights: &'v [PlainTensor],
    t: TensorId,
) -> Result<Cow<'v, PlainTensor>> {
    if let Some(i) = params.iter().position(|&p| p == t) {
        return Ok(Cow::Borrowed(&weights[i]));
    }
    match &g.tensors[t].producer {
        Producer::Const(c) => Ok(c.plain()),
        _ => vals[t]
            .as_ref()
            .map(Cow::Borrowed)
            .ok_or_else(|| Error::Protocol(format!("tensor {t} read before it was computed"))),
    }
}

/// The forward pass keeping every activation (indexed by tensor), with `weights` in place
/// of the parameters' constants. `x` may have another batch size than the graph's.
pub fn tape(
    g: &Graph,
    params: &[TensorId],
    weights: &[PlainTensor],
    x: &PlainTensor,
) -> Result<Vec<Option<PlainTensor>>> {
    let mut vals: Vec<Option<PlainTensor>> = vec![None; g.tensors.len()];
    vals[g.input] = Some(x.clone());
    for n in &g.nodes {
        let y = {
            let ins = n
                .inputs
                .iter()
                .map(|&t| value(g, &vals, params, weights, t))
                .collect::<Result<Vec<_>>>()?;
            let ins: Vec<&PlainTensor> = ins.iter().map(|c| &**c).collect();
            eval(&n.op, &ins).map_err(|e| Error::Config(format!("{n}: {e}")))?
        };
        vals[n.output] = Some(y);
    }
    Ok(vals)
}

/// Sum `dy` over the axes `shape` broadcast along (numpy rules), giving `shape`.
pub fn unbroadcast(dy: &PlainTensor, shape: &[usize]) -> PlainTensor {
    if dy.shape() == shape {
        return dy.clone();
    }
    let r = dy.shape().len();
    let mut full = vec![1; r - shape.len()];
    full.extend_from_slice(shape);
    let mut out = PlainTensor::zeros(shape);
    let ds = dy.shape();
    for (i, &v) in dy.data().iter().enumerate() {
        let (mut rem, mut at, mut stride) = (i, 0, 1);
        for ax in (0..r).rev() {
            let c = rem % ds[ax];
            rem /= ds[ax];
            if full[ax] != 1 {
                at += c * stride;
            }
            stride *= full[ax];
        }
        out.data_mut()[at] += v;
    }
    out
}

/// conv2d gradients by direct loops: (dx, dw) for x [B,C,H,W], w [O,C,KH,KW], dy [B,O,OH,OW].
pub fn conv2d_grads(
    x: &PlainTensor,
    w: &PlainTensor,
    dy: &PlainTensor,
    stride: usize,
    padding: usize,
) -> (PlainTensor, PlainTensor) {
    let [b, c, h, wd] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let [o, _, kh, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
    let (oh, ow) = (dy.shape()[2], dy.shape()[3]);
    let mut dx = PlainTensor::zeros(x.shape());
    let mut dw = PlainTensor::zeros(w.shape());
    let (xd, wdat, dyd) = (x.data(), w.data(), dy.data());
    for bi in 0..b {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = dyd[((bi * o + oc) * oh + oy) * ow + ox];
                    for ci in 0..c {
                        for ky in 0..kh {
                            let iy = (oy * stride + ky) as isize - padding as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * stride + kx) as isize - padding as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((bi * c + ci) * h + iy as usize) * wd + ix as usize;
                                let wi = ((oc * c + ci) * kh + ky) * kw + kx;
                                dx.data_mut()[xi] += g * wdat[wi];
                                dw.data_mut()[wi] += g * xd[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}

/// For each output position of a k×k pool over x [B,C,H,W], the input indices of its
/// window (None for padding), row-major over the window.
pub fn pool_windows(
    shape: &[usize],
    k: usize,
    stride: usize,
    padding: usize,
) -> Vec<Vec<Option<usize>>> {
    let [b, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let oh = (h + 2 * padding - k) / stride + 1;
    let ow = (w + 2 * padding - k) / stride + 1;
    let mut out = Vec::with_capacity(b * c * oh * ow);
    for plane in 0..b * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut win = Vec::with_capacity(k * k);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * stride + ky) as isize - padding as isize;
                        let ix = (ox * stride + kx) as isize - padding as isize;
                        win.push(
                            (iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w)
                                .then(|| plane * h * w + iy as usize * w + ix as usize),
                        );
                    }
                }
                out.push(win);
            }
        }
    }
    out
}

/// Gradients of one node: one entry per input (None for an input needing none).
fn node_backward(
    op: &Op,
    ins: &[&PlainTensor],
    y: &PlainTensor,
    dy: &PlainTensor,
) -> Result<Vec<Option<PlainTensor>>> {
    let x = ins[0];
    Ok(match op {
        Op::Conv2d { stride, padding } => {
            let (dx, dw) = conv2d_grads(x, ins[1], dy, *stride, *padding);
            let mut out = vec![Some(dx), Some(dw)];
            if ins.len() > 2 {
                let (o, hw) = (dy.shape()[1], dy.shape()[2] * dy.shape()[3]);
                let mut db = PlainTensor::zeros(&[o]);
                for (i, v) in dy.data().iter().enumerate() {
                    db.data_mut()[(i / hw) % o] += v;
                }
                out.push(Some(db));
            }
            out
        }
        Op::Gemm { trans_b, .. } => {
            let w = if *trans_b {
                ins[1].transpose2()
            } else {
                ins[1].clone()
            };
            let dx = dy.matmul(&w.transpose2());
            let dw = x.transpose2().matmul(dy);
            let dw = if *trans_b { dw.transpose2() } else { dw };
            let mut out = vec![Some(dx), Some(dw)];
            if ins.len() > 2 {
                out.push(Some(unbroadcast(dy, ins[2].shape())));
            }
            out
        }
        Op::MatMul => {
            let k = ins[1].shape()[0];
            let n = ins[1].shape()[1];
            let rows = x.len() / k;
            let x2 = x.clone().reshape(&[rows, k]);
            let dy2 = dy.clone().reshape(&[rows, n]);
            let dx = dy2.matmul(&ins[1].transpose2()).reshape(x.shape());
            let dw = x2.transpose2().matmul(&dy2);
            vec![Some(dx), Some(dw)]
        }
        Op::Add => vec![
            Some(unbroadcast(dy, ins[0].shape())),
            Some(unbroadcast(dy, ins[1].shape())),
        ],
        Op::Relu => vec![Some(x.zip(dy, |x, d| if x > 0.0 { d } else { 0.0 }))],
        Op::MaxPool {
            kernel,
            stride,
            padding,
        } => {
            let mut dx = PlainTensor::zeros(x.shape());
            for (win, &g) in pool_windows(x.shape(), *kernel, *stride, *padding)
                .iter()
                .zip(dy.data())
            {
                // First maximum wins, as the MPC tournament's ties.
                let mut best: Option<usize> = None;
                for &i in win.iter().flatten() {
                    if best.is_none_or(|b| x.data()[i] > x.data()[b]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    dx.data_mut()[b] += g;
                }
            }
            vec![Some(dx)]
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
        } => {
            let mut dx = PlainTensor::zeros(x.shape());
            let kk = (kernel * kernel) as f64;
            for (win, &g) in pool_windows(x.shape(), *kernel, *stride, *padding)
                .iter()
                .zip(dy.data())
            {
                for &i in win.iter().flatten() {
                    dx.data_mut()[i] += g / kk;
                }
            }
            vec![Some(dx)]
        }
        Op::GlobalAvgPool => {
            let hw = x.shape()[2] * x.shape()[3];
            let d = (0..x.len())
                .map(|i| dy.data()[i / hw] / hw as f64)
                .collect();
            vec![Some(PlainTensor::from_vec(x.shape(), d))]
        }
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => {
            vec![Some(dy.clone().reshape(x.shape()))]
        }
        other => {
            return Err(Error::Config(format!(
                "{} has no backward rule (shape {:?})",
                other.kind(),
                y.shape()
            )))
        }
    })
}

/// Gradients of the parameters (aligned with `params`) given the tape and the gradient
/// `dout` of the graph's output.
pub fn backward(
    g: &Graph,
    params: &[TensorId],
    weights: &[PlainTensor],
    vals: &[Option<PlainTensor>],
    dout: &PlainTensor,
) -> Result<Vec<PlainTensor>> {
    let mut grads: Vec<Option<PlainTensor>> = vec![None; g.tensors.len()];
    grads[g.output] = Some(dout.clone());
    for n in g.nodes.iter().rev() {
        let Some(dy) = grads[n.output].take() else {
            continue;
        };
        let ins = n
            .inputs
            .iter()
            .map(|&t| value(g, vals, params, weights, t))
            .collect::<Result<Vec<_>>>()?;
        let ins: Vec<&PlainTensor> = ins.iter().map(|c| &**c).collect();
        let y = vals[n.output].as_ref().expect("on the tape");
        let d =
            node_backward(&n.op, &ins, y, &dy).map_err(|e| Error::Config(format!("{n}: {e}")))?;
        for (&t, d) in n.inputs.iter().zip(d) {
            let Some(d) = d else { continue };
            grads[t] = Some(match grads[t].take() {
                Some(acc) => acc.add(&d),
                None => d,
            });
        }
    }
    Ok(params
        .iter()
        .zip(weights)
        .map(|(&t, w)| {
            grads[t]
                .take()
                .unwrap_or_else(|| PlainTensor::zeros(w.shape()))
        })
        .collect())
}

/// Mean softmax cross-entropy of logits z [B, K] against `labels`, and its gradient
/// (softmax(z) - onehot(y)) / `batch` (`batch`: the mini-batch the mean is over, which a
/// micro-batch's gradient shares).
pub fn softmax_xent(z: &PlainTensor, labels: &[usize], batch: usize) -> (f64, PlainTensor) {
    let k = z.shape()[1];
    let mut dz = z.clone();
    let mut loss = 0.0;
    for (row, &y) in dz.data_mut().chunks_mut(k).zip(labels) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        loss += s.ln() - (row[y] - m);
        for (j, v) in row.iter_mut().enumerate() {
            let p = (*v - m).exp() / s;
            *v = (p - if j == y { 1.0 } else { 0.0 }) / batch as f64;
        }
    }
    (loss / batch as f64, dz)
}

/// SGD as CrypTen's (and PyTorch's): d = g + wd·w; v = μ·v + d (v = d at the first
/// step); w -= lr·v. Public hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Sgd {
    /// One step on every parameter; `velocity` is empty before the first step.
    pub fn step(
        &self,
        weights: &mut [PlainTensor],
        grads: &[PlainTensor],
        velocity: &mut Vec<PlainTensor>,
    ) {
        let first = velocity.is_empty();
        for (i, (w, g)) in weights.iter_mut().zip(grads).enumerate() {
            let d = if self.weight_decay != 0.0 {
                g.zip(w, |g, w| g + self.weight_decay * w)
            } else {
                g.clone()
            };
            let v = if self.momentum == 0.0 {
                d
            } else if first {
                velocity.push(d.clone());
                d
            } else {
                velocity[i] = velocity[i].zip(&d, |v, d| self.momentum * v + d);
                velocity[i].clone()
            };
            *w = w.zip(&v, |w, v| w - self.lr * v);
        }
    }
}
