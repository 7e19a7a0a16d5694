//! `RingTensor`: an n-dimensional row-major tensor of u64 with wrapping (mod 2^64)
//! arithmetic, plus the shape manipulations the protocols and schedulers need (slicing and
//! concatenation along an axis, permutation). Depends on std and alloc (the zero region).
//!
//! A tensor made by `zeros` stores nothing until it is written: its words are a view of
//! the process's read-only zero region (`alloc::zero_words`), and the first `data_mut` or
//! `into_data` allocates them. Operations whose result on zeros is zeros (slicing,
//! permuting, concatenating, adding zeros, any map or zip that sends zeros to zero) keep
//! it unstored. That is what lets the plan's dry run pass placeholder values of a model's
//! full size around without allocating them; everywhere else such a tensor is simply
//! zeros.

use crate::error::{Error, Result};

/// A tensor's words: owned, or zeros stored nowhere.
#[derive(Clone)]
enum Words {
    Owned(Vec<u64>),
    Zeros(&'static [u64]),
}

/// Row-major tensor over Z_2^64.
#[derive(Clone)]
pub struct RingTensor {
    shape: Vec<usize>,
    data: Words,
}

impl Default for RingTensor {
    fn default() -> Self {
        RingTensor {
            shape: Vec::new(),
            data: Words::Owned(Vec::new()),
        }
    }
}

impl PartialEq for RingTensor {
    fn eq(&self, o: &Self) -> bool {
        self.shape == o.shape && self.data() == o.data()
    }
}

impl Eq for RingTensor {}

impl std::fmt::Debug for RingTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingTensor")
            .field("shape", &self.shape)
            .field("data", &self.data())
            .finish()
    }
}

/// `n` zero words, stored nowhere when the zero region can hold them.
fn zero_words(n: usize) -> Words {
    match crate::alloc::zero_words(n) {
        Some(z) => Words::Zeros(z),
        None => Words::Owned(vec![0; n]),
    }
}

impl RingTensor {
    /// Zeros, stored nowhere until written (see the module doc).
    pub fn zeros(shape: &[usize]) -> Self {
        RingTensor {
            shape: shape.to_vec(),
            data: zero_words(shape.iter().product()),
        }
    }

    pub fn filled(shape: &[usize], v: u64) -> Self {
        if v == 0 {
            return Self::zeros(shape);
        }
        RingTensor {
            shape: shape.to_vec(),
            data: Words::Owned(vec![v; shape.iter().product()]),
        }
    }

