//! A private-weight linear layer under any strategy: one triple for the whole batch, its
//! weight mask opened once, each lane opening E = X - A for its own rows and finishing
//! them. A lane with the whole input prepares the layer inline (F ‖ E in one message: the
//! serial form); otherwise the first part to arrive opens F alone, unless inter-linear
//! prepared the layer ahead. Depends on model::mpc, proto and
//! sched::slots.

use std::sync::Arc;

use super::slots::Slot;
use super::Exec;
use crate::error::{Error, Result};
use crate::model::mpc::{Exec as _, LinearLayer};
use crate::proto::{Ctx, LinearKeys, LinearOp, Share};
use crate::ring::PlainTensor;

/// Take the layer's triple for input `full`, share the weight (party 0's), and open its
/// weight mask alone (inter-linear's weights lanes, or the first part of a pipelined
/// layer to arrive). Fills `slot`: A first, then the prepared layer.
pub fn prepare(
    ctx: &Ctx,
    slot: &Slot,
    keys: &LinearKeys,
    op: LinearOp,
    w: &PlainTensor,
    full: &[usize],
) -> Result<()> {
    let t = ctx.take_linear_triple(keys, op, full, w.shape())?;
    slot.set_mask(t.mask());
    let ws = share_weight(ctx, keys, w)?;
    slot.set(Arc::new(ctx.open_weight_mask(t, ws)?));
    Ok(())
}

/// Party 0's weight, secret-shared (only the model owner reads it: a full-size VGG16 FC
/// layer is 100M values, encoded as its sharing is written).
fn share_weight(ctx: &Ctx, keys: &LinearKeys, w: &PlainTensor) -> Result<Share> {
    ctx.share_constant(keys.weight, 0, (ctx.party() == 0).then_some(w), w.shape())
}

/// The layer on this lane's rows `x` (chunked by the strategy), truncated.
pub fn private(ctx: &Ctx, exec: &Exec, layer: &LinearLayer, x: &Share) -> Result<Share> {
    let keys = ctx.linear_keys();
    let slot = exec.slots.get(layer.node);
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
        if !exec.ahead && part.shape()[0] == full[0] {
            // The whole input in one lane (serial): E and F in one message, one round. No
            // other lane reads the layer, so it bypasses the slot and is finished in place.
            let t = c.take_linear_triple(&keys, layer.op, &full, layer.weight.shape())?;
            let w = (c.party() == 0).then_some(&*layer.weight);
            let (prep, e) = c.open_masks(t, keys.weight, 0, w, part, 0)?;
            return c.finish_owned(prep, &e);
        }
        if !exec.ahead && slot.claim() {
            // The first part to arrive, at this party, takes the triple and opens F by
            // itself (tagged by the layer, not the lane, so it does not matter which part
            // that is at each party); no part waits for another part to arrive.
            let wc = c.weights_lane();
            prepare(&wc, slot, &keys, layer.op, &layer.weight, &full)
                .inspect_err(|e| slot.fail(e.duplicate()))?;
        }
        let a = slot.mask()?;
        let e = c.open_input_mask(&a, part, row0)?;
        c.finish_with_mask(&*slot.peek()?, &e, row0)
    };
    let y = exec.split(ctx, std::slice::from_ref(x), &[0], &step);
    slot.done(rows);
    y
}
