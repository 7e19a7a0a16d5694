//! A model constant (weight, bias, normalisation parameter) as the graph stores it: as f32
//! when every value is exactly an f32, else as f64. Depends on ring::{plain, shape, tensor,
//! fixed} only.
//!
//! Why: a full-size model's plaintext weights were the largest block of a job's memory.
//! VGG16's 138M weights took 1.1 GB as f64 before the first node ran, and on this VM every
//! GiB first touched costs about 0.6 s of kernel zeroing (src/alloc.rs). ONNX weights are
//! f32 in the file and the zoo draws f32 weights, so nothing is rounded: a compact constant
//! reads back as exactly the f64 values it was made from, and every interpreter sees the
//! same numbers as before. A constant with any value that is not an f32 (folded
//! BatchNorm, a trained weight, a test's f64 tensor) stays f64, so compaction never
//! changes a value.
//!
//! Readers encode straight from the stored values (`values`, `encode`: party 0's sharing
//! of a private weight, a public weight), take a part (`slice`, `slice_axis` in f64), or an
//! f64 view (`plain`, a copy of a compact constant, for small constants and the f64
//! interpreter, which reads a large one by blocks), so a compact fc weight is never whole
//! in f64.

use std::borrow::Cow;

use super::{shape, FixedPoint, PlainTensor, RingTensor};

/// The stored values of a constant, for a reader that loops over them.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// A constant of the graph: f32 when exact, else f64 (module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct Constant(Data);

#[derive(Clone, Debug, PartialEq)]
enum Data {
    /// Every value is an f32 (the f64 value is the f32 widened).
    F32 {
        shape: Vec<usize>,
        data: Vec<f32>,
    },
    F64(PlainTensor),
}

impl Constant {
    /// `t`, stored as f32 when every value survives the round trip (NaN does not, so a
    /// tensor with NaN stays f64; -0.0 and infinities do).
    pub fn new(t: PlainTensor) -> Constant {
        let exact = t.data().iter().all(|&v| (v as f32) as f64 == v);
        if !exact {
            return Constant(Data::F64(t));
        }
        Constant(Data::F32 {
            shape: t.shape().to_vec(),
            data: t.data().iter().map(|&v| v as f32).collect(),
        })
    }

