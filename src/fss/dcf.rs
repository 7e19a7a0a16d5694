//! Distributed comparison function (DCF) for f_{α,β}(x) = β if x < α, else 0, with
//! x, α in an n-bit domain (1 ≤ n ≤ 64) and β in (Z_2^64)^w, w = 1 or 2 words (the
//! `width`: ReLU's gate carries two payloads in one key): Boyle, Chandran, Gilboa, Gupta,
//! Ishai, Kumar, Rathee, "Function Secret Sharing for Mixed-Mode and Fixed-Point Secure
//! Computation", EUROCRYPT 2021, Fig. 1 (Gen^<, Eval^<), for many keys at once.
//!
//! Each element's pair of keys shares its correction words (per level: a 128-bit seed
//! correction s_CW, a value correction V_CW of w words and two bits t_CW^L, t_CW^R; a
//! final correction CW^(n+1) of w words); only the 128-bit root seeds differ, and each party's root seed
//! is drawn from its own PRG stream, so the dealer hands out the correction words only
//! (`Layout`). Eval(0, x) + Eval(1, x) = f_{α,β}(x) in Z_2^64.
//!
//! PRG G: {0,1}^127 → (s^L, t^L, s^R, t^R, v^L, v^R): fixed-key AES-128 in the
//! Matyas-Meyer-Oseas mode, H(z) = AES_k(z) ⊕ z, on the blocks s ⊕ 0 (left: t is bit 0,
//! the seed the rest), s ⊕ 1 (right) and, for the values, s ⊕ 2 (w = 1: v^L its low
//! half, v^R its high half) or s ⊕ 2 and s ⊕ 3 (w = 2: v^L and v^R a block each); seeds
//! have bit 0 cleared, so the inputs differ. Convert(s) into (Z_2^64)^w is H(s ⊕ 4), a
//! uniform block (the seed's own low word has bit 0 cleared). One fixed key (not one per
//! output) lets one AES pass cover every element of a batch whichever side its input
//! bit takes, so the AES units pipeline the blocks.
//!
//! Cost per element: Gen 2·(2 + w)·n + 2 AES blocks (both keys), Eval 2n + 1 (the chosen
//! side, its value block, and the final conversion). Both run over the rayon pool in
//! tasks of `TASK` elements. The AES runs on the path fss::aes picks once (VAES, AES-NI
//! or the `aes` crate; `MPC_PIPE_DCF` forces one). On the VAES path whole passes go to
//! kernels fused with the AES (fss::gen_vaes, fss::eval_vaes: four elements per 512-bit
//! register, t in mask registers); the rest, and the other paths, to the scalar
//! `gen_batch`/`eval_range_batch` in batches of `BATCH`, which stay the reference the fused
//! kernels are tested against bit for bit. `eval_many` evaluates each key at several
//! points (proto::spline's gate: m + 1 per key); both kernels take each point's key by
//! index, so a pass mixes points of one key or of several. `eval_many_shared` does the
//! same for points clustered in a window of 2^k: each key walks the one or two prefixes
//! its window covers once and each point only its last k levels, from the prefix's state
//! (the fused kernel's `eval_range` and the scalar `eval_range_batch` take states in and
//! out); `shared_window_bits` picks the k that minimises the levels walked.
//!
//! Measured (`mpc-pipe kernels --fss`, 2^18 ReLU keys, n = 63, w = 2, best of 5 per
//! call, median of 3 alternating calls; AMD EPYC with VAES, 2 vCPUs, load average 6;
//! 2026-12-07, commit b47b885 against 9da88fe): Gen 0.26 → 1.68 M elements/s on one
//! thread (6.4×), Eval 0.52 → 4.48 M (8.6×, ~1.7 ns per AES block of 2n + 1, with the
//! lane work). Eval reads 2 KB of key per element from memory, hence the prefetch.

use rayon::prelude::*;

use super::aes::{FixedAes, Path};
#[cfg(target_arch = "x86_64")]
use super::eval_vaes::STATE_WORDS;
#[cfg(not(target_arch = "x86_64"))]
const STATE_WORDS: usize = 5;
use crate::error::{Error, Result};

/// The PRG's fixed, public AES key.
const PRG_KEY: [u8; 16] = *b"mpc-pipe dcf prg";
/// Elements whose blocks go through AES in one pass.
const BATCH: usize = 8;
/// Elements per rayon task.
const TASK: usize = 1024;

/// Per-element word counts of an n-level key (element-major components: element j's
/// words are `j*w .. (j+1)*w` of each component).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub bits: u32,
    /// Payload words w (1 or 2).
    pub width: usize,
}

impl Layout {
    /// A party's root seed (its own: not dealt).
    pub const SEED_WORDS: usize = 2;
    /// Largest payload width.
    pub const MAX_WIDTH: usize = 2;

    pub fn new(bits: u32, width: usize) -> Result<Layout> {
        if !(1..=64).contains(&bits) || !(1..=Self::MAX_WIDTH).contains(&width) {
            return Err(Error::Config(format!(
                "a comparison key needs a domain of 1 to 64 bits and 1 or 2 payload words, \
                 got {bits} bits and {width} words"
            )));
        }
        Ok(Layout { bits, width })
    }
    /// The final correction CW^(n+1), w words.
    pub fn last_words(&self) -> usize {
        self.width
    }
    /// s_CW per level, two words (low, high).
    pub fn scw_words(&self) -> usize {
        2 * self.bits as usize
    }
    /// V_CW per level, w words.
    pub fn vcw_words(&self) -> usize {
        self.bits as usize * self.width
    }
    /// t_CW^L, t_CW^R of level i at bits 2i, 2i + 1.
    pub fn tcw_words(&self) -> usize {
        (2 * self.bits as usize).div_ceil(64)
    }
    /// Words both parties' keys share, per element.
    pub fn common_words(&self) -> usize {
        self.scw_words() + self.vcw_words() + self.tcw_words() + self.last_words()
    }
    /// Bytes of one party's key per element: its root seed and the shared corrections.
    pub fn key_bytes(&self) -> usize {
        8 * (Self::SEED_WORDS + self.common_words())
    }
    /// Values must lie in 0..2^bits.
    fn check(&self, what: &str, v: &[u64]) -> Result<()> {
        // The message never names the value: it may be a secret mask.
        if self.bits < 64 && v.iter().any(|&x| x >> self.bits != 0) {
            return Err(Error::Protocol(format!(
                "a DCF {what} lies outside its {}-bit domain",
                self.bits
            )));
        }
        Ok(())
    }
}

/// The correction words both parties' keys share, for `len` elements (element-major).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorrectionWords {
    pub scw: Vec<u64>,
    pub vcw: Vec<u64>,
    pub tcw: Vec<u64>,
    pub last: Vec<u64>,
}

