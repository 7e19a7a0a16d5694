//! The plaintext f64 interpreter of a model graph: the reference every MPC result is
//! checked against. Exact functions where the MPC side approximates (erf GeLU, exp,
//! 1/√v). Depends on model::graph and ring.

use std::borrow::Cow;

use super::graph::{infer, pool_valid_counts, Graph, Op, Producer};
use crate::error::{Error, Result};
use crate::ring::plain::matmul_slices;
use crate::ring::shape;
use crate::ring::Constant;
use crate::ring::PlainTensor;

/// f64 erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7): for the exact GeLU reference.
pub fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

/// Exact GeLU: x·Φ(x).
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn zip_broadcast(
    a: &PlainTensor,
    b: &PlainTensor,
    f: impl Fn(f64, f64) -> f64,
) -> Result<PlainTensor> {
    let out = shape::broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
        Error::Shape(format!(
            "{:?} and {:?} do not broadcast",
            a.shape(),
            b.shape()
        ))
    })?;
    let x = shape::broadcast_to(a.data(), a.shape(), &out);
    let y = shape::broadcast_to(b.data(), b.shape(), &out);
    Ok(PlainTensor::from_vec(
        &out,
        x.iter().zip(&y).map(|(a, b)| f(*a, *b)).collect(),
    ))
}

fn permute(x: &PlainTensor, perm: &[usize]) -> PlainTensor {
    let (s, d) = shape::permute(x.data(), x.shape(), perm);
    PlainTensor::from_vec(&s, d)
}

/// numpy matmul of [..., m, k] by [..., k, n] with broadcast leading dims.
pub fn matmul_nd(a: &PlainTensor, b: &PlainTensor) -> PlainTensor {
    let (ra, rb) = (a.shape().len(), b.shape().len());
    let out =
        infer(&Op::MatMul, &[a.shape(), b.shape()]).expect("matmul shapes checked when built");
    let lead = &out[..out.len() - 2];
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let bt = |t: &PlainTensor, r: usize, rows: usize, cols: usize| {
        let mut s = lead.to_vec();
        s.extend([rows, cols]);
        let mut src = t.shape()[..r - 2].to_vec();
        src.extend([rows, cols]);
        shape::broadcast_to(t.data(), &src, &s)
    };
    // A plain [m, k]·[k, n] (every model's linear layer) reads both operands in place:
    // VGG16's first FC weight is 0.8 GB, and two copies of it were the reference
    // forward's peak.
    if ra == 2 && rb == 2 {
        return PlainTensor::from_vec(&out, matmul_slices(m, k, n, a.data(), b.data()));
    }
    let (x, y) = (bt(a, ra, m, k), bt(b, rb, k, n));
    let batches: usize = lead.iter().product();
    let mut data = Vec::with_capacity(batches * m * n);
    for i in 0..batches {
        let (xi, yi) = (
            &x[i * m * k..(i + 1) * m * k],
            &y[i * k * n..(i + 1) * k * n],
        );
        data.extend_from_slice(&matmul_slices(m, k, n, xi, yi));
    }
    PlainTensor::from_vec(&out, data)
}

/// (outer, k, inner) of `shape` around `axis`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn softmax(x: &PlainTensor, axis: usize) -> PlainTensor {
    let (outer, k, inner) = around(x.shape(), axis);
    let mut out = x.clone();
    let d = out.data_mut();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * k * inner + j * inner + i;
            let m = (0..k).map(|j| d[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = (0..k).map(|j| (d[at(j)] - m).exp()).sum();
            for j in 0..k {
                d[at(j)] = (d[at(j)] - m).exp() / z;
            }
        }
    }
    out
}

fn layernorm(x: &PlainTensor, g: &PlainTensor, b: &PlainTensor, eps: f64) -> PlainTensor {
    let h = g.len();
    let mut out = x.clone();
    for row in out.data_mut().chunks_mut(h) {
        let mu = row.iter().sum::<f64>() / h as f64;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / h as f64;
        let r = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - mu) * r * g.data()[j] + b.data()[j];
        }
    }
    out
}

/// Per-channel affine map of [B, C, ...]: x·s[c] + t[c].
pub fn channel_affine(x: &PlainTensor, s: &[f64], t: &[f64]) -> PlainTensor {
    let c = s.len();
    let inner: usize = x.shape()[2..].iter().product();
    let mut out = x.clone();
    out.data_mut().iter_mut().enumerate().for_each(|(i, v)| {
        let ch = (i / inner) % c;
        *v = *v * s[ch] + t[ch];
    });
    out
}

