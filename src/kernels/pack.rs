//! Panel packing for the GEMM driver: A into MR-high slivers, B into NR-wide slivers, both
//! k-major and zero-padded to a full tile so the microkernel never branches on edges.
//! B comes through the `BSource` trait so that conv2d can pack straight from the input
//! tensor (implicit im2col) instead of materialising the column matrix. Depends on
//! kernels::driver (Mat) only.

use super::driver::Mat;

/// Pack rows i0..i0+mr (clipped to A, zero beyond) of columns p0..p0+kc of A:
/// `dst[p*mr + r] = A[i0 + r, p0 + p]`.
pub(crate) fn pack_a(a: Mat<'_>, i0: usize, mr: usize, p0: usize, kc: usize, dst: &mut [u64]) {
    let rows = mr.min(a.rows.saturating_sub(i0));
    let dst = &mut dst[..kc * mr];
    if rows < mr {
        dst.fill(0);
    }
    let d = a.data;
    if a.cs == 1 {
        // Row-major A: each row is a contiguous run of kc values.
        for r in 0..rows {
            let base = ((i0 + r) as isize * a.rs + p0 as isize) as usize;
            for (p, &v) in d[base..base + kc].iter().enumerate() {
                dst[p * mr + r] = v;
            }
        }
    } else if a.rs == 1 && rows == mr {
        // Column-major A (e.g. Aᵀ of a row-major matrix): each k step is a contiguous run.
        for p in 0..kc {
            let base = (i0 as isize + (p0 + p) as isize * a.cs) as usize;
            dst[p * mr..(p + 1) * mr].copy_from_slice(&d[base..base + mr]);
        }
    } else {
        for r in 0..rows {
            for p in 0..kc {
                let off = (i0 + r) as isize * a.rs + (p0 + p) as isize * a.cs;
                dst[p * mr + r] = d[off as usize];
            }
        }
    }
}

/// Where the B operand of a GEMM comes from.
pub(crate) trait BSource: Sync {
    /// Pack B[p0..p0+kc, j0..j0+nr] (columns past the end are zero) as, for each p,
    /// nr values, followed when `swap` is set by the same nr values with their 32-bit
    /// halves exchanged. `dst` has room for kc·nr·(1+swap) values.
    fn pack(&self, p0: usize, kc: usize, j0: usize, nr: usize, swap: bool, dst: &mut [u64]);

    /// Pack consecutive slivers covering columns j0..j0+ncols (the last one zero-padded)
    /// into `dst`, sliver after sliver, each laid out as `pack` does. A source with per-row
    /// setup cost (im2col) overrides this to pay it once per row instead of once per sliver.
    #[allow(clippy::too_many_arguments)]
    fn pack_panel(
        &self,
        p0: usize,
        kc: usize,
        j0: usize,
        ncols: usize,
        nr: usize,
        swap: bool,
        dst: &mut [u64],
    ) {
        let w = if swap { 2 * nr } else { nr };
        for (s, d) in dst.chunks_mut(kc * w).take(ncols.div_ceil(nr)).enumerate() {
            self.pack(p0, kc, j0 + s * nr, nr, swap, d);
        }
    }
}

/// Mirror the first nr values of each k step into the second half with halves swapped.
#[inline]
pub(crate) fn fill_swapped(kc: usize, nr: usize, dst: &mut [u64]) {
    for p in 0..kc {
        let (lo, hi) = dst[p * 2 * nr..(p + 1) * 2 * nr].split_at_mut(nr);
        for (h, &l) in hi.iter_mut().zip(lo.iter()) {
            *h = l.rotate_left(32);
        }
    }
}

/// A plain strided matrix as B.
pub(crate) struct StridedB<'a>(pub Mat<'a>);

impl BSource for StridedB<'_> {
    fn pack(&self, p0: usize, kc: usize, j0: usize, nr: usize, swap: bool, dst: &mut [u64]) {
        let b = self.0;
        let w = if swap { 2 * nr } else { nr };
        let cols = nr.min(b.cols.saturating_sub(j0));
        let dst = &mut dst[..kc * w];
        if cols < nr {
            dst.fill(0);
        }
        let d = b.data;
        if b.cs == 1 {
            for p in 0..kc {
                let base = ((p0 + p) as isize * b.rs + j0 as isize) as usize;
                dst[p * w..p * w + cols].copy_from_slice(&d[base..base + cols]);
            }
        } else if b.rs == 1 {
            // Column-major B (e.g. Bᵀ of a row-major matrix): walk each column contiguously.
            for j in 0..cols {
                let base = (p0 as isize + (j0 + j) as isize * b.cs) as usize;
                for (p, &v) in d[base..base + kc].iter().enumerate() {
                    dst[p * w + j] = v;
                }
            }
        } else {
            for p in 0..kc {
                for j in 0..cols {
                    let off = (p0 + p) as isize * b.rs + (j0 + j) as isize * b.cs;
                    dst[p * w + j] = d[off as usize];
                }
            }
        }
        if swap {
            fill_swapped(kc, nr, dst);
        }
    }

    fn pack_panel(
        &self,
        p0: usize,
        kc: usize,
        j0: usize,
        ncols: usize,
        nr: usize,
        swap: bool,
        dst: &mut [u64],
    ) {
        let b = self.0;
        if b.cs != 1 {
            // Columns are not contiguous: sliver by sliver is as good as anything.
            let w = if swap { 2 * nr } else { nr };
            for (s, d) in dst.chunks_mut(kc * w).take(ncols.div_ceil(nr)).enumerate() {
                self.pack(p0, kc, j0 + s * nr, nr, swap, d);
            }
            return;
        }
        // Row-major B: walk each row of the panel once, left to right, and deal its runs
        // out to the slivers. Reading whole row segments keeps each B row's page and lines
        // hot, where sliver-by-sliver packing revisits every row (one page each for a wide
        // B) once per sliver.
        let cols = ncols.min(b.cols.saturating_sub(j0));
        let w = if swap { 2 * nr } else { nr };
        let slivers = ncols.div_ceil(nr);
        let sl = kc * w;
        let dst = &mut dst[..slivers * sl];
        if cols < slivers * nr {
            dst[(slivers - 1) * sl..].fill(0);
        }
        for p in 0..kc {
            let base = ((p0 + p) as isize * b.rs + j0 as isize) as usize;
            let row = &b.data[base..base + cols];
            for (s, run) in row.chunks(nr).enumerate() {
                dst[s * sl + p * w..s * sl + p * w + run.len()].copy_from_slice(run);
            }
        }
        if swap {
            for d in dst.chunks_mut(sl) {
                fill_swapped(kc, nr, d);
            }
        }
    }
}
