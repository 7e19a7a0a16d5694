//! Schemes are schedules over the same protocol calls, with material and zero sharings
//! addressed by (graph node, part of the tensor): with the same dealer and pairwise seeds
//! (`--dealer-seed`), every scheme and lane mode gives each party bit-identical output
//! shares, and so bit-identical decoded outputs, on every built-in model at small size,
//! 2 and 3 parties. The reference is the serial schedule's shares; the counters that must
//! not depend on the schedule (bytes, rounds) are checked too.

mod common;
use common::*;

use mpc_pipe::model::{zoo, Weights};
use mpc_pipe::proto::Ctx;
use mpc_pipe::ring::{ExpApprox, Protocols};
use mpc_pipe::runtime::{run_local, SessionConfig};
use mpc_pipe::sched::{self, Lanes, Schedule, Scheme};

/// Each party's (output share words, decoded output bits, bytes sent, rounds).
type Outcome = Vec<(Vec<u64>, Vec<u64>, u64, u64)>;

fn run_as(
    model: &str,
    parties: usize,
    weights: Weights,
    schedule: Schedule,
    protocols: Protocols,
    exp: Option<ExpApprox>,
) -> Outcome {
    let batch = 2;
    let g = zoo::build(model, 11, batch).unwrap();
    let shape = g.input_shape().to_vec();
    let input = Data::new(5).tensor(&shape, -1.0, 1.0);
    let mut cfg = SessionConfig::new(parties);
    cfg.dealer_seed = Some(0x5eed);
    cfg.fixed = cfg.fixed.with_protocols(protocols).with_exp(exp);
    let outs = run_local(&cfg, &|ctx: &Ctx| {
        let x = ctx.share_plain(parties - 1, Some(&input), &shape)?;
        let y = sched::forward(ctx, &g, &x, weights, &schedule)?;
        let plain = ctx.reveal_plain(&y)?;
        Ok((
            y.0.data().to_vec(),
            plain.data().iter().map(|v| v.to_bits()).collect(),
        ))
    })
    .unwrap_or_else(|e| panic!("{model} {parties}p {schedule:?}: {e}"));
    outs.into_iter()
        .map(|o| (o.value.0, o.value.1, o.stats.bytes_sent(), o.stats.rounds))
        .collect()
}

fn check(model: &str, parties: usize, weights: Weights) {
    check_as(model, parties, weights, Protocols::Crypten)
}

fn check_as(model: &str, parties: usize, weights: Weights, protocols: Protocols) {
    check_as_with(model, parties, weights, protocols, None)
}

fn check_as_with(
    model: &str,
    parties: usize,
    weights: Weights,
    protocols: Protocols,
    exp: Option<ExpApprox>,
) {
    let serial = run_as(model, parties, weights, Schedule::serial(), protocols, exp);
    for scheme in SCHEMES {
        for lanes in [Lanes::Threads, Lanes::Coroutines] {
            let schedule = Schedule {
                scheme: scheme.parse::<Scheme>().unwrap(),
                chunks: 3,
                batches_in_flight: 2,
                lanes,
            };
            let got = run_as(model, parties, weights, schedule, protocols, exp);
            for (p, (g, s)) in got.iter().zip(&serial).enumerate() {
                let what = format!(
                    "{model} {parties}p {weights:?} {scheme} {lanes} {protocols} party {p}"
                );
                assert!(g.0 == s.0, "{what}: output share differs from serial's");
                assert!(g.1 == s.1, "{what}: decoded output differs from serial's");
                assert_eq!(g.2, s.2, "{what}: bytes sent");
                assert_eq!(g.3, s.3, "{what}: rounds");
            }
        }
    }
}

/// `--protocols fss`: the comparison keys are material addressed by (node, part) like any
/// other, so every scheme evaluates each element with the same key and the shares are
/// bit-identical too (2 parties, the suite's only party count).
#[test]
fn fss_suite_gives_bit_identical_shares_under_every_scheme() {
    // bert-small: softmax's reciprocal and layernorm's inv_sqrt are spline gates there.
    for model in ["lenet", "resnet_cifar-tiny", "bert-small"] {
        check_as(model, 2, Weights::Private, Protocols::Fss);
    }
    // softmax's exp as the spline (`--exp spline`): its gate's shared walks too.
    check_as_with(
        "bert-small",
        2,
        Weights::Private,
        Protocols::Fss,
        Some(ExpApprox::Spline),
    );
}

#[test]
fn cnns_give_bit_identical_shares_under_every_scheme_2_and_3_parties() {
    for model in ["lenet", "resnet_cifar-tiny", "vgg16-tiny", "resnet50-tiny"] {
        check(model, 2, Weights::Private);
        check(model, 3, Weights::Private);
    }
    check("lenet", 2, Weights::Public);
    check("lenet", 3, Weights::Public);
}

