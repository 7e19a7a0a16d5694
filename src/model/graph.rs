//! The model graph: a DAG of typed nodes over named tensors with static shapes. Built by
//! the zoo (and, later, the ONNX importer) through `GraphBuilder`, which infers every
//! shape as nodes are added and refuses an inconsistent graph with an error naming the
//! node. Interpreted by `model::plain` (f64) and `model::mpc` (protocol calls); nothing
//! else walks it. Depends on ring and error.
//!
//! Tensors are produced by exactly one of: the graph input (the data owner's), a constant
//! (weights, biases, normalisation parameters: the model owner's), or a node. Nodes are
//! stored in a topological order (a node's inputs exist before it is added), so every
//! interpreter is one pass over `nodes`.
//!
//! Axis 0 of the input is the batch. `Tensor::batch` records whether axis 0 of a tensor is
//! still the batch (every op of a CNN or of a transformer on [B, S, H] keeps it there);
//! schedules that split the batch into micro-batches need it for every node
//! (`Graph::batch_separable`).

use std::fmt;

use crate::error::{Error, Result};
use crate::kernels::conv_out;
use crate::ring::shape::broadcast_shape;
use crate::ring::Constant;
use crate::ring::PlainTensor;

pub type TensorId = usize;
pub type NodeId = usize;

/// What a node computes. Attributes are public; weights are constant inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// NCHW conv: inputs x [B,C,H,W], constant w [O,C,KH,KW], optional constant bias [O]
    /// (groups = 1, dilation 1, symmetric padding).
    Conv2d {
        stride: usize,
        padding: usize,
    },
    /// op(A)·op(B) (+ C): 2-D; op transposes when asked; C (constant) broadcasts to the
    /// output. Either of A and B may be a constant.
    Gemm {
        trans_a: bool,
        trans_b: bool,
    },
    /// numpy matmul of [..., m, k] by [..., k, n]: a 2-D constant on either side (a linear
    /// layer), or two activations with equal leading dims (batched).
    MatMul,
    /// Elementwise a + b with numpy broadcasting (activations or constants).
    Add,
    /// Elementwise a - b with numpy broadcasting.
    Sub,
    /// Elementwise a · b with numpy broadcasting: two activations (a Beaver product), or an
    /// activation and a constant tensor (the model owner's, like an added constant).
    Mul,
    /// x · c for a public constant c.
    MulConst(f64),
    /// x / c for a public constant c.
    DivConst(f64),
    Relu,
    MaxPool {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// Average pool counting padded positions (PyTorch's default count_include_pad).
    AvgPool {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// Average pool over the window's positions inside the input only (ONNX AveragePool
    /// with count_include_pad = 0, PyTorch's count_include_pad=False).
    AvgPoolValid {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// [B, C, H, W] -> [B, C, 1, 1].
    GlobalAvgPool,
    /// [d0..d_{axis-1}, ...] -> [d0·..·d_{axis-1}, rest] (ONNX Flatten).
    Flatten {
        axis: usize,
    },
    /// ONNX Reshape with a constant shape: 0 copies the input's dim, -1 is inferred.
    Reshape {
        shape: Vec<i64>,
    },
    /// Output axis i is input axis perm[i].
    Transpose {
        perm: Vec<usize>,
    },
    /// The inputs joined along axis. An input may be a constant (a learned token, a fixed
    /// block), the model owner's; joined off axis 0, its axis 0 is the batch, and a
    /// micro-batch takes its own rows of it.
    Concat {
        axis: usize,
    },
    /// Elements start..end along axis.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    Softmax {
        axis: usize,
    },
    /// Normalise over the last axis, then γ·x + β: inputs x, constant γ and β of the last
    /// axis' length (public, as protocols.md §4.1 takes them).
    LayerNorm {
        eps: f64,
    },
    /// GeLU: exact erf form in f64, the engine's approximation in MPC (proto::nn).
    Gelu,
    /// GeLU as `Gelu` in f64; in MPC a Chebyshev approximation within 3e-4 of the exact erf
    /// form everywhere (`model::mpc`), for models checked against a float runtime (ONNX
    /// imports). Costs a few more products than `Gelu`'s PUMA polynomial, which errs by up
    /// to 0.02 (at x = 3).
    GeluErf,
    /// Inference batch norm: inputs x [B, C, ...], constants scale, bias, mean, var [C].
    /// Folded into the preceding conv or gemm when the builder finishes, where one exists.
    BatchNorm {
        eps: f64,
    },
    Identity,
    /// 1 / (1 + e^-x).
    Sigmoid,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv2d",
            Op::Gemm { .. } => "gemm",
            Op::MatMul => "matmul",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul_tensor",
            Op::MulConst(_) => "mul",
            Op::DivConst(_) => "div",
            Op::Relu => "relu",
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::AvgPoolValid { .. } => "avgpool_valid",
            Op::GlobalAvgPool => "global_avgpool",
            Op::Flatten { .. } => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layernorm",
            Op::Gelu => "gelu",
            Op::GeluErf => "gelu_erf",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Identity => "identity",
            Op::Sigmoid => "sigmoid",
        }
    }
}

