//! The plan's dry run allocates nothing in proportion to a model's data (issue 20): its
//! placeholder values are zeros stored nowhere (`RingTensor::zeros`), so recording the
//! plan of a model with megabytes of weights and activations allocates a small fraction of
//! that. Measured with a counting global allocator (this test binary's own), as the peak of
//! live heap bytes while `record_plan` runs, against the bytes of the model's weights and
//! of its largest activation, which a dry run that computed or copied values would
//! allocate at least once (as it did before: a placeholder of the weight, of its opened
//! mask and of the triple's B, each the weight's size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mpc_pipe::model::{zoo, Weights};
use mpc_pipe::proto::Ctx;
use mpc_pipe::ring::PlainTensor;
use mpc_pipe::runtime::{record_plan, SessionConfig};
use mpc_pipe::sched::{self, Schedule};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's layout; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            let now = if new >= l.size() {
                LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size()
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed) - (l.size() - new)
            };
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak live bytes above what was live when the dry run of `model` started, and the
/// bytes of its ring-encoded weights and of its largest activation.
fn dry_run_peak(model: &str, batch: usize, parties: usize, weights: Weights) -> (usize, usize) {
    let g = zoo::build(model, 1, batch).unwrap();
    let shape = g.input_shape().to_vec();
    let x = PlainTensor::zeros(&shape);
    let program = |ctx: &Ctx| {
        let xs = ctx.share_plain(ctx.parties() - 1, Some(&x), &shape)?;
        let y = sched::forward(ctx, &g, &xs, weights, &Schedule::serial())?;
        ctx.reveal_plain(&y)
    };
    let weight_bytes = 8 * g.linear_weight_words();
    let act_bytes = 8 * g
        .tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>())
        .max()
        .unwrap();
    let cfg = SessionConfig::new(parties);
    // Serialised by the caller: the counters are process-wide.
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let plan = record_plan(&cfg, &program).unwrap();
    assert!(!plan.entries.is_empty());
    let peak = PEAK.load(Ordering::Relaxed) - base;
    (peak, weight_bytes.max(act_bytes))
}

#[test]
fn the_dry_run_allocates_a_small_fraction_of_the_models_data() {
    // W1: an 8 MiB weight and 2 MiB activations (batch 256); W2: 8 MiB of ReLU inputs;
    // W3: a conv at batch 1, whose dry run runs the whole (inseparable) product; W5: a
    // ResNet-18 (88 MiB of weights); W6: a BERT layer with public weights and 3 parties
    // (dealer truncation).
    let cases = [
        ("W1", 256, 2, Weights::Private),
        ("W2", 1, 2, Weights::Private),
        ("W3", 1, 2, Weights::Private),
        ("W5", 1, 2, Weights::Private),
        ("W6", 1, 3, Weights::Public),
    ];
    for (model, batch, parties, weights) in cases {
        let (peak, data) = dry_run_peak(model, batch, parties, weights);
        eprintln!(
            "{model} batch {batch} {parties}p {weights:?}: dry run peak {peak} B, data {data} B"
        );
        // Everything the dry run holds at once: the plan and its bookkeeping, and one unit
        // (row, element or plane) of a node's tensor: at most 0.4 MB here (W6's plan of
        // 1.8k requests). A 64th of the largest weight or activation leaves room for that
        // and fails for a copy of any tensor that large.
        assert!(
            peak < data / 64,
            "{model} batch {batch} {parties}p {weights:?}: the dry run peaked at {peak} bytes, against {data} bytes of weights or activations"
        );
    }
}
