//! Eval^< of dcf (the same computation as `dcf::eval_range_batch`, Fig. 1 of Boyle et al.)
//! fused with the fixed-key AES on AVX-512 + VAES: one element per 128-bit lane, four per
//! register, `GROUPS` registers per pass, the whole level loop in registers. Depends on
//! core::arch and fss::aes only; dcf checks every slice length before calling in.
//!
//! Why fused: with the AES at VAES speed, the scalar per-element work between AES passes
//! (bit extraction, masked corrections, u128 shuffling through memory) cost more than
//! the AES itself; here each step is one vector instruction for four elements, and the
//! element's t bit lives in a mask register. Still branch-free on t and x.

#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;

use super::aes::{aes4, broadcast_keys};

/// Registers of four elements per pass. Measured (kernels --fss, 3 alternating pairs
/// each, load 7-9): 4 beat 8 (eval 3.3-4.1 against 2.5-2.8 M elements/s; 8 spills its
/// state to the stack) and 2 (5.8-6.7 against 5.7-6.2).
pub const GROUPS: usize = 4;
/// Elements per pass.
pub const PASS: usize = 4 * GROUPS;
/// Levels ahead whose key words are prefetched (16 bytes of scw per level).
const PREFETCH: usize = 8;

/// [v0, v1, v2, v3] (four u64) as lanes [v_k, 0].
#[inline(always)]
fn spread(p: *const u64) -> __m512i {
    // SAFETY (of the loads here and below): the caller holds a slice with these words.
    unsafe {
        let v = _mm512_castsi256_si512(_mm256_loadu_si256(p.cast()));
        _mm512_maskz_permutexvar_epi64(0x55, _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0), v)
    }
}

/// Four 128-bit words at `p + off[0]`, ..., `p + off[3]` (u64 units) as the four lanes;
/// `half` loads only the low word of each (the high word 0).
#[inline(always)]
unsafe fn load4(p: *const u64, off: [usize; 4], half: bool) -> __m512i {
    let ld = |k: usize| {
        let q = p.add(off[k]) as *const __m128i;
        if half {
            _mm_loadl_epi64(q)
        } else {
            _mm_loadu_si128(q)
        }
    };
    let lo = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(ld(0)), ld(1));
    let hi = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(ld(2)), ld(3));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// A mask of lanes (both 64-bit halves) from bits set in lanes' low words.
#[inline(always)]
fn lanes(low: __mmask8) -> __mmask8 {
    low | (low << 1)
}

/// A key's components: seed, scw, vcw, tcw, last.
pub type KeyWords<'a> = (&'a [u64], &'a [u64], &'a [u64], &'a [u64], &'a [u64]);

/// Words of a walk's state at a level, per point: s (two words), t, v (two words).
pub const STATE_WORDS: usize = 5;

