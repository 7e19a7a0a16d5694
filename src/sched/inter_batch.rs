//! The inter-batch strategy: the batch in m micro-batches, each a lane running the whole
//! traversal on its rows, with a context narrowed to them. Depends on proto, ring and
//! sched::fork.

use super::{fork, Lanes};
use crate::error::Result;
use crate::proto::{Ctx, Share};
use crate::ring::tensor::split_ranges;
use crate::ring::RingTensor;

/// `forward` on m micro-batches of `x` concurrently; outputs concatenated along the batch.
pub fn run(
    ctx: &Ctx,
    x: &Share,
    m: usize,
    mode: Lanes,
    forward: &(dyn Fn(&Ctx, Share) -> Result<Share> + Sync),
) -> Result<Share> {
    let batch = x.shape()[0];
    let parts: Vec<(Ctx, Share)> = split_ranges(batch, m)
        .into_iter()
        .map(|(s, e)| (ctx.narrow(batch, s, e), Share(x.0.slice_axis(0, s, e))))
        .collect();
    let run = |(c, xb): (Ctx, Share)| forward(&c, xb);
    let outs = fork::parts(mode, "batch", parts, &run)?;
    Ok(Share(RingTensor::concat(
        0,
        &outs.into_iter().map(|s| s.0).collect::<Vec<_>>(),
    )))
}
