//! A BERT encoder block (post-LayerNorm, as BERT): multi-head self-attention and a GeLU
//! feed-forward network, each followed by a residual add and LayerNorm. Depends on proto,
//! ring.
//!
//! Activations are [B, S, H] between blocks. The block is written once, over an `Exec`
//! that decides how its linear layers run (Beaver now, or prepared ahead and chunked by a
//! scheduler) and how its row-wise steps are split into lanes; the protocol calls are the
//! same in every case. The LayerNorm affine parameters γ, β are public (the reference's
//! LayerNorm, protocols.md §4.1, takes them public); every matrix is private or public by
//! `Weights`. GeLU is the engine's default approximation (PUMA piecewise polynomial), and
//! the plaintext reference uses the exact erf GeLU, so `max_abs_err` includes the
//! approximation (≤ 0.02 per GeLU, see proto::nn).

use crate::error::Result;
use crate::proto::{Ctx, Share};
use crate::ring::{PlainTensor, RingTensor};

/// Weights of one encoder block. Matrices are [in, out].
#[derive(Clone, Debug)]
pub struct Block {
    pub heads: usize,
    /// Fused Q, K, V projection [H, 3H] and its bias [3H].
    pub wqkv: PlainTensor,
    pub bqkv: PlainTensor,
    pub wo: PlainTensor,
    pub bo: PlainTensor,
    pub w1: PlainTensor,
    pub b1: PlainTensor,
    pub w2: PlainTensor,
    pub b2: PlainTensor,
    pub ln1: (PlainTensor, PlainTensor),
    pub ln2: (PlainTensor, PlainTensor),
}

/// How a block's linear layers and row-wise steps run.
pub trait Exec: Sync {
    /// x [T, in] · w + b for the block's `slot`-th linear layer (0: QKV, 1: output
    /// projection, 2: FFN up, 3: FFN down).
    fn linear(
        &self,
        ctx: &Ctx,
        slot: usize,
        x: &Share,
        w: &PlainTensor,
        b: &PlainTensor,
    ) -> Result<Share>;
    /// Apply `f` to `x`, possibly split along axis 0 into lanes.
    fn rows(
        &self,
        ctx: &Ctx,
        x: &Share,
        f: &(dyn Fn(&Ctx, &Share) -> Result<Share> + Sync),
    ) -> Result<Share>;
}

/// f64 erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7): for the exact GeLU reference.
pub fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

fn layernorm_plain(x: &PlainTensor, g: &PlainTensor, b: &PlainTensor) -> PlainTensor {
    let h = g.len();
    let mut out = x.clone();
    for row in out.data_mut().chunks_mut(h) {
        let mu = row.iter().sum::<f64>() / h as f64;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / h as f64;
        let r = 1.0 / (var + 1e-5).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - mu) * r * g.data()[j] + b.data()[j];
        }
    }
    out
}

impl Block {
    pub fn hidden(&self) -> usize {
        self.wo.shape()[0]
    }

