//! AVX-512 microkernel: the 64-bit low product is native (`vpmullq`, AVX512DQ), so a k step
//! of the 8×16 tile is 2 loads of B, 8 broadcasts of A and 16 vpmullq + 16 vpaddq into 16
//! zmm accumulators. vpmullq (3 uops, ~1.5 cycles per zmm) is the bottleneck; the tile
//! keeps enough independent products in flight to cover its ~15-cycle latency.
//! Only reachable through a KernelSet built after detecting avx512f+avx512dq.
//! Depends on kernels::driver, std::arch.

use std::arch::x86_64::*;

use super::driver::MicroKernel;

pub(crate) const MR: usize = 8;
pub(crate) const NR: usize = 16;

pub(crate) struct Avx512;

impl MicroKernel for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;
    const B_SWAP: bool = false;
    // B sliver 256·16·8 = 32 KiB plus A sliver 16 KiB: the 48 KiB L1d of this CPU.
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
        gemm_u64_avx512(kc, a, rs_a, b, c, rs_c, cs_c, accumulate)
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn gemm_u64_avx512(
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

#[inline(always)]
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
    let mut ab = [[_mm512_setzero_si512(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm512_loadu_epi64(b as *const i64);
        let b1 = _mm512_loadu_epi64(b.add(8) as *const i64);
        for (i, abi) in ab.iter_mut().enumerate() {
            let ai = _mm512_set1_epi64(a_at::<PACKED>(a, rs_a, i) as i64);
            abi[0] = _mm512_add_epi64(abi[0], _mm512_mullo_epi64(ai, b0));
            abi[1] = _mm512_add_epi64(abi[1], _mm512_mullo_epi64(ai, b1));
        }
        a = a.add(if PACKED { MR } else { 1 });
        b = b.add(NR);
    }
    if cs_c == 1 {
        for (i, abi) in ab.iter().enumerate() {
            let row = c.offset(i as isize * rs_c);
            for (h, &v) in abi.iter().enumerate() {
                let p = row.add(8 * h) as *mut i64;
                let v = if accumulate {
                    _mm512_add_epi64(_mm512_loadu_epi64(p), v)
                } else {
                    v
                };
                _mm512_storeu_epi64(p, v);
            }
        }
    } else {
        let mut t = [0u64; MR * NR];
        for (i, abi) in ab.iter().enumerate() {
            for (h, &v) in abi.iter().enumerate() {
                _mm512_storeu_epi64(t.as_mut_ptr().add(i * NR + 8 * h) as *mut i64, v);
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                let d = c.offset(i as isize * rs_c + j as isize * cs_c);
                let v = t[i * NR + j];
                *d = if accumulate { (*d).wrapping_add(v) } else { v };
            }
        }
    }
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
