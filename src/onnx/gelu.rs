//! Finding the GELU subgraphs exporters emit, so each becomes one `Op::GeluErf` instead of an
//! Erf or Tanh the engine cannot run. Depends on onnx::{proto, import} only.
//!
//! torch exports nn.GELU() as x·0.5·(1 + Erf(x/√2)) and nn.GELU(approximate="tanh") as
//! x·0.5·(1 + Tanh(√(2/π)·(x + 0.044715·x³))), with the products and constants in
//! varying order. A match is found from the Erf/Tanh node T:
//! - tail: T's output feeds only an Add of 1, whose output feeds a chain of one or two
//!   Muls whose other operands are x once and constants (possibly x·c as its own Mul)
//!   multiplying to 0.5; this names x;
//! - head: T's argument is computed from x and scalar constants by Mul/Add/Sub/Div/Pow
//!   only, and equals x/√2 (Erf) or √(2/π)·(x + 0.044715·x³) (Tanh) at sample points
//!   (relative error 1e-5, above the float32 rounding of the constants);
//! - every intermediate output is read only inside the match.
//!
//! Both forms map to the same `Op::GeluErf`: the f64 interpreter computes the erf form
//! exactly, the MPC one a Chebyshev approximation of it within 3e-4 (model::mpc); the
//! tanh form differs from the erf form by at most 4.74e-4 (at |x| = 2.70), which bounds
//! what a tanh export can agree to.

use std::collections::{HashMap, HashSet};

use super::import::tensor_values;
use super::proto::{GraphProto, NodeProto};

/// One fused subgraph, emitted at the position of its last node.
pub(super) enum Fusion {
    /// GELU of the tensor named x.
    Gelu { x: String },
    /// Layer normalisation (`super::layernorm`): x over `axis` (as written in the file),
    /// γ and β by name (None: 1 and 0).
    LayerNorm {
        x: String,
        axis: i64,
        eps: f64,
        gamma: Option<String>,
        beta: Option<String>,
        /// The first node of the match, named in errors.
        first: usize,
    },
}

/// What the importer skips and what it emits instead.
#[derive(Default)]
pub(super) struct Fused {
    /// Node indices replaced by a fusion (not translated).
    pub absorbed: HashSet<usize>,
    /// Index of the last node of a match (its output is the fusion's) -> the fusion.
    pub emit: HashMap<usize, Fusion>,
}

/// A consumer that is not a node: the graph's output.
const GRAPH_OUTPUT: usize = usize::MAX;

/// The graph with its producer and consumer maps (shared with `super::layernorm`).
pub(super) struct View<'g> {
    pub g: &'g GraphProto,
    pub producer: HashMap<&'g str, usize>,
    pub consumers: HashMap<&'g str, Vec<usize>>,
}

