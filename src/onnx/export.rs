//! Trained weights written back into a copy of an ONNX model (`train --save-weights` on a
//! model that came from an .onnx file): the initializers named like the trained graph's
//! parameters get the new values in their own data type, and every other byte of the file
//! (nodes, attributes, metadata, and the fields `proto` leaves out) is copied unchanged.
//! That is why this walks the protobuf wire format instead of decoding into `proto`'s
//! subset of the schema and encoding it again, which would drop what the subset leaves
//! out. Depends on onnx::{proto, import} (tensor decoding), ring, error and prost.
//!
//! A parameter can be written back only if the importer took it verbatim from an
//! initializer of the same name: one folded at import (a batch norm into the conv before
//! it, Gemm's alpha or beta into its operand) has no initializer holding it, and
//! `check_initializers` says which.

use std::collections::HashMap;

use prost::Message;

use super::import::tensor_values;
use super::proto::{self, ModelProto, TensorProto};
use crate::error::{Error, Result};
use crate::ring::PlainTensor;

/// Field numbers of the messages walked.
const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
/// TensorProto's value fields (float_data, int32_data, int64_data, raw_data, double_data,
/// uint64_data): all dropped from a rewritten initializer, whose values go in raw_data.
const TENSOR_VALUE_FIELDS: [u64; 6] = [4, 5, 7, 9, 10, 11];
const TENSOR_RAW_DATA: u64 = 9;

/// Why the parameters `params` (graph name and initial value) cannot all be written back
/// into the model `bytes`, or Ok if each is an initializer of that name holding exactly
/// that value.
pub fn check_initializers(
    bytes: &[u8],
    params: &[(&str, &PlainTensor)],
) -> std::result::Result<(), String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not a valid ONNX file: {e}"))?;
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for (name, value) in params {
        let Some(t) = inits.get(name) else {
            return Err(format!(
                "parameter '{name}' is no initializer of the model (made at import, e.g. a batch norm folded into a conv, or a Gemm's alpha or beta applied to its weight)"
            ));
        };
        let c = tensor_values(t, &format!("initializer '{name}'"))?;
        if c.shape != value.shape() || c.data != value.data() {
            return Err(format!(
                "parameter '{name}' is initializer '{name}' changed at import (a batch norm folded into it, or a Gemm's alpha or beta applied)"
            ));
        }
        if !matches!(t.data_type, proto::FLOAT | proto::DOUBLE) {
            return Err(format!(
                "initializer '{name}' has data type {}: only float and double weights are written back",
                t.data_type
            ));
        }
    }
    Ok(())
}

/// A copy of the model `bytes` whose initializers named in `values` hold those values
/// (in the initializer's data type: float32 values round to nearest, which is exact for
/// fixed-point values k·2^-f with |k| < 2^24). `what` names the model in errors.
pub fn replace_initializers(
    bytes: &[u8],
    values: &[(&str, &PlainTensor)],
    what: &str,
) -> Result<Vec<u8>> {
    let bad = |m: String| Error::Config(format!("model {what}: {m}"));
    let want: HashMap<&str, &PlainTensor> = values.iter().copied().collect();
    let mut done: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(bytes.len());
    for f in fields(bytes).map_err(bad)? {
        if f.number == MODEL_GRAPH && f.wire == 2 {
            let mut graph = Vec::with_capacity(f.payload.len());
            for g in fields(f.payload).map_err(bad)? {
                if g.number == GRAPH_INITIALIZER && g.wire == 2 {
                    let t = TensorProto::decode(g.payload)
                        .map_err(|e| bad(format!("an initializer does not decode: {e}")))?;
                    if let Some((&name, v)) = want.get_key_value(t.name.as_str()) {
                        let tensor = rewrite_tensor(g.payload, &t, v).map_err(bad)?;
                        put_len_field(&mut graph, GRAPH_INITIALIZER, &tensor);
                        done.push(name);
                        continue;
                    }
                }
                graph.extend_from_slice(g.whole);
            }
            put_len_field(&mut out, MODEL_GRAPH, &graph);
        } else {
            out.extend_from_slice(f.whole);
        }
    }
    if let Some((name, _)) = values.iter().find(|(n, _)| !done.contains(n)) {
        return Err(bad(format!("no initializer named '{name}' to write back")));
    }
    Ok(out)
}

/// The initializer `payload` (decoded as `t`) with its values replaced by `v`.
fn rewrite_tensor(
    payload: &[u8],
    t: &TensorProto,
    v: &PlainTensor,
) -> std::result::Result<Vec<u8>, String> {
    let name = &t.name;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    if dims != v.shape() {
        return Err(format!(
            "initializer '{name}' has shape {dims:?}, the trained value {:?}",
            v.shape()
        ));
    }
    if t.data_location == 1 {
        return Err(format!(
            "initializer '{name}' keeps its data in another file"
        ));
    }
    let raw: Vec<u8> = match t.data_type {
        proto::FLOAT => v
            .data()
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect(),
        proto::DOUBLE => v.data().iter().flat_map(|&x| x.to_le_bytes()).collect(),
        other => {
            return Err(format!(
                "initializer '{name}' has data type {other}: only float and double weights are written back"
            ))
        }
    };
    let mut out = Vec::with_capacity(raw.len() + 64);
    for f in fields(payload)? {
        if !TENSOR_VALUE_FIELDS.contains(&f.number) {
            out.extend_from_slice(f.whole);
        }
    }
    put_len_field(&mut out, TENSOR_RAW_DATA, &raw);
    Ok(out)
}

