//! Portable blocked microkernel in plain u64 arithmetic: the `scalar` rung of the ladder,
//! runnable on any CPU. Shares the packing and driver with the SIMD rungs, so it is also
//! what their tests fall back on when a CPU lacks a feature. Depends on kernels::driver.

use super::driver::MicroKernel;

pub(crate) const MR: usize = 4;
pub(crate) const NR: usize = 4;

pub(crate) struct Portable;

impl MicroKernel for Portable {
    const MR: usize = MR;
    const NR: usize = NR;
    const B_SWAP: bool = false;
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
        let b = std::slice::from_raw_parts(b, kc * NR);
        let mut ab = [[0u64; NR]; MR];
        for (p, bp) in b.chunks_exact(NR).enumerate() {
            let ap: [u64; MR] = if rs_a == 0 {
                std::array::from_fn(|i| *a.add(p * MR + i))
            } else {
                std::array::from_fn(|i| *a.offset(i as isize * rs_a + p as isize))
            };
            for i in 0..MR {
                for j in 0..NR {
                    ab[i][j] = ab[i][j].wrapping_add(ap[i].wrapping_mul(bp[j]));
                }
            }
        }
        for (i, row) in ab.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let d = c.offset(i as isize * rs_c + j as isize * cs_c);
                *d = if accumulate { (*d).wrapping_add(v) } else { v };
            }
        }
    }
}
