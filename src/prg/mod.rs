//! Cryptographically secure pseudo-random generation: AES-128 in counter mode, on VAES
//! (`vaes`) where the CPU has it, else `aes` + `ctr` (AES-NI selected at run time by the
//! `aes` crate); the two give the same bytes. Every share, mask, triple and random bit
//! comes from here. Depends on ring.
//!
//! A stream is addressed by (seed, stream id): the seed is the AES key and the stream id
//! fills the upper half of the 128-bit counter block, so distinct ids give disjoint
//! keystreams (each stream may produce up to 2^64 blocks). This gives random access to the
//! material of any operation by its key, independent of the order operations run in.
//!
//! `stream_words` and `zip_streams` draw large tensors in parallel chunks on the rayon
//! pool, each chunk seeking to its place in the stream (so the words do not depend on how
//! the work is split), and write every output word once: no zeroing pass before the
//! keystream, no temporary per stream.

use std::mem::MaybeUninit;

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rayon::prelude::*;
use std::sync::OnceLock;

use crate::ring::RingTensor;

#[cfg(target_arch = "x86_64")]
pub mod vaes;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// 128-bit PRG seed (an AES key).
pub type Seed = [u8; 16];

/// A fresh seed from the operating system's entropy source.
pub fn fresh_seed() -> Seed {
    let mut s = [0u8; 16];
    getrandom::getrandom(&mut s).expect("OS entropy source unavailable");
    s
}

