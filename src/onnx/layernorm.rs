//! Finding the layer normalisation that opsets 13 to 16 (which lack LayerNormalization)
//! spell out, so it becomes one `Op::LayerNorm` instead of a ReduceMean, Pow and Sqrt the
//! engine does not run. Depends on onnx::{gelu (the graph view and fusions), import}.
//!
//! torch exports nn.LayerNorm at those opsets as
//! mean = ReduceMean(x), d = Sub(x, mean), v = ReduceMean(Pow(d, 2)),
//! y = Div(d, Sqrt(Add(v, eps))) [· γ] [+ β]
//! with both reductions over the same single axis (attribute `axes` up to opset 17, input
//! from 18) and keepdims. A match needs every intermediate output read only inside it
//! (d by the Pow and the Div), eps a scalar constant, and γ, β constants; whether the
//! axis is the last one is checked at import, where shapes are known.

use super::gelu::{Fused, Fusion, View};
use super::import::tensor_values;

impl View<'_> {
    /// The single reduction axis of a ReduceMean with keepdims, if it has one.
    fn reduce_axis(&self, i: usize) -> Option<i64> {
        let n = self.node(i);
        if n.op_type != "ReduceMean" {
            return None;
        }
        if n.attribute.iter().any(|a| a.name == "keepdims" && a.i == 0) {
            return None;
        }
        let axes: Vec<i64> = match n.attribute.iter().find(|a| a.name == "axes") {
            Some(a) => a.ints.clone(),
            None => {
                let name = n.input.get(1)?;
                let t = match self.g.initializer.iter().find(|t| &t.name == name) {
                    Some(t) => t,
                    None => {
                        let c = self.node(*self.producer.get(name.as_str())?);
                        c.attribute.first()?.t.as_ref()?
                    }
                };
                tensor_values(t, "")
                    .ok()?
                    .data
                    .iter()
                    .map(|&v| v as i64)
                    .collect()
            }
        };
        match axes[..] {
            [a] => Some(a),
            _ => None,
        }
    }

    /// Whether `name` is a constant (an initializer or a Constant node's output).
    fn is_const(&self, name: &str) -> bool {
        self.g.initializer.iter().any(|t| t.name == name)
            || self
                .producer
                .get(name)
                .is_some_and(|&p| self.node(p).op_type == "Constant")
    }

    /// The other operand of binary node `i` when it is a constant.
    fn const_operand(&self, i: usize, from: &str) -> Option<String> {
        let o = self.other(i, from)?;
        self.is_const(o).then(|| o.to_string())
    }
}

/// Every spelled-out layer normalisation of the graph, added to `out`.
pub(super) fn find(v: &View, out: &mut Fused) {
    for r1 in 0..v.g.node.len() {
        if let Some((fusion, nodes)) = one(v, r1) {
            if nodes.iter().any(|i| out.absorbed.contains(i)) {
                continue;
            }
            let last = *nodes.last().expect("a match has nodes");
            out.absorbed.extend(&nodes[..nodes.len() - 1]);
            out.emit.insert(last, fusion);
        }
    }
}

/// The match whose first ReduceMean is node `r1`: the fusion and its nodes, last last.
fn one(v: &View, r1: usize) -> Option<(Fusion, Vec<usize>)> {
    let axis = v.reduce_axis(r1)?;
    let n1 = v.node(r1);
    let x = n1.input.first()?.as_str();
    let mean = n1.output.first()?.as_str();
    let sub = v.only_consumer(mean)?;
    let sn = v.node(sub);
    if sn.op_type != "Sub" || sn.input.first()?.as_str() != x || sn.input.get(1)?.as_str() != mean {
        return None;
    }
    let d = sn.output.first()?.as_str();
    // d feeds exactly a Pow by 2 (or Mul(d, d)) and the Div.
    let readers = v.consumers.get(d)?;
    let [a, b] = readers[..] else {
        return None;
    };
    let is_square = |i: usize| {
        let n = v.node(i);
        (n.op_type == "Pow" && v.other(i, d).and_then(|e| v.scalar(e)) == Some(2.0))
            || (n.op_type == "Mul" && n.input.len() == 2 && n.input.iter().all(|s| s == d))
    };
    let (pow, div) = if is_square(a) { (a, b) } else { (b, a) };
    if !is_square(pow) || v.node(div).op_type != "Div" || v.node(div).input.first()? != d {
        return None;
    }
    let r2 = v.only_consumer(v.node(pow).output.first()?)?;
    if v.reduce_axis(r2)? != axis {
        return None;
    }
    let add = v.only_consumer(v.node(r2).output.first()?)?;
    let var = v.node(r2).output.first()?.as_str();
    if v.node(add).op_type != "Add" {
        return None;
    }
    let eps = v.scalar(v.other(add, var)?)?;
    let sqrt = v.only_consumer(v.node(add).output.first()?)?;
    if v.node(sqrt).op_type != "Sqrt" || v.only_consumer(v.node(sqrt).output.first()?)? != div {
        return None;
    }
    let mut nodes = vec![r1, sub, pow, r2, add, sqrt, div];
    let mut cur = v.node(div).output.first()?.as_str();
    let (mut gamma, mut beta) = (None, None);
    if let Some(m) = v.only_consumer(cur) {
        if v.node(m).op_type == "Mul" {
            if let Some(gname) = v.const_operand(m, cur) {
                gamma = Some(gname);
                nodes.push(m);
                cur = v.node(m).output.first()?.as_str();
            }
        }
    }
    if let Some(p) = v.only_consumer(cur) {
        if v.node(p).op_type == "Add" {
            if let Some(bname) = v.const_operand(p, cur) {
                beta = Some(bname);
                nodes.push(p);
            }
        }
    }
    // Intermediates are read only inside the match (d: by the Pow and the Div, checked).
    let last = *nodes.last()?;
    let closed = nodes.iter().filter(|&&i| i != last).all(|&i| {
        v.node(i).output.iter().all(|o| {
            v.consumers
                .get(o.as_str())
                .is_none_or(|cs| cs.iter().all(|c| nodes.contains(c)))
        })
    });
    closed.then(|| {
        (
            Fusion::LayerNorm {
                x: x.to_string(),
                axis,
                eps,
                gamma,
                beta,
                first: r1,
            },
            nodes,
        )
    })
}