/// Who produces a tensor.
#[derive(Clone, Debug)]
pub enum Producer {
    /// The graph's data input (owned by the data owner).
    Input,
    /// A constant (owned by the model owner).
    Const(Constant),
    Node(NodeId),
}

#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    /// Static shape at the graph's batch size.
    pub shape: Vec<usize>,
    pub producer: Producer,
    /// Axis 0 is the batch axis of the graph input.
    pub batch: bool,
}

impl Tensor {
    pub fn constant(&self) -> Option<&Constant> {
        match &self.producer {
            Producer::Const(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "node '{}' ({})", self.name, self.op.kind())
    }
}

/// A model: tensors, nodes in topological order, one data input and one output.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub tensors: Vec<Tensor>,
    pub nodes: Vec<Node>,
    pub input: TensorId,
    pub output: TensorId,
}

impl Graph {
    pub fn tensor(&self, t: TensorId) -> &Tensor {
        &self.tensors[t]
    }
    pub fn input_shape(&self) -> &[usize] {
        &self.tensors[self.input].shape
    }
    pub fn output_shape(&self) -> &[usize] {
        &self.tensors[self.output].shape
    }
    /// Whether micro-batches of the input can run through the graph independently: every
    /// node's input and output keep the batch on axis 0.
    pub fn batch_separable(&self) -> std::result::Result<(), String> {
        for n in &self.nodes {
            let out = &self.tensors[n.output];
            let acts = n
                .inputs
                .iter()
                .filter(|&&t| self.tensors[t].constant().is_none());
            if !out.batch || acts.clone().any(|&t| !self.tensors[t].batch) {
                return Err(format!("{n} does not keep the batch on axis 0"));
            }
        }
        Ok(())
    }
    /// How many nodes read each tensor (the output counts once more), so interpreters can
    /// free an activation after its last reader.
    pub fn readers(&self) -> Vec<usize> {
        let mut r = vec![0; self.tensors.len()];
        for n in &self.nodes {
            for &t in &n.inputs {
                r[t] += 1;
            }
        }
        r[self.output] += 1;
        r
    }
    /// Words of every constant input of the linear nodes (conv, gemm, matmul): what the
    /// weight masks F = W - B of private-weight inference open, per party.
    pub fn linear_weight_words(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2d { .. } | Op::Gemm { .. } | Op::MatMul))
            .flat_map(|n| n.inputs.iter().take(2))
            .filter_map(|&t| self.tensors[t].constant())
            .map(Constant::len)
            .sum()
    }
    /// The same graph with every constant replaced by `f(constant)` (tests quantize
    /// weights this way).
    pub fn map_constants(&self, f: impl Fn(&PlainTensor) -> PlainTensor) -> Graph {
        let mut g = self.clone();
        for t in &mut g.tensors {
            if let Producer::Const(c) = &t.producer {
                t.producer = Producer::Const(Constant::new(f(&c.plain())));
            }
        }
        g
    }
}

