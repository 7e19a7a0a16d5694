//! Max and argmax along a dimension, max-pooling and average-pooling on NCHW tensors
//! (protocols.md §3.10, §3.11). Depends on proto::{ctx, share, arith, compare, trunc}, ring.
//!
//! Max and argmax use a pairwise tournament, not CrypTen's log_reduction + pairwise +
//! `weighted_index` (random tie-break). protocols.md §3.10 [I] recommends a cheaper
//! variant for an inference engine, and the same variant is used by the baseline and by
//! every pipelined schedule, so their costs stay comparable. Ties go to the FIRST index of
//! the maximum (torch.argmax convention), deterministically.
//!
//! Tournament over k entries per row, ⌈log2 k⌉ levels. At each level the survivors are
//! paired with their right neighbour (an odd last one is carried up) and
//!   1. c = [left ≥ right] for all pairs of all rows in ONE ltz (a tie keeps the left, so
//!      the lowest index wins);
//!   2. ONE product round, no truncation (c has scale 1), selects the value
//!      m = right + c·(left − right) and, for argmax, the one-hot of the merged block:
//!      concat(c·L, R − c·R), where L and R are the survivors' one-hots over the original
//!      entries they cover. The first level needs no one-hot product: L = R = 1 (public).
//!
//! 2PC cost per level: 9 rounds, 21·p + 2·(p + w) words for p pairs whose blocks cover w
//! entries (w = 0 at the first level and for max alone). Under `--protocols fss`, steps 1
//! and the value's product are one ReLU gate on left − right (its mask is c): 1 round and
//! p words per level, plus a product round of 2·w words for the one-hots (argmax, from
//! the second level on).

use super::ctx::Ctx;
use super::share::Share;
use crate::error::{Error, Result};
use crate::ring::{Protocols, RingTensor};

/// Value of max-pool padding: a public raw ring value (−2^61, i.e. −2^45 in real terms at
/// f = 16) below every input, so a pad never wins a window that holds a real entry. Inputs
/// must satisfy |x| < 2^61 ring units, so that x − pad stays below 2^63 and the comparison
/// is exact.
const MAXPOOL_PAD: u64 = (-(1i64 << 61)) as u64;

