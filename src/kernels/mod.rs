//! Wrapping u64 GEMM and conv2d over Z_2^64, and bulk elementwise ring ops.
//! Depends on ring (and rayon). This is the safe public API; SIMD paths plug in below it.

pub mod scalar;

use crate::ring::RingTensor;

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
    scalar::gemm_u64_scalar(
        m, k, n, a, k as isize, 1, b, n as isize, 1, c, n as isize, 1, accumulate,
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
    scalar::conv2d_u64_scalar(x, w, stride, padding)
}
