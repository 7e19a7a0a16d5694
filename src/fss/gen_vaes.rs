//! Gen^< of dcf (the same computation as `dcf::gen_batch`, Fig. 1 of Boyle et al.) fused
//! with the fixed-key AES on AVX-512 + VAES: one element per 128-bit lane, four per
//! register, `GROUPS` registers per pass. Depends on core::arch and fss::aes only; dcf
//! checks every slice length before calling in.
//!
//! Keep and Lose (the side α takes and the other) are per-lane blends under a mask of
//! α's bit, the parties' t bits live in mask registers, and step 12 uses
//! (−1)^t·(−1)^t·d = d, so no branch depends on α, t or the seeds.

#![cfg(target_arch = "x86_64")]

use core::arch::x86_64::*;

use super::aes::{aes4, broadcast_keys};

/// Registers of four elements per pass: 2·(2 + W) AES registers each per level.
pub const GROUPS: usize = 2;
/// Elements per pass.
pub const PASS: usize = 4 * GROUPS;

/// [v0, v1, v2, v3] (four u64) as lanes [v_k, 0].
#[inline(always)]
unsafe fn spread(p: *const u64) -> __m512i {
    let v = _mm512_castsi256_si512(_mm256_loadu_si256(p.cast()));
    _mm512_maskz_permutexvar_epi64(0x55, _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0), v)
}

/// The lanes' low words, packed into four u64 at `p`.
#[inline(always)]
unsafe fn pack_low(p: *mut u64, v: __m512i) {
    let packed = _mm512_permutexvar_epi64(_mm512_set_epi64(6, 4, 2, 0, 6, 4, 2, 0), v);
    _mm256_storeu_si256(p.cast(), _mm512_castsi512_si256(packed));
}

/// The four lanes to `p`, `p + stride`, `p + 2·stride`, `p + 3·stride` (u64 units);
/// `half` stores only each lane's low word.
#[inline(always)]
unsafe fn store4(p: *mut u64, stride: usize, half: bool, v: __m512i) {
    let lane = [
        _mm512_castsi512_si128(v),
        _mm512_extracti32x4_epi32::<1>(v),
        _mm512_extracti32x4_epi32::<2>(v),
        _mm512_extracti32x4_epi32::<3>(v),
    ];
    for (k, l) in lane.into_iter().enumerate() {
        let q = p.add(k * stride) as *mut __m128i;
        if half {
            _mm_storel_epi64(q, l);
        } else {
            _mm_storeu_si128(q, l);
        }
    }
}

/// A mask of lanes (both 64-bit halves) whose low word is nonzero.
#[inline(always)]
unsafe fn lanes(v: __m512i) -> __mmask8 {
    let low = _mm512_test_epi64_mask(v, _mm512_set_epi64(0, -1, 0, -1, 0, -1, 0, -1));
    low | (low << 1)
}