/// [B, C, H, W, OH, OW] of a k×k pooling of NCHW `shape` with `stride` and `padding`,
/// after checking the window fits the padded input.
fn pool_geometry(
    shape: &[usize],
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<[usize; 6]> {
    if shape.len() != 4 || kernel == 0 || stride == 0 {
        return Err(Error::Shape(format!(
            "pooling of shape {shape:?} with kernel {kernel}, stride {stride}"
        )));
    }
    let (b, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        return Err(Error::Shape(format!(
            "pooling kernel {kernel} larger than the padded input {shape:?} (padding {padding})"
        )));
    }
    let oh = (h + 2 * padding - kernel) / stride + 1;
    let ow = (w + 2 * padding - kernel) / stride + 1;
    Ok([b, c, h, w, oh, ow])
}

/// The adjoint of gathering a pool's windows (local, linear): rows [B·C·OH·OW, k·k] of
/// values per window position added back into an NCHW tensor of shape `x_shape` (padding
/// positions dropped). The backward pass of max- and average-pooling.
pub fn pool_scatter(
    rows: &RingTensor,
    x_shape: &[usize],
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<RingTensor> {
    let [b, c, h, w, oh, ow] = pool_geometry(x_shape, kernel, stride, padding)?;
    let kk = kernel * kernel;
    if rows.len() != b * c * oh * ow * kk {
        return Err(Error::Shape(format!(
            "{} window values for a pool of {x_shape:?} (kernel {kernel}, stride {stride})",
            rows.len()
        )));
    }
    let mut out = RingTensor::zeros(x_shape);
    let (src, dst) = (rows.data(), out.data_mut());
    let mut at = 0;
    for plane in 0..b * c {
        let base = plane * h * w;
        for i in 0..oh {
            for j in 0..ow {
                for di in 0..kernel {
                    for dj in 0..kernel {
                        let (y, xx) = (i * stride + di, j * stride + dj);
                        if y >= padding && y - padding < h && xx >= padding && xx - padding < w {
                            let d = &mut dst[base + (y - padding) * w + (xx - padding)];
                            *d = d.wrapping_add(src[at]);
                        }
                        at += 1;
                    }
                }
            }
        }
    }
    Ok(out)
}

impl<'a> Ctx<'a> {
    /// max of x along `dim`, kept as a dimension of size 1 (keepdim). Exact: the result is
    /// one of the inputs.
    pub fn max_dim(&self, x: &Share, dim: usize) -> Result<Share> {
        Ok(self.max_along(x, dim, false)?.0)
    }

    /// One-hot of x's shape (raw bits, scale 1) marking along `dim` the first index of the
    /// maximum.
    pub fn argmax_dim(&self, x: &Share, dim: usize) -> Result<Share> {
        Ok(self.max_along(x, dim, true)?.1.expect("one-hot requested"))
    }

    /// Both the max (keepdim) and the first-index one-hot argmax, from one tournament.
    pub fn max_argmax_dim(&self, x: &Share, dim: usize) -> Result<(Share, Share)> {
        let (m, h) = self.max_along(x, dim, true)?;
        Ok((m, h.expect("one-hot requested")))
    }

    fn max_along(&self, x: &Share, dim: usize, onehot: bool) -> Result<(Share, Option<Share>)> {
        let shape = x.shape().to_vec();
        let nd = shape.len();
        if dim >= nd || shape[dim] == 0 {
            return Err(Error::Shape(format!(
                "max along dim {dim} of shape {shape:?}"
            )));
        }
        let k = shape[dim];
        let rows = x.len() / k;
        // Move `dim` last so each row is contiguous.
        let perm: Vec<usize> = (0..nd).filter(|&d| d != dim).chain([dim]).collect();
        let moved = if dim + 1 == nd {
            x.0.clone()
        } else {
            x.0.permute(&perm)
        };
        let (vals, hot) = self.max_rows(moved.data(), rows, k, onehot)?;
        let mut max_shape = shape.clone();
        max_shape[dim] = 1;
        // A size-1 axis does not change the element order: the rows are already in place.
        let max = Share(RingTensor::from_vec(&max_shape, vals));
        let hot = hot.map(|h| {
            let moved_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let t = RingTensor::from_vec(&moved_shape, h);
            let mut inv = vec![0; nd];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            Share(if dim + 1 == nd { t } else { t.permute(&inv) })
        });
        Ok((max, hot))
    }

    /// Tournament over `rows` rows of `k` entries (row-major `x`). Returns the row maxima
    /// and, if asked, the [rows, k] first-index one-hots.
    fn max_rows(
        &self,
        x: &[u64],
        rows: usize,
        k: usize,
        onehot: bool,
    ) -> Result<(Vec<u64>, Option<Vec<u64>>)> {
        let p0 = self.party() == 0;
        let one = u64::from(p0);
        let mut vals = x.to_vec();
        let mut m = k;
        // Sizes of the blocks of original entries the survivors cover (the same in every row).
        let mut blocks = vec![1usize; k];
        // None while every block is a single entry whose one-hot is the public 1.
        let mut hot: Option<Vec<u64>> = None;
        while m > 1 {
            let pairs = m / 2;
            let odd = m % 2 == 1;
            let mut left = Vec::with_capacity(rows * pairs);
            let mut right = Vec::with_capacity(rows * pairs);
            for r in 0..rows {
                for p in 0..pairs {
                    left.push(vals[r * m + 2 * p]);
                    right.push(vals[r * m + 2 * p + 1]);
                }
            }
            let left = RingTensor::from_vec(&[rows * pairs], left);
            let right = RingTensor::from_vec(&[rows * pairs], right);
            let diff = Share(left.sub(&right));
            // fss: ReLU's gate gives c·(left − right) with c in its one round, so only the
            // one-hots (from the second level on) take a product round.
            let (c, cdiff) = if self.fixed().protocols == Protocols::Fss {
                let (z, c) = self.relu_with_mask(&diff)?;
                (c, Some(z))
            } else {
                (self.bit_not(&self.ltz(&diff)?), None)
            };
            let cd = c.0.data();

            // One product round: c·(left − right), then c·L and c·R for secret one-hots.
            let (mut xs, mut ys) = match cdiff {
                None => (cd.to_vec(), diff.0.into_data()),
                Some(_) => (Vec::new(), Vec::new()),
            };
            if onehot {
                if let Some(h) = &hot {
                    for r in 0..rows {
                        let mut off = 0;
                        for p in 0..pairs {
                            let w = blocks[2 * p] + blocks[2 * p + 1];
                            xs.extend(std::iter::repeat_n(cd[r * pairs + p], w));
                            ys.extend_from_slice(&h[r * k + off..r * k + off + w]);
                            off += w;
                        }
                    }
                }
            }
            let len = xs.len();
            let product = |xs: Vec<u64>, ys: Vec<u64>| -> Result<Vec<u64>> {
                Ok(self
                    .mul_raw(
                        &Share(RingTensor::from_vec(&[len], xs)),
                        &Share(RingTensor::from_vec(&[len], ys)),
                    )?
                    .0
                    .into_data())
            };
            let prod = match cdiff {
                None => product(xs, ys)?,
                Some(z) if len == 0 => z.0.into_data(),
                Some(z) => {
                    let mut p = z.0.into_data();
                    p.extend(product(xs, ys)?);
                    p
                }
            };
            let prod = &prod[..];

            let next_m = pairs + usize::from(odd);
            let mut next_vals = Vec::with_capacity(rows * next_m);
            for r in 0..rows {
                for p in 0..pairs {
                    let i = r * pairs + p;
                    next_vals.push(right.data()[i].wrapping_add(prod[i]));
                }
                if odd {
                    next_vals.push(vals[r * m + m - 1]);
                }
            }

            if onehot {
                let mut next_hot = vec![0u64; rows * k];
                match &hot {
                    None => {
                        for r in 0..rows {
                            for p in 0..pairs {
                                let c = cd[r * pairs + p];
                                next_hot[r * k + 2 * p] = c;
                                next_hot[r * k + 2 * p + 1] = one.wrapping_sub(c);
                            }
                            if odd {
                                next_hot[r * k + k - 1] = one;
                            }
                        }
                    }
                    Some(h) => {
                        let mut idx = rows * pairs;
                        for r in 0..rows {
                            let mut off = r * k;
                            for p in 0..pairs {
                                let (a, b) = (blocks[2 * p], blocks[2 * p + 1]);
                                next_hot[off..off + a].copy_from_slice(&prod[idx..idx + a]);
                                idx += a;
                                for t in off + a..off + a + b {
                                    next_hot[t] = h[t].wrapping_sub(prod[idx]);
                                    idx += 1;
                                }
                                off += a + b;
                            }
                            let end = r * k + k;
                            next_hot[off..end].copy_from_slice(&h[off..end]);
                        }
                    }
                }
                hot = Some(next_hot);
            }

            let mut next_blocks: Vec<usize> = blocks.chunks(2).map(|c| c.iter().sum()).collect();
            next_blocks.truncate(next_m);
            blocks = next_blocks;
            vals = next_vals;
            m = next_m;
        }
        let hot = onehot.then(|| hot.unwrap_or_else(|| vec![one; rows * k]));
        Ok((vals, hot))
    }

    /// Gather the k×k windows of an NCHW tensor into rows [B·C·OH·OW, k·k] (row-major
    /// window order), with `pad` at the padding positions. Returns (rows, output shape).
    fn windows(
        x: &Share,
        kernel: usize,
        stride: usize,
        padding: usize,
        pad: u64,
    ) -> Result<(Vec<u64>, [usize; 4])> {
        let [b, c, h, w, oh, ow] = pool_geometry(x.shape(), kernel, stride, padding)?;
        let kk = kernel * kernel;
        let data = x.0.data();
        let mut out = Vec::with_capacity(b * c * oh * ow * kk);
        for plane in 0..b * c {
            let base = plane * h * w;
            for i in 0..oh {
                for j in 0..ow {
                    for di in 0..kernel {
                        for dj in 0..kernel {
                            let (y, xx) = (i * stride + di, j * stride + dj);
                            let inside = y >= padding
                                && y - padding < h
                                && xx >= padding
                                && xx - padding < w;
                            out.push(if inside {
                                data[base + (y - padding) * w + (xx - padding)]
                            } else {
                                pad
                            });
                        }
                    }
                }
            }
        }
        Ok((out, [b, c, oh, ow]))
    }

    /// 2-D max-pooling of an NCHW share (square kernel): windows gathered into rows, padding
    /// positions holding a public value below every input (party 0 holds it, the others 0),
    /// then the tournament max over each row: ⌈log2 k²⌉ levels of 9 rounds in 2PC. As in
    /// PyTorch, padding must be at most kernel/2 so every window holds a real entry. Exact.
    pub fn maxpool2d(
        &self,
        x: &Share,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Share> {
        if 2 * padding > kernel {
            return Err(Error::Shape(format!(
                "max-pool padding {padding} exceeds half the kernel {kernel}"
            )));
        }
        let pad = if self.party() == 0 { MAXPOOL_PAD } else { 0 };
        let (rows, out_shape) = Self::windows(x, kernel, stride, padding, pad)?;
        let kk = kernel * kernel;
        let n = rows.len() / kk;
        let (vals, _) = self.max_rows(&rows, n, kk, false)?;
        Ok(Share(RingTensor::from_vec(&out_shape, vals)))
    }

    /// `maxpool2d` and the one-hot [B·C·OH·OW, k·k] (scale 1) of each window's first
    /// maximum, for the backward pass (`pool_scatter`). Same tournament, with the one-hot
    /// products it offers (2·(p + w) more words per level).
    pub fn maxpool2d_with_mask(
        &self,
        x: &Share,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<(Share, Share)> {
        if 2 * padding > kernel {
            return Err(Error::Shape(format!(
                "max-pool padding {padding} exceeds half the kernel {kernel}"
            )));
        }
        let pad = if self.party() == 0 { MAXPOOL_PAD } else { 0 };
        let (rows, out_shape) = Self::windows(x, kernel, stride, padding, pad)?;
        let kk = kernel * kernel;
        let n = rows.len() / kk;
        let (vals, hot) = self.max_rows(&rows, n, kk, true)?;
        let hot = hot.expect("one-hot requested");
        Ok((
            Share(RingTensor::from_vec(&out_shape, vals)),
            Share(RingTensor::from_vec(&[n, kk], hot)),
        ))
    }

    /// 2-D average-pooling of an NCHW share (square kernel, count_include_pad as PyTorch's
    /// default): local window sums (padding counts as 0), then one product by the public
    /// 1/k² (`mul_public`, one truncation; 1 round for N > 2). The constant is encoded in
    /// fixed point, so the result is sum·enc(1/k²) up to the truncation.
    pub fn avgpool2d(
        &self,
        x: &Share,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Share> {
        let (rows, out_shape) = Self::windows(x, kernel, stride, padding, 0)?;
        self.chunk_means(&rows, kernel * kernel, &out_shape)
    }

    /// Global average pooling NCHW → [B, C, 1, 1] (adaptive average pool to 1×1): local sum
    /// over H·W, then the public 1/(H·W) as in `avgpool2d`.
    pub fn global_avgpool(&self, x: &Share) -> Result<Share> {
        let s = x.shape();
        if s.len() != 4 || s[2] * s[3] == 0 {
            return Err(Error::Shape(format!("global average pool of shape {s:?}")));
        }
        self.chunk_means(x.0.data(), s[2] * s[3], &[s[0], s[1], 1, 1])
    }

    /// The mean of each run of `k` consecutive shares in `data`, as a share of `shape`:
    /// local sums, then one product by the public 1/k.
    fn chunk_means(&self, data: &[u64], k: usize, shape: &[usize]) -> Result<Share> {
        let sums: Vec<u64> = data
            .chunks(k)
            .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
            .collect();
        let sums = Share(RingTensor::from_vec(shape, sums));
        self.mul_public(&sums, 1.0 / k as f64)
    }
}