    pub fn forward_plain(&self, x: &PlainTensor) -> PlainTensor {
        let (bsz, s, h) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let d = h / self.heads;
        let x2 = x.clone().reshape(&[bsz * s, h]);
        let qkv = x2.matmul(&self.wqkv).add_bias(&self.bqkv);
        let mut ctxv = PlainTensor::zeros(&[bsz * s, h]);
        let scale = 1.0 / (d as f64).sqrt();
        for bi in 0..bsz {
            for hd in 0..self.heads {
                let col = |off: usize| {
                    PlainTensor::from_vec(
                        &[s, d],
                        (0..s * d)
                            .map(|i| qkv.data()[(bi * s + i / d) * 3 * h + off + hd * d + i % d])
                            .collect(),
                    )
                };
                let (q, k, v) = (col(0), col(h), col(2 * h));
                let mut sc = q.matmul(&k.transpose2()).map(|v| v * scale);
                for row in sc.data_mut().chunks_mut(s) {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    row.iter_mut().zip(&e).for_each(|(r, e)| *r = e / z);
                }
                let o = sc.matmul(&v);
                for i in 0..s * d {
                    ctxv.data_mut()[(bi * s + i / d) * h + hd * d + i % d] = o.data()[i];
                }
            }
        }
        let attn = ctxv.matmul(&self.wo).add_bias(&self.bo);
        let y = layernorm_plain(&x2.add(&attn), &self.ln1.0, &self.ln1.1);
        let f = y
            .matmul(&self.w1)
            .add_bias(&self.b1)
            .map(|v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)));
        let f = f.matmul(&self.w2).add_bias(&self.b2);
        layernorm_plain(&y.add(&f), &self.ln2.0, &self.ln2.1).reshape(&[bsz, s, h])
    }

    /// Self-attention of the samples in `qkv` [b, S, 3H]: every head's scores in one
    /// batched Beaver round, one softmax over all rows, every head's P·V in one round.
    pub fn attention(&self, ctx: &Ctx, qkv: &Share) -> Result<Share> {
        let (bsz, s, h3) = (qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]);
        let h = h3 / 3;
        let d = h / self.heads;
        let q3 = &qkv.0;
        let pick = |bi: usize, off: usize, hd: usize| -> RingTensor {
            RingTensor::from_vec(
                &[s, d],
                (0..s * d)
                    .map(|i| q3.data()[(bi * s + i / d) * h3 + off + hd * d + i % d])
                    .collect(),
            )
        };
        let mut qs = Vec::new();
        let mut kts = Vec::new();
        let mut vs = Vec::new();
        for bi in 0..bsz {
            for hd in 0..self.heads {
                qs.push(Share(pick(bi, 0, hd)));
                kts.push(Share(pick(bi, h, hd).transpose2()));
                vs.push(Share(pick(bi, 2 * h, hd)));
            }
        }
        let scores = ctx.matmul_many(&qs.iter().zip(&kts).collect::<Vec<_>>())?;
        let n = scores.len();
        let stacked = Share(RingTensor::concat(
            0,
            &scores.into_iter().map(|s| s.0).collect::<Vec<_>>(),
        ));
        let scaled = ctx.mul_public(&stacked, 1.0 / (d as f64).sqrt())?;
        let p = ctx.softmax(&scaled, 1)?;
        let ps: Vec<Share> = p.0.split_axis(0, n).into_iter().map(Share).collect();
        let outs = ctx.matmul_many(&ps.iter().zip(&vs).collect::<Vec<_>>())?;
        let mut out = vec![0u64; bsz * s * h];
        for (idx, o) in outs.iter().enumerate() {
            let (bi, hd) = (idx / self.heads, idx % self.heads);
            for i in 0..s * d {
                out[(bi * s + i / d) * h + hd * d + i % d] = o.0.data()[i];
            }
        }
        Ok(Share(RingTensor::from_vec(&[bsz, s, h], out)))
    }

    /// The block over `exec`. x is [B, S, H].
    pub fn forward_mpc(&self, ctx: &Ctx, x: &Share, exec: &dyn Exec) -> Result<Share> {
        let (bsz, s, h) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let fp = ctx.fixed();
        let x2 = x.reshape(&[bsz * s, h])?;
        let qkv = exec
            .linear(ctx, 0, &x2, &self.wqkv, &self.bqkv)?
            .reshape(&[bsz, s, 3 * h])?;
        let attn = exec
            .rows(ctx, &qkv, &|c, q| self.attention(c, q))?
            .reshape(&[bsz * s, h])?;
        let o = exec.linear(ctx, 1, &attn, &self.wo, &self.bo)?;
        let (g1, b1) = (fp.encode_tensor(&self.ln1.0), fp.encode_tensor(&self.ln1.1));
        let y = exec.rows(ctx, &x2.add(&o), &|c, r| c.layernorm(r, &g1, &b1, 1e-5))?;
        let f = exec.linear(ctx, 2, &y, &self.w1, &self.b1)?;
        let f = exec.rows(ctx, &f, &|c, r| c.gelu(r))?;
        let f = exec.linear(ctx, 3, &f, &self.w2, &self.b2)?;
        let (g2, b2) = (fp.encode_tensor(&self.ln2.0), fp.encode_tensor(&self.ln2.1));
        let z = exec.rows(ctx, &y.add(&f), &|c, r| c.layernorm(r, &g2, &b2, 1e-5))?;
        z.reshape(&[bsz, s, h])
    }

    /// (weight, bias, input columns) of the block's four linear layers, in slot order.
    pub fn linears(&self) -> [(&PlainTensor, &PlainTensor); 4] {
        [
            (&self.wqkv, &self.bqkv),
            (&self.wo, &self.bo),
            (&self.w1, &self.b1),
            (&self.w2, &self.b2),
        ]
    }
}
