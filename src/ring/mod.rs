//! The ring Z_2^64 and tensors over it, fixed-point encoding (with the truncation mode),
//! plaintext f64 tensors for the reference path, and model constants stored as f32 when
//! exact (`constant`). Depends on std and crate::error only.

pub mod constant;
pub mod fixed;
pub mod plain;
pub mod shape;
pub mod tensor;

pub use constant::{Constant, Values};
pub use fixed::{encode_at, ExpApprox, FixedPoint, Protocols, Trunc};
pub use plain::PlainTensor;
pub use tensor::RingTensor;

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}
