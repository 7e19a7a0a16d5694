//! The MPC-Pipe schemes. A scheme is a schedule over unchanged protocol calls: every
//! scheme runs the same `Ctx` methods (`relu`, `maxpool2d`, `linear`, `take_linear_triple`,
//! `open_weight_mask`, `open_input_mask`, `finish_with_mask`, ...) and differs only in
//! which lane calls them and when.
//! Depends on model, proto, ring, lanes. A lane is an OS thread or a coroutine on the
//! party's thread (`Lanes`, `crate::lanes`); either way heavy kernels inside it use the
//! whole rayon pool, and a thread lane never occupies a rayon worker (it blocks on the
//! network).
//!
//! - `serial`: layer after layer on the whole tensor, each opening posted then awaited.
//! - `inter-linear`: a weights lane opens every private layer's weight mask F = W - B and
//!   computes C + A·F ahead of time, while the activations run through earlier layers;
//!   a linear layer then only opens E = X - A and does one product. F goes out as
//!   background traffic (`Ctx::background`), in the link time the rounds leave idle.
//! - `inner-layer`: each layer's tensor is split into k chunks, each a lane with its own
//!   key scope, so chunk i+1 computes while chunk i's openings are in flight.
//! - `inter-batch`: the batch is split into m micro-batches that traverse the whole model
//!   concurrently, each in its own lane.
//!
//! Linear layers stay row-separable under chunking and micro-batching: one triple is made
//! for the whole batch, B and F are shared, and each lane uses its own rows of A and
//! C + A·F (`open_input_mask`, `finish_with_mask`).

pub mod cost;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lanes;
use crate::model::transformer::Exec;
use crate::model::{broadcast_bias, linear_layer, Layer, Model, Weights};
use crate::proto::{Ctx, LinearOp, PreparedLinear, Share};
use crate::ring::{PlainTensor, RingTensor};

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
    fn k(&self) -> usize {
        if self.scheme.inner_layer {
            self.chunks.max(1)
        } else {
            1
        }
    }
    fn m(&self) -> usize {
        if self.scheme.inter_batch {
            self.batches_in_flight.max(1)
        } else {
            1
        }
    }
}

/// A prepared private layer with its bias share, or why preparing it failed.
type Prepared = std::result::Result<Arc<(PreparedLinear, Share)>, String>;

/// A slot's two stages and how many lanes have yet to finish with it.
struct SlotState {
    /// The triple's input mask A: known as soon as the triple is taken.
    mask: Option<std::result::Result<Arc<RingTensor>, String>>,
    /// The layer with its weight mask opened.
    value: Option<Prepared>,
    readers_left: usize,
    /// Threads with a lane waiting for this slot (each lane is one when lanes are
    /// threads; as coroutines, the party thread).
    waiters: Vec<std::thread::Thread>,
}

/// Prepared private layers, filled by a weights lane, read by the activation lanes. Each
/// layer comes in two stages: A first, so that a lane can open E = X - A while F = W - B
/// is still in flight (both in the same round of latency, as in `serial`), then the
/// prepared layer. A slot lets go of its layer once every lane is done with it: VGG16's
/// first FC layer alone keeps 0.8 GB per party in B + F.
struct Slots {
    items: Vec<Mutex<SlotState>>,
}

