//! Decoding an ONNX model and translating its nodes to graph ops. Depends on
//! onnx::{proto, gelu}, model::graph, ring::{shape, plain} and error.
//!
//! Every tensor name maps to a `Val`: an activation (a graph tensor, secret at run time)
//! or a constant known at import time (an initializer, a Constant node, or anything
//! computed only from constants and static shapes, which is folded here in f64 so the
//! shape arithmetic of exporters never reaches the engine). A node on activations becomes
//! one or a few graph nodes; anything else is refused, naming the node, its op and the
//! attribute or operand at fault.

use std::collections::HashMap;
use std::rc::Rc;

use prost::Message;

use super::gelu::{self, Fusion};
use super::proto::{self, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use super::{MAX_NODES, MAX_RANK, MAX_TENSOR_ELEMS};
use crate::error::{Error, Result};
use crate::model::graph::{Graph, GraphBuilder, Op, TensorId};
use crate::ring::{shape, PlainTensor};

/// The opsets of the default domain whose semantics of the supported ops we implement.
const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// Largest kernel, stride or padding accepted (so window arithmetic cannot overflow).
const MAX_SPATIAL: i64 = 1 << 16;

/// A tensor known at import time: f64 values (integer tensors hold exact integers below
/// 2^53, far beyond any shape or index).
#[derive(Clone, Debug)]
pub(super) struct Const {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Const {
    fn scalar(&self) -> Option<f64> {
        (self.data.len() == 1).then(|| self.data[0])
    }
    fn plain(&self) -> PlainTensor {
        PlainTensor::from_vec(&self.shape, self.data.clone())
    }
    fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
}

#[derive(Clone, Debug)]
enum Val {
    Act(TensorId),
    Const(Rc<Const>),
}

fn cfg(msg: String) -> Error {
    Error::Config(msg)
}

/// Elements of `dims`, checked against the caps (no overflow, no negative dim).
fn count(dims: &[i64], what: &str) -> std::result::Result<Vec<usize>, String> {
    if dims.len() > MAX_RANK {
        return Err(format!(
            "{what} has rank {} (at most {MAX_RANK})",
            dims.len()
        ));
    }
    let mut n: usize = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| format!("{what} has a negative dim {d}"))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_TENSOR_ELEMS)
            .ok_or_else(|| format!("{what} has more than {MAX_TENSOR_ELEMS} elements"))?;
        out.push(d);
    }
    Ok(out)
}

/// A TensorProto's values as f64, every length checked against its dims.
pub(super) fn tensor_values(t: &TensorProto, what: &str) -> std::result::Result<Const, String> {
    let shape = count(&t.dims, what)?;
    let n: usize = shape.iter().product();
    if t.data_location == 1 {
        return Err(format!(
            "{what} keeps its data in an external file, which is not supported: export with the weights inside the .onnx"
        ));
    }
    let raw = &t.raw_data;
    let from_raw =
        |size: usize, f: &dyn Fn(&[u8]) -> f64| -> std::result::Result<Vec<f64>, String> {
            if raw.len() != n * size {
                return Err(format!(
                    "{what}: raw data of {} bytes for {n} elements of {size} bytes",
                    raw.len()
                ));
            }
            Ok(raw.chunks_exact(size).map(f).collect())
        };
    let typed = |len: usize| -> std::result::Result<(), String> {
        if len == n {
            Ok(())
        } else {
            Err(format!("{what}: {len} values for {n} elements"))
        }
    };
    let data = match t.data_type {
        proto::FLOAT if !raw.is_empty() => {
            from_raw(4, &|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)?
        }
        proto::FLOAT => {
            typed(t.float_data.len())?;
            t.float_data.iter().map(|&v| v as f64).collect()
        }
        proto::DOUBLE if !raw.is_empty() => {
            from_raw(8, &|b| f64::from_le_bytes(b.try_into().unwrap()))?
        }
        proto::DOUBLE => {
            typed(t.double_data.len())?;
            t.double_data.clone()
        }
        proto::INT64 if !raw.is_empty() => {
            from_raw(8, &|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)?
        }
        proto::INT64 => {
            typed(t.int64_data.len())?;
            t.int64_data.iter().map(|&v| v as f64).collect()
        }
        proto::INT32 if !raw.is_empty() => {
            from_raw(4, &|b| i32::from_le_bytes(b.try_into().unwrap()) as f64)?
        }
        proto::INT8 if !raw.is_empty() => from_raw(1, &|b| b[0] as i8 as f64)?,
        proto::UINT8 | proto::BOOL if !raw.is_empty() => from_raw(1, &|b| b[0] as f64)?,
        proto::INT32 | proto::INT8 | proto::UINT8 | proto::BOOL => {
            typed(t.int32_data.len())?;
            t.int32_data.iter().map(|&v| v as f64).collect()
        }
        other => {
            return Err(format!(
                "{what} has data type {other}, which is not supported (float, double, int8/32/64, uint8, bool are)"
            ))
        }
    };
    Ok(Const { shape, data })
}

/// The data type of a value info and its dims (None for a symbolic or unknown dim).
fn value_type(v: &proto::ValueInfoProto) -> (i32, Option<Vec<Option<i64>>>) {
    let Some(tt) = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return (0, None);
    };
    let dims = tt.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| d.dim_value.filter(|&v| v > 0))
            .collect()
    });
    (tt.elem_type, dims)
}

