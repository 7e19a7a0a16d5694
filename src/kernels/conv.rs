//! conv2d over Z_2^64 (NCHW, zero padding, any batch, channels, stride, padding) and the two
//! convolutions a backward pass needs, all through the GEMM driver.
//!
//! Forward: per image, out_b [O × OH·OW] = W [O × C·KH·KW] · col_b [C·KH·KW × OH·OW]. The
//! column matrix is never materialised: `Im2colB` packs B slivers straight from the input
//! (implicit im2col), so the only overhead over a plain GEMM of the same shape is a pack that
//! gathers instead of copying.
//! Gradient w.r.t. the weight: dW = Σ_b dy_b · col_bᵀ (explicit im2col, transposed view).
//! Gradient w.r.t. the input: dcol_b = Wᵀ · dy_b, then col2im scatter-adds into dx_b.
//! Depends on kernels::{driver, pack}, ring.

use super::driver::{self, CPtr, Mat, MatMut, MicroKernel};
use super::pack::{fill_swapped, BSource};
use super::{conv_out, gemm_with, KernelSet};
use crate::ring::RingTensor;

/// Geometry of one convolution, in the names of the NCHW shapes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Geom {
    fn new(c: usize, hw: (usize, usize), k: (usize, usize), stride: usize, padding: usize) -> Self {
        assert!(stride > 0, "conv2d stride 0");
        assert!(
            hw.0 + 2 * padding >= k.0 && hw.1 + 2 * padding >= k.1,
            "conv2d kernel {k:?} larger than padded input {hw:?} (padding {padding})"
        );
        Geom {
            c,
            h: hw.0,
            w: hw.1,
            kh: k.0,
            kw: k.1,
            oh: conv_out(hw.0, k.0, stride, padding),
            ow: conv_out(hw.1, k.1, stride, padding),
            stride,
            padding,
        }
    }
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn ohow(&self) -> usize {
        self.oh * self.ow
    }
    /// (input channel, kernel row, kernel column) of row p of the column matrix.
    #[inline]
    fn tap(&self, p: usize) -> (usize, usize, usize) {
        let (ci, r) = (p / (self.kh * self.kw), p % (self.kh * self.kw));
        (ci, r / self.kw, r % self.kw)
    }
    /// Input row for output row oy and kernel row ky, if inside the image.
    #[inline]
    fn iy(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.padding)
            .filter(|&v| v < self.h)
    }
    #[inline]
    fn ix(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.stride + kx)
            .checked_sub(self.padding)
            .filter(|&v| v < self.w)
    }
    /// For the `run` outputs ox.. of one row and kernel column kx, which read the input line
    /// at ix = (ox + t)·s + kx − p: the first and last t inside the line (t in lo..hi reads
    /// line[start + (t − lo)·s]; zeros before and after).
    #[inline]
    fn clip(&self, ox: usize, kx: usize, run: usize) -> (usize, usize, usize) {
        let s = self.stride as isize;
        let first = (ox * self.stride + kx) as isize - self.padding as isize;
        let ceil_div = |a: isize| {
            if a <= 0 {
                0
            } else {
                ((a + s - 1) / s) as usize
            }
        };
        let lo = ceil_div(-first).min(run);
        let hi = ceil_div(self.w as isize - first).clamp(lo, run);
        (lo, hi, (first + lo as isize * s).max(0) as usize)
    }
}

/// The column matrix of one image as a GEMM B operand:
/// B[(ci, ky, kx), (oy, ox)] = x[ci, oy·s + ky − p, ox·s + kx − p] (0 outside).
pub(crate) struct Im2colB<'a> {
    pub x: &'a [u64],
    pub g: Geom,
}

