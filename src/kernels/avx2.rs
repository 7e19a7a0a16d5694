//! AVX2 microkernel. AVX2 has no 64-bit low multiply, so it is built from 32-bit products.
//! Write a = a_h·2^32 + a_l, b = b_h·2^32 + b_l; then mod 2^64
//!   a·b = a_l·b_l + ((a_h·b_l + a_l·b_h) mod 2^32)·2^32.
//! `vpmuludq` gives the full 64-bit a_l·b_l. For the cross terms, `vpmulld` of a against b
//! with its 32-bit halves swapped (b' = b_l·2^32 + b_h, prepared once when packing B) gives
//! in the two 32-bit lanes of each qword a_l·b_h and a_h·b_l, each mod 2^32. Because only
//! the sum of those two mod 2^32 matters, the kernel accumulates them lane-wise with
//! `vpaddd` over the whole k loop and combines once at the end:
//!   C = Σ a_l·b_l + ((lane0 + lane1) mod 2^32)·2^32.
//! Per 4 products: vpmuludq + vpmulld + vpaddq + vpaddd, no shifts or masks in the loop
//! (the variant that measured fastest on this CPU). Only reachable through a KernelSet
//! built after detecting avx2. Depends on kernels::driver, std::arch.

use std::arch::x86_64::*;

use super::driver::MicroKernel;

pub(crate) const MR: usize = 6;
pub(crate) const NR: usize = 4;

pub(crate) struct Avx2;

impl MicroKernel for Avx2 {
    const MR: usize = MR;
    const NR: usize = NR;
    const B_SWAP: bool = true;
    const KC: usize = 256;

    unsafe fn kernel(
        kc: usize,
        a: *const u64,
        rs_a: isize,
        b: *const u64,
        c: *mut u64,
        rs_c: isize,
        cs_c: isize,
        accumulate: bool,
    ) {
        gemm_u64_avx2(kc, a, rs_a, b, c, rs_c, cs_c, accumulate)
    }

    unsafe fn kernel_rows(
        rows: usize,
        kc: usize,
        a: *const u64,
        rs_a: isize,
        b: *const u64,
        c: *mut u64,
        rs_c: isize,
        cs_c: isize,
        accumulate: bool,
    ) -> bool {
        let f = match rows {
            1 => rows_body::<1>,
            2 => rows_body::<2>,
            3 => rows_body::<3>,
            4 => rows_body::<4>,
            5 => rows_body::<5>,
            _ => return false,
        };
        f(kc, a, rs_a, b, c, rs_c, cs_c, accumulate);
        true
    }
}

/// The first R < MR rows of a tile, from intrinsics: a ragged last sliver is a small share
/// of any product, so this does not need the asm loop's scheduling, only to skip the rows
/// that do not exist (m = 128 wasted 3% of the work on them).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_body<const R: usize>(
    kc: usize,
    a: *const u64,
    rs_a: isize,
    b: *const u64,
    c: *mut u64,
    rs_c: isize,
    cs_c: isize,
    accumulate: bool,
) {
    let mut lo = [_mm256_setzero_si256(); R];
    let mut cross = [_mm256_setzero_si256(); R];
    for p in 0..kc {
        step(&mut lo, &mut cross, b.add(p * 2 * NR), |i| {
            if rs_a == 0 {
                *a.add(p * MR + i)
            } else {
                *a.offset(i as isize * rs_a + p as isize)
            }
        });
    }
    store(&lo, &cross, c, rs_c, cs_c, accumulate);
}

/// One k step of the tile's rows in intrinsics: B's plain and half-swapped vectors at `b`,
/// A's value of row i from `a_of(i)`.
#[inline(always)]
unsafe fn step(
    lo: &mut [__m256i],
    cross: &mut [__m256i],
    b: *const u64,
    a_of: impl Fn(usize) -> u64,
) {
    let bv = _mm256_loadu_si256(b as *const __m256i);
    let bs = _mm256_loadu_si256(b.add(NR) as *const __m256i);
    for (i, (lo, cross)) in lo.iter_mut().zip(cross.iter_mut()).enumerate() {
        let ai = _mm256_set1_epi64x(a_of(i) as i64);
        *lo = _mm256_add_epi64(*lo, _mm256_mul_epu32(ai, bv));
        *cross = _mm256_add_epi32(*cross, _mm256_mullo_epi32(ai, bs));
    }
}

