//! Cryptographically secure pseudo-random generation: AES-128 in counter mode (`aes` +
//! `ctr`; AES-NI is selected at run time by the `aes` crate). Every share, mask, triple and
//! random bit comes from here. Depends on ring.
//!
//! A stream is addressed by (seed, stream id): the seed is the AES key and the stream id
//! fills the upper half of the 128-bit counter block, so distinct ids give disjoint
//! keystreams (each stream may produce up to 2^64 blocks). This gives random access to the
//! material of any operation by its key, independent of the order operations run in.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

use crate::ring::RingTensor;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// 128-bit PRG seed (an AES key).
pub type Seed = [u8; 16];

/// A fresh seed from the operating system's entropy source.
pub fn fresh_seed() -> Seed {
    let mut s = [0u8; 16];
    getrandom::getrandom(&mut s).expect("OS entropy source unavailable");
    s
}

/// A deterministic keystream for (seed, stream id).
pub struct Prg {
    cipher: Aes128Ctr,
}

impl Prg {
    pub fn new(seed: &Seed, stream: u64) -> Self {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&stream.to_be_bytes());
        Prg {
            cipher: Aes128Ctr::new(seed.into(), &iv.into()),
        }
    }

    /// The stream (seed, stream id) from its `word`-th 64-bit word on: random access, so a
    /// lane draws its part of an operation's material without drawing what precedes it.
    pub fn at(seed: &Seed, stream: u64, word: usize) -> Self {
        let mut p = Prg::new(seed, stream);
        p.cipher.seek(word as u64 * 8);
        p
    }

    /// A seed derived from a public 64-bit value and a label: for `--dealer-seed`, which
    /// makes runs reproducible and the randomness predictable (experiments only).
    pub fn derive_seed(value: u64, label: u64) -> Seed {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&value.to_le_bytes());
        k[8..].copy_from_slice(b"dealerSd");
        Prg::new(&k, label).seed()
    }

    /// Fill `out` with uniform 64-bit words.
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        // Zeroed and XORed a block at a time, so the block is still in L1 when the
        // keystream goes over it (zeroing a large buffer first cost as much as the AES).
        for block in out.chunks_mut(512) {
            block.fill(0);
            // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1, so viewing
            // the words as bytes is sound; the keystream XORed over zeros is the stream.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    block.as_mut_ptr() as *mut u8,
                    std::mem::size_of_val(block),
                )
            };
            self.cipher.apply_keystream(bytes);
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut w = [0u64; 1];
        self.fill_u64(&mut w);
        w[0]
    }

    /// A tensor of uniform ring elements.
    pub fn tensor(&mut self, shape: &[usize]) -> RingTensor {
        let mut t = RingTensor::zeros(shape);
        self.fill_u64(t.data_mut());
        t
    }

    /// A tensor of uniform bits (each element 0 or 1).
    pub fn bits(&mut self, shape: &[usize]) -> RingTensor {
        let mut t = self.tensor(shape);
        t.data_mut().iter_mut().for_each(|x| *x &= 1);
        t
    }

    /// A fresh seed derived from this stream.
    pub fn seed(&mut self) -> Seed {
        let mut w = [0u64; 2];
        self.fill_u64(&mut w);
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&w[0].to_le_bytes());
        s[8..].copy_from_slice(&w[1].to_le_bytes());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let seed = [7u8; 16];
        let a = Prg::new(&seed, 1).tensor(&[64]);
        let b = Prg::new(&seed, 1).tensor(&[64]);
        let c = Prg::new(&seed, 2).tensor(&[64]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn seeking_equals_drawing_through() {
        let seed = [5u8; 16];
        let whole = Prg::new(&seed, 4).tensor(&[37]);
        for at in [0, 1, 2, 3, 17, 36] {
            let mut p = Prg::at(&seed, 4, at);
            let mut w = vec![0u64; 37 - at];
            p.fill_u64(&mut w);
            assert_eq!(&whole.data()[at..], &w[..]);
        }
    }

    #[test]
    fn split_draws_equal_one_long_draw() {
        // Material generation relies on drawing a, b, c in sequence from one stream.
        let seed = [3u8; 16];
        let whole = Prg::new(&seed, 9).tensor(&[10]);
        let mut p = Prg::new(&seed, 9);
        let x = p.tensor(&[4]);
        let y = p.tensor(&[6]);
        assert_eq!(&whole.data()[..4], x.data());
        assert_eq!(&whole.data()[4..], y.data());
    }
}
