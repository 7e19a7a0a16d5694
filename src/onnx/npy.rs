//! .npy files in and out of `mpc-pipe infer`: float32 or float64 arrays in C order, read
//! into f64 tensors and written back in the input's dtype (through npyz). Every size read
//! from a file is capped and checked; a write goes to a temporary file renamed into place,
//! so a failed run leaves no partial output. Depends on ring and error.

use std::path::Path;

use crate::error::{Error, Result};
use crate::ring::PlainTensor;

use super::{MAX_FILE_BYTES, MAX_RANK, MAX_TENSOR_ELEMS};

/// The element type of an .npy array we read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
}

/// Read `path` (`what` names the option in errors) as an f64 tensor and its dtype.
pub fn read(path: &Path, what: &str) -> Result<(PlainTensor, Dtype)> {
    use std::io::Read;
    let bad = |m: String| Error::Config(format!("{what} {}: {m}", path.display()));
    let f = std::fs::File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_FILE_BYTES} bytes: refused")));
    }
    parse(&bytes).map_err(bad)
}

/// An .npy file's bytes as an f64 tensor and its dtype; the error says what is wrong (the
/// caller names the file). Pure, so it is a fuzz target.
pub fn parse(bytes: &[u8]) -> std::result::Result<(PlainTensor, Dtype), String> {
    let bad = |m: String| m;
    plain_header(bytes)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(format!("not a valid .npy file ({e})")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad(
            "is in Fortran order; save it with numpy in C order".into()
        ));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMS && shape.len() <= MAX_RANK)
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    // npyz reads a count from the header and reserves for it: refuse a count the bytes
    // cannot hold before asking it to read (8 bytes is the widest dtype we take).
    if n.saturating_mul(4) > bytes.len() {
        return Err(bad(format!(
            "shape {shape:?} needs more data than the file's {} bytes; is the file truncated?",
            bytes.len()
        )));
    }
    let descr = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => other.descr(),
    };
    let truncated =
        |e: std::io::Error| bad(format!("data unreadable ({e}); is the file truncated?"));
    let (data, dtype) = match descr.as_str() {
        "<f4" | ">f4" => (
            npy.into_vec::<f32>()
                .map_err(truncated)?
                .into_iter()
                .map(f64::from)
                .collect::<Vec<f64>>(),
            Dtype::F32,
        ),
        "<f8" | ">f8" => (npy.into_vec::<f64>().map_err(truncated)?, Dtype::F64),
        other => {
            return Err(bad(format!(
                "has dtype '{other}'; float32 or float64 is needed"
            )))
        }
    };
    if data.len() != n {
        return Err(bad(format!(
            "holds {} values for shape {shape:?}; is the file truncated?",
            data.len()
        )));
    }
    if let Some(v) = data.iter().find(|v| !v.is_finite()) {
        return Err(bad(format!("holds a non-finite value ({v})")));
    }
    Ok((PlainTensor::from_vec(&shape, data), dtype))
}

/// Refuse a header npyz should not parse: its literal parser takes time exponential in
/// the nesting of brackets (a 290-byte header of nested lists ran past 10 s under the
/// fuzzer), and the dtypes we read are plain strings with a flat shape tuple, so a header
/// with a list, or a tuple or dict inside another, is not ours anyway.
fn plain_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a valid .npy file (bad magic)".into());
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(format!("not a valid .npy file (format version {v})")),
    };
    let header = bytes
        .get(start..start.saturating_add(len))
        .ok_or("not a valid .npy file (truncated header)")?;
    // Every bracket counts, inside quotes or not. A header of ours is `{'descr': '<f8',
    // 'fortran_order': False, 'shape': (2, 3), }`: one dict and one tuple, and no bracket
    // in a string. Counting only outside string literals made the check depend on how
    // quotes and escapes are read, and each way the fuzzer found a header where npyz read
    // them otherwise and ran past 10 s on nesting the check had not seen (a `)` inside a
    // quoted key after 2.9 M executions; a `"` and `\N{` escapes after 9.0 M).
    let (mut depth, mut opened) = (0i32, 0u32);
    for &c in header {
        match c {
            b'[' => return Err("has a structured dtype; float32 or float64 is needed".into()),
            b'(' | b'{' => {
                depth += 1;
                opened += 1;
            }
            b')' | b'}' => {
                depth -= 1;
                if depth < 0 {
                    return Err("not a valid .npy file (unbalanced header)".into());
                }
            }
            _ => {}
        }
    }
    if opened > 2 {
        return Err("not a valid .npy file (nested header)".into());
    }
    Ok(())
}

/// Write `t` to `path` as `dtype` (via a temporary file beside it, renamed when complete).
pub fn write(path: &Path, t: &PlainTensor, dtype: Dtype) -> Result<()> {
    use npyz::WriterBuilder;
    let bad =
        |e: std::io::Error| Error::Config(format!("cannot write --output {}: {e}", path.display()));
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let mut buf = Vec::new();
    {
        match dtype {
            Dtype::F32 => {
                let opts = npyz::WriteOptions::<f32>::new()
                    .shape(&shape)
                    .writer(&mut buf);
                let mut w = opts.default_dtype().begin_nd().map_err(bad)?;
                w.extend(t.data().iter().map(|&v| v as f32)).map_err(bad)?;
                w.finish().map_err(bad)?;
            }
            Dtype::F64 => {
                let opts = npyz::WriteOptions::<f64>::new()
                    .shape(&shape)
                    .writer(&mut buf);
                let mut w = opts.default_dtype().begin_nd().map_err(bad)?;
                w.extend(t.data().iter().copied()).map_err(bad)?;
                w.finish().map_err(bad)?;
            }
        }
    }
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, &buf).map_err(bad)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        bad(e)
    })
}
