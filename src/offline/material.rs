//! How the online phase obtains correlated randomness: by (operation key, part), never by
//! order, so every schedule (serial, chunked, multi-batch) finds the same material for the
//! same element. Typed views of it (Beaver triple, AND triple, bit pair, truncation mask,
//! square pair) for the protocols. Depends on offline::plan and error.
//!
//! A key is one operation of one graph node on the whole tensor. A lane computing a part
//! of that tensor asks for its part (`Part`, from `Request::widen`); the parts of one key
//! must not overlap (material used twice would leak), and a key's material is freed once
//! all of it has been taken.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::plan::{Part, Plan, Request};
use crate::error::{Error, Result};

/// Components of one request's material (e.g. [a, b, c] of a triple), flat words.
pub type Material = Vec<Vec<u64>>;

/// The words of one component a lane takes: owned (a request taken whole, or drawn for
/// the part), or a view into the whole stored component. Views spare the copy of every
/// chunk's material (a chunked ResNet copied its ~100 MB of material once more per run).
#[derive(Clone)]
pub enum Words {
    Owned(Vec<u64>),
    View(Arc<Vec<u64>>, Range<usize>),
    /// Words that live for the whole run (the dry run's zeros, `alloc::zero_words`).
    Static(&'static [u64]),
}

impl std::ops::Deref for Words {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        match self {
            Words::Owned(v) => v,
            Words::View(a, r) => &a[r.clone()],
            Words::Static(s) => s,
        }
    }
}

impl PartialEq for Words {
    fn eq(&self, o: &Words) -> bool {
        **self == **o
    }
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Words({} words)", self.len())
    }
}

impl Words {
    /// The words as an owned vector: no copy when owned.
    pub fn into_vec(self) -> Vec<u64> {
        match self {
            Words::Owned(v) => v,
            Words::View(a, r) => a[r].to_vec(),
            Words::Static(s) => s.to_vec(),
        }
    }
}

/// The components a lane takes for its part of one request.
pub type Taken = Vec<Words>;

/// Source of correlated randomness for the online phase.
pub trait MaterialSource: Send + Sync {
    /// `part` of the material for operation `key`, which must have been planned as `req`
    /// (the whole tensor's request).
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Taken>;
}

/// Owned words for every component.
pub fn owned(m: Material) -> Taken {
    m.into_iter().map(Words::Owned).collect()
}

/// Beaver triple of a product z = op(x, y): a (x's shape), b (y's), c = op(a, b).
pub struct Triple {
    pub a: Words,
    pub b: Words,
    pub c: Words,
}

/// AND triple over XOR shares: a, b (`rep` stacked copies of a's length), c = a & b.
pub struct AndTriple {
    pub a: Words,
    pub b: Words,
    pub c: Words,
}

/// Random bit r as an XOR share (bit 0 of each word) and an arithmetic share.
pub struct BitPair {
    pub xor: Words,
    pub arith: Words,
}

/// Mask of the dealer-assisted truncation: r, (r mod 2^63) >> shift, msb(r).
pub struct TruncMask {
    pub r: Words,
    pub r_hi: Words,
    pub r_msb: Words,
}

/// Square pair r, r².
pub struct SquarePair {
    pub r: Words,
    pub r2: Words,
}

/// Masks of a group of values opened once each and the products of pairs of them
/// (`Request::Products`, proto::products): this party's shares of a_k, then of a_i·a_j.
pub struct ProductMasks {
    pub masks: Vec<Words>,
    pub products: Vec<Words>,
}

/// A DCF key as material: this party's root seeds and the correction words both keys of
/// the pair share (`fss::dcf`).
pub struct DcfKey {
    pub seed: Words,
    pub scw: Words,
    pub vcw: Words,
    pub tcw: Words,
    pub last: Words,
}

impl DcfKey {
    /// The key read with `layout` (`fss::ltz_layout`, `fss::mic_layout`).
    pub fn keys(&self, layout: crate::fss::Layout) -> crate::fss::Keys<'_> {
        crate::fss::Keys {
            layout,
            seed: &self.seed,
            scw: &self.scw,
            vcw: &self.vcw,
            tcw: &self.tcw,
            last: &self.last,
        }
    }
}

/// Material of the `--protocols fss` comparison gate (`Request::FssLtz`): this party's
/// shares of the mask r, of msb(r) and (ReLU) of r·msb(r), and its DCF key.
pub struct FssLtzKeys {
    pub r: Words,
    pub r_msb: Words,
    pub r_r_msb: Option<Words>,
    pub dcf: DcfKey,
}

