//! Panel packing for the GEMM driver: A into MR-high slivers, B into NR-wide slivers, both
//! k-major and zero-padded to a full tile so the microkernel never branches on edges.
//! B comes through the `BSource` trait so that conv2d can pack straight from the input
//! tensor (implicit im2col) instead of materialising the column matrix. Depends on
//! kernels::driver (Mat) only.

use super::driver::Mat;

/// Pack rows i0..i0+mr (clipped to A, zero beyond) of columns p0..p0+kc of A:
/// `dst[p*mr + r] = A[i0 + r, p0 + p]`. That is the mr-wide B sliver of Aᵀ at column i0
/// (without the swapped copy), so A is packed as that.
pub(crate) fn pack_a(a: Mat<'_>, i0: usize, mr: usize, p0: usize, kc: usize, dst: &mut [u64]) {
    StridedB(a.t()).pack(p0, kc, i0, mr, false, dst);
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
        pack_slivers(self, p0, kc, j0, ncols, nr, swap, dst);
    }

    /// Whether packing costs a gather per element (im2col) rather than a strided copy.
    /// The driver then packs B once for all row blocks instead of once per row block.
    fn gathers(&self) -> bool {
        false
    }
}

/// `pack_panel` as one `pack` per sliver: the trait's default, and what a source that
/// overrides it falls back to where its faster path does not apply.
#[allow(clippy::too_many_arguments)]
#[inline]
fn pack_slivers<S: BSource + ?Sized>(
    src: &S,
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
        src.pack(p0, kc, j0 + s * nr, nr, swap, d);
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
        let deal: Option<DealFn> = match (nr, swap) {
            (4, true) => Some(deal_panel::<4, true>),
            (4, false) => Some(deal_panel::<4, false>),
            (16, false) => Some(deal_panel::<16, false>),
            _ => None,
        };
        let Some(deal) = deal.filter(|_| b.cs == 1) else {
            // Columns are not contiguous, or no kernel has this width: sliver by sliver.
            return pack_slivers(self, p0, kc, j0, ncols, nr, swap, dst);
        };
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
        let rows: Vec<&[u64]> = (0..kc)
            .map(|p| {
                let base = ((p0 + p) as isize * b.rs + j0 as isize) as usize;
                &b.data[base..base + cols]
            })
            .collect();
        deal(&rows, dst);
    }
}

/// A `deal_panel` instance: the row segments of a panel, and where its slivers go.
type DealFn = fn(&[&[u64]], &mut [u64]);

/// Deal the row segments `rows` (one per k step) out to NR-wide slivers laid out one after
/// another in `dst`, each k step followed by its half-swapped copy when SWAP.
///
/// Rows go in blocks of ROWS: within a block each sliver receives ROWS consecutive k steps
/// (one contiguous stretch of dst) while the block's row segments stay in L1. Row by row,
/// every row scattered one run to each sliver, 16 KiB apart; and a fixed NR makes each run
/// a few register moves (`copy_from_slice` of a runtime length was a libc memmove call per
/// 32-byte run). Before both, packing was 14% of a 128×768·768×3072 product (perf).
fn deal_panel<const NR: usize, const SWAP: bool>(rows: &[&[u64]], dst: &mut [u64]) {
    const ROWS: usize = 8;
    let w = if SWAP { 2 * NR } else { NR };
    let sl = rows.len() * w;
    let slivers = dst.len() / sl;
    for pb in (0..rows.len()).step_by(ROWS) {
        let pe = (pb + ROWS).min(rows.len());
        // B is read once per product, from L3 or memory, in runs of a few hundred bytes a
        // page apart: too short for the hardware prefetcher, so ask for the next block now.
        rows[pe..(pe + ROWS).min(rows.len())]
            .iter()
            .for_each(|r| prefetch_run(r));
        for s in 0..slivers {
            let d = &mut dst[s * sl..(s + 1) * sl];
            for (p, row) in rows.iter().enumerate().take(pe).skip(pb) {
                let out = &mut d[p * w..(p + 1) * w];
                let run = &row[(s * NR).min(row.len())..((s + 1) * NR).min(row.len())];
                match <&[u64; NR]>::try_from(run) {
                    Ok(run) => {
                        out[..NR].copy_from_slice(run);
                        if SWAP {
                            for j in 0..NR {
                                out[NR + j] = run[j].rotate_left(32);
                            }
                        }
                    }
                    Err(_) => deal_any(run, out, NR, SWAP),
                }
            }
        }
    }
}

/// Ask for every cache line of `run` ahead of use.
#[inline(always)]
fn prefetch_run(run: &[u64]) {
    #[cfg(target_arch = "x86_64")]
    for line in run.chunks(8) {
        // SAFETY: a prefetch is only a hint; the address is inside `run`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
}

/// One k step of one sliver of any width: the run (possibly ragged or empty), then its
/// half-swapped copy when `swap`.
fn deal_any(run: &[u64], out: &mut [u64], nr: usize, swap: bool) {
    out[..run.len()].copy_from_slice(run);
    if swap {
        for (h, &v) in out[nr..nr + run.len()].iter_mut().zip(run) {
            *h = v.rotate_left(32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pack_panel` of a row-major B (the blocked, fixed-width path for the NR of every
    /// kernel, the generic one for any other) against the layout written out from its
    /// definition: sliver s, k step p, lane j holds B[p0 + p, j0 + s·nr + j] (zero past the
    /// last column), followed by the same value with its 32-bit halves exchanged.
    #[test]
    fn row_major_panels_match_the_layout_definition() {
        let (rows, cols) = (40, 45);
        let stride = cols + 3;
        let b: Vec<u64> = (0..rows * stride)
            .map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (1 << 63))
            .collect();
        let src = StridedB(Mat::new(&b, rows, cols, stride as isize, 1));
        for (nr, swap) in [
            (4usize, true),
            (4, false),
            (16, false),
            (3, true),
            (8, false),
        ] {
            for (p0, kc) in [(0, 1), (1, 7), (0, 8), (3, 9), (2, 17), (0, 40)] {
                for (j0, ncols) in [(0usize, 45usize), (5, 40), (41, 4), (40, 5)] {
                    let w = if swap { 2 * nr } else { nr };
                    let slivers = ncols.div_ceil(nr);
                    let mut got = vec![u64::MAX; slivers * kc * w];
                    src.pack_panel(p0, kc, j0, ncols, nr, swap, &mut got);
                    let mut want = vec![0u64; slivers * kc * w];
                    for s in 0..slivers {
                        for p in 0..kc {
                            for j in 0..nr {
                                let col = j0 + s * nr + j;
                                let v = if col < cols {
                                    b[(p0 + p) * stride + col]
                                } else {
                                    0
                                };
                                let at = s * kc * w + p * w;
                                want[at + j] = v;
                                if swap {
                                    want[at + nr + j] = v.rotate_right(32);
                                }
                            }
                        }
                    }
                    assert_eq!(
                        got, want,
                        "nr {nr} swap {swap} p0 {p0} kc {kc} j0 {j0} ncols {ncols}"
                    );
                }
            }
        }
    }
}