impl CorrectionWords {
    /// Components sized for `len` elements, in `self`'s buffers where they are large
    /// enough: a streaming dealer hands back buffers whose pages are mapped already, and
    /// reusing them costs less than the kernel's faulting fresh ones in (~1.35 s per GB on
    /// this VM, see README "The whole job"). Gen writes every word of s_CW, V_CW and the
    /// final correction (both the fused kernel and `gen_batch`), so a reused buffer keeps
    /// its old words there and only grows with zeros; t_CW is ORed in bit by bit, so it
    /// is zeroed (2 words per key against 3n + 1 for the rest). Zeroing every component
    /// was 2.5% of a BERT-base fss run's samples (memset in the dealer threads).
    fn reused_for(self, l: Layout, len: usize) -> Self {
        let sized = |mut v: Vec<u64>, n: usize| {
            if v.capacity() < n {
                return vec![0; n];
            }
            v.truncate(n);
            v.resize(n, 0);
            v
        };
        let mut tcw = sized(self.tcw, len * l.tcw_words());
        tcw.par_chunks_mut(1 << 16).for_each(|c| c.fill(0));
        CorrectionWords {
            scw: sized(self.scw, len * l.scw_words()),
            vcw: sized(self.vcw, len * l.vcw_words()),
            tcw,
            last: sized(self.last, len * l.last_words()),
        }
    }
}

/// One party's keys for `len` elements: its root seeds and the shared corrections.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub layout: Layout,
    pub seed: &'a [u64],
    pub scw: &'a [u64],
    pub vcw: &'a [u64],
    pub tcw: &'a [u64],
    pub last: &'a [u64],
}

impl<'a> Keys<'a> {
    /// Number of elements, after checking every component holds exactly that many keys.
    fn len(&self) -> Result<usize> {
        let l = self.layout;
        let n = self.last.len() / l.last_words();
        let ok = self.last.len() == n * l.last_words()
            && self.seed.len() == n * Layout::SEED_WORDS
            && self.scw.len() == n * l.scw_words()
            && self.vcw.len() == n * l.vcw_words()
            && self.tcw.len() == n * l.tcw_words();
        if !ok {
            return Err(Error::Material(format!(
                "comparison keys of inconsistent sizes for {n} elements"
            )));
        }
        Ok(n)
    }
}

fn seed_of(w: &[u64]) -> u128 {
    (w[0] as u128 | (w[1] as u128) << 64) & !1
}

/// x·(−1)^neg in Z_2^64.
fn signed(x: u64, neg: bool) -> u64 {
    if neg {
        x.wrapping_neg()
    } else {
        x
    }
}

/// Gen^< for every element: keys of f_{α_j, β_j} (β_j: words `j*w..(j+1)*w` of `beta`)
/// from the parties' root seeds (`seeds[b]`, two words per element). Elements in parallel on the rayon pool.
pub fn gen(
    layout: Layout,
    alpha: &[u64],
    beta: &[u64],
    seeds: [&[u64]; 2],
) -> Result<CorrectionWords> {
    gen_into(layout, alpha, beta, seeds, CorrectionWords::default())
}

/// As `gen`, writing the keys into `out`'s buffers where they are large enough (their
/// contents do not matter: every word is overwritten).
pub fn gen_into(
    layout: Layout,
    alpha: &[u64],
    beta: &[u64],
    seeds: [&[u64]; 2],
    out: CorrectionWords,
) -> Result<CorrectionWords> {
    gen_on(Path::selected()?, layout, alpha, beta, seeds, out)
}

/// `gen_into` on a given AES path (tests compare the paths).
fn gen_on(
    path: Path,
    layout: Layout,
    alpha: &[u64],
    beta: &[u64],
    seeds: [&[u64]; 2],
    out: CorrectionWords,
) -> Result<CorrectionWords> {
    // The fields are public: a layout built by hand is checked before any size is derived
    // from it (the fused kernel relies on n ≤ 64 and w ≤ 2).
    Layout::new(layout.bits, layout.width)?;
    let len = alpha.len();
    if beta.len() != len * layout.width || seeds.iter().any(|s| s.len() != len * Layout::SEED_WORDS)
    {
        return Err(Error::Material(format!(
            "DCF key generation for {len} elements given mismatched inputs"
        )));
    }
    layout.check("threshold", alpha)?;
    let l = layout;
    let mut out = out.reused_for(l, len);
    let tasks = out
        .scw
        .par_chunks_mut(TASK * l.scw_words())
        .zip(out.vcw.par_chunks_mut(TASK * l.vcw_words()))
        .zip(out.tcw.par_chunks_mut(TASK * l.tcw_words()))
        .zip(out.last.par_chunks_mut(TASK * l.last_words()))
        .enumerate();
    tasks.for_each(|(task, (((scw, vcw), tcw), last))| {
        let mmo = FixedAes::new(&PRG_KEY, path);
        let j0 = task * TASK;
        let w = l.width;
        let count = last.len() / w;
        // Whole passes of the fused kernel first, the rest (fewer than a pass) in scalar
        // batches.
        let mut b0 = 0;
        while b0 < count {
            let mut nb = BATCH.min(count - b0);
            let at = j0 + b0;
            #[cfg(target_arch = "x86_64")]
            let fused = path == Path::Vaes && count - b0 >= super::gen_vaes::PASS;
            #[cfg(not(target_arch = "x86_64"))]
            let fused = false;
            if fused {
                nb = super::gen_vaes::PASS;
            }
            let alpha = &alpha[at..at + nb];
            let beta = &beta[at * w..(at + nb) * w];
            let seeds = [
                &seeds[0][2 * at..2 * (at + nb)],
                &seeds[1][2 * at..2 * (at + nb)],
            ];
            let scw = &mut scw[b0 * l.scw_words()..(b0 + nb) * l.scw_words()];
            let vcw = &mut vcw[b0 * l.vcw_words()..(b0 + nb) * l.vcw_words()];
            let tcw = &mut tcw[b0 * l.tcw_words()..(b0 + nb) * l.tcw_words()];
            let last = &mut last[b0 * w..(b0 + nb) * w];
            #[cfg(target_arch = "x86_64")]
            if fused {
                // SAFETY: the Vaes path is only chosen on a CPU with avx512f and vaes
                // (`FixedAes::new` checked it); the layout was checked on entry (1 ≤ n ≤
                // 64, w ∈ {1, 2}); each slice holds exactly PASS elements' words.
                // The payload width is a constant of the kernel, so its loops unroll.
                let pass = match w {
                    1 => super::gen_vaes::gen_pass::<1>,
                    _ => super::gen_vaes::gen_pass::<2>,
                };
                unsafe {
                    pass(
                        mmo.round_keys(),
                        l.bits as usize,
                        alpha,
                        beta,
                        seeds,
                        scw,
                        vcw,
                        tcw,
                        last,
                    )
                };
                b0 += nb;
                continue;
            }
            gen_batch(l, &mmo, alpha, beta, seeds, scw, vcw, tcw, last);
            b0 += nb;
        }
    });
    Ok(out)
}

