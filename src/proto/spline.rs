//! The `--protocols fss` piecewise-constant gate (2 parties): shares of [x < b_i] for
//! every breakpoint b_1 < … < b_m at once, after one opening of one word per element,
//! from one DCF key per element (Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee,
//! EUROCRYPT 2021, the multiple interval containment gate, §4.4); and on it the round-lean
//! reciprocal and inverse square root of the fss suite (a piecewise-constant first guess,
//! then a short polynomial refinement), softmax's exp on x ≤ 0 (a half-unit cubic spline)
//! and PUMA's GeLU (its three regions from one key). Depends on proto::{ctx, share, arith, trunc,
//! approx}, fss, offline, ring. Chosen by `Ctx::reciprocal_pos`, `Ctx::reciprocal` and
//! `Ctx::inv_sqrt` (proto::approx) when the session's `Protocols` is `Fss`, and by
//! `Ctx::exp_nonpos` (with `ExpApprox::Spline`, `--exp spline`) and `Ctx::gelu_puma`;
//! sqrt, softmax, layernorm and the sigmoid follow.
//!
//! Derivation. Comparisons are of signed 64-bit values; the shift x ↦ x + 2^63 (written
//! x̄) turns them into unsigned ones over the whole ring, N = 2^64: x < b (signed) iff
//! x̄ < b̄ (unsigned). The dealer draws r (shared: r_0 + r_1) and one DCF key pair for
//! D(z) = [z < r] over 64 bits, payload 1 (`Request::FssMic`). Online:
//!   y = open(x + r)                        1 round, 1 word per element per party
//!   ȳ = y + 2^63 = x̄ + r (mod N).
//! For one breakpoint b: x̄ < b̄ iff ȳ lies in the cyclic interval [r, r + b̄) mod N, so
//!   [x̄ < b̄] = [ȳ < s] − [ȳ < r] + w,  s = (r + b̄) mod N,  w = [r + b̄ ≥ N]
//! (no wrap: the interval [r, s); a wrap: everything from r up plus [0, s)). The first
//! term is a comparison with s, not with the key's threshold r; compare instead
//! z = ȳ − b̄ mod N = y − b (the shifts cancel) with r. Subtracting b̄ from both sides,
//! z < r and ȳ < s agree unless exactly one of ȳ, s wrapped when b̄ was subtracted:
//!   [ȳ < s] = [z < r] + [ȳ < b̄] − [s < b̄],  and [s < b̄] = w
//! (if ȳ < b̄ ≤ s then z = ȳ − b̄ + N > s − b̄ = r: the left side is 1 and [z < r] 0; if
//! s < b̄ ≤ ȳ then z = ȳ − b̄ < N − b̄ + s = r: the left 0 and [z < r] 1). The wrap w
//! cancels, so
//!   [x < b] = D(y − b) − D(ȳ) + [ȳ < b̄],   [ȳ < b̄] = [y < b] as signed (public).
//! Every term that depends on both r and b (the carries w) cancels: the dealer shares
//! nothing per breakpoint, the key is the same for any breakpoints (one request per
//! element, whatever m), and each party evaluates its key at m + 1 public points, ȳ and
//! y − b_i. A piecewise-constant f with value c_0 below b_1, c_i on [b_i, b_(i+1)) and
//! c_m from b_m up is then local:
//!   f(x) = c_m + Σ_i (c_(i−1) − c_i)·[x < b_i],
//! and several f over the same breakpoints share the indicators (inv_sqrt takes y0 and
//! y0²). Exact for every 64-bit x (the domain is the ring's own); the opened y is
//! uniform, so it hides x, and the DCF shares hide which piece x is in.
//!
//! Cost per element: 1 round, 1 word; a key of `fss::mic_layout` (1576 bytes per party:
//! 64 levels) and m + 1 DCF evaluations (129 AES blocks each; `mpc-pipe kernels --fss`,
//! row `many`: 12.8 M points/s on one thread of this VAES host, load 1.7, so softmax's
//! reciprocal_pos costs ~14 µs per row and BERT-base's ~4M points ~0.3 s per party;
//! one key stays in cache across its points). On elementwise functions that run on every
//! element of an attention matrix or an FFN activation (BERT-base: 196k and 393k per
//! layer) the points count: a 64-piece exp would be ~150M points per party. The two here
//! keep them few: GeLU's three PUMA regions are 4 points per element (one key instead of
//! the crypten path's three comparison keys), and exp on x ≤ 0 (`exp_fss`) uses half-unit
//! pieces only over [−L, 0], L = ⌈(f + 1)·ln 2⌉ = 12 (below it e^x < u/2), with a cubic in
//! x − c(x): 25 points per element, ~59M per party for BERT-base, against 5 rounds per
//! layer saved. The points y − b_i of one element lie in a window as wide as the
//! breakpoints' span (2^20 for exp at f = 16, 2^31 for the signed reciprocal), so they
//! share the top levels of the key's tree: `fss::dcf::eval_many_shared` walks those once
//! per element (two prefixes: the window may straddle one boundary) and each point only
//! its last levels, bit for bit `eval_many` (`kernels --fss`: exp's 25 points 1.7-2.5x
//! faster than `eval_many` at load 7). Even so the exp spline, with a key per attention
//! element to deal, is slower end to end than the limit form on BERT-base on this host,
//! so it is `--exp spline`, not the default (ring::ExpApprox::default_for).
//!
//! Approximations (u = 2^-f one ulp; every truncation errs by less than 2u):
//!  * reciprocal: y0 piecewise constant on `PIECES_PER_OCTAVE` (8) log-spaced pieces per
//!    octave over [2^RECIPROCAL_LO_LOG2, 2^RECIPROCAL_HI_LOG2) = [2^-8, 2^14), the constant
//!    of each piece [a, b] being 2/(a + b), so e = 1 − x·y0 has |e| ≤ (ρ − 1)/(ρ + 1) =
//!    0.0433 (ρ = 2^(1/8)), plus the rounding of the breakpoints (to 0.0436) and of y0
//!    (by u/2, times x: |e| grows to ~0.17 just below 2^14, where y0 ≈ 4u). Then
//!    y = y0·(1 + e + e² + e³) = (1 − e⁴)/x: error e⁴/|x| exactly (relative 3.6e-6 up to
//!    x = 2^10; absolute below 1e-7 above).
//!  * inv_sqrt: y0 ≈ 1/√x and q = y0² on the same kind of pieces over
//!    [2^INV_SQRT_LO_LOG2, 2^INV_SQRT_HI_LOG2) = [2^-8, 2^20) (y0² of a piece [a, b] is
//!    2/(a + b)); q carries `Q_EXTRA_BITS` (8) more fractional bits, as y0² falls to 2^-20
//!    at the top. e = 1 − x·q, y = y0·(1 + e/2 + 3e²/8 + 5e³/16): the Taylor series of
//!    y0·(1 − e)^(−1/2) to e³; since 1/√x = √q/√(1 − e), the relative error is at most
//!    |(1 + η)^(−1/2) − 1| + (35/128)·e⁴/(1 − |e|)^4, η = q/y0² − 1 the rounding of q by
//!    at most 2^-25, so |η| ≲ 2^-25·x: 3e-5 at x = 2^10, up to 0.03 just below 2^20, where
//!    the relative error reaches ~1.6% of y ≈ 2^-10, i.e. about one ulp.
//!
//! Both take 4 rounds: the gate, x·y0 (or x·q), the stack {e², y0·e}, the stack
//! {y0e·e, y0e·e²}, their products from one product group (proto::products: each value
//! opened once): 6 words per element for reciprocal, 7 for inv_sqrt. The crypten
//! suite's take 31 and 17 rounds here (its ltz steps are fss gates).
//!  * exp on x ≤ 0 (`exp_fss`, 3 rounds): within e^c·2.63e-5 + ~4.2u of e^x (2.3 ulp
//!    measured at f = 16), exactly 0 below −L; CrypTen's limit form errs by ~2^-7 relative.
//!  * GeLU (`gelu_puma_fss`, 4 rounds): PUMA's polynomials, as accurate as `gelu_puma`;
//!    the last sum truncated exactly with a dealer mask (its own round).

