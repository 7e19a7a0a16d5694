//! The MPC-Pipe schemes. A scheme is a strategy over the one traversal of the model graph
//! (`model::mpc::forward`): it decides which lane runs which node, chunk or micro-batch,
//! and when, and every scheme calls the same protocol functions. Depends on model, proto,
//! ring, lanes. A lane is an OS thread or a coroutine on the party's thread (`Lanes`,
//! `crate::lanes`); either way heavy kernels inside it use the whole rayon pool.
//!
//! One file per strategy:
//! - `serial`: a node's work on its whole tensor, in the calling lane; a private linear
//!   layer takes its triple and opens E = X - A and F = W - B in one message.
//! - `inter_linear`: weights lanes open every private layer's weight mask F ahead and
//!   compute C + A·F while the activations run through earlier layers; a layer then only
//!   opens E. F goes out as background traffic (`Ctx::background`).
//! - `inner_layer`: a node's tensor in k chunks, each a lane, so chunk i+1 computes while
//!   chunk i's openings are in flight.
//! - `inter_batch`: m micro-batches, each a lane running the whole traversal.
//! - `plan`: the dry run's strategy, one unit of each node (every schedule's plan is one).
//!
//! and the pieces they share: `fork` (running lanes), `pool` (the OS threads lanes run on,
//! reused from lane to lane), `slots` (a layer prepared once and read by every lane),
//! `linear` (a private layer's steps over the slots), `cost` (the model for auto k and m).
//!
//! Why outputs are bit-identical: material and zero sharings are addressed by (node,
//! part of the tensor) (`proto::ctx`), every lane of a node runs the same protocol calls
//! on its part, a private layer has one triple for the whole batch whose rows each lane
//! uses, and its weight mask is opened once. Counters: `rounds` counts protocol rounds
//! once per round (the first part's lane counts), so every scheme of a job reports the
//! serial count; bytes are the same; only `messages` grows with parts.

pub mod cost;
mod fork;
mod inner_layer;
mod inter_batch;
mod inter_linear;
mod linear;
mod plan;
mod pool;
mod serial;
pub(crate) mod slots;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::mpc::{self, LinearLayer, PieceFn};
use crate::model::{Graph, Weights};
use crate::proto::{Ctx, Share};

pub use fork::LaneFn;
pub use linear::{
    block_bytes, block_bytes_from_env, block_ranges, set_block_bytes, DEFAULT_BLOCK_BYTES,
};

/// Which overlaps are on. `Scheme::default()` is `serial`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Scheme {
    pub inter_linear: bool,
    pub inner_layer: bool,
    pub inter_batch: bool,
}

impl Scheme {
    pub const SERIAL: Scheme = Scheme {
        inter_linear: false,
        inner_layer: false,
        inter_batch: false,
    };
    pub fn is_serial(&self) -> bool {
        *self == Scheme::SERIAL
    }
}

impl FromStr for Scheme {
    type Err = Error;
    /// `serial`, or any of `inter-linear`, `inner-layer`, `inter-batch` joined by `+`
    /// (`all` = all three).
    fn from_str(s: &str) -> Result<Self> {
        let mut out = Scheme::default();
        for part in s.split('+').map(str::trim) {
            match part {
                "serial" => {}
                "inter-linear" => out.inter_linear = true,
                "inner-layer" => out.inner_layer = true,
                "inter-batch" => out.inter_batch = true,
                "all" => out = Scheme { inter_linear: true, inner_layer: true, inter_batch: true },
                other => return Err(Error::Config(format!("unknown scheme '{other}': use serial, inter-linear, inner-layer, inter-batch, or a '+' combination"))),
            }
        }
        if s.split('+').any(|p| p.trim() == "serial") && !out.is_serial() {
            return Err(Error::Config(format!(
                "scheme '{s}' combines serial with a pipeline scheme"
            )));
        }
        Ok(out)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if self.inter_linear {
            parts.push("inter-linear");
        }
        if self.inner_layer {
            parts.push("inner-layer");
        }
        if self.inter_batch {
            parts.push("inter-batch");
        }
        if parts.is_empty() {
            parts.push("serial");
        }
        write!(f, "{}", parts.join("+"))
    }
}

/// Where a schedule's lanes (micro-batches, chunks, weights) run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Lanes {
    /// An OS thread per lane: lanes compute on several cores at once, at the price of a
    /// thread wake-up per lane and round (see `cost`).
    #[default]
    Threads,
    /// Every lane of a party takes turns on the party's thread (`crate::lanes`): a lane
    /// switch costs nanoseconds, but only kernels use more than one core.
    Coroutines,
}

impl FromStr for Lanes {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "threads" => Ok(Lanes::Threads),
            "coroutines" => Ok(Lanes::Coroutines),
            other => Err(Error::Config(format!(
                "unknown lane mode '{other}': use threads or coroutines"
            ))),
        }
    }
}

impl fmt::Display for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Lanes::Threads => "threads",
            Lanes::Coroutines => "coroutines",
        })
    }
}

/// A scheme with its parameters resolved: k chunks per layer, m micro-batches in flight,
/// and where the lanes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub scheme: Scheme,
    pub chunks: usize,
    pub batches_in_flight: usize,
    pub lanes: Lanes,
}