#[test]
fn bert_small_gives_bit_identical_shares_under_every_scheme_2_and_3_parties() {
    check("bert-small", 2, Weights::Private);
    check("bert-small", 3, Weights::Private);
    check("bert-small", 2, Weights::Public);
}

/// Without `--dealer-seed` the material is fresh: shares differ between runs (the test
/// above would pass vacuously if they never could).
#[test]
fn fresh_seeds_give_different_shares() {
    let g = zoo::build("lenet", 11, 1).unwrap();
    let shape = g.input_shape().to_vec();
    let input = Data::new(5).tensor(&shape, -1.0, 1.0);
    let cfg = SessionConfig::new(2);
    let once = || {
        run_local(&cfg, &|ctx: &Ctx| {
            let x = ctx.share_plain(1, Some(&input), &shape)?;
            let y = sched::forward(ctx, &g, &x, Weights::Private, &Schedule::serial())?;
            Ok(y.0.data().to_vec())
        })
        .unwrap()
        .remove(0)
        .value
    };
    assert_ne!(once(), once());
}

/// The plan (every material request by key) does not depend on the schedule, and the dry
/// run records it without computing: it runs one unit of each node and skips products,
/// openings and zero sharings (`Ctx::for_plan`). The reference is the plan recorded by
/// running the whole program on placeholder values (a plain `Ctx` over a `NullComm`,
/// every product computed), under each schedule.
#[test]
fn the_dry_run_records_every_schedules_plan() {
    use mpc_pipe::offline::RecordingSource;
    use mpc_pipe::proto::{NullComm, PairSeeds};
    use mpc_pipe::runtime::job::{build, JobSpec};
    use mpc_pipe::runtime::record_plan;
    let cases = [
        ("lenet", 2, 2, Weights::Private),
        ("lenet", 3, 1, Weights::Public),
        ("resnet_cifar-tiny", 3, 2, Weights::Private),
        ("vgg16-tiny", 2, 1, Weights::Private),
        ("resnet50-tiny", 2, 2, Weights::Public),
        ("bert-small", 2, 2, Weights::Private),
        ("bert-small", 3, 1, Weights::Public),
    ];
    for (model, parties, batch, weights) in cases {
        let cfg = SessionConfig::new(parties);
        let mut spec = JobSpec::new(model, parties, batch);
        spec.weights = weights;
        let planned = record_plan(&cfg, &*build(&spec).unwrap().program).unwrap();
        assert!(!planned.entries.is_empty());
        for scheme in ["serial", "inner-layer", "all"] {
            spec.schedule = Schedule {
                scheme: scheme.parse::<Scheme>().unwrap(),
                chunks: 3,
                batches_in_flight: 2,
                lanes: Lanes::Coroutines,
            };
            let job = build(&spec).unwrap();
            let comm = NullComm::new(0, parties);
            let rec = RecordingSource::new();
            let seeds = PairSeeds::dry();
            (job.program)(&Ctx::new(&comm, &rec, &seeds, cfg.fixed)).unwrap();
            let computed = rec.into_plan().unwrap();
            assert!(
                computed.entries == planned.entries,
                "{model} {parties}p batch {batch} {weights:?} {scheme}: the dry run's plan differs from the computed run's"
            );
        }
    }
}

/// The schemes of one job description share one recorded plan (the cache `bench` uses),
/// and it is the plan a fresh dry run records.
#[test]
fn schemes_of_one_job_share_one_cached_plan() {
    use mpc_pipe::runtime::job::{build, cached_plan, JobSpec};
    use mpc_pipe::runtime::record_plan;
    let cfg = SessionConfig::new(2);
    let mut plans = Vec::new();
    for scheme in SCHEMES {
        let mut spec = JobSpec::new("lenet", 2, 3);
        spec.schedule.scheme = scheme.parse::<Scheme>().unwrap();
        let job = build(&spec).unwrap();
        let plan = cached_plan(&job, &cfg).unwrap();
        assert_eq!(
            plan.hash(),
            record_plan(&cfg, &*job.program).unwrap().hash()
        );
        plans.push(plan);
    }
    assert!(
        plans.iter().all(|p| std::sync::Arc::ptr_eq(p, &plans[0])),
        "one dry run"
    );
    // Another batch is another job: its own plan.
    let other = build(&JobSpec::new("lenet", 2, 4)).unwrap();
    assert!(!std::sync::Arc::ptr_eq(
        &cached_plan(&other, &cfg).unwrap(),
        &plans[0]
    ));
}