use super::ctx::{Combine, Ctx};
use super::share::Share;
use crate::error::{Error, Result};
use crate::fss::{dcf, mic_layout};
use crate::offline::{FssMicKeys, Request};
use crate::ring::RingTensor;

/// Log-spaced pieces per octave of the first guesses.
pub const PIECES_PER_OCTAVE: u32 = 8;
/// reciprocal's domain [2^-8, 2^14).
pub const RECIPROCAL_LO_LOG2: i32 = -8;
pub const RECIPROCAL_HI_LOG2: i32 = 14;
/// inv_sqrt's domain [2^-8, 2^20).
pub const INV_SQRT_LO_LOG2: i32 = -8;
pub const INV_SQRT_HI_LOG2: i32 = 20;
/// Extra fractional bits of inv_sqrt's q = y0² (scale 2^(f + 8)): at the domain's top
/// y0² = 2^-20 would be 1/16 ulp at f = 16. The product x·q before truncation is then
/// ≈ 2^(2f + 8), so 2PC local truncation fails with probability ≈ 2^(2f + 8 − 63) per
/// element (2^-23 at f = 16; inv_sqrt runs once per row of a layernorm), and f above 27
/// overflows the ring (as any product of values ≥ 1 does above f = 31).
pub const Q_EXTRA_BITS: u32 = 8;

/// Piecewise-constant functions over shared breakpoints: `breaks` strictly increasing as
/// signed ring values, `values[k]` the m + 1 ring-encoded constants of function k (below
/// the first breakpoint, then from each breakpoint on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pieces {
    pub breaks: Vec<u64>,
    pub values: Vec<Vec<u64>>,
}

