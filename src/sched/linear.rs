//! A private-weight linear layer under any strategy: one triple for the whole batch, its
//! weight mask opened once, each lane opening E = X - A for its own rows and finishing
//! them. A lane with the whole input prepares the layer inline (F ‖ E in one message: the
//! serial form); otherwise the first part to arrive opens F alone, unless inter-linear
//! prepared the layer ahead. Depends on model::{mpc, graph}, proto, ring and sched::slots.
//!
//! A layer whose weight is larger than the block cap (`block_bytes`, 64 MiB) runs as
//! blocks of output columns (a matmul's columns of W [k, n], a conv's output channels of
//! W [O, C, KH, KW]): each block is a layer of its own as above, with its own keys,
//! triple, weight sharing and openings, and the blocks' outputs are joined along the
//! output's axis 1. Only one block of W's share, the mask B, F = W - B and the peer's F
//! is then resident at a time: VGG16's first FC layer (25088 x 4096, 0.8 GB a tensor)
//! otherwise held about 3.3 GB per party, which this VM pays in kernel page zeroing
//! (0.6 s per GiB first touched). Every schedule and the plan's dry run reach private
//! layers through `private` and `prepare_ahead` only, so all of them block alike and
//! keep bit-identical outputs; the dealer sees the blocks as separate requests.
//!
//! Cost: a block opens its own E = X - A (its triple has its own A), so the input's
//! opening is repeated per block (fc1's input is 25088 words a block, against 7.9M words
//! of F), and the serial form takes one round per block. The blocks of one layer run one
//! after another, so their rounds add up; but each block's F is up to 64 MiB, which takes
//! 54 ms on `lan` (10 Gbit/s, 0.1 ms one way) and 1.34 s on `wan` (400 Mbit/s, 20 ms), so
//! a block's extra round (one more one-way latency) adds 0.2% to its transfer time on lan
//! and 1.5% on wan; overlapping the blocks would hold their buffers at once again.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::slots::{Slot, Slots};
use super::Exec;
use crate::error::{Error, Result};
use crate::model::graph::NodeId;
use crate::model::mpc::{Exec as _, LinearLayer};
use crate::model::Constant;
use crate::proto::{Ctx, LinearKeys, LinearOp, Share};
use crate::ring::tensor::split_ranges;
use crate::ring::RingTensor;

/// The default block cap: a block's weight mask then costs at most 64 MiB per tensor,
/// and VGG16's FC layers run as 13 (fc1) and 2 (fc2) blocks.
pub const DEFAULT_BLOCK_BYTES: usize = 64 << 20;

/// The block cap in bytes (one ring word a weight), process-wide: the plan's dry run and
/// the online run must block alike, or the material does not match (the plan hash tells).
static BLOCK_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_BLOCK_BYTES);

/// Set the block cap: weights above `bytes` (as ring words) run in column blocks.
/// `usize::MAX` turns blocking off. For tests and `MPC_PIPE_LINEAR_BLOCK_MB`.
pub fn set_block_bytes(bytes: usize) {
    BLOCK_BYTES.store(bytes.max(1), Ordering::Relaxed);
}

/// The block cap in force.
pub fn block_bytes() -> usize {
    BLOCK_BYTES.load(Ordering::Relaxed)
}

/// Read `MPC_PIPE_LINEAR_BLOCK_MB` (MiB; `0` or `off`: no blocking) from the environment,
/// once, before any job runs. Every process of a job must see the same value.
pub fn block_bytes_from_env() -> Result<()> {
    let Ok(v) = std::env::var("MPC_PIPE_LINEAR_BLOCK_MB") else {
        return Ok(());
    };
    let bytes = match v.trim() {
        "0" | "off" => usize::MAX,
        s => s
            .parse::<usize>()
            .ok()
            .and_then(|mb| mb.checked_mul(1 << 20))
            .ok_or_else(|| {
                Error::Config(format!(
                    "MPC_PIPE_LINEAR_BLOCK_MB must be a number of MiB (or 0/off), got \"{v}\""
                ))
            })?,
    };
    set_block_bytes(bytes);
    Ok(())
}

/// The weight's axis of output columns: 1 of a matmul's [k, n], 0 of a conv's
/// [O, C, KH, KW]. None for products that are never blocked (training's input gradient).
fn weight_out_axis(op: LinearOp) -> Option<usize> {
    match op {
        LinearOp::Matmul => Some(1),
        LinearOp::Conv2d { .. } => Some(0),
        LinearOp::ConvGradInput { .. } => None,
    }
}

