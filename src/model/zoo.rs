//! Built-in models as graphs, with seeded synthetic weights (rand_xoshiro: synthetic data
//! only, never secret material). Depends on model::graph and ring.
//!
//! Weights are He-uniform (a = sqrt(6 / fan_in)) so that activations keep unit-order
//! magnitude through ReLU stacks: fixed-point values stay far from the ring's limits and the
//! 2-party truncation's failure probability (~|v|/2^31 per product) stays negligible.

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::graph::{Graph, GraphBuilder, Op, TensorId};
use crate::error::{Error, Result};
use crate::ring::PlainTensor;

/// Names accepted by `build`. A `-tiny` suffix on resnet_cifar, vgg16 and resnet50 gives
/// the same architecture at 32×32 input with narrow layers, for tests and quick runs.
pub const MODELS: &[&str] = &[
    "lenet",
    "resnet_cifar",
    "resnet_cifar-tiny",
    "vgg16",
    "vgg16-tiny",
    "resnet50",
    "resnet50-tiny",
    "bert-base",
    "bert-small",
    "resnet18_cifar",
    "W1",
    "W2",
    "W3",
    "W4",
    "W5",
    "W6",
    "W7",
];

/// Small models for training on the 8×8 digits (`mpc-pipe train`), also accepted by
/// `build`. Kept out of `MODELS`, which the inference sweeps and tests iterate over.
pub const TRAIN_MODELS: &[&str] = &["digits-cnn", "digits-mlp"];

/// Default sequence lengths of the BERT models.
pub const BERT_BASE_SEQ: usize = 128;
pub const BERT_SMALL_SEQ: usize = 16;

/// `v` rounded to the nearest f32 (weights as ONNX files hold them).
fn f32_value(v: f64) -> f64 {
    v as f32 as f64
}

/// Seeded generator of synthetic weights and inputs.
pub struct Synth(Xoshiro256PlusPlus);

