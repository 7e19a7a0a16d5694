//! Training data: the UCI optical handwritten digits committed under data/digits (compiled
//! into the binary), a loader for that CSV format with every size and value checked, the
//! fixed train/test split, and seeded synthetic data of any size for benchmarks. Depends
//! on ring and model::zoo (the seeded generator), error.

use crate::error::{Error, Result};
use crate::model::zoo::Synth;
use crate::ring::PlainTensor;

/// data/digits/digits.csv (see data/digits/README.md for source and licence).
const DIGITS_CSV: &str = include_str!("../../data/digits/digits.csv");
/// Images in the digits file, and how many of them (the first) form the training set.
pub const DIGITS_IMAGES: usize = 1797;
pub const DIGITS_TRAIN: usize = 1437;
/// Pixels per digit image (8×8) and the largest pixel value.
const DIGITS_SIDE: usize = 8;
const DIGITS_MAX: f64 = 16.0;
/// Largest synthetic data set (samples), so a typo cannot ask for terabytes.
pub const MAX_SYNTHETIC: usize = 1 << 20;
/// Most values (samples × values per sample, 16 GiB of f64) a data set may hold, real,
/// synthetic or placeholder: beyond it the allocation would abort the process rather than
/// report an error.
pub const MAX_DATA_VALUES: usize = 1 << 31;

/// Refuse `n` samples of `s` values each beyond `MAX_DATA_VALUES`.
fn check_values(n: usize, s: usize) -> Result<()> {
    match n.checked_mul(s) {
        Some(v) if v <= MAX_DATA_VALUES => Ok(()),
        _ => Err(Error::Config(format!(
            "{n} samples of {s} values are more than {MAX_DATA_VALUES} values in all"
        ))),
    }
}

/// Labelled images, NCHW, labels in 0..classes.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// [n, C, H, W] flattened row-major.
    pub images: Vec<f64>,
    /// Per-sample shape [C, H, W].
    pub sample_shape: Vec<usize>,
    pub labels: Vec<usize>,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }
    /// Samples `idx` as one batch [len, C, H, W] and their labels.
    pub fn batch(&self, idx: &[usize]) -> (PlainTensor, Vec<usize>) {
        let s = self.sample_len();
        let mut data = Vec::with_capacity(idx.len() * s);
        for &i in idx {
            data.extend_from_slice(&self.images[i * s..(i + 1) * s]);
        }
        let mut shape = vec![idx.len()];
        shape.extend(&self.sample_shape);
        (
            PlainTensor::from_vec(&shape, data),
            idx.iter().map(|&i| self.labels[i]).collect(),
        )
    }
    /// Rows `range` as a data set of their own.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Dataset {
        let s = self.sample_len();
        Dataset {
            images: self.images[range.start * s..range.end * s].to_vec(),
            sample_shape: self.sample_shape.clone(),
            labels: self.labels[range].to_vec(),
            classes: self.classes,
        }
    }
}

/// A training set and a test set.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// Parse the digits CSV format (64 pixels 0..16 and a label 0..9 per line); `what` names
/// the source in errors.
pub fn parse_digits(text: &str, what: &str) -> Result<Dataset> {
    let px = DIGITS_SIDE * DIGITS_SIDE;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if labels.len() == DIGITS_IMAGES {
            return Err(Error::Config(format!(
                "{what}: more than {DIGITS_IMAGES} images (line {})",
                ln + 1
            )));
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != px + 1 {
            return Err(Error::Config(format!(
                "{what} line {}: {} fields, expected {} (64 pixels and a label)",
                ln + 1,
                fields.len(),
                px + 1
            )));
        }
        for (j, f) in fields.iter().enumerate() {
            let v: u32 = f.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "{what} line {} field {}: '{f}' is not an integer",
                    ln + 1,
                    j + 1
                ))
            })?;
            let max = if j < px { DIGITS_MAX as u32 } else { 9 };
            if v > max {
                return Err(Error::Config(format!(
                    "{what} line {} field {}: {v} is above {max}",
                    ln + 1,
                    j + 1
                )));
            }
            if j < px {
                images.push(v as f64 / DIGITS_MAX);
            } else {
                labels.push(v as usize);
            }
        }
    }
    if labels.len() != DIGITS_IMAGES {
        return Err(Error::Config(format!(
            "{what}: {} images, expected {DIGITS_IMAGES}",
            labels.len()
        )));
    }
    Ok(Dataset {
        images,
        sample_shape: vec![1, DIGITS_SIDE, DIGITS_SIDE],
        labels,
        classes: 10,
    })
}

/// The committed digits with the fixed split: the first 1,437 images train, the last 360
/// test (data/digits/README.md).
pub fn digits() -> Result<Split> {
    let all = parse_digits(DIGITS_CSV, "data/digits/digits.csv")?;
    Ok(Split {
        train: all.rows(0..DIGITS_TRAIN),
        test: all.rows(DIGITS_TRAIN..DIGITS_IMAGES),
    })
}

