//! The blocked GEMM loop shared by every ISA (BLIS/matrixmultiply structure): for each KC
//! slab of the inner dimension, pack B into NR-wide slivers and A into MR-high slivers, then
//! run the microkernel over a grid of (row block × column block) tasks on the current rayon
//! pool. Edge tiles go through a small buffer so the microkernel always sees a full tile.
//! Depends on kernels::pack and a `MicroKernel` implementation; rayon for the split.
//!
//! Parallel split: over M and N blocks of C (never over K, which would need a reduction).
//! Packing is parallel too. Everything runs in whatever rayon pool is current, so a caller
//! can measure single-threaded rates with a 1-thread pool and `install`.

use std::cell::RefCell;

use rayon::prelude::*;

use super::pack::{self, BSource};

/// A read-only strided matrix view: element (i, j) is `data[i*rs + j*cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub data: &'a [u64],
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [u64], rows: usize, cols: usize, rs: isize, cs: isize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    pub fn row_major(data: &'a [u64], rows: usize, cols: usize) -> Self {
        Mat::new(data, rows, cols, cols as isize, 1)
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Mat::new(self.data, self.cols, self.rows, self.cs, self.rs)
    }

    pub(crate) fn check(&self, what: &str) {
        check_span(
            self.data.len(),
            self.rows,
            self.cols,
            self.rs,
            self.cs,
            what,
        );
    }
}

/// A writable strided matrix view; its layout must be injective (checked).
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [u64],
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [u64], rows: usize, cols: usize, rs: isize, cs: isize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    pub fn row_major(data: &'a mut [u64], rows: usize, cols: usize) -> Self {
        MatMut::new(data, rows, cols, cols as isize, 1)
    }

    pub fn t(self) -> Self {
        MatMut::new(self.data, self.cols, self.rows, self.cs, self.rs)
    }

    pub(crate) fn check(&self) {
        check_span(self.data.len(), self.rows, self.cols, self.rs, self.cs, "C");
        // Tiles of C are written from several threads: no two (i, j) may share an address.
        // Sufficient condition: one stride steps over the whole extent of the other.
        let (r, c) = (self.rows as i128, self.cols as i128);
        let (rs, cs) = ((self.rs as i128).abs(), (self.cs as i128).abs());
        let injective = r <= 1 && (c <= 1 || cs > 0)
            || c <= 1 && rs > 0
            || rs > 0 && cs > 0 && (rs >= c * cs || cs >= r * rs);
        assert!(
            injective,
            "gemm output layout {}x{} with strides ({}, {}) maps two elements to one place",
            self.rows, self.cols, self.rs, self.cs
        );
    }
}

fn check_span(len: usize, rows: usize, cols: usize, rs: isize, cs: isize, what: &str) {
    if rows == 0 || cols == 0 {
        return;
    }
    let (r, c) = ((rows - 1) as i128, (cols - 1) as i128);
    let (rs, cs) = (rs as i128, cs as i128);
    let lo = (r * rs).min(0) + (c * cs).min(0);
    let hi = (r * rs).max(0) + (c * cs).max(0);
    assert!(
        lo >= 0 && hi < len as i128,
        "gemm operand {what}: {rows}x{cols} with strides ({}, {}) reaches [{lo}, {hi}] \
         outside a slice of {len}",
        rs,
        cs
    );
}

/// A microkernel: C[MR×NR] (+)= Σ_p Apack[p]·Bpack[p] over `kc` steps of packed slivers.
pub(crate) trait MicroKernel {
    const MR: usize;
    const NR: usize;
    /// Packed B carries, after the NR values of each k step, the same NR values with their
    /// 32-bit halves swapped (the AVX2 cross-term trick, see avx2.rs).
    const B_SWAP: bool;
    /// Depth of a packed slab (L1: one B sliver plus one A sliver).
    const KC: usize;