/// Gen^< (Fig. 1) for one batch of at most BATCH elements; the step numbers are the
/// figure's.
#[allow(clippy::too_many_arguments)]
fn gen_batch(
    l: Layout,
    mmo: &FixedAes,
    alpha: &[u64],
    beta: &[u64],
    seeds: [&[u64]; 2],
    scw: &mut [u64],
    vcw: &mut [u64],
    tcw: &mut [u64],
    last: &mut [u64],
) {
    let nb = alpha.len();
    let n = l.bits as usize;
    // Step 2-3: root seeds; t_b^(0) = b.
    let mut s = [[0u128; BATCH]; 2];
    let mut t = [[false; BATCH]; 2];
    for j in 0..nb {
        for b in 0..2 {
            s[b][j] = seed_of(&seeds[b][2 * j..2 * j + 2]);
            t[b][j] = b == 1;
        }
    }
    let w = l.width;
    let tw = l.tcw_words();
    // Blocks per party per level: s ⊕ 0, s ⊕ 1 and the value blocks (module doc).
    let nc = 2 + if w == 1 { 1 } else { 2 };
    let mut v_alpha = [[0u64; Layout::MAX_WIDTH]; BATCH];
    let mut z = vec![0u128; 2 * nc * BATCH];
    for i in 0..n {
        for j in 0..nb {
            for b in 0..2 {
                for c in 0..nc {
                    z[2 * nc * j + nc * b + c] = s[b][j] ^ c as u128;
                }
            }
        }
        mmo.permute(&mut z[..2 * nc * nb]);
        for j in 0..nb {
            let a_i = (alpha[j] >> (n - 1 - i)) & 1 == 1;
            // Step 5: s^L || t^L, s^R || t^R, and v^L, v^R (w words each) for each party.
            let g = |b: usize| {
                let h = |c: usize| z[2 * nc * j + nc * b + c] ^ s[b][j] ^ c as u128;
                let (hl, hr) = (h(0), h(1));
                let v = if w == 1 {
                    let hv = h(2);
                    [[hv as u64, 0], [(hv >> 64) as u64, 0]]
                } else {
                    let (vl, vr) = (h(2), h(3));
                    [
                        [vl as u64, (vl >> 64) as u64],
                        [vr as u64, (vr >> 64) as u64],
                    ]
                };
                ([(hl & !1, hl & 1 == 1), (hr & !1, hr & 1 == 1)], v)
            };
            let (st0, v0) = g(0);
            let (st1, v1) = g(1);
            // Step 6-7: Keep is the side α takes, Lose the other (0 = L, 1 = R).
            let (keep, lose) = if a_i { (1, 0) } else { (0, 1) };
            let neg = t[1][j];
            // Step 8.
            let s_cw = st0[lose].0 ^ st1[lose].0;
            for k in 0..w {
                // Step 9.
                let mut v_cw = signed(
                    v1[lose][k]
                        .wrapping_sub(v0[lose][k])
                        .wrapping_sub(v_alpha[j][k]),
                    neg,
                );
                // Step 10-11: α going right means x going left is below α: payload β.
                if lose == 0 {
                    v_cw = v_cw.wrapping_add(signed(beta[j * w + k], neg));
                }
                // Step 12.
                v_alpha[j][k] = v_alpha[j][k]
                    .wrapping_sub(v1[keep][k])
                    .wrapping_add(v0[keep][k])
                    .wrapping_add(signed(v_cw, neg));
                vcw[(j * n + i) * w + k] = v_cw;
            }
            // Step 13.
            let t_cw = [st0[0].1 ^ st1[0].1 ^ a_i ^ true, st0[1].1 ^ st1[1].1 ^ a_i];
            // Step 14: the correction word.
            scw[j * 2 * n + 2 * i] = s_cw as u64;
            scw[j * 2 * n + 2 * i + 1] = (s_cw >> 64) as u64;
            for (side, &bit) in t_cw.iter().enumerate() {
                let k = 2 * i + side;
                tcw[j * tw + k / 64] |= (bit as u64) << (k % 64);
            }
            // Step 15-16.
            for (b, st) in [st0, st1].iter().enumerate() {
                let tb = t[b][j];
                s[b][j] = st[keep].0 ^ if tb { s_cw } else { 0 };
                t[b][j] = st[keep].1 ^ (tb & t_cw[keep]);
            }
        }
    }
    // Step 18: CW^(n+1), with Convert(s) = H(s ⊕ 4).
    for j in 0..nb {
        for b in 0..2 {
            z[2 * j + b] = s[b][j] ^ 4;
        }
    }
    mmo.permute(&mut z[..2 * nb]);
    for j in 0..nb {
        let conv = |b: usize| {
            let h = z[2 * j + b] ^ s[b][j] ^ 4;
            [h as u64, (h >> 64) as u64]
        };
        let (c0, c1) = (conv(0), conv(1));
        for k in 0..w {
            last[j * w + k] = signed(
                c1[k].wrapping_sub(c0[k]).wrapping_sub(v_alpha[j][k]),
                t[1][j],
            );
        }
    }
}

/// Eval^< by `party` (0 or 1) of its keys at the public points `x`: its share of
/// f_{α,β}(x) per element (w words each, element-major). Elements in parallel on the
/// rayon pool.
pub fn eval(party: usize, keys: Keys<'_>, x: &[u64]) -> Result<Vec<u64>> {
    eval_on(Path::selected()?, party, keys, x)
}

/// `eval` on a given AES path (tests compare the paths).
fn eval_on(path: Path, party: usize, keys: Keys<'_>, x: &[u64]) -> Result<Vec<u64>> {
    let len = keys.len()?;
    if x.len() != len {
        return Err(Error::Protocol(format!(
            "DCF evaluation of {} points with {len} keys",
            x.len()
        )));
    }
    eval_points(path, party, keys, 1, x)
}

/// Eval^< by `party` of each key at `per` public points: key j at
/// `x[j·per..(j + 1)·per]`, its shares w words per point in the same order. One key
/// evaluated at several points is the multiple-interval-containment gate's use
/// (proto::spline: m + 1 points per key). Points in parallel on the rayon pool, every
/// pass of the fused kernel over any points (one key or several).
pub fn eval_many(party: usize, keys: Keys<'_>, per: usize, x: &[u64]) -> Result<Vec<u64>> {
    eval_many_on(Path::selected()?, party, keys, per, x)
}