/// Seeded synthetic data for benchmarks: `train` + `test` samples of `sample_shape`
/// (values in [0, 1)) with `classes` labels. Each class has a fixed random prototype and a
/// sample is its prototype plus noise, so a model can learn it (accuracy means something)
/// yet nothing about it is real.
pub fn synthetic(
    train: usize,
    test: usize,
    sample_shape: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Split> {
    let n = train
        .checked_add(test)
        .filter(|&n| n <= MAX_SYNTHETIC)
        .ok_or_else(|| {
            Error::Config(format!(
                "synthetic data of {train} + {test} samples: at most {MAX_SYNTHETIC} in all"
            ))
        })?;
    if train == 0 || test == 0 || classes < 2 {
        return Err(Error::Config(format!(
            "synthetic data needs training and test samples and at least 2 classes, got {train}, {test}, {classes}"
        )));
    }
    let s: usize = sample_shape.iter().product();
    if s == 0 || s > 1 << 20 {
        return Err(Error::Config(format!(
            "synthetic sample shape {sample_shape:?}: 1 to 2^20 values per sample"
        )));
    }
    check_values(n, s)?;
    let mut g = Synth::new(seed);
    let protos = g.tensor(&[classes, s], 0.0, 1.0);
    let labels = g.tensor(&[n], 0.0, classes as f64);
    let noise = g.tensor(&[n, s], -0.3, 0.3);
    let labels: Vec<usize> = labels
        .data()
        .iter()
        .map(|&v| (v as usize).min(classes - 1))
        .collect();
    let mut images = Vec::with_capacity(n * s);
    for (i, &c) in labels.iter().enumerate() {
        let p = &protos.data()[c * s..(c + 1) * s];
        let z = &noise.data()[i * s..(i + 1) * s];
        images.extend(p.iter().zip(z).map(|(p, z)| (p + z).clamp(0.0, 1.0)));
    }
    let all = Dataset {
        images,
        sample_shape: sample_shape.to_vec(),
        labels,
        classes,
    };
    Ok(Split {
        train: all.rows(0..train),
        test: all.rows(train..n),
    })
}

/// A stand-in of the data's public shape for a party that does not hold the data (a
/// party process other than the data owner's under `train --processes`): `train` and
/// `test` samples of `sample_shape`, all zeros, labels 0. The training program reads
/// values only at the data owner, so nothing of them is ever used.
pub fn placeholder(
    train: usize,
    test: usize,
    sample_shape: &[usize],
    classes: usize,
) -> Result<Split> {
    let s: usize = sample_shape.iter().product();
    let n = train
        .checked_add(test)
        .filter(|&n| n <= MAX_SYNTHETIC.max(DIGITS_IMAGES));
    if n.is_none() || s == 0 || s > 1 << 20 || classes < 2 {
        return Err(Error::Config(format!(
            "data shape of {train} + {test} samples of {sample_shape:?} in {classes} classes is out of range"
        )));
    }
    check_values(train + test, s)?;
    let set = |len: usize| Dataset {
        images: vec![0.0; len * s],
        sample_shape: sample_shape.to_vec(),
        labels: vec![0; len],
        classes,
    };
    Ok(Split {
        train: set(train),
        test: set(test),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_loads_with_the_fixed_split_and_every_class() {
        let s = digits().unwrap();
        assert_eq!((s.train.len(), s.test.len()), (1437, 360));
        assert_eq!(s.train.images.len(), 1437 * 64);
        // The first line of the file is a 0 (scikit-learn's digits.images[0]).
        assert_eq!(s.train.labels[0], 0);
        assert_eq!(s.train.images[2], 5.0 / 16.0);
        for c in 0..10 {
            assert!(s.test.labels.iter().filter(|&&l| l == c).count() >= 30);
        }
    }

    #[test]
    fn malformed_digits_name_line_and_field() {
        let line = |label: &str| format!("{}{label}\n", "0,".repeat(64));
        let e = parse_digits(&line("12"), "x.csv").unwrap_err().to_string();
        assert!(
            e.contains("x.csv line 1 field 65") && e.contains("above 9"),
            "{e}"
        );
        let e = parse_digits("1,2,3\n", "x.csv").unwrap_err().to_string();
        assert!(e.contains("3 fields"), "{e}");
        let e = parse_digits(&line("a"), "x.csv").unwrap_err().to_string();
        assert!(e.contains("not an integer"), "{e}");
        let e = parse_digits(&line("1"), "x.csv").unwrap_err().to_string();
        assert!(e.contains("1 images, expected 1797"), "{e}");
    }

    #[test]
    fn synthetic_is_seeded_and_checked() {
        let a = synthetic(10, 4, &[1, 4, 4], 3, 7).unwrap();
        let b = synthetic(10, 4, &[1, 4, 4], 3, 7).unwrap();
        assert_eq!(a.train.images, b.train.images);
        assert_eq!(a.test.labels.len(), 4);
        assert!(a.train.labels.iter().all(|&l| l < 3));
        assert!(synthetic(MAX_SYNTHETIC, 1, &[1], 2, 0).is_err());
        assert!(synthetic(1, 1, &[1], 1, 0).is_err());
        // 2^20 samples of 2^12 values: 2^32 values, refused before any allocation.
        let e = synthetic(1 << 19, 1 << 19, &[1, 64, 64], 2, 0).unwrap_err();
        assert!(e.to_string().contains("values in all"), "{e}");
    }

    #[test]
    fn a_placeholder_has_the_data_shape_and_no_values() {
        let p = placeholder(10, 4, &[1, 8, 8], 10).unwrap();
        assert_eq!((p.train.len(), p.test.len()), (10, 4));
        assert_eq!(p.train.sample_shape, vec![1, 8, 8]);
        assert!(p.train.images.iter().all(|&v| v == 0.0));
        assert!(placeholder(1 << 20, 0, &[1 << 20], 2).is_err());
        assert!(placeholder(4, 4, &[4], 1).is_err());
    }
}
