//! The inner-layer strategy: a node's tensor in k chunks along a separable axis, each chunk
//! a lane with its own narrowed context, so chunk i+1 computes while chunk i's openings are
//! in flight. Depends on model::mpc, proto, ring and sched::fork.

use super::{fork, Lanes};
use crate::error::{Error, Result};
use crate::model::mpc::PieceFn;
use crate::proto::{Ctx, Share};
use crate::ring::tensor::split_ranges;
use crate::ring::RingTensor;

/// The axis to chunk: the first of `axes` with at least `k` entries, else the longest.
fn pick_axis(shape: &[usize], axes: &[usize], k: usize) -> usize {
    axes.iter()
        .copied()
        .find(|&a| shape[a] >= k)
        .or_else(|| axes.iter().copied().max_by_key(|&a| shape[a]))
        .unwrap_or(0)
}

/// `f` on k chunks of `xs` along one of `axes`, each a lane; outputs concatenated.
pub fn split(
    ctx: &Ctx,
    xs: &[Share],
    axes: &[usize],
    k: usize,
    mode: Lanes,
    f: &PieceFn,
) -> Result<Share> {
    let shape = xs[0].shape();
    let axis = pick_axis(shape, axes, k);
    let n = shape[axis];
    let k = k.min(n);
    if k <= 1 {
        return f(ctx, xs);
    }
    // The lane's tensor holds `count` units of its window; each becomes n / count
    // sub-units along the chunked axis (contiguous: the axes before it have size 1).
    let count = ctx.window().count;
    if !n.is_multiple_of(count) || shape[..axis].iter().any(|&d| d != 1) {
        return Err(Error::Protocol(format!(
            "cannot chunk axis {axis} of {shape:?} (a part of {count} units)"
        )));
    }
    let q = n / count;
    let parts: Vec<(Ctx, Vec<Share>)> = split_ranges(n, k)
        .into_iter()
        .map(|(s, e)| {
            let xs = xs
                .iter()
                .map(|x| Share(x.0.slice_axis(axis, s, e)))
                .collect();
            (ctx.narrow(q, s, e), xs)
        })
        .collect();
    let run = |(c, p): (Ctx, Vec<Share>)| -> Result<(Share, u64)> {
        let y = f(&c, &p)?;
        Ok((y, c.op_index()))
    };
    let outs = fork::parts(mode, "chunk", parts, &run)?;
    ctx.set_op_index(outs.iter().map(|o| o.1).max().unwrap_or(ctx.op_index()));
    let ys: Vec<RingTensor> = outs.into_iter().map(|o| o.0 .0).collect();
    Ok(Share(RingTensor::concat(axis, &ys)))
}
