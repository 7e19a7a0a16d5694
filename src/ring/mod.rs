//! The ring Z_2^64 and tensors over it, fixed-point encoding, and plaintext f64 tensors for
//! the reference path. Depends on std only.

pub mod fixed;
pub mod plain;
pub mod tensor;

pub use fixed::FixedPoint;
pub use plain::PlainTensor;
pub use tensor::RingTensor;

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}