impl<'g> View<'g> {
    pub(super) fn new(g: &'g GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                consumers.entry(x.as_str()).or_default().push(i);
            }
        }
        for o in &g.output {
            consumers
                .entry(o.name.as_str())
                .or_default()
                .push(GRAPH_OUTPUT);
        }
        View {
            g,
            producer,
            consumers,
        }
    }

    pub(super) fn node(&self, i: usize) -> &'g NodeProto {
        &self.g.node[i]
    }

    /// The one node reading `name`, if exactly one does.
    pub(super) fn only_consumer(&self, name: &str) -> Option<usize> {
        match self.consumers.get(name).map(Vec::as_slice) {
            Some(&[c]) if c != GRAPH_OUTPUT => Some(c),
            _ => None,
        }
    }

    /// The value of a one-element constant (initializer or Constant node).
    pub(super) fn scalar(&self, name: &str) -> Option<f64> {
        if let Some(t) = self.g.initializer.iter().find(|t| t.name == name) {
            let c = tensor_values(t, "").ok()?;
            return (c.data.len() == 1).then(|| c.data[0]);
        }
        let n = self.node(*self.producer.get(name)?);
        if n.op_type != "Constant" {
            return None;
        }
        let a = n.attribute.first()?;
        match a.name.as_str() {
            "value_float" => Some(a.f as f64),
            "value" => {
                let c = tensor_values(a.t.as_ref()?, "").ok()?;
                (c.data.len() == 1).then(|| c.data[0])
            }
            _ => None,
        }
    }

    /// The output of node `i`'s other input than `from` (binary ops).
    pub(super) fn other(&self, i: usize, from: &str) -> Option<&'g str> {
        let n = self.node(i);
        match &n.input[..] {
            [a, b] if a == from && b != from => Some(b),
            [a, b] if b == from && a != from => Some(a),
            _ => None,
        }
    }

    /// The tail from T's output: (x, the tail's nodes in order; the last is the GELU's).
    fn tail(&self, t: usize) -> Option<(&'g str, Vec<usize>)> {
        let out = self.node(t).output.first()?;
        let add = self.only_consumer(out)?;
        if self.node(add).op_type != "Add" || self.scalar(self.other(add, out)?) != Some(1.0) {
            return None;
        }
        let mut nodes = vec![add];
        let (mut cur, mut c, mut x) = (self.node(add).output.first()?.as_str(), 1.0, None);
        for _ in 0..2 {
            let m = self.only_consumer(cur)?;
            if self.node(m).op_type != "Mul" {
                return None;
            }
            let other = self.other(m, cur)?;
            if let Some(v) = self.scalar(other) {
                c *= v;
            } else if let Some((h, xv, v)) = self.times_const(other) {
                if x.replace(xv).is_some() || self.only_consumer(other) != Some(m) {
                    return None;
                }
                c *= v;
                nodes.push(h);
            } else if x.replace(other).is_some() {
                return None;
            }
            nodes.push(m);
            cur = self.node(m).output.first()?;
            if x.is_some() && (c - 0.5).abs() < 1e-6 {
                return Some((x?, nodes));
            }
        }
        None
    }

    /// `name` = Mul(x, c) for a scalar constant c: (its node, x, c).
    fn times_const(&self, name: &str) -> Option<(usize, &'g str, f64)> {
        let h = *self.producer.get(name)?;
        let n = self.node(h);
        if n.op_type != "Mul" || n.input.len() != 2 {
            return None;
        }
        for (a, b) in [(0, 1), (1, 0)] {
            if let Some(v) = self.scalar(&n.input[b]) {
                if self.scalar(&n.input[a]).is_none() {
                    return Some((h, n.input[a].as_str(), v));
                }
            }
        }
        None
    }

    /// The nodes computing `name` from `x` and scalars by arithmetic only (at most 8, at
    /// most `depth` deep: a malformed file may hold a cycle).
    fn cone(&self, name: &str, x: &str, nodes: &mut Vec<usize>, depth: usize) -> Option<()> {
        if name == x || self.scalar(name).is_some() {
            return Some(());
        }
        if depth == 0 {
            return None;
        }
        let p = *self.producer.get(name)?;
        let n = self.node(p);
        if !["Mul", "Add", "Sub", "Div", "Pow"].contains(&n.op_type.as_str()) || nodes.len() >= 8 {
            return None;
        }
        if !nodes.contains(&p) {
            nodes.push(p);
        }
        for i in &n.input {
            self.cone(i, x, nodes, depth - 1)?;
        }
        Some(())
    }

    /// `name` evaluated in f64 with x = `xv` (over a cone found by `cone`, so acyclic).
    fn eval(&self, name: &str, x: &str, xv: f64) -> Option<f64> {
        if name == x {
            return Some(xv);
        }
        if let Some(v) = self.scalar(name) {
            return Some(v);
        }
        let n = self.node(*self.producer.get(name)?);
        let a = self.eval(n.input.first()?, x, xv)?;
        let b = self.eval(n.input.get(1)?, x, xv)?;
        Some(match n.op_type.as_str() {
            "Mul" => a * b,
            "Add" => a + b,
            "Sub" => a - b,
            "Div" => a / b,
            _ => a.powf(b),
        })
    }
}

/// Every GELU subgraph of `g` (see the module doc), then every layer normalisation
/// (`super::layernorm::find`).
pub(super) fn find(g: &GraphProto) -> Fused {
    let v = View::new(g);
    let mut out = Fused::default();
    gelus(&v, &mut out);
    super::layernorm::find(&v, &mut out);
    out
}

fn gelus(v: &View, out: &mut Fused) {
    let g = v.g;
    for (t, n) in g.node.iter().enumerate() {
        let target: fn(f64) -> f64 = match n.op_type.as_str() {
            "Erf" => |x| x / std::f64::consts::SQRT_2,
            "Tanh" => |x| (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x),
            _ => continue,
        };
        let Some((x, tail)) = v.tail(t) else {
            continue;
        };
        let Some(arg) = n.input.first() else {
            continue;
        };
        let mut head = Vec::new();
        if v.cone(arg, x, &mut head, 8).is_none() || arg == x {
            continue;
        }
        let fits = [-3.0, -1.2, -0.4, 0.3, 0.9, 2.5].iter().all(|&s| {
            v.eval(arg, x, s)
                .is_some_and(|y| (y - target(s)).abs() <= 1e-5 * target(s).abs().max(1e-3))
        });
        if !fits {
            continue;
        }
        let last = *tail.last().expect("a tail has a Mul");
        let inside: HashSet<usize> = head.iter().chain(&tail).copied().chain([t]).collect();
        // Every intermediate output is read only inside the match.
        let closed = inside.iter().filter(|&&i| i != last).all(|&i| {
            v.node(i).output.iter().all(|o| {
                v.consumers
                    .get(o.as_str())
                    .is_none_or(|cs| cs.iter().all(|c| inside.contains(c)))
            })
        });
        if closed && inside.iter().all(|i| !out.absorbed.contains(i)) {
            out.absorbed.extend(inside.iter().filter(|&&i| i != last));
            out.emit.insert(last, Fusion::Gelu { x: x.to_string() });
        }
    }
}
