//! `Request` (what one operation needs from the dealer) and `Plan` (every request of a
//! program, by operation key), with a canonical hash. Depends on sha2 and fss (key sizes).
//!
//! A request's components come in three classes, in this order: free (every party draws
//! its own from its seed), corrected (party 0 gets the dealer's words, the others draw)
//! and common (every party gets the same dealer's words: the correction words of FSS keys,
//! which both keys of a pair share).

use sha2::{Digest, Sha256};

/// Correlated randomness one online operation consumes. Shapes are public.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// Elementwise Beaver triple: a, b, c = a·b, `len` elements each.
    Mul { len: usize },
    /// Matrix triple: a [m×k], b [k×n], c = a·b [m×n].
    Matmul { m: usize, k: usize, n: usize },
    /// Convolution triple: a shaped like the input x [B,C,H,W], b like the kernel
    /// [O,C,KH,KW], c = conv2d(a, b, stride, padding).
    Conv2d {
        x: [usize; 4],
        w: [usize; 4],
        stride: usize,
        padding: usize,
    },
    /// Square pair: r, r² (`len` elements).
    Square { len: usize },
    /// Binary AND triple over 64-bit words: a (`len`), b (`len`·`rep`, element-major: the
    /// `rep` words of element i together), c = a AND b with a[i] broadcast over element
    /// i's `rep` words.
    And { len: usize, rep: usize },
    /// Random bits r shared both arithmetically and in XOR form (for B2A).
    Bit { len: usize },
    /// Truncation mask of the dealer-assisted truncation (N > 2, or 2 parties with
    /// `--trunc dealer`): r, (r mod 2^63) >> shift, and msb(r), arithmetic shares.
    Trunc { len: usize, shift: u32 },
    /// `batch` independent matrix triples a [m×k], b [k×n], c = a·b, stacked (products of
    /// two activations, such as attention's Q·Kᵀ and P·V per sample and head).
    BatchMatmul {
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
    },
    /// Triple of a convolution's input gradient (training): a shaped like the output
    /// gradient dy [B,O,OH,OW], b like the kernel [O,C,KH,KW],
    /// c = conv2d_grad_input(a, b) [B,C,H,W] for the input's spatial size `in_hw`.
    ConvGradInput {
        dy: [usize; 4],
        w: [usize; 4],
        in_hw: [usize; 2],
        stride: usize,
        padding: usize,
    },
    /// Triple of a convolution's weight gradient (training): a shaped like the input
    /// x [B,C,H,W], b like the output gradient dy [B,O,OH,OW],
    /// c = conv2d_grad_weight(a, b) [O,C,KH,KW] for the kernel size `k_hw`.
    ConvGradWeight {
        x: [usize; 4],
        dy: [usize; 4],
        k_hw: [usize; 2],
        stride: usize,
        padding: usize,
    },
    /// The `--protocols fss` comparison gate (proto::fss) on `len` elements: a mask r and
    /// a DCF key pair for [x̂ mod 2^63 < r mod 2^63] with payload 1 − 2·msb(r), plus shares
    /// of msb(r); with `relu`, the payload's second word r·(1 − 2·msb(r)) and shares of
    /// r·msb(r), from which ReLU follows without a product round. Components (per element
    /// words): free r (1), root seed (2); corrected msb(r) (1), [r·msb(r) (1)]; common
    /// the DCF's s_CW, V_CW, t_CW and CW^(n+1) (`fss::ltz_layout`).
    FssLtz { len: usize, relu: bool },
    /// The `--protocols fss` multiple-interval-containment gate (proto::spline) on `len`
    /// elements: a mask r and a DCF key pair for [z < r] over the whole 64-bit ring with
    /// payload 1. Nothing depends on the breakpoints (proto::spline derives why no wrap
    /// term needs the dealer), so one request serves any number of them. Components (per
    /// element words): free r (1), root seed (2); common the DCF's s_CW, V_CW, t_CW and
    /// CW^(n+1) (`fss::mic_layout`).
    FssMic { len: usize },
    /// Products of values each opened once (proto::products): `values` masks a_k (free,
    /// `len` words each), then for each pair [i, j] of `pairs` (i ≤ j < values) the
    /// product a_i·a_j (corrected at party 0, `len` words each). A value opened as
    /// ε_k = v_k − a_k serves every product it is in: a Beaver triple is
    /// `values: 2, pairs: [[0, 1]]`, a square pair `values: 1, pairs: [[0, 0]]`.
    Products {
        len: usize,
        values: usize,
        pairs: Vec<[u8; 2]>,
    },
}

