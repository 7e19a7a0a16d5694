//! Wrapping u64 GEMM and conv2d over Z_2^64, and bulk elementwise ring ops.
//! Depends on ring and rayon (and std::arch). This file is the safe public API: it checks
//! shapes and strides before anything unsafe runs, and it is the only place that asks the
//! CPU what it supports (`is_x86_feature_detected!`).
//!
//! Dispatch: a [`KernelSet`] (function pointers) is built once per ISA rung in a `OnceLock`.
//! The default rung is the best one the CPU has (scalar → avx2 → avx512); the environment
//! variable `MPC_PIPE_ISA=scalar|avx2|avx512` forces a rung, and is refused if the CPU lacks
//! it. The chosen rung is printed once to stderr on first use and reported by
//! `mpc-pipe kernels`.
//!
//! Layout below this file: `scalar` (naive references), `pack` (panel packing), `driver`
//! (blocked loop, edge tiles, rayon split), `portable`/`avx2`/`avx512` (microkernels),
//! `conv` (conv2d forward and backward through the GEMM driver), `elementwise` (bulk slice
//! ops), `bound` (register-only throughput loops), `report` (the measurements behind
//! `mpc-pipe kernels`), `tests` (every rung against `scalar`). Products with one or two rows
//! of A bypass the driver (`few_rows`, here): scaled rows of B added in place, no packing.
//!
//! Not wired in: `RingTensor`'s elementwise methods still use their own loops; the slice ops
//! here are exposed as `kernels::ew::*` for protocol code that works on slices.

pub mod bound;
pub mod conv;
mod driver;
pub mod elementwise;
mod pack;
mod portable;
pub mod report;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::ring::RingTensor;

pub use conv::{
    conv2d_grad_input, conv2d_grad_input_with, conv2d_grad_weight, conv2d_grad_weight_with,
    conv2d_with,
};
pub use driver::{Mat, MatMut};

/// An instruction-set rung of the kernel ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable blocked kernel in plain u64 arithmetic (any CPU).
    Scalar,
    /// AVX2: 64-bit low product built from 32-bit products (vpmuludq + vpmulld).
    Avx2,
    /// AVX-512 F+DQ: native 64-bit low product (vpmullq).
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == s.trim())
    }

    /// The CPU features this rung needs, for error and skip messages.
    pub fn features(self) -> &'static str {
        match self {
            Isa::Scalar => "none",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512f+avx512dq",
        }
    }

    /// Whether this CPU can run the rung. The only feature detection in the crate.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512dq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Best rung this CPU supports.
    pub fn detect() -> Isa {
        *Isa::ALL
            .iter()
            .rev()
            .find(|i| i.available())
            .unwrap_or(&Isa::Scalar)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Strided GEMM entry: C (+)= A·B. The safe wrappers in this file have checked every offset.
pub(crate) type GemmFn = unsafe fn(&driver::GemmCall);
/// Implicit-im2col conv GEMM entry (see `conv`).
pub(crate) type ConvFn = unsafe fn(&conv::ConvCall);
/// Binary elementwise slice op: out[i] = f(a[i], b[i]).
pub(crate) type BinFn = fn(&mut [u64], &[u64], &[u64]);
/// Unary elementwise slice op with a parameter (scalar or shift count): out[i] = f(a[i], s).
pub(crate) type ParFn = fn(&mut [u64], &[u64], u64);

/// The kernels of one ISA rung, as function pointers, built once.
pub struct KernelSet {
    pub isa: Isa,
    /// Register tile (rows, columns) of the GEMM microkernel.
    pub mr: usize,
    pub nr: usize,
    /// Depth of a packed K slab.
    pub kc: usize,
    pub(crate) gemm: GemmFn,
    pub(crate) conv: ConvFn,
    pub(crate) ew: elementwise::EwSet,
}

impl fmt::Debug for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KernelSet({}, {}x{})", self.isa, self.mr, self.nr)
    }
}

impl KernelSet {
    /// The kernels of rung `isa`, refused if this CPU lacks the features.
    pub fn for_isa(isa: Isa) -> Result<&'static KernelSet> {
        static SETS: [OnceLock<KernelSet>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        if !isa.available() {
            return Err(Error::Config(format!(
                "kernel ISA {isa} needs CPU features {} which this CPU lacks",
                isa.features()
            )));
        }
        Ok(SETS[isa as usize].get_or_init(|| build(isa)))
    }
}