    /// A is either packed (`rs_a == 0`: `a[p·MR + i]`) or read in place from MR rows that
    /// are contiguous along k (`a[i·rs_a + p]`), which saves packing a row-major A.
    ///
    /// # Safety
    /// `a` holds kc·MR packed values (or MR in-bounds rows of kc), `b` kc·NR·(1+B_SWAP), and
    /// the MR×NR tile at `c` with strides (rs_c, cs_c) is valid for reads and writes and
    /// touched by no other thread.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        kc: usize,
        a: *const u64,
        rs_a: isize,
        b: *const u64,
        c: *mut u64,
        rs_c: isize,
        cs_c: isize,
        accumulate: bool,
    );

    /// As `kernel`, for a tile whose last rows lie past the end of C: computes and writes
    /// only its first `rows` (1 ≤ rows < MR) rows, with A laid out as for `kernel`.
    /// Returns false if this kernel has no such variant; the driver then runs the full
    /// tile into a buffer.
    ///
    /// # Safety
    /// As `kernel`, for the `rows`×NR tile at `c`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_rows(
        _rows: usize,
        _kc: usize,
        _a: *const u64,
        _rs_a: isize,
        _b: *const u64,
        _c: *mut u64,
        _rs_c: isize,
        _cs_c: isize,
        _accumulate: bool,
    ) -> bool {
        false
    }

    fn b_width() -> usize {
        Self::NR * if Self::B_SWAP { 2 } else { 1 }
    }
}

/// A raw C view that may cross threads; tasks write disjoint tiles.
#[derive(Clone, Copy)]
pub(crate) struct CPtr {
    pub ptr: *mut u64,
    pub rs: isize,
    pub cs: isize,
}
// SAFETY: the driver hands each task a disjoint set of tiles of an injective layout.
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