    /// Build from data; panics if the length does not match the shape (a programming error,
    /// never reachable from user input, which goes through `try_from_vec`).
    pub fn from_vec(shape: &[usize], data: Vec<u64>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} vs len {}",
            data.len()
        );
        RingTensor {
            shape: shape.to_vec(),
            data: Words::Owned(data),
        }
    }

    pub fn try_from_vec(shape: &[usize], data: Vec<u64>) -> Result<Self> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} needs {} elements, got {}",
                shape.iter().product::<usize>(),
                data.len()
            )));
        }
        Ok(RingTensor {
            shape: shape.to_vec(),
            data: Words::Owned(data),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[u64] {
        match &self.data {
            Words::Owned(v) => v,
            Words::Zeros(z) => z,
        }
    }
    /// The words, for writing: zeros stored nowhere are allocated first.
    pub fn data_mut(&mut self) -> &mut [u64] {
        if let Words::Zeros(z) = self.data {
            self.data = Words::Owned(vec![0; z.len()]);
        }
        match &mut self.data {
            Words::Owned(v) => v,
            Words::Zeros(_) => unreachable!("allocated above"),
        }
    }
    pub fn into_data(self) -> Vec<u64> {
        match self.data {
            Words::Owned(v) => v,
            Words::Zeros(z) => vec![0; z.len()],
        }
    }
    pub fn len(&self) -> usize {
        self.data().len()
    }
    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
    /// Whether this tensor is zeros stored nowhere (made by `zeros` and never written):
    /// work whose result on zeros is known can skip reading it.
    pub fn is_unstored_zeros(&self) -> bool {
        matches!(self.data, Words::Zeros(_))
    }

    /// Same data, new shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::Shape(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// self += c, with c broadcast to self's shape (numpy rules; c must broadcast to it).
    /// Blocks instead of per-element index arithmetic where c repeats over a suffix of
    /// dims (a conv bias [O, 1, 1] over [B, O, H, W]) or over a prefix (a bias [n] over
    /// rows [.., n]).
    pub fn add_broadcast_assign(&mut self, c: &RingTensor) -> Result<()> {
        let to = self.shape.clone();
        if super::shape::broadcast_shape(&c.shape, &to).as_deref() != Some(&to[..]) {
            return Err(Error::Shape(format!(
                "{:?} does not broadcast to {to:?}",
                c.shape
            )));
        }
        if c.is_unstored_zeros() {
            return Ok(());
        }
        let pad = to.len() - c.shape.len();
        let src: Vec<usize> = (0..to.len())
            .map(|i| if i < pad { 1 } else { c.shape[i - pad] })
            .collect();
        // Inner suffix over which c is constant.
        let mut k = to.len();
        while k > 0 && src[k - 1] == 1 {
            k -= 1;
        }
        let inner: usize = to[k..].iter().product();
        // Prefix over which c repeats as a whole.
        let mut p = 0;
        while p < k && src[p] == 1 {
            p += 1;
        }
        let body_matches = src[p..k] == to[p..k];
        if body_matches {
            // c's elements in order, each repeated `inner` times, the whole repeated over
            // the prefix.
            let cd = c.data();
            for (j, blk) in self.data_mut().chunks_mut(inner.max(1)).enumerate() {
                let v = cd[j % cd.len().max(1)];
                blk.iter_mut().for_each(|x| *x = x.wrapping_add(v));
            }
            return Ok(());
        }
        let b = super::shape::broadcast_to(c.data(), &c.shape, &to);
        self.data_mut()
            .iter_mut()
            .zip(&b)
            .for_each(|(x, v)| *x = x.wrapping_add(*v));
        Ok(())
    }

    pub fn reshaped(&self, shape: &[usize]) -> Result<Self> {
        self.clone().reshape(shape)
    }

    pub fn map(&self, f: impl Fn(u64) -> u64) -> Self {
        if self.is_unstored_zeros() {
            return Self::filled(&self.shape, f(0));
        }
        RingTensor {
            shape: self.shape.clone(),
            data: Words::Owned(self.data().iter().map(|&x| f(x)).collect()),
        }
    }

    /// Elementwise combination of two tensors of identical shape.
    pub fn zip(&self, o: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        assert_eq!(
            self.shape, o.shape,
            "elementwise op on shapes {:?} and {:?}",
            self.shape, o.shape
        );
        if self.is_unstored_zeros() && o.is_unstored_zeros() {
            return Self::filled(&self.shape, f(0, 0));
        }
        RingTensor {
            shape: self.shape.clone(),
            data: Words::Owned(
                self.data()
                    .iter()
                    .zip(o.data())
                    .map(|(&a, &b)| f(a, b))
                    .collect(),
            ),
        }
    }

    pub fn zip_assign(&mut self, o: &Self, f: impl Fn(u64, u64) -> u64) {
        assert_eq!(
            self.shape, o.shape,
            "elementwise op on shapes {:?} and {:?}",
            self.shape, o.shape
        );
        if self.is_unstored_zeros() && o.is_unstored_zeros() && f(0, 0) == 0 {
            return;
        }
        for (a, &b) in self.data_mut().iter_mut().zip(o.data()) {
            *a = f(*a, b);
        }
    }

    pub fn add(&self, o: &Self) -> Self {
        self.zip(o, u64::wrapping_add)
    }
    pub fn sub(&self, o: &Self) -> Self {
        self.zip(o, u64::wrapping_sub)
    }
    pub fn mul(&self, o: &Self) -> Self {
        self.zip(o, u64::wrapping_mul)
    }
    pub fn xor(&self, o: &Self) -> Self {
        self.zip(o, |a, b| a ^ b)
    }
    pub fn and(&self, o: &Self) -> Self {
        self.zip(o, |a, b| a & b)
    }
    pub fn neg(&self) -> Self {
        self.map(u64::wrapping_neg)
    }
    pub fn scale(&self, k: u64) -> Self {
        self.map(|x| x.wrapping_mul(k))
    }
    pub fn add_scalar(&self, k: u64) -> Self {
        self.map(|x| x.wrapping_add(k))
    }
    pub fn shl(&self, s: u32) -> Self {
        self.map(|x| x << s)
    }
    pub fn shr_logical(&self, s: u32) -> Self {
        self.map(|x| x >> s)
    }
    pub fn shr_arith(&self, s: u32) -> Self {
        self.map(|x| ((x as i64) >> s) as u64)
    }
    pub fn add_assign(&mut self, o: &Self) {
        if !o.is_unstored_zeros() || self.shape != o.shape {
            self.zip_assign(o, u64::wrapping_add)
        }
    }
    pub fn sub_assign(&mut self, o: &Self) {
        if !o.is_unstored_zeros() || self.shape != o.shape {
            self.zip_assign(o, u64::wrapping_sub)
        }
    }
    pub fn xor_assign(&mut self, o: &Self) {
        if !o.is_unstored_zeros() || self.shape != o.shape {
            self.zip_assign(o, |a, b| a ^ b)
        }
    }

    /// Size of the block below `axis` (product of the trailing dims) and count above it.
    fn axis_split(&self, axis: usize) -> (usize, usize, usize) {
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        (outer, self.shape[axis], inner)
    }

    /// Elements `start..end` along `axis`.
    pub fn slice_axis(&self, axis: usize, start: usize, end: usize) -> Self {
        assert!(
            axis < self.shape.len() && start <= end && end <= self.shape[axis],
            "slice {start}..{end} of axis {axis} in {:?}",
            self.shape
        );
        let mut shape = self.shape.clone();
        shape[axis] = end - start;
        if self.is_unstored_zeros() {
            return Self::zeros(&shape);
        }
        let (outer, dim, inner) = self.axis_split(axis);
        let mut data = Vec::with_capacity(outer * (end - start) * inner);
        let words = self.data();
        for o in 0..outer {
            let base = o * dim * inner;
            data.extend_from_slice(&words[base + start * inner..base + end * inner]);
        }
        RingTensor {
            shape,
            data: Words::Owned(data),
        }
    }

    /// Split into `k` nearly equal parts along `axis` (the first parts one longer).
    pub fn split_axis(&self, axis: usize, k: usize) -> Vec<Self> {
        split_ranges(self.shape[axis], k)
            .into_iter()
            .map(|(s, e)| self.slice_axis(axis, s, e))
            .collect()
    }

    /// Concatenate along `axis`; all other dims must agree.
    pub fn concat(axis: usize, parts: &[Self]) -> Self {
        assert!(!parts.is_empty(), "concat of nothing");
        let mut shape = parts[0].shape.clone();
        for p in parts {
            assert_eq!(p.shape.len(), shape.len());
            for (d, (&a, &b)) in p.shape.iter().zip(&shape).enumerate() {
                assert!(
                    d == axis || a == b,
                    "concat along {axis}: {:?} vs {:?}",
                    p.shape,
                    shape
                );
            }
        }
        shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
        if parts.iter().all(|p| p.is_unstored_zeros()) {
            return Self::zeros(&shape);
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for p in parts {
                let blk = p.shape[axis] * inner;
                data.extend_from_slice(&p.data()[o * blk..(o + 1) * blk]);
            }
        }
        RingTensor {
            shape,
            data: Words::Owned(data),
        }
    }

    /// Stack flat tensors end to end into one flat tensor (for batching openings).
    pub fn flat_concat(parts: &[&Self]) -> Vec<u64> {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            out.extend_from_slice(p.data());
        }
        out
    }

    /// Permute axes: output axis i is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Self {
        assert_eq!(perm.len(), self.shape.len());
        if self.is_unstored_zeros() {
            return Self::zeros(&perm.iter().map(|&a| self.shape[a]).collect::<Vec<_>>());
        }
        let (shape, data) = super::shape::permute(self.data(), &self.shape, perm);
        RingTensor {
            shape,
            data: Words::Owned(data),
        }
    }

    /// 2-D transpose.
    pub fn transpose2(&self) -> Self {
        assert_eq!(self.shape.len(), 2, "transpose2 of {:?}", self.shape);
        self.permute(&[1, 0])
    }

    /// Repeat the whole tensor `k` times along a new leading axis.
    pub fn repeat_leading(&self, k: usize) -> Self {
        let mut shape = vec![k];
        shape.extend_from_slice(&self.shape);
        if self.is_unstored_zeros() {
            return Self::zeros(&shape);
        }
        let mut data = Vec::with_capacity(k * self.len());
        for _ in 0..k {
            data.extend_from_slice(self.data());
        }
        RingTensor {
            shape,
            data: Words::Owned(data),
        }
    }
}