/// Largest `values` of a `Request::Products` (a file or peer naming more is refused).
pub const PRODUCTS_MAX_VALUES: usize = 64;
/// Largest number of `pairs` of a `Request::Products`.
pub const PRODUCTS_MAX_PAIRS: usize = 256;

/// Words per element of each component of `Request::FssLtz`, in draw order.
fn fss_ltz_words(relu: bool) -> Vec<usize> {
    let l = crate::fss::ltz_layout(relu);
    let mut w = vec![1, crate::fss::Layout::SEED_WORDS, 1];
    if relu {
        w.push(1);
    }
    w.extend([l.scw_words(), l.vcw_words(), l.tcw_words(), l.last_words()]);
    w
}

/// Words per element of each component of `Request::FssMic`, in draw order.
fn fss_mic_words() -> Vec<usize> {
    let l = crate::fss::mic_layout();
    vec![
        1,
        crate::fss::Layout::SEED_WORDS,
        l.scw_words(),
        l.vcw_words(),
        l.tcw_words(),
        l.last_words(),
    ]
}

/// The part of a tensor one lane computes: `count` of `total` equal units (rows of the
/// batch, elements, channels at batch 1), starting at unit `start`. The serial schedule's
/// one lane has `Window::WHOLE`. Material is addressed by (node key, window): a lane's
/// request is a slice of the whole tensor's request, so every schedule uses the same
/// material for the same element (see `Request::widen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: usize,
    pub count: usize,
    pub total: usize,
}

impl Window {
    pub const WHOLE: Window = Window {
        start: 0,
        count: 1,
        total: 1,
    };
    pub fn is_whole(&self) -> bool {
        self.start == 0 && self.count == self.total
    }
    /// Units `i0..i1` of this window's tensor, each of its units split into `q` sub-units.
    pub fn narrow(&self, q: usize, i0: usize, i1: usize) -> Window {
        Window {
            start: self.start * q + i0,
            count: i1 - i0,
            total: self.total * q,
        }
    }
}

/// Units `start..start + len` of a request (elements, or matrices of a batched product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub start: usize,
    pub len: usize,
}

impl Request {
    /// Words of (a, b, c)-like components as drawn for this request, in draw order.
    pub fn component_lens(&self) -> Vec<usize> {
        match *self {
            Request::Mul { len } => vec![len, len, len],
            Request::Matmul { m, k, n } => vec![m * k, k * n, m * n],
            Request::Conv2d {
                x,
                w,
                stride,
                padding,
            } => {
                let oh = crate::kernels::conv_out(x[2], w[2], stride, padding);
                let ow = crate::kernels::conv_out(x[3], w[3], stride, padding);
                vec![
                    x.iter().product(),
                    w.iter().product(),
                    x[0] * w[0] * oh * ow,
                ]
            }
            Request::Square { len } => vec![len, len],
            Request::And { len, rep } => vec![len, rep * len, rep * len],
            Request::Bit { len } => vec![len, len],
            Request::Trunc { len, .. } => vec![len, len, len],
            Request::BatchMatmul { batch, m, k, n } => {
                vec![batch * m * k, batch * k * n, batch * m * n]
            }
            Request::ConvGradInput { dy, w, in_hw, .. } => vec![
                dy.iter().product(),
                w.iter().product(),
                dy[0] * w[1] * in_hw[0] * in_hw[1],
            ],
            Request::ConvGradWeight { x, dy, k_hw, .. } => vec![
                x.iter().product(),
                dy.iter().product(),
                dy[1] * x[1] * k_hw[0] * k_hw[1],
            ],
            Request::FssLtz { len, relu } => fss_ltz_words(relu).iter().map(|w| w * len).collect(),
            Request::FssMic { len } => fss_mic_words().iter().map(|w| w * len).collect(),
            Request::Products {
                len,
                values,
                ref pairs,
            } => vec![len; values + pairs.len()],
        }
    }