/// The table of one rung: its microkernel's tile and depth, the drivers instantiated on it,
/// and its elementwise set.
fn set_of<K: driver::MicroKernel>(isa: Isa, ew: elementwise::EwSet) -> KernelSet {
    KernelSet {
        isa,
        mr: K::MR,
        nr: K::NR,
        kc: K::KC,
        gemm: driver::gemm_entry::<K>,
        conv: conv::conv_entry::<K>,
        ew,
    }
}

fn build(isa: Isa) -> KernelSet {
    match isa {
        Isa::Scalar => set_of::<portable::Portable>(isa, elementwise::EwSet::portable()),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => set_of::<avx2::Avx2>(isa, elementwise::EwSet::avx2()),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => set_of::<avx512::Avx512>(isa, elementwise::EwSet::avx512()),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("non-x86 rungs are never available"),
    }
}

/// The rung chosen for this process: `MPC_PIPE_ISA` if set (refused if the CPU lacks it),
/// else the best detected one. Decided once.
pub fn selected() -> Result<&'static KernelSet> {
    static CHOICE: OnceLock<std::result::Result<Isa, String>> = OnceLock::new();
    let choice = CHOICE.get_or_init(|| {
        let env = std::env::var("MPC_PIPE_ISA").ok();
        let isa = choose(env.as_deref(), Isa::available)?;
        eprintln!(
            "mpc-pipe: kernels: using {isa} (best available on this CPU: {})",
            Isa::detect()
        );
        Ok(isa)
    });
    match choice {
        Ok(isa) => KernelSet::for_isa(*isa),
        Err(msg) => Err(Error::Config(msg.clone())),
    }
}

/// The rung for an `MPC_PIPE_ISA` value (None or empty: the best available), refused if
/// the CPU lacks it. Pure, so the refusal is testable on any CPU.
pub(crate) fn choose(
    env: Option<&str>,
    available: impl Fn(Isa) -> bool,
) -> std::result::Result<Isa, String> {
    let best = *Isa::ALL
        .iter()
        .rev()
        .find(|&&i| available(i))
        .unwrap_or(&Isa::Scalar);
    match env.map(str::trim) {
        None | Some("") => Ok(best),
        Some(v) => {
            let isa = Isa::parse(v)
                .ok_or_else(|| format!("MPC_PIPE_ISA={v:?} is not one of scalar, avx2, avx512"))?;
            if !available(isa) {
                return Err(format!(
                    "MPC_PIPE_ISA={isa} needs CPU features {} which this CPU lacks \
                     (best available: {best})",
                    isa.features()
                ));
            }
            Ok(isa)
        }
    }
}

/// The selected rung for the infallible API below. An invalid `MPC_PIPE_ISA` is a
/// configuration error the user asked for explicitly, so it stops the process with the
/// message rather than silently running another path.
fn active() -> &'static KernelSet {
    match selected() {
        Ok(ks) => ks,
        Err(e) => panic!("{e}"),
    }
}