/// `k` contiguous ranges covering 0..n as evenly as possible (empty ranges when k > n).
pub fn split_ranges(n: usize, k: usize) -> Vec<(usize, usize)> {
    let k = k.max(1);
    let (q, r) = (n / k, n % k);
    let mut out = Vec::with_capacity(k);
    let mut s = 0;
    for i in 0..k {
        let len = q + usize::from(i < r);
        out.push((s, s + len));
        s += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> RingTensor {
        let n = shape.iter().product::<usize>();
        RingTensor::from_vec(shape, (0..n as u64).collect())
    }

    #[test]
    fn split_then_concat_is_identity_on_every_axis() {
        let t = iota(&[3, 5, 4]);
        for axis in 0..3 {
            for k in 1..=6 {
                let parts = t.split_axis(axis, k);
                assert_eq!(RingTensor::concat(axis, &parts), t);
            }
        }
    }

    #[test]
    fn permute_matches_index_formula() {
        let t = iota(&[2, 3, 4]);
        let p = t.permute(&[2, 0, 1]);
        assert_eq!(p.shape(), &[4, 2, 3]);
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(p.data()[c * 6 + a * 3 + b], t.data()[a * 12 + b * 4 + c]);
                }
            }
        }
    }

    #[test]
    fn add_broadcast_assign_matches_the_broadcast_reference() {
        let cases: [(&[usize], &[usize]); 7] = [
            (&[2, 3, 4, 5], &[3, 1, 1]),
            (&[2, 3, 4, 5], &[5]),
            (&[2, 3, 4, 5], &[4, 1]),
            (&[2, 3, 4, 5], &[1]),
            (&[2, 3, 4, 5], &[2, 1, 4, 1]),
            (&[6, 7], &[6, 1]),
            (&[6, 7], &[6, 7]),
        ];
        for (to, c) in cases {
            let mut y = iota(to);
            let cv = iota(c).map(|v| v * 1000 + 7);
            let b = crate::ring::shape::broadcast_to(cv.data(), c, to);
            let want: Vec<u64> = y
                .data()
                .iter()
                .zip(&b)
                .map(|(a, b)| a.wrapping_add(*b))
                .collect();
            y.add_broadcast_assign(&cv).unwrap();
            assert_eq!(y.data(), &want[..], "{c:?} onto {to:?}");
        }
        assert!(iota(&[2, 3]).add_broadcast_assign(&iota(&[2])).is_err());
    }

    #[test]
    fn wrapping_arithmetic() {
        let a = RingTensor::from_vec(&[2], vec![u64::MAX, 1 << 63]);
        let b = RingTensor::from_vec(&[2], vec![1, 1 << 63]);
        assert_eq!(a.add(&b).data(), &[0, 0]);
        assert_eq!(a.mul(&b).data(), &[u64::MAX, 0]);
        assert_eq!(b.sub(&a).data(), &[2, 0]);
    }

    /// Zeros stored nowhere behave exactly as stored zeros (the reference: the same
    /// operations on a tensor built from a vector of zeros), and stay unstored through the
    /// operations that keep zeros zero.
    #[test]
    fn unstored_zeros_equal_stored_zeros_under_every_operation() {
        let shape = [2, 3, 4];
        let lazy = RingTensor::zeros(&shape);
        let stored = RingTensor::from_vec(&shape, vec![0; 24]);
        let other = iota(&shape);
        assert!(!stored.is_unstored_zeros());
        assert_eq!(lazy, stored);
        assert_eq!(lazy.data(), stored.data());
        assert_eq!(lazy.len(), 24);
        // Zeros in, zeros out: unstored.
        for t in [
            lazy.slice_axis(1, 1, 3),
            lazy.permute(&[2, 0, 1]),
            RingTensor::concat(0, &[lazy.clone(), lazy.clone()]),
            lazy.neg(),
            lazy.scale(7),
            lazy.shr_arith(3),
            lazy.add(&lazy),
            lazy.repeat_leading(2),
            lazy.clone().reshape(&[4, 6]).unwrap(),
            RingTensor::filled(&shape, 0),
        ] {
            assert!(t.is_unstored_zeros(), "{:?}", t.shape());
        }
        assert_eq!(lazy.slice_axis(1, 1, 3), stored.slice_axis(1, 1, 3));
        assert_eq!(lazy.permute(&[2, 0, 1]), stored.permute(&[2, 0, 1]));
        assert_eq!(
            RingTensor::concat(1, &[lazy.clone(), other.clone()]),
            RingTensor::concat(1, &[stored.clone(), other.clone()])
        );
        assert_eq!(lazy.repeat_leading(3), stored.repeat_leading(3));
        // Values that are not zero are computed.
        assert_eq!(lazy.add_scalar(5), stored.add_scalar(5));
        assert!(!lazy.add_scalar(5).is_unstored_zeros());
        assert_eq!(lazy.add(&other), stored.add(&other));
        assert_eq!(other.sub(&lazy), other.sub(&stored));
        assert_eq!(
            lazy.zip(&lazy, |a, b| a.wrapping_add(b) + 1),
            stored.zip(&stored, |a, b| a.wrapping_add(b) + 1)
        );
        // In-place operations: adding zeros changes nothing; writing stores.
        let mut x = other.clone();
        x.add_assign(&lazy);
        x.sub_assign(&lazy);
        x.xor_assign(&lazy);
        assert_eq!(x, other);
        let mut y = lazy.clone();
        y.add_assign(&other);
        assert_eq!(y, other);
        let mut b = other.clone();
        b.add_broadcast_assign(&RingTensor::zeros(&[3, 1])).unwrap();
        assert_eq!(b, other);
        let mut w = lazy.clone();
        w.data_mut()[5] = 9;
        assert!(!w.is_unstored_zeros());
        assert_eq!(w.data()[5], 9);
        assert_eq!(w.data().iter().sum::<u64>(), 9);
        assert_eq!(lazy.clone().into_data(), vec![0; 24]);
        assert_eq!(RingTensor::flat_concat(&[&lazy, &other]).len(), 48);
    }
}