/// Batch norm's scale and shift per channel: s = γ/√(var+ε), t = β - mean·s.
pub fn batchnorm_affine(p: [&PlainTensor; 4], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let [g, b, m, v] = p;
    let s: Vec<f64> = g
        .data()
        .iter()
        .zip(v.data())
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let t = b
        .data()
        .iter()
        .zip(m.data())
        .zip(&s)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (s, t)
}

/// One node in f64 on its inputs' values.
pub fn eval(op: &Op, ins: &[&PlainTensor]) -> Result<PlainTensor> {
    let x = ins[0];
    Ok(match op {
        Op::Conv2d { stride, padding } => {
            let y = x.conv2d(ins[1], *stride, *padding);
            match ins.get(2) {
                Some(b) => y.add_bias(b),
                None => y,
            }
        }
        Op::Gemm { trans_a, trans_b } => {
            // Borrowed where not transposed: a weight is read in place, never copied.
            fn t(v: &PlainTensor, on: bool) -> std::borrow::Cow<'_, PlainTensor> {
                if on {
                    std::borrow::Cow::Owned(v.transpose2())
                } else {
                    std::borrow::Cow::Borrowed(v)
                }
            }
            let (a, b) = (t(x, *trans_a), t(ins[1], *trans_b));
            let y = a.matmul(&b);
            match ins.get(2) {
                Some(c) => zip_broadcast(&y, c, |a, b| a + b)?,
                None => y,
            }
        }
        Op::MatMul => matmul_nd(x, ins[1]),
        Op::Add => zip_broadcast(x, ins[1], |a, b| a + b)?,
        Op::Sub => zip_broadcast(x, ins[1], |a, b| a - b)?,
        Op::Mul => zip_broadcast(x, ins[1], |a, b| a * b)?,
        Op::Sigmoid => x.map(|v| 1.0 / (1.0 + (-v).exp())),
        Op::MulConst(c) => x.map(|v| v * c),
        Op::DivConst(c) => x.map(|v| v / c),
        Op::Relu => x.relu(),
        Op::Gelu | Op::GeluErf => x.map(gelu),
        Op::Identity => x.clone(),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        } => x.maxpool2d(*kernel, *stride, *padding),
        Op::AvgPool {
            kernel,
            stride,
            padding,
        } => x.avgpool2d(*kernel, *stride, *padding),
        Op::AvgPoolValid {
            kernel,
            stride,
            padding,
        } => {
            // The pool counting pads, rescaled by k² / (positions inside the input).
            let (k, s) = (*kernel, x.shape());
            let counts = pool_valid_counts(s[2], s[3], k, *stride, *padding);
            let mut y = x.avgpool2d(k, *stride, *padding);
            let plane = counts.len();
            y.data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v *= (k * k) as f64 / counts[i % plane]);
            y
        }
        Op::GlobalAvgPool => {
            let s = x.shape();
            let hw = s[2] * s[3];
            let d = x
                .data()
                .chunks(hw)
                .map(|c| c.iter().sum::<f64>() / hw as f64)
                .collect();
            PlainTensor::from_vec(&[s[0], s[1], 1, 1], d)
        }
        Op::Flatten { .. } | Op::Reshape { .. } => {
            let s = infer(op, &[x.shape()]).map_err(Error::Shape)?;
            x.clone().reshape(&s)
        }
        Op::Transpose { perm } => permute(x, perm),
        Op::Concat { axis } => {
            let parts: Vec<(&[f64], &[usize])> =
                ins.iter().map(|t| (t.data(), t.shape())).collect();
            let (s, d) = shape::concat(&parts, *axis);
            PlainTensor::from_vec(&s, d)
        }
        Op::Slice { axis, start, end } => {
            let d = shape::slice_axis(x.data(), x.shape(), *axis, *start, *end);
            let mut s = x.shape().to_vec();
            s[*axis] = end - start;
            PlainTensor::from_vec(&s, d)
        }
        Op::Softmax { axis } => softmax(x, *axis),
        Op::LayerNorm { eps } => layernorm(x, ins[1], ins[2], *eps),
        Op::BatchNorm { eps } => {
            let (s, t) = batchnorm_affine([ins[1], ins[2], ins[3], ins[4]], *eps);
            channel_affine(x, &s, &t)
        }
    })
}

/// f64 bytes above which a compact constant is never made whole in f64 (a product reads
/// it by column blocks of this size: `product_by_blocks`).
const WHOLE_F64_BYTES: usize = 32 << 20;

fn large_compact(c: &Constant) -> bool {
    c.is_compact() && c.len().saturating_mul(8) > WHOLE_F64_BYTES
}

/// True when `op` with weight `w` as its second input is a product `product_by_blocks`
/// computes.
fn blockable(op: &Op, w: &Constant) -> bool {
    matches!(op, Op::Gemm { .. }) || (matches!(op, Op::MatMul) && w.shape().len() == 2)
}

