//! The trusted dealer (CrypTen's TTP provider with its seed trick, protocols.md §2.3):
//! every party's shares of every tuple come from a PRG seeded by the dealer; only party 0
//! receives real data, one correction per tuple. Depends on ring, kernels, prg, plan.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use rayon::prelude::*;

use super::material::{Material, MaterialSource, MaterialStore};
use super::plan::{Plan, Request};
use crate::error::{Error, Result};
use crate::kernels;
use crate::prg::{fresh_seed, Prg, Seed};
use crate::ring::RingTensor;

/// What one party receives from the dealer.
#[derive(Clone)]
pub struct PartyMaterial {
    pub party: usize,
    pub parties: usize,
    pub session: u64,
    pub plan: Arc<Plan>,
    pub plan_hash: [u8; 32],
    /// This party's PRG seed; its shares are drawn from streams keyed by operation.
    pub seed: Seed,
    /// Party 0 only: the correction components of each request, by key.
    pub corrections: HashMap<u64, Material>,
}

/// Draw components `comps` of a party's material for `req` under `key`, restricted to the
/// word ranges `ranges` of each (all of `req`'s components in one keystream, in order, so
/// a part is drawn by seeking without drawing the rest).
fn draw(
    seed: &Seed,
    key: u64,
    req: &Request,
    comps: std::ops::Range<usize>,
    ranges: &[Vec<std::ops::Range<usize>>],
) -> Material {
    let lens = req.component_lens();
    let mut out: Material = Vec::with_capacity(comps.len());
    for j in comps {
        let base: usize = lens[..j].iter().sum();
        let mut v = vec![0u64; ranges[j].iter().map(|r| r.len()).sum()];
        let mut off = 0;
        for r in &ranges[j] {
            Prg::at(seed, key, base + r.start).fill_u64(&mut v[off..off + r.len()]);
            off += r.len();
        }
        if j == 0 && matches!(req, Request::Bit { .. }) {
            // Component 0 of a random-bit pair is this party's XOR share of a single bit.
            v.iter_mut().for_each(|x| *x &= 1);
        }
        out.push(v);
    }
    out
}

/// Every word of components `comps` of `req`.
fn draw_whole(seed: &Seed, key: u64, req: &Request, comps: std::ops::Range<usize>) -> Material {
    let whole = req.component_ranges(super::plan::Part {
        start: 0,
        len: req.units(),
    });
    draw(seed, key, req, comps, &whole)
}

fn sum(parts: &[&Vec<u64>]) -> Vec<u64> {
    let mut acc = vec![0u64; parts[0].len()];
    for p in parts {
        acc.iter_mut()
            .zip(p.iter())
            .for_each(|(a, b)| *a = a.wrapping_add(*b));
    }
    acc
}

fn xor(parts: &[&Vec<u64>]) -> Vec<u64> {
    let mut acc = vec![0u64; parts[0].len()];
    for p in parts {
        acc.iter_mut().zip(p.iter()).for_each(|(a, b)| *a ^= *b);
    }
    acc
}

/// The correction party 0 needs so that the shares of component `j` reconstruct to `full`.
fn correction(full: Vec<u64>, others: &[&Vec<u64>], binary: bool) -> Vec<u64> {
    let mut c = full;
    for o in others {
        for (x, y) in c.iter_mut().zip(o.iter()) {
            *x = if binary { *x ^ *y } else { x.wrapping_sub(*y) };
        }
    }
    c
}