impl Schedule {
    pub fn serial() -> Self {
        Schedule {
            scheme: Scheme::SERIAL,
            chunks: 1,
            batches_in_flight: 1,
            lanes: Lanes::Threads,
        }
    }
    pub fn k(&self) -> usize {
        if self.scheme.inner_layer {
            self.chunks.max(1)
        } else {
            1
        }
    }
    pub fn m(&self) -> usize {
        if self.scheme.inter_batch {
            self.batches_in_flight.max(1)
        } else {
            1
        }
    }
}

/// The strategies of a schedule, composed: how nodes split (serial or inner-layer), how
/// private layers get their weight masks (inline or ahead), and the lanes' mode.
struct Exec<'e> {
    schedule: Schedule,
    slots: &'e slots::Slots,
    /// Weight masks are opened ahead by inter-linear's weights lanes.
    ahead: bool,
}

impl mpc::Exec for Exec<'_> {
    fn split(&self, ctx: &Ctx, xs: &[Share], axes: &[usize], f: &PieceFn) -> Result<Share> {
        if ctx.is_dry() {
            return plan::split(ctx, xs, axes, f);
        }
        match self.schedule.k() {
            1 => serial::split(ctx, xs, f),
            k => inner_layer::split(ctx, xs, axes, k, self.schedule.lanes, f),
        }
    }

    fn linear(&self, ctx: &Ctx, layer: &LinearLayer, x: &Share) -> Result<Share> {
        match layer.weights {
            Weights::Public => {
                // A local product: nothing to overlap (N = 2), so never chunked.
                let w = if ctx.is_dry() {
                    crate::ring::RingTensor::zeros(layer.weight.shape())
                } else {
                    layer.weight.encode(&ctx.fixed())
                };
                serial::split(ctx, std::slice::from_ref(x), &|c, p| {
                    c.linear_public(layer.op, &p[0], &w)
                })
            }
            Weights::Private => linear::private(ctx, self, layer, x),
        }
    }
}

/// Run `f` on each part concurrently, the first on the calling lane and the others as
/// lanes of `mode`, and return their results in part order: training's micro-batches
/// (src/train), each a whole forward and backward pass on its own context.
pub fn in_lanes<'a, P: Send + 'a, T: Send + 'a>(
    mode: Lanes,
    label: &str,
    parts: Vec<P>,
    f: &'a (dyn Fn(P) -> Result<T> + Sync),
) -> Result<Vec<T>> {
    fork::parts(mode, label, parts, f)
}

/// `f` on `xs` whole (k = 1, serial) or in k chunks along one of `axes`, each a lane of
/// `mode` on a context narrowed to it (inner-layer), outputs concatenated along that axis:
/// for callers that run nodes outside the inference traversal, i.e. training's non-linear
/// layers (src/train). Same contract as `model::mpc::Exec::split`.
pub fn chunked(
    ctx: &Ctx,
    xs: &[Share],
    axes: &[usize],
    k: usize,
    mode: Lanes,
    f: &PieceFn,
) -> Result<Share> {
    match k {
        0 | 1 => serial::split(ctx, xs, f),
        k => inner_layer::split(ctx, xs, axes, k, mode, f),
    }
}

/// `main` on the calling lane and `beside` as a lane of `mode`, both to completion:
/// training's weights lane (inter-linear) beside its activations.
pub fn beside<'a, A, B: Send + 'a>(
    mode: Lanes,
    main: impl FnOnce() -> A,
    beside: impl FnOnce() -> B + Send + 'a,
) -> (A, Result<B>) {
    let lane: LaneFn<'a, B> = Box::new(beside);
    let (a, mut bs) = fork::fork_join(mode, main, vec![("weights".to_string(), lane)]);
    (a, bs.pop().expect("one lane"))
}

/// Inference of `graph` on the secret input `x` under `schedule`. Every schedule runs the
/// same traversal and protocol calls; with the same material and seeds the output shares
/// are bit-identical across schedules.
pub fn forward(
    ctx: &Ctx,
    graph: &Graph,
    x: &Share,
    weights: Weights,
    schedule: &Schedule,
) -> Result<Share> {
    if ctx.is_dry() {
        // The plan is every schedule's: recorded by one strategy (`plan`).
        let slots = slots::Slots::new(graph.nodes.len());
        let exec = Exec {
            schedule: Schedule::serial(),
            slots: &slots,
            ahead: false,
        };
        return mpc::forward(ctx, graph, x.clone(), weights, &exec);
    }
    let batch = x.shape().first().copied().unwrap_or(1);
    let m = schedule.m().min(batch).max(1);
    if m > 1 {
        graph.batch_separable().map_err(|why| {
            Error::Config(format!(
                "inter-batch splits the batch, but in model '{}' {why}",
                graph.name
            ))
        })?;
    }
    let ahead = schedule.scheme.inter_linear && weights == Weights::Private;
    let slots = slots::Slots::new(graph.nodes.len());
    let exec = Exec {
        schedule: *schedule,
        slots: &slots,
        ahead,
    };
    let main = || -> Result<Share> {
        if m > 1 {
            inter_batch::run(ctx, x, m, schedule.lanes, &|c, xb| {
                mpc::forward(c, graph, xb, weights, &exec)
            })
        } else {
            mpc::forward(ctx, graph, x.clone(), weights, &exec)
        }
    };
    if !ahead {
        return main();
    }
    let weight_lanes = inter_linear::lanes(ctx, graph, &slots);
    let (y, done) = fork::fork_join(schedule.lanes, main, weight_lanes);
    // A weights lane's failure reaches the activations through the slots; report the
    // activations' error first (it names the layer), then the lanes'.
    let y = y?;
    for d in done {
        d??;
    }
    Ok(y)
}