impl FssLtzKeys {
    pub fn from_material(m: Taken, relu: bool) -> Result<Self> {
        let ([r, seed, r_msb], r_r_msb, [scw, vcw, tcw, last]) = if relu {
            let [r, seed, r_msb, rr, scw, vcw, tcw, last] = components(m, "a ReLU key")?;
            ([r, seed, r_msb], Some(rr), [scw, vcw, tcw, last])
        } else {
            let [r, seed, r_msb, scw, vcw, tcw, last] = components(m, "a comparison key")?;
            ([r, seed, r_msb], None, [scw, vcw, tcw, last])
        };
        Ok(FssLtzKeys {
            r,
            r_msb,
            r_r_msb,
            dcf: DcfKey {
                seed,
                scw,
                vcw,
                tcw,
                last,
            },
        })
    }
}

/// Material of the `--protocols fss` multiple-interval-containment gate
/// (`Request::FssMic`): this party's share of the mask r and its DCF key for [z < r].
pub struct FssMicKeys {
    pub r: Words,
    pub dcf: DcfKey,
}

impl FssMicKeys {
    pub fn from_material(m: Taken) -> Result<Self> {
        let [r, seed, scw, vcw, tcw, last] = components(m, "an interval-containment key")?;
        Ok(FssMicKeys {
            r,
            dcf: DcfKey {
                seed,
                scw,
                vcw,
                tcw,
                last,
            },
        })
    }
}

fn components<const N: usize>(m: Taken, what: &str) -> Result<[Words; N]> {
    let got = m.len();
    m.try_into()
        .map_err(|_| Error::Material(format!("{what} must have {N} components, got {got}")))
}

impl Triple {
    pub fn from_material(m: Taken) -> Result<Self> {
        let [a, b, c] = components(m, "a Beaver triple")?;
        Ok(Triple { a, b, c })
    }
}
impl AndTriple {
    pub fn from_material(m: Taken) -> Result<Self> {
        let [a, b, c] = components(m, "an AND triple")?;
        Ok(AndTriple { a, b, c })
    }
}
impl BitPair {
    pub fn from_material(m: Taken) -> Result<Self> {
        let [xor, arith] = components(m, "a random bit pair")?;
        Ok(BitPair { xor, arith })
    }
}
impl TruncMask {
    pub fn from_material(m: Taken) -> Result<Self> {
        let [r, r_hi, r_msb] = components(m, "a truncation mask")?;
        Ok(TruncMask { r, r_hi, r_msb })
    }
}
impl ProductMasks {
    pub fn from_material(mut m: Taken, values: usize, pairs: usize) -> Result<Self> {
        if m.len() != values + pairs {
            return Err(Error::Material(format!(
                "product masks of {} components, not {values} masks and {pairs} products",
                m.len()
            )));
        }
        let products = m.split_off(values);
        Ok(ProductMasks { masks: m, products })
    }
}
impl SquarePair {
    pub fn from_material(m: Taken) -> Result<Self> {
        let [r, r2] = components(m, "a square pair")?;
        Ok(SquarePair { r, r2 })
    }
}

/// Copy the word ranges of each component out of `full`.
pub fn slice_material(full: &Material, ranges: &[Vec<Range<usize>>]) -> Material {
    full.iter()
        .zip(ranges)
        .map(|(c, rs)| {
            let mut v = Vec::with_capacity(rs.iter().map(|r| r.len()).sum());
            rs.iter().for_each(|r| v.extend_from_slice(&c[r.clone()]));
            v
        })
        .collect()
}

/// Which parts of a key's material are gone, so that no unit is handed out twice.
#[derive(Debug, Default)]
pub struct Used {
    parts: Vec<(usize, usize)>,
    units: usize,
}

impl Used {
    /// Record `part` of a request of `total` units; an error if any unit of it was taken
    /// before. Returns whether every unit is now taken.
    pub fn take(&mut self, key: u64, req: &Request, part: Part, total: usize) -> Result<bool> {
        let (s, e) = (part.start, part.start + part.len);
        if e > total || part.len == 0 {
            return Err(Error::Material(format!(
                "operation {key:#018x} ({req:?}): units {s}..{e} of {total}"
            )));
        }
        if self.parts.iter().any(|&(a, b)| s < b && a < e) {
            return Err(Error::Material(format!(
                "material for operation {key:#018x} ({req:?}) units {s}..{e} was already used"
            )));
        }
        self.parts.push((s, e));
        self.units += part.len;
        Ok(self.units == total)
    }
}

/// The request `key` was planned as, against the one asked for (every store's first check).
pub(super) fn check_planned(key: u64, req: &Request, planned: Option<&Request>) -> Result<()> {
    match planned {
        Some(p) if p == req => Ok(()),
        Some(p) => Err(Error::Material(format!(
            "operation {key:#018x} asks for {req:?} but the material was planned as {p:?}: the material was made for a different program"
        ))),
        None => Err(Error::Material(format!(
            "no material for operation {key:#018x} ({req:?}): it was never planned or was already used; the material does not match this program"
        ))),
    }
}

