//! Shape arithmetic shared by ring and f64 tensors: numpy broadcasting, axis permutation,
//! slicing and concatenation of row-major data of any element type. Depends on std only.

/// The broadcast shape of `a` and `b` (numpy rules: align on the right, each pair of
/// dims equal or one of them 1), or None when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let pad = n - s.len();
        if i < pad {
            1
        } else {
            s[i - pad]
        }
    };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `data` of `shape` repeated to `target` (which `shape` must broadcast to).
pub fn broadcast_to<T: Copy>(data: &[T], shape: &[usize], target: &[usize]) -> Vec<T> {
    assert!(
        broadcast_shape(shape, target).as_deref() == Some(target),
        "{shape:?} does not broadcast to {target:?}"
    );
    if shape == target {
        return data.to_vec();
    }
    let pad = target.len() - shape.len();
    let src = strides(shape);
    // Stride 0 along broadcast dims: the same source element is read again.
    let st: Vec<usize> = (0..target.len())
        .map(|i| {
            if i < pad || shape[i - pad] == 1 {
                0
            } else {
                src[i - pad]
            }
        })
        .collect();
    gather(data, target, &st)
}

/// Elements of `data` read with per-axis strides `st` over the index space `shape`.
fn gather<T: Copy>(data: &[T], shape: &[usize], st: &[usize]) -> Vec<T> {
    let n: usize = shape.iter().product();
    let nd = shape.len();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let mut idx = vec![0usize; nd];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(data[off]);
        for d in (0..nd).rev() {
            idx[d] += 1;
            off += st[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= st[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}

/// Permute axes: output axis i is input axis `perm[i]`. Returns the new shape and data.
pub fn permute<T: Copy>(data: &[T], shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<T>) {
    let src = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| src[p]).collect();
    let data = gather(data, &out_shape, &st);
    (out_shape, data)
}

/// Elements `start..end` along `axis`.
pub fn slice_axis<T: Copy>(
    data: &[T],
    shape: &[usize],
    axis: usize,
    start: usize,
    end: usize,
) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let dim = shape[axis];
    let mut out = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        let base = o * dim * inner;
        out.extend_from_slice(&data[base + start * inner..base + end * inner]);
    }
    out
}

/// Concatenate `parts` (data, shape) along `axis`; the caller has checked that every other
/// dim agrees. Returns the new shape and data.
pub fn concat<T: Copy>(parts: &[(&[T], &[usize])], axis: usize) -> (Vec<usize>, Vec<T>) {
    let mut shape = parts[0].1.to_vec();
    shape[axis] = parts.iter().map(|p| p.1[axis]).sum();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for (d, s) in parts {
            let blk = s[axis] * inner;
            out.extend_from_slice(&d[o * blk..(o + 1) * blk]);
        }
    }
    (shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[4, 1, 5], &[3, 1]), Some(vec![4, 3, 5]));
        assert_eq!(broadcast_shape(&[2, 3], &[2]), None);
        let v = broadcast_to(&[1, 2, 3], &[3], &[2, 3]);
        assert_eq!(v, vec![1, 2, 3, 1, 2, 3]);
        let v = broadcast_to(&[1, 2], &[2, 1], &[2, 3]);
        assert_eq!(v, vec![1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn permute_slice_concat_by_index() {
        let d: Vec<u32> = (0..24).collect();
        let (s, p) = permute(&d, &[2, 3, 4], &[2, 0, 1]);
        assert_eq!(s, vec![4, 2, 3]);
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(p[c * 6 + a * 3 + b], d[a * 12 + b * 4 + c]);
                }
            }
        }
        let x = slice_axis(&d, &[2, 3, 4], 1, 1, 3);
        let y = slice_axis(&d, &[2, 3, 4], 1, 0, 1);
        let (s2, back) = concat(&[(&y, &[2, 1, 4]), (&x, &[2, 2, 4])], 1);
        assert_eq!(s2, vec![2, 3, 4]);
        assert_eq!(back, d);
    }
}