fn err(node: &str, op: &Op, msg: impl fmt::Display) -> Error {
    Error::Config(format!("node '{node}' ({}): {msg}", op.kind()))
}

/// The output shape of `op` on inputs of `shapes`, or why it does not apply. Used by the
/// builder and again by the interpreters on micro-batches (whose axis 0 is smaller).
pub fn infer(op: &Op, shapes: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
    let want = |n: std::ops::RangeInclusive<usize>| -> std::result::Result<(), String> {
        if n.contains(&shapes.len()) {
            Ok(())
        } else {
            Err(format!("takes {n:?} inputs, got {}", shapes.len()))
        }
    };
    let rank = |s: &[usize], r: usize, what: &str| -> std::result::Result<(), String> {
        if s.len() == r {
            Ok(())
        } else {
            Err(format!("{what} must be {r}-D, got {s:?}"))
        }
    };
    match op {
        Op::Conv2d { stride, padding } => {
            want(2..=3)?;
            let (x, w) = (shapes[0], shapes[1]);
            rank(x, 4, "input")?;
            rank(w, 4, "weight")?;
            if x[1] != w[1] {
                return Err(format!(
                    "input {x:?} has {} channels, weight {w:?} wants {}",
                    x[1], w[1]
                ));
            }
            if *stride == 0 || x[2] + 2 * padding < w[2] || x[3] + 2 * padding < w[3] {
                return Err(format!(
                    "kernel {w:?} with stride {stride}, padding {padding} does not fit input {x:?}"
                ));
            }
            if shapes.len() == 3 && shapes[2] != [w[0]] {
                return Err(format!("bias {:?} for {} output channels", shapes[2], w[0]));
            }
            Ok(vec![
                x[0],
                w[0],
                conv_out(x[2], w[2], *stride, *padding),
                conv_out(x[3], w[3], *stride, *padding),
            ])
        }
        Op::Gemm { trans_a, trans_b } => {
            want(2..=3)?;
            let (a, b) = (shapes[0], shapes[1]);
            rank(a, 2, "A")?;
            rank(b, 2, "B")?;
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(format!("inner dims differ: A {a:?}, B {b:?}"));
            }
            if shapes.len() == 3
                && broadcast_shape(shapes[2], &[m, n]).as_deref() != Some(&[m, n][..])
            {
                return Err(format!(
                    "C {:?} does not broadcast to [{m}, {n}]",
                    shapes[2]
                ));
            }
            Ok(vec![m, n])
        }
        Op::MatMul => {
            want(2..=2)?;
            let (a, b) = (shapes[0], shapes[1]);
            if a.len() < 2 || b.len() < 2 {
                return Err(format!(
                    "operands must be at least 2-D, got {a:?} and {b:?}"
                ));
            }
            let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
            let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
            if k != k2 {
                return Err(format!("inner dims differ: {a:?} by {b:?}"));
            }
            let lead = broadcast_shape(&a[..a.len() - 2], &b[..b.len() - 2])
                .ok_or_else(|| format!("leading dims of {a:?} and {b:?} do not broadcast"))?;
            let mut out = lead;
            out.extend([m, n]);
            Ok(out)
        }
        Op::Add | Op::Sub | Op::Mul => {
            want(2..=2)?;
            broadcast_shape(shapes[0], shapes[1])
                .ok_or_else(|| format!("{:?} and {:?} do not broadcast", shapes[0], shapes[1]))
        }
        Op::MulConst(c) | Op::DivConst(c) => {
            want(1..=1)?;
            if !c.is_finite() || (matches!(op, Op::DivConst(_)) && *c == 0.0) {
                return Err(format!("constant {c} is not usable"));
            }
            Ok(shapes[0].to_vec())
        }
        Op::Relu | Op::Gelu | Op::GeluErf | Op::Identity | Op::Sigmoid => {
            want(1..=1)?;
            Ok(shapes[0].to_vec())
        }
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPoolValid {
            kernel,
            stride,
            padding,
        } => {
            want(1..=1)?;
            let x = shapes[0];
            rank(x, 4, "input")?;
            if *kernel == 0
                || *stride == 0
                || x[2] + 2 * padding < *kernel
                || x[3] + 2 * padding < *kernel
            {
                return Err(format!(
                    "kernel {kernel}, stride {stride}, padding {padding} does not fit input {x:?}"
                ));
            }
            if matches!(op, Op::MaxPool { .. } | Op::AvgPoolValid { .. }) && 2 * padding > *kernel {
                return Err(format!(
                    "padding {padding} exceeds half the kernel {kernel}"
                ));
            }
            Ok(vec![
                x[0],
                x[1],
                conv_out(x[2], *kernel, *stride, *padding),
                conv_out(x[3], *kernel, *stride, *padding),
            ])
        }
        Op::GlobalAvgPool => {
            want(1..=1)?;
            let x = shapes[0];
            rank(x, 4, "input")?;
            if x[2] * x[3] == 0 {
                return Err(format!("empty planes in {x:?}"));
            }
            Ok(vec![x[0], x[1], 1, 1])
        }
        Op::Flatten { axis } => {
            want(1..=1)?;
            let x = shapes[0];
            if *axis > x.len() {
                return Err(format!("axis {axis} of a {}-D input", x.len()));
            }
            Ok(vec![
                x[..*axis].iter().product(),
                x[*axis..].iter().product(),
            ])
        }
        Op::Reshape { shape } => {
            want(1..=1)?;
            let x = shapes[0];
            let n: usize = x.iter().product();
            let mut out = Vec::with_capacity(shape.len());
            let mut infer_at = None;
            for (i, &d) in shape.iter().enumerate() {
                out.push(match d {
                    0 => *x.get(i).ok_or_else(|| {
                        format!("dim {i} is 0 (copy) but the input {x:?} has no dim {i}")
                    })?,
                    -1 if infer_at.is_none() => {
                        infer_at = Some(i);
                        1
                    }
                    d if d > 0 => d as usize,
                    d => return Err(format!("dim {i} of the target shape is {d}")),
                });
            }
            let known: usize = out.iter().product();
            if let Some(i) = infer_at {
                if known == 0 || !n.is_multiple_of(known) {
                    return Err(format!("cannot infer -1 reshaping {x:?} to {shape:?}"));
                }
                out[i] = n / known;
            }
            if out.iter().product::<usize>() != n {
                return Err(format!(
                    "{x:?} ({n} elements) does not reshape to {shape:?}"
                ));
            }
            Ok(out)
        }
        Op::Transpose { perm } => {
            want(1..=1)?;
            let x = shapes[0];
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len()
                || perm
                    .iter()
                    .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "perm {perm:?} is not a permutation of {} axes",
                    x.len()
                ));
            }
            Ok(perm.iter().map(|&p| x[p]).collect())
        }
        Op::Concat { axis } => {
            if shapes.is_empty() {
                return Err("takes at least one input".into());
            }
            let first = shapes[0];
            if *axis >= first.len() {
                return Err(format!("axis {axis} of a {}-D input", first.len()));
            }
            let mut out = first.to_vec();
            out[*axis] = 0;
            for s in shapes {
                if s.len() != first.len()
                    || s.iter()
                        .zip(first)
                        .enumerate()
                        .any(|(d, (a, b))| d != *axis && a != b)
                {
                    return Err(format!("inputs {first:?} and {s:?} differ off axis {axis}"));
                }
                out[*axis] += s[*axis];
            }
            Ok(out)
        }
        Op::Slice { axis, start, end } => {
            want(1..=1)?;
            let x = shapes[0];
            if *axis >= x.len() || start >= end || *end > x[*axis] {
                return Err(format!("{start}..{end} along axis {axis} of {x:?}"));
            }
            let mut out = x.to_vec();
            out[*axis] = end - start;
            Ok(out)
        }
        Op::Softmax { axis } => {
            want(1..=1)?;
            if *axis >= shapes[0].len() {
                return Err(format!("axis {axis} of {:?}", shapes[0]));
            }
            Ok(shapes[0].to_vec())
        }
        Op::LayerNorm { eps } => {
            want(3..=3)?;
            let x = shapes[0];
            let h = *x.last().ok_or("input is a scalar")?;
            if shapes[1] != [h] || shapes[2] != [h] {
                return Err(format!(
                    "gamma {:?} and beta {:?} for {h} features",
                    shapes[1], shapes[2]
                ));
            }
            if !(eps.is_finite() && *eps >= 0.0) {
                return Err(format!("epsilon {eps}"));
            }
            Ok(x.to_vec())
        }
        Op::BatchNorm { eps } => {
            want(5..=5)?;
            let x = shapes[0];
            if x.len() < 2 {
                return Err(format!("input {x:?} has no channel axis"));
            }
            if shapes[1..].iter().any(|s| *s != [x[1]]) {
                return Err(format!("parameters must each be [{}]", x[1]));
            }
            if !(eps.is_finite() && *eps >= 0.0) {
                return Err(format!("epsilon {eps}"));
            }
            Ok(x.to_vec())
        }
    }
}