/// Log-spaced breakpoints ⌈2^(lo + k/P)·2^f⌉, k = 0..=(hi − lo)·P, as raw integers,
/// without repeats (at small f adjacent ones round to the same ulp).
fn log_breaks(f: u32, lo: i32, hi: i32) -> Vec<i64> {
    let p = PIECES_PER_OCTAVE as i32;
    let mut out: Vec<i64> = Vec::new();
    for k in 0..=(hi - lo) * p {
        let v = (2f64.powf(lo as f64 + k as f64 / p as f64) * 2f64.powi(f as i32)).ceil() as i64;
        let v = v.max(1);
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

/// round(v·2^bits) as a ring value.
fn enc(v: f64, bits: u32) -> u64 {
    crate::ring::encode_at(v, bits)
}

/// The first guess of 1/x: 0 below 0 (`signed`: mirrored, −y0(−x), for x < 0), 2^-lo on
/// [0, 2^lo), 2/(a + b) on each log-spaced piece [a, b] (its least and greatest raw
/// value), 0 from 2^hi up.
pub fn reciprocal_pieces(f: u32, signed: bool) -> Pieces {
    let b = log_breaks(f, RECIPROCAL_LO_LOG2, RECIPROCAL_HI_LOG2);
    let u = 2f64.powi(-(f as i32));
    let below = 2f64.powi(-RECIPROCAL_LO_LOG2);
    // Positive side: breaks 0, b_0..b_K; values 2^-lo, c_0..c_(K−1), 0.
    let mut pos_v = vec![enc(below, f)];
    for w in b.windows(2) {
        let (lo, hi) = (w[0] as f64 * u, (w[1] - 1) as f64 * u);
        pos_v.push(enc(2.0 / (lo + hi), f));
    }
    pos_v.push(0);
    let mut breaks = Vec::new();
    let mut values = Vec::new();
    if signed {
        // x ∈ [1 − b_(k+1), 1 − b_k) is |x| ∈ [b_k, b_(k+1) − 1], the positive piece k.
        breaks.extend(b.iter().rev().map(|&v| (1 - v) as u64));
        values.push(0);
        values.extend(
            pos_v[..pos_v.len() - 1]
                .iter()
                .rev()
                .map(|v| v.wrapping_neg()),
        );
    } else {
        values.push(0);
    }
    breaks.push(0);
    breaks.extend(b.iter().map(|&v| v as u64));
    values.extend(pos_v);
    let mut p = Pieces {
        breaks,
        values: vec![values],
    };
    p.drop_empty();
    p
}

impl Pieces {
    /// Remove empty pieces (equal adjacent breakpoints: at small f, 2^-8 is one ulp and the
    /// mirrored piece [1 − b_0, 0) is empty) and their constants.
    fn drop_empty(&mut self) {
        let mut i = 0;
        while i + 1 < self.breaks.len() {
            if self.breaks[i] == self.breaks[i + 1] {
                self.breaks.remove(i);
                for v in &mut self.values {
                    v.remove(i + 1);
                }
            } else {
                i += 1;
            }
        }
    }
}

/// The first guesses of inv_sqrt: y0 (scale 2^f) and q = y0² (scale 2^(f + Q_EXTRA_BITS),
/// from y0's rounded value so that the two agree): 0 below 0, 2^(−lo/2) on [0, 2^lo),
/// √(2/(a + b)) on each log-spaced piece [a, b], 0 from 2^hi up.
pub fn inv_sqrt_pieces(f: u32) -> Pieces {
    let b = log_breaks(f, INV_SQRT_LO_LOG2, INV_SQRT_HI_LOG2);
    let u = 2f64.powi(-(f as i32));
    let mut y0 = vec![0, enc(2f64.powf(-INV_SQRT_LO_LOG2 as f64 / 2.0), f)];
    for w in b.windows(2) {
        let (lo, hi) = (w[0] as f64 * u, (w[1] - 1) as f64 * u);
        y0.push(enc((2.0 / (lo + hi)).sqrt(), f));
    }
    y0.push(0);
    let q = y0
        .iter()
        .map(|&v| {
            let v = v as f64 * u;
            enc(v * v, f + Q_EXTRA_BITS)
        })
        .collect();
    let mut breaks = vec![0u64];
    breaks.extend(b.iter().map(|&v| v as u64));
    let mut p = Pieces {
        breaks,
        values: vec![y0, q],
    };
    p.drop_empty();
    p
}

/// PUMA GeLU's three region indicators (scale 1) over the breakpoints −enc(4),
/// −enc(1.95), enc(3) + 1: z1 = [−4 ≤ x < −1.95], z2 = [−1.95 ≤ x ≤ 3], z3 = [x > 3]
/// (x, and the thresholds, as `add_const` encodes them).
pub fn gelu_pieces(fp: crate::ring::FixedPoint) -> Pieces {
    Pieces {
        breaks: vec![
            fp.encode(4.0).wrapping_neg(),
            fp.encode(1.95).wrapping_neg(),
            fp.encode(3.0).wrapping_add(1),
        ],
        values: vec![vec![0, 1, 0, 0], vec![0, 0, 1, 0], vec![0, 0, 0, 1]],
    }
}

/// Pieces per unit of exp's spline: [c, c + 1/2), so f = x − c ∈ [0, 1/2].
pub const EXP_PIECES_PER_UNIT: u32 = 2;

/// Minimax cubic for e^t on [0, 1/2] (Remez exchange on a grid of 2·10^4 points; largest
/// error 2.62e-5, 1.72 ulp at f = 16, at the ends and two inner points): a0..a3.
pub const EXP_POLY: [f64; 4] = [
    0.9999737783272787,
    1.001637203153927,
    0.48410607949847057,
    0.2150091939883768,
];
/// |e^t − Σ a_k t^k| on [0, 1/2], rounded up.
pub const EXP_POLY_ERR: f64 = 2.63e-5;

/// exp's lower limit L: e^x < u/2 = 2^-(f+1) for x < −L, so 0 there is the correctly
/// rounded value: L = ⌈(f + 1)·ln 2⌉ (12 at f = 16, where e^-12 = 6.1e-6 < u/2 = 7.6e-6).
pub fn exp_lower_limit(f: u32) -> u32 {
    ((f + 1) as f64 * std::f64::consts::LN_2).ceil() as u32
}

/// exp's spline on x ≤ 0: breakpoints −L, −L + 1/2, …, −1/2 (2L of them, exact ring
/// values −k·2^(f−1)); per piece [c, c + 1/2) (the top one [−1/2, ∞)) the five constants
/// G_k = round(e^c·a_k·2^f), k = 0..3, and c itself (scale 2^f); below −L all five are 0.
/// Needs f ≥ 1 (half units on the grid).
pub fn exp_pieces(f: u32) -> Pieces {
    let l = exp_lower_limit(f) as i64;
    let p = EXP_PIECES_PER_UNIT as i64;
    let half = 1i64 << (f - 1);
    let breaks: Vec<u64> = (1..=l * p).rev().map(|k| (-k * half) as u64).collect();
    let mut values = vec![vec![0u64]; 5];
    for k in (1..=l * p).rev() {
        let c = -(k as f64) / p as f64;
        let g = c.exp();
        for (j, a) in EXP_POLY.iter().enumerate() {
            values[j].push(enc(g * a, f));
        }
        values[4].push((-k * half) as u64);
    }
    Pieces { breaks, values }
}

impl<'a> Ctx<'a> {
    /// Shares of every piecewise-constant function of `p` at x (module doc): 1 round,
    /// 1 word per element, one `Request::FssMic` key per element, m + 1 DCF evaluations
    /// per element. Results are at the scale the constants are encoded at.
    pub fn piecewise_constant(&self, x: &Share, p: &Pieces) -> Result<Vec<Share>> {
        Ok(self.mic_gate(x, p, None)?.0)
    }

    /// The gate of `piecewise_constant`; `extra` (words of x's shape: another value's
    /// masked opening, such as GeLU's ε = x − a of its product group) rides in the gate's
    /// message, so one round carries both (2 words per element), and comes back opened.
    pub(crate) fn mic_gate(
        &self,
        x: &Share,
        p: &Pieces,
        extra: Option<Vec<u64>>,
    ) -> Result<(Vec<Share>, Option<RingTensor>)> {
        if self.parties() != 2 {
            return Err(Error::Config(format!(
                "--protocols fss needs exactly 2 parties, got {}: its spline keys split a \
                 function between two parties (a DCF); use --protocols crypten",
                self.parties()
            )));
        }
        let m = p.breaks.len();
        if m == 0
            || p.breaks.windows(2).any(|w| w[0] as i64 >= w[1] as i64)
            || p.values.iter().any(|v| v.len() != m + 1)
        {
            return Err(Error::Protocol(format!(
                "a piecewise-constant function needs increasing breakpoints and one more \
                 value than its {m} breakpoints"
            )));
        }
        let len = x.len();
        let key = self.next_key();
        let k = FssMicKeys::from_material(self.material(key, Request::FssMic { len })?)?;
        let layout = mic_layout();
        if k.r.len() != len || k.dcf.last.len() != len * layout.last_words() {
            return Err(Error::Material(format!(
                "interval-containment key of {} elements for {len} elements",
                k.r.len()
            )));
        }
        let (y, extra) = match extra {
            Some(words) => {
                if !self.is_dry() && words.len() != len {
                    return Err(Error::Protocol(format!(
                        "{} words riding in the spline gate's message of {len} elements",
                        words.len()
                    )));
                }
                // One message: [x + r | extra].
                let mut msg = Vec::with_capacity(2 * len);
                msg.extend(
                    x.0.data()
                        .iter()
                        .zip(k.r.iter())
                        .map(|(a, r)| a.wrapping_add(*r)),
                );
                msg.extend(words);
                let mut o = self.open_flat(
                    "fss spline and a riding opening",
                    msg,
                    &[x.shape(), x.shape()],
                    Combine::Add,
                )?;
                let extra = o.pop().expect("two parts");
                (o.pop().expect("two parts"), Some(extra))
            }
            None => (self.open_masked("fss spline", x, &k.r)?, None),
        };
        let y = y.data();
        let per = m + 1;
        let v = if self.is_dry() {
            vec![0; len * per]
        } else {
            // Per element: ȳ = y + 2^63, then y − b_i for each breakpoint.
            let mut points = Vec::with_capacity(len * per);
            for &yi in y {
                points.push(yi ^ (1 << 63));
                points.extend(p.breaks.iter().map(|b| yi.wrapping_sub(*b)));
            }
            // The y − b_i lie in a window of span + 1 values (the breakpoints' span), so
            // they share all but their last w levels of the key's tree, one or two
            // prefixes: `eval_many_shared` walks those once per element, ȳ whole (bit
            // for bit `eval_many`; 1.7-2.5x its points/s on exp's 25 points,
            // `kernels --fss`, rows exp-many and exp-shared), at the w that walks the
            // fewest levels (`dcf::shared_window_bits`).
            let span = (p.breaks[m - 1] as i64).wrapping_sub(p.breaks[0] as i64) as u64;
            match dcf::shared_window_bits(layout.bits, span, m) {
                Some(w) => {
                    dcf::eval_many_shared(self.party(), k.dcf.keys(layout), per, 1, w, &points)?
                }
                None => dcf::eval_many(self.party(), k.dcf.keys(layout), per, &points)?,
            }
        };
        let own = u64::from(self.party() == 0);
        // d_i = c_(i−1) − c_i per function.
        let d: Vec<Vec<u64>> = p
            .values
            .iter()
            .map(|c| c.windows(2).map(|w| w[0].wrapping_sub(w[1])).collect())
            .collect();
        let mut out: Vec<Vec<u64>> = p.values.iter().map(|_| Vec::with_capacity(len)).collect();
        for (i, &yi) in y.iter().enumerate() {
            let vi = &v[i * per..(i + 1) * per];
            for ((o, c), d) in out.iter_mut().zip(&p.values).zip(&d) {
                let mut acc = own.wrapping_mul(c[m]);
                for (j, &b) in p.breaks.iter().enumerate() {
                    // [x < b_j] = D(y − b_j) − D(ȳ) + [y < b_j] (signed, public).
                    let public = own & u64::from((yi as i64) < (b as i64));
                    let s = vi[1 + j].wrapping_sub(vi[0]).wrapping_add(public);
                    acc = acc.wrapping_add(d[j].wrapping_mul(s));
                }
                o.push(acc);
            }
        }
        let out = out
            .into_iter()
            .map(|o| Share(RingTensor::from_vec(x.shape(), o)))
            .collect();
        Ok((out, extra))
    }

    /// 1/x under `--protocols fss` (module doc): y0 from the gate, e = 1 − x·y0,
    /// y = y0 + y0·e + y0·e² + y0·e³. 2PC: 4 rounds, 1 + 2 + 1 + 2 = 6 words per element
    /// (`refine`'s product group; 11 as Beaver products), one spline key (1576 B) and
    /// m + 1 = 179 (`signed`: 356) DCF evaluations.
    ///
    /// Domain 2^-8 ≤ |x| < 2^14 (for `signed`; else 2^-8 ≤ x < 2^14). With e = 1 − x·y0
    /// (module doc: |e| ≤ 0.0436 + |x|·u/2) the error is e⁴/|x| from the approximation
    /// and, from the five truncations (each < 2u), at most (2·S'·|y0| + 2·|e|·|y0| + 7)u,
    /// S' = 1 + 2|e| + 3e² ≈ 1.1: about (2.3/|x| + 7)u in all (1.4e-4 at x = 1, 9e-3 at
    /// x = 2^-8, where 1/x = 256; tests/spline.rs measures at most 2.2·(1/|x| + 1)u). On 0 ≤ x < 2^-8 the guess
    /// is 2^8 and e = 1 − 2^8·x ∈ (0, 1], so the result lies in [2^8, 2^10] (x = 0 gives
    /// 1024); from 2^14 up it is 0 (1/x < 4 ulp there, so within 4u). `reciprocal_pos` on
    /// x < 0 gives 0; `reciprocal` mirrors all of this to x < 0.
    pub(crate) fn reciprocal_fss(&self, x: &Share, signed: bool) -> Result<Share> {
        let p = reciprocal_pieces(self.frac_bits(), signed);
        let y0 = self.piecewise_constant(x, &p)?.pop().expect("one function");
        self.refine(x, &y0, None, self.frac_bits(), [1, 1, 1, 1], 0)
    }

    /// 1/√x under `--protocols fss` (module doc): y0 and q = y0² from the gate,
    /// e = 1 − x·q, y = y0·(1 + e/2 + 3e²/8 + 5e³/16). 2PC: 4 rounds, 1 + 2 + 2 + 2 = 7
    /// words per element (`refine`'s product group; 11 as Beaver products), one spline
    /// key, m + 1 = 227 DCF evaluations.
    ///
    /// Domain 2^-8 ≤ x < 2^20. The approximation errs by at most
    /// |(1 + η)^(−1/2) − 1| + (35/128)·e⁴/(1 − |e|)^4 relative (module doc), e = 1 − x·q
    /// (|e| ≤ 0.0436, up to ~0.08 in the top octaves, where y0 and q have few bits); the six
    /// truncations add at most (1.2·y0 + 5)u (1e-4 at x = 1). sqrt = x·inv_sqrt(x) errs
    /// by x times that plus 2u, so it is meant for x up to ~2^10. On 0 ≤ x < 2^-8 the guess is
    /// 2^4 with q = 2^8, so the result lies in [16, 35] (x = 0 gives 35); from 2^20 up and
    /// below 0 it is 0 (1/√x < 2^-10 there).
    pub(crate) fn inv_sqrt_fss(&self, x: &Share) -> Result<Share> {
        let f = self.frac_bits();
        let p = inv_sqrt_pieces(f);
        let mut g = self.piecewise_constant(x, &p)?;
        let q = g.pop().expect("q");
        let y0 = g.pop().expect("y0");
        // 16·T(e) = 16 + 8e + 6e² + 5e³.
        self.refine(x, &y0, Some(&q), f + Q_EXTRA_BITS, [16, 8, 6, 5], 4)
    }

    /// e^x for x ≤ 0 under `--protocols fss` with `ExpApprox::Spline` (`--exp spline`;
    /// softmax's x − max; not the default: ring::ExpApprox::default_for says why): the gate gives, per half-unit piece [c, c + 1/2) of [−L, 0], the constants
    /// G_k = e^c·a_k (`exp_pieces`) and c, so f = x − c ∈ [0, 1/2] is local and
    ///   e^x = e^c·e^f ≈ G0 + G1·f + G2·f² + (G3·f)·f²,
    ///   round 2: {f·f, G1·f, G3·f}   (f² and G3·f truncated, G1·f kept raw)
    ///   round 3: {G2·f², G3f·f²}     (raw)
    ///   y = G0 + trunc(G1·f + G2·f² + G3f·f², f),
    /// the products from one product group over f, G1, G3, G2, f², G3f (each opened once:
    /// f, G1, G3, G2 in round 2, f², G3f in round 3).
    /// 2PC: 3 rounds, 1 + 4 + 2 = 7 words per element (11 as Beaver products), one
    /// 1576-byte key and 2L + 1 DCF evaluations (25 at f = 16) per element; the limit form
    /// takes 8 rounds, 8 words.
    ///
    /// Accuracy (u = 2^-f), absolute, the sum of three terms: the cubic's
    /// e^c·EXP_POLY_ERR (≤ 1.6e-5 as c ≤ −1/2); the G_k rounded to the grid,
    /// (u/2)(1 + f + f² + f³) ≤ 0.94u; the truncations of f², G3·f and the sum,
    /// 2u·(1 + |G2| + |G3|·f + f²) ≤ 3.3u. In all at most 4.2u + 1.6e-5, 8e-5 at f = 16
    /// (tests/spline.rs measures 2.3 ulp at most); below −L the result is 0
    /// (e^x < u/2 there, exact zeros: every term has a factor G_k = 0). For x > 0 the top
    /// piece's cubic is extrapolated (f = x + 1/2 > 1/2): close to e^x just above 0, wrong
    /// further up; softmax never passes x > 0.
    pub(crate) fn exp_fss(&self, x: &Share) -> Result<Share> {
        let f = self.frac_bits();
        let n = x.shape();
        let mut v = self.piecewise_constant(x, &exp_pieces(f))?;
        let c = v.pop().expect("c");
        let fr = x.sub(&c);
        let (g0, g1, g2, g3) = (&v[0], &v[1], &v[2], &v[3]);
        const FR: u8 = 0;
        const G1: u8 = 1;
        const G3: u8 = 2;
        const G2: u8 = 3;
        const F2: u8 = 4;
        const G3F: u8 = 5;
        let pairs = [[FR, FR], [FR, G1], [FR, G3], [G2, F2], [F2, G3F]];
        let mut g = self.products(n, 6, &pairs)?;
        g.open(
            self,
            "fss exp powers",
            &[
                (FR.into(), &fr),
                (G1.into(), g1),
                (G3.into(), g3),
                (G2.into(), g2),
            ],
        )?;
        let g1f = g.product(1)?;
        let (f2, g3f) = self.trunc_bits_pair(&g.product(0)?, &g.product(2)?, f)?;
        let (f2, g3f) = (&f2, &g3f);
        g.open(
            self,
            "fss exp products",
            &[(F2.into(), f2), (G3F.into(), g3f)],
        )?;
        let sum = g1f.add(&g.product(3)?).add(&g.product(4)?);
        Ok(self.trunc_bits(&sum, f)?.add(g0))
    }

    /// PUMA's GeLU (proto::nn `gelu_puma`, the same polynomials and coefficients) under
    /// `--protocols fss`. The three indicators z1 = [−4 ≤ x < −1.95], z2 = [−1.95 ≤ x ≤ 3]
    /// and z3 = [x > 3] are piecewise-constant functions over the breakpoints −enc(4),
    /// −enc(1.95) and enc(3) + 1 (x > 3 is x ≥ enc(3) + 1 on the grid: exactly the crypten
    /// path's [3 − x < 0]), so one `FssMic` key per element gives all three (4 DCF
    /// evaluations) where the crypten suite's gate took three `ltz` keys. Every product
    /// comes from one product group (proto::products: each value opened once, whatever
    /// number of products it is in) over x, x², z1, z2, z3, P3, Q, z2·x², x⁴:
    ///   round 1 (the gate's): x                      then x² = x·x, truncated
    ///   round 2: x², z1, z2, z3                      → x·x², x²·x², z2·x², z3·x
    ///            (x³, x⁴ truncated; z2·x², z3·x exact)
    ///   round 3: P3, Q, z2·x², x⁴                    → z1·P3, z2·Q, (z2·x²)·x⁴
    ///            P3 = a0 + a1x + a2x² + a3x³ and Q = b0 + b1x + b2x² + b4x⁴ raw
    ///            (coefficients with f + 8 fractional bits, constants with 2f + 8), the
    ///            last truncated to z2·x⁶
    ///   round 4: y = trunc(z1·P3 + z2·Q + b6·z2x⁶, f + 8) + z3·x, the truncation exact
    ///            (a dealer mask, whatever `--trunc` says: see the end of the function).
    /// Selecting before the last power is what saves the crypten order's fourth and fifth
    /// rounds; opening each value once is what makes it 2 + 4 + 4 = 10 words per element
    /// (as separate Beaver products, which open both operands of each: 2 + 8 + 6 = 16),
    /// and the exact truncation one more. 4 rounds, one 1576-byte key, 17 words of product
    /// material and a truncation mask per element (the crypten suite's fss path: 5 rounds,
    /// 15 words, three 1536-byte keys).
    ///
    /// Accuracy: the polynomials are PUMA's, so against x·Φ(x) the errors of `gelu_puma`
    /// hold; the fixed point differs only in where it rounds: x², x³, x⁴ and the final sum
    /// are truncated once each as before (< 2u each), x⁶ is (x²)·x⁴ instead of (x³)²,
    /// erring by x²·e4 + x⁴·2u + 2u (e4 the error of x⁴), and the constants carry 2f + 8
    /// bits instead of f. Out-of-range powers (|x| large) are multiplied by an indicator
    /// that is an exact 0 and vanish exactly, as before; products that reach the final sum
    /// are all selected.
    pub(crate) fn gelu_puma_fss(&self, x: &Share) -> Result<Share> {
        use super::nn::{POLY_COEFF_EXTRA_BITS, PUMA_A, PUMA_B};
        // The group's values and pairs.
        const X: u8 = 0;
        const X2: u8 = 1;
        const Z1: u8 = 2;
        const Z2: u8 = 3;
        const Z3: u8 = 4;
        const P3: u8 = 5;
        const Q: u8 = 6;
        const Z2X2: u8 = 7;
        const X4: u8 = 8;
        const PAIRS: [[u8; 2]; 8] = [
            [X, X],
            [X, X2],
            [X2, X2],
            [X2, Z2],
            [X, Z3],
            [Z1, P3],
            [Z2, Q],
            [Z2X2, X4],
        ];
        let f = self.frac_bits();
        let n = x.shape();
        let mut g = self.products(n, 9, &PAIRS)?;
        let p = gelu_pieces(self.fixed());
        let (z, eps_x) = self.mic_gate(x, &p, Some(g.masked(X.into(), x)?))?;
        g.opened(X.into(), eps_x.expect("asked for"))?;
        let x2 = self.trunc_owned(g.product(0)?)?;
        let (z1, z2, z3) = (&z[0], &z[1], &z[2]);

        g.open(
            self,
            "fss gelu powers and selections",
            &[
                (X2.into(), &x2),
                (Z1.into(), z1),
                (Z2.into(), z2),
                (Z3.into(), z3),
            ],
        )?;
        let (x3, x4) = self.trunc_bits_pair(&g.product(1)?, &g.product(2)?, f)?;
        let (x3, x4) = (&x3, &x4);
        let (z2x2, z3x) = (g.product(3)?, g.product(4)?);

        let gb = POLY_COEFF_EXTRA_BITS;
        let coeff = |c: f64| crate::ring::encode_at(c, f + gb);
        let weighted = |c0: f64, terms: &[(f64, &Share)]| {
            let mut acc = RingTensor::zeros(n);
            for (c, p) in terms {
                acc.add_assign(&p.0.scale(coeff(*c)));
            }
            self.add_raw(&Share(acc), crate::ring::encode_at(c0, 2 * f + gb))
        };
        let p3 = weighted(
            PUMA_A[0],
            &[(PUMA_A[1], x), (PUMA_A[2], &x2), (PUMA_A[3], x3)],
        );
        let q = weighted(
            PUMA_B[0],
            &[(PUMA_B[1], x), (PUMA_B[2], &x2), (PUMA_B[4], x4)],
        );
        g.open(
            self,
            "fss gelu polynomials",
            &[
                (P3.into(), &p3),
                (Q.into(), &q),
                (Z2X2.into(), &z2x2),
                (X4.into(), x4),
            ],
        )?;
        let z2x6 = self.trunc_bits(&g.product(7)?, f)?;
        let mut acc = g.product(5)?.0;
        acc.add_assign(&g.product(6)?.0);
        acc.add_assign(&z2x6.0.scale(coeff(PUMA_B[6])));
        // The sum is held at 2f + gb = 40 fractional bits, where a local truncation is
        // wrong (by 2^(64-f-gb)) with probability |y|·2^-24 per element: over BERT-base's
        // 4.7M GeLU elements that made about one run in twelve wrong (6 of 72 seeded runs,
        // results/fss-runs.md). So it is truncated exactly with a dealer mask, whatever
        // `--trunc` says: one more round and word (0 of 48 seeded runs wrong).
        let y = self.trunc_bits_by(&Share(acc), f + gb, crate::ring::Trunc::Dealer)?;
        Ok(y.add(&z3x))
    }

    /// e = 1 − trunc(x·m, m_shift) with m = `q` (inv_sqrt) or y0 (reciprocal), then
    /// (c0·y0 + c1·y0e + c2·y0e² + c3·y0e³) / 2^shift: 3 rounds, {x·m}, {e², y0·e}, then
    /// {y0e·e, y0e·e²}, from one product group over x, m, y0, e, y0e, e² (each opened
    /// once: 2 + 1 + 2 words per element with m = y0, 2 + 2 + 2 with q; 10 as Beaver
    /// products), every product truncated as `mul` truncates.
    fn refine(
        &self,
        x: &Share,
        y0: &Share,
        q: Option<&Share>,
        m_shift: u32,
        c: [i64; 4],
        shift: u32,
    ) -> Result<Share> {
        const X: u8 = 0;
        const Y0: u8 = 1;
        const E: u8 = 2;
        const Y0E: u8 = 3;
        const E2: u8 = 4;
        const Q: u8 = 5;
        let f = self.frac_bits();
        let s = x.shape().to_vec();
        let m = if q.is_some() { Q } else { Y0 };
        let pairs = [[X, m], [E, E], [Y0, E], [E, Y0E], [Y0E, E2]];
        let mut g = self.products(&s, if q.is_some() { 6 } else { 5 }, &pairs)?;
        match q {
            Some(q) => g.open(self, "fss refine x, q", &[(X.into(), x), (Q.into(), q)])?,
            None => g.open(self, "fss refine x, y0", &[(X.into(), x), (Y0.into(), y0)])?,
        }
        let t = self.trunc_bits(&g.product(0)?, m_shift)?;
        let e = self.add_const(&t.neg(), 1.0);
        match q {
            Some(_) => g.open(self, "fss refine e, y0", &[(E.into(), &e), (Y0.into(), y0)])?,
            None => g.open(self, "fss refine e", &[(E.into(), &e)])?,
        }
        let (e2, y0e) = self.trunc_bits_pair(&g.product(1)?, &g.product(2)?, f)?;
        let (e2, y0e) = (&e2, &y0e);
        g.open(
            self,
            "fss refine y0e, e2",
            &[(Y0E.into(), y0e), (E2.into(), e2)],
        )?;
        let (y0e2, y0e3) = self.trunc_bits_pair(&g.product(3)?, &g.product(4)?, f)?;
        let sum = y0
            .mul_int(c[0])
            .add(&y0e.mul_int(c[1]))
            .add(&y0e2.mul_int(c[2]))
            .add(&y0e3.mul_int(c[3]));
        self.trunc_bits(&sum, shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table the approximations build, at every `--frac-bits` (1..=40), has strictly
    /// increasing breakpoints and one more constant than breakpoints per function, which
    /// `piecewise_constant` requires (at small f the low breakpoints collide and the
    /// mirrored piece below 0 is empty).
    #[test]
    fn piece_tables_are_well_formed_at_every_fraction_width() {
        for f in 1..=40 {
            for p in [
                reciprocal_pieces(f, false),
                reciprocal_pieces(f, true),
                inv_sqrt_pieces(f),
            ] {
                assert!(
                    p.breaks.windows(2).all(|w| (w[0] as i64) < (w[1] as i64)),
                    "f={f}: {:?}",
                    &p.breaks[..4]
                );
                assert!(
                    p.values.iter().all(|v| v.len() == p.breaks.len() + 1),
                    "f={f}"
                );
            }
        }
        // At f = 16 nothing collides: 22 and 28 octaves of 8 pieces.
        assert_eq!(reciprocal_pieces(16, false).breaks.len(), 1 + 22 * 8 + 1);
        assert_eq!(
            reciprocal_pieces(16, true).breaks.len(),
            2 * (22 * 8 + 1) + 1
        );
        assert_eq!(inv_sqrt_pieces(16).breaks.len(), 1 + 28 * 8 + 1);
    }
}