/// x·W (Gemm, or MatMul by a 2-D W) with a large compact weight W, by blocks of W's output
/// columns widened to f64 one at a time: VGG16's fc1 is 822 MB in f64 and 411 MB as
/// stored. `ins[1]` is a placeholder; the node is `blockable` and its shapes checked.
fn product_by_blocks(op: &Op, ins: &[&PlainTensor], w: &Constant) -> Result<PlainTensor> {
    let x = ins[0];
    let (a, trans_b, out_shape) = match op {
        Op::Gemm { trans_a, trans_b } => {
            let a = if *trans_a {
                Cow::Owned(x.transpose2())
            } else {
                Cow::Borrowed(x)
            };
            (a, *trans_b, None)
        }
        Op::MatMul => {
            let k = w.shape()[0];
            let rows = x.len() / k.max(1);
            let mut out = x.shape().to_vec();
            if let Some(last) = out.last_mut() {
                *last = w.shape()[1];
            }
            (Cow::Owned(x.clone().reshape(&[rows, k])), false, Some(out))
        }
        _ => unreachable!("only blockable nodes"),
    };
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let n = if trans_b { w.shape()[0] } else { w.shape()[1] };
    let cols = (WHOLE_F64_BYTES / 8 / k.max(1)).clamp(1, n.max(1));
    let mut y = vec![0.0; m * n];
    let mut n0 = 0;
    while n0 < n {
        let n1 = (n0 + cols).min(n);
        // W[:, n0..n1] as [k, n1 - n0].
        let blk = if trans_b {
            w.slice_axis(0, n0, n1).transpose2()
        } else {
            w.slice_axis(1, n0, n1)
        };
        let part = matmul_slices(m, k, n1 - n0, a.data(), blk.data());
        for (r, row) in part.chunks(n1 - n0).enumerate() {
            y[r * n + n0..r * n + n1].copy_from_slice(row);
        }
        n0 = n1;
    }
    let y = PlainTensor::from_vec(&[m, n], y);
    match (op, out_shape) {
        (Op::Gemm { .. }, _) => match ins.get(2) {
            Some(c) => zip_broadcast(&y, c, |a, b| a + b),
            None => Ok(y),
        },
        (_, Some(out)) => Ok(y.reshape(&out)),
        _ => unreachable!("MatMul has its output shape"),
    }
}

/// The graph in f64 on input `x` (shape: the graph's input shape, or the same with another
/// batch size when the graph is batch-separable).
pub fn forward(g: &Graph, x: &PlainTensor) -> Result<PlainTensor> {
    let mut vals: Vec<Option<PlainTensor>> = vec![None; g.tensors.len()];
    let mut left = g.readers();
    vals[g.input] = Some(x.clone());
    for n in &g.nodes {
        let y = {
            let shapes = n
                .inputs
                .iter()
                .map(|&t| match &g.tensors[t].producer {
                    Producer::Const(c) => Ok(c.shape()),
                    _ => vals[t].as_ref().map(PlainTensor::shape).ok_or_else(|| {
                        Error::Protocol(format!("{n} reads a tensor not computed yet"))
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            infer(&n.op, &shapes).map_err(|m| Error::Shape(format!("{n}: {m}")))?;
            // A product by a large compact weight reads it by blocks (`product_by_blocks`);
            // every other input is read whole, in f64.
            let blocked = n
                .inputs
                .get(1)
                .and_then(|&t| g.tensors[t].constant())
                .filter(|w| large_compact(w) && blockable(&n.op, w));
            let ins: Vec<Cow<PlainTensor>> = n
                .inputs
                .iter()
                .enumerate()
                .map(|(k, &t)| match &g.tensors[t].producer {
                    Producer::Const(_) if k == 1 && blocked.is_some() => {
                        Ok(Cow::Owned(PlainTensor::zeros(&[0])))
                    }
                    Producer::Const(c) => Ok(c.plain()),
                    _ => vals[t].as_ref().map(Cow::Borrowed).ok_or_else(|| {
                        Error::Protocol(format!("{n} reads a tensor not computed yet"))
                    }),
                })
                .collect::<Result<_>>()?;
            let ins: Vec<&PlainTensor> = ins.iter().map(|c| &**c).collect();
            match blocked {
                Some(w) => product_by_blocks(&n.op, &ins, w)?,
                None => eval(&n.op, &ins)?,
            }
        };
        for &t in &n.inputs {
            left[t] -= 1;
            if left[t] == 0 {
                vals[t] = None;
            }
        }
        vals[n.output] = Some(y);
    }
    vals[g.output]
        .take()
        .ok_or_else(|| Error::Protocol("the graph's output was never computed".into()))
}
