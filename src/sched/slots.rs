//! Slots: a private layer prepared once (its triple's input mask A, then the layer with
//! its weight mask opened) and read by every lane that computes rows of it. Errors keep
//! their kind: a lane waiting for a layer whose preparation timed out gets that timeout.
//! Depends on lanes, proto and error.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lanes;
use crate::proto::PreparedLinear;
use crate::ring::RingTensor;

#[derive(Default)]
struct State {
    /// The triple's input mask A (whole input): known as soon as the triple is taken, so
    /// a lane can open E = X - A while F = W - B is still in flight.
    mask: Option<std::result::Result<Arc<RingTensor>, Error>>,
    value: Option<std::result::Result<Arc<PreparedLinear>, Error>>,
    rows_total: usize,
    rows_done: usize,
    /// Threads with a lane waiting for this slot (each lane is one when lanes are
    /// threads; as coroutines, the party thread).
    waiters: Vec<std::thread::Thread>,
}

/// One layer's slot.
#[derive(Default)]
pub struct Slot {
    state: Mutex<State>,
    claimed: std::sync::atomic::AtomicBool,
}

fn gone() -> Error {
    Error::Protocol("a prepared layer was read after every lane finished with it".into())
}

impl Slot {
    /// True for exactly one caller: the lane that prepares the layer.
    pub fn claim(&self) -> bool {
        !self.claimed.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    pub fn set_mask(&self, a: Arc<RingTensor>) {
        let mut g = self.state.lock().unwrap();
        g.rows_total = a.shape().first().copied().unwrap_or(0);
        g.mask = Some(Ok(a));
        Self::wake(g);
    }

    pub fn set(&self, p: Arc<PreparedLinear>) {
        let mut g = self.state.lock().unwrap();
        g.value = Some(Ok(p));
        Self::wake(g);
    }

    /// The preparation failed: every lane waiting for either stage gets `e`'s kind.
    pub fn fail(&self, e: Error) {
        let mut g = self.state.lock().unwrap();
        if g.mask.is_none() {
            g.mask = Some(Err(e.duplicate()));
        }
        g.value = Some(Err(e));
        Self::wake(g);
    }

    /// Wake every lane waiting for this slot: on this thread (`notify`) and on others.
    fn wake(mut g: MutexGuard<State>) {
        let waiters = std::mem::take(&mut g.waiters);
        drop(g);
        lanes::notify();
        waiters.iter().for_each(std::thread::Thread::unpark);
    }

    fn wait_for<T: Clone>(
        &self,
        pick: impl Fn(&State) -> Option<&std::result::Result<T, Error>>,
    ) -> Result<T> {
        loop {
            let mut g = self.state.lock().unwrap();
            if let Some(r) = pick(&g) {
                return match r {
                    Ok(v) => Ok(v.clone()),
                    Err(e) => Err(e.duplicate()),
                };
            }
            // Registered under the lock, so a `set` after it unparks this thread.
            let me = std::thread::current();
            if g.waiters.iter().all(|t| t.id() != me.id()) {
                g.waiters.push(me);
            }
            drop(g);
            lanes::park_timeout(Duration::from_secs(1));
        }
    }

    /// The input mask A of the whole input.
    pub fn mask(&self) -> Result<Arc<RingTensor>> {
        self.wait_for(|s| s.mask.as_ref())
    }

    /// The prepared layer.
    pub fn peek(&self) -> Result<Arc<PreparedLinear>> {
        self.wait_for(|s| s.value.as_ref())
    }

    /// A lane is finished with `rows` rows; when all are, the layer is freed (VGG16's first
    /// FC layer keeps 0.8 GB per party in B + F).
    pub fn done(&self, rows: usize) {
        let mut g = self.state.lock().unwrap();
        g.rows_done += rows;
        if g.rows_total > 0 && g.rows_done >= g.rows_total {
            g.value = Some(Err(gone()));
            g.mask = Some(Err(gone()));
        }
    }
}

/// One slot per block of each graph node's layer (only linear nodes use theirs; a layer
/// under the block cap is one block).
pub struct Slots {
    items: Vec<std::sync::OnceLock<Box<[Slot]>>>,
}

impl Slots {
    pub fn new(n: usize) -> Self {
        Slots {
            items: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    /// The slot of an unblocked layer `node` (training's, whose layers are never blocked).
    pub fn get(&self, node: usize) -> &Slot {
        self.get_block(node, 0, 1)
    }

    /// Block `block` of node `node`'s layer of `blocks` blocks: every caller derives
    /// `blocks` from the same weight shape and cap, so the first call's count holds.
    pub fn get_block(&self, node: usize, block: usize, blocks: usize) -> &Slot {
        let all =
            self.items[node].get_or_init(|| (0..blocks.max(1)).map(|_| Slot::default()).collect());
        &all[block]
    }
}