impl Slots {
    /// `readers`: the lanes that each finish with every slot once (`done`).
    fn new(n: usize, readers: usize) -> Self {
        Slots {
            items: (0..n)
                .map(|_| {
                    Mutex::new(SlotState {
                        mask: None,
                        value: None,
                        readers_left: readers,
                        waiters: Vec::new(),
                    })
                })
                .collect(),
        }
    }
    fn set_mask(&self, i: usize, a: Arc<RingTensor>) {
        let mut g = self.items[i].lock().unwrap();
        g.mask = Some(Ok(a));
        Self::wake(g);
    }
    /// The prepared layer, or its failure (which also fails a mask not set yet).
    fn set(&self, i: usize, v: Prepared) {
        let mut g = self.items[i].lock().unwrap();
        if let Err(msg) = &v {
            g.mask.get_or_insert_with(|| Err(msg.clone()));
        }
        g.value = Some(v);
        Self::wake(g);
    }
    /// Wake every lane waiting for a slot: on this thread (`notify`) and on others.
    fn wake(mut g: std::sync::MutexGuard<SlotState>) {
        let waiters = std::mem::take(&mut g.waiters);
        drop(g);
        lanes::notify();
        waiters.iter().for_each(std::thread::Thread::unpark);
    }
    fn wait_for<T>(
        &self,
        i: usize,
        pick: impl Fn(&SlotState) -> Option<std::result::Result<T, String>>,
    ) -> Result<T> {
        loop {
            let mut g = self.items[i].lock().unwrap();
            let got = pick(&g);
            if got.is_none() {
                // Registered under the lock, so a `set` after it unparks this thread.
                let me = std::thread::current();
                if g.waiters.iter().all(|t| t.id() != me.id()) {
                    g.waiters.push(me);
                }
            }
            drop(g);
            match got {
                Some(r) => {
                    return r.map_err(|msg| {
                        Error::Protocol(format!(
                            "weight preparation of linear layer {i} failed: {msg}"
                        ))
                    })
                }
                None => lanes::park_timeout(Duration::from_secs(1)),
            }
        }
    }
    /// Layer `i`'s input mask A (full batch).
    fn mask(&self, i: usize) -> Result<Arc<RingTensor>> {
        self.wait_for(i, |s| s.mask.clone())
    }
    /// Layer `i` prepared (the lane must call `done` when finished with it).
    fn peek(&self, i: usize) -> Result<Arc<(PreparedLinear, Share)>> {
        self.wait_for(i, |s| s.value.clone())
    }
    /// One lane is finished with layer `i`; the last one frees it.
    fn done(&self, i: usize) {
        let mut g = self.items[i].lock().unwrap();
        g.readers_left = g.readers_left.saturating_sub(1);
        if g.readers_left == 0 {
            let gone = "finished by every lane already";
            g.value = Some(Err(gone.into()));
            g.mask = Some(Err(gone.into()));
        }
    }
}

/// Prepare private layer `i` into `slots` under `ctx`: the input mask as soon as the triple
/// is taken, then the opened weight mask. Returns false (and fails the slot) on error.
fn prepare_into(ctx: &Ctx, slots: &Slots, i: usize, layer: &LinearSpec) -> bool {
    let (op, w, b, in_shape) = (layer.0, layer.1, layer.2, &layer.3);
    let r = (|| -> Result<Arc<(PreparedLinear, Share)>> {
        let ws = ctx.share_plain(0, Some(w), w.shape())?;
        let bs = ctx.share_input(0, Some(&ctx.fixed().encode_tensor(b)), b.shape())?;
        let t = ctx.take_linear_triple(op, in_shape, w.shape())?;
        slots.set_mask(i, t.mask());
        Ok(Arc::new((ctx.open_weight_mask(t, ws)?, bs)))
    })();
    let ok = r.is_ok();
    slots.set(i, r.map_err(|e| e.to_string()));
    ok
}

/// Rows `row0..` of private layer `i`, prepared in `slots`, in k chunks: each chunk opens
/// its rows of E = X - A as soon as A is known, then waits for the prepared layer.
fn finish_private(
    ctx: &Ctx,
    sch: &Schedule,
    slots: &Slots,
    i: usize,
    x: &Share,
    row0: usize,
) -> Result<Share> {
    let y = slots.mask(i).and_then(|a| {
        chunked(ctx, x, 0, sch, &|c, xc, s| {
            let e = c.open_input_mask(&a, xc, row0 + s)?;
            c.finish_with_mask(&slots.peek(i)?.0, &e, row0 + s)
        })
    });
    let bias = slots.peek(i).map(|p| p.1.clone());
    slots.done(i);
    let (y, bias) = (y?, bias?);
    let b = broadcast_bias(&bias.0, y.shape());
    Ok(y.add(&Share(b)))
}

/// One linear layer: its product, weight, bias and full-batch input shape.
type LinearSpec<'m> = (LinearOp, &'m PlainTensor, &'m PlainTensor, Vec<usize>);

