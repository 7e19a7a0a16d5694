//! Measurements behind `mpc-pipe kernels`: GEMM rates of each rung on a fixed shape list,
//! single-threaded and on all cores, next to the register-only bound of that rung and
//! matrixmultiply's f64 dgemm measured in the same run, and conv2d against the equivalent
//! GEMM on real layer shapes. Depends on kernels, rayon, matrixmultiply (f64 reference).
//!
//! Every rate is measured two ways: by wall clock (`gmacs`) and by the CPU time the process
//! actually got (`gmacs_cpu` = MACs × threads / CPU-seconds, the rate had each thread had
//! its core to itself). The machine is shared with other jobs, so ratios (to the bound, to
//! dgemm) are given from both, and each GEMM repetition is interleaved with a slice of the
//! bound loop so both see the same conditions. Each is the best of `reps` runs after
//! one warm-up. The scalar rung on a large shape
//! times a sub-block of rows (`measured_m`) so that it finishes in well under a second.

use std::time::{Duration, Instant};

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::{bound, conv2d_with, gemm_with, Isa, KernelSet, Mat, MatMut};
use crate::error::{Error, Result};
use crate::ring::RingTensor;

/// The GEMM shapes of the issue: (label, m, k, n).
pub const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("256x1024*1024x1024", 256, 1024, 1024),
    ("1024x1024*1024x1024", 1024, 1024, 1024),
    ("3136x576*576x64 (resnet conv)", 3136, 576, 64),
    ("128x768*768x3072 (bert ffn)", 128, 768, 3072),
];

/// Options of one report run.
#[derive(Clone, Debug)]
pub struct Opts {
    pub paths: Vec<Isa>,
    pub threads: Vec<usize>,
    pub reps: usize,
    /// Shapes to run (indices into SHAPES).
    pub shapes: Vec<usize>,
    /// Scalar rung: largest m·k·n timed in one run (a sub-block of rows beyond it).
    pub scalar_max_macs: usize,
    /// Longest slice of the bound loop run next to each GEMM repetition.
    pub bound_time: Duration,
}

/// One (shape, path, threads) measurement.
#[derive(Clone, Debug)]
pub struct GemmRow {
    pub shape: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub path: Isa,
    pub threads: usize,
    /// Rows actually timed (m unless the scalar rung timed a sub-block).
    pub measured_m: usize,
    pub gmacs: f64,
    pub gmacs_cpu: f64,
    pub bound_gmacs: f64,
    pub bound_gmacs_cpu: f64,
    pub dgemm_gmacs: f64,
    pub dgemm_gmacs_cpu: f64,
    /// Wall-clock rate over the same path's single-thread rate on this shape.
    pub speedup_vs_1t: f64,
    /// The same from CPU-time rates (parallel efficiency × threads).
    pub speedup_cpu_vs_1t: f64,
    /// Median over repetitions of (this GEMM run's CPU-time rate / the bound slice run just
    /// before it): each pair saw the same machine, so this is the least noise-sensitive
    /// estimate of the fraction of the bound.
    pub ratio_to_bound_paired: f64,
    /// Median over repetitions of (this run's wall rate / a 1-thread run of the same GEMM
    /// just before it): scaling without the drift of this VM's clock between the 1-thread
    /// and the n-thread rows (1 for 1-thread rows).
    pub speedup_paired: f64,
    /// The same pairing for the register-only bound loop: how far this machine's cores
    /// scale a pure multiply-add loop at that moment, the ceiling for `speedup_paired`.
    pub bound_speedup_paired: f64,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let h = v.len() / 2;
    if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    }
}

impl GemmRow {
    /// Fraction of the register-only bound (wall-clock rates).
    pub fn ratio_to_bound(&self) -> f64 {
        self.gmacs / self.bound_gmacs
    }
    /// The same from CPU-time rates (insensitive to time the OS gave to other jobs).
    pub fn ratio_to_bound_cpu(&self) -> f64 {
        self.gmacs_cpu / self.bound_gmacs_cpu
    }
    /// Rate over f64 dgemm's (wall-clock rates).
    pub fn ratio_to_dgemm(&self) -> f64 {
        self.gmacs / self.dgemm_gmacs
    }
    pub fn ratio_to_dgemm_cpu(&self) -> f64 {
        self.gmacs_cpu / self.dgemm_gmacs_cpu
    }
}

