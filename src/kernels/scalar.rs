//! Portable scalar reference kernels: plain loops, obviously correct, never optimised.
//! Every faster path is tested bit for bit against these. Depends on ring.

use crate::ring::RingTensor;

/// C (+)= A·B on strided operands (row stride rs_*, column stride cs_*), wrapping mod 2^64.
#[allow(clippy::too_many_arguments)]
pub fn gemm_u64_scalar(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    rs_a: isize,
    cs_a: isize,
    b: &[u64],
    rs_b: isize,
    cs_b: isize,
    c: &mut [u64],
    rs_c: isize,
    cs_c: isize,
    accumulate: bool,
) {
    let at =
        |i: usize, j: usize, rs: isize, cs: isize| (i as isize * rs + j as isize * cs) as usize;
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0u64;
            for p in 0..k {
                acc =
                    acc.wrapping_add(a[at(i, p, rs_a, cs_a)].wrapping_mul(b[at(p, j, rs_b, cs_b)]));
            }
            let dst = &mut c[at(i, j, rs_c, cs_c)];
            *dst = if accumulate {
                dst.wrapping_add(acc)
            } else {
                acc
            };
        }
    }
}

/// Direct seven-loop NCHW convolution with zero padding.
pub fn conv2d_u64_scalar(
    x: &RingTensor,
    w: &RingTensor,
    stride: usize,
    padding: usize,
) -> RingTensor {
    let (b, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, c2, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    assert_eq!(c, c2, "conv2d channels {c} vs {c2}");
    let oh = super::conv_out(h, kh, stride, padding);
    let ow = super::conv_out(wd, kw, stride, padding);
    let (xd, wdat) = (x.data(), w.data());
    let mut out = RingTensor::zeros(&[b, o, oh, ow]);
    let od = out.data_mut();
    for bi in 0..b {
        for oi in 0..o {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = 0u64;
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * stride + ky) as isize - padding as isize;
                                let ix = (xo * stride + kx) as isize - padding as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let xv =
                                        xd[((bi * c + ci) * h + iy as usize) * wd + ix as usize];
                                    let wv = wdat[((oi * c + ci) * kh + ky) * kw + kx];
                                    acc = acc.wrapping_add(xv.wrapping_mul(wv));
                                }
                            }
                        }
                    }
                    od[((bi * o + oi) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    out
}

/// Direct gradient of conv2d w.r.t. its input, gathered per input element:
/// dx[b,c,iy,ix] = Σ_{o,ky,kx} dy[b,o,oy,ox]·w[o,c,ky,kx] over taps with
/// oy·s + ky − p = iy and ox·s + kx − p = ix.
pub fn conv2d_grad_input_u64_scalar(
    dy: &RingTensor,
    w: &RingTensor,
    in_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> RingTensor {
    let (b, o, oh, ow) = (dy.shape()[0], dy.shape()[1], dy.shape()[2], dy.shape()[3]);
    let (c, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
    let (h, wd) = in_hw;
    let mut dx = RingTensor::zeros(&[b, c, h, wd]);
    let (dyd, wdat) = (dy.data(), w.data());
    let dxd = dx.data_mut();
    for bi in 0..b {
        for ci in 0..c {
            for iy in 0..h {
                for ix in 0..wd {
                    let mut acc = 0u64;
                    for oi in 0..o {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                // oy = (iy + p − ky) / s when that divides exactly.
                                let ny = (iy + padding) as isize - ky as isize;
                                let nx = (ix + padding) as isize - kx as isize;
                                if ny < 0 || nx < 0 {
                                    continue;
                                }
                                let (ny, nx) = (ny as usize, nx as usize);
                                if ny % stride != 0 || nx % stride != 0 {
                                    continue;
                                }
                                let (oy, ox) = (ny / stride, nx / stride);
                                if oy >= oh || ox >= ow {
                                    continue;
                                }
                                let g = dyd[((bi * o + oi) * oh + oy) * ow + ox];
                                let wv = wdat[((oi * c + ci) * kh + ky) * kw + kx];
                                acc = acc.wrapping_add(g.wrapping_mul(wv));
                            }
                        }
                    }
                    dxd[((bi * c + ci) * h + iy) * wd + ix] = acc;
                }
            }
        }
    }
    dx
}

/// Direct gradient of conv2d w.r.t. its weight:
/// dw[o,c,ky,kx] = Σ_{b,oy,ox} dy[b,o,oy,ox]·x[b,c,oy·s+ky−p,ox·s+kx−p] (0 outside).
pub fn conv2d_grad_weight_u64_scalar(
    x: &RingTensor,
    dy: &RingTensor,
    k_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> RingTensor {
    let (b, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, oh, ow) = (dy.shape()[1], dy.shape()[2], dy.shape()[3]);
    let (kh, kw) = k_hw;
    let mut dw = RingTensor::zeros(&[o, c, kh, kw]);
    let (xd, dyd) = (x.data(), dy.data());
    let dwd = dw.data_mut();
    for oi in 0..o {
        for ci in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let mut acc = 0u64;
                    for bi in 0..b {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let iy = (oy * stride + ky) as isize - padding as isize;
                                let ix = (ox * stride + kx) as isize - padding as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let xv =
                                        xd[((bi * c + ci) * h + iy as usize) * wd + ix as usize];
                                    let g = dyd[((bi * o + oi) * oh + oy) * ow + ox];
                                    acc = acc.wrapping_add(g.wrapping_mul(xv));
                                }
                            }
                        }
                    }
                    dwd[((oi * c + ci) * kh + ky) * kw + kx] = acc;
                }
            }
        }
    }
    dw
}