/// Every linear layer in execution order with its full-batch input shape (a transformer
/// block contributes its four, on [B·S, in]).
fn linear_inputs<'m>(
    layers: &'m [Layer],
    shape: &[usize],
    out: &mut Vec<LinearSpec<'m>>,
) -> Vec<usize> {
    let mut s = shape.to_vec();
    for l in layers {
        match l {
            Layer::Residual { body, shortcut } => {
                let y = linear_inputs(body, &s, out);
                linear_inputs(shortcut, &s, out);
                s = y;
            }
            Layer::Transformer(b) => {
                let tokens = s[0] * s[1];
                for (w, bias) in b.linears() {
                    out.push((LinearOp::Matmul, w, bias, vec![tokens, w.shape()[0]]));
                }
            }
            _ => {
                if let Some((op, w, b)) = l.linear_parts() {
                    out.push((op, w, b, s.clone()));
                }
                s = l.out_shape(&s);
            }
        }
    }
    s
}

/// Lanes that open inter-linear's weight masks, each taking every WEIGHT_LANES-th layer.
const WEIGHT_LANES: usize = 2;

/// What every lane needs to know.
struct Env<'e> {
    weights: Weights,
    schedule: Schedule,
    slots: Option<&'e Slots>,
}

fn lane_panicked() -> Error {
    Error::Protocol("a pipeline lane panicked".into())
}