impl Im2colB<'_> {
    /// Row p of the column matrix, columns j0..j0+len, into dst.
    #[inline]
    fn row(&self, p: usize, j0: usize, dst: &mut [u64]) {
        let (ci, ky, kx) = self.g.tap(p);
        self.taps(ci, ky, kx, j0, dst);
    }

    /// Columns j0..j0+len of the column-matrix row of tap (ci, ky, kx), into dst.
    #[inline]
    fn taps(&self, ci: usize, ky: usize, kx: usize, j0: usize, dst: &mut [u64]) {
        let g = &self.g;
        let plane = &self.x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        let mut j = j0;
        let mut d = 0;
        while d < dst.len() {
            let (oy, ox) = (j / g.ow, j % g.ow);
            let run = (g.ow - ox).min(dst.len() - d);
            let out = &mut dst[d..d + run];
            match g.iy(oy, ky) {
                None => out.fill(0),
                Some(iy) => {
                    let line = &plane[iy * g.w..(iy + 1) * g.w];
                    let (lo, hi, start) = g.clip(ox, kx, run);
                    out[..lo].fill(0);
                    if hi > lo {
                        let taps = line[start..].iter().step_by(g.stride);
                        out[lo..hi].iter_mut().zip(taps).for_each(|(o, &v)| *o = v);
                    }
                    out[hi..].fill(0);
                }
            }
            d += run;
            j += run;
        }
    }
}

/// dst = src for the sliver widths the kernels use, as one fixed-size copy (a vector move)
/// instead of a call to memcpy for 32-64 bytes.
#[inline(always)]
fn copy_sliver(dst: &mut [u64], src: &[u64]) {
    match dst.len() {
        16 => <&mut [u64; 16]>::try_from(dst)
            .unwrap()
            .copy_from_slice(&src[..16]),
        8 => <&mut [u64; 8]>::try_from(dst)
            .unwrap()
            .copy_from_slice(&src[..8]),
        4 => <&mut [u64; 4]>::try_from(dst)
            .unwrap()
            .copy_from_slice(&src[..4]),
        n => dst.copy_from_slice(&src[..n]),
    }
}

impl BSource for Im2colB<'_> {
    fn gathers(&self) -> bool {
        true
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, nr: usize, swap: bool, dst: &mut [u64]) {
        let w = if swap { 2 * nr } else { nr };
        let cols = nr.min(self.g.ohow().saturating_sub(j0));
        let dst = &mut dst[..kc * w];
        if cols < nr {
            dst.fill(0);
        }
        for p in 0..kc {
            self.row(p0 + p, j0, &mut dst[p * w..p * w + cols]);
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
        let g = &self.g;
        let w = if swap { 2 * nr } else { nr };
        let slivers = ncols.div_ceil(nr);
        let sl = kc * w;
        let dst = &mut dst[..slivers * sl];
        if !ncols.is_multiple_of(nr) {
            dst[(slivers - 1) * sl..].fill(0);
        }
        // Tap outer, sliver inner: the tap's setup (divisions) is paid once per row of the
        // panel, and each sliver's nr values for one tap are contiguous in dst. In an
        // unpadded conv (`conv2d_with` pads the image itself) they are, per output row they
        // span, every stride-th value of one input line, with no clipping: at stride 1 and
        // within one row, one vector copy. Packing the CIFAR ResNet's 3×3 convs element by
        // element took as long as their GEMM (conv/GEMM 2.0x against 1.1x now, `mpc-pipe
        // kernels --conv-only`), and its strided convs as long again in tiny memsets of the
        // clipped edges. A padded geometry (only a direct caller's) takes the clipping path.
        for p in 0..kc {
            let (ci, ky, kx) = g.tap(p0 + p);
            let plane = &self.x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            let (mut oy, mut ox) = (j0 / g.ow, j0 % g.ow);
            for s in 0..slivers {
                let cnt = nr.min(ncols - s * nr);
                let out = &mut dst[s * sl + p * w..s * sl + p * w + cnt];
                if g.padding == 0 {
                    // One output row at a time (a sliver may span several): every stride-th
                    // value of one input line.
                    let (mut t, mut y, mut x) = (0, oy, ox);
                    while t < cnt {
                        let seg = (g.ow - x).min(cnt - t);
                        let run = &plane[(y * g.stride + ky) * g.w + x * g.stride + kx..];
                        let dst = &mut out[t..t + seg];
                        if g.stride == 1 {
                            copy_sliver(dst, run);
                        } else {
                            dst.iter_mut()
                                .zip(run.iter().step_by(g.stride))
                                .for_each(|(o, &v)| *o = v);
                        }
                        (t, x, y) = (t + seg, 0, y + 1);
                    }
                } else {
                    self.taps(ci, ky, kx, oy * g.ow + ox, out);
                }
                ox += cnt;
                while ox >= g.ow {
                    ox -= g.ow;
                    oy += 1;
                }
            }
        }
        if swap {
            for d in dst.chunks_mut(sl) {
                fill_swapped(kc, nr, d);
            }
        }
    }
}