    /// Units a lane can take a part of (1: only the whole).
    pub fn units(&self) -> usize {
        match *self {
            Request::Mul { len }
            | Request::Square { len }
            | Request::And { len, .. }
            | Request::Bit { len }
            | Request::Trunc { len, .. }
            | Request::FssLtz { len, .. }
            | Request::FssMic { len }
            | Request::Products { len, .. } => len,
            Request::BatchMatmul { batch, .. } => batch,
            Request::Matmul { .. }
            | Request::Conv2d { .. }
            | Request::ConvGradInput { .. }
            | Request::ConvGradWeight { .. } => 1,
        }
    }

    /// The whole tensor's request of which `self` is the part a lane with window `w`
    /// asks for, and that part. Each unit of the window is the same number of the
    /// request's units (row-major layouts keep a lane's rows contiguous), so the part is
    /// found without knowing the op.
    pub fn widen(&self, w: Window) -> std::result::Result<(Request, Part), String> {
        if w.is_whole() {
            return Ok((
                self.clone(),
                Part {
                    start: 0,
                    len: self.units(),
                },
            ));
        }
        let units = self.units();
        if w.count == 0
            || !units.is_multiple_of(w.count)
            || matches!(
                self,
                Request::Matmul { .. }
                    | Request::Conv2d { .. }
                    | Request::ConvGradInput { .. }
                    | Request::ConvGradWeight { .. }
            )
        {
            return Err(format!(
                "{self:?} is not a part of {} of {} units of a tensor",
                w.count, w.total
            ));
        }
        let u = units / w.count;
        let full = u * w.total;
        let mut r = self.clone();
        match &mut r {
            Request::Mul { len }
            | Request::Square { len }
            | Request::And { len, .. }
            | Request::Bit { len }
            | Request::Trunc { len, .. }
            | Request::FssLtz { len, .. }
            | Request::FssMic { len }
            | Request::Products { len, .. } => *len = full,
            Request::BatchMatmul { batch, .. } => *batch = full,
            Request::Matmul { .. }
            | Request::Conv2d { .. }
            | Request::ConvGradInput { .. }
            | Request::ConvGradWeight { .. } => unreachable!(),
        }
        Ok((
            r,
            Part {
                start: u * w.start,
                len: units,
            },
        ))
    }

    /// Word ranges of each component that make up `part` (every layout keeps a part of a
    /// component contiguous, so one range each; a list for the file and slicing helpers).
    pub fn component_ranges(&self, part: Part) -> Vec<Vec<std::ops::Range<usize>>> {
        let (s, e) = (part.start, part.start + part.len);
        let lens = self.component_lens();
        match *self {
            Request::Mul { .. }
            | Request::Square { .. }
            | Request::Bit { .. }
            | Request::Trunc { .. }
            | Request::Products { .. } => lens
                .iter()
                .map(|_| std::iter::once(s..e).collect())
                .collect(),
            Request::And { rep, .. } => vec![
                std::iter::once(s..e).collect(),
                std::iter::once(s * rep..e * rep).collect(),
                std::iter::once(s * rep..e * rep).collect(),
            ],
            Request::FssLtz { relu, .. } => fss_ltz_words(relu)
                .iter()
                .map(|&w| std::iter::once(s * w..e * w).collect())
                .collect(),
            Request::FssMic { .. } => fss_mic_words()
                .iter()
                .map(|&w| std::iter::once(s * w..e * w).collect())
                .collect(),
            Request::BatchMatmul { m, k, n, .. } => vec![
                vec![s * m * k..e * m * k],
                vec![s * k * n..e * k * n],
                vec![s * m * n..e * m * n],
            ],
            Request::Matmul { .. }
            | Request::Conv2d { .. }
            | Request::ConvGradInput { .. }
            | Request::ConvGradWeight { .. } => lens
                .iter()
                .map(|&l| std::iter::once(0..l).collect())
                .collect(),
        }
    }

