//! Secure training (`mpc-pipe train`): data sets (`data`), the MPC forward/backward/SGD
//! over the model graph (`mpc`), where the parties run (`parties`: threads of this
//! process, or one party per process over TCP), and the epoch loop over either, each
//! epoch one online session with fresh dealer material; or the same in f64
//! (`--plaintext`) with the same initial weights, data order and batches
//! (model::backward). Depends on model, proto, offline, runtime, sched, ring, link,
//! comm, kernels (the process CPU clock); bench and cli sit above it.
//!
//! The model owner (party 0) holds the initial weights and learns the per-epoch loss and
//! test accuracy, and the trained weights when asked; the data owner (the last party)
//! holds the images and labels. Everything else stays secret-shared, weights and
//! gradients included, from one epoch to the next.
//!
//! Mini-batches: each epoch shuffles the training set with a public seeded permutation
//! (the same in MPC and in f64) and runs ⌊n / B⌋ steps; the last partial batch is dropped
//! (PyTorch's drop_last), so every step has the same shapes and every epoch the same plan.

pub mod data;
pub mod mpc;
pub mod parties;

use std::time::Instant;

use crate::comm::CommStats;
use crate::error::{Error, Result};
use crate::model::backward::{self, Sgd};
use crate::model::zoo::Synth;
use crate::model::Graph;

use crate::proto::{Ctx, Share};
use crate::ring::{PlainTensor, RingTensor};
use crate::runtime::{Offline, SessionConfig};
use crate::sched::Schedule;
use crate::transport::emulator::LinkProfile;

pub use data::{Dataset, Split};
use mpc::{Trainable, MODEL_OWNER};
pub use parties::{InProcess, Measured, OneProcess, Parties, PlanKind, Session};

/// Test images per evaluation batch.
const EVAL_BATCH: usize = 128;

/// One training run's public configuration.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub sgd: Sgd,
    pub schedule: Schedule,
    /// Seed of the data order (a public permutation per epoch).
    pub order_seed: u64,
}

impl TrainConfig {
    pub fn check(&self, train_len: usize) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Config("--epochs must be at least 1".into()));
        }
        if self.batch == 0 || self.batch > train_len {
            return Err(Error::Config(format!(
                "--batch must be between 1 and the training set's {train_len} samples, got {}",
                self.batch
            )));
        }
        let s = self.sgd;
        if !(s.lr.is_finite() && s.lr > 0.0 && s.lr <= 16.0) {
            return Err(Error::Config(format!(
                "--lr must be in (0, 16], got {}",
                s.lr
            )));
        }
        if !(0.0..1.0).contains(&s.momentum) {
            return Err(Error::Config(format!(
                "--momentum must be in [0, 1), got {}",
                s.momentum
            )));
        }
        if !(0.0..1.0).contains(&s.weight_decay) {
            return Err(Error::Config(format!(
                "--weight-decay must be in [0, 1), got {}",
                s.weight_decay
            )));
        }
        Ok(())
    }

    /// Steps per epoch.
    pub fn steps(&self, train_len: usize) -> usize {
        train_len / self.batch
    }
}

/// The order of the training set in epoch `epoch` (Fisher-Yates on a seeded generator).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut g = Synth::new(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let u = g.tensor(&[n], 0.0, 1.0);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((u.data()[i] * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    order
}

/// One-hot labels as raw 0/1 ring values [b, classes].
fn onehot(labels: &[usize], classes: usize) -> RingTensor {
    let mut t = RingTensor::zeros(&[labels.len(), classes]);
    for (i, &l) in labels.iter().enumerate() {
        t.data_mut()[i * classes + l] = 1;
    }
    t
}

/// What an epoch measured.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub loss: f64,
    /// Test accuracy in [0, 1] after the epoch.
    pub accuracy: f64,
    /// Training samples processed.
    pub samples: usize,
    /// The slowest party's online time of the epoch's training (evaluation excluded).
    pub online_s: f64,
    /// Process CPU time per party during it.
    pub cpu_s: f64,
    /// Per party, the epoch's training traffic.
    pub stats: Vec<CommStats>,
    /// The epoch's phases before its sessions' online clocks (training and evaluation:
    /// dry runs, 0 in epochs whose plans were recorded before; dealer; expansion), of the
    /// party that spent longest in them. All 0 for f64 training.
    pub offline: Offline,
    /// Wall time of the whole epoch (training and evaluation, each with its plan, dealer,
    /// expansion and online phase), the slowest party's.
    pub e2e_s: f64,
}

/// A party's training state between sessions: weight shares and momentum buffers.
#[derive(Clone, Default)]
struct PartyState {
    weights: Option<Vec<Share>>,
    velocity: Vec<Share>,
}

/// The data owner.
fn data_owner(ctx: &Ctx) -> usize {
    ctx.parties() - 1
}

