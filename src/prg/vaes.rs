//! AES-128-CTR keystream on VAES (AVX-512: four blocks per instruction, 32 in flight; or
//! AVX2 registers: two blocks per instruction, 16 in flight, for CPUs with VAES but no
//! AVX-512, such as Zen 3 and Alder Lake), byte for byte the keystream of `ctr::Ctr128BE<aes::Aes128>`, which stays the reference
//! and the fallback on CPUs without VAES (tests in prg::tests compare the two on every
//! offset and length class). Also the AES-128 key schedule on AES-NI, which fss::aes
//! uses too. Depends on core::arch only.
//!
//! Why not the `aes` crate alone: it has no VAES path, and through `ctr` it drew 8-10 GB/s
//! on one core of this host (64 MiB buffers), against 42 GB/s in cache and 25 GB/s to
//! memory here (scratch benchmark, 2026-12-07). Every share, mask and triple comes from
//! the keystream, so the dealer, the seed-only parties' expansion and every zero sharing
//! run at its rate.
//!
//! Counter blocks: Ctr128BE with the stream id in the upper 64 bits of the IV and 0 in
//! the lower (prg's addressing), so block i is the 16 big-endian bytes of
//! (stream << 64) + i for i < 2^64 (prg allows 2^64 blocks per stream: the lower half
//! never carries into the stream id). The keystream's bytes are stored in order, so a
//! block gives the words LE(bytes 0..8), LE(bytes 8..16), as XORing `ctr` over zeroed
//! u64 words does on this little-endian target.

use core::arch::x86_64::*;

/// Whether this CPU has what `fill` needs (AES-NI for the key schedule, AVX-512 F/BW and
/// VAES for the blocks).
pub fn available() -> bool {
    available_256()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
}

/// Whether this CPU has what `fill_256` needs (AES-NI, AVX2 and VAES).
pub fn available_256() -> bool {
    std::is_x86_feature_detected!("aes")
        && std::is_x86_feature_detected!("sse2")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("vaes")
}

/// One step of the AES-128 key schedule (FIPS-197 §5.2): w[i] = w[i-4] ⊕ (SubWord ∘
/// RotWord(w[i-1]) ⊕ Rcon) folded over the four words by the shifted XORs.
#[inline(always)]
fn next_round_key(k: __m128i, assist: __m128i) -> __m128i {
    // SAFETY (of the intrinsics): callers are `target_feature(enable = "aes,sse2")`.
    unsafe {
        let t = _mm_shuffle_epi32(assist, 0xff);
        let mut k = k;
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
        _mm_xor_si128(k, t)
    }
}

/// The AES-128 round keys 0 to 10 of `key`.
///
/// # Safety
/// The CPU must have AES-NI and SSE2.
#[target_feature(enable = "aes,sse2")]
pub unsafe fn expand_key(key: &[u8; 16]) -> [__m128i; 11] {
    let mut rk = [_mm_setzero_si128(); 11];
    rk[0] = _mm_loadu_si128(key.as_ptr().cast());
    macro_rules! step {
        ($i:expr, $rcon:expr) => {
            rk[$i] = next_round_key(rk[$i - 1], _mm_aeskeygenassist_si128(rk[$i - 1], $rcon));
        };
    }
    step!(1, 0x01);
    step!(2, 0x02);
    step!(3, 0x04);
    step!(4, 0x08);
    step!(5, 0x10);
    step!(6, 0x20);
    step!(7, 0x40);
    step!(8, 0x80);
    step!(9, 0x1b);
    step!(10, 0x36);
    rk
}