/// C (+)= A·B on strided operands with the kernels of `ks`. Checks that every index of A, B
/// and C lies inside its slice and that C's layout does not map two elements to one place
/// (tiles of C are written in parallel).
pub fn gemm_with(ks: &KernelSet, a: Mat<'_>, b: Mat<'_>, c: MatMut<'_>, accumulate: bool) {
    assert_eq!(
        a.cols, b.rows,
        "gemm inner dims: A is {}x{}, B is {}x{}",
        a.rows, a.cols, b.rows, b.cols
    );
    assert!(
        c.rows == a.rows && c.cols == b.cols,
        "gemm output {}x{} for {}x{}·{}x{}",
        c.rows,
        c.cols,
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    a.check("A");
    b.check("B");
    c.check();
    if a.rows <= FEW_ROWS && b.cs == 1 && b.rs >= b.cols as isize && c.cs == 1 && c.rs >= 0 {
        few_rows(ks, a, b, c, accumulate);
        return;
    }
    let call = driver::GemmCall::new(a, b, c, accumulate);
    // SAFETY: every offset the driver touches lies in the checked slices, and C is injective.
    unsafe { (ks.gemm)(&call) }
}

/// Products with at most this many rows of A (a batch-1 fully connected layer has one) go
/// through `few_rows`.
const FEW_ROWS: usize = 2;

/// C (+)= A·B for one or two rows of A, with B and C row-major: each row of C is the sum of
/// B's rows scaled by that row of A (axpy), reading B once, in place. The packed path would
/// pack all of B (twice over with AVX2's swapped copy) for a product that uses each of its
/// values once or twice, and compute MR rows of which one or two exist: a 1x768·768x3072
/// product ran at 0.45 GMAC/s that way. Never branches on a value: A may be a secret share.
fn few_rows(ks: &KernelSet, a: Mat<'_>, b: Mat<'_>, c: MatMut<'_>, accumulate: bool) {
    // A segment of a C row (4 KiB) stays in L1 while B's row segments stream past it.
    const COLS: usize = 512;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let blocks = n.div_ceil(COLS);
    let c_ptr = driver::CPtr {
        ptr: c.data.as_mut_ptr(),
        rs: c.rs,
        cs: 1,
    };
    let block = |blk: usize| {
        let (j0, j1) = (blk * COLS, ((blk + 1) * COLS).min(n));
        for i in 0..m {
            // SAFETY: row i, columns j0..j1 of the checked, injective, row-major C; blocks
            // are disjoint column ranges, so no two tasks share an element.
            let seg = unsafe { std::slice::from_raw_parts_mut(c_ptr.at(i, j0), j1 - j0) };
            if !accumulate {
                seg.fill(0);
            }
            for p in 0..k {
                let aip = a.data[(i as isize * a.rs + p as isize * a.cs) as usize];
                let row = (p as isize * b.rs) as usize;
                (ks.ew.axpy)(seg, &b.data[row + j0..row + j1], aip);
            }
        }
    };
    if rayon::current_num_threads() > 1 && m * n * k >= driver::PAR_MIN_MACS && blocks > 1 {
        use rayon::prelude::*;
        (0..blocks).into_par_iter().for_each(block);
    } else {
        (0..blocks).for_each(block);
    }
}

/// C (+)= A·B on strided operands with the selected kernels. Transposed operands are just
/// swapped strides: see [`Mat::t`].
pub fn gemm(a: Mat<'_>, b: Mat<'_>, c: MatMut<'_>, accumulate: bool) {
    gemm_with(active(), a, b, c, accumulate)
}

/// C = A·B for row-major contiguous A [m×k], B [k×n]; C [m×n] is overwritten, or
/// accumulated into when `accumulate` is set.
pub fn gemm_into(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    accumulate: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand sizes"
    );
    gemm(
        Mat::row_major(a, m, k),
        Mat::row_major(b, k, n),
        MatMut::row_major(c, m, n),
        accumulate,
    );
}

/// C (+)= Aᵀ·B for row-major A [k×m], B [k×n], C [m×n] (weight gradients).
#[allow(clippy::too_many_arguments)]
pub fn gemm_at_b_into(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    accumulate: bool,
) {
    gemm(
        Mat::row_major(a, k, m).t(),
        Mat::row_major(b, k, n),
        MatMut::row_major(c, m, n),
        accumulate,
    );
}

/// C (+)= A·Bᵀ for row-major A [m×k], B [n×k], C [m×n] (input gradients).
#[allow(clippy::too_many_arguments)]
pub fn gemm_a_bt_into(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    accumulate: bool,
) {
    gemm(
        Mat::row_major(a, m, k),
        Mat::row_major(b, n, k).t(),
        MatMut::row_major(c, m, n),
        accumulate,
    );
}

/// [m×k]·[k×n] of 2-D ring tensors.
pub fn matmul(a: &RingTensor, b: &RingTensor) -> RingTensor {
    assert!(
        a.shape().len() == 2 && b.shape().len() == 2 && a.shape()[1] == b.shape()[0],
        "matmul {:?}·{:?}",
        a.shape(),
        b.shape()
    );
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let mut c = RingTensor::zeros(&[m, n]);
    gemm_into(m, k, n, a.data(), b.data(), c.data_mut(), false);
    c
}

/// Output spatial size of a convolution.
pub fn conv_out(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding - kernel) / stride + 1
}

/// NCHW conv2d: x [B,C,H,W], w [O,C,KH,KW], zero padding, output [B,O,OH,OW].
pub fn conv2d(x: &RingTensor, w: &RingTensor, stride: usize, padding: usize) -> RingTensor {
    conv2d_with(active(), x, w, stride, padding)
}