impl Synth {
    pub fn new(seed: u64) -> Self {
        Synth(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi), rounded to f32 (so a model's weights are stored as f32:
    /// model::constant).
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> PlainTensor {
        let n = shape.iter().product();
        PlainTensor::from_vec(
            shape,
            (0..n)
                .map(|_| f32_value(lo + (hi - lo) * self.unit()))
                .collect(),
        )
    }
    pub fn he(&mut self, shape: &[usize], fan_in: usize) -> PlainTensor {
        let a = (6.0 / fan_in as f64).sqrt();
        self.tensor(shape, -a, a)
    }
}

/// A graph under construction with the generator of its weights: the zoo's vocabulary.
struct Net {
    b: GraphBuilder,
    s: Synth,
}

impl Net {
    fn new(name: &str, input: &[usize], seed: u64) -> Net {
        Net {
            b: GraphBuilder::new(name, input),
            s: Synth::new(seed),
        }
    }
    fn node(&mut self, op: Op, inputs: &[TensorId]) -> TensorId {
        self.b
            .node("", op, inputs)
            .expect("built-in models are consistent")
    }
    fn cin(&self, x: TensorId) -> usize {
        self.b.shape(x)[1]
    }
    /// A conv (He-uniform) with bias; `gain` scales its weights: the last conv of a
    /// residual body uses a small gain (as Fixup/zero-init-residual do in place of
    /// BatchNorm) so that activations do not double with every block and stay far from the
    /// fixed-point limits.
    fn conv_gain(
        &mut self,
        x: TensorId,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        gain: f64,
    ) -> TensorId {
        let cin = self.cin(x);
        let w = self
            .s
            .he(&[cout, cin, k, k], cin * k * k)
            .map(|v| f32_value(v * gain));
        let b = self.s.tensor(&[cout], -0.05, 0.05);
        let (w, b) = (self.b.constant("w", w), self.b.constant("b", b));
        self.node(Op::Conv2d { stride, padding }, &[x, w, b])
    }
    fn conv(
        &mut self,
        x: TensorId,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> TensorId {
        self.conv_gain(x, cout, k, stride, padding, 1.0)
    }
    /// x [.., fin] · w [fin, fout] + b, He-uniform.
    fn linear(&mut self, x: TensorId, fout: usize) -> TensorId {
        let fin = *self.b.shape(x).last().unwrap();
        let w = self.s.he(&[fin, fout], fin);
        let b = self.s.tensor(&[fout], -0.05, 0.05);
        self.matmul_bias(x, w, b)
    }
    fn matmul_bias(&mut self, x: TensorId, w: PlainTensor, b: PlainTensor) -> TensorId {
        let (w, b) = (self.b.constant("w", w), self.b.constant("b", b));
        let y = self.node(Op::MatMul, &[x, w]);
        self.node(Op::Add, &[y, b])
    }
    fn relu(&mut self, x: TensorId) -> TensorId {
        self.node(Op::Relu, &[x])
    }
    fn maxpool(&mut self, x: TensorId, kernel: usize, stride: usize, padding: usize) -> TensorId {
        self.node(
            Op::MaxPool {
                kernel,
                stride,
                padding,
            },
            &[x],
        )
    }
    fn avgpool(&mut self, x: TensorId, kernel: usize) -> TensorId {
        self.node(
            Op::AvgPool {
                kernel,
                stride: kernel,
                padding: 0,
            },
            &[x],
        )
    }
    /// One stage of `blocks` basic residual blocks at `c` channels (He et al. 2016): the
    /// first block of every stage but the first halves the resolution, and a 1×1 conv
    /// matches the shortcut where the shape changes.
    fn stage(&mut self, mut x: TensorId, stage: usize, c: usize, blocks: usize) -> TensorId {
        for blk in 0..blocks {
            let stride = if stage > 0 && blk == 0 { 2 } else { 1 };
            let cin = self.cin(x);
            let y = self.conv(x, c, 3, stride, 1);
            let y = self.relu(y);
            let y = self.conv_gain(y, c, 3, 1, 1, 0.3);
            let short = if stride != 1 || cin != c {
                self.conv(x, c, 1, stride, 0)
            } else {
                x
            };
            let s = self.add(y, short);
            x = self.relu(s);
        }
        x
    }
    fn flatten(&mut self, x: TensorId) -> TensorId {
        self.node(Op::Flatten { axis: 1 }, &[x])
    }
    fn add(&mut self, a: TensorId, b: TensorId) -> TensorId {
        self.node(Op::Add, &[a, b])
    }
    fn finish(self, out: TensorId) -> Graph {
        self.b.finish(out).expect("built-in models are consistent")
    }
}

/// Build a built-in model by name for a batch of `batch`, weights drawn from `seed`.
pub fn build(name: &str, seed: u64, batch: usize) -> Result<Graph> {
    build_with(name, seed, None, batch)
}

/// The per-sample input shape of a built-in model (`seq_len`: a BERT model's sequence
/// length, `None` for its default).
pub fn input_shape(name: &str, seq_len: Option<usize>) -> Result<Vec<usize>> {
    Ok(match name {
        "lenet" => vec![1, 28, 28],
        "resnet_cifar" | "resnet_cifar-tiny" | "vgg16-tiny" | "resnet50-tiny" => vec![3, 32, 32],
        "vgg16" | "resnet50" => vec![3, 224, 224],
        "bert-base" => vec![seq_len.unwrap_or(BERT_BASE_SEQ), 768],
        "bert-small" => vec![seq_len.unwrap_or(BERT_SMALL_SEQ), 64],
        "resnet18_cifar" | "W5" => vec![3, 32, 32],
        // The peers comparison's workloads (bench-configs/peers.toml, issue 20): the
        // same operations CrypTen runs in scripts/compare-crypten.sh.
        "W1" => vec![1024],
        "W2" => vec![1 << 20],
        "W3" => vec![64, 56, 56],
        "W4" => vec![1, 28, 28],
        "W6" => vec![BERT_BASE_SEQ, 768],
        "W7" => vec![3, 224, 224],
        "digits-cnn" | "digits-mlp" => vec![1, 8, 8],
        other => {
            return Err(Error::Config(format!(
                "unknown model '{other}'; built-in models: {}, {}",
                MODELS.join(", "),
                TRAIN_MODELS.join(", ")
            )))
        }
    })
}

/// As `build`, with the sequence length of a BERT model (`None`: its default).
pub fn build_with(name: &str, seed: u64, seq_len: Option<usize>, batch: usize) -> Result<Graph> {
    let is_bert = name.starts_with("bert");
    if seq_len.is_some() && !is_bert {
        return Err(Error::Config(format!(
            "--seq-len applies to the BERT models, not to '{name}'"
        )));
    }
    if seq_len == Some(0) {
        return Err(Error::Config("--seq-len must be at least 1".into()));
    }
    if batch == 0 {
        return Err(Error::Config("--batch must be at least 1".into()));
    }
    let mut shape = vec![batch];
    shape.extend(input_shape(name, seq_len)?);
    let net = Net::new(name, &shape, seed);
    Ok(match name {
        "lenet" => lenet(net),
        "resnet_cifar" => resnet_cifar(net, 3),
        "resnet_cifar-tiny" => resnet_cifar(net, 1),
        "vgg16" => vgg16(net, 224, 1),
        "vgg16-tiny" => vgg16(net, 32, 16),
        "resnet50" => resnet50(net, 224, 1),
        "resnet50-tiny" => resnet50(net, 32, 16),
        "bert-base" => bert(net, 12, 12, 3072),
        "bert-small" => bert(net, 2, 2, 256),
        "resnet18_cifar" | "W5" => resnet18_cifar(net),
        "W1" => w1_matmul(net),
        "W2" => w2_relu(net),
        "W3" => w3_conv(net),
        "W4" => lenet(net),
        "W6" => bert(net, 1, 12, 3072),
        "W7" => vgg16(net, 224, 1),
        "digits-cnn" => digits_cnn(net),
        "digits-mlp" => digits_mlp(net),
        _ => unreachable!("input_shape knows every model"),
    })
}

/// The default model of `mpc-pipe train`: a small CNN for 1×8×8 digits (the ONNX
/// fixture's architecture without its batch norm): conv 8, relu, maxpool, conv 16, relu,
/// avgpool, linear 10.
fn digits_cnn(mut n: Net) -> Graph {
    let x = n.b.input();
    let x = n.conv(x, 8, 3, 1, 1);
    let x = n.relu(x);
    let x = n.maxpool(x, 2, 2, 0);
    let x = n.conv(x, 16, 3, 1, 1);
    let x = n.relu(x);
    let x = n.avgpool(x, 2);
    let x = n.flatten(x);
    let x = n.linear(x, 10);
    n.finish(x)
}

/// An MLP for 1×8×8 digits: 64 -> 64 (relu) -> 10.
fn digits_mlp(mut n: Net) -> Graph {
    let x = n.b.input();
    let x = n.flatten(x);
    let x = n.linear(x, 64);
    let x = n.relu(x);
    let x = n.linear(x, 10);
    n.finish(x)
}

/// LeNet-style MNIST CNN: 1×28×28 -> 10 classes.
fn lenet(mut n: Net) -> Graph {
    let x = n.b.input();
    let x = n.conv(x, 6, 5, 1, 0);
    let x = n.relu(x);
    let x = n.maxpool(x, 2, 2, 0);
    let x = n.conv(x, 16, 5, 1, 0);
    let x = n.relu(x);
    let x = n.maxpool(x, 2, 2, 0);
    let x = n.flatten(x);
    let x = n.linear(x, 120);
    let x = n.relu(x);
    let x = n.linear(x, 84);
    let x = n.relu(x);
    let x = n.linear(x, 10);
    n.finish(x)
}

/// CIFAR-10 ResNet (He et al. 2016, §4.2): 3 stages of `blocks` basic blocks at 16/32/64
/// channels on 32×32 input; 3 blocks is ResNet-20. BatchNorm is folded into the convs.
fn resnet_cifar(mut n: Net, blocks: usize) -> Graph {
    let x = n.b.input();
    let x = n.conv(x, 16, 3, 1, 1);
    let mut x = n.relu(x);
    for (stage, &c) in [16usize, 32, 64].iter().enumerate() {
        x = n.stage(x, stage, c, blocks);
    }
    let x = n.avgpool(x, 8);
    let x = n.flatten(x);
    let x = n.linear(x, 10);
    n.finish(x)
}

/// VGG16 (Simonyan & Zisserman 2015, configuration D) at `size`×`size` input, widths
/// divided by `div`; 1000 classes at full size, 10 when shrunk.
fn vgg16(mut n: Net, size: usize, div: usize) -> Graph {
    let cfg: [&[usize]; 5] = [
        &[64, 64],
        &[128, 128],
        &[256, 256, 256],
        &[512, 512, 512],
        &[512, 512, 512],
    ];
    let mut x = n.b.input();
    for stage in cfg {
        for &c in stage {
            x = n.conv(x, c / div, 3, 1, 1);
            x = n.relu(x);
        }
        x = n.maxpool(x, 2, 2, 0);
    }
    let _ = size;
    let (hidden, classes) = if div == 1 {
        (4096, 1000)
    } else {
        (4096 / (4 * div), 10)
    };
    let x = n.flatten(x);
    let x = n.linear(x, hidden);
    let x = n.relu(x);
    let x = n.linear(x, hidden);
    let x = n.relu(x);
    let x = n.linear(x, classes);
    n.finish(x)
}

/// ResNet50 (He et al. 2016, bottleneck blocks [3, 4, 6, 3]) at `size`×`size` input, widths
/// divided by `div`. BatchNorm folded into the convs.
fn resnet50(mut n: Net, size: usize, div: usize) -> Graph {
    let w0 = 64 / div;
    let x = n.b.input();
    let x = n.conv(x, w0, 7, 2, 3);
    let x = n.relu(x);
    let mut x = n.maxpool(x, 3, 2, 1);
    for (stage, &blocks) in [3usize, 4, 6, 3].iter().enumerate() {
        let w = (64 << stage) / div;
        for blk in 0..blocks {
            let stride = if stage > 0 && blk == 0 { 2 } else { 1 };
            let y = n.conv(x, w, 1, 1, 0);
            let y = n.relu(y);
            let y = n.conv(y, w, 3, stride, 1);
            let y = n.relu(y);
            let y = n.conv_gain(y, 4 * w, 1, 1, 0, 0.3);
            let short = if blk == 0 {
                n.conv(x, 4 * w, 1, stride, 0)
            } else {
                x
            };
            let s = n.add(y, short);
            x = n.relu(s);
        }
    }
    let x = n.avgpool(x, size / 32);
    let x = n.flatten(x);
    let x = n.linear(x, if div == 1 { 1000 } else { 10 });
    n.finish(x)
}

/// torchvision's ResNet-18 with 10 classes on 32×32 input (as the peers comparison runs
/// it, unchanged from ImageNet's stem): 7×7/2 conv, 3×3/2 max pool, basic blocks [2, 2, 2,
/// 2] at 64..512 channels, global average pool, fc. BatchNorm folded into the convs.
fn resnet18_cifar(mut n: Net) -> Graph {
    let x = n.b.input();
    let x = n.conv(x, 64, 7, 2, 3);
    let x = n.relu(x);
    let mut x = n.maxpool(x, 3, 2, 1);
    for (stage, c) in [64usize, 128, 256, 512].into_iter().enumerate() {
        x = n.stage(x, stage, c, 2);
    }
    let x = n.node(Op::GlobalAvgPool, &[x]);
    let x = n.flatten(x);
    let x = n.linear(x, 10);
    n.finish(x)
}

/// W1: X [batch×1024] · W [1024×1024], both secret (no bias).
fn w1_matmul(mut n: Net) -> Graph {
    let x = n.b.input();
    let w = n.s.he(&[1024, 1024], 1024);
    let w = n.b.constant("w", w);
    let y = n.node(Op::MatMul, &[x, w]);
    n.finish(y)
}

/// W2: ReLU of 2^20 values per sample.
fn w2_relu(mut n: Net) -> Graph {
    let x = n.b.input();
    let y = n.relu(x);
    n.finish(y)
}

/// W3: conv2d [B,64,56,56] * [64,64,3,3], padding 1, no bias, input and weights secret.
fn w3_conv(mut n: Net) -> Graph {
    let x = n.b.input();
    let w = n.s.he(&[64, 64, 3, 3], 64 * 9);
    let w = n.b.constant("w", w);
    let y = n.node(
        Op::Conv2d {
            stride: 1,
            padding: 1,
        },
        &[x, w],
    );
    n.finish(y)
}

/// A BERT encoder (Devlin et al. 2019): `layers` post-LN blocks with `heads` heads and an
/// FFN of `ffn`, on the embedded token sequence [B, S, H] (the embedding lookup is outside
/// the MPC computation). Every block is ordinary nodes: a fused QKV projection sliced into
/// Q, K, V, per-head views by reshape and transpose, batched products of activations,
/// softmax, residual adds and LayerNorm. bert-base is 12 layers, 768 hidden, 12 heads, FFN
/// 3072; bert-small is 2 layers, 64 hidden, 2 heads, FFN 256.
fn bert(mut n: Net, layers: usize, heads: usize, ffn: usize) -> Graph {
    let h = *n.b.shape(n.b.input()).last().unwrap();
    let d = h / heads;
    // Variance 1/fan_in keeps each projection's output at unit scale before LayerNorm.
    let mat = |s: &mut Synth, fin: usize, fout: usize| {
        let a = (3.0 / fin as f64).sqrt();
        (
            s.tensor(&[fin, fout], -a, a),
            s.tensor(&[fout], -0.05, 0.05),
        )
    };
    let mut x = n.b.input();
    for _ in 0..layers {
        let (wqkv, bqkv) = mat(&mut n.s, h, 3 * h);
        let (wo, bo) = mat(&mut n.s, h, h);
        let (w1, b1) = mat(&mut n.s, h, ffn);
        let (w2, b2) = mat(&mut n.s, ffn, h);
        let ln = |s: &mut Synth| (s.tensor(&[h], 0.9, 1.1), s.tensor(&[h], -0.1, 0.1));
        let (ln1, ln2) = (ln(&mut n.s), ln(&mut n.s));
        let qkv = n.matmul_bias(x, wqkv, bqkv);
        let head = |n: &mut Net, i: usize, perm: Vec<usize>| {
            let t = n.node(
                Op::Slice {
                    axis: 2,
                    start: i * h,
                    end: (i + 1) * h,
                },
                &[qkv],
            );
            let t = n.node(
                Op::Reshape {
                    shape: vec![0, 0, heads as i64, d as i64],
                },
                &[t],
            );
            n.node(Op::Transpose { perm }, &[t])
        };
        let q = head(&mut n, 0, vec![0, 2, 1, 3]);
        let k = head(&mut n, 1, vec![0, 2, 3, 1]);
        let v = head(&mut n, 2, vec![0, 2, 1, 3]);
        let scores = n.node(Op::MatMul, &[q, k]);
        let scaled = n.node(Op::MulConst(1.0 / (d as f64).sqrt()), &[scores]);
        let p = n.node(Op::Softmax { axis: 3 }, &[scaled]);
        let o = n.node(Op::MatMul, &[p, v]);
        let o = n.node(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[o],
        );
        let o = n.node(
            Op::Reshape {
                shape: vec![0, 0, h as i64],
            },
            &[o],
        );
        let attn = n.matmul_bias(o, wo, bo);
        let r = n.add(x, attn);
        let (g1, b1n) = (
            n.b.constant("ln1.gamma", ln1.0),
            n.b.constant("ln1.beta", ln1.1),
        );
        let y = n.node(Op::LayerNorm { eps: 1e-5 }, &[r, g1, b1n]);
        let f = n.matmul_bias(y, w1, b1);
        let f = n.node(Op::Gelu, &[f]);
        let f = n.matmul_bias(f, w2, b2);
        let r = n.add(y, f);
        let (g2, b2n) = (
            n.b.constant("ln2.gamma", ln2.0),
            n.b.constant("ln2.beta", ln2.1),
        );
        x = n.node(Op::LayerNorm { eps: 1e-5 }, &[r, g2, b2n]);
    }
    n.finish(x)
}