/// A checked implicit-im2col GEMM: C [O × OH·OW] (+)= W · col(x_b).
pub(crate) struct ConvCall<'a> {
    pub w: Mat<'a>,
    pub src: Im2colB<'a>,
    pub c: CPtr,
    pub accumulate: bool,
}

/// The `KernelSet::conv` entry for kernel `K`.
///
/// # Safety
/// `call` was built by `conv2d_with` from checked shapes.
pub(crate) unsafe fn conv_entry<K: MicroKernel>(call: &ConvCall) {
    let (m, n) = (call.w.rows, call.src.g.ohow());
    driver::gemm_blocked::<K, _>(call.w, &call.src, m, n, call.c, call.accumulate);
}

fn dims4(t: &RingTensor, what: &str) -> [usize; 4] {
    let s = t.shape();
    assert!(s.len() == 4, "conv2d {what} must be 4-D, got {s:?}");
    [s[0], s[1], s[2], s[3]]
}

/// NCHW conv2d with the kernels of `ks`: x [B,C,H,W], w [O,C,KH,KW] → [B,O,OH,OW].
pub fn conv2d_with(
    ks: &KernelSet,
    x: &RingTensor,
    w: &RingTensor,
    stride: usize,
    padding: usize,
) -> RingTensor {
    let [b, _, _, _] = dims4(x, "input");
    let [o, _, kh, kw] = dims4(w, "weight");
    let s = x.shape();
    let (oh, ow) = (
        conv_out(s[2], kh, stride, padding),
        conv_out(s[3], kw, stride, padding),
    );
    let mut out = RingTensor::zeros(&[b, o, oh, ow]);
    if !out.is_empty() {
        conv2d_into_with(ks, x, w, stride, padding, out.data_mut(), false);
    }
    out
}

