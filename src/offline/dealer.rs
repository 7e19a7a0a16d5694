//! The trusted dealer (CrypTen's TTP provider with its seed trick, protocols.md §2.3):
//! every party's shares of every tuple come from a PRG seeded by the dealer; only party 0
//! receives real data, one correction per tuple, except for FSS keys, whose correction
//! words every party receives (both keys of a pair hold them; only the root seeds, drawn
//! from each party's seed, differ). Depends on ring, kernels, prg, fss, plan.

use std::collections::HashMap;
use std::ops::Range;
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
    /// The components the dealer hands this party, by key (`Request::dealt_lens`): party
    /// 0's corrected and common ones, the others' common ones (FSS correction words);
    /// empty when `expanded` holds them in place.
    pub corrections: HashMap<u64, Material>,
    /// This party's whole material, already drawn by an in-process dealer that had to
    /// draw it anyway to make the corrections (see `deal_with`): the store takes it as it
    /// is instead of drawing every word a second time. None: expand from `seed`.
    pub expanded: Option<HashMap<u64, Material>>,
}

/// Words one task combines: large enough that spawning the task is free, small enough to
/// spread one big request over the pool.
const CHUNK: usize = 1 << 15;

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
        let total: usize = ranges[j].iter().map(|r| r.len()).sum();
        // Written once, by the keystream (no zeroing pass over the whole first).
        let mut v = Vec::with_capacity(total);
        let mut off = 0;
        for r in &ranges[j] {
            let dst = &mut v.spare_capacity_mut()[off..off + r.len()];
            crate::prg::fill_stream_uninit(seed, key, base + r.start, dst);
            off += r.len();
        }
        // SAFETY: the ranges' lengths sum to `total`, and each filled its own slots.
        unsafe { v.set_len(total) };
        if j == 0 && matches!(req, Request::Bit { .. }) {
            // Component 0 of a random-bit pair is this party's XOR share of a single bit.
            v.par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|x| *x &= 1));
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

/// Words `r` of component `j` of every party's material, and of parties 1.. only.
fn of_all<'m>(mats: &'m [Material], j: usize, r: &Range<usize>) -> Vec<&'m [u64]> {
    mats.iter().map(|m| &m[j][r.clone()]).collect()
}

/// out = s[0] ∘ s[1] ∘ ... (Add: wrapping sum; Xor), slice by slice so the loops vectorize.
fn fold(out: &mut [u64], srcs: &[&[u64]], xor: bool) {
    out.copy_from_slice(srcs[0]);
    for s in &srcs[1..] {
        if xor {
            out.iter_mut().zip(*s).for_each(|(o, v)| *o ^= v);
        } else {
            out.iter_mut()
                .zip(*s)
                .for_each(|(o, v)| *o = o.wrapping_add(*v));
        }
    }
}

/// out -= s (or ^= s) for every s in `srcs`.
fn subtract(out: &mut [u64], srcs: &[&[u64]], xor: bool) {
    for s in srcs {
        if xor {
            out.iter_mut().zip(*s).for_each(|(o, v)| *o ^= v);
        } else {
            out.iter_mut()
                .zip(*s)
                .for_each(|(o, v)| *o = o.wrapping_sub(*v));
        }
    }
}

/// A new `len`-word vector filled chunk by chunk in parallel: `f(range, out_chunk)`. Each
/// chunk is zeroed just before `f` writes it (in cache), not the whole vector first.
fn par_chunks(len: usize, f: impl Fn(Range<usize>, &mut [u64]) + Sync) -> Vec<u64> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            o.fill(std::mem::MaybeUninit::new(0));
            // SAFETY: every word of the chunk was just initialised.
            let o = unsafe { std::slice::from_raw_parts_mut(o.as_mut_ptr() as *mut u64, o.len()) };
            let r = c * CHUNK..c * CHUNK + o.len();
            f(r, o)
        });
    // SAFETY: the chunks cover the first `len` spare slots, each initialised above.
    unsafe { out.set_len(len) };
    out
}