/// The output-column ranges of a layer with weight shape `w` under the cap `cap_bytes`:
/// as few nearly equal blocks as keep each block's weight under the cap (one range, the
/// whole axis, for a weight under it).
pub fn block_ranges(op: LinearOp, w: &[usize], cap_bytes: usize) -> Vec<(usize, usize)> {
    let Some(axis) = weight_out_axis(op).filter(|&a| a < w.len()) else {
        return vec![(0, 0)];
    };
    let cols = w[axis];
    let bytes = w.iter().product::<usize>().saturating_mul(8);
    let blocks = bytes.div_ceil(cap_bytes.max(1)).clamp(1, cols.max(1));
    split_ranges(cols, blocks)
}

/// One block of a layer: its keys, its weight (party 0's plaintext, sliced when used) and
/// the weight's shape.
struct Block<'w> {
    keys: LinearKeys,
    /// The layer's whole plaintext weight, at party 0 only, and not in the dry run, which
    /// never reads it.
    layer_weight: Option<&'w Constant>,
    /// The block's range `s..e` along the weight's output axis; `None`: the whole weight.
    range: Option<(usize, usize, usize)>,
    w_shape: Vec<usize>,
}

impl<'w> Block<'w> {
    /// The block's plaintext weight (party 0's), sliced now and dropped by the caller once
    /// shared: slicing every block up front held a copy of the whole weight beside the
    /// layer's working set (VGG16's fc1: 822 MB of f64 at party 0, the job's peak once
    /// its first ReLU was trimmed).
    fn weight(&self) -> Option<Cow<'w, Constant>> {
        let w = self.layer_weight?;
        Some(match self.range {
            None => Cow::Borrowed(w),
            Some((axis, s, e)) => Cow::Owned(w.slice(axis, s, e)),
        })
    }
}

/// The layer's blocks, their keys reserved in block order on `ctx` (so the keys after
/// them agree across lanes and schedules). Only party 0, the model owner, reads its
/// weight.
fn blocks<'w>(ctx: &Ctx, op: LinearOp, w: &'w Constant) -> Vec<Block<'w>> {
    let ranges = block_ranges(op, w.shape(), block_bytes());
    let whole = ranges.len() == 1;
    let owner = ctx.party() == 0;
    ranges
        .into_iter()
        .map(|(s, e)| {
            let keys = ctx.linear_keys();
            if whole {
                return Block {
                    keys,
                    layer_weight: (owner && !ctx.is_dry()).then_some(w),
                    range: None,
                    w_shape: w.shape().to_vec(),
                };
            }
            let axis = weight_out_axis(op).expect("blocked only along an output axis");
            let mut w_shape = w.shape().to_vec();
            w_shape[axis] = e - s;
            Block {
                keys,
                layer_weight: (owner && !ctx.is_dry()).then_some(w),
                range: Some((axis, s, e)),
                w_shape,
            }
        })
        .collect()
}

/// Take a block's triple for input `full`, share its weight (party 0's), and open its
/// weight mask alone. Fills `slot`: A first, then the prepared block.
fn prepare(ctx: &Ctx, slot: &Slot, block: &Block, op: LinearOp, full: &[usize]) -> Result<()> {
    let t = ctx.take_linear_triple(&block.keys, op, full, &block.w_shape)?;
    slot.set_mask(t.mask());
    // Party 0's weight, secret-shared (only the model owner reads it), encoded as its
    // sharing is written.
    let ws = ctx.share_constant(
        block.keys.weight,
        0,
        block.weight().as_deref(),
        &block.w_shape,
    )?;
    slot.set(Arc::new(ctx.open_weight_mask(t, ws)?));
    Ok(())
}

/// Prepare every block of a layer ahead of its input (inter-linear's weights lanes), on
/// the node's weights context: the same keys, in the same order, as `private` reserves.
pub fn prepare_ahead(
    ctx: &Ctx,
    slots: &Slots,
    node: NodeId,
    op: LinearOp,
    w: &Constant,
    full: &[usize],
) -> Result<()> {
    let blocks = blocks(ctx, op, w);
    let n = blocks.len();
    for (j, b) in blocks.iter().enumerate() {
        let slot = slots.get_block(node, j, n);
        prepare(ctx, slot, b, op, full).inspect_err(|e| {
            // Every block after a failed one fails alike, so no lane waits for it.
            for k in j..n {
                slots.get_block(node, k, n).fail(e.duplicate());
            }
        })?;
    }
    Ok(())
}

/// Fail every block's slot of a layer (its weights lane failed before preparing it).
pub fn fail_ahead(slots: &Slots, node: NodeId, op: LinearOp, w: &Constant, e: &Error) {
    let n = block_ranges(op, w.shape(), block_bytes()).len();
    for j in 0..n {
        slots.get_block(node, j, n).fail(e.duplicate());
    }
}