    /// Number of leading components every party draws itself; the rest are corrected at
    /// party 0 (seed trick, protocols.md §2.3).
    pub fn free_components(&self) -> usize {
        match self {
            Request::Mul { .. }
            | Request::Matmul { .. }
            | Request::Conv2d { .. }
            | Request::BatchMatmul { .. }
            | Request::ConvGradInput { .. }
            | Request::ConvGradWeight { .. }
            | Request::And { .. } => 2,
            Request::Square { .. } | Request::Bit { .. } | Request::Trunc { .. } => 1,
            Request::FssLtz { .. } | Request::FssMic { .. } => 2,
            Request::Products { values, .. } => *values,
        }
    }

    /// Number of trailing components dealt in full to every party (see the module doc).
    pub fn common_components(&self) -> usize {
        match self {
            Request::FssLtz { .. } | Request::FssMic { .. } => 4,
            _ => 0,
        }
    }

    /// Number of leading components a party other than 0 draws from its seed (free and
    /// corrected); the rest are common.
    pub fn drawn_components(&self) -> usize {
        self.component_lens().len() - self.common_components()
    }

    /// Lengths of the components the dealer hands `party` (party 0: the corrected and
    /// common ones; others: the common ones), in component order.
    pub fn dealt_lens(&self, party: usize) -> Vec<usize> {
        let lens = self.component_lens();
        let from = if party == 0 {
            self.free_components()
        } else {
            self.drawn_components()
        };
        lens[from..].to_vec()
    }