/// As `conv2d_with`, into `out` ([B,O,OH,OW], row-major): overwritten, or accumulated into
/// when `accumulate` is set (C + A·F of a Beaver product computed in C's own buffer).
pub fn conv2d_into_with(
    ks: &KernelSet,
    x: &RingTensor,
    w: &RingTensor,
    stride: usize,
    padding: usize,
    out: &mut [u64],
    accumulate: bool,
) {
    let [b, c, h, wd] = dims4(x, "input");
    let [o, c2, kh, kw] = dims4(w, "weight");
    assert_eq!(c, c2, "conv2d channels {c} vs {c2}");
    let g = Geom::new(c, (h, wd), (kh, kw), stride, padding);
    assert_eq!(
        out.len(),
        b * o * g.oh * g.ow,
        "conv2d output of {} words for [{b}, {o}, {}, {}]",
        out.len(),
        g.oh,
        g.ow
    );
    if out.is_empty() || c * h * wd == 0 {
        // Every tap reads zero padding (or there is nothing to write).
        if !accumulate {
            out.fill(0);
        }
        return;
    }
    let (ckk, ohow) = (g.ckk(), g.ohow());
    let wm = Mat::row_major(w.data(), o, ckk);
    // A padded conv reads its image through a zero-padded copy (one pass over the image
    // against kh·kw passes of the gather), so that every sliver of an output row is a plain
    // (strided) run of the copy: see `Im2colB::pack_panel`.
    let pad_copy = padding > 0;
    let g_in = if pad_copy {
        Geom::new(c, (h + 2 * padding, wd + 2 * padding), (kh, kw), stride, 0)
    } else {
        g
    };
    let mut padded = Vec::new();
    for (xb, ob) in x
        .data()
        .chunks_exact(c * h * wd)
        .zip(out.chunks_exact_mut(o * ohow))
    {
        if kh == 1 && kw == 1 && stride == 1 && padding == 0 {
            // A pointwise conv's column matrix is the image itself, [C × H·W] row-major:
            // a plain GEMM, with the cheaper contiguous pack.
            gemm_with(
                ks,
                wm,
                Mat::row_major(xb, c, ohow),
                MatMut::row_major(ob, o, ohow),
                accumulate,
            );
            continue;
        }
        let xb = if pad_copy {
            pad_image(xb, &g, &mut padded);
            &padded[..]
        } else {
            xb
        };
        let call = ConvCall {
            w: wm,
            src: Im2colB { x: xb, g: g_in },
            c: CPtr {
                ptr: ob.as_mut_ptr(),
                rs: ohow as isize,
                cs: 1,
            },
            accumulate,
        };
        // SAFETY: wm spans w exactly; Im2colB only reads inside xb (bounds follow from the
        // geometry); ob is a contiguous O × OH·OW block of `out`.
        unsafe { (ks.conv)(&call) }
    }
}

/// `xb` [C, H, W] with `g.padding` zeros around every plane, into `dst` [C, H+2p, W+2p].
/// The border is zeroed only when `dst` is (re)made: the images of a batch all write the
/// same interior.
fn pad_image(xb: &[u64], g: &Geom, dst: &mut Vec<u64>) {
    let (p, pw) = (g.padding, g.w + 2 * g.padding);
    let len = g.c * (g.h + 2 * p) * pw;
    if dst.len() != len {
        dst.clear();
        dst.resize(len, 0);
    }
    for (src, plane) in xb
        .chunks_exact(g.h * g.w)
        .zip(dst.chunks_exact_mut((g.h + 2 * p) * pw))
    {
        for (line, row) in src
            .chunks_exact(g.w)
            .zip(plane[p * pw..].chunks_exact_mut(pw))
        {
            row[p..p + g.w].copy_from_slice(line);
        }
    }
}

/// Explicit column matrix [C·KH·KW × OH·OW] of one image.
fn im2col(xb: &[u64], g: Geom) -> Vec<u64> {
    let src = Im2colB { x: xb, g };
    let n = g.ohow();
    let mut col = vec![0u64; g.ckk() * n];
    for (p, row) in col.chunks_exact_mut(n.max(1)).enumerate().take(g.ckk()) {
        src.row(p, 0, row);
    }
    col
}