/// As `conv2d`, into `out` (the output's words): overwritten, or accumulated into when
/// `accumulate` is set.
pub fn conv2d_into(
    x: &RingTensor,
    w: &RingTensor,
    stride: usize,
    padding: usize,
    out: &mut [u64],
    accumulate: bool,
) {
    conv::conv2d_into_with(active(), x, w, stride, padding, out, accumulate)
}

/// Bulk elementwise ring ops on slices with the selected kernels (`out` may not alias the
/// inputs; every slice must have the same length).
pub mod ew {
    use super::active;

    macro_rules! bin {
        ($($name:ident: $doc:literal),*) => {$(
            #[doc = $doc]
            pub fn $name(out: &mut [u64], a: &[u64], b: &[u64]) {
                assert!(a.len() == out.len() && b.len() == out.len(), "elementwise lengths");
                (active().ew.$name)(out, a, b)
            }
        )*};
    }
    bin!(add: "out = a + b mod 2^64", sub: "out = a - b mod 2^64",
         mul: "out = a · b mod 2^64", xor: "out = a ^ b", and: "out = a & b");

    macro_rules! par {
        ($($name:ident($p:ident: $t:ty): $doc:literal),*) => {$(
            #[doc = $doc]
            pub fn $name(out: &mut [u64], a: &[u64], $p: $t) {
                assert!(a.len() == out.len(), "elementwise lengths");
                (active().ew.$name)(out, a, $p as u64)
            }
        )*};
    }
    par!(scale(k: u64): "out = a · k mod 2^64",
         shl(s: u32): "out = a << s (s < 64)",
         shr_logical(s: u32): "out = a >> s, zero-filling (s < 64)",
         shr_arith(s: u32): "out = a >> s, sign-filling as i64 (s < 64)");

    // Tensor forms of the ops that gain from the wider rungs (products: vpmullq on AVX-512
    // is ~1.5x the scalar imul loop in cache; add/xor/shift do not gain, see
    // `mpc-pipe kernels --elementwise`), for the protocols' hot elementwise products.
    use crate::ring::RingTensor;

    /// a ⊙ b mod 2^64 of two tensors of the same shape.
    pub fn mul_tensors(a: &RingTensor, b: &RingTensor) -> RingTensor {
        assert_eq!(
            a.shape(),
            b.shape(),
            "elementwise product of different shapes"
        );
        if a.is_unstored_zeros() || b.is_unstored_zeros() {
            return RingTensor::zeros(a.shape());
        }
        let mut out = vec![0u64; a.len()];
        mul(&mut out, a.data(), b.data());
        RingTensor::from_vec(a.shape(), out)
    }

    /// The concatenation of f(a, b) over each pair of equal-length slices, as one new
    /// vector written in one pass: the message of a masked opening, [x - a, y - b] or
    /// [y ^ b, x ^ a]. Building it by copying and then masking in place costs a second
    /// pass, and a zipped `extend` does not vectorise.
    #[inline]
    pub fn concat_with(pairs: &[(&[u64], &[u64])], f: impl Fn(u64, u64) -> u64) -> Vec<u64> {
        let total: usize = pairs.iter().map(|(a, _)| a.len()).sum();
        let mut out: Vec<u64> = Vec::with_capacity(total);
        let mut rest = &mut out.spare_capacity_mut()[..total];
        for &(a, b) in pairs {
            assert_eq!(a.len(), b.len(), "elementwise lengths");
            let (dst, tail) = rest.split_at_mut(a.len());
            for i in 0..dst.len() {
                dst[i].write(f(a[i], b[i]));
            }
            rest = tail;
        }
        // SAFETY: the pairs' lengths sum to `total`, and the loop wrote every element of
        // the first `total` spare slots, in order.
        unsafe { out.set_len(total) };
        out
    }

    /// a · k mod 2^64 for a public scalar k.
    pub fn scale_tensor(a: &RingTensor, k: u64) -> RingTensor {
        if a.is_unstored_zeros() {
            return RingTensor::zeros(a.shape());
        }
        let mut out = vec![0u64; a.len()];
        scale(&mut out, a.data(), k);
        RingTensor::from_vec(a.shape(), out)
    }
}
