//! Built-in models with seeded synthetic weights (rand_xoshiro: synthetic data only, never
//! secret material). Depends on model and ring.
//!
//! Weights are He-uniform (a = sqrt(6 / fan_in)) so that activations keep unit-order
//! magnitude through ReLU stacks: fixed-point values stay far from the ring's limits and the
//! 2-party truncation's failure probability (~|v|/2^31 per product) stays negligible.

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Layer, Model};
use crate::error::{Error, Result};
use crate::ring::PlainTensor;

/// Names accepted by `build`.
pub const MODELS: &[&str] = &["lenet"];

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
    pub fn linear(&mut self, fin: usize, fout: usize) -> Layer {
        Layer::Linear {
            w: self.he(&[fin, fout], fin),
            b: self.tensor(&[fout], -0.05, 0.05),
        }
    }
}

/// Build a built-in model by name with weights drawn from `seed`.
pub fn build(name: &str, seed: u64) -> Result<Model> {
    let mut s = Synth::new(seed);
    match name {
        "lenet" => Ok(lenet(&mut s)),
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