/// Gen^< of PASS elements: element k's threshold `alpha[k]`, payload `beta[k·W..]`,
/// root seeds `seeds[b][2k..2k+2]`; its corrections to `scw[k·2n..]`, `vcw[k·n·W..]`,
/// `tcw[k·tw..]`, `last[k·W..]` (every word written).
///
/// # Safety
/// The CPU has avx512f and vaes; `rk` is the expanded PRG key; 1 ≤ n ≤ 64, W ∈ {1, 2},
/// tw = ⌈2n/64⌉; every slice holds exactly PASS elements' words as above.
// Index loops over the AES rounds: LLVM left an iterator chain there rolled, with the
// blocks in memory (gen at half the speed).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,vaes")]
pub unsafe fn gen_pass<const W: usize>(
    rk: &[__m128i; 11],
    n: usize,
    alpha: &[u64],
    beta: &[u64],
    seeds: [&[u64]; 2],
    scw: &mut [u64],
    vcw: &mut [u64],
    tcw: &mut [u64],
    last: &mut [u64],
) {
    let tw = (2 * n).div_ceil(64);
    debug_assert!(
        alpha.len() == PASS
            && beta.len() == W * PASS
            && seeds.iter().all(|s| s.len() == 2 * PASS)
            && scw.len() == 2 * n * PASS
            && vcw.len() == n * W * PASS
            && tcw.len() == tw * PASS
            && last.len() == W * PASS
    );
    let k = broadcast_keys(rk);
    let lo = |c: i64| _mm512_set_epi64(0, c, 0, c, 0, c, 0, c);
    let one_lo = lo(1);
    // Blocks per party per level: s ⊕ 0, s ⊕ 1 and the value blocks (dcf's module doc).
    let nc = 2 + W;
    let c_lo = [lo(0), lo(1), lo(2), lo(3)];
    let mut s = [[_mm512_setzero_si512(); GROUPS]; 2];
    // t_b^(0) = b.
    let mut t: [[__mmask8; GROUPS]; 2] = [[0; GROUPS], [0xff; GROUPS]];
    let mut v_alpha = [_mm512_setzero_si512(); GROUPS];
    let mut b_vec = [_mm512_setzero_si512(); GROUPS];
    // α shifted so that level i's bit (bit n−1−i) is at the top: level i shifts once more.
    let mut a_s = [_mm512_setzero_si512(); GROUPS];
    // The tcw words being filled: [word 0, word 1] per lane.
    let mut t_acc = [_mm512_setzero_si512(); GROUPS];
    for g in 0..GROUPS {
        let e = 4 * g;
        for b in 0..2 {
            s[b][g] = _mm512_andnot_si512(
                one_lo,
                _mm512_loadu_si512(seeds[b].as_ptr().add(2 * e).cast()),
            );
        }
        a_s[g] = _mm512_sll_epi64(
            spread(alpha.as_ptr().add(e)),
            _mm_cvtsi64_si128(64 - n as i64),
        );
        b_vec[g] = if W == 2 {
            _mm512_loadu_si512(beta.as_ptr().add(2 * e).cast())
        } else {
            spread(beta.as_ptr().add(e))
        };
    }
    for i in 0..n {
        // z[b][g][c]: party b's block c of group g.
        let mut z = [[[_mm512_setzero_si512(); 4]; GROUPS]; 2];
        let mut h = z;
        for b in 0..2 {
            for g in 0..GROUPS {
                for c in 0..nc {
                    z[b][g][c] = _mm512_xor_si512(s[b][g], c_lo[c]);
                    h[b][g][c] = _mm512_xor_si512(z[b][g][c], k[0]);
                }
            }
        }
        // Index loops with constant bounds, so that LLVM unrolls them and keeps the
        // 2·GROUPS·(2 + W) blocks in registers.
        for r in 1..10 {
            for b in 0..2 {
                for g in 0..GROUPS {
                    for c in 0..nc {
                        h[b][g][c] = _mm512_aesenc_epi128(h[b][g][c], k[r]);
                    }
                }
            }
        }
        let shift = _mm_cvtsi64_si128(((2 * i) % 64) as i64);
        for g in 0..GROUPS {
            let e = 4 * g;
            let a_bit = _mm512_srli_epi64::<63>(a_s[g]);
            a_s[g] = _mm512_slli_epi64::<1>(a_s[g]);
            // Lanes where α_i = 1: Keep = R, Lose = L.
            let right = lanes(a_bit);
            // Step 5, per party: (s^L, t^L), (s^R, t^R), v^L, v^R, as Keep and Lose.
            let mut s_keep = [_mm512_setzero_si512(); 2];
            let mut s_lose = s_keep;
            let mut t_keep = s_keep;
            let mut t_side = [[_mm512_setzero_si512(); 2]; 2];
            let mut v_keep = s_keep;
            let mut v_lose = s_keep;
            for b in 0..2 {
                let hh = |c: usize| {
                    _mm512_xor_si512(_mm512_aesenclast_epi128(h[b][g][c], k[10]), z[b][g][c])
                };
                let (hl, hr) = (hh(0), hh(1));
                let (vl, vr) = if W == 1 {
                    let v = hh(2);
                    // v^R is the block's high half: moved to the low word.
                    (v, _mm512_shuffle_epi32::<0x4e>(v))
                } else {
                    (hh(2), hh(3))
                };
                let (sl, sr) = (
                    _mm512_andnot_si512(one_lo, hl),
                    _mm512_andnot_si512(one_lo, hr),
                );
                let (tl, tr) = (_mm512_and_si512(hl, one_lo), _mm512_and_si512(hr, one_lo));
                s_keep[b] = _mm512_mask_blend_epi64(right, sl, sr);
                s_lose[b] = _mm512_mask_blend_epi64(right, sr, sl);
                t_keep[b] = _mm512_mask_blend_epi64(right, tl, tr);
                t_side[b] = [tl, tr];
                v_keep[b] = _mm512_mask_blend_epi64(right, vl, vr);
                v_lose[b] = _mm512_mask_blend_epi64(right, vr, vl);
            }
            // Step 8.
            let s_cw = _mm512_xor_si512(s_lose[0], s_lose[1]);
            // Steps 9-11: d = v_1^Lose − v_0^Lose − V_α (+ β when Lose = L, i.e. α_i = 1),
            // V_CW = (−1)^t1 · d.
            let d = _mm512_add_epi64(
                _mm512_sub_epi64(_mm512_sub_epi64(v_lose[1], v_lose[0]), v_alpha[g]),
                _mm512_maskz_mov_epi64(right, b_vec[g]),
            );
            let v_cw = _mm512_mask_sub_epi64(d, t[1][g], _mm512_setzero_si512(), d);
            // Step 12: V_α − v_1^Keep + v_0^Keep + (−1)^t1 · V_CW, the last term being d.
            v_alpha[g] = _mm512_add_epi64(
                _mm512_add_epi64(_mm512_sub_epi64(v_alpha[g], v_keep[1]), v_keep[0]),
                d,
            );
            // Step 13: t_CW^L = t_0^L ⊕ t_1^L ⊕ α_i ⊕ 1, t_CW^R = t_0^R ⊕ t_1^R ⊕ α_i.
            let tc_l = _mm512_xor_si512(
                _mm512_xor_si512(t_side[0][0], t_side[1][0]),
                _mm512_xor_si512(a_bit, one_lo),
            );
            let tc_r = _mm512_xor_si512(_mm512_xor_si512(t_side[0][1], t_side[1][1]), a_bit);
            let tc_keep = _mm512_mask_blend_epi64(right, tc_l, tc_r);
            // Step 14: bits 2i, 2i + 1 of the tcw words (word 1 from level 32 on).
            let bits = _mm512_sll_epi64(_mm512_or_si512(tc_l, _mm512_slli_epi64::<1>(tc_r)), shift);
            t_acc[g] = _mm512_xor_si512(
                t_acc[g],
                if i < 32 {
                    bits
                } else {
                    _mm512_bslli_epi128::<8>(bits)
                },
            );
            store4(scw.as_mut_ptr().add(e * 2 * n + 2 * i), 2 * n, false, s_cw);
            store4(vcw.as_mut_ptr().add((e * n + i) * W), n * W, W == 1, v_cw);
            // Steps 15-16.
            for b in 0..2 {
                s[b][g] = _mm512_xor_si512(s_keep[b], _mm512_maskz_mov_epi64(t[b][g], s_cw));
                let t_next = _mm512_xor_si512(t_keep[b], _mm512_maskz_mov_epi64(t[b][g], tc_keep));
                t[b][g] = lanes(t_next);
            }
        }
    }
    // Step 18: CW^(n+1) = (−1)^t1 · (Convert(s_1) − Convert(s_0) − V_α), Convert(s) =
    // H(s ⊕ 4).
    for g in 0..GROUPS {
        let e = 4 * g;
        let conv = |b: usize| {
            let z = _mm512_xor_si512(s[b][g], lo(4));
            _mm512_xor_si512(aes4(&k, z), z)
        };
        let d = _mm512_sub_epi64(_mm512_sub_epi64(conv(1), conv(0)), v_alpha[g]);
        let cw = _mm512_mask_sub_epi64(d, t[1][g], _mm512_setzero_si512(), d);
        if W == 2 {
            _mm512_storeu_si512(last.as_mut_ptr().add(2 * e).cast(), cw);
        } else {
            pack_low(last.as_mut_ptr().add(e), cw);
        }
        if tw == 2 {
            _mm512_storeu_si512(tcw.as_mut_ptr().add(2 * e).cast(), t_acc[g]);
        } else {
            pack_low(tcw.as_mut_ptr().add(e), t_acc[g]);
        }
    }
}