    /// Canonical byte encoding (for hashing and files).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
        match *self {
            Request::Mul { len } => {
                put(1);
                put(len as u64)
            }
            Request::Matmul { m, k, n } => {
                put(2);
                put(m as u64);
                put(k as u64);
                put(n as u64)
            }
            Request::Conv2d {
                x,
                w,
                stride,
                padding,
            } => {
                put(3);
                x.iter().chain(w.iter()).for_each(|&d| put(d as u64));
                put(stride as u64);
                put(padding as u64)
            }
            Request::Square { len } => {
                put(4);
                put(len as u64)
            }
            Request::And { len, rep } => {
                put(5);
                put(len as u64);
                put(rep as u64)
            }
            Request::Bit { len } => {
                put(6);
                put(len as u64)
            }
            Request::Trunc { len, shift } => {
                put(7);
                put(len as u64);
                put(shift as u64)
            }
            Request::BatchMatmul { batch, m, k, n } => {
                put(8);
                put(batch as u64);
                put(m as u64);
                put(k as u64);
                put(n as u64)
            }
            Request::ConvGradInput {
                dy,
                w,
                in_hw,
                stride,
                padding,
            } => {
                put(9);
                dy.iter()
                    .chain(w.iter())
                    .chain(in_hw.iter())
                    .for_each(|&d| put(d as u64));
                put(stride as u64);
                put(padding as u64)
            }
            Request::ConvGradWeight {
                x,
                dy,
                k_hw,
                stride,
                padding,
            } => {
                put(10);
                x.iter()
                    .chain(dy.iter())
                    .chain(k_hw.iter())
                    .for_each(|&d| put(d as u64));
                put(stride as u64);
                put(padding as u64)
            }
            Request::FssLtz { len, relu } => {
                put(11);
                put(len as u64);
                put(relu as u64)
            }
            Request::FssMic { len } => {
                put(12);
                put(len as u64)
            }
            Request::Products {
                len,
                values,
                ref pairs,
            } => {
                put(13);
                put(len as u64);
                put(values as u64);
                put(pairs.len() as u64);
                pairs
                    .iter()
                    .for_each(|&[i, j]| put(u64::from(i) << 8 | u64::from(j)));
            }
        }
    }

    /// Inverse of `encode`; `None` on a malformed record.
    pub fn decode(words: &mut impl Iterator<Item = u64>) -> Option<Request> {
        let mut next = || words.next().map(|v| v as usize);
        Some(match next()? {
            1 => Request::Mul { len: next()? },
            2 => Request::Matmul {
                m: next()?,
                k: next()?,
                n: next()?,
            },
            3 => {
                let mut d = [0usize; 10];
                for v in d.iter_mut() {
                    *v = next()?;
                }
                Request::Conv2d {
                    x: [d[0], d[1], d[2], d[3]],
                    w: [d[4], d[5], d[6], d[7]],
                    stride: d[8],
                    padding: d[9],
                }
            }
            4 => Request::Square { len: next()? },
            5 => Request::And {
                len: next()?,
                rep: next()?,
            },
            6 => Request::Bit { len: next()? },
            7 => Request::Trunc {
                len: next()?,
                shift: next()? as u32,
            },
            8 => Request::BatchMatmul {
                batch: next()?,
                m: next()?,
                k: next()?,
                n: next()?,
            },
            t @ (9 | 10) => {
                let mut d = [0usize; 12];
                for v in d.iter_mut() {
                    *v = next()?;
                }
                let (a, b, hw) = (
                    [d[0], d[1], d[2], d[3]],
                    [d[4], d[5], d[6], d[7]],
                    [d[8], d[9]],
                );
                if t == 9 {
                    Request::ConvGradInput {
                        dy: a,
                        w: b,
                        in_hw: hw,
                        stride: d[10],
                        padding: d[11],
                    }
                } else {
                    Request::ConvGradWeight {
                        x: a,
                        dy: b,
                        k_hw: hw,
                        stride: d[10],
                        padding: d[11],
                    }
                }
            }
            11 => Request::FssLtz {
                len: next()?,
                relu: match next()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            },
            12 => Request::FssMic { len: next()? },
            13 => {
                let len = next()?;
                let values = next()?;
                let count = next()?;
                if values == 0 || values > PRODUCTS_MAX_VALUES || count > PRODUCTS_MAX_PAIRS {
                    return None;
                }
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count {
                    let v = next()?;
                    let (i, j) = (v >> 8, v & 0xff);
                    if v >> 16 != 0 || i > j || j >= values {
                        return None;
                    }
                    pairs.push([i as u8, j as u8]);
                }
                Request::Products { len, values, pairs }
            }
            _ => return None,
        })
    }
}

/// Every request of one program, sorted by operation key.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub entries: Vec<(u64, Request)>,
    /// The keys in the order the dry run first asked for them (the order the online phase
    /// will, but for lanes running ahead): the order a streaming dealer makes material in.
    /// Empty for a plan read from a file; not part of the plan's identity (hash, equality).
    pub order: Vec<u64>,
}

impl PartialEq for Plan {
    fn eq(&self, o: &Plan) -> bool {
        self.entries == o.entries
    }
}
impl Eq for Plan {}

impl Plan {
    /// Canonical form: sorted by key (lanes on several threads record in any order).
    pub fn from_entries(mut entries: Vec<(u64, Request)>) -> Plan {
        entries.sort_by_key(|e| e.0);
        Plan {
            entries,
            order: Vec::new(),
        }
    }

    /// The entries in first-use order (`order`), then any `order` lacks, by key.
    pub fn in_use_order(&self) -> Vec<(u64, &Request)> {
        let by_key: std::collections::HashMap<u64, &Request> =
            self.entries.iter().map(|(k, r)| (*k, r)).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(self.entries.len());
        for k in &self.order {
            if let Some(r) = by_key.get(k) {
                if seen.insert(*k) {
                    out.push((*k, *r));
                }
            }
        }
        for (k, r) in &self.entries {
            if seen.insert(*k) {
                out.push((*k, r));
            }
        }
        out
    }