/// How many positions of each output window of a pool lie inside an h × w input
/// ([oh · ow], row-major): the divisors of `Op::AvgPoolValid`. Shapes checked by `infer`.
pub fn pool_valid_counts(
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Vec<f64> {
    let span = |n: usize, o: usize| {
        let lo = (o * stride) as isize - padding as isize;
        let hi = lo + kernel as isize;
        (hi.min(n as isize) - lo.max(0)).max(0) as f64
    };
    let (oh, ow) = (
        conv_out(h, kernel, stride, padding),
        conv_out(w, kernel, stride, padding),
    );
    (0..oh)
        .flat_map(|y| (0..ow).map(move |x| span(h, y) * span(w, x)))
        .collect()
}

/// Whether axis 0 of the output is still the batch, given the inputs' flags.
fn keeps_batch(op: &Op, ins: &[&Tensor], out: &[usize]) -> bool {
    let acts: Vec<&&Tensor> = ins.iter().filter(|t| t.constant().is_none()).collect();
    let all = !acts.is_empty() && acts.iter().all(|t| t.batch);
    let x = ins[0];
    // A constant operand must not vary along the batch axis of the output.
    let const_ok = ins
        .iter()
        .filter(|t| t.constant().is_some())
        .all(|t| t.shape.len() < out.len() || t.shape.first() == Some(&1));
    match op {
        Op::Flatten { axis } => all && *axis >= 1,
        // The batch stays on axis 0 when the target keeps its size (0 or the literal size;
        // interpreters run micro-batches with 0 there, `mpc::reshape_target`).
        Op::Reshape { .. } => all && out.first() == x.shape.first(),
        Op::Transpose { perm } => all && perm.first() == Some(&0),
        Op::Concat { axis } | Op::Slice { axis, .. } | Op::Softmax { axis } => all && *axis != 0,
        Op::Gemm { trans_a, .. } => all && !trans_a && ins[0].constant().is_none(),
        Op::MatMul => {
            // x·W keeps x's rows; W·x keeps x's leading (batch) dims when x has them.
            match (ins[0].constant(), ins[1].constant()) {
                (None, Some(_)) => ins[0].batch,
                (Some(_), None) => ins[1].batch && ins[1].shape.len() >= 3,
                _ => all && ins[0].shape.len() >= 3 && ins[1].shape.len() >= 3,
            }
        }
        Op::Add | Op::Sub | Op::Mul => {
            all && const_ok && acts.iter().all(|t| t.shape.len() == out.len())
        }
        _ => all,
    }
}

/// Builds a graph node by node, inferring shapes; `finish` folds batch norms and checks it.
pub struct GraphBuilder {
    g: Graph,
    names: std::collections::HashSet<String>,
}

impl GraphBuilder {
    /// A graph whose data input has `input_shape` (axis 0: the batch).
    pub fn new(name: &str, input_shape: &[usize]) -> Self {
        let input = Tensor {
            name: "input".into(),
            shape: input_shape.to_vec(),
            producer: Producer::Input,
            batch: true,
        };
        GraphBuilder {
            g: Graph {
                name: name.into(),
                tensors: vec![input],
                nodes: Vec::new(),
                input: 0,
                output: 0,
            },
            names: std::collections::HashSet::new(),
        }
    }

    pub fn input(&self) -> TensorId {
        self.g.input
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.g.tensors[t].shape
    }

    /// A constant tensor (a weight, bias or normalisation parameter).
    pub fn constant(&mut self, name: &str, value: PlainTensor) -> TensorId {
        self.g.tensors.push(Tensor {
            name: name.into(),
            shape: value.shape().to_vec(),
            producer: Producer::Const(Constant::new(value)),
            batch: false,
        });
        self.g.tensors.len() - 1
    }

    /// Add a node; its name is made unique from `name` (or the op's kind) when empty or
    /// taken. Returns its output tensor, or an error naming the node.
    pub fn node(&mut self, name: &str, op: Op, inputs: &[TensorId]) -> Result<TensorId> {
        let base = if name.is_empty() { op.kind() } else { name };
        let mut name = base.to_string();
        let mut i = self.g.nodes.len();
        while self.names.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        if let Some(&bad) = inputs.iter().find(|&&t| t >= self.g.tensors.len()) {
            return Err(err(
                &name,
                &op,
                format!("input tensor {bad} does not exist"),
            ));
        }
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&t| &self.g.tensors[t].shape[..])
            .collect();
        let shape = infer(&op, &shapes).map_err(|m| err(&name, &op, m))?;
        self.check_operands(&name, &op, inputs)?;
        let ins: Vec<&Tensor> = inputs.iter().map(|&t| &self.g.tensors[t]).collect();
        let batch = keeps_batch(&op, &ins, &shape);
        let id = self.g.nodes.len();
        self.g.tensors.push(Tensor {
            name: name.clone(),
            shape,
            producer: Producer::Node(id),
            batch,
        });
        let output = self.g.tensors.len() - 1;
        self.names.insert(name.clone());
        self.g.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            output,
        });
        Ok(output)
    }

    /// Which operands must be constants (the MPC interpreter computes on secret
    /// activations and public or model-owner constants, not on any mix).
    fn check_operands(&self, name: &str, op: &Op, inputs: &[TensorId]) -> Result<()> {
        let is_const = |i: usize| self.g.tensors[inputs[i]].constant().is_some();
        let need = |idx: &[usize], what: &str| -> Result<()> {
            match idx.iter().find(|&&i| i < inputs.len() && !is_const(i)) {
                Some(_) => Err(err(name, op, format!("{what} must be a constant"))),
                None => Ok(()),
            }
        };
        match op {
            Op::Conv2d { .. } => {
                need(&[1, 2], "the weight and bias")?;
                if is_const(0) {
                    return Err(err(name, op, "the input must be an activation"));
                }
            }
            Op::Gemm { .. } => {
                need(&[2], "C")?;
                if is_const(0) && is_const(1) {
                    return Err(err(name, op, "A and B are both constants: fold them first"));
                }
            }
            Op::MatMul | Op::Add | Op::Sub | Op::Mul => {
                if inputs
                    .iter()
                    .all(|&t| self.g.tensors[t].constant().is_some())
                {
                    return Err(err(
                        name,
                        op,
                        "every operand is a constant: fold them first",
                    ));
                }
            }
            // A constant part (a learned token, padding) is the model owner's, as a bias is.
            Op::Concat { .. } => {
                if inputs
                    .iter()
                    .all(|&t| self.g.tensors[t].constant().is_some())
                {
                    return Err(err(name, op, "every input is a constant: fold them first"));
                }
            }
            Op::LayerNorm { .. } => need(&[1, 2], "gamma and beta")?,
            Op::BatchNorm { .. } => need(&[1, 2, 3, 4], "the parameters")?,
            _ => {
                if inputs
                    .iter()
                    .any(|&t| self.g.tensors[t].constant().is_some())
                {
                    return Err(err(name, op, "takes activations, not constants"));
                }
            }
        }
        Ok(())
    }

    /// The graph with `output` as its result, batch norms folded into their preceding
    /// conv or gemm where that node's output feeds nothing else.
    pub fn finish(mut self, output: TensorId) -> Result<Graph> {
        if output >= self.g.tensors.len() {
            return Err(Error::Config(format!(
                "output tensor {output} does not exist"
            )));
        }
        self.g.output = output;
        fold_batchnorms(&mut self.g);
        Ok(self.g)
    }
}