/// Party 0's corrections of `req`, given every party's drawn components (`mats[0]` holds
/// party 0's free components only): for each corrected component, the value every
/// party's shares must reconstruct to, minus the shares of parties 1.. (XOR for binary
/// material); then the common components every party receives (FSS keys). Chunk by
/// chunk in parallel, with no full-size intermediate beyond the product operands A = Σ a
/// and B = Σ b of matrix and convolution triples.
fn corrections(
    req: &Request,
    mats: &[Material],
    spare: crate::fss::dcf::CorrectionWords,
) -> Result<Material> {
    let others = &mats[1..];
    let lens = req.component_lens();
    // Σ over parties of free component j, whole.
    let total = |j: usize| par_chunks(lens[j], |r, o| fold(o, &of_all(mats, j, &r), false));
    // C - Σ_{parties 1..} c, in place.
    let minus_others = |mut c: Vec<u64>, j: usize| {
        c.par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
            let r = k * CHUNK..k * CHUNK + o.len();
            subtract(o, &of_all(others, j, &r), false)
        });
        c
    };
    Ok(match *req {
        Request::Mul { len } => vec![par_chunks(len, |r, o| {
            let mut b = vec![0u64; o.len()];
            fold(o, &of_all(mats, 0, &r), false);
            fold(&mut b, &of_all(mats, 1, &r), false);
            o.iter_mut()
                .zip(&b)
                .for_each(|(a, b)| *a = a.wrapping_mul(*b));
            subtract(o, &of_all(others, 2, &r), false);
        })],
        Request::Square { len } => vec![par_chunks(len, |r, o| {
            fold(o, &of_all(mats, 0, &r), false);
            o.iter_mut().for_each(|a| *a = a.wrapping_mul(*a));
            subtract(o, &of_all(others, 1, &r), false);
        })],
        Request::And { len, rep } => vec![par_chunks(len * rep, |r, o| {
            // b and c are element-major: word i belongs to element i / rep.
            let (e0, e1) = (r.start / rep, (r.end - 1) / rep + 1);
            let mut a = vec![0u64; e1 - e0];
            fold(&mut a, &of_all(mats, 0, &(e0..e1)), true);
            fold(o, &of_all(mats, 1, &r), true);
            o.iter_mut()
                .zip(r.clone())
                .for_each(|(b, i)| *b &= a[i / rep - e0]);
            subtract(o, &of_all(others, 2, &r), true);
        })],
        Request::Bit { len } => vec![par_chunks(len, |r, o| {
            fold(o, &of_all(mats, 0, &r), true);
            subtract(o, &of_all(others, 1, &r), false);
        })],
        Request::Trunc { len, shift } => {
            let r_all = total(0);
            let hi = par_chunks(len, |r, o| {
                o.iter_mut()
                    .zip(&r_all[r.clone()])
                    .for_each(|(o, x)| *o = (x & (u64::MAX >> 1)) >> shift);
                subtract(o, &of_all(others, 1, &r), false);
            });
            let msb = par_chunks(len, |r, o| {
                o.iter_mut()
                    .zip(&r_all[r.clone()])
                    .for_each(|(o, x)| *o = x >> 63);
                subtract(o, &of_all(others, 2, &r), false);
            });
            vec![hi, msb]
        }
        Request::Matmul { m, k, n } => {
            let (a, b) = (total(0), total(1));
            let mut c = vec![0u64; m * n];
            kernels::gemm_into(m, k, n, &a, &b, &mut c, false);
            vec![minus_others(c, 2)]
        }
        Request::BatchMatmul { batch, m, k, n } => {
            let (a, b) = (total(0), total(1));
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
            vec![minus_others(c, 2)]
        }
        Request::Conv2d {
            x,
            w,
            stride,
            padding,
        } => {
            let a = RingTensor::from_vec(&x, total(0));
            let b = RingTensor::from_vec(&w, total(1));
            vec![minus_others(
                kernels::conv2d(&a, &b, stride, padding).into_data(),
                2,
            )]
        }
        Request::ConvGradInput {
            dy,
            w,
            in_hw,
            stride,
            padding,
        } => {
            let a = RingTensor::from_vec(&dy, total(0));
            let b = RingTensor::from_vec(&w, total(1));
            let hw = (in_hw[0], in_hw[1]);
            vec![minus_others(
                kernels::conv2d_grad_input(&a, &b, hw, stride, padding).into_data(),
                2,
            )]
        }
        Request::ConvGradWeight {
            x,
            dy,
            k_hw,
            stride,
            padding,
        } => {
            let a = RingTensor::from_vec(&x, total(0));
            let b = RingTensor::from_vec(&dy, total(1));
            let hw = (k_hw[0], k_hw[1]);
            vec![minus_others(
                kernels::conv2d_grad_weight(&a, &b, hw, stride, padding).into_data(),
                2,
            )]
        }
        Request::FssLtz { len, relu } => fss_ltz(len, relu, mats, spare)?,
        Request::FssMic { len } => fss_mic(len, mats, spare)?,
        Request::Products {
            len,
            values,
            ref pairs,
        } => pairs
            .iter()
            .enumerate()
            .map(|(p, &[i, j])| {
                par_chunks(len, |r, o| {
                    fold(o, &of_all(mats, usize::from(i), &r), false);
                    if i == j {
                        o.iter_mut().for_each(|a| *a = a.wrapping_mul(*a));
                    } else {
                        let mut b = vec![0u64; o.len()];
                        fold(&mut b, &of_all(mats, usize::from(j), &r), false);
                        o.iter_mut()
                            .zip(&b)
                            .for_each(|(a, b)| *a = a.wrapping_mul(*b));
                    }
                    subtract(o, &of_all(others, values + p, &r), false);
                })
            })
            .collect(),
    })
}

