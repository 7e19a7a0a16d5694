//! A private-weight linear layer under any strategy: one triple for the whole batch, its
//! weight mask opened once, each lane opening E = X - A for its own rows and finishing
//! them. A lane with the whole input prepares the layer inline (E ‖ F in one message: the
//! serial form); otherwise the first part to arrive opens F alone, unless inter-linear
//! prepared the layer ahead. Depends on model::mpc, proto and
//! sched::slots.

use std::sync::Arc;

use super::slots::Slot;
use super::Exec;
use crate::error::{Error, Result};
use crate::model::mpc::{Exec as _, LinearLayer};
use crate::proto::{Ctx, LinearKeys, LinearOp, Share};
use crate::ring::{PlainTensor, RingTensor};

/// Take the layer's triple for input `full`, share the weight (party 0's), and open its
/// weight mask: with the rows `x` of E in one message (returns E), or alone (`x` None:
/// inter-linear's weights lanes). Fills `slot`: A first, then the prepared layer.
pub fn prepare(
    ctx: &Ctx,
    slot: &Slot,
    keys: &LinearKeys,
    op: LinearOp,
    w: &PlainTensor,
    full: &[usize],
    x: Option<&Share>,
) -> Result<Option<RingTensor>> {
    let t = ctx.take_linear_triple(keys, op, full, w.shape())?;
    slot.set_mask(t.mask());
    // Only the model owner encodes its weight (a full-size VGG16 FC layer is 100M values).
    // (Nor does the plan's dry run, which never reads it.)
    let enc = (ctx.party() == 0 && !ctx.is_dry()).then(|| ctx.fixed().encode_tensor(w));
    let ws = ctx.share_constant(keys.weight, 0, enc.as_ref(), w.shape())?;
    match x {
        Some(x) => {
            let (prep, e) = ctx.open_masks(t, ws, x, 0)?;
            slot.set(Arc::new(prep));
            Ok(Some(e))
        }
        None => {
            slot.set(Arc::new(ctx.open_weight_mask(t, ws)?));
            Ok(None)
        }
    }
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
            // The whole input in one lane (serial): E and F in one message, one round.
            let e = prepare(c, slot, &keys, layer.op, &layer.weight, &full, Some(part))
                .inspect_err(|e| slot.fail(e.duplicate()))?
                .expect("E is opened with F");
            return c.finish_with_mask(&*slot.peek()?, &e, 0);
        }
        if !exec.ahead && slot.claim() {
            // The first part to arrive, at this party, takes the triple and opens F by
            // itself (tagged by the layer, not the lane, so it does not matter which part
            // that is at each party); no part waits for another part to arrive.
            let wc = c.weights_lane();
            prepare(&wc, slot, &keys, layer.op, &layer.weight, &full, None)
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