/// One field of a protobuf message: its number, wire type, all its bytes (key included)
/// and its payload (a length-delimited field's contents; the value's bytes otherwise).
struct Field<'a> {
    number: u64,
    wire: u8,
    whole: &'a [u8],
    payload: &'a [u8],
}

/// The fields of message `buf`, in order, every length checked against the buffer.
fn fields(buf: &[u8]) -> std::result::Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let key = varint(buf, &mut at)?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        let payload = match wire {
            0 => {
                let p = at;
                varint(buf, &mut at)?;
                &buf[p..at]
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let p = at;
                at = at
                    .checked_add(n)
                    .filter(|&e| e <= buf.len())
                    .ok_or("a fixed-size field runs past the end of its message")?;
                &buf[p..at]
            }
            2 => {
                let len = varint(buf, &mut at)?;
                let p = at;
                at = usize::try_from(len)
                    .ok()
                    .and_then(|l| at.checked_add(l))
                    .filter(|&e| e <= buf.len())
                    .ok_or("a length-delimited field runs past the end of its message")?;
                &buf[p..at]
            }
            other => return Err(format!("field {number} has wire type {other}, unsupported")),
        };
        out.push(Field {
            number,
            wire,
            whole: &buf[start..at],
            payload,
        });
    }
    Ok(out)
}

fn varint(buf: &[u8], at: &mut usize) -> std::result::Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*at)
            .ok_or("a varint runs past the end of its message")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type,
            name: name.into(),
            raw_data: raw,
            ..Default::default()
        }
    }

    /// A model whose graph holds two float initializers, a double one, and fields the
    /// schema subset leaves out (an unknown field number in the model, graph and tensor).
    fn model() -> Vec<u8> {
        let g = proto::GraphProto {
            name: "g".into(),
            initializer: vec![
                tensor(
                    "w",
                    proto::FLOAT,
                    &[2],
                    [1.0f32, 2.0].map(f32::to_le_bytes).concat(),
                ),
                tensor("keep", proto::FLOAT, &[1], 5.0f32.to_le_bytes().to_vec()),
                TensorProto {
                    dims: vec![1],
                    data_type: proto::DOUBLE,
                    name: "d".into(),
                    double_data: vec![0.5],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut gb = g.encode_to_vec();
        // An unknown field (number 99, a string) in the graph...
        put_len_field(&mut gb, 99, b"kept");
        let mut out = Vec::new();
        put_varint(&mut out, 1 << 3);
        put_varint(&mut out, 8);
        put_len_field(&mut out, MODEL_GRAPH, &gb);
        // ... and in the model.
        put_len_field(&mut out, 98, b"also kept");
        out
    }

    #[test]
    fn named_initializers_get_new_values_and_every_other_byte_is_kept() {
        let bytes = model();
        let w = PlainTensor::from_vec(&[2], vec![-0.25, 3.0]);
        let d = PlainTensor::from_vec(&[1], vec![1.0 / 3.0]);
        let out = replace_initializers(&bytes, &[("w", &w), ("d", &d)], "m").unwrap();
        let m = ModelProto::decode(&out[..]).unwrap();
        let g = m.graph.unwrap();
        let vals: HashMap<String, Vec<f64>> = g
            .initializer
            .iter()
            .map(|t| (t.name.clone(), tensor_values(t, "t").unwrap().data))
            .collect();
        assert_eq!(vals["w"], vec![-0.25, 3.0]);
        assert_eq!(vals["keep"], vec![5.0]);
        assert_eq!(vals["d"], vec![1.0 / 3.0], "doubles are written as doubles");
        for unknown in [&b"kept"[..], b"also kept"] {
            assert!(out.windows(unknown.len()).any(|w| w == unknown));
        }
        assert_eq!(m.ir_version, 8);
    }

    #[test]
    fn a_missing_or_misshapen_initializer_is_refused_by_name() {
        let bytes = model();
        let w = PlainTensor::from_vec(&[3], vec![0.0; 3]);
        let e = replace_initializers(&bytes, &[("w", &w)], "m").unwrap_err();
        assert!(
            e.to_string().contains("initializer 'w' has shape [2]"),
            "{e}"
        );
        let e = replace_initializers(&bytes, &[("nope", &w)], "m").unwrap_err();
        assert!(e.to_string().contains("no initializer named 'nope'"), "{e}");
        let w2 = PlainTensor::from_vec(&[2], vec![1.0, 2.0]);
        assert!(check_initializers(&bytes, &[("w", &w2)]).is_ok());
        let e = check_initializers(&bytes, &[("w", &w)]).unwrap_err();
        assert!(e.contains("changed at import"), "{e}");
        let e = check_initializers(&bytes, &[("w.alpha", &w)]).unwrap_err();
        assert!(e.contains("no initializer"), "{e}");
        assert!(fields(&[0x0a, 0x05, 1]).is_err(), "a length past the end");
    }
}