struct Entry {
    req: Request,
    material: Vec<Arc<Vec<u64>>>,
    taken: Mutex<Used>,
}

/// Expanded material of one party. Parts are copied out; a key is freed when all of it is
/// taken, and a request taken whole in one piece is moved out without a copy.
pub struct MaterialStore {
    items: Mutex<HashMap<u64, Arc<Entry>>>,
}

impl MaterialStore {
    pub fn new(items: HashMap<u64, (Request, Material)>) -> Self {
        let entry = |req: Request, material: Material| Entry {
            req,
            material: material.into_iter().map(Arc::new).collect(),
            taken: Mutex::new(Used::default()),
        };
        MaterialStore {
            items: Mutex::new(
                items
                    .into_iter()
                    .map(|(k, (req, m))| (k, Arc::new(entry(req, m))))
                    .collect(),
            ),
        }
    }

    /// Requests not wholly consumed yet (a complete run leaves none).
    pub fn remaining(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}

impl MaterialSource for MaterialStore {
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Taken> {
        let entry = self.items.lock().unwrap().get(&key).cloned();
        check_planned(key, req, entry.as_ref().map(|e| &e.req))?;
        let entry = entry.expect("checked above");
        let done = entry
            .taken
            .lock()
            .unwrap()
            .take(key, req, part, req.units())?;
        if done {
            self.items.lock().unwrap().remove(&key);
        }
        let ranges = req.component_ranges(part);
        // Taken whole in one piece: ours alone, moved out without a copy.
        if done && part.len == req.units() {
            if let Ok(e) = Arc::try_unwrap(entry) {
                return Ok(e
                    .material
                    .into_iter()
                    .map(|c| Words::Owned(Arc::try_unwrap(c).unwrap_or_else(|c| c.to_vec())))
                    .collect());
            }
            return Err(Error::Material(format!(
                "material for operation {key:#018x} still in use elsewhere"
            )));
        }
        Ok(entry
            .material
            .iter()
            .zip(ranges)
            .map(|(c, r)| Words::View(c.clone(), r[0].clone()))
            .collect())
    }
}

/// Dry-run source: records every request (once per key, whatever parts lanes take) and
/// hands out zeros of the right size: views of the process's zero region
/// (`alloc::zero_words`), which no request makes anyone allocate; where that region is
/// unavailable, of one shared zero buffer grown to the largest component asked for.
#[derive(Default)]
pub struct RecordingSource {
    entries: Mutex<HashMap<u64, (Request, Used)>>,
    /// Keys in the order first asked for (`Plan::order`).
    order: Mutex<Vec<u64>>,
    clash: Mutex<Option<String>>,
    zeros: Mutex<Arc<Vec<u64>>>,
}

impl RecordingSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorded plan (canonical order).
    pub fn into_plan(self) -> Result<Plan> {
        if let Some(msg) = self.clash.into_inner().unwrap() {
            return Err(Error::Protocol(msg));
        }
        let entries = self.entries.into_inner().unwrap();
        let mut plan = Plan::from_entries(entries.into_iter().map(|(k, (r, _))| (k, r)).collect());
        plan.order = self.order.into_inner().unwrap();
        Ok(plan)
    }
}

impl MaterialSource for RecordingSource {
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Taken> {
        let mut entries = self.entries.lock().unwrap();
        let (planned, taken) = entries.entry(key).or_insert_with(|| {
            self.order.lock().unwrap().push(key);
            (req.clone(), Used::default())
        });
        if planned != req {
            let msg = format!(
                "operation key {key:#018x} was used for {planned:?} and for {req:?} in one program"
            );
            *self.clash.lock().unwrap() = Some(msg.clone());
            return Err(Error::Protocol(msg));
        }
        if let Err(e) = taken.take(key, req, part, req.units()) {
            let msg = format!("operation key {key:#018x} was used twice in one program ({e})");
            *self.clash.lock().unwrap() = Some(msg.clone());
            return Err(Error::Protocol(msg));
        }
        drop(entries);
        let lens: Vec<usize> = req
            .component_ranges(part)
            .iter()
            .map(|rs| rs.iter().map(|r| r.len()).sum())
            .collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        if let Some(z) = crate::alloc::zero_words(longest) {
            return Ok(lens.into_iter().map(|n| Words::Static(&z[..n])).collect());
        }
        let zeros = {
            let mut z = self.zeros.lock().unwrap();
            if z.len() < longest {
                // Fresh zeroed pages: untouched (and costless) until something reads them.
                *z = Arc::new(vec![0; longest]);
            }
            z.clone()
        };
        Ok(lens
            .into_iter()
            .map(|n| Words::View(zeros.clone(), 0..n))
            .collect())
    }
}