/// The layer on this lane's rows `x` (chunked by the strategy), truncated.
pub fn private(ctx: &Ctx, exec: &Exec, layer: &LinearLayer, x: &Share) -> Result<Share> {
    let blocks = blocks(ctx, layer.op, &layer.weight);
    let n = blocks.len();
    let w = ctx.window();
    let rows = x.shape()[0];
    if w.count == 0 || !rows.is_multiple_of(w.count) {
        return Err(Error::Protocol(format!(
            "{rows} rows are not a part of {} units",
            w.count
        )));
    }
    let mut full = x.shape().to_vec();
    full[0] = rows / w.count * w.total;
    let step = |c: &Ctx, p: &[Share]| -> Result<Share> {
        let part = &p[0];
        let cw = c.window();
        let row0 = cw.start * (part.shape()[0] / cw.count.max(1));
        let mut ys = Vec::with_capacity(n);
        for (j, block) in blocks.iter().enumerate() {
            let slot = exec.slots.get_block(layer.node, j, n);
            ys.push(block_rows(
                c, exec, slot, block, layer.op, &full, part, row0,
            )?);
            // This lane's rows of the block are done: once every lane's are, the block's
            // B + F and C + A·F are freed, before the lanes finish the later blocks.
            slot.done(part.shape()[0]);
        }
        join_blocks(c, ys)
    };
    exec.split(ctx, std::slice::from_ref(x), &[0], &step)
}

/// One block of the layer on rows `row0..` of the input (`part`), truncated.
#[allow(clippy::too_many_arguments)]
fn block_rows(
    c: &Ctx,
    exec: &Exec,
    slot: &Slot,
    block: &Block,
    op: LinearOp,
    full: &[usize],
    part: &Share,
    row0: usize,
) -> Result<Share> {
    if !exec.ahead && part.shape()[0] == full[0] {
        // The whole input in one lane (serial): E and F in one message, one round. No
        // other lane reads the block, so it bypasses the slot and is finished in place.
        let t = c.take_linear_triple(&block.keys, op, full, &block.w_shape)?;
        let weight = block.weight();
        let (prep, e) = c.open_masks(t, block.keys.weight, 0, weight.as_deref(), part, 0)?;
        drop(weight);
        return c.finish_owned(prep, &e);
    }
    if !exec.ahead && slot.claim() {
        // The first part to arrive, at this party, takes the triple and opens F by
        // itself (tagged by the layer, not the lane, so it does not matter which part
        // that is at each party); no part waits for another part to arrive.
        let wc = c.weights_lane();
        prepare(&wc, slot, block, op, full).inspect_err(|e| slot.fail(e.duplicate()))?;
    }
    let a = slot.mask()?;
    let e = c.open_input_mask(&a, part, row0)?;
    c.finish_with_mask(&*slot.peek()?, &e, row0)
}

/// The blocks' outputs joined along axis 1 (a matmul's columns, a conv's channels).
fn join_blocks(c: &Ctx, mut ys: Vec<Share>) -> Result<Share> {
    if ys.len() == 1 {
        return Ok(ys.pop().expect("one block"));
    }
    let mut out = ys[0].shape().to_vec();
    out[1] = ys.iter().map(|y| y.shape()[1]).sum();
    if c.is_dry() {
        // Placeholders: nothing to join.
        return Ok(Share(RingTensor::zeros(&out)));
    }
    let parts: Vec<RingTensor> = ys.into_iter().map(|y| y.0).collect();
    Ok(Share(RingTensor::concat(1, &parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VGG16 at the default cap: fc1 in 13 blocks and fc2 in 2, each block's weight under
    /// the cap and the blocks covering every column once; fc3 and every conv whole.
    #[test]
    fn vgg16_blocks_at_the_default_cap() {
        let cap = DEFAULT_BLOCK_BYTES;
        let mm = LinearOp::Matmul;
        for (w, blocks) in [([25088, 4096], 13), ([4096, 4096], 2), ([4096, 1000], 1)] {
            let r = block_ranges(mm, &w, cap);
            assert_eq!(r.len(), blocks, "{w:?}");
            assert_eq!((r[0].0, r[r.len() - 1].1), (0, w[1]));
            for (a, b) in r.iter().zip(&r[1..]) {
                assert_eq!(a.1, b.0, "{w:?}: contiguous");
            }
            assert!(r.iter().all(|(s, e)| w[0] * (e - s) * 8 <= cap), "{w:?}");
        }
        let conv = LinearOp::Conv2d {
            stride: 1,
            padding: 1,
        };
        assert_eq!(block_ranges(conv, &[512, 512, 3, 3], cap), vec![(0, 512)]);
        // Never more blocks than columns.
        assert_eq!(block_ranges(mm, &[1 << 20, 3], 1).len(), 3);
    }
}