/// Share mini-batch `idx` of `set`: images in fixed point, labels one-hot (raw 0/1).
/// Only the data owner reads the values.
fn share_batch(ctx: &Ctx, set: &Dataset, idx: &[usize]) -> Result<(Share, Share)> {
    let owner = data_owner(ctx);
    let mine = (ctx.party() == owner).then(|| {
        let (x, labels) = set.batch(idx);
        (x, onehot(&labels, set.classes))
    });
    let mut x_shape = vec![idx.len()];
    x_shape.extend(&set.sample_shape);
    let xs = ctx.share_plain(owner, mine.as_ref().map(|m| &m.0), &x_shape)?;
    let ys = ctx.share_input(
        owner,
        mine.as_ref().map(|m| &m.1),
        &[idx.len(), set.classes],
    )?;
    Ok((xs, ys))
}

/// Context of the data sharing of step `step` (its own key scope).
fn data_ctx<'a>(ctx: &Ctx<'a>, step: usize, what: u64) -> Ctx<'a> {
    ctx.for_node(0xda7a_0000_0000_0000 | ((step as u64) << 4) | what)
}

/// The secure training job: a graph, its data, and the configuration.
pub struct Job<'a> {
    pub graph: &'a Graph,
    pub data: &'a Split,
    pub config: TrainConfig,
}