/// The plaintext values of the corrected components, given every party's free components.
fn corrected_values(req: &Request, free: &[&Material]) -> Vec<Vec<u64>> {
    let comp = |j: usize| free.iter().map(|m| &m[j]).collect::<Vec<_>>();
    match *req {
        Request::Mul { .. } => {
            let (a, b) = (sum(&comp(0)), sum(&comp(1)));
            let mut c = vec![0u64; a.len()];
            kernels::ew::mul(&mut c, &a, &b);
            vec![c]
        }
        Request::Matmul { m, k, n } => {
            let (a, b) = (sum(&comp(0)), sum(&comp(1)));
            let mut c = vec![0u64; m * n];
            kernels::gemm_into(m, k, n, &a, &b, &mut c, false);
            vec![c]
        }
        Request::Conv2d {
            x,
            w,
            stride,
            padding,
        } => {
            let a = RingTensor::from_vec(&x, sum(&comp(0)));
            let b = RingTensor::from_vec(&w, sum(&comp(1)));
            vec![kernels::conv2d(&a, &b, stride, padding).into_data()]
        }
        Request::Square { .. } => {
            let r = sum(&comp(0));
            let mut r2 = vec![0u64; r.len()];
            kernels::ew::mul(&mut r2, &r, &r);
            vec![r2]
        }
        Request::And { len, rep } => {
            let (a, b) = (xor(&comp(0)), xor(&comp(1)));
            vec![(0..rep * len).map(|i| a[i / rep] & b[i]).collect()]
        }
        Request::Bit { .. } => vec![xor(&comp(0))],
        Request::BatchMatmul { batch, m, k, n } => {
            let (a, b) = (sum(&comp(0)), sum(&comp(1)));
            let mut c = vec![0u64; batch * m * n];
            for i in 0..batch {
                kernels::gemm_into(
                    m,
                    k,
                    n,
                    &a[i * m * k..(i + 1) * m * k],
                    &b[i * k * n..(i + 1) * k * n],
                    &mut c[i * m * n..(i + 1) * m * n],
                    false,
                );
            }
            vec![c]
        }
        Request::ConvGradInput {
            dy,
            w,
            in_hw,
            stride,
            padding,
        } => {
            let a = RingTensor::from_vec(&dy, sum(&comp(0)));
            let b = RingTensor::from_vec(&w, sum(&comp(1)));
            let hw = (in_hw[0], in_hw[1]);
            vec![kernels::conv2d_grad_input(&a, &b, hw, stride, padding).into_data()]
        }
        Request::ConvGradWeight {
            x,
            dy,
            k_hw,
            stride,
            padding,
        } => {
            let a = RingTensor::from_vec(&x, sum(&comp(0)));
            let b = RingTensor::from_vec(&dy, sum(&comp(1)));
            let hw = (k_hw[0], k_hw[1]);
            vec![kernels::conv2d_grad_weight(&a, &b, hw, stride, padding).into_data()]
        }
        Request::Trunc { shift, .. } => {
            let r = sum(&comp(0));
            let hi = r.iter().map(|x| (x & (u64::MAX >> 1)) >> shift).collect();
            let msb = r.iter().map(|x| x >> 63).collect();
            vec![hi, msb]
        }
    }
}

/// Deal the material of `plan` to `parties` parties of session `session`.
pub fn deal(plan: &Plan, parties: usize, session: u64) -> Vec<PartyMaterial> {
    deal_seeded(plan, parties, session, None)
}

/// As `deal`; with `Some(s)` (`--dealer-seed`) every party's seed is derived from `s`, so
/// that the same job gives the same material, for reproducible experiments only: anyone
/// who knows `s` knows every mask.
pub fn deal_seeded(
    plan: &Plan,
    parties: usize,
    session: u64,
    dealer_seed: Option<u64>,
) -> Vec<PartyMaterial> {
    assert!(parties >= 2);
    let seeds: Vec<Seed> = (0..parties)
        .map(|i| match dealer_seed {
            Some(s) => Prg::derive_seed(s, i as u64),
            None => fresh_seed(),
        })
        .collect();
    let corrections: HashMap<u64, Material> = plan
        .entries
        .par_iter()
        .map(|(key, req)| {
            let free_n = req.free_components();
            let total = req.component_lens().len();
            let all: Vec<Material> = (0..parties)
                .map(|i| draw_whole(&seeds[i], *key, req, 0..if i == 0 { free_n } else { total }))
                .collect();
            let refs: Vec<&Material> = all.iter().collect();
            let full = corrected_values(req, &refs);
            let binary = matches!(req, Request::And { .. });
            let corr: Material = full
                .into_iter()
                .enumerate()
                .map(|(j, f)| {
                    let others: Vec<&Vec<u64>> = all[1..].iter().map(|m| &m[free_n + j]).collect();
                    correction(f, &others, binary)
                })
                .collect();
            (*key, corr)
        })
        .collect();
    let plan = Arc::new(plan.clone());
    let plan_hash = plan.hash();
    let mut corrections = Some(corrections);
    (0..parties)
        .map(|party| PartyMaterial {
            party,
            parties,
            session,
            plan: plan.clone(),
            plan_hash,
            seed: seeds[party],
            corrections: if party == 0 {
                corrections.take().unwrap()
            } else {
                HashMap::new()
            },
        })
        .collect()
}

