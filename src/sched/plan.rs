//! The plan's strategy: how the dry run (`Ctx::is_dry`) walks the traversal. Every schedule
//! takes the same material for the same element (module doc of `sched`), so the plan is
//! one: recorded by running each separable node on one unit of its tensor, whose requests
//! `Ctx::narrow`'s window widens to the whole tensor's (the mechanism inner-layer's chunks
//! rely on), and handing the next node zeros of the whole output's shape. The dry run then
//! costs one unit of each node, not the model's work. Depends on model::mpc and proto.

use crate::error::Result;
use crate::model::mpc::PieceFn;
use crate::proto::{Ctx, Share};
use crate::ring::RingTensor;

/// `f` on the first unit of `xs` along the longest of `axes` on which a unit is contiguous
/// and that divides into this lane's units; zeros of the whole output. A node with no
/// such axis (or one unit) runs whole.
pub fn split(ctx: &Ctx, xs: &[Share], axes: &[usize], f: &PieceFn) -> Result<Share> {
    let shape = xs[0].shape();
    let count = ctx.window().count.max(1);
    let axis = axes
        .iter()
        .copied()
        .filter(|&a| {
            a < shape.len()
                && shape[..a].iter().all(|&d| d == 1)
                && shape[a] > 1
                && shape[a].is_multiple_of(count)
        })
        .max_by_key(|&a| shape[a]);
    let Some(axis) = axis else {
        return f(ctx, xs);
    };
    let n = shape[axis];
    let c = ctx.narrow(n / count, 0, 1);
    let part: Vec<Share> = xs
        .iter()
        .map(|x| Share(x.0.slice_axis(axis, 0, 1)))
        .collect();
    let y = f(&c, &part)?;
    ctx.set_op_index(c.op_index());
    let mut whole = y.shape().to_vec();
    whole[axis] *= n;
    Ok(Share(RingTensor::zeros(&whole)))
}
