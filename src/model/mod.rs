//! Layer graphs of the built-in models, with seeded synthetic weights, and their two
//! interpreters: `forward_plain` (f64 reference) and `forward_mpc` (protocol calls on a
//! `Ctx`). Depends on proto and ring; never on transport or schedulers.
//!
//! Weights belong to the model owner, party 0, which secret-shares them for free (PRZS)
//! when `Weights::Private`; with `Weights::Public` every party knows them and linear layers
//! are local products. Inputs belong to the data owner, the last party.

pub mod transformer;
pub mod zoo;

pub use transformer::Block;

use crate::error::{Error, Result};
use crate::proto::{Ctx, LinearOp, Share};
use crate::ring::{PlainTensor, RingTensor};

/// Who knows the model weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// Secret-shared by party 0; linear layers use Beaver triples.
    Private,
    /// Known to every party; linear layers are local products.
    Public,
}

impl std::str::FromStr for Weights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "private" => Ok(Weights::Private),
            "public" => Ok(Weights::Public),
            _ => Err(Error::Config(format!(
                "weights must be 'private' or 'public', got '{s}'"
            ))),
        }
    }
}

/// One layer. BatchNorm is folded into the preceding conv when the model is built.
#[derive(Clone, Debug)]
pub enum Layer {
    /// NCHW conv with weight [O,C,KH,KW] and bias [O].
    Conv {
        w: PlainTensor,
        b: PlainTensor,
        stride: usize,
        padding: usize,
    },
    /// x [B, in] · w [in, out] + b [out].
    Linear {
        w: PlainTensor,
        b: PlainTensor,
    },
    Relu,
    MaxPool {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// [B, C, H, W] -> [B, C·H·W].
    Flatten,
    /// body(x) + shortcut(x) (identity when the shortcut is empty), as in ResNets.
    Residual {
        body: Vec<Layer>,
        shortcut: Vec<Layer>,
    },
    /// A BERT encoder block on [B, S, H].
    Transformer(Box<Block>),
}

/// A built-in model: its layers and the per-sample input shape.
#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub input_shape: Vec<usize>,
    pub layers: Vec<Layer>,
}

impl Model {
    /// Input shape for a batch.
    pub fn batch_shape(&self, batch: usize) -> Vec<usize> {
        let mut s = vec![batch];
        s.extend_from_slice(&self.input_shape);
        s
    }

    pub fn forward_plain(&self, x: &PlainTensor) -> PlainTensor {
        forward_plain(&self.layers, x)
    }

    pub fn forward_mpc(&self, ctx: &Ctx, x: &Share, weights: Weights) -> Result<Share> {
        forward_mpc(ctx, &self.layers, x, weights)
    }
}

pub fn forward_plain(layers: &[Layer], x: &PlainTensor) -> PlainTensor {
    layers.iter().fold(x.clone(), |x, l| l.forward_plain(&x))
}

pub fn forward_mpc(ctx: &Ctx, layers: &[Layer], x: &Share, weights: Weights) -> Result<Share> {
    let mut x = x.clone();
    for l in layers {
        x = l.forward_mpc(ctx, &x, weights)?;
    }
    Ok(x)
}

/// Replicate a per-channel (or per-column) bias over an activation's shape.
pub fn broadcast_bias(b: &RingTensor, shape: &[usize]) -> RingTensor {
    let c = b.len();
    let inner: usize = shape[2..].iter().product();
    let n: usize = shape.iter().product();
    RingTensor::from_vec(shape, (0..n).map(|i| b.data()[(i / inner) % c]).collect())
}