impl CPtr {
    /// Where element (i, j) is.
    ///
    /// # Safety
    /// (i, j) lies inside the view this pointer was made from.
    pub unsafe fn at(&self, i: usize, j: usize) -> *mut u64 {
        self.ptr.offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// A checked GEMM call (built only by the safe API in mod.rs).
pub(crate) struct GemmCall<'a> {
    pub a: Mat<'a>,
    pub b: Mat<'a>,
    pub c: CPtr,
    pub m: usize,
    pub n: usize,
    pub accumulate: bool,
}

impl<'a> GemmCall<'a> {
    pub fn new(a: Mat<'a>, b: Mat<'a>, c: MatMut<'a>, accumulate: bool) -> Self {
        GemmCall {
            a,
            b,
            m: c.rows,
            n: c.cols,
            c: CPtr {
                ptr: c.data.as_mut_ptr(),
                rs: c.rs,
                cs: c.cs,
            },
            accumulate,
        }
    }
}

/// The `KernelSet::gemm` entry for kernel `K`.
///
/// # Safety
/// `call` was built from checked views (see `kernels::gemm_with`).
pub(crate) unsafe fn gemm_entry<K: MicroKernel>(call: &GemmCall) {
    let src = pack::StridedB(call.b);
    gemm_blocked::<K, _>(call.a, &src, call.m, call.n, call.c, call.accumulate);
}

thread_local! {
    /// Packing buffers reused across calls from one thread: fresh multi-MB allocations cost
    /// page faults comparable to the pack itself.
    static PACK_BUF: RefCell<(Vec<u64>, Vec<u64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The whole packed B of a call that shares it between row blocks (see `gemm_blocked`),
    /// owned by the calling thread.
    static SHARED_B: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Largest packed B (bytes) that a call packs once up front and shares between its row
/// blocks. The tasks then read their B blocks from L3 instead of packing them into L2;
/// ResNet50's conv5 3×3 (4608 × 49) needs 2.4 MiB with AVX-512 and 3.8 MiB with AVX2.
const SHARED_B_MAX_BYTES: usize = 8 << 20;
/// Least repeated packing (words packed again by every row block after the first) worth
/// the extra parallel phase of a shared B. That phase's join costs a wake-up of the other
/// thread, tens of microseconds on this VM: the CIFAR ResNet's 3×3 64-channel conv (64 ×
/// 576 × 64, two row blocks, 37k words of B) took 2-5x its GEMM's time on 2 threads with it.
const SHARED_B_MIN_REPEAT_WORDS: usize = 1 << 17;

/// Below this many multiply-adds a call runs on the calling thread only.
pub(crate) const PAR_MIN_MACS: usize = 1 << 18;

/// C (+)= A·B where B comes from any packable source (a strided matrix, or an implicit
/// im2col of a conv input).
///
/// # Safety
/// Every index of A and of the source is valid; C is an injective m×n layout, valid for
/// reads and writes, touched by no one else during the call.
pub(crate) unsafe fn gemm_blocked<K: MicroKernel, B: BSource>(
    a: Mat<'_>,
    b: &B,
    m: usize,
    n: usize,
    c: CPtr,
    accumulate: bool,
) {
    let k = a.cols;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *c.ptr.offset(i as isize * c.rs + j as isize * c.cs) = 0;
                }
            }
        }
        return;
    }
    let (mr, nr, bw) = (K::MR, K::NR, K::b_width());
    let kc_max = K::KC.min(k);
    let m_sl = m.div_ceil(mr);
    let n_sl = n.div_ceil(nr);
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PAR_MIN_MACS;

    // Task grid over slivers: start from blocks that keep a B block (kc × nc) in L2, then
    // split until there are enough tasks to balance the pool.
    // B block of a task: at most ~512 KiB, a quarter of this CPU's 2 MiB L2, so that it
    // survives while the A slivers of the task pass over it.
    // A block: also ~512 KiB; a matrix only slightly taller than that stays one block.
    let mut mb = ((512 << 10) / (kc_max * 8) / mr).max(1);
    if m_sl <= mb + mb / 4 {
        mb = m_sl;
    }
    let mut nb = ((512 << 10) / (kc_max * bw * 8)).max(1);
    if parallel {
        let want = 4 * threads;
        while m_sl.div_ceil(mb) * n_sl.div_ceil(nb) < want && (mb > 1 || nb > 1) {
            if (nb > 1 && nb * nr >= mb * mr) || mb == 1 {
                nb = nb.div_ceil(2);
            } else {
                mb = mb.div_ceil(2);
            }
        }
    }
    let (row_blocks, col_blocks) = (m_sl.div_ceil(mb), n_sl.div_ceil(nb));
    let grid = Grid {
        k,
        m,
        n,
        kc_max,
        m_sl,
        n_sl,
        mb,
        nb,
        parallel,
        tasks: (0..row_blocks)
            .flat_map(|ti| (0..col_blocks).map(move |tj| (ti, tj)))
            .collect(),
    };

    // A gathered B (implicit im2col) costs several times a multiply-add per element to pack,
    // so packing it once per row block, as the tasks do, is no longer cheap when n is small
    // and m is split into many row blocks: ResNet50's conv5 3×3 (512 × 4608 × 49) is one
    // column block and 8 row blocks on 2 threads, and took 1.2x its GEMM's time. Such a
    // call packs all of B first (one parallel phase, one join), then every task reads it.
    let b_len = k * n_sl * bw;
    let repeated = (row_blocks - 1) * b_len;
    if !(b.gathers() && repeated >= SHARED_B_MIN_REPEAT_WORDS && b_len * 8 <= SHARED_B_MAX_BYTES) {
        return run_tasks::<K, B>(a, b, c, accumulate, &grid, None);
    }
    SHARED_B.with(|cell| {
        let mut fresh = Vec::new();
        let mut held = cell.try_borrow_mut();
        // Re-entered from a task of an outer call on this thread: a fresh buffer.
        let buf = held.as_deref_mut().unwrap_or(&mut fresh);
        let shared = aligned(buf, b_len);
        prepack_b::<K, B>(b, &grid, shared);
        run_tasks::<K, B>(a, b, c, accumulate, &grid, Some(shared))
    });
}

