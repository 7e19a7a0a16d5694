//! Register-only throughput bounds: tight loops of the multiply-accumulate sequence each
//! GEMM rung is built from, with no loads or stores, measured in the same run as the
//! kernels so that "fraction of the bound" is a same-conditions ratio. Written in inline asm
//! so the compiler cannot hoist the loop-invariant products. Depends on std::arch, rayon.
//!
//! - avx512: 16 independent `vpmullq` + `vpaddq` on zmm per iteration (8 MACs each).
//! - avx2: 12 × (`vpmuludq` + `vpaddq` + `vpmulld` + `vpaddd`) on ymm, exactly the AVX2
//!   microkernel's sequence per 4 MACs (see avx2.rs).
//! - scalar: 8 `imul` + `add` on 64-bit registers (6 accumulators, latency hidden).

use std::time::{Duration, Instant};

use super::Isa;
use crate::error::Result;

/// Multiply-accumulates per loop iteration of each bound loop.
fn macs_per_iter(isa: Isa) -> u64 {
    match isa {
        Isa::Avx512 => 16 * 8,
        Isa::Avx2 => 12 * 4,
        Isa::Scalar => 8,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn loop_avx512(iters: u64) {
    std::arch::asm!(
            "2:",
            "vpmullq zmm16, zmm24, zmm28",
            "vpaddq zmm0, zmm0, zmm16",
            "vpmullq zmm17, zmm25, zmm28",
            "vpaddq zmm1, zmm1, zmm17",
            "vpmullq zmm18, zmm26, zmm28",
            "vpaddq zmm2, zmm2, zmm18",
            "vpmullq zmm19, zmm27, zmm28",
            "vpaddq zmm3, zmm3, zmm19",
            "vpmullq zmm20, zmm24, zmm28",
            "vpaddq zmm4, zmm4, zmm20",
            "vpmullq zmm21, zmm25, zmm28",
            "vpaddq zmm5, zmm5, zmm21",
            "vpmullq zmm22, zmm26, zmm28",
            "vpaddq zmm6, zmm6, zmm22",
            "vpmullq zmm23, zmm27, zmm28",
            "vpaddq zmm7, zmm7, zmm23",
            "vpmullq zmm16, zmm24, zmm28",
            "vpaddq zmm8, zmm8, zmm16",
            "vpmullq zmm17, zmm25, zmm28",
            "vpaddq zmm9, zmm9, zmm17",
            "vpmullq zmm18, zmm26, zmm28",
            "vpaddq zmm10, zmm10, zmm18",
            "vpmullq zmm19, zmm27, zmm28",
            "vpaddq zmm11, zmm11, zmm19",
            "vpmullq zmm20, zmm24, zmm28",
            "vpaddq zmm12, zmm12, zmm20",
            "vpmullq zmm21, zmm25, zmm28",
            "vpaddq zmm13, zmm13, zmm21",
            "vpmullq zmm22, zmm26, zmm28",
            "vpaddq zmm14, zmm14, zmm22",
            "vpmullq zmm23, zmm27, zmm28",
            "vpaddq zmm15, zmm15, zmm23",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _, out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _,
            options(nostack, nomem),
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn loop_avx2(iters: u64) {
    std::arch::asm!(
            "2:",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm0, ymm0, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm1, ymm1, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm2, ymm2, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm3, ymm3, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm4, ymm4, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm5, ymm5, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm6, ymm6, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm7, ymm7, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm8, ymm8, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm9, ymm9, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm10, ymm10, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm11, ymm11, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm0, ymm0, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm1, ymm1, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm2, ymm2, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm3, ymm3, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm4, ymm4, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm5, ymm5, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm6, ymm6, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm7, ymm7, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm8, ymm8, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm9, ymm9, ymm15",
            "vpmuludq ymm15, ymm12, ymm13",
            "vpaddq ymm10, ymm10, ymm15",
            "vpmulld ymm15, ymm12, ymm14",
            "vpaddd ymm11, ymm11, ymm15",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _, out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack, nomem),
    );
}

#[cfg(target_arch = "x86_64")]
fn loop_scalar(iters: u64) {
    // SAFETY: register-only arithmetic on operands owned by this asm block.
    unsafe {
        std::arch::asm!(
            "2:",
            "imul {t0}, {x}, 0x7F4A7C15",
            "add {a0}, {t0}",
            "imul {t1}, {x}, 0x7F4A7C15",
            "add {a1}, {t1}",
            "imul {t2}, {x}, 0x7F4A7C15",
            "add {a2}, {t2}",
            "imul {t3}, {x}, 0x7F4A7C15",
            "add {a3}, {t3}",
            "imul {t0}, {x}, 0x7F4A7C15",
            "add {a4}, {t0}",
            "imul {t1}, {x}, 0x7F4A7C15",
            "add {a5}, {t1}",
            "imul {t2}, {x}, 0x7F4A7C15",
            "add {a0}, {t2}",
            "imul {t3}, {x}, 0x7F4A7C15",
            "add {a1}, {t3}",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            x = in(reg) 0x9E37_79B9_7F4A_7C15u64,
            t0 = out(reg) _, t1 = out(reg) _, t2 = out(reg) _, t3 = out(reg) _,
            a0 = inout(reg) 0u64 => _, a1 = inout(reg) 0u64 => _, a2 = inout(reg) 0u64 => _, a3 = inout(reg) 0u64 => _, a4 = inout(reg) 0u64 => _, a5 = inout(reg) 0u64 => _,
            options(nostack, nomem),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn loop_scalar(iters: u64) {
    let mut acc = [0u64; 8];
    for _ in 0..iters {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = a.wrapping_add(std::hint::black_box(i as u64 | 1).wrapping_mul(0x9E37_79B9));
        }
    }
    std::hint::black_box(acc);
}

fn run_loop(isa: Isa, iters: u64) {
    match isa {
        Isa::Scalar => loop_scalar(iters),
        // SAFETY: `measure` refuses rungs the CPU lacks before calling this.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { loop_avx2(iters) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { loop_avx512(iters) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!(),
    }
}

/// Iterations of the `isa` bound loop that take about `dur` on one thread.
pub fn calibrate(isa: Isa, dur: Duration) -> Result<u64> {
    super::KernelSet::for_isa(isa)?;
    let mut iters = 1u64 << 10;
    loop {
        let t = Instant::now();
        run_loop(isa, iters);
        let e = t.elapsed();
        if e >= dur || iters >= 1 << 40 {
            return Ok(iters);
        }
        // Grow toward the target in one or two steps.
        let f = (dur.as_secs_f64() / e.as_secs_f64().max(1e-6)).clamp(2.0, 64.0);
        iters = (iters as f64 * f) as u64;
    }
}

/// Run `iters` iterations of the `isa` bound loop on every thread of the current rayon pool
/// at once; returns (GMAC/s by wall clock, GMAC/s by each thread's CPU time), summed over
/// threads. The CPU-time rate ignores time the OS gave to other processes.
pub fn measure(isa: Isa, iters: u64) -> Result<(f64, f64)> {
    super::KernelSet::for_isa(isa)?;
    let macs = (iters * macs_per_iter(isa)) as f64;
    let rates = rayon::broadcast(|_| {
        let (t, c) = (Instant::now(), thread_cpu_s());
        run_loop(isa, iters);
        let (wall, cpu) = (t.elapsed().as_secs_f64(), thread_cpu_s() - c);
        (macs / wall / 1e9, macs / cpu.max(1e-9) / 1e9)
    });
    Ok(rates
        .iter()
        .fold((0.0, 0.0), |(w, c), r| (w + r.0, c + r.1)))
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn cpu_clock_s(clock: i32) -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux).
    let rc = unsafe { clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return wall_s();
    }
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn cpu_clock_s(_clock: i32) -> f64 {
    wall_s()
}

fn wall_s() -> f64 {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// CPU time of the calling thread in seconds (Linux; wall clock elsewhere).
pub fn thread_cpu_s() -> f64 {
    cpu_clock_s(3) // CLOCK_THREAD_CPUTIME_ID
}

/// CPU time of the whole process (all threads) in seconds (Linux; wall clock elsewhere).
pub fn process_cpu_s() -> f64 {
    cpu_clock_s(2) // CLOCK_PROCESS_CPUTIME_ID
}
