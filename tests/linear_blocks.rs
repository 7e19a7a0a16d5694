//! Private-weight layers above the block cap run as blocks of output columns, each with
//! its own triple and openings (src/sched/linear.rs). With the cap lowered so that the
//! one layer of W1 (a matmul, 8 MiB of weight) and W3 (a conv, 288 KiB) split into
//! several blocks:
//! - the decoded output equals the plaintext f64 product of the quantized weight and
//!   input within the fixed-point bound (the ring product is exact; each output unit is
//!   truncated once, which errs by < 2 ulp for 2 parties and < 1 ulp for 3), and so does
//!   the unblocked run, so the two agree within twice that;
//! - every scheme and lane mode gives the blocked serial run's output shares bit for bit,
//!   with the same bytes and rounds (blocks are chosen in the one place every schedule
//!   and the plan's dry run go through);
//! - the serial run takes the layer's rounds once per block;
//! - a streamed dealer gives the upfront dealer's shares (the blocks are keys of the plan).
//!
//! One test only: the cap is process-wide, and the plan's dry run and the online run of
//! one job must see the same cap, so no other test may change it meanwhile.

mod common;
use common::*;

use mpc_pipe::model::{plain, zoo, Weights};
use mpc_pipe::proto::Ctx;
use mpc_pipe::ring::PlainTensor;
use std::sync::Arc;

use mpc_pipe::runtime::{record_plan, run_local, run_local_with, Dealing, SessionConfig};
use mpc_pipe::sched::{self, Lanes, Schedule, Scheme};

/// Each party's (output share words, decoded output, bytes sent, rounds).
type Outcome = Vec<(Vec<u64>, PlainTensor, u64, u64)>;

fn run_as(model: &str, parties: usize, input: &PlainTensor, schedule: Schedule) -> Outcome {
    let g = zoo::build(model, 7, input.shape()[0]).unwrap();
    let shape = input.shape().to_vec();
    let mut cfg = SessionConfig::new(parties);
    cfg.dealer_seed = Some(0xb10c);
    let outs = run_local(&cfg, &|ctx: &Ctx| {
        let x = ctx.share_plain(parties - 1, Some(input), &shape)?;
        let y = sched::forward(ctx, &g, &x, Weights::Private, &schedule)?;
        Ok((y.0.data().to_vec(), ctx.reveal_plain(&y)?))
    })
    .unwrap_or_else(|e| panic!("{model} {parties}p {schedule:?}: {e}"));
    outs.into_iter()
        .map(|o| (o.value.0, o.value.1, o.stats.bytes_sent(), o.stats.rounds))
        .collect()
}

/// With blocks, a streamed dealer (a one-word window: every key made when waited for)
/// gives the upfront dealer's output shares, traffic and rounds: the blocks are separate
/// keys of the one plan.
fn streamed_equals_upfront(model: &str, input: &PlainTensor, schedule: Schedule) {
    let g = zoo::build(model, 7, input.shape()[0]).unwrap();
    let shape = input.shape().to_vec();
    let mut cfg = SessionConfig::new(2);
    cfg.dealer_seed = Some(0xb10c);
    let p = |ctx: &Ctx| {
        let x = ctx.share_plain(1, Some(input), &shape)?;
        let y = sched::forward(ctx, &g, &x, Weights::Private, &schedule)?;
        Ok(y.0.data().to_vec())
    };
    let plan = Arc::new(record_plan(&cfg, &p).unwrap());
    let run = |dealing| {
        run_local_with(&cfg, &plan, dealing, &p)
            .unwrap_or_else(|e| panic!("{model} {schedule:?}: {e}"))
            .into_iter()
            .map(|o| (o.value, o.stats.bytes_sent(), o.stats.rounds))
            .collect::<Vec<_>>()
    };
    let upfront = run(Dealing::Upfront);
    let streamed = run(Dealing::Streamed { window_bytes: 8 });
    assert!(
        streamed == upfront,
        "{model} {schedule:?}: streamed differs"
    );
}

