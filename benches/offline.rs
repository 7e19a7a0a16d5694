//! Criterion benchmarks of the work outside the online window: the plan's dry run, the
//! dealer, and the AES-CTR keystream that bounds the dealer (`Plan::dealer_work`). The
//! dealer group's throughput is its keystream bytes, so criterion's rate reads against
//! the `prg` group's.
//! Run: `cargo bench --bench offline` (rayon's global pool: all cores).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mpc_pipe::prg::{fresh_seed, Prg};
use mpc_pipe::runtime::job::{build, JobSpec};
use mpc_pipe::runtime::{deal_in_process, record_plan, SessionConfig};

/// W2 (ReLU on 2^20 values: comparisons), W4 (LeNet, batch 32), W6 (one BERT-base layer).
const JOBS: [(&str, usize); 3] = [("W2", 1), ("W4", 32), ("W6", 1)];

fn plan_and_deal(c: &mut Criterion) {
    let cfg = SessionConfig::new(2);
    for (model, batch) in JOBS {
        let job = build(&JobSpec::new(model, 2, batch)).unwrap();
        let mut g = c.benchmark_group(format!("offline/{model}"));
        g.sample_size(10);
        g.bench_function("plan", |b| {
            b.iter(|| record_plan(&cfg, &*job.plan_program).unwrap())
        });
        let plan = record_plan(&cfg, &*job.plan_program).unwrap();
        g.throughput(Throughput::Bytes(8 * plan.dealer_work(2).prg_words));
        g.bench_function("deal", |b| b.iter(|| deal_in_process(&plan, &cfg, 1)));
        g.finish();
    }
}

fn prg(c: &mut Criterion) {
    use rayon::prelude::*;
    let mut buf = vec![0u64; 16 << 20];
    let seed = fresh_seed();
    let mut g = c.benchmark_group("prg");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(8 * buf.len() as u64));
    g.bench_function("aes-ctr 1 thread", |b| {
        b.iter(|| Prg::new(&seed, 1).fill_u64(&mut buf))
    });
    g.bench_function("aes-ctr all cores", |b| {
        b.iter(|| {
            buf.par_chunks_mut(1 << 15)
                .enumerate()
                .for_each(|(i, ch)| Prg::at(&seed, 1, i << 15).fill_u64(ch))
        })
    });
    g.finish();
}

criterion_group!(benches, plan_and_deal, prg);
criterion_main!(benches);