/// The dealer's half of proto::fss's comparison gate (its derivation is there): with
/// r = Σ r_b, shares of msb(r) and, for ReLU, of r·msb(r); and DCF keys for
/// [x̂' < r mod 2^63] with payload 1 − 2·msb(r) (ReLU: and r·(1 − 2·msb(r))), from the two
/// parties' root seeds (component 1). 2 parties only (the online gate refuses more before
/// it requests any).
fn fss_ltz(
    len: usize,
    relu: bool,
    mats: &[Material],
    spare: crate::fss::dcf::CorrectionWords,
) -> Result<Material> {
    let others = &mats[1..];
    let r = par_chunks(len, |r, o| fold(o, &of_all(mats, 0, &r), false));
    let r_msb = par_chunks(len, |rg, o| {
        o.iter_mut()
            .zip(&r[rg.clone()])
            .for_each(|(o, x)| *o = x >> 63);
        subtract(o, &of_all(others, 2, &rg), false);
    });
    let mut out = vec![r_msb];
    if relu {
        out.push(par_chunks(len, |rg, o| {
            o.iter_mut()
                .zip(&r[rg.clone()])
                .for_each(|(o, x)| *o = x.wrapping_mul(x >> 63));
            subtract(o, &of_all(others, 3, &rg), false);
        }));
    }
    let low = u64::MAX >> 1;
    let alpha = par_chunks(len, |rg, o| {
        o.iter_mut()
            .zip(&r[rg.clone()])
            .for_each(|(o, x)| *o = x & low)
    });
    let layout = crate::fss::ltz_layout(relu);
    let w = layout.width;
    // β = (1 − 2·msb(r)[, r·(1 − 2·msb(r))]) per element.
    let beta = par_chunks(len * w, |rg, o| {
        o.iter_mut().zip(rg).for_each(|(o, i)| {
            let x = r[i / w];
            let sign = 1u64.wrapping_sub(2 * (x >> 63));
            *o = if i % w == 0 {
                sign
            } else {
                x.wrapping_mul(sign)
            };
        })
    });
    let seeds = [mats[0][1].as_slice(), mats[1][1].as_slice()];
    let cw = crate::fss::dcf::gen_into(layout, &alpha, &beta, seeds, spare)?;
    out.extend([cw.scw, cw.vcw, cw.tcw, cw.last]);
    Ok(out)
}

/// The dealer's half of proto::spline's multiple-interval-containment gate (its
/// derivation is there): with r = Σ r_b, DCF keys for [z < r] over 64 bits with payload
/// 1, from the two parties' root seeds (component 1). No shares besides: every wrap term
/// of the gate is public. 2 parties only.
fn fss_mic(
    len: usize,
    mats: &[Material],
    spare: crate::fss::dcf::CorrectionWords,
) -> Result<Material> {
    let alpha = par_chunks(len, |r, o| fold(o, &of_all(mats, 0, &r), false));
    let beta = vec![1u64; len];
    let seeds = [mats[0][1].as_slice(), mats[1][1].as_slice()];
    let cw = crate::fss::dcf::gen_into(crate::fss::mic_layout(), &alpha, &beta, seeds, spare)?;
    Ok(vec![cw.scw, cw.vcw, cw.tcw, cw.last])
}