    pub fn shape(&self) -> &[usize] {
        match &self.0 {
            Data::F32 { shape, .. } => shape,
            Data::F64(t) => t.shape(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Data::F32 { data, .. } => data.len(),
            Data::F64(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when stored as f32.
    pub fn is_compact(&self) -> bool {
        matches!(self.0, Data::F32 { .. })
    }

    /// Bytes its values take.
    pub fn bytes(&self) -> usize {
        match &self.0 {
            Data::F32 { data, .. } => 4 * data.len(),
            Data::F64(t) => 8 * t.len(),
        }
    }

    /// The values as an f64 tensor: borrowed when stored as f64, a copy when compact.
    pub fn plain(&self) -> Cow<'_, PlainTensor> {
        match &self.0 {
            Data::F32 { shape, data } => Cow::Owned(PlainTensor::from_vec(
                shape,
                data.iter().map(|&v| v as f64).collect(),
            )),
            Data::F64(t) => Cow::Borrowed(t),
        }
    }

    /// The values as an owned f64 tensor.
    pub fn to_plain(&self) -> PlainTensor {
        self.plain().into_owned()
    }

    /// Value `i` (row-major).
    pub fn get(&self, i: usize) -> f64 {
        match &self.0 {
            Data::F32 { data, .. } => data[i] as f64,
            Data::F64(t) => t.data()[i],
        }
    }

    /// The stored values.
    pub fn values(&self) -> Values<'_> {
        match &self.0 {
            Data::F32 { data, .. } => Values::F32(data),
            Data::F64(t) => Values::F64(t.data()),
        }
    }

    /// The values in fixed point.
    pub fn encode(&self, fp: &FixedPoint) -> RingTensor {
        let d = match self.values() {
            Values::F32(d) => d.iter().map(|&v| fp.encode(v as f64)).collect(),
            Values::F64(d) => d.iter().map(|&v| fp.encode(v)).collect(),
        };
        RingTensor::from_vec(self.shape(), d)
    }

    /// Indices `s..e` of `axis`, stored as this constant is.
    pub fn slice(&self, axis: usize, s: usize, e: usize) -> Constant {
        match &self.0 {
            Data::F32 { shape, data } => {
                let mut out = shape.clone();
                out[axis] = e - s;
                Constant(Data::F32 {
                    data: shape::slice_axis(data, shape, axis, s, e),
                    shape: out,
                })
            }
            Data::F64(_) => Constant(Data::F64(self.slice_axis(axis, s, e))),
        }
    }

    /// Indices `s..e` of `axis`, as f64 (`shape::slice_axis` on the values).
    pub fn slice_axis(&self, axis: usize, s: usize, e: usize) -> PlainTensor {
        let mut out_shape = self.shape().to_vec();
        out_shape[axis] = e - s;
        let d = match &self.0 {
            Data::F32 { shape, data } => shape::slice_axis(data, shape, axis, s, e)
                .into_iter()
                .map(f64::from)
                .collect(),
            Data::F64(t) => shape::slice_axis(t.data(), t.shape(), axis, s, e),
        };
        PlainTensor::from_vec(&out_shape, d)
    }

    /// The transpose of a 2-D constant, stored as compactly as this one.
    pub fn transpose2(&self) -> Constant {
        match &self.0 {
            Data::F32 { shape, data } => {
                assert_eq!(shape.len(), 2);
                let (shape, data) = shape::permute(data, shape, &[1, 0]);
                Constant(Data::F32 { shape, data })
            }
            Data::F64(t) => Constant(Data::F64(t.transpose2())),
        }
    }
}

impl From<PlainTensor> for Constant {
    fn from(t: PlainTensor) -> Constant {
        Constant::new(t)
    }
}

#[cfg(test)]
mod tests {
    use super::Constant;
    use crate::ring::{shape, FixedPoint, PlainTensor};

    /// f32 values are stored compactly and read back bit for bit; a tensor with one value
    /// that is not an f32 stays f64, unchanged.
    #[test]
    fn compaction_never_changes_a_value() {
        let vals = [
            0.5,
            -0.0,
            1.0e-30_f32 as f64,
            f64::INFINITY,
            -3.25,
            16777217.0_f32 as f64,
        ];
        let t = PlainTensor::from_vec(&[2, 3], vals.to_vec());
        let c = Constant::new(t.clone());
        assert!(c.is_compact());
        assert_eq!(c.bytes(), 4 * 6);
        let back = c.to_plain();
        for (a, b) in back.data().iter().zip(t.data()) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        // 0.1 is not an f32: the whole tensor stays f64.
        let mut v = vals.to_vec();
        v[2] = 0.1;
        let t = PlainTensor::from_vec(&[2, 3], v);
        let c = Constant::new(t.clone());
        assert!(!c.is_compact());
        assert_eq!(*c.plain(), t);
        // NaN stays f64 too.
        assert!(!Constant::new(PlainTensor::from_vec(&[1], vec![f64::NAN])).is_compact());
    }

    /// Slices, values and the transpose agree with the f64 tensor's own, compact or not.
    #[test]
    fn views_agree_with_the_f64_tensor() {
        let t = PlainTensor::from_vec(&[3, 4], (0..12).map(|i| i as f64 * 0.25 - 1.0).collect());
        let t64 = t.map(|v| v + 1e-9);
        for (t, compact) in [(t, true), (t64, false)] {
            let c = Constant::new(t.clone());
            assert_eq!(c.is_compact(), compact);
            for axis in 0..2 {
                let (s, e) = (1, 3);
                let want = shape::slice_axis(t.data(), t.shape(), axis, s, e);
                assert_eq!(c.slice_axis(axis, s, e).data(), &want[..]);
            }
            assert_eq!(c.transpose2().to_plain(), t.transpose2());
            assert_eq!(c.slice(1, 1, 3).to_plain(), c.slice_axis(1, 1, 3));
            assert_eq!(c.slice(1, 1, 3).is_compact(), compact);
            let fp = FixedPoint::default();
            assert_eq!(c.encode(&fp), fp.encode_tensor(&t));
            assert_eq!(c.transpose2().is_compact(), compact);
            assert!((0..12).all(|i| c.get(i) == t.data()[i]));
        }
    }
}
