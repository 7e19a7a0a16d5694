//! The DCF's fixed-key AES-128 permutation, many blocks per call: VAES on AVX-512 (four
//! blocks per instruction), AES-NI (one block per instruction, eight in flight), or the
//! `aes` crate (the portable fallback and the reference the others are tested against).
//! Depends on core::arch, aes, error and prg::vaes (the key schedule) only.
//!
//! Why not the `aes` crate alone: it has no VAES path, and its blocks come and go through
//! memory between calls; with it (8 elements per call) DCF Eval ran at 0.52 M elements/s,
//! ~15 ns per AES block, the crate's AES ~30% of the profile and the scalar lane work
//! the rest. The round keys here also feed the fused kernels (fss::gen_vaes, eval_vaes).
//! The CPU is asked once (`Path::detect`) here rather than through kernels' `Isa`
//! ladder: VAES is no rung of it, and fss sits beside prg, not above kernels.
//! `MPC_PIPE_DCF=soft|aesni|vaes` forces a path, refused if the CPU lacks it. The fixed
//! key is public (module doc of dcf), so nothing here is secret but the blocks, which
//! never leave the caller's buffer.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// How the permutation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The `aes` crate (AES-NI when it finds it, else its bitsliced software).
    Soft,
    /// AES-NI, eight blocks in flight.
    AesNi,
    /// VAES on 512-bit registers (needs avx512f and vaes), 32 blocks in flight.
    Vaes,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Soft, Path::AesNi, Path::Vaes];

    pub fn name(self) -> &'static str {
        match self {
            Path::Soft => "soft",
            Path::AesNi => "aesni",
            Path::Vaes => "vaes",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Path::Soft => true,
            #[cfg(target_arch = "x86_64")]
            Path::AesNi => {
                std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("sse2")
            }
            #[cfg(target_arch = "x86_64")]
            Path::Vaes => {
                Path::AesNi.available()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("vaes")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest available path.
    pub fn detect() -> Path {
        *Path::ALL
            .iter()
            .rev()
            .find(|p| p.available())
            .unwrap_or(&Path::Soft)
    }

    /// The path for a `MPC_PIPE_DCF` value (None or empty: the fastest available),
    /// refused if unknown or if the CPU lacks it.
    fn choose(env: Option<&str>) -> std::result::Result<Path, String> {
        match env.map(str::trim) {
            None | Some("") => Ok(Path::detect()),
            Some(v) => {
                let p = Path::ALL
                    .into_iter()
                    .find(|p| p.name() == v)
                    .ok_or_else(|| format!("MPC_PIPE_DCF={v:?} is not one of soft, aesni, vaes"))?;
                if !p.available() {
                    return Err(format!(
                        "MPC_PIPE_DCF={v} is not supported by this CPU (best available: {})",
                        Path::detect().name()
                    ));
                }
                Ok(p)
            }
        }
    }

    /// The path of this process, decided once: `MPC_PIPE_DCF` or the fastest available.
    pub fn selected() -> Result<Path> {
        static CHOICE: OnceLock<std::result::Result<Path, String>> = OnceLock::new();
        CHOICE
            .get_or_init(|| Path::choose(std::env::var("MPC_PIPE_DCF").ok().as_deref()))
            .clone()
            .map_err(Error::Config)
    }
}

/// AES-128 under one fixed key, applied in place to blocks held as u128 words (a block's
/// bytes are the word's native, little-endian bytes, as the `aes` crate reads them).
pub struct FixedAes {
    path: Path,
    soft: Aes128,
    /// The expanded key (AES-NI and VAES paths), round 0 to 10.
    #[cfg(target_arch = "x86_64")]
    rk: [core::arch::x86_64::__m128i; 11],
}

impl FixedAes {
    /// The permutation under `key` on `path`, which must be available (`Path::available`).
    pub fn new(key: &[u8; 16], path: Path) -> FixedAes {
        assert!(path.available(), "AES path {} not available", path.name());
        FixedAes {
            path,
            soft: Aes128::new(key.into()),
            #[cfg(target_arch = "x86_64")]
            rk: if path == Path::Soft {
                // SAFETY: all-zero bytes are a valid __m128i; the soft path never reads them.
                unsafe { core::mem::zeroed() }
            } else {
                // SAFETY: the path is available, so the CPU has AES-NI and SSE2.
                unsafe { crate::prg::vaes::expand_key(key) }
            },
        }
    }

    pub fn path(&self) -> Path {
        self.path
    }

    /// z ← AES_k(z), in place.
    #[inline]
    pub fn permute(&self, z: &mut [u128]) {
        match self.path {
            Path::Soft => self.soft.encrypt_blocks(as_blocks_mut(z)),
            // SAFETY: `new` checked the CPU has the path's features.
            #[cfg(target_arch = "x86_64")]
            Path::AesNi => unsafe { x86::permute_aesni(&self.rk, z) },
            #[cfg(target_arch = "x86_64")]
            Path::Vaes => unsafe { x86::permute_vaes(&self.rk, z) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("non-x86 targets only have the soft path"),
        }
    }

    /// The expanded key, for fused kernels (x86 paths only).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn round_keys(&self) -> &[core::arch::x86_64::__m128i; 11] {
        &self.rk
    }
}

/// u128 words as AES blocks, without copying: the blocks are the words' bytes in native
/// order (little-endian on x86 and aarch64), so both parties must share a byte order.
fn as_blocks_mut(z: &mut [u128]) -> &mut [Block] {
    // SAFETY: `Block` is `GenericArray<u8, U16>`, a `repr(transparent)` [u8; 16]: same size
    // as u128, alignment 1 (u128's is larger), and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts_mut(z.as_mut_ptr() as *mut Block, z.len()) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// Eight independent blocks per pass hide aesenc's latency (4 cycles on recent cores,
    /// one or two issued per cycle).
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn permute_aesni(rk: &[__m128i; 11], z: &mut [u128]) {
        const P: usize = 8;
        let mut chunks = z.chunks_exact_mut(P);
        for c in &mut chunks {
            let p = c.as_mut_ptr() as *mut __m128i;
            let mut s = [_mm_setzero_si128(); P];
            for (q, s) in s.iter_mut().enumerate() {
                *s = _mm_xor_si128(_mm_loadu_si128(p.add(q)), rk[0]);
            }
            for k in &rk[1..10] {
                for s in s.iter_mut() {
                    *s = _mm_aesenc_si128(*s, *k);
                }
            }
            for (q, s) in s.iter().enumerate() {
                _mm_storeu_si128(p.add(q), _mm_aesenclast_si128(*s, rk[10]));
            }
        }
        for b in chunks.into_remainder() {
            let p = b as *mut u128 as *mut __m128i;
            let mut s = _mm_xor_si128(_mm_loadu_si128(p), rk[0]);
            for k in &rk[1..10] {
                s = _mm_aesenc_si128(s, *k);
            }
            _mm_storeu_si128(p, _mm_aesenclast_si128(s, rk[10]));
        }
    }

    /// The round keys broadcast to all four 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn broadcast_keys(rk: &[__m128i; 11]) -> [__m512i; 11] {
        rk.map(|k| _mm512_broadcast_i32x4(k))
    }

    /// AES-128 of the four blocks of one register.
    #[inline]
    #[target_feature(enable = "avx512f,vaes")]
    pub(crate) fn aes4(k: &[__m512i; 11], s: __m512i) -> __m512i {
        let mut s = _mm512_xor_si512(s, k[0]);
        for k in &k[1..10] {
            s = _mm512_aesenc_epi128(s, *k);
        }
        _mm512_aesenclast_epi128(s, k[10])
    }

    /// 32 blocks (eight registers) per pass; the tail four at a time under a mask.
    #[target_feature(enable = "avx512f,vaes")]
    pub(super) unsafe fn permute_vaes(rk: &[__m128i; 11], z: &mut [u128]) {
        const R: usize = 8;
        let k = broadcast_keys(rk);
        let mut chunks = z.chunks_exact_mut(4 * R);
        for c in &mut chunks {
            let p = c.as_mut_ptr() as *mut __m512i;
            let mut s = [_mm512_setzero_si512(); R];
            for (q, s) in s.iter_mut().enumerate() {
                *s = _mm512_xor_si512(_mm512_loadu_si512(p.add(q)), k[0]);
            }
            for k in &k[1..10] {
                for s in s.iter_mut() {
                    *s = _mm512_aesenc_epi128(*s, *k);
                }
            }
            for (q, s) in s.iter().enumerate() {
                _mm512_storeu_si512(p.add(q), _mm512_aesenclast_epi128(*s, k[10]));
            }
        }
        for c in chunks.into_remainder().chunks_mut(4) {
            // Two 64-bit mask bits per block.
            let m: __mmask8 = ((1u32 << (2 * c.len())) - 1) as u8;
            let p = c.as_mut_ptr() as *mut i64;
            let s = aes4(&k, _mm512_maskz_loadu_epi64(m, p));
            _mm512_mask_storeu_epi64(p, m, s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{aes4, broadcast_keys};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;

    /// Every available path equals the `aes` crate on random blocks, all-zero and all-one
    /// blocks, for every length 0..=70 (full passes and every tail), and under two keys
    /// (the DCF's and a random one), so the key schedule is checked too.
    #[test]
    fn every_path_matches_the_aes_crate_on_random_and_edge_blocks() {
        let mut rng = Prg::new(&[7; 16], 3);
        let mut rand_key = [0u8; 16];
        for b in rand_key.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        for key in [*b"mpc-pipe dcf prg", rand_key, [0; 16], [0xff; 16]] {
            let reference = Aes128::new(&key.into());
            for path in Path::ALL {
                if !path.available() {
                    eprintln!("skipping: CPU lacks the {} path", path.name());
                    continue;
                }
                let aes = FixedAes::new(&key, path);
                for len in 0..=70usize {
                    let mut z: Vec<u128> = (0..len)
                        .map(|i| match i % 5 {
                            0 => 0,
                            1 => u128::MAX,
                            _ => rng.next_u64() as u128 | (rng.next_u64() as u128) << 64,
                        })
                        .collect();
                    let mut want = z.clone();
                    for w in want.iter_mut() {
                        let mut b = Block::from(w.to_le_bytes());
                        reference.encrypt_block(&mut b);
                        *w = u128::from_le_bytes(b.into());
                    }
                    // A sentinel past the end catches a masked tail writing too far.
                    z.push(0x5a5a);
                    aes.permute(&mut z[..len]);
                    assert_eq!(z[len], 0x5a5a, "{} wrote past {len} blocks", path.name());
                    assert_eq!(&z[..len], &want[..], "{} on {len} blocks", path.name());
                }
            }
        }
    }

    #[test]
    fn an_unknown_or_unsupported_forced_path_is_refused() {
        assert!(Path::choose(Some("fast"))
            .unwrap_err()
            .contains("MPC_PIPE_DCF"));
        assert_eq!(Path::choose(Some("soft")), Ok(Path::Soft));
        assert_eq!(Path::choose(None), Ok(Path::detect()));
        for p in Path::ALL {
            assert_eq!(Path::choose(Some(p.name())).is_ok(), p.available());
        }
    }
}