/// BatchNorm after a conv (or a gemm whose B is [in, out] or transposed) whose output only
/// it reads: y = (conv(x) + b - mean)·s + beta with s = scale/√(var+eps) is conv(x, w·s) +
/// (b - mean)·s + beta, so the node becomes an identity and the conv's weight and bias
/// absorb it. Other batch norms stay and are evaluated as an affine map.
fn fold_batchnorms(g: &mut Graph) {
    let readers = g.readers();
    for i in 0..g.nodes.len() {
        let Op::BatchNorm { eps } = g.nodes[i].op else {
            continue;
        };
        let x = g.nodes[i].inputs[0];
        let Producer::Node(p) = g.tensors[x].producer else {
            continue;
        };
        if readers[x] != 1 {
            continue;
        }
        let param = |k: usize| {
            g.tensors[g.nodes[i].inputs[k]]
                .constant()
                .map(Constant::to_plain)
        };
        let (Some(scale), Some(beta), Some(mean), Some(var)) =
            (param(1), param(2), param(3), param(4))
        else {
            continue;
        };
        let s: Vec<f64> = scale
            .data()
            .iter()
            .zip(var.data())
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let c = s.len();
        let (w_id, out_axis_first) = match g.nodes[p].op {
            Op::Conv2d { .. } => (g.nodes[p].inputs[1], true),
            Op::Gemm {
                trans_a: false,
                trans_b,
            } if g.tensors[g.nodes[p].inputs[1]].constant().is_some() => {
                (g.nodes[p].inputs[1], trans_b)
            }
            _ => continue,
        };
        let Some(w) = g.tensors[w_id].constant().map(Constant::to_plain) else {
            continue;
        };
        let mut w = w;
        let per = w.len() / c;
        if out_axis_first {
            // [O, ...]: every weight of output channel o scales by s[o].
            w.data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v *= s[k / per]);
        } else {
            // [in, O]: column o scales by s[o].
            w.data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v *= s[k % c]);
        }
        let old_b = g.nodes[p]
            .inputs
            .get(2)
            .and_then(|&b| g.tensors[b].constant().map(Constant::to_plain));
        if old_b.as_ref().is_some_and(|b| b.shape() != [c]) {
            continue;
        }
        let b: Vec<f64> = (0..c)
            .map(|o| {
                let b0 = old_b.as_ref().map_or(0.0, |b| b.data()[o % b.len()]);
                (b0 - mean.data()[o]) * s[o] + beta.data()[o]
            })
            .collect();
        // New constants (the old ones may be shared with other nodes).
        let wname = format!("{}.folded_weight", g.nodes[p].name);
        let bname = format!("{}.folded_bias", g.nodes[p].name);
        g.tensors.push(Tensor {
            name: wname,
            shape: w.shape().to_vec(),
            producer: Producer::Const(Constant::new(w)),
            batch: false,
        });
        let w_new = g.tensors.len() - 1;
        g.tensors.push(Tensor {
            name: bname,
            shape: vec![c],
            producer: Producer::Const(Constant::new(PlainTensor::from_vec(&[c], b))),
            batch: false,
        });
        let b_new = g.tensors.len() - 1;
        g.nodes[p].inputs.truncate(1);
        g.nodes[p].inputs.extend([w_new, b_new]);
        g.nodes[i].op = Op::Identity;
        g.nodes[i].inputs.truncate(1);
    }
}