    /// SHA-256 over the canonical encoding: two programs share a hash iff they request the
    /// same material under the same keys.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut buf = Vec::new();
        for (key, req) in &self.entries {
            buf.clear();
            buf.extend_from_slice(&key.to_le_bytes());
            req.encode(&mut buf);
            h.update(&buf);
        }
        h.finalize().into()
    }

    /// Total words of material per party if every component were stored.
    pub fn total_words(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, r)| r.component_lens().iter().sum::<usize>())
            .sum()
    }

    /// What the dealer must do for `parties` parties, whatever its implementation: the
    /// keystream words it draws (every component of every party, less party 0's corrected
    /// ones) and the multiply-accumulates of its matrix and convolution triples. Its time
    /// is bounded below by these at the measured PRG and GEMM rates (`mpc-pipe kernels`).
    pub fn dealer_work(&self, parties: usize) -> DealerWork {
        let mut w = DealerWork::default();
        for (_, r) in &self.entries {
            let lens = r.component_lens();
            let all: usize = lens.iter().sum();
            let corrected: usize = lens[r.free_components()..r.drawn_components()].iter().sum();
            let common: usize = lens[r.drawn_components()..].iter().sum();
            w.prg_words += ((all - common) * parties - corrected) as u64;
            if let Request::FssLtz { len, relu } = *r {
                // Gen: 2 + w blocks per party per level and one more each (fss::dcf).
                let l = crate::fss::ltz_layout(relu);
                w.aes_blocks += (len * (2 * (2 + l.width) * l.bits as usize + 2)) as u64;
            }
            if let Request::FssMic { len } = *r {
                let l = crate::fss::mic_layout();
                w.aes_blocks += (len * (2 * (2 + l.width) * l.bits as usize + 2)) as u64;
            }
            w.macs += match *r {
                Request::Matmul { m, k, n } => (m * k * n) as u64,
                Request::BatchMatmul { batch, m, k, n } => (batch * m * k * n) as u64,
                Request::Conv2d { w: wt, .. } => (lens[2] * wt[1] * wt[2] * wt[3]) as u64,
                // Every element of dY meets a C×KH×KW slice of the kernel.
                Request::ConvGradInput { w: wt, .. } => (lens[0] * wt[1] * wt[2] * wt[3]) as u64,
                // Every weight gradient sums B×OH×OW products.
                Request::ConvGradWeight { dy, .. } => (lens[2] * dy[0] * dy[2] * dy[3]) as u64,
                _ => 0,
            };
        }
        w
    }
}

/// The dealer's unavoidable work for a plan (`Plan::dealer_work`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DealerWork {
    /// 64-bit keystream words drawn.
    pub prg_words: u64,
    /// Multiply-accumulates of the matrix and convolution triples' products.
    pub macs: u64,
    /// Fixed-key AES blocks of FSS key generation (`--protocols fss`).
    pub aes_blocks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(r: &Request) -> Vec<u64> {
        let mut b = Vec::new();
        r.encode(&mut b);
        b.chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// A product group's record decodes to itself, and a record naming a pair out of
    /// order or past its values, no values, too many values or pairs, or ending early is
    /// refused (a material file is read with this).
    #[test]
    fn product_groups_round_trip_and_malformed_records_are_refused() {
        let r = Request::Products {
            len: 7,
            values: 9,
            pairs: vec![[0, 0], [0, 1], [3, 8]],
        };
        let w = words(&r);
        assert_eq!(w, vec![13, 7, 9, 3, 0, 1, 3 << 8 | 8]);
        assert_eq!(Request::decode(&mut w.iter().copied()), Some(r));
        for bad in [
            vec![13, 7, 9, 1, 1 << 8],      // i > j
            vec![13, 7, 9, 1, 9],           // j past the values
            vec![13, 7, 9, 1, 1 << 16 | 1], // a word that is no pair
            vec![13, 7, 0, 0],              // no values
            vec![13, 7, PRODUCTS_MAX_VALUES as u64 + 1, 0],
            vec![13, 7, 9, PRODUCTS_MAX_PAIRS as u64 + 1],
            vec![13, 7, 9, 2, 0], // ends early
        ] {
            assert_eq!(
                Request::decode(&mut bad.iter().copied()),
                None,
                "{bad:?} accepted"
            );
        }
    }
}