/// Best wall and best CPU time (seconds) of a repeated measurement.
#[derive(Clone, Copy, Debug)]
pub struct Best {
    pub wall: f64,
    pub cpu: f64,
}

impl Best {
    fn new() -> Self {
        Best {
            wall: f64::INFINITY,
            cpu: f64::INFINITY,
        }
    }
    /// Time one run of `f` and keep the minima.
    /// Time one run of `f`, keep the minima, and return this run's (wall, cpu) seconds.
    fn run(&mut self, f: impl FnOnce()) -> (f64, f64) {
        let (t, c) = (Instant::now(), bound::process_cpu_s());
        f();
        let (wall, cpu) = (t.elapsed().as_secs_f64(), bound::process_cpu_s() - c);
        self.cpu = self.cpu.min(cpu);
        self.wall = self.wall.min(wall);
        (wall, cpu)
    }
    /// (wall GMAC/s, CPU-time GMAC/s) for `macs` multiply-adds on `threads` threads.
    fn rates(&self, macs: usize, threads: usize) -> (f64, f64) {
        let macs = macs as f64 / 1e9;
        (macs / self.wall, macs * threads as f64 / self.cpu.max(1e-9))
    }
}

fn random(len: usize, seed: u64) -> Vec<u64> {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..len).map(|_| r.next_u64()).collect()
}

pub fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Config(format!("cannot build a {threads}-thread pool: {e}")))
}

