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

/// Source of correlated randomness for the online phase.
pub trait MaterialSource: Send + Sync {
    /// `part` of the material for operation `key`, which must have been planned as `req`
    /// (the whole tensor's request).
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Material>;
}

/// Beaver triple of a product z = op(x, y): a (x's shape), b (y's), c = op(a, b).
pub struct Triple {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    pub c: Vec<u64>,
}

/// AND triple over XOR shares: a, b (`rep` stacked copies of a's length), c = a & b.
pub struct AndTriple {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    pub c: Vec<u64>,
}

/// Random bit r as an XOR share (bit 0 of each word) and an arithmetic share.
pub struct BitPair {
    pub xor: Vec<u64>,
    pub arith: Vec<u64>,
}

/// Mask of the dealer-assisted truncation: r, (r mod 2^63) >> shift, msb(r).
pub struct TruncMask {
    pub r: Vec<u64>,
    pub r_hi: Vec<u64>,
    pub r_msb: Vec<u64>,
}

/// Square pair r, r².
pub struct SquarePair {
    pub r: Vec<u64>,
    pub r2: Vec<u64>,
}

fn components<const N: usize>(m: Material, what: &str) -> Result<[Vec<u64>; N]> {
    let got = m.len();
    m.try_into()
        .map_err(|_| Error::Material(format!("{what} must have {N} components, got {got}")))
}

impl Triple {
    pub fn from_material(m: Material) -> Result<Self> {
        let [a, b, c] = components(m, "a Beaver triple")?;
        Ok(Triple { a, b, c })
    }
}
impl AndTriple {
    pub fn from_material(m: Material) -> Result<Self> {
        let [a, b, c] = components(m, "an AND triple")?;
        Ok(AndTriple { a, b, c })
    }
}
impl BitPair {
    pub fn from_material(m: Material) -> Result<Self> {
        let [xor, arith] = components(m, "a random bit pair")?;
        Ok(BitPair { xor, arith })
    }
}
impl TruncMask {
    pub fn from_material(m: Material) -> Result<Self> {
        let [r, r_hi, r_msb] = components(m, "a truncation mask")?;
        Ok(TruncMask { r, r_hi, r_msb })
    }
}
impl SquarePair {
    pub fn from_material(m: Material) -> Result<Self> {
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
pub struct Taken {
    parts: Vec<(usize, usize)>,
    units: usize,
}

impl Taken {
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

fn check_planned(key: u64, req: &Request, planned: Option<&Request>) -> Result<()> {
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
    material: Material,
    taken: Mutex<Taken>,
}

/// Expanded material of one party. Parts are copied out; a key is freed when all of it is
/// taken, and a request taken whole in one piece is moved out without a copy.
pub struct MaterialStore {
    items: Mutex<HashMap<u64, Arc<Entry>>>,
}

impl MaterialStore {
    pub fn new(items: HashMap<u64, (Request, Material)>) -> Self {
        MaterialStore {
            items: Mutex::new(
                items
                    .into_iter()
                    .map(|(k, (req, material))| {
                        let taken = Mutex::new(Taken::default());
                        (
                            k,
                            Arc::new(Entry {
                                req,
                                material,
                                taken,
                            }),
                        )
                    })
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
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Material> {
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
            if part.len == req.units() {
                // Taken whole: ours alone now (or shared only with a lane that is copying
                // a part it was refused... which cannot be, parts never overlap).
                if let Ok(e) = Arc::try_unwrap(entry) {
                    return Ok(e.material);
                }
                return Err(Error::Material(format!(
                    "material for operation {key:#018x} still in use elsewhere"
                )));
            }
        }
        Ok(slice_material(&entry.material, &req.component_ranges(part)))
    }
}

/// Dry-run source: records every request (once per key, whatever parts lanes take) and
/// hands out zeros of the right size.
#[derive(Default)]
pub struct RecordingSource {
    entries: Mutex<HashMap<u64, (Request, Taken)>>,
    clash: Mutex<Option<String>>,
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
        Ok(Plan::from_entries(
            entries.into_iter().map(|(k, (r, _))| (k, r)).collect(),
        ))
    }
}

impl MaterialSource for RecordingSource {
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Material> {
        let mut entries = self.entries.lock().unwrap();
        let (planned, taken) = entries
            .entry(key)
            .or_insert_with(|| (req.clone(), Taken::default()));
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
        Ok(req
            .component_ranges(part)
            .iter()
            .map(|rs| vec![0; rs.iter().map(|r| r.len()).sum()])
            .collect())
    }
}