/// `eval_many` on a given AES path (tests compare the paths).
fn eval_many_on(
    path: Path,
    party: usize,
    keys: Keys<'_>,
    per: usize,
    x: &[u64],
) -> Result<Vec<u64>> {
    let len = keys.len()?;
    if per == 0 || x.len() != len * per {
        return Err(Error::Protocol(format!(
            "DCF evaluation of {} points with {len} keys at {per} points each",
            x.len()
        )));
    }
    eval_points(path, party, keys, per, x)
}

/// The window width k for `eval_many_shared` of `points` points per key spread over
/// `span` + 1 consecutive values of an n-bit domain, or None when no window narrower
/// than the domain holds them (then `eval_many`). The smallest k that holds them is not
/// the cheapest: a window of span s straddles a multiple of 2^k (and walks two
/// prefixes) with probability about s/2^k, so per key the expected levels are
/// (1 + min(1, s/2^k))·(n − k) + points·k, minimised over k. GeLU's 3 breakpoints over
/// 7·2^16 at n = 64: k = 23, ~112 levels, against ~141 at the smallest k = 19 (and 147
/// when both prefixes were walked always).
pub fn shared_window_bits(n: u32, span: u64, points: usize) -> Option<u32> {
    let least = (64 - span.leading_zeros()).max(1);
    (least..n)
        .map(|k| {
            let straddle = (span as f64 / 2f64.powi(k as i32)).min(1.0);
            let cost = (1.0 + straddle) * f64::from(n - k) + points as f64 * f64::from(k);
            (cost, k)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// `eval_many` for points that come in clusters: of each key's `per` points the first
/// `lead` are walked from the root as in `eval_many`, the other `per − lead` lie in a
/// window of 2^k consecutive values (mod 2^n), so their top n − k bits are one of two
/// prefixes P, P + 1: each key walks the prefixes its points use (both only where the
/// window straddles a multiple of 2^k) over their n − k levels once, and each clustered
/// point only its last k levels from its prefix's state. The result is bit for
/// bit `eval_many`'s (a level's state is a function of the key and the prefix alone); a
/// call whose points break the window falls back to `eval_many`. proto::spline's exp:
/// ȳ whole, then 24 points y + i·2^15 in a window of 2^20: 2·44 + 24·20 levels per key
/// instead of 24·64. On the VAES path the passes are the fused kernel's
/// (`eval_vaes::eval_range`), the rest scalar (`eval_range_batch`). Keys in parallel on
/// the rayon pool, in tasks of about TASK points.
pub fn eval_many_shared(
    party: usize,
    keys: Keys<'_>,
    per: usize,
    lead: usize,
    k: u32,
    x: &[u64],
) -> Result<Vec<u64>> {
    eval_many_shared_on(Path::selected()?, party, keys, per, lead, k, x)
}

/// `eval_many_shared` on a given AES path (tests compare the paths).
fn eval_many_shared_on(
    path: Path,
    party: usize,
    keys: Keys<'_>,
    per: usize,
    lead: usize,
    k: u32,
    x: &[u64],
) -> Result<Vec<u64>> {
    Layout::new(keys.layout.bits, keys.layout.width)?;
    let len = keys.len()?;
    let l = keys.layout;
    let n = l.bits;
    if per == 0 || lead > per || x.len() != len * per || party > 1 || k == 0 || k >= n {
        return Err(Error::Protocol(format!(
            "DCF evaluation of {} points with {len} keys at {per} points each ({lead} \
             whole, windows of 2^{k} in {n} bits) by party {party}",
            x.len()
        )));
    }
    l.check("input", x)?;
    // Each key's window base prefix P: every clustered point's prefix is P or P + 1.
    let pmask = u64::MAX >> (64 - (n - k));
    let mut base = Vec::with_capacity(len);
    for j in 0..len {
        let pts = &x[j * per + lead..(j + 1) * per];
        let Some(&first) = pts.first() else {
            base.push(0);
            continue;
        };
        let a = first >> k;
        // P is a − 1 if some point has prefix a − 1, else a.
        let p = if pts.iter().any(|&v| v >> k == a.wrapping_sub(1) & pmask) {
            a.wrapping_sub(1) & pmask
        } else {
            a
        };
        if pts
            .iter()
            .any(|&v| v >> k != p && v >> k != (p + 1) & pmask)
        {
            return eval_many_on(path, party, keys, per, x);
        }
        base.push(p);
    }
    let w = l.width;
    let d = (n - k) as usize;
    let mut out = vec![0u64; x.len() * w];
    let kpt = (TASK / per).max(1);
    out.par_chunks_mut(kpt * per * w)
        .enumerate()
        .for_each(|(task, o)| {
            let mmo = FixedAes::new(&PRG_KEY, path);
            let k0 = task * kpt;
            let nk = o.len() / (per * w);
            // Phase 1: the prefixes of each key its points use (P, P + 1 or both: two only
            // when the window straddles a multiple of 2^k), levels 0..d.
            let mut pre_key = Vec::with_capacity(2 * nk);
            let mut pre_x = Vec::with_capacity(2 * nk);
            // Per key, the index in pre_x of its prefix P and of P + 1 (if used).
            let mut at = Vec::with_capacity(nk);
            for j in k0..k0 + nk {
                let pts = &x[j * per + lead..(j + 1) * per];
                let mut idx = [usize::MAX; 2];
                for (which, used) in [
                    pts.iter().any(|&v| v >> k == base[j]),
                    pts.iter().any(|&v| v >> k != base[j]),
                ]
                .into_iter()
                .enumerate()
                {
                    if used {
                        idx[which] = pre_x.len();
                        pre_key.push(j);
                        pre_x.push(((base[j] + which as u64) & pmask) << k);
                    }
                }
                at.push(idx);
            }
            let mut pre_state = vec![0u64; pre_x.len() * STATE_WORDS];
            run_range(
                party,
                &mmo,
                keys,
                &pre_key,
                &pre_x,
                0,
                d,
                &mut pre_state,
                &mut [],
            );
            // Phase 2: the clustered points from their prefix's state, levels d..n.
            let c = per - lead;
            let mut cl_key = Vec::with_capacity(nk * c);
            let mut cl_x = Vec::with_capacity(nk * c);
            let mut cl_state = Vec::with_capacity(nk * c * STATE_WORDS);
            for (jj, j) in (k0..k0 + nk).enumerate() {
                for &v in &x[j * per + lead..(j + 1) * per] {
                    let which = usize::from(v >> k != base[j]);
                    let a = at[jj][which] * STATE_WORDS;
                    cl_key.push(j);
                    cl_x.push(v);
                    cl_state.extend_from_slice(&pre_state[a..a + STATE_WORDS]);
                }
            }
            let mut cl_out = vec![0u64; cl_x.len() * w];
            run_range(
                party,
                &mmo,
                keys,
                &cl_key,
                &cl_x,
                d,
                n as usize,
                &mut cl_state,
                &mut cl_out,
            );
            // Phase 3: the lead points, whole.
            let ld_key: Vec<usize> = (k0..k0 + nk)
                .flat_map(|j| std::iter::repeat_n(j, lead))
                .collect();
            let ld_x: Vec<u64> = (k0..k0 + nk)
                .flat_map(|j| x[j * per..j * per + lead].iter().copied())
                .collect();
            let mut ld_out = vec![0u64; ld_x.len() * w];
            run_range(
                party,
                &mmo,
                keys,
                &ld_key,
                &ld_x,
                0,
                n as usize,
                &mut [],
                &mut ld_out,
            );
            for jj in 0..nk {
                let dst = &mut o[jj * per * w..(jj + 1) * per * w];
                dst[..lead * w].copy_from_slice(&ld_out[jj * lead * w..(jj + 1) * lead * w]);
                dst[lead * w..].copy_from_slice(&cl_out[jj * c * w..(jj + 1) * c * w]);
            }
        });
    Ok(out)
}

/// Points `x` (point p with key `key[p]` of `keys`) over levels `from..to` (see
/// `eval_vaes::eval_range`): whole passes of the fused kernel on the VAES path, the rest
/// in scalar batches. `state` holds STATE_WORDS per point unless from = 0 and to = n.
#[allow(clippy::too_many_arguments)]
fn run_range(
    party: usize,
    mmo: &FixedAes,
    keys: Keys<'_>,
    key: &[usize],
    x: &[u64],
    from: usize,
    to: usize,
    state: &mut [u64],
    out: &mut [u64],
) {
    let l = keys.layout;
    let (w, n) = (l.width, l.bits as usize);
    let whole = from == 0 && to == n;
    let count = x.len();
    let mut b0 = 0;
    #[cfg(target_arch = "x86_64")]
    if mmo.path() == Path::Vaes {
        use super::eval_vaes::{eval_range, PASS};
        while b0 + PASS <= count {
            let idx: [usize; PASS] = std::array::from_fn(|q| key[b0 + q]);
            let st: &mut [u64] = if whole {
                &mut []
            } else {
                &mut state[b0 * STATE_WORDS..(b0 + PASS) * STATE_WORDS]
            };
            let o: &mut [u64] = if to == n {
                &mut out[b0 * w..(b0 + PASS) * w]
            } else {
                &mut []
            };
            let pass = match w {
                1 => eval_range::<1>,
                _ => eval_range::<2>,
            };
            // SAFETY: the Vaes path is only chosen on a CPU with avx512f and vaes
            // (`FixedAes::new` checked it); the layout was checked by the caller
            // (1 ≤ n ≤ 64, w ∈ {1, 2}, every component's size by `Keys::len`); every key
            // index is below the number of keys; from ≤ to ≤ n; the points, states and
            // outputs are exactly PASS.
            unsafe {
                pass(
                    party,
                    mmo.round_keys(),
                    n,
                    (keys.seed, keys.scw, keys.vcw, keys.tcw, keys.last),
                    &idx,
                    &x[b0..b0 + PASS],
                    from,
                    to,
                    st,
                    o,
                )
            };
            b0 += PASS;
        }
    }
    while b0 < count {
        let nb = BATCH.min(count - b0);
        let st: &mut [u64] = if whole {
            &mut []
        } else {
            &mut state[b0 * STATE_WORDS..(b0 + nb) * STATE_WORDS]
        };
        let o: &mut [u64] = if to == n {
            &mut out[b0 * w..(b0 + nb) * w]
        } else {
            &mut []
        };
        eval_range_batch(
            party,
            mmo,
            keys,
            &key[b0..b0 + nb],
            &x[b0..b0 + nb],
            from,
            to,
            st,
            o,
        );
        b0 += nb;
    }
}

/// Eval^< (Fig. 1) at one batch of at most BATCH points, point j with key `key[j]` of `k`,
/// over levels `from..to` (all of them: from the root seed to the output), with states in
/// and out as `eval_vaes::eval_range`.
#[allow(clippy::too_many_arguments)]
fn eval_range_batch(
    party: usize,
    mmo: &FixedAes,
    k: Keys<'_>,
    key: &[usize],
    x: &[u64],
    from: usize,
    to: usize,
    state: &mut [u64],
    out: &mut [u64],
) {
    let nb = x.len();
    let l = k.layout;
    let n = l.bits as usize;
    let tw = l.tcw_words();
    let w = l.width;
    let sign = 0u64.wrapping_sub(party as u64);
    let mut s = [0u128; BATCH];
    let mut t = [party as u64; BATCH];
    let mut v = [[0u64; Layout::MAX_WIDTH]; BATCH];
    for j in 0..nb {
        if from == 0 {
            s[j] = seed_of(&k.seed[2 * key[j]..2 * key[j] + 2]);
        } else {
            let st = &state[j * STATE_WORDS..(j + 1) * STATE_WORDS];
            s[j] = st[0] as u128 | (st[1] as u128) << 64;
            t[j] = st[2];
            v[j] = [st[3], st[4]];
        }
    }
    // The value block of `side` (module doc): w = 1 shares one block between the sides.
    let vblock = |side: usize| if w == 1 { 2 } else { 2 + side };
    // Per element: [s ⊕ side, s ⊕ vblock(side)] hashed. Branch-free: t and the side are
    // uniformly random bits, so branches on them would mispredict half the time (this loop
    // is most of the evaluation).
    let mut z = [0u128; 2 * BATCH];
    for i in from..to {
        for j in 0..nb {
            let side = ((x[j] >> (n - 1 - i)) & 1) as usize;
            z[2 * j] = s[j] ^ side as u128;
            z[2 * j + 1] = s[j] ^ vblock(side) as u128;
        }
        mmo.permute(&mut z[..2 * nb]);
        for j in 0..nb {
            let side = ((x[j] >> (n - 1 - i)) & 1) as usize;
            let h = z[2 * j] ^ s[j] ^ side as u128;
            let hv = z[2 * j + 1] ^ s[j] ^ vblock(side) as u128;
            let mask = 0u64.wrapping_sub(t[j]);
            let wide = (mask as u128) | ((mask as u128) << 64);
            let kj = key[j];
            let at = kj * 2 * n + 2 * i;
            let s_cw = k.scw[at] as u128 | (k.scw[at + 1] as u128) << 64;
            let bit = 2 * i + side;
            let t_cw = (k.tcw[kj * tw + bit / 64] >> (bit % 64)) & 1;
            let v_side = if w == 1 {
                [(hv >> (64 * side)) as u64, 0]
            } else {
                [hv as u64, (hv >> 64) as u64]
            };
            for c in 0..w {
                let add = v_side[c].wrapping_add(k.vcw[(kj * n + i) * w + c] & mask);
                v[j][c] = v[j][c].wrapping_add(add ^ sign).wrapping_sub(sign);
            }
            s[j] = (h & !1) ^ (s_cw & wide);
            t[j] = (h as u64 & 1) ^ (t_cw & mask);
        }
    }
    if to < n {
        for j in 0..nb {
            let st = &mut state[j * STATE_WORDS..(j + 1) * STATE_WORDS];
            st.copy_from_slice(&[s[j] as u64, (s[j] >> 64) as u64, t[j], v[j][0], v[j][1]]);
        }
        return;
    }
    for j in 0..nb {
        z[j] = s[j] ^ 4;
    }
    mmo.permute(&mut z[..nb]);
    for j in 0..nb {
        let h = z[j] ^ s[j] ^ 4;
        let conv = [h as u64, (h >> 64) as u64];
        let mask = 0u64.wrapping_sub(t[j]);
        for c in 0..w {
            let fin = conv[c].wrapping_add(k.last[key[j] * w + c] & mask);
            out[j * w + c] = v[j][c].wrapping_add((fin ^ sign).wrapping_sub(sign));
        }
    }
}

/// Point p uses key p / per.
fn eval_points(
    path: Path,
    party: usize,
    keys: Keys<'_>,
    per: usize,
    x: &[u64],
) -> Result<Vec<u64>> {
    // The fields are public: a layout built by hand is checked here, before any size is
    // derived from it (the fused kernel relies on n ≤ 64 and w ≤ 2).
    Layout::new(keys.layout.bits, keys.layout.width)?;
    let len = keys.len()?;
    if x.len() != len * per || party > 1 {
        return Err(Error::Protocol(format!(
            "DCF evaluation of {} points with {len} keys by party {party}",
            x.len()
        )));
    }
    let l = keys.layout;
    l.check("input", x)?;
    let w = l.width;
    let mut out = vec![0u64; x.len() * w];
    out.par_chunks_mut(TASK * w)
        .enumerate()
        .for_each(|(task, o)| {
            let mmo = FixedAes::new(&PRG_KEY, path);
            let p0 = task * TASK;
            let count = o.len() / w;
            // The keys of this task's points, a..e, and each point's index among them.
            let a = p0 / per;
            let e = (p0 + count - 1) / per + 1;
            let k = Keys {
                layout: l,
                seed: &keys.seed[2 * a..2 * e],
                scw: &keys.scw[a * l.scw_words()..e * l.scw_words()],
                vcw: &keys.vcw[a * l.vcw_words()..e * l.vcw_words()],
                tcw: &keys.tcw[a * l.tcw_words()..e * l.tcw_words()],
                last: &keys.last[a * w..e * w],
            };
            // Each point's index among the task's keys: whole passes of the fused kernel
            // first, the rest in scalar batches, over every level (`run_range`).
            let idx: Vec<usize> = (0..count).map(|p| (p0 + p) / per - a).collect();
            let n = l.bits as usize;
            run_range(party, &mmo, k, &idx, &x[p0..p0 + count], 0, n, &mut [], o);
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;

    /// Both parties' keys for thresholds `alpha` and payloads `beta`, from PRG seeds.
    fn keys_for(l: Layout, alpha: &[u64], beta: &[u64]) -> (Vec<u64>, Vec<u64>, CorrectionWords) {
        let n = alpha.len();
        let mut s0 = vec![0u64; 2 * n];
        let mut s1 = vec![0u64; 2 * n];
        Prg::new(&[1; 16], l.bits as u64).fill_u64(&mut s0);
        Prg::new(&[2; 16], l.bits as u64).fill_u64(&mut s1);
        // The `aes` crate's scalar path: the reference the fast paths are compared with.
        let cw = gen_on(
            Path::Soft,
            l,
            alpha,
            beta,
            [&s0, &s1],
            CorrectionWords::default(),
        )
        .unwrap();
        (s0, s1, cw)
    }

    /// Every key's words repeated `per` times, once per point: the reference against
    /// which evaluating one key at many points is checked.
    fn repeat_keys(l: Layout, cw: &CorrectionWords, per: usize) -> CorrectionWords {
        let rep = |v: &[u64], words: usize| repeat_words(v, words, per);
        CorrectionWords {
            scw: rep(&cw.scw, l.scw_words()),
            vcw: rep(&cw.vcw, l.vcw_words()),
            tcw: rep(&cw.tcw, l.tcw_words()),
            last: rep(&cw.last, l.last_words()),
        }
    }

    /// Each `words`-word chunk of `v` repeated `per` times.
    fn repeat_words(v: &[u64], words: usize, per: usize) -> Vec<u64> {
        v.chunks(words)
            .flat_map(|c| std::iter::repeat_n(c, per).flatten().copied())
            .collect()
    }

    fn key<'a>(l: Layout, seed: &'a [u64], cw: &'a CorrectionWords) -> Keys<'a> {
        Keys {
            layout: l,
            seed,
            scw: &cw.scw,
            vcw: &cw.vcw,
            tcw: &cw.tcw,
            last: &cw.last,
        }
    }

    fn reconstruct(l: Layout, s: [&[u64]; 2], cw: &CorrectionWords, x: &[u64]) -> Vec<u64> {
        let y0 = eval(0, key(l, s[0], cw), x).unwrap();
        let y1 = eval(1, key(l, s[1], cw), x).unwrap();
        y0.iter()
            .zip(&y1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect()
    }

    /// Every key evaluated at 0, α−1, α, α+1, 2^n−1 and random points equals the plain
    /// f_{α,β}(x) = β·[x < α] in every payload word, for n = 1, 2, 8, 63, 64, payloads of
    /// 1 and 2 words, and random and edge thresholds.
    #[test]
    fn dcf_matches_the_plain_comparison_at_edges_and_random_points() {
        for width in [1, 2] {
            for bits in [1u32, 2, 8, 63, 64] {
                let l = Layout::new(bits, width).unwrap();
                let max = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                let mut rng = Prg::new(&[9; 16], bits as u64);
                let mut alphas = vec![0, 1, max, (max - 1) & max, max / 2, max / 2 + 1];
                for _ in 0..40 {
                    alphas.push(rng.next_u64() & max);
                }
                // Every threshold against every probe: element e = (threshold, probe).
                let mut a = Vec::new();
                let mut beta = Vec::new();
                let mut x = Vec::new();
                for &al in &alphas {
                    let mut probes = vec![
                        0,
                        max,
                        al,
                        al.wrapping_sub(1) & max,
                        al.wrapping_add(1) & max,
                    ];
                    for _ in 0..8 {
                        probes.push(rng.next_u64() & max);
                    }
                    for p in probes {
                        a.push(al);
                        for _ in 0..width {
                            beta.push(rng.next_u64());
                        }
                        x.push(p);
                    }
                }
                let (s0, s1, cw) = keys_for(l, &a, &beta);
                let got = reconstruct(l, [&s0, &s1], &cw, &x);
                for e in 0..a.len() {
                    for c in 0..width {
                        let want = if x[e] < a[e] { beta[e * width + c] } else { 0 };
                        assert_eq!(
                            got[e * width + c],
                            want,
                            "n={bits} w={width} α={} x={} word {c}",
                            a[e],
                            x[e]
                        );
                    }
                }
            }
        }
    }

    /// A single party's share is not the function's value (the keys are split), and
    /// more elements than one task (TASK) and than a batch are handled.
    #[test]
    fn dcf_over_several_tasks_and_one_share_alone_is_not_the_value() {
        for width in [1, 2] {
            let l = Layout::new(63, width).unwrap();
            let n = 2 * TASK + 7;
            let mut rng = Prg::new(&[4; 16], 0);
            let a: Vec<u64> = (0..n).map(|_| rng.next_u64() >> 1).collect();
            let x: Vec<u64> = (0..n).map(|_| rng.next_u64() >> 1).collect();
            let beta = vec![1u64; n * width];
            let (s0, s1, cw) = keys_for(l, &a, &beta);
            let got = reconstruct(l, [&s0, &s1], &cw, &x);
            for e in 0..n * width {
                assert_eq!(got[e], (x[e / width] < a[e / width]) as u64);
            }
            let y0 = eval(0, key(l, &s0, &cw), &x).unwrap();
            assert!(y0.iter().filter(|&&v| v <= 1).count() < 5);
        }
    }

    /// Every available AES path (the VAES one with its fused kernel) gives bit-identical
    /// shares to the `aes` crate's scalar path, for both parties, n = 1, 2, 31, 32, 33, 63,
    /// 64 (tcw of one and two words, the word boundary), 1 and 2 payload words, counts that
    /// leave a partial pass and a partial batch, edge thresholds and points (0, α, α ± 1,
    /// 2^n − 1) and random ones; the reconstruction is also checked against β·[x < α].
    #[test]
    fn every_aes_path_gives_the_scalar_paths_shares_bit_for_bit() {
        for width in [1, 2] {
            for bits in [1u32, 2, 31, 32, 33, 63, 64] {
                let l = Layout::new(bits, width).unwrap();
                let max = u64::MAX >> (64 - bits);
                let mut rng = Prg::new(&[5; 16], bits as u64 + 100 * width as u64);
                let len = 3 * TASK + 37;
                let mut a = Vec::with_capacity(len);
                let mut x = Vec::with_capacity(len);
                for e in 0..len {
                    let al = match e % 7 {
                        0 => 0,
                        1 => max,
                        _ => rng.next_u64() & max,
                    };
                    let p = match e % 11 {
                        0 => 0,
                        1 => max,
                        2 => al,
                        3 => al.wrapping_sub(1) & max,
                        4 => al.wrapping_add(1) & max,
                        _ => rng.next_u64() & max,
                    };
                    a.push(al);
                    x.push(p);
                }
                let beta: Vec<u64> = (0..len * width).map(|_| rng.next_u64()).collect();
                let (s0, s1, cw) = keys_for(l, &a, &beta);

                for path in Path::ALL {
                    if path.available() {
                        let cw_path =
                            gen_on(path, l, &a, &beta, [&s0, &s1], CorrectionWords::default())
                                .unwrap();
                        assert!(cw_path == cw, "gen on {} n={bits} w={width}", path.name());
                        // Into used buffers (a streaming dealer's), larger and dirty.
                        let used = CorrectionWords {
                            scw: vec![u64::MAX; cw.scw.len() + 5],
                            vcw: vec![0xa5a5; cw.vcw.len() + 1],
                            tcw: vec![7; cw.tcw.len() + 3],
                            last: vec![9; cw.last.len()],
                        };
                        let cw_used = gen_on(path, l, &a, &beta, [&s0, &s1], used).unwrap();
                        assert!(
                            cw_used == cw,
                            "gen into used buffers on {} n={bits} w={width}",
                            path.name()
                        );
                    }
                }
                for (party, seed) in [&s0, &s1].into_iter().enumerate() {
                    let k = key(l, seed, &cw);
                    let want = eval_on(Path::Soft, party, k, &x).unwrap();
                    for path in Path::ALL {
                        if !path.available() {
                            eprintln!("skipping: CPU lacks the {} path", path.name());
                            continue;
                        }
                        let got = eval_on(path, party, k, &x).unwrap();
                        assert!(
                            got == want,
                            "{} n={bits} w={width} party {party}",
                            path.name()
                        );
                    }
                }
                let got = reconstruct(l, [&s0, &s1], &cw, &x);
                for e in 0..len {
                    for c in 0..width {
                        let want = if x[e] < a[e] { beta[e * width + c] } else { 0 };
                        assert_eq!(got[e * width + c], want, "n={bits} w={width} e={e}");
                    }
                }
            }
        }
    }

    /// One key at several points (`eval_many`, the multiple-interval gate's use): on every
    /// AES path, for both parties, the shares equal those of `eval` with the key repeated
    /// once per point (the reference), and they reconstruct to β·[x < α]; point counts
    /// per key that straddle passes, batches and tasks (1, 3, 17, 89), n = 64 and 63, with
    /// edge points 0, α, α ± 1, 2^n − 1.
    #[test]
    fn one_key_at_many_points_matches_repeated_keys_on_every_path() {
        for (bits, width) in [(64u32, 1usize), (63, 2)] {
            let l = Layout::new(bits, width).unwrap();
            let max = u64::MAX >> (64 - bits);
            for per in [1usize, 3, 17, 89] {
                let keys = 2 * TASK / per + 5;
                let mut rng = Prg::new(&[6; 16], (bits as u64) << 8 | per as u64);
                let a: Vec<u64> = (0..keys)
                    .map(|j| match j % 5 {
                        0 => 0,
                        1 => max,
                        _ => rng.next_u64() & max,
                    })
                    .collect();
                let beta: Vec<u64> = (0..keys * width).map(|_| rng.next_u64()).collect();
                let mut x = Vec::with_capacity(keys * per);
                for &al in &a {
                    for q in 0..per {
                        x.push(match q % 6 {
                            0 => al,
                            1 => al.wrapping_sub(1) & max,
                            2 => al.wrapping_add(1) & max,
                            3 => 0,
                            4 => max,
                            _ => rng.next_u64() & max,
                        });
                    }
                }
                let (s0, s1, cw) = keys_for(l, &a, &beta);
                // The same keys repeated per point: the reference evaluation.
                let cw_rep = repeat_keys(l, &cw, per);
                let mut sum = vec![0u64; x.len() * width];
                for (party, seed) in [&s0, &s1].into_iter().enumerate() {
                    let seed_rep = repeat_words(seed, 2, per);
                    let want = eval_on(Path::Soft, party, key(l, &seed_rep, &cw_rep), &x).unwrap();
                    for path in Path::ALL {
                        if !path.available() {
                            eprintln!("skipping: CPU lacks the {} path", path.name());
                            continue;
                        }
                        let got = eval_many_on(path, party, key(l, seed, &cw), per, &x).unwrap();
                        assert!(
                            got == want,
                            "{} n={bits} per={per} party {party}",
                            path.name()
                        );
                        let shared = eval_many_shared_on(
                            path,
                            party,
                            key(l, seed, &cw),
                            per,
                            1,
                            bits - 1,
                            &x,
                        )
                        .unwrap();
                        assert!(
                            shared == want,
                            "shared {} n={bits} per={per} party {party}",
                            path.name()
                        );
                    }
                    sum.iter_mut()
                        .zip(&want)
                        .for_each(|(s, v)| *s = s.wrapping_add(*v));
                }
                for (p, &xp) in x.iter().enumerate() {
                    for c in 0..width {
                        let j = p / per;
                        let want = if xp < a[j] { beta[j * width + c] } else { 0 };
                        assert_eq!(sum[p * width + c], want, "n={bits} per={per} point {p}");
                    }
                }
                let e = eval_many(0, key(l, &s0, &cw), per, &x[1..]).unwrap_err();
                assert!(e.to_string().contains("points"), "{e}");
            }
        }
    }

    /// `eval_many_shared` on the points it is built for, bit for bit `eval` with the key
    /// repeated (the reference) on every path: per key the spline gate's ȳ = y + 2^63
    /// (walked whole) and y + k·2^15, k = 1..24 (exp's half-unit breakpoints at f = 16) in
    /// windows of 2^20, with y random, just below a 2^21 or 2^40 boundary (the points
    /// straddle two prefixes), just below 2^64 (they wrap around to 0) and equal to
    /// α − 4·2^15 (a point on the threshold); repeated points; descending and shuffled
    /// orders; keys straddling passes, batches and tasks; and one point moved out of its
    /// window (the call falls back to `eval_many`).
    #[test]
    fn shared_walk_matches_repeated_keys_on_clustered_wrapping_points() {
        let (l, per) = (Layout::new(64, 1).unwrap(), 25usize);
        let keys = 3 * TASK / per + 7;
        let mut rng = Prg::new(&[9; 16], 77);
        let a: Vec<u64> = (0..keys).map(|_| rng.next_u64()).collect();
        let beta: Vec<u64> = (0..keys).map(|_| rng.next_u64()).collect();
        let mut x = Vec::with_capacity(keys * per);
        for (j, &al) in a.iter().enumerate() {
            let y = match j % 7 {
                0 => (1u64 << 21) - 3 * (1 << 15) - 5,
                1 => (1u64 << 40).wrapping_sub(7 << 15),
                2 => u64::MAX - (5 << 15),
                3 => al.wrapping_sub(1 << 15).wrapping_sub(3 << 15),
                _ => rng.next_u64(),
            };
            let mut pts: Vec<u64> = vec![y ^ (1 << 63)];
            pts.extend((1..per as u64).map(|k| y.wrapping_add(k << 15)));
            match j % 5 {
                0 => pts[3] = pts[2],
                1 => pts[1..].reverse(),
                2 => pts.swap(4, 20),
                _ => {}
            }
            x.extend(pts);
        }
        let (s0, s1, cw) = keys_for(l, &a, &beta);
        let cw_rep = repeat_keys(l, &cw, per);
        let mut sum = vec![0u64; x.len()];
        for (party, seed) in [&s0, &s1].into_iter().enumerate() {
            let seed_rep = repeat_words(seed, 2, per);
            let want = eval_on(Path::Soft, party, key(l, &seed_rep, &cw_rep), &x).unwrap();
            for path in Path::ALL {
                if !path.available() {
                    eprintln!("skipping: CPU lacks the {} path", path.name());
                    continue;
                }
                // At 2^20 most keys' windows straddle two prefixes, at 2^24 most lie in
                // one (each key walks only the prefixes it uses).
                for k in [20, 24] {
                    let got =
                        eval_many_shared_on(path, party, key(l, seed, &cw), per, 1, k, &x).unwrap();
                    assert!(got == want, "{} party {party} k={k}", path.name());
                    // One point out of its key's window: the whole call falls back, still
                    // exact.
                    let mut far = x.clone();
                    far[per + 7] ^= 1 << 50;
                    let want_far =
                        eval_on(Path::Soft, party, key(l, &seed_rep, &cw_rep), &far).unwrap();
                    let got_far =
                        eval_many_shared_on(path, party, key(l, seed, &cw), per, 1, k, &far)
                            .unwrap();
                    assert!(
                        got_far == want_far,
                        "fallback {} party {party} k={k}",
                        path.name()
                    );
                }
            }
            sum.iter_mut()
                .zip(&want)
                .for_each(|(s, v)| *s = s.wrapping_add(*v));
        }
        for (p, &xp) in x.iter().enumerate() {
            let j = p / per;
            assert_eq!(sum[p], if xp < a[j] { beta[j] } else { 0 }, "point {p}");
        }
        let e = eval_many_shared(0, key(l, &s0, &cw), per, 1, 20, &x[1..]).unwrap_err();
        assert!(e.to_string().contains("points"), "{e}");
    }

    /// The window width: the expected-levels minimum (worked out by hand for GeLU's
    /// breakpoints: k = 23), never narrower than the span, and none for a span as wide as
    /// the domain.
    #[test]
    fn shared_window_bits_minimises_the_expected_levels() {
        assert_eq!(shared_window_bits(64, 7 << 16, 3), Some(23));
        for (span, points) in [(7u64 << 16, 3), (1 << 20, 24), (1 << 31, 355), (5, 1)] {
            let k = shared_window_bits(64, span, points).unwrap();
            assert!(span < 1 << k, "span {span} in 2^{k}");
        }
        assert_eq!(shared_window_bits(64, u64::MAX, 3), None);
        assert_eq!(shared_window_bits(63, 1 << 62, 3), None);
    }

    #[test]
    fn out_of_domain_thresholds_and_inputs_are_refused() {
        let l = Layout::new(8, 1).unwrap();
        let zero = [0u64, 0];
        let e = gen(l, &[256], &[1], [&zero[..], &zero[..]]).unwrap_err();
        assert!(e.to_string().contains("8-bit domain"), "{e}");
        for (bits, width) in [(0, 1), (65, 1), (8, 0), (8, 3)] {
            assert!(Layout::new(bits, width).is_err());
        }
    }
}