impl Layer {
    /// Output shape for an input of shape `x` (shapes are public).
    pub fn out_shape(&self, x: &[usize]) -> Vec<usize> {
        let pool = |k: usize, s: usize, p: usize| {
            vec![
                x[0],
                x[1],
                crate::kernels::conv_out(x[2], k, s, p),
                crate::kernels::conv_out(x[3], k, s, p),
            ]
        };
        match self {
            Layer::Conv {
                w, stride, padding, ..
            } => {
                let (kh, kw) = (w.shape()[2], w.shape()[3]);
                vec![
                    x[0],
                    w.shape()[0],
                    crate::kernels::conv_out(x[2], kh, *stride, *padding),
                    crate::kernels::conv_out(x[3], kw, *stride, *padding),
                ]
            }
            Layer::Linear { w, .. } => vec![x[0], w.shape()[1]],
            Layer::Relu => x.to_vec(),
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            }
            | Layer::AvgPool {
                kernel,
                stride,
                padding,
            } => pool(*kernel, *stride, *padding),
            Layer::Flatten => vec![x[0], x[1..].iter().product()],
            Layer::Residual { body, .. } => body.iter().fold(x.to_vec(), |s, l| l.out_shape(&s)),
            Layer::Transformer(_) => x.to_vec(),
        }
    }

    /// The product, weight and bias of a linear or conv layer.
    pub fn linear_parts(&self) -> Option<(LinearOp, &PlainTensor, &PlainTensor)> {
        match self {
            Layer::Conv {
                w,
                b,
                stride,
                padding,
            } => Some((
                LinearOp::Conv2d {
                    stride: *stride,
                    padding: *padding,
                },
                w,
                b,
            )),
            Layer::Linear { w, b } => Some((LinearOp::Matmul, w, b)),
            _ => None,
        }
    }

    pub fn forward_plain(&self, x: &PlainTensor) -> PlainTensor {
        match self {
            Layer::Conv {
                w,
                b,
                stride,
                padding,
            } => x.conv2d(w, *stride, *padding).add_bias(b),
            Layer::Linear { w, b } => x.matmul(w).add_bias(b),
            Layer::Relu => x.relu(),
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => x.maxpool2d(*kernel, *stride, *padding),
            Layer::AvgPool {
                kernel,
                stride,
                padding,
            } => x.avgpool2d(*kernel, *stride, *padding),
            Layer::Flatten => {
                let b = x.shape()[0];
                x.clone().reshape(&[b, x.len() / b])
            }
            Layer::Residual { body, shortcut } => {
                forward_plain(body, x).add(&forward_plain(shortcut, x))
            }
            Layer::Transformer(b) => b.forward_plain(x),
        }
    }

    /// The layer as protocol calls. Weights are shared by party 0 at use (free: PRZS).
    pub fn forward_mpc(&self, ctx: &Ctx, x: &Share, weights: Weights) -> Result<Share> {
        match self {
            Layer::Conv {
                w,
                b,
                stride,
                padding,
            } => linear_layer(
                ctx,
                LinearOp::Conv2d {
                    stride: *stride,
                    padding: *padding,
                },
                x,
                w,
                b,
                weights,
            ),
            Layer::Linear { w, b } => linear_layer(ctx, LinearOp::Matmul, x, w, b, weights),
            Layer::Relu => ctx.relu(x),
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => ctx.maxpool2d(x, *kernel, *stride, *padding),
            Layer::AvgPool {
                kernel,
                stride,
                padding,
            } => ctx.avgpool2d(x, *kernel, *stride, *padding),
            Layer::Flatten => {
                let b = x.shape()[0];
                x.reshape(&[b, x.len() / b])
            }
            Layer::Residual { body, shortcut } => {
                let y = forward_mpc(ctx, body, x, weights)?;
                let s = forward_mpc(ctx, shortcut, x, weights)?;
                if y.shape() != s.shape() {
                    return Err(Error::Shape(format!(
                        "residual body {:?} vs shortcut {:?}",
                        y.shape(),
                        s.shape()
                    )));
                }
                Ok(y.add(&s))
            }
            Layer::Transformer(b) => b.forward_mpc(ctx, x, &SerialExec { weights }),
        }
    }
}

/// Transformer linears as one Beaver product each, row-wise steps on the whole tensor.
struct SerialExec {
    weights: Weights,
}

impl transformer::Exec for SerialExec {
    fn linear(
        &self,
        ctx: &Ctx,
        _slot: usize,
        x: &Share,
        w: &PlainTensor,
        b: &PlainTensor,
    ) -> Result<Share> {
        linear_layer(ctx, LinearOp::Matmul, x, w, b, self.weights)
    }
    fn rows(
        &self,
        ctx: &Ctx,
        x: &Share,
        f: &(dyn Fn(&Ctx, &Share) -> Result<Share> + Sync),
    ) -> Result<Share> {
        f(ctx, x)
    }
}

/// Linear or conv layer plus bias, with private or public weights.
pub fn linear_layer(
    ctx: &Ctx,
    op: LinearOp,
    x: &Share,
    w: &PlainTensor,
    b: &PlainTensor,
    weights: Weights,
) -> Result<Share> {
    let fp = ctx.fixed();
    let bias_enc = fp.encode_tensor(b);
    match weights {
        Weights::Private => {
            let ws = ctx.share_plain(0, Some(w), w.shape())?;
            let bs = ctx.share_input(0, Some(&bias_enc), bias_enc.shape())?;
            let y = ctx.linear_owned(op, x, ws)?;
            Ok(y.add(&Share(broadcast_bias(&bs.0, y.shape()))))
        }
        Weights::Public => {
            let y = ctx.linear_public(op, x, &fp.encode_tensor(w))?;
            Ok(ctx.add_public(&y, &broadcast_bias(&bias_enc, y.shape())))
        }
    }
}