/// Write (or add) the tile's rows, NR values each, at `c` with strides (rs_c, cs_c).
#[inline(always)]
unsafe fn store(
    lo: &[__m256i],
    cross: &[__m256i],
    c: *mut u64,
    rs_c: isize,
    cs_c: isize,
    accumulate: bool,
) {
    for (i, (&lo, &cross)) in lo.iter().zip(cross).enumerate() {
        let v = combine(lo, cross);
        let row = c.offset(i as isize * rs_c);
        if cs_c == 1 {
            let p = row as *mut __m256i;
            let v = if accumulate {
                _mm256_add_epi64(_mm256_loadu_si256(p), v)
            } else {
                v
            };
            _mm256_storeu_si256(p, v);
        } else {
            let mut t = [0u64; NR];
            _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, v);
            for (j, &v) in t.iter().enumerate() {
                let d = row.offset(j as isize * cs_c);
                *d = if accumulate { (*d).wrapping_add(v) } else { v };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn gemm_u64_avx2(
    kc: usize,
    a: *const u64,
    rs_a: isize,
    b: *const u64,
    c: *mut u64,
    rs_c: isize,
    cs_c: isize,
    accumulate: bool,
) {
    // Two instantiations: packed A, and A read in place from rows rs_a apart.
    if rs_a == 0 {
        body::<true>(kc, a, rs_a, b, c, rs_c, cs_c, accumulate)
    } else {
        body::<false>(kc, a, rs_a, b, c, rs_c, cs_c, accumulate)
    }
}

/// Combine the two accumulators of one output vector: lo + ((lane0 + lane1) << 32).
#[inline(always)]
pub(crate) unsafe fn combine(lo: __m256i, cross: __m256i) -> __m256i {
    // (lane1 << 32 | lane0) + (lane0 << 32): the high half becomes lane0 + lane1 mod 2^32,
    // the low half keeps lane0, which the mask then drops.
    let sum = _mm256_add_epi64(cross, _mm256_slli_epi64::<32>(cross));
    let hi = _mm256_and_si256(sum, _mm256_set1_epi64x(0xFFFF_FFFF_0000_0000u64 as i64));
    _mm256_add_epi64(lo, hi)
}

/// One k step of the 6×4 tile: load the plain and the half-swapped B vectors at byte
/// offsets `$b`, `$bs` from {b}, then for each row broadcast A from its address and
/// accumulate its product halves (lo in ymm0/2/../10, cross terms in ymm1/3/../11).
macro_rules! k_step {
    ($b:literal, $bs:literal, $a0:literal, $a1:literal, $a2:literal, $a3:literal, $a4:literal, $a5:literal) => {
        concat!(
            "vmovdqu ymm12, ymmword ptr [{b} + ", $b, "]\n",
            "vmovdqu ymm13, ymmword ptr [{b} + ", $bs, "]\n",
            k_step!(@row $a0, "0", "1"),
            k_step!(@row $a1, "2", "3"),
            k_step!(@row $a2, "4", "5"),
            k_step!(@row $a3, "6", "7"),
            k_step!(@row $a4, "8", "9"),
            k_step!(@row $a5, "10", "11"),
        )
    };
    (@row $a:literal, $lo:literal, $cross:literal) => {
        concat!(
            "vpbroadcastq ymm14, qword ptr [", $a, "]\n",
            "vpmuludq ymm15, ymm14, ymm12\n",
            "vpaddq ymm", $lo, ", ymm", $lo, ", ymm15\n",
            "vpmulld ymm14, ymm14, ymm13\n",
            "vpaddd ymm", $cross, ", ymm", $cross, ", ymm14\n",
        )
    };
}

/// The loop over pairs of k steps, with the 12 accumulators pinned to ymm0..ymm11;
/// `$advance` moves any A pointer, the address operands follow the `;`.
macro_rules! k_loop {
    ($lo:ident, $cross:ident; $step0:expr, $step1:expr, $advance:literal; $($ops:tt)*) => {
        std::arch::asm!(
            "2:",
            $step0,
            $step1,
            $advance,
            "add {b}, 128",
            "add {p}, 2",
            "cmp {p}, {end}",
            "jb 2b",
            $($ops)*
            inout("ymm0") $lo[0], inout("ymm2") $lo[1], inout("ymm4") $lo[2],
            inout("ymm6") $lo[3], inout("ymm8") $lo[4], inout("ymm10") $lo[5],
            inout("ymm1") $cross[0], inout("ymm3") $cross[1], inout("ymm5") $cross[2],
            inout("ymm7") $cross[3], inout("ymm9") $cross[4], inout("ymm11") $cross[5],
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack, readonly),
        )
    };
}

/// Two k steps of the 6×4 tile per loop trip, in asm so that every row's broadcast is one
/// base+index load: compiled from intrinsics, LLVM rebuilds the row addresses through a chain
/// of lea/add each step, and those scalar uops compete with the multiplies for ports 0/1/5
/// (the intrinsic version measured ~72% of the register-only bound, this one more; see
/// `mpc-pipe kernels --paths avx2`). Accumulators stay in ymm0..ymm11 for the whole slab.
#[inline]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn body<const PACKED: bool>(
    kc: usize,
    a: *const u64,
    rs_a: isize,
    b: *const u64,
    c: *mut u64,
    rs_c: isize,
    cs_c: isize,
    accumulate: bool,
) {
    let mut lo = [_mm256_setzero_si256(); MR];
    let mut cross = [_mm256_setzero_si256(); MR];
    let pairs = kc & !1;
    let (mut a, mut b) = (a, b);
    if pairs > 0 {
        if PACKED {
            // Packed A: the k step's MR values are contiguous, and A advances by 2·MR.
            k_loop!(lo, cross;
                k_step!("0", "32", "{a0}", "{a0} + 8", "{a0} + 16", "{a0} + 24", "{a0} + 32", "{a0} + 40"),
                k_step!("64", "96", "{a0} + 48", "{a0} + 56", "{a0} + 64", "{a0} + 72", "{a0} + 80", "{a0} + 88"),
                "add {a0}, 96";
                a0 = inout(reg) a, b = inout(reg) b, p = inout(reg) 0usize => _, end = in(reg) pairs,
            );
        } else {
            // A in place: one base per row, and the step index {p} selects the column.
            let r = |i: isize| a.offset(i * rs_a);
            k_loop!(lo, cross;
                k_step!("0", "32", "{a0} + {p}*8", "{a1} + {p}*8", "{a2} + {p}*8",
                        "{a3} + {p}*8", "{a4} + {p}*8", "{a5} + {p}*8"),
                k_step!("64", "96", "{a0} + {p}*8 + 8", "{a1} + {p}*8 + 8", "{a2} + {p}*8 + 8",
                        "{a3} + {p}*8 + 8", "{a4} + {p}*8 + 8", "{a5} + {p}*8 + 8"),
                "";
                a0 = in(reg) r(0), a1 = in(reg) r(1), a2 = in(reg) r(2),
                a3 = in(reg) r(3), a4 = in(reg) r(4), a5 = in(reg) r(5),
                b = inout(reg) b, p = inout(reg) 0usize => _, end = in(reg) pairs,
            );
            a = a.add(pairs);
        }
    }
    if kc > pairs {
        // The odd last step.
        step(&mut lo, &mut cross, b, |i| a_at::<PACKED>(a, rs_a, i));
    }
    store(&lo, &cross, c, rs_c, cs_c, accumulate);
}

/// A[i] of the current k step: packed (`a[i]`, the step advances by MR) or in place (row i
/// at `a + i·rs_a`, the step advances by 1).
#[inline(always)]
unsafe fn a_at<const PACKED: bool>(a: *const u64, rs_a: isize, i: usize) -> u64 {
    if PACKED {
        *a.add(i)
    } else {
        *a.offset(i as isize * rs_a)
    }
}
