//! The inter-linear strategy: weights lanes take every private layer's triple and open its
//! weight mask F = W - B (computing C + A·F) long before the activations arrive, as
//! background traffic that only uses link time the rounds leave idle (VGG16's first FC
//! layer's F alone is 0.8 GB). Depends on model::mpc, proto, sched::{fork, slots}.

use super::fork::LaneFn;
use super::slots::Slots;
use crate::error::Result;
use crate::model::mpc::linear_layers;
use crate::model::Graph;
use crate::proto::Ctx;

/// Lanes that open weight masks, each taking every WEIGHT_LANES-th layer, so one lane's F
/// is on the link while another computes C + A·F.
const WEIGHT_LANES: usize = 2;

/// The weights lanes of `graph`, filling `slots` in graph order.
pub fn lanes<'a>(
    ctx: &Ctx<'a>,
    graph: &'a Graph,
    slots: &'a Slots,
) -> Vec<(String, LaneFn<'a, Result<()>>)> {
    let mut per_lane: Vec<Vec<(Ctx<'a>, _)>> = (0..WEIGHT_LANES).map(|_| Vec::new()).collect();
    for (i, layer) in linear_layers(graph).into_iter().enumerate() {
        // The node's own keys (same scope and first operations as its lanes), its own tags.
        let c = ctx.for_node(layer.node as u64).weights_lane().background();
        per_lane[i % WEIGHT_LANES].push((c, layer));
    }
    per_lane
        .into_iter()
        .enumerate()
        .map(|(w, layers)| {
            let lane: LaneFn<Result<()>> = Box::new(move || {
                let mut failed = None;
                for (c, layer) in layers {
                    if let Some(e) = &failed {
                        super::linear::fail_ahead(slots, layer.node, layer.op, &layer.weight, e);
                        continue;
                    }
                    if let Err(e) = super::linear::prepare_ahead(
                        &c,
                        slots,
                        layer.node,
                        layer.op,
                        &layer.weight,
                        &layer.input_shape,
                    ) {
                        failed = Some(e);
                    }
                }
                failed.map_or(Ok(()), Err)
            });
            (format!("weights {w}"), lane)
        })
        .collect()
}
