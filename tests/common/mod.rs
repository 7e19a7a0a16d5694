//! Shared test fixture: run a program on N in-process parties and compare the revealed
//! result with a plaintext f64 reference, or read what one operation cost.
#![allow(dead_code)]

use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::{FixedPoint, PlainTensor, Trunc};
use mpc_pipe::runtime::{run_local, PartyOutcome, SessionConfig};
use mpc_pipe::Result;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// One fixed-point ulp at the default 16 fractional bits.
pub const ULP: f64 = 1.0 / 65536.0;

/// Deterministic synthetic data (not secret material).
pub struct Data(Xoshiro256PlusPlus);

impl Data {
    pub fn new(seed: u64) -> Self {
        Data(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> PlainTensor {
        let n = shape.iter().product();
        PlainTensor::from_vec(shape, (0..n).map(|_| self.uniform(lo, hi)).collect())
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
}

/// Run `program` on `n` parties; return party 0's value and every party's outcome.
pub fn run<T: Send>(n: usize, program: impl Fn(&Ctx) -> Result<T> + Sync) -> Vec<PartyOutcome<T>> {
    run_with(&SessionConfig::new(n), program)
}

/// As `run`, with a session config of the caller's (e.g. another truncation mode).
pub fn run_with<T: Send>(
    cfg: &SessionConfig,
    program: impl Fn(&Ctx) -> Result<T> + Sync,
) -> Vec<PartyOutcome<T>> {
    run_local(cfg, &program).expect("MPC run failed")
}

/// The session config for `n` parties with truncation mode `trunc` (None: the default).
pub fn config_with_trunc(n: usize, trunc: Option<Trunc>) -> SessionConfig {
    let mut cfg = SessionConfig::new(n);
    cfg.fixed = cfg.fixed.with_trunc(trunc);
    cfg
}

/// Run and return party 0's value, checking that every party's value is the same.
pub fn agree<T: Send + PartialEq + std::fmt::Debug>(
    n: usize,
    program: impl Fn(&Ctx) -> Result<T> + Sync,
) -> T {
    agree_with(&SessionConfig::new(n), program)
}

/// As `agree`, with a session config of the caller's.
pub fn agree_with<T: Send + PartialEq + std::fmt::Debug>(
    cfg: &SessionConfig,
    program: impl Fn(&Ctx) -> Result<T> + Sync,
) -> T {
    let outs = run_with(cfg, program);
    for o in &outs[1..] {
        assert_eq!(o.value, outs[0].value, "parties disagree");
    }
    outs.into_iter().next().unwrap().value
}

/// Run and return the value every party revealed, checking all parties agree.
pub fn reveal_all(n: usize, program: impl Fn(&Ctx) -> Result<PlainTensor> + Sync) -> PlainTensor {
    agree(n, program)
}

/// As `reveal_all`, with a session config of the caller's.
pub fn reveal_all_with(
    cfg: &SessionConfig,
    program: impl Fn(&Ctx) -> Result<PlainTensor> + Sync,
) -> PlainTensor {
    agree_with(cfg, program)
}

/// (rounds, 64-bit words sent) by party 0 for `op` alone on `x` shared by party 0 among `n`
/// parties: the counters are read around the call, so sharing the input is not counted.
pub fn op_cost(
    n: usize,
    x: &PlainTensor,
    op: impl Fn(&Ctx, &Share) -> Result<Share> + Sync,
) -> (u64, u64) {
    let outs = run(n, |ctx| {
        let xs = ctx.share_plain(0, Some(x), x.shape())?;
        let before = ctx.counters().snapshot();
        op(ctx, &xs)?;
        Ok(ctx.counters().snapshot().since(&before))
    });
    let s = &outs[0].value;
    (s.rounds, s.bytes_sent() / 8)
}

/// Quantize to the fixed-point grid exactly as the encoder does.
pub fn quantize(t: &PlainTensor) -> PlainTensor {
    let fp = FixedPoint::default();
    fp.decode_tensor(&fp.encode_tensor(t))
}

/// Assert |got - want| <= bound elementwise, with a message naming the worst element.
pub fn assert_close(
    got: &PlainTensor,
    want: &PlainTensor,
    bound: impl Fn(usize) -> f64,
    what: &str,
) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for i in 0..got.len() {
        let (g, w) = (got.data()[i], want.data()[i]);
        let b = bound(i);
        assert!(
            (g - w).abs() <= b,
            "{what}: element {i}: got {g}, want {w}, |diff| {} > bound {b}",
            (g - w).abs()
        );
    }
}

/// Every party's whole material for every request of `plan`, from its store.
pub fn taken_all(
    plan: &mpc_pipe::offline::Plan,
    material: Vec<mpc_pipe::offline::PartyMaterial>,
) -> Vec<Vec<Vec<Vec<u64>>>> {
    use mpc_pipe::offline::{MaterialSource, Part};
    let stores: Vec<_> = material
        .into_iter()
        .map(|m| m.into_store().unwrap())
        .collect();
    plan.entries
        .iter()
        .map(|(key, req)| {
            stores
                .iter()
                .map(|s| {
                    let whole = Part {
                        start: 0,
                        len: req.units(),
                    };
                    s.take(*key, req, whole)
                        .unwrap()
                        .into_iter()
                        .map(|w| w.to_vec())
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Every scheme's name as `--scheme` takes it: the four of the paper's kinds and two
/// combinations.
pub const SCHEMES: [&str; 6] = [
    "serial",
    "inter-linear",
    "inner-layer",
    "inter-batch",
    "inter-linear+inner-layer",
    "all",
];
