//! ONNX import: an .onnx file (opset 13 to 21, default domain) becomes a model `Graph`
//! (src/model/graph.rs), which `model::plain` and `model::mpc` then run like any built-in
//! model. Sits at the model layer: depends on model::graph, ring, error and prost (the
//! message structs in `proto`); nothing below model depends on it.
//!
//! - `proto`: the protobuf messages read (a subset of onnx.proto).
//! - `import` (this file's `import`): decoding with every size from the file capped,
//!   constant folding of the shape arithmetic exporters emit (Shape, Gather, Concat, ...),
//!   and the translation of each node to graph ops, refusing before anything runs what
//!   the engine cannot compute on secret data, with the node's name, op and attribute.
//! - `gelu`: the GELU subgraphs torch exports (erf and tanh forms) found and fused into
//!   one `Op::GeluErf`.
//! - `layernorm`: the layer normalisation opsets 13 to 16 spell out (ReduceMean, Sub, Pow,
//!   ReduceMean, Add, Sqrt, Div, Mul, Add) fused into one `Op::LayerNorm`.
//! - `npy`: .npy tensors in and out of `mpc-pipe infer`.
//! - `export`: trained weights written back into a copy of the model's initializers.

pub mod export;
mod gelu;
mod import;
mod layernorm;
pub mod npy;
pub mod proto;

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::Graph;

pub use import::import;

/// Largest .onnx file read (VGG16 with its weights is about 530 MiB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest number of elements of one tensor (an initializer, a constant or an activation).
pub const MAX_TENSOR_ELEMS: usize = 1 << 28;
/// Largest rank of a tensor.
pub const MAX_RANK: usize = 8;
/// Most nodes in a graph.
pub const MAX_NODES: usize = 100_000;

/// Read and import `path`. `input_shape` fixes the data input's shape (needed when the
/// file leaves a dim symbolic; must agree with the file's static dims otherwise).
/// Errors are configuration errors naming the file (exit code 2).
pub fn load(path: &Path, input_shape: Option<&[usize]>) -> Result<Graph> {
    let buf = read(path)?;
    import(&buf, input_shape, &path.display().to_string())
}

/// The bytes of the model file `path`, at most `MAX_FILE_BYTES`.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let what = path.display().to_string();
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot read model {what}: {e}")))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Config(format!("cannot read model {what}: {e}")))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Config(format!(
            "model {what} is larger than {MAX_FILE_BYTES} bytes: refused"
        )));
    }
    Ok(buf)
}