/// How `gemm_blocked` cuts a product: slabs of depth `kc_max` along k, and a grid of tasks
/// of `mb` row slivers × `nb` column slivers (of `m_sl` × `n_sl`).
struct Grid {
    k: usize,
    m: usize,
    n: usize,
    kc_max: usize,
    m_sl: usize,
    n_sl: usize,
    mb: usize,
    nb: usize,
    parallel: bool,
    tasks: Vec<(usize, usize)>,
}

/// Pack all of B into `dst`, slab after slab: slab p0 (depth kc) starts at p0·n_sl·bw and
/// holds every NR-wide sliver of the slab, each kc·bw long, in column order. So column
/// block tj of slab p0 is at p0·n_sl·bw + tj·nb·kc·bw, as a task packs it for itself.
fn prepack_b<K: MicroKernel, B: BSource>(b: &B, g: &Grid, dst: &mut [u64]) {
    let (nr, bw) = (K::NR, K::b_width());
    let Grid {
        k,
        n,
        n_sl,
        nb,
        kc_max,
        ..
    } = *g;
    let mut units: Vec<(usize, usize, usize, &mut [u64])> = Vec::new();
    let (mut rest, mut p0) = (dst, 0);
    while p0 < k {
        let kc = kc_max.min(k - p0);
        let mut t0 = 0;
        while t0 < n_sl {
            let t1 = (t0 + nb).min(n_sl);
            let (block, tail) = rest.split_at_mut((t1 - t0) * kc * bw);
            units.push((p0, kc, t0, block));
            rest = tail;
            t0 = t1;
        }
        p0 += kc;
    }
    let pack = |(p0, kc, t0, block): (usize, usize, usize, &mut [u64])| {
        let (j0, cols) = (t0 * nr, (n - t0 * nr).min(block.len() / (kc * bw) * nr));
        b.pack_panel(p0, kc, j0, cols, nr, K::B_SWAP, block);
    };
    if g.parallel {
        units.into_par_iter().with_max_len(1).for_each(pack);
    } else {
        units.into_iter().for_each(pack);
    }
}