/// Gradient of conv2d w.r.t. its weight: dW [O,C,KH,KW] = Σ_b dy_b · col(x_b)ᵀ, with x
/// [B,C,H,W] and dy [B,O,OH,OW].
pub fn conv2d_grad_weight_with(
    ks: &KernelSet,
    x: &RingTensor,
    dy: &RingTensor,
    k_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> RingTensor {
    let [b, c, h, wd] = dims4(x, "input");
    let [b2, o, oh, ow] = dims4(dy, "output gradient");
    let g = Geom::new(c, (h, wd), k_hw, stride, padding);
    assert!(
        b == b2 && oh == g.oh && ow == g.ow,
        "conv2d weight gradient: x {:?} with dy {:?}",
        x.shape(),
        dy.shape()
    );
    let (ckk, ohow) = (g.ckk(), g.ohow());
    let mut dw = RingTensor::zeros(&[o, c, k_hw.0, k_hw.1]);
    if dw.is_empty() || c * h * wd == 0 || ohow == 0 {
        return dw;
    }
    for (bi, (xb, dyb)) in x
        .data()
        .chunks_exact(c * h * wd)
        .zip(dy.data().chunks_exact(o * ohow))
        .enumerate()
    {
        let col = im2col(xb, g);
        gemm_with(
            ks,
            Mat::row_major(dyb, o, ohow),
            Mat::row_major(&col, ckk, ohow).t(),
            MatMut::row_major(dw.data_mut(), o, ckk),
            bi > 0,
        );
    }
    dw
}

/// Gradient of conv2d w.r.t. its input: dx [B,C,H,W] with dx_b = col2im(Wᵀ · dy_b), for w
/// [O,C,KH,KW], dy [B,O,OH,OW] and the input's spatial size `in_hw` (not recoverable from
/// dy when the stride does not divide it).
pub fn conv2d_grad_input_with(
    ks: &KernelSet,
    dy: &RingTensor,
    w: &RingTensor,
    in_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> RingTensor {
    let [b, o, oh, ow] = dims4(dy, "output gradient");
    let [o2, c, kh, kw] = dims4(w, "weight");
    let g = Geom::new(c, in_hw, (kh, kw), stride, padding);
    assert!(
        o == o2 && oh == g.oh && ow == g.ow,
        "conv2d input gradient: dy {:?} with w {:?} for input {in_hw:?}",
        dy.shape(),
        w.shape()
    );
    let (ckk, ohow) = (g.ckk(), g.ohow());
    let (h, wd) = in_hw;
    let mut dx = RingTensor::zeros(&[b, c, h, wd]);
    if dx.is_empty() || o * ohow == 0 {
        return dx;
    }
    let mut dcol = vec![0u64; ckk * ohow];
    for (dyb, dxb) in dy
        .data()
        .chunks_exact(o * ohow)
        .zip(dx.data_mut().chunks_exact_mut(c * h * wd))
    {
        gemm_with(
            ks,
            Mat::row_major(w.data(), o, ckk).t(),
            Mat::row_major(dyb, o, ohow),
            MatMut::row_major(&mut dcol, ckk, ohow),
            false,
        );
        col2im_add(&dcol, g, dxb);
    }
    dx
}

/// dx_b[ci, iy, ix] += dcol[(ci, ky, kx), (oy, ox)] over every tap that read (iy, ix).
fn col2im_add(dcol: &[u64], g: Geom, dxb: &mut [u64]) {
    let ohow = g.ohow();
    for p in 0..g.ckk() {
        let (ci, ky, kx) = g.tap(p);
        let plane = &mut dxb[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        let row = &dcol[p * ohow..(p + 1) * ohow];
        for oy in 0..g.oh {
            let Some(iy) = g.iy(oy, ky) else { continue };
            let line = &mut plane[iy * g.w..(iy + 1) * g.w];
            for (ox, &v) in row[oy * g.ow..(oy + 1) * g.ow].iter().enumerate() {
                if let Some(ix) = g.ix(ox, kx) {
                    line[ix] = line[ix].wrapping_add(v);
                }
            }
        }
    }
}

/// Gradient w.r.t. the weight with the selected kernels (see `conv2d_grad_weight_with`).
pub fn conv2d_grad_weight(
    x: &RingTensor,
    dy: &RingTensor,
    k_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> RingTensor {
    conv2d_grad_weight_with(super::active(), x, dy, k_hw, stride, padding)
}

/// Gradient w.r.t. the input with the selected kernels (see `conv2d_grad_input_with`).
pub fn conv2d_grad_input(
    dy: &RingTensor,
    w: &RingTensor,
    in_hw: (usize, usize),
    stride: usize,
    padding: usize,
) -> RingTensor {
    conv2d_grad_input_with(super::active(), dy, w, in_hw, stride, padding)
}