/// f64 dgemm (matrixmultiply, single-threaded per call) on [m×k]·[k×n], split over row
/// blocks across the current pool's threads for the multi-threaded rate.
fn dgemm_rates(m: usize, k: usize, n: usize, reps: usize) -> (f64, f64) {
    let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 * 0.5).collect();
    let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 * 0.25).collect();
    let mut c = vec![0f64; m * n];
    let threads = rayon::current_num_threads();
    let rows = m.div_ceil(threads).max(1);
    let mut run = || {
        c.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * k))
            .for_each(|(cb, ab)| {
                let mb = ab.len() / k;
                // SAFETY: row-major buffers of exactly mb×k, k×n and mb×n.
                unsafe {
                    matrixmultiply::dgemm(
                        mb,
                        k,
                        n,
                        1.0,
                        ab.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        cb.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
    };
    run();
    let mut best = Best::new();
    for _ in 0..reps.max(1) {
        best.run(&mut run);
    }
    best.rates(m * k * n, threads)
}

/// Run the GEMM table; `progress` is called after each row (for streaming output).
pub fn gemm_table(o: &Opts, mut progress: impl FnMut(&GemmRow)) -> Result<Vec<GemmRow>> {
    let mut rows: Vec<GemmRow> = Vec::new();
    for &threads in &o.threads {
        let pool = pool(threads)?;
        // The 1-thread companion of the n-thread runs (paired scaling).
        let one_pool = if threads > 1 {
            Some(self::pool(1)?)
        } else {
            None
        };
        for &si in &o.shapes {
            let (label, m, k, n) = SHAPES[si];
            let (dgemm, dgemm_cpu) = pool.install(|| dgemm_rates(m, k, n, o.reps));
            for &isa in &o.paths {
                let ks = KernelSet::for_isa(isa)?;
                let measured_m = if isa == Isa::Scalar {
                    (o.scalar_max_macs / (k * n)).clamp(1, m)
                } else {
                    m
                };
                let a = random(measured_m * k, 1);
                let b = random(k * n, 2);
                let mut c = vec![0u64; measured_m * n];
                let mut gemm = || {
                    gemm_with(
                        ks,
                        Mat::row_major(&a, measured_m, k),
                        Mat::row_major(&b, k, n),
                        MatMut::row_major(&mut c, measured_m, n),
                        false,
                    )
                };
                let (mut bw, mut bc) = (0f64, 0f64);
                let mut best = Best::new();
                let mut pairs = Vec::new();
                let (mut scaling, mut bound_scaling) = (Vec::new(), Vec::new());
                let macs = (measured_m * k * n) as f64 / 1e9;
                pool.install(|| -> Result<()> {
                    let t = Instant::now();
                    gemm();
                    // Bound slices as long as one GEMM run, so that each pair sees the
                    // same share of the machine.
                    let slice = t.elapsed().clamp(Duration::from_millis(5), o.bound_time);
                    let iters = bound::calibrate(isa, slice)?;
                    for _ in 0..o.reps.max(1) {
                        let one = match &one_pool {
                            Some(p1) => Some(p1.install(|| -> Result<(f64, f64)> {
                                let (bw1, _) = bound::measure(isa, iters)?;
                                let t = Instant::now();
                                gemm();
                                Ok((bw1, macs / t.elapsed().as_secs_f64()))
                            })?),
                            None => None,
                        };
                        let (w, c) = bound::measure(isa, iters)?;
                        bw = bw.max(w);
                        bc = bc.max(c);
                        let (wall, cpu) = best.run(&mut gemm);
                        pairs.push(macs * threads as f64 / cpu / c);
                        if let Some((bw1, g1)) = one {
                            bound_scaling.push(w / bw1);
                            scaling.push(macs / wall / g1);
                        }
                    }
                    Ok(())
                })?;
                let (gmacs, gmacs_cpu) = best.rates(measured_m * k * n, threads);
                let one = rows
                    .iter()
                    .find(|r| r.shape == label && r.path == isa && r.threads == 1)
                    .map(|r| (r.gmacs, r.gmacs_cpu));
                let row = GemmRow {
                    shape: label.to_string(),
                    m,
                    k,
                    n,
                    path: isa,
                    threads,
                    measured_m,
                    gmacs,
                    gmacs_cpu,
                    bound_gmacs: bw,
                    bound_gmacs_cpu: bc,
                    dgemm_gmacs: dgemm,
                    dgemm_gmacs_cpu: dgemm_cpu,
                    speedup_vs_1t: one.map_or(1.0, |g| gmacs / g.0),
                    speedup_cpu_vs_1t: one.map_or(1.0, |g| gmacs_cpu / g.1),
                    ratio_to_bound_paired: median(&mut pairs),
                    speedup_paired: if threads > 1 {
                        median(&mut scaling)
                    } else {
                        1.0
                    },
                    bound_speedup_paired: if threads > 1 {
                        median(&mut bound_scaling)
                    } else {
                        1.0
                    },
                };
                progress(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// A conv layer of a real network: (label, C, H=W, O, K, stride, padding).
pub type ConvLayer = (&'static str, usize, usize, usize, usize, usize, usize);

pub const CONV_LAYERS: [ConvLayer; 11] = [
    ("resnet50 conv1 7x7/2", 3, 224, 64, 7, 2, 3),
    ("resnet50 conv2 3x3", 64, 56, 64, 3, 1, 1),
    ("resnet50 conv2 1x1 256->64", 256, 56, 64, 1, 1, 0),
    ("resnet50 conv3 3x3", 128, 28, 128, 3, 1, 1),
    ("resnet50 conv4 1x1/2 512->1024", 512, 28, 1024, 1, 2, 0),
    ("resnet50 conv5 3x3", 512, 7, 512, 3, 1, 1),
    ("vgg16 conv1_2 3x3", 64, 224, 64, 3, 1, 1),
    ("vgg16 conv3_2 3x3", 256, 56, 256, 3, 1, 1),
    ("vgg16 conv5_2 3x3", 512, 14, 512, 3, 1, 1),
    ("cifar resnet 3x3 16", 16, 32, 16, 3, 1, 1),
    ("cifar resnet 3x3 64", 64, 8, 64, 3, 1, 1),
];

/// conv2d (batch 1) against the GEMM of the same size, [O × C·K·K]·[C·K·K × OH·OW] on
/// materialised operands.
#[derive(Clone, Debug)]
pub struct ConvRow {
    pub layer: &'static str,
    pub path: Isa,
    pub threads: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Best wall-clock times.
    pub conv_ms: f64,
    pub gemm_ms: f64,
    /// Best process CPU times (robust to other jobs on a shared machine).
    pub conv_cpu_ms: f64,
    pub gemm_cpu_ms: f64,
}

impl ConvRow {
    /// conv time over GEMM time (CPU-time based).
    pub fn ratio(&self) -> f64 {
        self.conv_cpu_ms / self.gemm_cpu_ms
    }
    pub fn ratio_wall(&self) -> f64 {
        self.conv_ms / self.gemm_ms
    }
}

pub fn conv_table(
    layers: &[ConvLayer],
    isa: Isa,
    threads: usize,
    reps: usize,
    mut progress: impl FnMut(&ConvRow),
) -> Result<Vec<ConvRow>> {
    let ks = KernelSet::for_isa(isa)?;
    let pool = pool(threads)?;
    let mut rows = Vec::new();
    for &(layer, c, hw, o, kk, stride, padding) in layers {
        let x = RingTensor::from_vec(&[1, c, hw, hw], random(c * hw * hw, 3));
        let w = RingTensor::from_vec(&[o, c, kk, kk], random(o * c * kk * kk, 4));
        let ohw = super::conv_out(hw, kk, stride, padding);
        let (m, k, n) = (o, c * kk * kk, ohw * ohw);
        let b = random(k * n, 5);
        let (mut conv, mut gemm) = (Best::new(), Best::new());
        pool.install(|| {
            let run_conv = || {
                std::hint::black_box(conv2d_with(ks, &x, &w, stride, padding));
            };
            let run_gemm = || {
                // Allocate the output as conv2d does, so both sides pay the same.
                let mut c = vec![0u64; m * n];
                gemm_with(
                    ks,
                    Mat::row_major(w.data(), m, k),
                    Mat::row_major(&b, k, n),
                    MatMut::row_major(&mut c, m, n),
                    false,
                );
                std::hint::black_box(c);
            };
            run_conv();
            run_gemm();
            // Interleaved so both see the same machine load.
            for _ in 0..reps.max(1) {
                conv.run(run_conv);
                gemm.run(run_gemm);
            }
        });
        let row = ConvRow {
            layer,
            path: isa,
            threads,
            m,
            k,
            n,
            conv_ms: conv.wall * 1e3,
            gemm_ms: gemm.wall * 1e3,
            conv_cpu_ms: conv.cpu * 1e3,
            gemm_cpu_ms: gemm.cpu * 1e3,
        };
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// Elementwise slice ops of one rung: (op, elements, GElem/s by CPU time).
#[derive(Clone, Debug)]
pub struct EwRow {
    pub op: &'static str,
    pub path: Isa,
    pub len: usize,
    pub gelems: f64,
}

/// GElem/s of each elementwise op of `isa` on slices of `len` (single thread).
pub fn elementwise_table(isa: Isa, len: usize, reps: usize) -> Result<Vec<EwRow>> {
    let ks = KernelSet::for_isa(isa)?;
    let (a, b) = (random(len, 6), random(len, 7));
    let mut out = vec![0u64; len];
    let e = &ks.ew;
    type Op<'a> = (&'static str, &'a dyn Fn(&mut [u64]));
    let ops: [Op; 7] = [
        ("add", &|o| (e.add)(o, &a, &b)),
        ("sub", &|o| (e.sub)(o, &a, &b)),
        ("mul", &|o| (e.mul)(o, &a, &b)),
        ("xor", &|o| (e.xor)(o, &a, &b)),
        ("scale", &|o| (e.scale)(o, &a, 0x1_0001)),
        ("shl", &|o| (e.shl)(o, &a, 16)),
        ("shr_arith", &|o| (e.shr_arith)(o, &a, 16)),
    ];
    // Enough passes per timing that a run is ~1 ms or more.
    let passes = (1 << 22) / len.max(1) + 1;
    Ok(ops
        .iter()
        .map(|&(op, f)| {
            let mut best = Best::new();
            f(&mut out);
            for _ in 0..reps.max(1) {
                best.run(|| {
                    for _ in 0..passes {
                        f(std::hint::black_box(&mut out));
                    }
                });
            }
            EwRow {
                op,
                path: isa,
                len,
                gelems: best.rates(len * passes, 1).1,
            }
        })
        .collect())
}