impl PartyMaterial {
    /// This party's material for `part` of one planned request: its free components from
    /// its seed, the rest from the seed (parties != 0) or from the dealer's correction
    /// `corr` (party 0, the whole correction, sliced here).
    fn material_with(
        &self,
        key: u64,
        req: &Request,
        corr: Option<&Material>,
        part: super::plan::Part,
    ) -> Result<Material> {
        let ranges = req.component_ranges(part);
        let n = req.component_lens().len();
        if self.party == 0 {
            let corr = corr.ok_or_else(|| {
                Error::Material(format!(
                    "party 0 material lacks the correction for operation {key:#018x}"
                ))
            })?;
            let free = req.free_components();
            let mut m = draw(&self.seed, key, req, 0..free, &ranges);
            m.extend(super::material::slice_material(corr, &ranges[free..]));
            Ok(m)
        } else {
            Ok(draw(&self.seed, key, req, 0..n, &ranges))
        }
    }

    /// Expand seeds (and party 0's corrections) into the store the online phase reads.
    /// Done before the online phase starts, so PRG expansion is never timed with it.
    /// Party 0's corrections are moved into the store: held once, not twice, while the
    /// online phase runs.
    pub fn into_store(mut self) -> Result<MaterialStore> {
        let mut corrections = std::mem::take(&mut self.corrections);
        let work: Vec<(u64, &Request, Option<Material>)> = self
            .plan
            .entries
            .iter()
            .map(|(key, req)| (*key, req, corrections.remove(key)))
            .collect();
        let items: HashMap<u64, (Request, Material)> = work
            .into_par_iter()
            .map(|(key, req, corr)| {
                let whole = super::plan::Part {
                    start: 0,
                    len: req.units(),
                };
                let m = self.material_with(key, req, corr.as_ref(), whole)?;
                Ok((key, (req.clone(), m)))
            })
            .collect::<Result<_>>()?;
        Ok(MaterialStore::new(items))
    }

    /// Bytes the expanded material of this party takes.
    pub fn expanded_bytes(&self) -> usize {
        8 * self.plan.total_words()
    }

    /// A source that draws each request's material from the seed when it is asked for,
    /// for plans too large to hold expanded (VGG16's ReLUs alone need ~4 GiB per party).
    /// The AES-CTR expansion (about 10 GB/s here) then runs inside the online phase.
    /// Party 0's corrections are moved into the store, which frees each one when it is
    /// taken: a 3-party VGG16 or BERT-base has 4-5 GiB of them, which must not be
    /// held twice (caller and store) nor to the end of the run.
    pub fn into_lazy(mut self) -> LazyStore {
        let corrections = std::mem::take(&mut self.corrections)
            .into_iter()
            .map(|(k, m)| (k, Arc::new(m)))
            .collect();
        LazyStore {
            planned: self.plan.entries.iter().cloned().collect(),
            used: Mutex::new(HashMap::new()),
            corrections: Mutex::new(corrections),
            material: self,
        }
    }
}

/// Material drawn from the seed on demand; see `PartyMaterial::into_lazy`.
pub struct LazyStore {
    /// Seed and identity; its own `corrections` are empty (moved to `corrections`).
    material: PartyMaterial,
    planned: HashMap<u64, Request>,
    /// Party 0's corrections not wholly taken yet.
    corrections: Mutex<HashMap<u64, Arc<Material>>>,
    used: Mutex<HashMap<u64, super::material::Used>>,
}

impl MaterialSource for LazyStore {
    fn take(
        &self,
        key: u64,
        req: &Request,
        part: super::plan::Part,
    ) -> Result<super::material::Taken> {
        match self.planned.get(&key) {
            Some(p) if p == req => {}
            Some(p) => return Err(Error::Material(format!("operation {key:#018x} asks for {req:?} but the material was planned as {p:?}: the material was made for a different program"))),
            None => return Err(Error::Material(format!("no material for operation {key:#018x} ({req:?}): it was never planned; the material does not match this program"))),
        }
        let done =
            self.used
                .lock()
                .unwrap()
                .entry(key)
                .or_default()
                .take(key, req, part, req.units())?;
        let corr = {
            let mut c = self.corrections.lock().unwrap();
            if done {
                c.remove(&key)
            } else {
                c.get(&key).cloned()
            }
        };
        Ok(super::material::owned(self.material.material_with(
            key,
            req,
            corr.as_deref(),
            part,
        )?))
    }
}