/// The (row block × column block) tasks of `gemm_blocked`; each walks every k slab. B comes
/// from `shared` (packed by `prepack_b`) or is packed by the task itself.
///
/// # Safety
/// As `gemm_blocked`.
unsafe fn run_tasks<K: MicroKernel, B: BSource>(
    a: Mat<'_>,
    b: &B,
    c: CPtr,
    accumulate: bool,
    g: &Grid,
    shared: Option<&[u64]>,
) {
    let (mr, nr, bw) = (K::MR, K::NR, K::b_width());
    let Grid {
        k,
        m,
        n,
        kc_max,
        m_sl,
        n_sl,
        mb,
        nb,
        ..
    } = *g;

    // A row-major A is read in place by the microkernel (no pack); only a ragged last
    // sliver of rows is packed.
    let direct_a = a.cs == 1 && a.rs >= k as isize;
    // Each task walks every k slab itself and packs its own B block (and A block) right
    // before using it, so the whole product is one parallel phase: a phase per slab (pack,
    // join, compute, join) left a core idle at every join whenever the other was slowed,
    // which on a shared 2-core machine cost a third of the 2-thread rate. The packed block
    // is also written to and read from L2 instead of making a round trip through L3. The
    // price is packing a B block once per row block (and an A block once per column block):
    // O(1/MR·mb) of the multiply-adds, under 1% for every block size chosen above.
    let task = |&(ti, tj): &(usize, usize)| {
        let (s0, s1) = (ti * mb, ((ti + 1) * mb).min(m_sl));
        let (t0, t1) = (tj * nb, ((tj + 1) * nb).min(n_sl));
        let (j0, cols) = (t0 * nr, (n - t0 * nr).min((t1 - t0) * nr));
        let slabs = |abuf: &mut Vec<u64>, bbuf: &mut Vec<u64>| {
            let mut p0 = 0;
            while p0 < k {
                let kc = kc_max.min(k - p0);
                let acc = accumulate || p0 > 0;
                let bblock: &[u64] = match shared {
                    Some(all) => &all[p0 * n_sl * bw + t0 * kc * bw..][..(t1 - t0) * bw * kc],
                    None => {
                        let own = aligned(bbuf, (t1 - t0) * bw * kc);
                        b.pack_panel(p0, kc, j0, cols, nr, K::B_SWAP, own);
                        own
                    }
                };
                let ablock = aligned(abuf, mr * kc);
                // ir outer: the A sliver stays in L1 while B slivers stream from L2.
                for si in s0..s1 {
                    let (ap, rs_a) = if direct_a && si * mr + mr <= m {
                        let off = (si * mr) as isize * a.rs + p0 as isize;
                        (a.data.as_ptr().offset(off), a.rs)
                    } else {
                        pack::pack_a(a, si * mr, mr, p0, kc, ablock);
                        (ablock.as_ptr(), 0)
                    };
                    for sj in t0..t1 {
                        let bp = bblock[(sj - t0) * bw * kc..].as_ptr();
                        tile::<K>(kc, ap, rs_a, bp, c, si * mr, sj * nr, m, n, acc);
                    }
                }
                p0 += kc;
            }
        };
        PACK_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => {
                let (abuf, bbuf) = &mut *bufs;
                slabs(abuf, bbuf)
            }
            // Re-entered from a task of an outer call on this thread: use fresh buffers.
            Err(_) => slabs(&mut Vec::new(), &mut Vec::new()),
        });
    };
    if g.parallel {
        // One rayon job per task: left to its adaptive splitter, rayon hands each thread a
        // run of ~n/4 consecutive tasks that cannot be stolen once begun, and tasks are not
        // equal (a last row block of 3 slivers beside blocks of 42): on 1024³ with AVX2 one
        // thread idled a fifth of the product (per-task timing, 2 threads).
        g.tasks.par_iter().with_max_len(1).for_each(task);
    } else {
        g.tasks.iter().for_each(task);
    }
}

/// `len` elements of `buf` starting on a 64-byte boundary. The microkernels load B one
/// vector at a time; from the allocator's 16-byte alignment a quarter (AVX2) or every
/// (AVX-512) load of packed B would straddle two cache lines.
fn aligned(buf: &mut Vec<u64>, len: usize) -> &mut [u64] {
    if buf.len() < len + 7 {
        buf.resize(len + 7, 0);
    }
    let skip = buf.as_ptr().align_offset(64).min(7);
    &mut buf[skip..skip + len]
}

/// One MR×NR tile at (i0, j0); edge tiles go through a local buffer.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile<K: MicroKernel>(
    kc: usize,
    ap: *const u64,
    rs_a: isize,
    bp: *const u64,
    c: CPtr,
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
    acc: bool,
) {
    let (mr, nr) = (K::MR, K::NR);
    let cp = c.ptr.offset(i0 as isize * c.rs + j0 as isize * c.cs);
    if i0 + mr <= m && j0 + nr <= n {
        K::kernel(kc, ap, rs_a, bp, cp, c.rs, c.cs, acc);
        return;
    }
    // A ragged last sliver of rows (m = 128 with MR = 6 leaves 2): computing only those
    // rows saves the MR - rows that the full tile would compute and throw away.
    if i0 + mr > m && j0 + nr <= n && K::kernel_rows(m - i0, kc, ap, rs_a, bp, cp, c.rs, c.cs, acc)
    {
        return;
    }
    let mut buf = [0u64; 256];
    debug_assert!(mr * nr <= buf.len());
    K::kernel(kc, ap, rs_a, bp, buf.as_mut_ptr(), nr as isize, 1, false);
    for i in 0..mr.min(m - i0) {
        for j in 0..nr.min(n - j0) {
            let d = cp.offset(i as isize * c.rs + j as isize * c.cs);
            let v = buf[i * nr + j];
            *d = if acc { (*d).wrapping_add(v) } else { v };
        }
    }
}