/// One request's material for every party, as the dealer makes it: per party, the
/// components it draws from its seed (free and corrected) with party 0's corrected ones
/// replaced by the dealer's words, and apart from them the common components every party
/// receives (FSS correction words), once. Drawn in parallel chunks on the current rayon
/// pool. An error (never a panic) for a request the dealer cannot make for these parties.
pub fn deal_key(seeds: &[Seed], key: u64, req: &Request) -> Result<(Vec<Material>, Material)> {
    deal_key_into(seeds, key, req, crate::fss::dcf::CorrectionWords::default())
}

/// As `deal_key`, writing FSS correction words into `spare`'s buffers where they are
/// large enough (a streaming dealer's, whose pages are mapped already).
pub fn deal_key_into(
    seeds: &[Seed],
    key: u64,
    req: &Request,
    spare: crate::fss::dcf::CorrectionWords,
) -> Result<(Vec<Material>, Material)> {
    let parties = seeds.len();
    if parties < 2 {
        return Err(Error::Material(format!(
            "the dealer needs 2 or more parties, got {parties}"
        )));
    }
    if matches!(req, Request::FssLtz { .. } | Request::FssMic { .. }) && parties != 2 {
        return Err(Error::Material(format!(
            "operation {key:#018x} asks for FSS comparison keys, which are dealt to 2 parties only, not {parties}"
        )));
    }
    let free = req.free_components();
    let drawn = req.drawn_components();
    let mut mats: Vec<Material> = seeds
        .par_iter()
        .enumerate()
        .map(|(i, s)| draw_whole(s, key, req, 0..if i == 0 { free } else { drawn }))
        .collect();
    let mut corr = corrections(req, &mats, spare)?;
    // The common components: the tail of party 0's dealt words.
    let common = corr.split_off(drawn - free);
    mats[0].append(&mut corr);
    Ok((mats, common))
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
    deal_with(
        plan,
        &dealer_seeds(parties, dealer_seed),
        session,
        &vec![false; parties],
    )
}

/// Every party's PRG seed: fresh, or derived from `--dealer-seed`.
pub fn dealer_seeds(parties: usize, dealer_seed: Option<u64>) -> Vec<Seed> {
    assert!(parties >= 2);
    (0..parties)
        .map(|i| match dealer_seed {
            Some(s) => Prg::derive_seed(s, i as u64),
            None => fresh_seed(),
        })
        .collect()
}

/// The dealer: party 0's corrections for every request of `plan`, from the parties'
/// `seeds`. To make them it draws every party's material; party i's is kept, as the
/// material its store will hold, when `keep[i]` (an in-process run expands nothing a
/// second time; a dealing party process keeps its own). Requests are dealt in parallel,
/// and each large one in parallel chunks.
pub fn deal_with(plan: &Plan, seeds: &[Seed], session: u64, keep: &[bool]) -> Vec<PartyMaterial> {
    let parties = seeds.len();
    assert!(parties >= 2 && keep.len() == parties);
    // Per request: the words dealt to each party not kept, and each kept party's material.
    #[allow(clippy::type_complexity)]
    let dealt: Vec<(u64, Vec<Option<Material>>, Vec<Option<Material>>)> = plan
        .entries
        .par_iter()
        .map(|(key, req)| {
            let (mut mats, common) = deal_key(seeds, *key, req)
                .unwrap_or_else(|e| panic!("the dealer cannot deal {req:?}: {e}"));
            let mut common = Some(common);
            let free = req.free_components();
            let mut dealt: Vec<Option<Material>> = vec![None; parties];
            for (i, m) in mats.iter_mut().enumerate() {
                // Party 0's drawn material ends with the corrections; the dealer hands them.
                let mut mine = if i == 0 {
                    m.split_off(free)
                } else {
                    Vec::new()
                };
                // The last party takes the common components themselves, the others a
                // copy: FSS keys are ~2 KB per compared element, and copying them to every
                // party was a third of an fss dealer's time (memcpy and page faults).
                let common = if i + 1 == parties {
                    common.take()
                } else {
                    common.clone()
                };
                mine.extend(common.into_iter().flatten());
                if keep[i] {
                    m.append(&mut mine);
                } else if !mine.is_empty() {
                    dealt[i] = Some(mine);
                }
            }
            let kept = mats
                .into_iter()
                .zip(keep)
                .map(|(m, &k)| k.then_some(m))
                .collect();
            (*key, dealt, kept)
        })
        .collect();
    let mut corrections: Vec<HashMap<u64, Material>> = vec![HashMap::new(); parties];
    let mut expanded: Vec<Option<HashMap<u64, Material>>> =
        keep.iter().map(|&k| k.then(HashMap::new)).collect();
    for (key, dealt, kept) in dealt {
        for (c, d) in corrections.iter_mut().zip(dealt) {
            if let Some(d) = d {
                c.insert(key, d);
            }
        }
        for (e, m) in expanded.iter_mut().zip(kept) {
            if let (Some(e), Some(m)) = (e.as_mut(), m) {
                e.insert(key, m);
            }
        }
    }
    let plan = Arc::new(plan.clone());
    let plan_hash = plan.hash();
    expanded
        .into_iter()
        .zip(corrections)
        .enumerate()
        .map(|(party, (expanded, corrections))| PartyMaterial {
            party,
            parties,
            session,
            plan: plan.clone(),
            plan_hash,
            seed: seeds[party],
            corrections,
            expanded,
        })
        .collect()
}