/// Blocks `block..block + blocks` of the stream `stream` under round keys `rk`, written
/// to the 2·`blocks` words at `p` (without reading them: they may be uninitialised).
///
/// # Safety
/// The CPU must have what `available` checks, and `p` must be valid for writing 2·`blocks`
/// words.
#[target_feature(enable = "aes,avx512f,avx512bw,vaes")]
pub unsafe fn fill(rk: &[__m128i; 11], stream: u64, block: u64, p: *mut u64, blocks: usize) {
    const R: usize = 8;
    let k: [__m512i; 11] = rk.map(|k| _mm512_broadcast_i32x4(k));
    // The counter is kept as a little-endian 128-bit value per lane (block index in the
    // low word, stream id in the high one) and byte-reversed into the big-endian block.
    let bswap = _mm512_broadcast_i32x4(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let s = stream as i64;
    let b = block as i64;
    let mut ctr = _mm512_set_epi64(
        s,
        b.wrapping_add(3),
        s,
        b.wrapping_add(2),
        s,
        b.wrapping_add(1),
        s,
        b,
    );
    let four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    let mut done = 0;
    while done + 4 * R <= blocks {
        let mut x = [_mm512_setzero_si512(); R];
        for x in x.iter_mut() {
            *x = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bswap), k[0]);
            ctr = _mm512_add_epi64(ctr, four);
        }
        for k in &k[1..10] {
            for x in x.iter_mut() {
                *x = _mm512_aesenc_epi128(*x, *k);
            }
        }
        for (q, x) in x.iter().enumerate() {
            _mm512_storeu_si512(
                p.add(2 * done + 8 * q).cast(),
                _mm512_aesenclast_epi128(*x, k[10]),
            );
        }
        done += 4 * R;
    }
    // The tail four blocks at a time, the last under a mask (two 64-bit lanes a block).
    while done < blocks {
        let n = (blocks - done).min(4);
        let m: __mmask8 = ((1u32 << (2 * n)) - 1) as u8;
        let mut x = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bswap), k[0]);
        ctr = _mm512_add_epi64(ctr, four);
        for k in &k[1..10] {
            x = _mm512_aesenc_epi128(x, *k);
        }
        x = _mm512_aesenclast_epi128(x, k[10]);
        _mm512_mask_storeu_epi64(p.add(2 * done).cast(), m, x);
        done += n;
    }
}

/// As `fill`, on 256-bit registers (two blocks each, 16 in flight; the tail a block at a
/// time).
///
/// # Safety
/// The CPU must have what `available_256` checks, and `p` must be valid for writing
/// 2·`blocks` words.
#[target_feature(enable = "aes,avx2,vaes")]
pub unsafe fn fill_256(rk: &[__m128i; 11], stream: u64, block: u64, p: *mut u64, blocks: usize) {
    const R: usize = 8;
    let k: [__m256i; 11] = rk.map(|k| _mm256_broadcastsi128_si256(k));
    let bswap = _mm256_broadcastsi128_si256(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let s = stream as i64;
    let b = block as i64;
    let mut ctr = _mm256_set_epi64x(s, b.wrapping_add(1), s, b);
    let two = _mm256_set_epi64x(0, 2, 0, 2);
    let mut done = 0;
    while done + 2 * R <= blocks {
        let mut x = [_mm256_setzero_si256(); R];
        for x in x.iter_mut() {
            *x = _mm256_xor_si256(_mm256_shuffle_epi8(ctr, bswap), k[0]);
            ctr = _mm256_add_epi64(ctr, two);
        }
        for k in &k[1..10] {
            for x in x.iter_mut() {
                *x = _mm256_aesenc_epi128(*x, *k);
            }
        }
        for (q, x) in x.iter().enumerate() {
            _mm256_storeu_si256(
                p.add(2 * done + 4 * q).cast(),
                _mm256_aesenclast_epi128(*x, k[10]),
            );
        }
        done += 2 * R;
    }
    // The tail: whole registers, then the last block alone through its low half.
    while done < blocks {
        let mut x = _mm256_xor_si256(_mm256_shuffle_epi8(ctr, bswap), k[0]);
        ctr = _mm256_add_epi64(ctr, two);
        for k in &k[1..10] {
            x = _mm256_aesenc_epi128(x, *k);
        }
        x = _mm256_aesenclast_epi128(x, k[10]);
        if blocks - done >= 2 {
            _mm256_storeu_si256(p.add(2 * done).cast(), x);
            done += 2;
        } else {
            _mm_storeu_si128(p.add(2 * done).cast(), _mm256_castsi256_si128(x));
            done += 1;
        }
    }
}
