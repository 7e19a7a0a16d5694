//! Plaintext f64 tensors: the reference path every MPC result is checked against, and the
//! plaintext forward pass of the models. Depends on std and matrixmultiply (dgemm).

/// Row-major f64 tensor.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PlainTensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl PlainTensor {
    pub fn zeros(shape: &[usize]) -> Self {
        PlainTensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    pub fn from_vec(shape: &[usize], data: Vec<f64>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} vs len {}",
            data.len()
        );
        PlainTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[f64] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn reshape(mut self, shape: &[usize]) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.data.len(),
            "reshape {:?} to {shape:?}",
            self.shape
        );
        self.shape = shape.to_vec();
        self
    }

    pub fn map(&self, f: impl Fn(f64) -> f64) -> Self {
        PlainTensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    pub fn zip(&self, o: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        assert_eq!(self.shape, o.shape);
        PlainTensor {
            shape: self.shape.clone(),
            data: self
                .data
                .iter()
                .zip(&o.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        }
    }

    pub fn add(&self, o: &Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
    pub fn sub(&self, o: &Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
    pub fn mul(&self, o: &Self) -> Self {
        self.zip(o, |a, b| a * b)
    }

    /// Largest absolute elementwise difference.
    pub fn max_abs_diff(&self, o: &Self) -> f64 {
        assert_eq!(
            self.shape, o.shape,
            "comparing shapes {:?} and {:?}",
            self.shape, o.shape
        );
        self.data
            .iter()
            .zip(&o.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// [m×k]·[k×n] with matrixmultiply's dgemm.
    pub fn matmul(&self, w: &Self) -> Self {
        assert!(
            self.shape.len() == 2 && w.shape.len() == 2 && self.shape[1] == w.shape[0],
            "matmul {:?}·{:?}",
            self.shape,
            w.shape
        );
        let (m, k, n) = (self.shape[0], self.shape[1], w.shape[1]);
        PlainTensor {
            shape: vec![m, n],
            data: matmul_slices(m, k, n, &self.data, &w.data),
        }
    }

    pub fn transpose2(&self) -> Self {
        assert_eq!(self.shape.len(), 2);
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        PlainTensor {
            shape: vec![c, r],
            data: out,
        }
    }

    /// NCHW convolution, x [B,C,H,W] with w [O,C,KH,KW], zero padding: im2col, then
    /// matrixmultiply's dgemm (the reference forward of full-size models needs the speed).
    pub fn conv2d(&self, w: &Self, stride: usize, padding: usize) -> Self {
        let (b, c, h, wd) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        let (o, c2, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        assert_eq!(c, c2, "conv2d channels {c} vs {c2}");
        let oh = (h + 2 * padding - kh) / stride + 1;
        let ow = (wd + 2 * padding - kw) / stride + 1;
        let (kdim, pix) = (c * kh * kw, oh * ow);
        let mut out = vec![0.0; b * o * pix];
        let mut cols = vec![0.0; kdim * pix];
        for bi in 0..b {
            for ci in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = (ci * kh + ky) * kw + kx;
                        for y in 0..oh {
                            for x in 0..ow {
                                let iy = (y * stride + ky) as isize - padding as isize;
                                let ix = (x * stride + kx) as isize - padding as isize;
                                cols[row * pix + y * ow + x] = if iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < h
                                    && (ix as usize) < wd
                                {
                                    self.data[((bi * c + ci) * h + iy as usize) * wd + ix as usize]
                                } else {
                                    0.0
                                };
                            }
                        }
                    }
                }
            }
            // SAFETY: w is [o × kdim], cols [kdim × pix], the output block [o × pix], all
            // row-major with the strides given.
            unsafe {
                matrixmultiply::dgemm(
                    o,
                    kdim,
                    pix,
                    1.0,
                    w.data.as_ptr(),
                    kdim as isize,
                    1,
                    cols.as_ptr(),
                    pix as isize,
                    1,
                    0.0,
                    out[bi * o * pix..].as_mut_ptr(),
                    pix as isize,
                    1,
                );
            }
        }
        PlainTensor {
            shape: vec![b, o, oh, ow],
            data: out,
        }
    }
}

/// Plaintext layer operations of the reference forward pass.
impl PlainTensor {
    pub fn relu(&self) -> Self {
        self.map(|v| v.max(0.0))
    }

    /// Add a per-channel bias to an NCHW tensor, or a per-column bias to [B, n].
    pub fn add_bias(&self, b: &Self) -> Self {
        let c = b.len();
        let inner: usize = if self.shape.len() == 4 {
            self.shape[2] * self.shape[3]
        } else {
            1
        };
        assert_eq!(self.shape[1], c, "bias of {c} for shape {:?}", self.shape);
        let mut out = self.clone();
        for (i, v) in out.data.iter_mut().enumerate() {
            *v += b.data[(i / inner) % c];
        }
        out
    }

    /// Windows of an NCHW tensor as rows: [B·C·OH·OW, k·k], out-of-range positions `pad`.
    pub fn pool_windows(
        &self,
        k: usize,
        stride: usize,
        padding: usize,
        pad: f64,
    ) -> (Self, [usize; 4]) {
        let (b, c, h, w) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        let oh = (h + 2 * padding - k) / stride + 1;
        let ow = (w + 2 * padding - k) / stride + 1;
        let mut rows = Vec::with_capacity(b * c * oh * ow * k * k);
        for bc in 0..b * c {
            for y in 0..oh {
                for x in 0..ow {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (y * stride + ky) as isize - padding as isize;
                            let ix = (x * stride + kx) as isize - padding as isize;
                            rows.push(
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    self.data[(bc * h + iy as usize) * w + ix as usize]
                                } else {
                                    pad
                                },
                            );
                        }
                    }
                }
            }
        }
        (
            PlainTensor {
                shape: vec![b * c * oh * ow, k * k],
                data: rows,
            },
            [b, c, oh, ow],
        )
    }

    pub fn maxpool2d(&self, k: usize, stride: usize, padding: usize) -> Self {
        let (rows, out) = self.pool_windows(k, stride, padding, f64::NEG_INFINITY);
        let data = rows
            .data
            .chunks(k * k)
            .map(|r| r.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
            .collect();
        PlainTensor {
            shape: out.to_vec(),
            data,
        }
    }

    /// Average pool counting padded positions (PyTorch's default count_include_pad).
    pub fn avgpool2d(&self, k: usize, stride: usize, padding: usize) -> Self {
        let (rows, out) = self.pool_windows(k, stride, padding, 0.0);
        let data = rows
            .data
            .chunks(k * k)
            .map(|r| r.iter().sum::<f64>() / (k * k) as f64)
            .collect();
        PlainTensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// x [m×k] · w [k×n], row-major slices, with matrixmultiply's dgemm: for callers that
/// hold the operands as parts of larger buffers (a batched matmul's matrices, a model's
/// weight), so that they need no copy of them.
pub fn matmul_slices(m: usize, k: usize, n: usize, x: &[f64], w: &[f64]) -> Vec<f64> {
    assert!(
        x.len() == m * k && w.len() == k * n,
        "matmul of {} by {} words as {m}x{k} by {k}x{n}",
        x.len(),
        w.len()
    );
    let mut out = vec![0.0; m * n];
    // SAFETY: the slices hold m*k and k*n elements (checked above) and out m*n, with the
    // row-major strides passed.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            n as isize,
            1,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    out
}