impl PartyMaterial {
    /// This party's material for `part` of one planned request: the components it draws
    /// from its seed (party 0: the free ones; the others: free and corrected), the rest
    /// from the dealer's words `corr` (the whole of them, sliced here; moved, not copied,
    /// when they are owned and the part is the whole).
    fn material_with(
        &self,
        key: u64,
        req: &Request,
        corr: Option<std::borrow::Cow<'_, Material>>,
        part: super::plan::Part,
    ) -> Result<Material> {
        let ranges = req.component_ranges(part);
        let n = req.component_lens().len();
        let from = if self.party == 0 {
            req.free_components()
        } else {
            req.drawn_components()
        };
        let mut m = draw(&self.seed, key, req, 0..from, &ranges);
        if from < n {
            let corr = corr.ok_or_else(|| {
                Error::Material(format!(
                    "party {} material lacks the dealer's words for operation {key:#018x}",
                    self.party
                ))
            })?;
            if corr.len() != n - from {
                return Err(Error::Material(format!(
                    "the dealer's words for operation {key:#018x} have {} components, not {}",
                    corr.len(),
                    n - from
                )));
            }
            match corr {
                std::borrow::Cow::Owned(c) if part.start == 0 && part.len == req.units() => {
                    m.extend(c)
                }
                c => m.extend(super::material::slice_material(&c, &ranges[from..])),
            }
        }
        Ok(m)
    }

    /// Expand seeds (and party 0's corrections) into the store the online phase reads.
    /// Done before the online phase starts, so PRG expansion is never timed with it.
    /// Party 0's corrections are moved into the store: held once, not twice, while the
    /// online phase runs.
    pub fn into_store(mut self) -> Result<MaterialStore> {
        if let Some(mut expanded) = self.expanded.take() {
            let items = self
                .plan
                .entries
                .iter()
                .map(|(key, req)| {
                    let m = expanded.remove(key).ok_or_else(|| {
                        Error::Material(format!("no material dealt for operation {key:#018x}"))
                    })?;
                    Ok((*key, (req.clone(), m)))
                })
                .collect::<Result<_>>()?;
            return Ok(MaterialStore::new(items));
        }
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
                let corr = corr.map(std::borrow::Cow::Owned);
                let m = self.material_with(key, req, corr, whole)?;
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
        super::material::check_planned(key, req, self.planned.get(&key))?;
        // The part is counted and the correction looked up under one lock: with two locks
        // in turn, a lane whose part was counted first could look the correction up after
        // the lane of the last part had removed it ("lacks the dealer's words"; seen once
        // in 8 runs of tests/schemes.rs, whose weights lanes take one triple's parts at
        // once). Lock order: `used`, then `corrections`, here only.
        let corr = {
            let mut used = self.used.lock().unwrap();
            let done = used
                .entry(key)
                .or_default()
                .take(key, req, part, req.units())?;
            let mut c = self.corrections.lock().unwrap();
            if done {
                c.remove(&key)
            } else {
                c.get(&key).cloned()
            }
        };
        // The last part of a correction no other lane holds is moved out, not copied.
        use std::borrow::Cow;
        let m = match corr.map(Arc::try_unwrap) {
            None => self.material.material_with(key, req, None, part)?,
            Some(Ok(c)) => self
                .material
                .material_with(key, req, Some(Cow::Owned(c)), part)?,
            Some(Err(c)) => {
                self.material
                    .material_with(key, req, Some(Cow::Borrowed(&*c)), part)?
            }
        };
        Ok(super::material::owned(m))
    }
}