/// A lane's work, to run on another thread or as a coroutine.
type LaneFn<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Run `first` on the calling thread and each of `rest` as a lane, and wait for them all;
/// a lane that panicked is an error. `mode` says whether the lanes are OS threads or
/// coroutines on this thread. Lanes are named after their parent lane (timelines show a
/// row per lane).
fn fork_join<'a, A, B: Send + 'a>(
    mode: Lanes,
    first: impl FnOnce() -> A,
    rest: Vec<(String, LaneFn<'a, B>)>,
) -> (A, Vec<Result<B>>) {
    let parent = lanes::current_name();
    let named = rest
        .into_iter()
        .map(|(name, f)| (format!("{parent} / {name}"), f));
    match mode {
        Lanes::Threads => std::thread::scope(|sc| {
            let hs: Vec<_> = named
                .map(|(name, f)| {
                    std::thread::Builder::new()
                        .name(name)
                        .spawn_scoped(sc, f)
                        .expect("cannot spawn a pipeline lane thread")
                })
                .collect();
            let a = first();
            let bs = hs
                .into_iter()
                .map(|h| h.join().map_err(|_| lane_panicked()));
            (a, bs.collect())
        }),
        Lanes::Coroutines => lanes::scope(|sc| {
            let hs: Vec<_> = named.map(|(name, f)| sc.spawn(name, f)).collect();
            let a = first();
            let bs = hs
                .into_iter()
                .map(|h| h.join().map_err(|_| lane_panicked()));
            (a, bs.collect())
        }),
    }
}

/// Run `f` on the schedule's k chunks of `x` along `axis`, each chunk in its own lane (the
/// first on the calling thread), and concatenate. `f` gets the chunk's start index along
/// `axis`.
fn chunked(
    ctx: &Ctx,
    x: &Share,
    axis: usize,
    sch: &Schedule,
    f: &(dyn Fn(&Ctx, &Share, usize) -> Result<Share> + Sync),
) -> Result<Share> {
    let n = x.shape()[axis];
    let k = sch.k().min(n).max(1);
    if k == 1 {
        return f(ctx, x, 0);
    }
    let ranges = crate::ring::tensor::split_ranges(n, k);
    let mut parts = ranges
        .iter()
        .enumerate()
        .map(|(c, &(s, e))| (s, Share(x.0.slice_axis(axis, s, e)), ctx.child(c as u64)));
    let (s0, x0, c0) = parts.next().unwrap();
    let rest: Vec<(String, LaneFn<Result<Share>>)> = parts
        .enumerate()
        .map(|(c, (s, xc, cc))| {
            let lane: LaneFn<Result<Share>> = Box::new(move || f(&cc, &xc, s));
            (format!("chunk {}", c + 1), lane)
        })
        .collect();
    let (y0, ys) = fork_join(sch.lanes, || f(&c0, &x0, s0), rest);
    let shares = std::iter::once(y0)
        .chain(ys.into_iter().map(|y| y.and_then(|y| y)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Share(RingTensor::concat(
        axis,
        &shares.into_iter().map(|s| s.0).collect::<Vec<_>>(),
    )))
}

fn run_layers(
    ctx: &Ctx,
    layers: &[Layer],
    x: &Share,
    env: &Env,
    row0: usize,
    ordinal: &mut usize,
) -> Result<Share> {
    let k = env.schedule.k();
    let mut x = x.clone();
    for l in layers {
        x = match l {
            Layer::Residual { body, shortcut } => {
                let y = run_layers(ctx, body, &x, env, row0, ordinal)?;
                let s = run_layers(ctx, shortcut, &x, env, row0, ordinal)?;
                if y.shape() != s.shape() {
                    return Err(Error::Shape(format!(
                        "residual body {:?} vs shortcut {:?}",
                        y.shape(),
                        s.shape()
                    )));
                }
                y.add(&s)
            }
            Layer::Conv { .. } | Layer::Linear { .. } => {
                let i = *ordinal;
                *ordinal += 1;
                run_linear(ctx, l, &x, env, row0, i)?
            }
            Layer::Flatten => l.forward_mpc(ctx, &x, env.weights)?,
            Layer::Transformer(b) => {
                let base = *ordinal;
                *ordinal += 4;
                b.forward_mpc(
                    ctx,
                    &x,
                    &BlockExec {
                        env,
                        base,
                        row0_tokens: row0 * x.shape()[1],
                    },
                )?
            }
            Layer::Relu if k > 1 => {
                // Elementwise: chunk the flat tensor, whatever the batch size.
                let shape = x.shape().to_vec();
                let flat = x.reshape(&[x.len()])?;
                chunked(ctx, &flat, 0, &env.schedule, &|c, xc, _| {
                    l.forward_mpc(c, xc, env.weights)
                })?
                .reshape(&shape)?
            }
            Layer::MaxPool { .. } | Layer::AvgPool { .. } if k > 1 => {
                // Windows never cross channels: chunk the batch, or the channels at batch 1.
                let axis = if x.shape()[0] >= k { 0 } else { 1 };
                chunked(ctx, &x, axis, &env.schedule, &|c, xc, _| {
                    l.forward_mpc(c, xc, env.weights)
                })?
            }
            _ => l.forward_mpc(ctx, &x, env.weights)?,
        };
    }
    Ok(x)
}

/// A linear layer under the schedule. `row0` is this lane's first row of the full batch.
fn run_linear(ctx: &Ctx, l: &Layer, x: &Share, env: &Env, row0: usize, i: usize) -> Result<Share> {
    let (op, w, b) = l.linear_parts().expect("run_linear on a linear layer");
    linear_parts(ctx, op, w, b, x, env, row0, i)
}

/// A linear layer (the `i`-th of the model) under the schedule; `row0` is the first row of
/// `x` within the full batch (samples for CNNs, tokens for transformer blocks).
#[allow(clippy::too_many_arguments)]
fn linear_parts(
    ctx: &Ctx,
    op: LinearOp,
    w: &PlainTensor,
    b: &PlainTensor,
    x: &Share,
    env: &Env,
    row0: usize,
    i: usize,
) -> Result<Share> {
    let sch = &env.schedule;
    if env.weights == Weights::Public {
        return linear_layer(ctx, op, x, w, b, env.weights);
    }
    match env.slots {
        Some(slots) => finish_private(ctx, sch, slots, i, x, row0),
        None if sch.k() > 1 && x.shape()[0] > 1 => {
            // Chunked without inter-linear: a lane of its own opens this layer's weight
            // mask while the chunks open their rows of E, so the layer still costs one
            // round of latency, as in serial.
            let own = Slots::new(1, 1);
            let layer: LinearSpec = (op, w, b, x.shape().to_vec());
            let wctx = ctx.child(u64::MAX);
            let (own, layer) = (&own, &layer);
            let weights: LaneFn<()> = Box::new(move || {
                prepare_into(&wctx, own, 0, layer);
            });
            let (y, w) = fork_join(
                sch.lanes,
                || finish_private(ctx, sch, own, 0, x, 0),
                vec![("weights".into(), weights)],
            );
            w.into_iter().collect::<Result<Vec<()>>>()?;
            y
        }
        None => linear_layer(ctx, op, x, w, b, env.weights),
    }
}

/// Runs a transformer block's linears and row-wise steps under the schedule.
struct BlockExec<'e> {
    env: &'e Env<'e>,
    /// Ordinal of the block's first linear layer.
    base: usize,
    /// First token row of this lane within the full batch.
    row0_tokens: usize,
}

impl Exec for BlockExec<'_> {
    fn linear(
        &self,
        ctx: &Ctx,
        slot: usize,
        x: &Share,
        w: &PlainTensor,
        b: &PlainTensor,
    ) -> Result<Share> {
        linear_parts(
            ctx,
            LinearOp::Matmul,
            w,
            b,
            x,
            self.env,
            self.row0_tokens,
            self.base + slot,
        )
    }
    fn rows(
        &self,
        ctx: &Ctx,
        x: &Share,
        f: &(dyn Fn(&Ctx, &Share) -> Result<Share> + Sync),
    ) -> Result<Share> {
        chunked(ctx, x, 0, &self.env.schedule, &|c, xc, _| f(c, xc))
    }
}