/// How the keystream is computed: both give the same words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `ctr::Ctr128BE<aes::Aes128>` (AES-NI or the crate's software AES).
    Crate,
    /// prg::vaes on AVX2 registers (VAES without AVX-512).
    Vaes256,
    /// prg::vaes on AVX-512 registers.
    Vaes512,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Crate => "aes-crate",
            Path::Vaes256 => "vaes256",
            Path::Vaes512 => "vaes512",
        }
    }

    pub fn available(self) -> bool {
        match self {
            Path::Crate => true,
            #[cfg(target_arch = "x86_64")]
            Path::Vaes256 => vaes::available_256(),
            #[cfg(target_arch = "x86_64")]
            Path::Vaes512 => vaes::available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub const ALL: [Path; 3] = [Path::Crate, Path::Vaes256, Path::Vaes512];

    /// The fastest path this CPU has, decided once.
    pub fn detect() -> Path {
        static PATH: OnceLock<Path> = OnceLock::new();
        *PATH.get_or_init(|| {
            *Path::ALL
                .iter()
                .rev()
                .find(|p| p.available())
                .unwrap_or(&Path::Crate)
        })
    }
}

/// A deterministic keystream for (seed, stream id).
pub struct Prg {
    ks: Keystream,
}

// Both variants are a few hundred bytes (expanded keys): a Prg is made per chunk on the
// stack, and a box would be an allocation per seek.
#[allow(clippy::large_enum_variant)]
enum Keystream {
    Crate(Aes128Ctr),
    #[cfg(target_arch = "x86_64")]
    Vaes {
        /// AVX-512 registers (else AVX2).
        wide: bool,
        rk: [core::arch::x86_64::__m128i; 11],
        stream: u64,
        /// The next block to draw.
        block: u64,
        /// The second word of a block whose first was drawn (odd positions).
        spare: Option<u64>,
    },
}

impl Prg {
    pub fn new(seed: &Seed, stream: u64) -> Self {
        Prg::at_on(Path::detect(), seed, stream, 0)
    }

    /// The stream (seed, stream id) from its `word`-th 64-bit word on: random access, so a
    /// lane draws its part of an operation's material without drawing what precedes it.
    pub fn at(seed: &Seed, stream: u64, word: usize) -> Self {
        Prg::at_on(Path::detect(), seed, stream, word)
    }

    /// As `at`, on a chosen path (which must be available): for tests and `kernels --prg`.
    pub fn at_on(path: Path, seed: &Seed, stream: u64, word: usize) -> Self {
        assert!(path.available(), "PRG path {} not available", path.name());
        match path {
            #[cfg(target_arch = "x86_64")]
            Path::Vaes256 | Path::Vaes512 => {
                let mut p = Prg {
                    ks: Keystream::Vaes {
                        wide: path == Path::Vaes512,
                        // SAFETY: the path is available, so the CPU has AES-NI and SSE2.
                        rk: unsafe { vaes::expand_key(seed) },
                        stream,
                        block: (word / 2) as u64,
                        spare: None,
                    },
                };
                if word % 2 == 1 {
                    // Draw the block and keep its second word.
                    let mut w = 0u64;
                    p.fill_u64(std::slice::from_mut(&mut w));
                    // (`fill_u64` kept the block's second word as the spare.)
                }
                p
            }
            _ => {
                let mut iv = [0u8; 16];
                iv[..8].copy_from_slice(&stream.to_be_bytes());
                let mut cipher = Aes128Ctr::new(seed.into(), &iv.into());
                cipher.seek(word as u64 * 8);
                Prg {
                    ks: Keystream::Crate(cipher),
                }
            }
        }
    }

    /// `n` words at `p` (VAES path; on the crate's path nothing is written): the spare
    /// word first, then whole blocks, then the first word of one more block, whose
    /// second becomes the spare.
    ///
    /// # Safety
    /// `p` must be valid for writing `n` words (initialised or not).
    #[cfg(target_arch = "x86_64")]
    unsafe fn fill_raw(&mut self, mut p: *mut u64, mut n: usize) {
        let Keystream::Vaes {
            wide,
            rk,
            stream,
            block,
            spare,
        } = &mut self.ks
        else {
            return;
        };
        if n == 0 {
            return;
        }
        if let Some(w) = spare.take() {
            p.write(w);
            p = p.add(1);
            n -= 1;
        }
        let blocks = n / 2;
        // SAFETY: a Vaes keystream is only made when its path is available; the caller
        // vouches for the 2·blocks words at p.
        let fill = if *wide { vaes::fill } else { vaes::fill_256 };
        fill(rk, *stream, *block, p, blocks);
        *block += blocks as u64;
        if n % 2 == 1 {
            let mut w = [0u64; 2];
            fill(rk, *stream, *block, w.as_mut_ptr(), 1);
            *block += 1;
            p.add(2 * blocks).write(w[0]);
            *spare = Some(w[1]);
        }
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
        match &mut self.ks {
            Keystream::Crate(cipher) => {
                // Zeroed and XORed a block at a time, so the block is still in L1 when the
                // keystream goes over it (zeroing a large buffer first cost as much as the
                // AES).
                for block in out.chunks_mut(512) {
                    block.fill(0);
                    // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1, so
                    // viewing the words as bytes is sound; the keystream XORed over zeros
                    // is the stream.
                    let bytes = unsafe {
                        std::slice::from_raw_parts_mut(
                            block.as_mut_ptr() as *mut u8,
                            std::mem::size_of_val(block),
                        )
                    };
                    cipher.apply_keystream(bytes);
                }
            }
            // SAFETY: `out` is valid for writing its words.
            #[cfg(target_arch = "x86_64")]
            Keystream::Vaes { .. } => unsafe { self.fill_raw(out.as_mut_ptr(), out.len()) },
        }
    }

    /// Fill uninitialised words with uniform words (as `fill_u64`, each written once).
    pub fn fill_uninit(&mut self, out: &mut [MaybeUninit<u64>]) {
        #[cfg(target_arch = "x86_64")]
        if let Keystream::Vaes { .. } = self.ks {
            // SAFETY: `out` is valid for writing its words; MaybeUninit<u64> has u64's
            // layout. The VAES path writes without reading, so no zeroing pass first.
            unsafe { self.fill_raw(out.as_mut_ptr().cast(), out.len()) };
            return;
        }
        for block in out.chunks_mut(512) {
            block.fill(MaybeUninit::new(0));
            // SAFETY: every word of the block was just initialised.
            let words = unsafe {
                std::slice::from_raw_parts_mut(block.as_mut_ptr() as *mut u64, block.len())
            };
            self.fill_u64(words);
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

/// Words per parallel task of `stream_words` and `zip_streams`: enough that seeking the
/// stream and spawning the task are free, few enough to spread one tensor over the pool.
const PAR_CHUNK: usize = 1 << 15;

/// Fewest words `zip_streams` draws on the pool rather than on the calling thread.
const PAR_MIN_ZIP: usize = 1 << 20;

/// Words `at..at + out.len()` of the stream (seed, stream id) into `out`, in parallel
/// chunks.
pub fn fill_stream_uninit(seed: &Seed, stream: u64, at: usize, out: &mut [MaybeUninit<u64>]) {
    if out.len() <= PAR_CHUNK {
        Prg::at(seed, stream, at).fill_uninit(out);
        return;
    }
    out.par_chunks_mut(PAR_CHUNK)
        .enumerate()
        .for_each(|(i, c)| Prg::at(seed, stream, at + i * PAR_CHUNK).fill_uninit(c));
}

/// A vector of `n` words, every one written by `fill` (which must write them all).
fn written(n: usize, fill: impl FnOnce(&mut [MaybeUninit<u64>])) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: the callers' fills write every one of the first n spare slots.
    unsafe { out.set_len(n) };
    out
}

/// Words `at..at + n` of the stream (seed, stream id), drawn in parallel chunks.
pub fn stream_words(seed: &Seed, stream: u64, at: usize, n: usize) -> Vec<u64> {
    written(n, |dst| fill_stream_uninit(seed, stream, at, dst))
}

/// `n` words, word i being f(i, s_i, t_i) where s and t are the words `at..at + n` of the
/// streams (`seeds[0]`, stream id) and (`seeds[1]`, stream id): a zero sharing (plus a
/// value) in one pass, the keystreams drawn a block at a time into L1, in parallel chunks.
pub fn zip_streams(
    seeds: [&Seed; 2],
    stream: u64,
    at: usize,
    n: usize,
    f: impl Fn(usize, u64, u64) -> u64 + Sync,
) -> Vec<u64> {
    written(n, |dst| zip_streams_into(seeds, stream, at, dst, f))
}

/// As `zip_streams`, into `dst` (every slot written): a part of a larger message.
pub fn zip_streams_into(
    seeds: [&Seed; 2],
    stream: u64,
    at: usize,
    dst: &mut [MaybeUninit<u64>],
    f: impl Fn(usize, u64, u64) -> u64 + Sync,
) {
    const BLOCK: usize = 512;
    let chunk = |i0: usize, dst: &mut [MaybeUninit<u64>]| {
        let mut ps = Prg::at(seeds[0], stream, at + i0);
        let mut pt = Prg::at(seeds[1], stream, at + i0);
        let (mut s, mut t) = ([0u64; BLOCK], [0u64; BLOCK]);
        for (b, blk) in dst.chunks_mut(BLOCK).enumerate() {
            let len = blk.len();
            ps.fill_u64(&mut s[..len]);
            pt.fill_u64(&mut t[..len]);
            let base = i0 + b * BLOCK;
            for (j, o) in blk.iter_mut().enumerate() {
                o.write(f(base + j, s[j], t[j]));
            }
        }
    };
    on_pool_if_large(dst, chunk);
}

/// `chunk(first word, words)` over `dst`: on the calling lane up to PAR_MIN_ZIP words, in
/// PAR_CHUNK pieces on the pool above. Sharings of activations (an A2B's XOR sharings, at
/// most a few MiB per lane) stay on the calling lane: on the pool they would queue behind
/// the other party's and lanes' kernels. Weight-sized ones use the pool.
fn on_pool_if_large(
    dst: &mut [MaybeUninit<u64>],
    chunk: impl Fn(usize, &mut [MaybeUninit<u64>]) + Sync,
) {
    if dst.len() <= PAR_MIN_ZIP {
        chunk(0, dst);
    } else {
        dst.par_chunks_mut(PAR_CHUNK)
            .enumerate()
            .for_each(|(i, c)| chunk(i * PAR_CHUNK, c));
    }
}

/// As `zip_streams_into` for one stream: word i is f(i, s_i), s the words `at..` of
/// (`seed`, stream id); the 2-party zero sharing, which needs one stream where N parties
/// need two.
pub fn map_stream_into(
    seed: &Seed,
    stream: u64,
    at: usize,
    dst: &mut [MaybeUninit<u64>],
    f: impl Fn(usize, u64) -> u64 + Sync,
) {
    const BLOCK: usize = 512;
    // The keystream goes to a block in L1 and each output word is written once: drawn
    // into `dst` and rewritten there, the words of a fresh buffer were stored twice.
    let chunk = |i0: usize, dst: &mut [MaybeUninit<u64>]| {
        let mut p = Prg::at(seed, stream, at + i0);
        let mut s = [0u64; BLOCK];
        for (b, blk) in dst.chunks_mut(BLOCK).enumerate() {
            let s = &mut s[..blk.len()];
            p.fill_u64(s);
            let base = i0 + b * BLOCK;
            for (j, (o, &s)) in blk.iter_mut().zip(s.iter()).enumerate() {
                o.write(f(base + j, s));
            }
        }
    };
    on_pool_if_large(dst, chunk);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VAES keystream equals the `ctr` crate's word for word: from every offset class
    /// (even, odd, a pass of 32 blocks, past 2^32 blocks), for lengths around the masked
    /// tail, the 32-block pass and the crate path's 512-word block, drawn whole, in
    /// uneven pieces and into uninitialised memory, under several seeds and stream ids.
    #[test]
    fn the_vaes_keystream_is_the_ctr_crates() {
        for path in [Path::Vaes256, Path::Vaes512] {
            if path.available() {
                vaes_equals_the_crate(path);
            } else {
                eprintln!("skipping: this CPU has no {} path", path.name());
            }
        }
    }

    fn vaes_equals_the_crate(path: Path) {
        let mut rng = Prg::at_on(Path::Crate, &[9; 16], 1, 0);
        for seed in [[0u8; 16], [0xff; 16], rng.seed()] {
            for stream in [0, 1, u64::MAX, rng.next_u64()] {
                for at in [0usize, 1, 2, 63, 64, 65, 1 << 33, (1 << 33) + 1] {
                    for n in [0usize, 1, 2, 3, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1000] {
                        let mut want = vec![0u64; n];
                        Prg::at_on(Path::Crate, &seed, stream, at).fill_u64(&mut want);
                        let mut got = vec![0u64; n];
                        Prg::at_on(path, &seed, stream, at).fill_u64(&mut got);
                        assert_eq!(got, want, "stream {stream} at {at}, {n} words");
                        // In pieces of 1, 2, 3, ... words: the spare word carries over.
                        let mut p = Prg::at_on(path, &seed, stream, at);
                        let mut pieces = Vec::with_capacity(n);
                        let mut len = 1;
                        while pieces.len() < n {
                            let k = len.min(n - pieces.len());
                            let mut w = vec![0u64; k];
                            p.fill_u64(&mut w);
                            pieces.extend(w);
                            len += 1;
                        }
                        assert_eq!(pieces, want, "pieces: stream {stream} at {at}, {n}");
                        let mut un = Vec::with_capacity(n);
                        Prg::at_on(path, &seed, stream, at)
                            .fill_uninit(&mut un.spare_capacity_mut()[..n]);
                        // SAFETY: fill_uninit wrote all n words.
                        unsafe { un.set_len(n) };
                        assert_eq!(un, want, "uninit: stream {stream} at {at}, {n}");
                    }
                }
            }
        }
    }

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

    #[test]
    fn parallel_draws_equal_one_sequential_draw() {
        // Lengths around the parallel chunk and the block, from offsets inside a chunk.
        let (s, t) = ([1u8; 16], [2u8; 16]);
        for (at, n) in [
            (0, 0),
            (3, 1),
            (0, 511),
            (5, PAR_CHUNK),
            (7, 3 * PAR_CHUNK + 513),
            (9, PAR_MIN_ZIP + 513),
        ] {
            let mut want_s = vec![0u64; n];
            Prg::at(&s, 11, at).fill_u64(&mut want_s);
            let mut want_t = vec![0u64; n];
            Prg::at(&t, 11, at).fill_u64(&mut want_t);
            assert_eq!(
                stream_words(&s, 11, at, n),
                want_s,
                "stream_words at {at}, {n}"
            );
            let zipped = zip_streams([&s, &t], 11, at, n, |i, a, b| {
                a.wrapping_sub(b).wrapping_add(i as u64)
            });
            let want: Vec<u64> = (0..n)
                .map(|i| want_s[i].wrapping_sub(want_t[i]).wrapping_add(i as u64))
                .collect();
            assert_eq!(zipped, want, "zip_streams at {at}, {n}");
            let mapped = written(n, |dst| {
                map_stream_into(&s, 11, at, dst, |i, a| a.wrapping_add(i as u64))
            });
            let want: Vec<u64> = (0..n).map(|i| want_s[i].wrapping_add(i as u64)).collect();
            assert_eq!(mapped, want, "map_stream_into at {at}, {n}");
        }
    }
}