impl Job<'_> {
    /// The configuration, the model's trainability and its fit to the data, checked.
    pub fn check(&self) -> Result<()> {
        self.config.check(self.data.train.len())?;
        backward::parameters(self.graph)?;
        let want = &self.graph.input_shape()[1..];
        if want != self.data.train.sample_shape.as_slice() {
            return Err(Error::Config(format!(
                "model '{}' takes samples of shape {want:?}, the data has {:?}",
                self.graph.name, self.data.train.sample_shape
            )));
        }
        let out = self.graph.output_shape();
        if out.len() != 2 || out[1] != self.data.train.classes {
            return Err(Error::Config(format!(
                "model '{}' outputs {out:?}; training needs [batch, {}] logits for the data's classes",
                self.graph.name, self.data.train.classes
            )));
        }
        Ok(())
    }

    /// One epoch's training for the party of `ctx`, from `st`. Returns the new state and
    /// the summed loss, revealed to the model owner.
    fn train_epoch(
        &self,
        model: &Trainable,
        ctx: &Ctx,
        epoch: usize,
        st: &PartyState,
    ) -> Result<(PartyState, Option<f64>)> {
        let cfg = &self.config;
        let set = &self.data.train;
        let mut w = match &st.weights {
            Some(w) => w.clone(),
            None => model.share_weights(ctx)?,
        };
        let mut velocity = st.velocity.clone();
        let order = epoch_order(set.len(), cfg.order_seed, epoch);
        let b = cfg.batch;
        let mut loss = Share(RingTensor::zeros(&[1]));
        for s in 0..cfg.steps(set.len()) {
            let (x, y) = share_batch(&data_ctx(ctx, s, 0), set, &order[s * b..(s + 1) * b])?;
            let l = model.step(ctx, s, &mut w, &mut velocity, &cfg.sgd, &x, &y)?;
            loss.0.add_assign(&l.0);
        }
        let c = data_ctx(ctx, 1 << 40, 1);
        let total = c.reveal_to(MODEL_OWNER, &loss)?;
        let steps = cfg.steps(set.len());
        let mean = total.map(|t| ctx.fixed().decode(t.data()[0]) / (steps * b) as f64);
        Ok((
            PartyState {
                weights: Some(w),
                velocity,
            },
            mean,
        ))
    }

    /// Test accuracy of the party's weights, revealed to the model owner.
    fn evaluate(&self, model: &Trainable, ctx: &Ctx, st: &PartyState) -> Result<Option<f64>> {
        let set = &self.data.test;
        let w = match &st.weights {
            Some(w) => w.clone(),
            None => model.share_weights(ctx)?,
        };
        let mut correct = Share(RingTensor::zeros(&[1]));
        let idx: Vec<usize> = (0..set.len()).collect();
        for (s, chunk) in idx.chunks(EVAL_BATCH).enumerate() {
            let (x, y) = share_batch(&data_ctx(ctx, s, 2), set, chunk)?;
            correct.0.add_assign(&model.correct(ctx, s, &w, x, &y)?.0);
        }
        let c = data_ctx(ctx, 1 << 40, 3);
        let n = c.reveal_to(MODEL_OWNER, &correct)?;
        Ok(n.map(|n| n.data()[0] as i64 as f64 / set.len() as f64))
    }

    /// Secure training, 2 or more parties in this process over links of `link`; calls
    /// `on_epoch` after each epoch. Returns the reports and the trained weights revealed
    /// to the model owner (aligned with the graph's parameters).
    pub fn run_mpc(
        &self,
        session: &SessionConfig,
        link: &LinkProfile,
        on_epoch: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Vec<EpochReport>, Vec<PlainTensor>)> {
        let (reports, weights) = self.run_on(&mut InProcess::new(session, link), on_epoch)?;
        let weights =
            weights.ok_or_else(|| Error::Protocol("the model owner got no weights".into()))?;
        Ok((reports, weights))
    }

    /// Secure training with the parties `parties` places (all in this process, or this
    /// process's one). Where the model owner runs, calls `on_epoch` after each epoch and
    /// returns the reports and the trained weights; elsewhere, no reports and None.
    pub fn run_on<P: Parties>(
        &self,
        parties: &mut P,
        on_epoch: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Vec<EpochReport>, Option<Vec<PlainTensor>>)> {
        self.check()?;
        let model = Trainable::new(self.graph)?
            .with_schedule(&self.config.schedule)?
            .on_link(parties.link());
        let n = parties.parties();
        let local: Vec<bool> = (0..n).map(|p| parties.is_local(p)).collect();
        let me = local
            .iter()
            .position(|&l| l)
            .ok_or_else(|| Error::Protocol("no party runs in this process".into()))?;
        // The state a party's program reads. A dry run plays party 0; a process without
        // party 0 plays it with its own party's state (same shapes, momentum buffers or
        // not alike, so the same plan).
        let at = |p: usize| if local[p] { p } else { me };
        let mut states = vec![PartyState::default(); n];
        let mut reports = Vec::new();
        for epoch in 0..self.config.epochs {
            let t_epoch = Instant::now();
            // Every epoch repeats the same steps' keys and shapes, so one dry run serves
            // them all, except that the first epoch starts without momentum buffers (its
            // first update has no μ·v term): epoch 1 has a plan of its own.
            let kind = if epoch == 0 {
                PlanKind::FirstEpoch
            } else {
                PlanKind::Epoch
            };
            let trained = {
                let st = &states;
                let train = |ctx: &Ctx| self.train_epoch(&model, ctx, epoch, &st[at(ctx.party())]);
                parties.session(kind, &train)?
            };
            let mut loss = f64::NAN;
            let mut measured = Vec::with_capacity(trained.outs.len());
            for (i, o) in trained.outs {
                if let Some(l) = o.value.1 {
                    loss = l;
                }
                states[i] = o.value.0;
                measured.push(Measured {
                    online_s: o.online_s,
                    cpu_s: trained.cpu_s,
                    stats: o.stats,
                    ..Measured::default()
                });
            }
            let evaluated = {
                let st = &states;
                let eval = |ctx: &Ctx| self.evaluate(&model, ctx, &st[at(ctx.party())]);
                parties.session(PlanKind::Evaluation, &eval)?
            };
            let accuracy = evaluated
                .outs
                .iter()
                .find_map(|(_, o)| o.value)
                .unwrap_or(f64::NAN);
            let (a, b) = (trained.offline, evaluated.offline);
            let offline = Offline {
                plan_s: a.plan_s + b.plan_s,
                deal_s: a.deal_s + b.deal_s,
                expand_s: a.expand_s + b.expand_s,
            };
            let e2e_s = t_epoch.elapsed().as_secs_f64();
            for m in &mut measured {
                m.offline = offline;
                m.e2e_s = e2e_s;
            }
            if let Some(all) = parties.gather(measured)? {
                let max = |f: &dyn Fn(&Measured) -> f64| all.iter().map(f).fold(0.0, f64::max);
                let r = EpochReport {
                    epoch: epoch + 1,
                    loss,
                    accuracy,
                    samples: self.config.steps(self.data.train.len()) * self.config.batch,
                    online_s: max(&|m| m.online_s),
                    cpu_s: all.iter().map(|m| m.cpu_s).sum::<f64>() / all.len() as f64,
                    // One party's phases (the one longest in them), so that they add up
                    // within its epoch, hence within the slowest party's e2e_s.
                    offline: all
                        .iter()
                        .map(|m| m.offline)
                        .max_by(|a, b| a.total_s().total_cmp(&b.total_s()))
                        .unwrap_or_default(),
                    e2e_s: max(&|m| m.e2e_s),
                    stats: all.into_iter().map(|m| m.stats).collect(),
                };
                on_epoch(&r);
                reports.push(r);
            }
        }
        // The trained weights to the model owner (no material: openings only).
        let st = &states;
        let reveal = |ctx: &Ctx| -> Result<Option<Vec<PlainTensor>>> {
            let w = st[at(ctx.party())]
                .weights
                .as_ref()
                .ok_or_else(|| Error::Protocol("no trained weights".into()))?;
            let c = data_ctx(ctx, 1 << 40, 4);
            let mut out = Vec::new();
            for s in w {
                if let Some(v) = c.reveal_to(MODEL_OWNER, s)? {
                    out.push(c.fixed().decode_tensor(&v));
                }
            }
            Ok((ctx.party() == MODEL_OWNER).then_some(out))
        };
        let weights = parties
            .session(PlanKind::Reveal, &reveal)?
            .outs
            .into_iter()
            .find_map(|(_, o)| o.value);
        Ok((reports, weights))
    }

    /// The same training in f64 (same initial weights, order and batches). Reports carry
    /// the wall time of each epoch's training as `online_s`, with its evaluation as
    /// `e2e_s`, and no traffic.
    pub fn run_plain(
        &self,
        on_epoch: &mut dyn FnMut(&EpochReport),
    ) -> Result<(Vec<EpochReport>, Vec<PlainTensor>)> {
        self.check()?;
        let g = self.graph;
        let params = backward::parameters(g)?;
        let mut w = backward::initial_values(g, &params);
        let mut velocity = Vec::new();
        let (train, test) = (&self.data.train, &self.data.test);
        let cfg = &self.config;
        let b = cfg.batch;
        let mut reports = Vec::new();
        for epoch in 0..cfg.epochs {
            let t0 = Instant::now();
            let cpu0 = crate::kernels::bound::process_cpu_s();
            let order = epoch_order(train.len(), cfg.order_seed, epoch);
            let mut loss = 0.0;
            for s in 0..cfg.steps(train.len()) {
                let (x, labels) = train.batch(&order[s * b..(s + 1) * b]);
                let (l, grads) = plain_step_grads(g, &params, &w, &x, &labels, cfg.schedule.m())?;
                loss += l * b as f64;
                cfg.sgd.step(&mut w, &grads, &mut velocity);
            }
            let online_s = t0.elapsed().as_secs_f64();
            let cpu_s = crate::kernels::bound::process_cpu_s() - cpu0;
            let accuracy = plain_accuracy(g, &params, &w, test)?;
            let e2e_s = t0.elapsed().as_secs_f64();
            let r = EpochReport {
                epoch: epoch + 1,
                loss: loss / (cfg.steps(train.len()) * b) as f64,
                accuracy,
                samples: cfg.steps(train.len()) * b,
                online_s,
                cpu_s,
                stats: Vec::new(),
                offline: Offline::default(),
                e2e_s,
            };
            on_epoch(&r);
            reports.push(r);
        }
        Ok((reports, w))
    }
}