/// Words of the weight masks F = W - B that inference of `model` on a batch of
/// `batch_shape` opens with private weights: one per weight of every linear layer (each
/// party sends its share of them to every peer once).
pub fn weight_mask_words(model: &Model, batch_shape: &[usize]) -> usize {
    let mut linear = Vec::new();
    linear_inputs(&model.layers, batch_shape, &mut linear);
    linear.iter().map(|l| l.1.len()).sum()
}

/// Model inference under `schedule`. Same protocols as `Model::forward_mpc`; outputs agree
/// with it within the fixed-point error bound (different triples, same math).
pub fn forward(
    ctx: &Ctx,
    model: &Model,
    x: &Share,
    weights: Weights,
    schedule: &Schedule,
) -> Result<Share> {
    let batch = x.shape()[0];
    let m = schedule.m().min(batch).max(1);
    let inter_linear = schedule.scheme.inter_linear && weights == Weights::Private;
    if schedule.scheme.is_serial() {
        return model.forward_mpc(ctx, x, weights);
    }
    let mut linear = Vec::new();
    linear_inputs(&model.layers, x.shape(), &mut linear);
    let slots = Slots::new(linear.len(), m);
    let env = Env {
        weights,
        schedule: *schedule,
        slots: inter_linear.then_some(&slots),
    };
    // Weight masks are opened long before they are needed: as background traffic they use
    // only link time the activations' rounds leave idle, instead of holding those rounds
    // up behind megabytes of F (VGG16's first FC layer alone is 0.8 GB).
    let weights_ctx = ctx.child(u64::MAX).background();
    let lane_ctxs: Vec<Ctx> = (0..m).map(|b| ctx.child(b as u64)).collect();
    let ranges = crate::ring::tensor::split_ranges(batch, m);
    let env = &env;
    let mut rest: Vec<(String, LaneFn<Option<Result<Share>>>)> = Vec::new();
    if inter_linear {
        // WEIGHT_LANES lanes take the layers in turn, so one lane's F is on the link while
        // another computes C + A·F; each layer has its own context, made here in order, so
        // keys do not depend on which lane gets there first.
        let mut per_lane: Vec<Vec<(usize, Ctx)>> = (0..WEIGHT_LANES).map(|_| Vec::new()).collect();
        for i in 0..linear.len() {
            per_lane[i % WEIGHT_LANES].push((i, weights_ctx.child(i as u64)));
        }
        for (w, layers) in per_lane.into_iter().enumerate() {
            let (linear, slots) = (&linear, &slots);
            let lane: LaneFn<Option<Result<Share>>> = Box::new(move || {
                for (n, (i, wctx)) in layers.iter().enumerate() {
                    if !prepare_into(wctx, slots, *i, &linear[*i]) {
                        layers[n + 1..].iter().for_each(|(j, _)| {
                            slots.set(*j, Err("an earlier layer's preparation failed".into()))
                        });
                        break;
                    }
                }
                None
            });
            rest.push((format!("weights {w}"), lane));
        }
    }
    for (bi, (lctx, (s, e))) in lane_ctxs.into_iter().zip(ranges).enumerate() {
        let xb = Share(x.0.slice_axis(0, s, e));
        let lane: LaneFn<Option<Result<Share>>> = Box::new(move || {
            let mut ordinal = 0;
            Some(run_layers(&lctx, &model.layers, &xb, env, s, &mut ordinal))
        });
        rest.push((format!("batch {bi}"), lane));
    }
    let ((), outs) = fork_join(schedule.lanes, || (), rest);
    let outs = outs
        .into_iter()
        .filter_map(|o| o.transpose())
        .map(|o| o.and_then(|y| y))
        .collect::<Result<Vec<_>>>()?;
    Ok(Share(RingTensor::concat(
        0,
        &outs.into_iter().map(|s| s.0).collect::<Vec<_>>(),
    )))
}
