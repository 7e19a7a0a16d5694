//! Built-in models with seeded synthetic weights (rand_xoshiro: synthetic data only, never
//! secret material). Depends on model and ring.
//!
//! Weights are He-uniform (a = sqrt(6 / fan_in)) so that activations keep unit-order
//! magnitude through ReLU stacks: fixed-point values stay far from the ring's limits and the
//! 2-party truncation's failure probability (~|v|/2^31 per product) stays negligible.

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Block, Layer, Model};
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
];

/// Default sequence lengths of the BERT models.
pub const BERT_BASE_SEQ: usize = 128;
pub const BERT_SMALL_SEQ: usize = 16;

/// Seeded generator of synthetic weights and inputs.
pub struct Synth(Xoshiro256PlusPlus);

impl Synth {
    pub fn new(seed: u64) -> Self {
        Synth(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> PlainTensor {
        let n = shape.iter().product();
        PlainTensor::from_vec(
            shape,
            (0..n).map(|_| lo + (hi - lo) * self.unit()).collect(),
        )
    }
    fn he(&mut self, shape: &[usize], fan_in: usize) -> PlainTensor {
        let a = (6.0 / fan_in as f64).sqrt();
        self.tensor(shape, -a, a)
    }
    pub fn conv(
        &mut self,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Layer {
        Layer::Conv {
            w: self.he(&[cout, cin, k, k], cin * k * k),
            b: self.tensor(&[cout], -0.05, 0.05),
            stride,
            padding,
        }
    }
    /// A conv whose weights are scaled by `gain`: the last conv of a residual body uses a
    /// small gain (as Fixup/zero-init-residual do in place of BatchNorm) so that activations
    /// do not double with every block and stay far from the fixed-point limits.
    pub fn conv_gain(
        &mut self,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        gain: f64,
    ) -> Layer {
        match self.conv(cin, cout, k, stride, padding) {
            Layer::Conv {
                w,
                b,
                stride,
                padding,
            } => Layer::Conv {
                w: w.map(|v| v * gain),
                b,
                stride,
                padding,
            },
            _ => unreachable!(),
        }
    }
    pub fn linear(&mut self, fin: usize, fout: usize) -> Layer {
        Layer::Linear {
            w: self.he(&[fin, fout], fin),
            b: self.tensor(&[fout], -0.05, 0.05),
        }
    }
}

/// Build a built-in model by name with weights drawn from `seed`.
pub fn build(name: &str, seed: u64) -> Result<Model> {
    build_with(name, seed, None)
}

/// As `build`, with the sequence length of a BERT model (`None`: its default).
pub fn build_with(name: &str, seed: u64, seq_len: Option<usize>) -> Result<Model> {
    let mut s = Synth::new(seed);
    let is_bert = name.starts_with("bert");
    if seq_len.is_some() && !is_bert {
        return Err(Error::Config(format!(
            "--seq-len applies to the BERT models, not to '{name}'"
        )));
    }
    if seq_len == Some(0) {
        return Err(Error::Config("--seq-len must be at least 1".into()));
    }
    match name {
        "lenet" => Ok(lenet(&mut s)),
        "resnet_cifar" => Ok(resnet_cifar(&mut s, 3, name)),
        "resnet_cifar-tiny" => Ok(resnet_cifar(&mut s, 1, name)),
        "vgg16" => Ok(vgg16(&mut s, 224, 1, name)),
        "vgg16-tiny" => Ok(vgg16(&mut s, 32, 16, name)),
        "resnet50" => Ok(resnet50(&mut s, 224, 1, name)),
        "resnet50-tiny" => Ok(resnet50(&mut s, 32, 16, name)),
        "bert-base" => Ok(bert(
            &mut s,
            12,
            768,
            12,
            3072,
            seq_len.unwrap_or(BERT_BASE_SEQ),
            name,
        )),
        "bert-small" => Ok(bert(
            &mut s,
            2,
            64,
            2,
            256,
            seq_len.unwrap_or(BERT_SMALL_SEQ),
            name,
        )),
        other => Err(Error::Config(format!(
            "unknown model '{other}'; built-in models: {}",
            MODELS.join(", ")
        ))),
    }
}

/// LeNet-style MNIST CNN: 1×28×28 -> 10 classes.
fn lenet(s: &mut Synth) -> Model {
    let layers = vec![
        s.conv(1, 6, 5, 1, 0),
        Layer::Relu,
        Layer::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
        s.conv(6, 16, 5, 1, 0),
        Layer::Relu,
        Layer::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
        Layer::Flatten,
        s.linear(256, 120),
        Layer::Relu,
        s.linear(120, 84),
        Layer::Relu,
        s.linear(84, 10),
    ];
    Model {
        name: "lenet".into(),
        input_shape: vec![1, 28, 28],
        layers,
    }
}

/// CIFAR-10 ResNet (He et al. 2016, §4.2): 3 stages of `n` basic blocks at 16/32/64
/// channels on 32×32 input; n = 3 is ResNet-20. BatchNorm is folded into the convs.
fn resnet_cifar(s: &mut Synth, n: usize, name: &str) -> Model {
    let mut layers = vec![s.conv(3, 16, 3, 1, 1), Layer::Relu];
    let mut cin = 16;
    for (stage, &c) in [16usize, 32, 64].iter().enumerate() {
        for blk in 0..n {
            let stride = if stage > 0 && blk == 0 { 2 } else { 1 };
            let body = vec![
                s.conv(cin, c, 3, stride, 1),
                Layer::Relu,
                s.conv_gain(c, c, 3, 1, 1, 0.3),
            ];
            let shortcut = if stride != 1 || cin != c {
                vec![s.conv(cin, c, 1, stride, 0)]
            } else {
                vec![]
            };
            layers.push(Layer::Residual { body, shortcut });
            layers.push(Layer::Relu);
            cin = c;
        }
    }
    layers.push(Layer::AvgPool {
        kernel: 8,
        stride: 8,
        padding: 0,
    });
    layers.push(Layer::Flatten);
    layers.push(s.linear(64, 10));
    Model {
        name: name.into(),
        input_shape: vec![3, 32, 32],
        layers,
    }
}

/// VGG16 (Simonyan & Zisserman 2015, configuration D) at `size`×`size` input, widths
/// divided by `div`; 1000 classes at full size, 10 when shrunk.
fn vgg16(s: &mut Synth, size: usize, div: usize, name: &str) -> Model {
    let cfg: [&[usize]; 5] = [
        &[64, 64],
        &[128, 128],
        &[256, 256, 256],
        &[512, 512, 512],
        &[512, 512, 512],
    ];
    let mut layers = Vec::new();
    let mut cin = 3;
    for stage in cfg {
        for &c in stage {
            let c = c / div;
            layers.push(s.conv(cin, c, 3, 1, 1));
            layers.push(Layer::Relu);
            cin = c;
        }
        layers.push(Layer::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        });
    }
    let side = size / 32;
    let (hidden, classes) = if div == 1 {
        (4096, 1000)
    } else {
        (4096 / (4 * div), 10)
    };
    layers.push(Layer::Flatten);
    layers.push(s.linear(cin * side * side, hidden));
    layers.push(Layer::Relu);
    layers.push(s.linear(hidden, hidden));
    layers.push(Layer::Relu);
    layers.push(s.linear(hidden, classes));
    Model {
        name: name.into(),
        input_shape: vec![3, size, size],
        layers,
    }
}

/// ResNet50 (He et al. 2016, bottleneck blocks [3, 4, 6, 3]) at `size`×`size` input, widths
/// divided by `div`. BatchNorm folded into the convs.
fn resnet50(s: &mut Synth, size: usize, div: usize, name: &str) -> Model {
    let w0 = 64 / div;
    let mut layers = vec![
        s.conv(3, w0, 7, 2, 3),
        Layer::Relu,
        Layer::MaxPool {
            kernel: 3,
            stride: 2,
            padding: 1,
        },
    ];
    let mut cin = w0;
    for (stage, &blocks) in [3usize, 4, 6, 3].iter().enumerate() {
        let w = (64 << stage) / div;
        for blk in 0..blocks {
            let stride = if stage > 0 && blk == 0 { 2 } else { 1 };
            let body = vec![
                s.conv(cin, w, 1, 1, 0),
                Layer::Relu,
                s.conv(w, w, 3, stride, 1),
                Layer::Relu,
                s.conv_gain(w, 4 * w, 1, 1, 0, 0.3),
            ];
            let shortcut = if blk == 0 {
                vec![s.conv(cin, 4 * w, 1, stride, 0)]
            } else {
                vec![]
            };
            layers.push(Layer::Residual { body, shortcut });
            layers.push(Layer::Relu);
            cin = 4 * w;
        }
    }
    let side = size / 32;
    layers.push(Layer::AvgPool {
        kernel: side,
        stride: side,
        padding: 0,
    });
    layers.push(Layer::Flatten);
    layers.push(s.linear(cin, if div == 1 { 1000 } else { 10 }));
    Model {
        name: name.into(),
        input_shape: vec![3, size, size],
        layers,
    }
}

/// A BERT encoder (Devlin et al. 2019): `layers` post-LN blocks of hidden size `h` with
/// `heads` heads and an FFN of `ffn`, on `seq` token embeddings (the embedding lookup is
/// outside the MPC computation: the input is the embedded sequence). bert-base is 12
/// layers, 768 hidden, 12 heads, FFN 3072; bert-small is 2 layers, 64 hidden, 2 heads.
fn bert(
    s: &mut Synth,
    layers: usize,
    h: usize,
    heads: usize,
    ffn: usize,
    seq: usize,
    name: &str,
) -> Model {
    let mut mat = |fin: usize, fout: usize| {
        // Variance 1/fan_in keeps each projection's output at unit scale before LayerNorm.
        let a = (3.0 / fin as f64).sqrt();
        (
            s.tensor(&[fin, fout], -a, a),
            s.tensor(&[fout], -0.05, 0.05),
        )
    };
    let mut blocks = Vec::new();
    for _ in 0..layers {
        let (wqkv, bqkv) = mat(h, 3 * h);
        let (wo, bo) = mat(h, h);
        let (w1, b1) = mat(h, ffn);
        let (w2, b2) = mat(ffn, h);
        blocks.push((wqkv, bqkv, wo, bo, w1, b1, w2, b2));
    }
    let layers = blocks
        .into_iter()
        .map(|(wqkv, bqkv, wo, bo, w1, b1, w2, b2)| {
            let ln = |s: &mut Synth| (s.tensor(&[h], 0.9, 1.1), s.tensor(&[h], -0.1, 0.1));
            let (ln1, ln2) = (ln(s), ln(s));
            Layer::Transformer(Box::new(Block {
                heads,
                wqkv,
                bqkv,
                wo,
                bo,
                w1,
                b1,
                w2,
                b2,
                ln1,
                ln2,
            }))
        })
        .collect();
    Model {
        name: name.into(),
        input_shape: vec![seq, h],
        layers,
    }
}