/// Mean loss and weight gradients of one mini-batch in f64, over `m` micro-batches whose
/// gradients are summed (each a mean over the whole batch), as the MPC step.
pub fn plain_step_grads(
    g: &Graph,
    params: &[crate::model::TensorId],
    w: &[PlainTensor],
    x: &PlainTensor,
    labels: &[usize],
    m: usize,
) -> Result<(f64, Vec<PlainTensor>)> {
    let b = labels.len();
    let mut loss = 0.0;
    let mut total: Option<Vec<PlainTensor>> = None;
    let per: usize = x.shape()[1..].iter().product();
    for (s, e) in crate::ring::tensor::split_ranges(b, m.clamp(1, b.max(1))) {
        let mut shape = x.shape().to_vec();
        shape[0] = e - s;
        let xb = PlainTensor::from_vec(&shape, x.data()[s * per..e * per].to_vec());
        let vals = backward::tape(g, params, w, &xb)?;
        let z = vals[g.output].as_ref().expect("computed");
        let (l, dz) = backward::softmax_xent(z, &labels[s..e], b);
        loss += l;
        let grads = backward::backward(g, params, w, &vals, &dz)?;
        total = Some(match total {
            None => grads,
            Some(t) => t.iter().zip(&grads).map(|(a, b)| a.add(b)).collect(),
        });
    }
    Ok((loss, total.unwrap_or_default()))
}

/// Test accuracy in f64 (argmax, first index on ties as the MPC one).
pub fn plain_accuracy(
    g: &Graph,
    params: &[crate::model::TensorId],
    w: &[PlainTensor],
    test: &Dataset,
) -> Result<f64> {
    let idx: Vec<usize> = (0..test.len()).collect();
    let mut correct = 0usize;
    for chunk in idx.chunks(EVAL_BATCH) {
        let (x, labels) = test.batch(chunk);
        let vals = backward::tape(g, params, w, &x)?;
        let z = vals[g.output].as_ref().expect("computed");
        let k = z.shape()[1];
        for (row, &l) in z.data().chunks(k).zip(&labels) {
            let mut best = 0;
            for j in 1..k {
                if row[j] > row[best] {
                    best = j;
                }
            }
            correct += usize::from(best == l);
        }
    }
    Ok(correct as f64 / test.len() as f64)
}