/// Eval^< by `party` at PASS points over levels `from..to`. Point e uses key k = `key[e]`,
/// whose words are `seed[2k..2k+2]`, `scw[k·2n..(k+1)·2n]`, `vcw[k·n·W..(k+1)·n·W]`,
/// `tcw[k·tw..(k+1)·tw]`, `last[k·W..]`; its input is `x[e]`. `key` is 0..PASS for one key
/// per point (`dcf::eval`), or repeats a key for several points (`dcf::eval_many`, the
/// multiple-interval gate's m + 1 points per key). From 0 the walk starts at the root (the
/// key's seed), otherwise at the states in `state` (point e's at `state[e·STATE_WORDS..]`:
/// s low, s high, t, v0, v1); below `to < n` it stores the states reached there and writes
/// no output, at `to = n` it converts and writes `out[e·W..(e+1)·W]`. A key's points that
/// share a prefix walk it once (dcf::eval_many_shared).
///
/// # Safety
/// The CPU has avx512f and vaes; `rk` is the expanded PRG key; 1 ≤ n ≤ 64, W ∈ {1, 2},
/// tw = ⌈2n/64⌉; every key index is below the number of keys every key slice holds
/// (words as above); `x` holds PASS points; from ≤ to ≤ n; `out` holds PASS·W words if
/// to = n; `state` holds PASS·STATE_WORDS words unless from = 0 and to = n.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,vaes")]
pub unsafe fn eval_range<const W: usize>(
    party: usize,
    rk: &[__m128i; 11],
    n: usize,
    (seed, scw, vcw, tcw, last): KeyWords<'_>,
    key: &[usize; PASS],
    x: &[u64],
    from: usize,
    to: usize,
    state: &mut [u64],
    out: &mut [u64],
) {
    let tw = (2 * n).div_ceil(64);
    let keys = last.len() / W;
    debug_assert!(
        seed.len() == 2 * keys
            && scw.len() == 2 * n * keys
            && vcw.len() == n * W * keys
            && tcw.len() == tw * keys
            && key.iter().all(|&k| k < keys)
            && x.len() == PASS
            && from <= to
            && to <= n
            && (to < n || out.len() == W * PASS)
            && ((from == 0 && to == n) || state.len() == STATE_WORDS * PASS)
    );
    // Word offsets of lane l of group g's key in a component of `per` words per key.
    let at =
        |g: usize, per: usize| -> [usize; 4] { core::array::from_fn(|l| key[4 * g + l] * per) };
    let k = broadcast_keys(rk);
    let one_lo = _mm512_set_epi64(0, 1, 0, 1, 0, 1, 0, 1);
    let two_lo = _mm512_set_epi64(0, 2, 0, 2, 0, 2, 0, 2);
    let four_lo = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    // x·(−1)^party as (x ^ sign) − sign, per 64-bit word.
    let sign = _mm512_set1_epi64(-(party as i64));
    let mut s = [_mm512_setzero_si512(); GROUPS];
    let mut v = [_mm512_setzero_si512(); GROUPS];
    // x shifted so that level i's bit (bit n−1−i) is at the top: level i shifts once more.
    let mut xs = [_mm512_setzero_si512(); GROUPS];
    // tcw's words broadcast to both halves of the lane: [t0, t0] and [t1, t1].
    let mut t_lo = [_mm512_setzero_si512(); GROUPS];
    let mut t_hi = [_mm512_setzero_si512(); GROUPS];
    let mut t: [__mmask8; GROUPS] = [if party == 1 { 0xff } else { 0 }; GROUPS];
    let st: [usize; 4] = core::array::from_fn(|l| l * STATE_WORDS);
    for g in 0..GROUPS {
        let e = 4 * g;
        if from == 0 {
            s[g] = _mm512_andnot_si512(one_lo, load4(seed.as_ptr(), at(g, 2), false));
        } else {
            let p = state.as_ptr().add(e * STATE_WORDS);
            s[g] = load4(p, st, false);
            let tw = load4(p.add(2), st, true);
            t[g] = lanes(_mm512_test_epi64_mask(tw, tw));
            v[g] = load4(p.add(3), st, W == 1);
        }
        // Level `from`'s bit at the top (a count of 64 or more gives 0: no levels left).
        xs[g] = _mm512_sll_epi64(
            spread(x.as_ptr().add(e)),
            _mm_cvtsi64_si128((64 - n + from) as i64),
        );
        // tw = 1: [t0, 0] per lane, as `spread` gives; tw = 2: [t0, t1].
        let tv = load4(tcw.as_ptr(), at(g, tw), tw == 1);
        t_lo[g] = _mm512_shuffle_epi32::<0x44>(tv);
        t_hi[g] = _mm512_shuffle_epi32::<0xee>(tv);
    }
    for i in from..to {
        let mut z = [_mm512_setzero_si512(); 2 * GROUPS];
        let mut side = [_mm512_setzero_si512(); GROUPS];
        for g in 0..GROUPS {
            // Only the lanes' low words hold x, so the high words of `side` stay 0.
            side[g] = _mm512_srli_epi64::<63>(xs[g]);
            xs[g] = _mm512_slli_epi64::<1>(xs[g]);
            z[2 * g] = _mm512_xor_si512(s[g], side[g]);
            // The value block: s ⊕ 2 (W = 1, shared by the sides) or s ⊕ (2 + side).
            let vb = if W == 1 {
                two_lo
            } else {
                _mm512_xor_si512(two_lo, side[g])
            };
            z[2 * g + 1] = _mm512_xor_si512(s[g], vb);
        }
        let mut a = [_mm512_setzero_si512(); 2 * GROUPS];
        for (a, z) in a.iter_mut().zip(&z) {
            *a = _mm512_xor_si512(*z, k[0]);
        }
        for k in &k[1..10] {
            for a in a.iter_mut() {
                *a = _mm512_aesenc_epi128(*a, *k);
            }
        }
        for a in a.iter_mut() {
            *a = _mm512_aesenclast_epi128(*a, k[10]);
        }
        // The keys stream from memory (2 KB per element at n = 63, w = 2), one row per
        // element, 2·GROUPS·4 rows at once: more than the hardware prefetcher tracks, so
        // each row's line PREFETCH levels ahead is asked for when a new line starts.
        if i % 4 == 0 && i + PREFETCH < to {
            for &k in key {
                let at = k * 2 * n + 2 * (i + PREFETCH);
                _mm_prefetch::<_MM_HINT_T0>(scw.as_ptr().add(at).cast());
                let at = (k * n + i + PREFETCH) * W;
                _mm_prefetch::<_MM_HINT_T0>(vcw.as_ptr().add(at).cast());
            }
        }
        // Bits 2i (L) and 2i + 1 (R) of the element's tcw words.
        let t_shift = _mm512_set1_epi64(((2 * i) % 64) as i64);
        for g in 0..GROUPS {
            // MMO: H(z) = AES_k(z) ⊕ z.
            let h = _mm512_xor_si512(a[2 * g], z[2 * g]);
            let mut hv = _mm512_xor_si512(a[2 * g + 1], z[2 * g + 1]);
            let s_cw = load4(scw.as_ptr().add(2 * i), at(g, 2 * n), false);
            let v_cw = load4(vcw.as_ptr().add(i * W), at(g, n * W), W == 1);
            if W == 1 {
                // This side's half of the shared value block, moved to the low word.
                let right = _mm512_test_epi64_mask(side[g], side[g]);
                hv = _mm512_mask_mov_epi64(hv, right, _mm512_shuffle_epi32::<0x4e>(hv));
            }
            let add = _mm512_add_epi64(hv, _mm512_maskz_mov_epi64(t[g], v_cw));
            v[g] = _mm512_sub_epi64(_mm512_add_epi64(v[g], _mm512_xor_si512(add, sign)), sign);
            let t_word = if i < 32 { t_lo[g] } else { t_hi[g] };
            let t_cw = _mm512_and_si512(
                _mm512_srlv_epi64(t_word, _mm512_add_epi64(t_shift, side[g])),
                one_lo,
            );
            let t_next = _mm512_xor_si512(
                _mm512_and_si512(h, one_lo),
                _mm512_maskz_mov_epi64(t[g], t_cw),
            );
            s[g] = _mm512_xor_si512(
                _mm512_andnot_si512(one_lo, h),
                _mm512_maskz_mov_epi64(t[g], s_cw),
            );
            t[g] = lanes(_mm512_test_epi64_mask(t_next, t_next));
        }
    }
    if to < n {
        // Store the states reached: lane l of group g is point 4g + l.
        for g in 0..GROUPS {
            let (mut sw, mut vw) = ([0u64; 8], [0u64; 8]);
            _mm512_storeu_si512(sw.as_mut_ptr().cast(), s[g]);
            _mm512_storeu_si512(vw.as_mut_ptr().cast(), v[g]);
            for l in 0..4 {
                let o = &mut state[(4 * g + l) * STATE_WORDS..(4 * g + l + 1) * STATE_WORDS];
                o[0] = sw[2 * l];
                o[1] = sw[2 * l + 1];
                o[2] = u64::from((t[g] >> (2 * l)) & 1);
                o[3] = vw[2 * l];
                o[4] = if W == 2 { vw[2 * l + 1] } else { 0 };
            }
        }
        return;
    }
    // Convert(s^(n)) = H(s ⊕ 4), plus the final correction under t.
    let mut z = [_mm512_setzero_si512(); GROUPS];
    for g in 0..GROUPS {
        z[g] = _mm512_xor_si512(s[g], four_lo);
    }
    for g in 0..GROUPS {
        let e = 4 * g;
        let h = _mm512_xor_si512(aes4(&k, z[g]), z[g]);
        let cw = load4(last.as_ptr(), at(g, W), W == 1);
        let fin = _mm512_add_epi64(h, _mm512_maskz_mov_epi64(t[g], cw));
        let y = _mm512_add_epi64(v[g], _mm512_sub_epi64(_mm512_xor_si512(fin, sign), sign));
        if W == 2 {
            _mm512_storeu_si512(out.as_mut_ptr().add(2 * e).cast(), y);
        } else {
            // The lanes' low words, packed.
            let packed = _mm512_permutexvar_epi64(_mm512_set_epi64(6, 4, 2, 0, 6, 4, 2, 0), y);
            _mm256_storeu_si256(
                out.as_mut_ptr().add(e).cast(),
                _mm512_castsi512_si256(packed),
            );
        }
    }
}