/// The plaintext f64 output of `model` on quantized weights and input: what the ring
/// computes exactly before truncation.
fn reference(model: &str, input: &PlainTensor) -> PlainTensor {
    let g = zoo::build(model, 7, input.shape()[0]).unwrap();
    plain::forward(&g.map_constants(quantize), &quantize(input)).unwrap()
}

fn check(model: &str, parties: usize, batch: usize, cap_bytes: usize, blocks: usize) {
    let g = zoo::build(model, 7, batch).unwrap();
    let shape = g.input_shape().to_vec();
    let input = Data::new(21).tensor(&shape, -1.0, 1.0);
    let want = reference(model, &input);
    // Truncation of the one product: < 2 ulp (2 parties), < 1 ulp (3 parties).
    let bound = if parties == 2 { 2.0 * ULP } else { ULP };

    sched::set_block_bytes(usize::MAX);
    let whole = run_as(model, parties, &input, Schedule::serial());
    sched::set_block_bytes(cap_bytes);
    let serial = run_as(model, parties, &input, Schedule::serial());
    let what = format!("{model} {parties}p cap {cap_bytes}");
    for (p, (b, w)) in serial.iter().zip(&whole).enumerate() {
        assert_close(
            &b.1,
            &want,
            |_| bound,
            &format!("{what} blocked, party {p}"),
        );
        assert_close(
            &w.1,
            &want,
            |_| bound,
            &format!("{what} unblocked, party {p}"),
        );
        assert_close(
            &b.1,
            &w.1,
            |_| 2.0 * bound,
            &format!("{what} blocked vs not"),
        );
        assert_ne!(b.0, w.0, "{what}: blocks draw their own triples");
        // A block's rounds are the layer's: the masks' opening, and for N > 2 the
        // dealer-assisted truncation's.
        let layer_rounds = if parties == 2 { 1 } else { 2 };
        assert_eq!(
            b.3,
            w.3 + (blocks as u64 - 1) * layer_rounds,
            "{what}: the layer's rounds once per block"
        );
    }
    for scheme in SCHEMES {
        for lanes in [Lanes::Threads, Lanes::Coroutines] {
            let schedule = Schedule {
                scheme: scheme.parse::<Scheme>().unwrap(),
                chunks: 2,
                batches_in_flight: 2,
                lanes,
            };
            let got = run_as(model, parties, &input, schedule);
            for (p, (g, s)) in got.iter().zip(&serial).enumerate() {
                let what = format!("{what} {scheme} {lanes} party {p}");
                assert!(g.0 == s.0, "{what}: output share differs from serial's");
                assert_eq!(g.2, s.2, "{what}: bytes sent");
                assert_eq!(g.3, s.3, "{what}: rounds");
            }
        }
    }
    for scheme in ["serial", "all"] {
        let schedule = Schedule {
            scheme: scheme.parse::<Scheme>().unwrap(),
            chunks: 2,
            batches_in_flight: 2,
            lanes: Lanes::Threads,
        };
        if parties == 2 {
            streamed_equals_upfront(model, &input, schedule);
        }
    }
    sched::set_block_bytes(sched::DEFAULT_BLOCK_BYTES);
}

#[test]
fn column_blocked_layers_match_plaintext_unblocked_and_every_scheme() {
    // W1: [1024, 1024] weight, 8 MiB; a 1 MiB cap gives 8 blocks of 128 columns.
    let w = [1024, 1024];
    let op = mpc_pipe::proto::LinearOp::Matmul;
    assert_eq!(sched::block_ranges(op, &w, 1 << 20).len(), 8);
    check("W1", 2, 4, 1 << 20, 8);
    check("W1", 3, 2, 1 << 20, 8);
    // W3: [64, 64, 3, 3] conv weight, 288 KiB; a 100 KiB cap gives 3 blocks of output
    // channels (22, 21, 21).
    let conv = mpc_pipe::proto::LinearOp::Conv2d {
        stride: 1,
        padding: 1,
    };
    let r = sched::block_ranges(conv, &[64, 64, 3, 3], 100 << 10);
    assert_eq!(r, vec![(0, 22), (22, 43), (43, 64)]);
    check("W3", 2, 2, 100 << 10, 3);
}