/// Import an ONNX model from its bytes; `what` names the file in errors.
pub fn import(bytes: &[u8], input_shape: Option<&[usize]>, what: &str) -> Result<Graph> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        cfg(format!(
            "model {what} is not a valid ONNX file (protobuf decoding failed: {e}); is it truncated?"
        ))
    })?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            cfg(format!(
                "model {what} imports no opset of the default ONNX domain (is it an ONNX model?)"
            ))
        })?;
    if !OPSETS.contains(&opset) {
        return Err(cfg(format!(
            "model {what} uses opset {opset}; mpc-pipe reads opsets {} to {} (re-export with torch.onnx.export(..., opset_version=17))",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| cfg(format!("model {what} has no graph")))?;
    if g.node.len() > MAX_NODES {
        return Err(cfg(format!(
            "model {what} has {} nodes (at most {MAX_NODES})",
            g.node.len()
        )));
    }
    Importer::new(g, what, input_shape)?.run()
}

struct Importer<'m> {
    g: &'m GraphProto,
    what: &'m str,
    b: GraphBuilder,
    vals: HashMap<String, Val>,
    /// Graph constants already made from a named ONNX constant.
    const_ids: HashMap<String, TensorId>,
}

impl<'m> Importer<'m> {
    fn new(g: &'m GraphProto, what: &'m str, input_shape: Option<&[usize]>) -> Result<Self> {
        let mut vals = HashMap::new();
        for t in &g.initializer {
            let c = tensor_values(t, &format!("initializer '{}'", t.name))
                .map_err(|m| cfg(format!("model {what}: {m}")))?;
            vals.insert(t.name.clone(), Val::Const(Rc::new(c)));
        }
        let data: Vec<&proto::ValueInfoProto> = g
            .input
            .iter()
            .filter(|v| !vals.contains_key(&v.name))
            .collect();
        let [input] = data[..] else {
            let names: Vec<&str> = data.iter().map(|v| v.name.as_str()).collect();
            return Err(cfg(format!(
                "model {what} has {} data inputs ({names:?}); mpc-pipe runs models with exactly one",
                data.len()
            )));
        };
        let (elem, dims) = value_type(input);
        if elem != proto::FLOAT && elem != proto::DOUBLE {
            return Err(cfg(format!(
                "model {what}: input '{}' has data type {elem}; only float and double inputs are supported",
                input.name
            )));
        }
        let dims = dims.ok_or_else(|| {
            cfg(format!(
                "model {what}: input '{}' has no shape; give one with --input-shape",
                input.name
            ))
        })?;
        let shape = match input_shape {
            Some(s) => {
                if s.len() != dims.len()
                    || s.iter().zip(&dims).any(|(&a, d)| d.is_some_and(|d| d as usize != a))
                {
                    return Err(cfg(format!(
                        "--input-shape {s:?} does not fit input '{}' of model {what}, whose shape is {}",
                        input.name,
                        fmt_dims(&dims)
                    )));
                }
                s.to_vec()
            }
            None => dims
                .iter()
                .map(|d| d.map(|d| d as usize))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    cfg(format!(
                        "model {what}: input '{}' has the dynamic shape {}; give a static one with --input-shape (e.g. --input-shape {})",
                        input.name,
                        fmt_dims(&dims),
                        dims.iter().map(|d| d.unwrap_or(1).to_string()).collect::<Vec<_>>().join(",")
                    ))
                })?,
        };
        count(
            &shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
            "the input",
        )
        .map_err(|m| cfg(format!("model {what}: {m}")))?;
        if shape.contains(&0) {
            return Err(cfg(format!(
                "model {what}: the input shape {shape:?} is empty"
            )));
        }
        let name = if g.name.is_empty() { "onnx" } else { &g.name };
        let b = GraphBuilder::new(name, &shape);
        vals.insert(input.name.clone(), Val::Act(b.input()));
        Ok(Importer {
            g,
            what,
            b,
            vals,
            const_ids: HashMap::new(),
        })
    }

    fn run(mut self) -> Result<Graph> {
        let g = self.g;
        let fused = gelu::find(g);
        for (i, n) in g.node.iter().enumerate() {
            if fused.absorbed.contains(&i) {
                continue;
            }
            if let Some(f) = fused.emit.get(&i) {
                // A fused pattern's last node names the result: a file may leave it out.
                let Some(out) = n.output.first().cloned() else {
                    return Err(self.refuse(n, "has no output"));
                };
                let y = self.fusion(n, f)?;
                self.vals.insert(out, Val::Act(y));
                continue;
            }
            if !n.domain.is_empty() && n.domain != "ai.onnx" {
                return Err(self.refuse(n, format!("domain '{}' is not supported", n.domain)));
            }
            self.translate(n)?;
        }
        let [out] = &self.g.output[..] else {
            return Err(cfg(format!(
                "model {}: has {} outputs; mpc-pipe runs models with exactly one",
                self.what,
                self.g.output.len()
            )));
        };
        let y = match self.vals.get(&out.name) {
            Some(Val::Act(t)) => *t,
            Some(Val::Const(_)) => {
                return Err(cfg(format!(
                    "model {}: output '{}' does not depend on the input",
                    self.what, out.name
                )))
            }
            None => {
                return Err(cfg(format!(
                    "model {}: output '{}' is produced by no node",
                    self.what, out.name
                )))
            }
        };
        let y = if y == self.b.input() {
            self.b.node("output", Op::Identity, &[y])?
        } else {
            y
        };
        self.b.finish(y)
    }

    /// The graph node of a fused subgraph ending at `n`.
    fn fusion(&mut self, n: &NodeProto, f: &Fusion) -> Result<TensorId> {
        match f {
            Fusion::Gelu { x } => {
                let x = self.act(n, x)?;
                self.node(n, Op::GeluErf, &[x])
            }
            Fusion::LayerNorm {
                x,
                axis,
                eps,
                gamma,
                beta,
                first,
            } => {
                let first = &self.g.node[*first];
                let x = self.act(first, x)?;
                let r = self.b.shape(x).len();
                if self.axis(first, *axis, r, "axes")? != r - 1 {
                    return Err(self.refuse(first, format!("a layer normalisation over axis {axis}: only the last axis is supported")));
                }
                let h = self.b.shape(x)[r - 1];
                let mut param = |name: &Option<String>,
                                 fill: f64,
                                 what: &str|
                 -> Result<TensorId> {
                    match name {
                        None => Ok(self.new_const(&format!("layernorm.{what}"), PlainTensor::from_vec(&[h], vec![fill; h]))),
                        Some(p) => match self.vals.get(p) {
                            Some(Val::Const(c)) if c.data.len() == h => {
                                Ok(self.new_const(p, PlainTensor::from_vec(&[h], c.data.clone())))
                            }
                            _ => Err(self.refuse(n, format!("layer normalisation {what} '{p}' must be a constant of {h} values"))),
                        },
                    }
                };
                let g = param(gamma, 1.0, "scale")?;
                let b = param(beta, 0.0, "bias")?;
                self.node(n, Op::LayerNorm { eps: *eps }, &[x, g, b])
            }
        }
    }

    fn refuse(&self, n: &NodeProto, msg: impl std::fmt::Display) -> Error {
        cfg(format!(
            "model {}: node '{}' ({}): {msg}",
            self.what, n.name, n.op_type
        ))
    }

    fn val(&self, n: &NodeProto, k: usize) -> Result<Val> {
        let name = n
            .input
            .get(k)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.refuse(n, format!("input {k} is missing")))?;
        self.vals.get(name).cloned().ok_or_else(|| {
            self.refuse(
                n,
                format!("reads '{name}', which no node before it produces (or which comes from an output that is not supported)"),
            )
        })
    }

    fn opt_val(&self, n: &NodeProto, k: usize) -> Result<Option<Val>> {
        match n.input.get(k) {
            Some(s) if !s.is_empty() => self.val(n, k).map(Some),
            _ => Ok(None),
        }
    }

    fn act(&self, n: &NodeProto, name: &str) -> Result<TensorId> {
        match self.vals.get(name) {
            Some(Val::Act(t)) => Ok(*t),
            _ => Err(self.refuse(n, format!("'{name}' must be an activation"))),
        }
    }

    fn cst(&self, n: &NodeProto, k: usize, what: &str) -> Result<Rc<Const>> {
        match self.val(n, k)? {
            Val::Const(c) => Ok(c),
            Val::Act(_) => Err(self.refuse(
                n,
                format!("{what} (input {k}, '{}') must be a constant: a value computed from the input is not supported there", n.input[k]),
            )),
        }
    }

    /// The graph constant for input `k` (a constant), made once per ONNX name.
    fn const_id(&mut self, n: &NodeProto, k: usize, c: &Const) -> TensorId {
        let name = n.input[k].clone();
        if let Some(&t) = self.const_ids.get(&name) {
            return t;
        }
        let t = self.b.constant(&name, c.plain());
        self.const_ids.insert(name, t);
        t
    }

    /// A graph constant derived at import time (scaled, reciprocal, zeros).
    fn new_const(&mut self, name: &str, c: PlainTensor) -> TensorId {
        self.b.constant(name, c)
    }

    fn node(&mut self, n: &NodeProto, op: Op, ins: &[TensorId]) -> Result<TensorId> {
        let name = if n.name.is_empty() {
            n.output.first().cloned().unwrap_or_default()
        } else {
            n.name.clone()
        };
        self.b.node(&name, op, ins).map_err(|e| match e {
            Error::Config(m) => cfg(format!("model {}: {m} (ONNX op {})", self.what, n.op_type)),
            other => other,
        })
    }

    fn set(&mut self, n: &NodeProto, v: Val) -> Result<()> {
        let out = n
            .output
            .first()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.refuse(n, "has no output"))?;
        self.vals.insert(out.clone(), v);
        Ok(())
    }

    fn set_const(&mut self, n: &NodeProto, shape: Vec<usize>, data: Vec<f64>) -> Result<()> {
        self.set(n, Val::Const(Rc::new(Const { shape, data })))
    }

    fn attr<'n>(&self, n: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
        n.attribute.iter().find(|a| a.name == name)
    }

    fn attr_i(&self, n: &NodeProto, name: &str, default: i64) -> i64 {
        self.attr(n, name).map_or(default, |a| a.i)
    }

    fn attr_f(&self, n: &NodeProto, name: &str, default: f64) -> f64 {
        self.attr(n, name).map_or(default, |a| a.f as f64)
    }

    fn attr_ints(&self, n: &NodeProto, name: &str) -> Option<Vec<i64>> {
        self.attr(n, name).map(|a| a.ints.clone())
    }

    fn attr_s(&self, n: &NodeProto, name: &str) -> Option<String> {
        self.attr(n, name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    fn shape_of(&self, v: &Val) -> Vec<usize> {
        match v {
            Val::Act(t) => self.b.shape(*t).to_vec(),
            Val::Const(c) => c.shape.clone(),
        }
    }

    /// A (possibly negative) axis of a rank-`rank` tensor, checked.
    fn axis(&self, n: &NodeProto, a: i64, rank: usize, attr: &str) -> Result<usize> {
        let r = rank as i64;
        if a < -r || a >= r {
            return Err(self.refuse(
                n,
                format!("attribute '{attr}' = {a} is out of range for rank {rank}"),
            ));
        }
        Ok(if a < 0 { (a + r) as usize } else { a as usize })
    }

    /// Refuse an attribute whose value is not the supported one.
    fn want_i(&self, n: &NodeProto, name: &str, default: i64, ok: &[i64]) -> Result<()> {
        let v = self.attr_i(n, name, default);
        if ok.contains(&v) {
            Ok(())
        } else {
            Err(self.refuse(
                n,
                format!("attribute '{name}' = {v} is not supported (supported: {ok:?})"),
            ))
        }
    }

    fn translate(&mut self, n: &NodeProto) -> Result<()> {
        let op = n.op_type.as_str();
        // Constant subgraphs first: every input known now means the output is too.
        let ins: Vec<Option<Val>> = (0..n.input.len())
            .map(|k| self.opt_val(n, k))
            .collect::<Result<_>>()?;
        let all_const = ins.iter().all(|v| !matches!(v, Some(Val::Act(_))));
        match op {
            "Constant" => return self.constant(n),
            "Shape" => {
                let s = self.shape_of(&self.val(n, 0)?);
                let r = s.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (a, e) = (
                    clamp(self.attr_i(n, "start", 0)),
                    clamp(self.attr_i(n, "end", r)),
                );
                let d: Vec<f64> = s[a..e.max(a)].iter().map(|&v| v as f64).collect();
                return self.set_const(n, vec![d.len()], d);
            }
            "Identity" | "Dropout" => {
                if op == "Dropout" {
                    if let Some(Val::Const(t)) = self.opt_val(n, 2)? {
                        if t.data.iter().any(|&v| v != 0.0) {
                            return Err(self.refuse(n, "input 'training_mode' is true; only inference (training_mode false) is supported"));
                        }
                    } else if self.opt_val(n, 2)?.is_some() {
                        return Err(self.refuse(n, "input 'training_mode' must be a constant"));
                    }
                }
                let v = self.val(n, 0)?;
                return self.set(n, v);
            }
            "Cast" => {
                let to = i32::try_from(self.attr_i(n, "to", 0)).unwrap_or(-1);
                let v = self.val(n, 0)?;
                return match (&v, to) {
                    (_, proto::FLOAT | proto::DOUBLE) => self.set(n, v),
                    (Val::Const(c), proto::INT64 | proto::INT32) => {
                        let d = c.data.iter().map(|v| v.trunc()).collect();
                        self.set_const(n, c.shape.clone(), d)
                    }
                    _ => Err(self.refuse(
                        n,
                        format!(
                            "attribute 'to' = {to}: an activation is cast only to float or double"
                        ),
                    )),
                };
            }
            _ => {}
        }
        if all_const && !ins.is_empty() {
            return self.fold(n);
        }
        match op {
            "Relu" | "Sigmoid" => {
                let x = self.act_in(n, 0)?;
                let o = if op == "Relu" { Op::Relu } else { Op::Sigmoid };
                let y = self.node(n, o, &[x])?;
                self.set(n, Val::Act(y))
            }
            "Gelu" => {
                let a = self.attr_s(n, "approximate").unwrap_or_else(|| "none".into());
                if a != "none" && a != "tanh" {
                    return Err(self.refuse(n, format!("attribute 'approximate' = '{a}'")));
                }
                let x = self.act_in(n, 0)?;
                let y = self.node(n, Op::GeluErf, &[x])?;
                self.set(n, Val::Act(y))
            }
            "Add" | "Sub" | "Mul" | "Div" => self.binary(n),
            "MatMul" => self.matmul(n),
            "Gemm" => self.gemm(n),
            "Conv" => self.conv(n),
            "MaxPool" | "AveragePool" => self.pool(n),
            "GlobalAveragePool" => {
                let x = self.act_in(n, 0)?;
                if self.b.shape(x).len() != 4 {
                    return Err(self.refuse(n, "only 2-D pooling of [N, C, H, W] is supported"));
                }
                let y = self.node(n, Op::GlobalAvgPool, &[x])?;
                self.set(n, Val::Act(y))
            }
            "BatchNormalization" => {
                self.want_i(n, "training_mode", 0, &[0])?;
                let x = self.act_in(n, 0)?;
                let mut ins = vec![x];
                for (k, w) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
                    let c = self.cst(n, k, w)?;
                    ins.push(self.const_id(n, k, &c));
                }
                let eps = self.attr_f(n, "epsilon", 1e-5);
                let y = self.node(n, Op::BatchNorm { eps }, &ins)?;
                self.set(n, Val::Act(y))
            }
            "Flatten" => {
                let x = self.act_in(n, 0)?;
                let r = self.b.shape(x).len();
                let a = self.attr_i(n, "axis", 1);
                let axis = if a == r as i64 { r } else { self.axis(n, a, r, "axis")? };
                let y = self.node(n, Op::Flatten { axis }, &[x])?;
                self.set(n, Val::Act(y))
            }
            "Reshape" => {
                self.want_i(n, "allowzero", 0, &[0])?;
                let x = self.act_in(n, 0)?;
                let shape = self.target_shape(n)?;
                let y = self.node(n, Op::Reshape { shape }, &[x])?;
                self.set(n, Val::Act(y))
            }
            "Squeeze" | "Unsqueeze" => {
                let x = self.act_in(n, 0)?;
                let s = self.b.shape(x).to_vec();
                let out = self.squeeze_shape(n, &s)?;
                let shape = out.iter().map(|&d| d as i64).collect();
                let y = self.node(n, Op::Reshape { shape }, &[x])?;
                self.set(n, Val::Act(y))
            }
            "Transpose" => {
                let x = self.act_in(n, 0)?;
                let r = self.b.shape(x).len();
                let perm = self.perm(n, r)?;
                let y = self.node(n, Op::Transpose { perm }, &[x])?;
                self.set(n, Val::Act(y))
            }
            "Concat" => {
                let mut xs = Vec::new();
                for k in 0..n.input.len() {
                    match self.val(n, k)? {
                        Val::Act(t) => xs.push(t),
                        Val::Const(c) if c.data.is_empty() => {}
                        Val::Const(c) => xs.push(self.const_id(n, k, &c)),
                    }
                }
                // Empty constants are dropped above; a Concat of nothing else (found by
                // the onnx_model fuzz target) has no shape to take the rank from.
                let Some(&first) = xs.first() else {
                    return Err(self.refuse(n, "no non-empty input to concatenate"));
                };
                let r = self.b.shape(first).len();
                let axis = self.axis(n, self.attr_i(n, "axis", 0), r, "axis")?;
                let y = self.node(n, Op::Concat { axis }, &xs)?;
                self.set(n, Val::Act(y))
            }
            "Softmax" => {
                let x = self.act_in(n, 0)?;
                let r = self.b.shape(x).len();
                let axis = self.axis(n, self.attr_i(n, "axis", -1), r, "axis")?;
                let y = self.node(n, Op::Softmax { axis }, &[x])?;
                self.set(n, Val::Act(y))
            }
            "LayerNormalization" => {
                let x = self.act_in(n, 0)?;
                let r = self.b.shape(x).len();
                let axis = self.axis(n, self.attr_i(n, "axis", -1), r, "axis")?;
                if axis != r - 1 {
                    return Err(self.refuse(n, format!("attribute 'axis' = {axis}: only normalisation over the last axis is supported")));
                }
                let h = self.b.shape(x)[r - 1];
                let g = self.cst(n, 1, "scale")?;
                let g = self.const_id(n, 1, &g);
                let beta = match self.opt_val(n, 2)? {
                    None => self.new_const("layernorm.zero_bias", PlainTensor::zeros(&[h])),
                    Some(_) => {
                        let c = self.cst(n, 2, "bias")?;
                        self.const_id(n, 2, &c)
                    }
                };
                let eps = self.attr_f(n, "epsilon", 1e-5);
                let y = self.node(n, Op::LayerNorm { eps }, &[x, g, beta])?;
                self.set(n, Val::Act(y))
            }
            "Slice" => {
                let x = self.act_in(n, 0)?;
                let s = self.b.shape(x).to_vec();
                let mut y = x;
                for (axis, a, e) in self.slices(n, &s)? {
                    if a == 0 && e == s[axis] {
                        continue;
                    }
                    y = self.node(n, Op::Slice { axis, start: a, end: e }, &[y])?;
                }
                if y == x {
                    y = self.node(n, Op::Identity, &[x])?;
                }
                self.set(n, Val::Act(y))
            }
            "Split" => self.split(n),
            "Erf" | "Tanh" => Err(self.refuse(n, format!("{op} is supported only inside the GELU pattern x·0.5·(1 + Erf(x/√2)) or x·0.5·(1 + Tanh(√(2/π)·(x + 0.044715·x³))), as torch exports nn.GELU; this one does not match it"))),
            _ => Err(self.refuse(n, "this op is not supported by mpc-pipe (see README: ONNX import)")),
        }
    }

    fn act_in(&self, n: &NodeProto, k: usize) -> Result<TensorId> {
        match self.val(n, k)? {
            Val::Act(t) => Ok(t),
            Val::Const(_) => Err(self.refuse(n, format!("input {k} must be an activation"))),
        }
    }

    fn constant(&mut self, n: &NodeProto) -> Result<()> {
        let a = n
            .attribute
            .first()
            .ok_or_else(|| self.refuse(n, "has no value attribute"))?;
        let c = match a.name.as_str() {
            "value" => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.refuse(n, "attribute 'value' has no tensor"))?;
                tensor_values(t, "attribute 'value'").map_err(|m| self.refuse(n, m))?
            }
            "value_float" => Const {
                shape: vec![],
                data: vec![a.f as f64],
            },
            "value_int" => Const {
                shape: vec![],
                data: vec![a.i as f64],
            },
            "value_floats" => Const {
                shape: vec![a.floats.len()],
                data: a.floats.iter().map(|&v| v as f64).collect(),
            },
            "value_ints" => Const {
                shape: vec![a.ints.len()],
                data: a.ints.iter().map(|&v| v as f64).collect(),
            },
            other => return Err(self.refuse(n, format!("attribute '{other}' is not supported"))),
        };
        self.set(n, Val::Const(Rc::new(c)))
    }

    /// Output shape of Squeeze/Unsqueeze on a tensor of shape `s` (axes from the input
    /// since opset 13).
    fn squeeze_shape(&self, n: &NodeProto, s: &[usize]) -> Result<Vec<usize>> {
        let axes = match self.opt_val(n, 1)? {
            Some(Val::Const(c)) => Some(c.ints()),
            Some(Val::Act(_)) => return Err(self.refuse(n, "input 'axes' must be a constant")),
            None => self.attr_ints(n, "axes"),
        };
        if n.op_type == "Squeeze" {
            let axes = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| self.axis(n, a, s.len(), "axes"))
                    .collect::<Result<Vec<_>>>()?,
                None => (0..s.len()).filter(|&i| s[i] == 1).collect(),
            };
            if let Some(&a) = axes.iter().find(|&&a| s[a] != 1) {
                return Err(self.refuse(n, format!("axis {a} of {s:?} is not 1")));
            }
            Ok((0..s.len())
                .filter(|i| !axes.contains(i))
                .map(|i| s[i])
                .collect())
        } else {
            let axes = axes.ok_or_else(|| self.refuse(n, "has no 'axes'"))?;
            let r = s.len() + axes.len();
            if r > MAX_RANK {
                return Err(self.refuse(
                    n,
                    format!("the result would have rank {r} (at most {MAX_RANK})"),
                ));
            }
            let mut axes = axes
                .iter()
                .map(|&a| self.axis(n, a, r, "axes"))
                .collect::<Result<Vec<_>>>()?;
            axes.sort_unstable();
            axes.dedup();
            if axes.len() + s.len() != r {
                return Err(self.refuse(n, "attribute 'axes' repeats an axis"));
            }
            let mut it = s.iter();
            Ok((0..r)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        *it.next().unwrap()
                    }
                })
                .collect())
        }
    }

    /// Reshape's target (input 1), each dim checked so shape arithmetic cannot overflow.
    fn target_shape(&self, n: &NodeProto) -> Result<Vec<i64>> {
        let t = self.cst(n, 1, "the target shape")?.ints();
        if t.len() > MAX_RANK || t.iter().any(|&d| d < -1 || d > MAX_TENSOR_ELEMS as i64) {
            return Err(self.refuse(n, format!("target shape {t:?} is out of range")));
        }
        Ok(t)
    }

    fn perm(&self, n: &NodeProto, r: usize) -> Result<Vec<usize>> {
        let perm: Vec<usize> = match self.attr_ints(n, "perm") {
            Some(p) => p
                .iter()
                .map(|&a| self.axis(n, a, r, "perm"))
                .collect::<Result<_>>()?,
            None => (0..r).rev().collect(),
        };
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
            return Err(self.refuse(
                n,
                format!("attribute 'perm' = {perm:?} is not a permutation of {r} axes"),
            ));
        }
        Ok(perm)
    }

    /// (axis, start, end) of each axis a Slice cuts, steps 1 only, bounds clamped as ONNX.
    fn slices(&self, n: &NodeProto, s: &[usize]) -> Result<Vec<(usize, usize, usize)>> {
        let get = |k: usize, what: &str| -> Result<Option<Vec<i64>>> {
            match self.opt_val(n, k)? {
                None => Ok(None),
                Some(Val::Const(c)) => Ok(Some(c.ints())),
                Some(Val::Act(_)) => {
                    Err(self.refuse(n, format!("input '{what}' must be a constant")))
                }
            }
        };
        let starts = get(1, "starts")?.ok_or_else(|| self.refuse(n, "has no 'starts'"))?;
        let ends = get(2, "ends")?.ok_or_else(|| self.refuse(n, "has no 'ends'"))?;
        let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = get(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(self.refuse(n, "'starts', 'ends', 'axes' and 'steps' differ in length"));
        }
        let mut out = Vec::new();
        for i in 0..starts.len() {
            if steps[i] != 1 {
                return Err(self.refuse(
                    n,
                    format!("input 'steps' = {}: only step 1 is supported", steps[i]),
                ));
            }
            let axis = self.axis(n, axes[i], s.len(), "axes")?;
            let d = s[axis] as i64;
            let clamp = |v: i64| (if v < 0 { v + d } else { v }).clamp(0, d) as usize;
            let (a, e) = (clamp(starts[i]), clamp(ends[i]));
            if e <= a {
                return Err(self.refuse(
                    n,
                    format!(
                        "slice {}..{} of axis {axis} (length {d}) is empty",
                        starts[i], ends[i]
                    ),
                ));
            }
            out.push((axis, a, e));
        }
        Ok(out)
    }

    fn split(&mut self, n: &NodeProto) -> Result<()> {
        let x = self.act_in(n, 0)?;
        let s = self.b.shape(x).to_vec();
        let axis = self.axis(n, self.attr_i(n, "axis", 0), s.len(), "axis")?;
        let parts = n.output.len();
        let sizes: Vec<usize> = match self.opt_val(n, 1)? {
            Some(Val::Const(c)) => c
                .ints()
                .iter()
                .map(|&v| v.clamp(0, s[axis] as i64) as usize)
                .collect(),
            Some(Val::Act(_)) => return Err(self.refuse(n, "input 'split' must be a constant")),
            None => match self.attr_ints(n, "split") {
                Some(v) => v
                    .iter()
                    .map(|&v| v.clamp(0, s[axis] as i64) as usize)
                    .collect(),
                None => {
                    let k = s[axis].div_ceil(parts.max(1));
                    (0..parts)
                        .map(|i| k.min(s[axis].saturating_sub(i * k)))
                        .collect()
                }
            },
        };
        if sizes.len() != parts || sizes.iter().sum::<usize>() != s[axis] || sizes.contains(&0) {
            return Err(self.refuse(
                n,
                format!("split sizes {sizes:?} do not cut axis {axis} of {s:?} into {parts} parts"),
            ));
        }
        let mut at = 0;
        for (k, &len) in sizes.iter().enumerate() {
            let y = self.node(
                n,
                Op::Slice {
                    axis,
                    start: at,
                    end: at + len,
                },
                &[x],
            )?;
            at += len;
            if !n.output[k].is_empty() {
                self.vals.insert(n.output[k].clone(), Val::Act(y));
            }
        }
        Ok(())
    }

    fn binary(&mut self, n: &NodeProto) -> Result<()> {
        let op = n.op_type.as_str();
        let (a, b) = (self.val(n, 0)?, self.val(n, 1)?);
        let y = match (op, &a, &b) {
            ("Add" | "Sub" | "Mul", Val::Act(x), Val::Act(y)) => {
                let o = match op {
                    "Add" => Op::Add,
                    "Sub" => Op::Sub,
                    _ => Op::Mul,
                };
                self.node(n, o, &[*x, *y])?
            }
            ("Div", _, Val::Act(_)) => {
                return Err(self.refuse(
                    n,
                    format!(
                        "divides by an activation ('{}'); only division by constants is supported",
                        n.input[1]
                    ),
                ))
            }
            ("Mul" | "Div", Val::Act(x), Val::Const(c)) | ("Mul", Val::Const(c), Val::Act(x)) => {
                let k = if matches!(a, Val::Const(_)) { 0 } else { 1 };
                match c.scalar() {
                    Some(v) if self.b.shape(*x).len() >= c.shape.len() => {
                        let o = if op == "Mul" {
                            Op::MulConst(v)
                        } else {
                            Op::DivConst(v)
                        };
                        self.node(n, o, &[*x])?
                    }
                    _ if op == "Div" => {
                        if c.data.contains(&0.0) {
                            return Err(self.refuse(
                                n,
                                format!(
                                    "divides by the constant '{}', which has a zero",
                                    n.input[1]
                                ),
                            ));
                        }
                        let r = PlainTensor::from_vec(
                            &c.shape,
                            c.data.iter().map(|v| 1.0 / v).collect(),
                        );
                        let t = self.new_const(&format!("{}.reciprocal", n.input[1]), r);
                        self.node(n, Op::Mul, &[*x, t])?
                    }
                    _ => {
                        let t = self.const_id(n, k, c);
                        let ins = if k == 0 { [t, *x] } else { [*x, t] };
                        self.node(n, Op::Mul, &ins)?
                    }
                }
            }
            (_, Val::Act(x), Val::Const(c)) | (_, Val::Const(c), Val::Act(x)) => {
                let k = if matches!(a, Val::Const(_)) { 0 } else { 1 };
                let t = self.const_id(n, k, c);
                let ins = if k == 0 { [t, *x] } else { [*x, t] };
                let o = if op == "Add" { Op::Add } else { Op::Sub };
                self.node(n, o, &ins)?
            }
            _ => unreachable!("constant operands are folded"),
        };
        self.set(n, Val::Act(y))
    }

    fn matmul(&mut self, n: &NodeProto) -> Result<()> {
        let (a, b) = (self.val(n, 0)?, self.val(n, 1)?);
        let (sa, sb) = (self.shape_of(&a), self.shape_of(&b));
        if sa.len() < 2 || sb.len() < 2 {
            return Err(self.refuse(
                n,
                format!("operands {sa:?} and {sb:?}: 1-D operands are not supported"),
            ));
        }
        let ins = match (&a, &b) {
            (Val::Act(x), Val::Act(y)) => {
                if sa[..sa.len() - 2] != sb[..sb.len() - 2] {
                    return Err(self.refuse(n, format!("a product of two activations needs equal leading dims, got {sa:?} and {sb:?}")));
                }
                [*x, *y]
            }
            (Val::Act(x), Val::Const(c)) | (Val::Const(c), Val::Act(x)) => {
                if c.shape.len() != 2 {
                    return Err(self.refuse(
                        n,
                        format!("a constant operand must be 2-D, got {:?}", c.shape),
                    ));
                }
                let k = if matches!(a, Val::Const(_)) { 0 } else { 1 };
                let t = self.const_id(n, k, c);
                if k == 0 {
                    [t, *x]
                } else {
                    [*x, t]
                }
            }
            _ => unreachable!("constant operands are folded"),
        };
        let y = self.node(n, Op::MatMul, &ins)?;
        self.set(n, Val::Act(y))
    }

    fn gemm(&mut self, n: &NodeProto) -> Result<()> {
        let alpha = self.attr_f(n, "alpha", 1.0);
        let beta = self.attr_f(n, "beta", 1.0);
        let trans_a = self.attr_i(n, "transA", 0) != 0;
        let trans_b = self.attr_i(n, "transB", 0) != 0;
        let (a, b) = (self.val(n, 0)?, self.val(n, 1)?);
        let mut post_alpha = false;
        let operand = |this: &mut Self, k: usize, v: &Val, scale: bool| -> TensorId {
            match v {
                Val::Act(t) => *t,
                Val::Const(c) if scale && alpha != 1.0 => {
                    let p = c.plain().map(|v| v * alpha);
                    this.new_const(&format!("{}.alpha", n.input[k]), p)
                }
                Val::Const(c) => this.const_id(n, k, c),
            }
        };
        // alpha scales a constant operand (B if both are), else the product afterwards.
        let scale_b = matches!(b, Val::Const(_));
        let scale_a = !scale_b && matches!(a, Val::Const(_));
        if !scale_a && !scale_b && alpha != 1.0 {
            post_alpha = true;
        }
        let ta = operand(self, 0, &a, scale_a);
        let tb = operand(self, 1, &b, scale_b);
        let c = match self.opt_val(n, 2)? {
            None => None,
            Some(Val::Act(_)) => return Err(self.refuse(n, "input C must be a constant")),
            Some(Val::Const(c)) if beta == 1.0 => Some(self.const_id(n, 2, &c)),
            Some(Val::Const(c)) => {
                let p = c.plain().map(|v| v * beta);
                Some(self.new_const(&format!("{}.beta", n.input[2]), p))
            }
        };
        let op = Op::Gemm { trans_a, trans_b };
        let y = if post_alpha {
            let y = self.node(n, op, &[ta, tb])?;
            let y = self.node(n, Op::MulConst(alpha), &[y])?;
            match c {
                Some(c) => self.node(n, Op::Add, &[y, c])?,
                None => y,
            }
        } else {
            let mut ins = vec![ta, tb];
            ins.extend(c);
            self.node(n, op, &ins)?
        };
        self.set(n, Val::Act(y))
    }

    /// Refuse a spatial attribute (kernel, stride, pad) beyond any real model's.
    fn small(&self, n: &NodeProto, attr: &str, v: i64) -> Result<usize> {
        if (0..=MAX_SPATIAL).contains(&v) {
            Ok(v as usize)
        } else {
            Err(self.refuse(
                n,
                format!("attribute '{attr}' = {v} is out of range (0..={MAX_SPATIAL})"),
            ))
        }
    }

    /// One symmetric padding for both spatial axes, from 'pads' and 'auto_pad'.
    fn padding(&self, n: &NodeProto) -> Result<usize> {
        let auto = self.attr_s(n, "auto_pad").unwrap_or_default();
        if !(auto.is_empty() || auto == "NOTSET" || auto == "VALID") {
            return Err(self.refuse(
                n,
                format!("attribute 'auto_pad' = '{auto}' is not supported (give explicit pads)"),
            ));
        }
        match self.attr_ints(n, "pads") {
            None => Ok(0),
            Some(p) if p.len() == 4 && p.iter().all(|&v| v == p[0]) => self.small(n, "pads", p[0]),
            Some(p) => Err(self.refuse(
                n,
                format!("attribute 'pads' = {p:?}: only equal padding on every side is supported"),
            )),
        }
    }

    /// One stride for both spatial axes.
    fn stride(&self, n: &NodeProto) -> Result<usize> {
        match self.attr_ints(n, "strides") {
            None => Ok(1),
            Some(s) if s.len() == 2 && s[0] == s[1] && s[0] > 0 => self.small(n, "strides", s[0]),
            Some(s) => Err(self.refuse(
                n,
                format!(
                    "attribute 'strides' = {s:?}: only equal strides on both axes are supported"
                ),
            )),
        }
    }

    fn no_dilation(&self, n: &NodeProto) -> Result<()> {
        match self.attr_ints(n, "dilations") {
            Some(d) if d.iter().any(|&v| v != 1) => Err(self.refuse(
                n,
                format!("attribute 'dilations' = {d:?}: only dilation 1 is supported"),
            )),
            _ => Ok(()),
        }
    }

    fn conv(&mut self, n: &NodeProto) -> Result<()> {
        let x = self.act_in(n, 0)?;
        if self.b.shape(x).len() != 4 {
            return Err(self.refuse(
                n,
                format!(
                    "input {:?}: only 2-D convolution of [N, C, H, W] is supported",
                    self.b.shape(x)
                ),
            ));
        }
        self.want_i(n, "group", 1, &[1])?;
        self.no_dilation(n)?;
        let (stride, padding) = (self.stride(n)?, self.padding(n)?);
        let w = self.cst(n, 1, "the weight")?;
        if let Some(k) = self.attr_ints(n, "kernel_shape") {
            if w.shape.len() != 4 || k[..] != [w.shape[2] as i64, w.shape[3] as i64] {
                return Err(self.refuse(
                    n,
                    format!(
                        "attribute 'kernel_shape' = {k:?} does not match the weight {:?}",
                        w.shape
                    ),
                ));
            }
        }
        let mut ins = vec![x, self.const_id(n, 1, &w)];
        if self.opt_val(n, 2)?.is_some() {
            let b = self.cst(n, 2, "the bias")?;
            ins.push(self.const_id(n, 2, &b));
        }
        let y = self.node(n, Op::Conv2d { stride, padding }, &ins)?;
        self.set(n, Val::Act(y))
    }

    fn pool(&mut self, n: &NodeProto) -> Result<()> {
        let x = self.act_in(n, 0)?;
        if self.b.shape(x).len() != 4 {
            return Err(self.refuse(n, "only 2-D pooling of [N, C, H, W] is supported"));
        }
        self.want_i(n, "ceil_mode", 0, &[0])?;
        self.want_i(n, "storage_order", 0, &[0])?;
        self.no_dilation(n)?;
        let kernel = match self.attr_ints(n, "kernel_shape") {
            Some(k) if k.len() == 2 && k[0] == k[1] && k[0] > 0 => {
                self.small(n, "kernel_shape", k[0])?
            }
            k => {
                return Err(self.refuse(
                    n,
                    format!(
                        "attribute 'kernel_shape' = {k:?}: only square 2-D kernels are supported"
                    ),
                ))
            }
        };
        let (stride, padding) = (self.stride(n)?, self.padding(n)?);
        let op = if n.op_type == "MaxPool" {
            Op::MaxPool {
                kernel,
                stride,
                padding,
            }
        } else if self.attr_i(n, "count_include_pad", 0) != 0 || padding == 0 {
            Op::AvgPool {
                kernel,
                stride,
                padding,
            }
        } else {
            Op::AvgPoolValid {
                kernel,
                stride,
                padding,
            }
        };
        let y = self.node(n, op, &[x])?;
        self.set(n, Val::Act(y))
    }

    /// A node whose inputs are all constants, evaluated now.
    fn fold(&mut self, n: &NodeProto) -> Result<()> {
        let c = |k: usize| -> Result<Rc<Const>> { self.cst(n, k, "a folded operand") };
        let op = n.op_type.as_str();
        let (shape, data) = match op {
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" => {
                let (a, b) = (c(0)?, c(1)?);
                let s = shape::broadcast_shape(&a.shape, &b.shape).ok_or_else(|| {
                    self.refuse(n, format!("{:?} and {:?} do not broadcast", a.shape, b.shape))
                })?;
                self.check_size(n, &s)?;
                let (x, y) = (
                    shape::broadcast_to(&a.data, &a.shape, &s),
                    shape::broadcast_to(&b.data, &b.shape, &s),
                );
                let f: fn(f64, f64) -> f64 = match op {
                    "Add" => |a, b| a + b,
                    "Sub" => |a, b| a - b,
                    "Mul" => |a, b| a * b,
                    "Div" => |a, b| a / b,
                    "Equal" => |a, b| f64::from(u8::from(a == b)),
                    _ => f64::powf,
                };
                (s, x.iter().zip(&y).map(|(a, b)| f(*a, *b)).collect())
            }
            // torch's `expand` exports as Expand(w, Where(Equal(shape, -1), ones, shape)).
            "Where" => {
                let (cond, a, b) = (c(0)?, c(1)?, c(2)?);
                let s = shape::broadcast_shape(&cond.shape, &a.shape)
                    .and_then(|s| shape::broadcast_shape(&s, &b.shape))
                    .ok_or_else(|| {
                        let (k, x, y) = (&cond.shape, &a.shape, &b.shape);
                        self.refuse(n, format!("{k:?}, {x:?} and {y:?} do not broadcast"))
                    })?;
                self.check_size(n, &s)?;
                let [k, x, y] = [&cond, &a, &b].map(|t| shape::broadcast_to(&t.data, &t.shape, &s));
                let pick = |i: usize| if k[i] != 0.0 { x[i] } else { y[i] };
                let d = (0..k.len()).map(pick).collect();
                (s, d)
            }
            "Expand" => {
                let a = c(0)?;
                let to = count(&c(1)?.ints(), "the shape").map_err(|m| self.refuse(n, m))?;
                let s = shape::broadcast_shape(&a.shape, &to).ok_or_else(|| {
                    self.refuse(n, format!("{:?} does not expand to {to:?}", a.shape))
                })?;
                self.check_size(n, &s)?;
                (s.clone(), shape::broadcast_to(&a.data, &a.shape, &s))
            }
            "Sqrt" | "Neg" | "Reciprocal" | "Relu" | "Erf" | "Tanh" | "Sigmoid" => {
                let a = c(0)?;
                let f: fn(f64) -> f64 = match op {
                    "Sqrt" => f64::sqrt,
                    "Neg" => |v| -v,
                    "Reciprocal" => |v| 1.0 / v,
                    "Relu" => |v| v.max(0.0),
                    "Erf" => crate::model::plain::erf,
                    "Tanh" => f64::tanh,
                    _ => |v| 1.0 / (1.0 + (-v).exp()),
                };
                (a.shape.clone(), a.data.iter().map(|&v| f(v)).collect())
            }
            "Gather" => {
                let (a, idx) = (c(0)?, c(1)?);
                let axis = self.axis(n, self.attr_i(n, "axis", 0), a.shape.len(), "axis")?;
                let d = a.shape[axis];
                let (outer, inner) = (
                    a.shape[..axis].iter().product::<usize>(),
                    a.shape[axis + 1..].iter().product::<usize>(),
                );
                let mut is = Vec::new();
                for &i in &idx.ints() {
                    let i = if i < 0 { i + d as i64 } else { i };
                    if i < 0 || i >= d as i64 {
                        return Err(self.refuse(n, format!("index {i} out of range for dim {d}")));
                    }
                    is.push(i as usize);
                }
                let mut s = a.shape[..axis].to_vec();
                s.extend(&idx.shape);
                s.extend(&a.shape[axis + 1..]);
                self.check_size(n, &s)?;
                let mut data = Vec::new();
                for o in 0..outer {
                    for &i in &is {
                        data.extend_from_slice(&a.data[(o * d + i) * inner..(o * d + i + 1) * inner]);
                    }
                }
                (s, data)
            }
            "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
                let a = c(0)?;
                let s = match op {
                    "Reshape" => {
                        let shape = self.target_shape(n)?;
                        crate::model::graph::infer(&Op::Reshape { shape }, &[&a.shape])
                            .map_err(|m| self.refuse(n, m))?
                    }
                    "Flatten" => {
                        let r = a.shape.len();
                        let ax = self.attr_i(n, "axis", 1);
                        let ax = if ax == r as i64 { r } else { self.axis(n, ax, r, "axis")? };
                        vec![a.shape[..ax].iter().product(), a.shape[ax..].iter().product()]
                    }
                    _ => self.squeeze_shape(n, &a.shape)?,
                };
                (s, a.data.clone())
            }
            "Concat" => {
                let parts: Vec<Rc<Const>> = (0..n.input.len()).map(c).collect::<Result<_>>()?;
                let r = parts[0].shape.len();
                let axis = self.axis(n, self.attr_i(n, "axis", 0), r, "axis")?;
                if parts.iter().any(|p| {
                    p.shape.len() != r
                        || (0..r).any(|d| d != axis && p.shape[d] != parts[0].shape[d])
                }) {
                    return Err(self.refuse(n, "inputs differ off the concatenation axis"));
                }
                let refs: Vec<(&[f64], &[usize])> =
                    parts.iter().map(|p| (&p.data[..], &p.shape[..])).collect();
                shape::concat(&refs, axis)
            }
            "Transpose" => {
                let a = c(0)?;
                let perm = self.perm(n, a.shape.len())?;
                shape::permute(&a.data, &a.shape, &perm)
            }
            "Slice" => {
                let a = c(0)?;
                let (mut s, mut d) = (a.shape.clone(), a.data.clone());
                for (axis, st, e) in self.slices(n, &a.shape)? {
                    d = shape::slice_axis(&d, &s, axis, st, e);
                    s[axis] = e - st;
                }
                (s, d)
            }
            "ConstantOfShape" => {
                let s: Vec<i64> = c(0)?.ints();
                let s = count(&s, "the shape").map_err(|m| self.refuse(n, m))?;
                let v = match self.attr(n, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => tensor_values(t, "attribute 'value'")
                        .map_err(|m| self.refuse(n, m))?
                        .data
                        .first()
                        .copied()
                        .unwrap_or(0.0),
                    None => 0.0,
                };
                let len = s.iter().product();
                (s, vec![v; len])
            }
            _ => {
                return Err(self.refuse(n, "this op on constants is not supported (only the shape arithmetic exporters emit is folded)"))
            }
        };
        self.check_size(n, &shape)?;
        self.set_const(n, shape, data)
    }

    /// Refuse a folded constant beyond the caps (checked before it is allocated).
    fn check_size(&self, n: &NodeProto, shape: &[usize]) -> Result<()> {
        let dims: Vec<i64> = shape
            .iter()
            .map(|&d| d.min(i64::MAX as usize) as i64)
            .collect();
        count(&dims, "the folded constant").map_err(|m| self.refuse(n, m))?;
        Ok(())
    }
}

fn fmt_dims(d: &[Option<i64>]) -> String {
    let s: Vec<String> = d
        .iter()
        .map(|v| v.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", s.join(", "))
}
