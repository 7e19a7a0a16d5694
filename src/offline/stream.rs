//! The streaming dealer of an in-process run: material made in the plan's first-use order
//! on a dealer thread (with its own rayon pool), concurrently with the online phase, into a
//! window bounded by a byte budget; each party's `MaterialSource` waits for its key, and a
//! key's material leaves the window as the parties take it. For plans whose material does
//! not fit in memory at once (`--protocols fss` keys are ~2 KB per compared element per
//! party: 35 GiB per party for VGG16). Depends on offline::{dealer, material, plan}, error,
//! prg.
//!
//! Liveness: the dealer stops at the budget only while no party waits for a key it has not
//! made; a waited-for key is made next, whatever the window holds, so a lane that runs
//! ahead of the plan's order (or a request larger than the budget) slows the run but never
//! blocks it. An error of the dealer (or a panic) is kept and returned to every `take`
//! from then on, as `Error::Material`; nothing waits for a dealer that has stopped.
//!
//! Memory: the common components (FSS correction words, which both keys of a pair share)
//! are held once per process, as one `Arc` that both parties' material points to, not one
//! copy per party. Their buffers go back to the dealer when both parties have dropped
//! them, and the next keys are written into them (up to the budget's worth kept idle):
//! fresh multi-GB buffers cost more in page faults than in key generation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::dealer::deal_key_into;
use super::material::{MaterialSource, Taken, Used, Words};
use super::plan::{Part, Plan, Request};
use crate::error::{Error, Result};
use crate::fss::dcf::CorrectionWords;
use crate::prg::Seed;

/// One party's material of one key, not wholly taken yet.
struct PartySlot {
    components: Vec<Arc<Vec<u64>>>,
    used: Used,
    /// Bytes of its own components (the common ones are counted once, per key).
    own_bytes: usize,
}

/// A dealt key: each party's slot (None once that party took all of it).
struct Slot {
    parties: Vec<Option<PartySlot>>,
    common_bytes: usize,
}

#[derive(Default)]
struct State {
    /// Keys dealt and not wholly taken by every party.
    ready: HashMap<u64, Slot>,
    /// Keys dealt (taken or not).
    dealt: HashSet<u64>,
    /// Keys some party waits for, with how many waiters.
    waiting: HashMap<u64, usize>,
    /// Bytes in the window (dealt, not taken).
    bytes: usize,
    peak_bytes: usize,
    /// The dealer's own busy time (making material, not waiting for room), seconds.
    busy_s: f64,
    /// Keys dealt past the budget because a party waited for them.
    forced: usize,
    /// Times a party waited for a key.
    waits: usize,
    failed: Option<String>,
    stopped: bool,
    finished: bool,
}

struct Shared {
    plan: Arc<Plan>,
    planned: HashMap<u64, Request>,
    parties: usize,
    budget_bytes: usize,
    state: Mutex<State>,
    /// Takers wait here for a key (or the dealer's failure).
    dealt_cv: Condvar,
    /// The dealer waits here for room in the window, a waiter, or the end of the run.
    room_cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held left no half-made state that matters here: the
        // dealer records its failure, and takers check `failed` first.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the streaming dealer did, for the phases line and bench rows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamStats {
    /// The dealer's busy time (making material), seconds: `deal_s` of a streamed run.
    pub busy_s: f64,
    /// Largest window held, bytes (all parties, common components once).
    pub peak_bytes: usize,
    /// Keys made past the budget because a party waited for them.
    pub forced: usize,
    /// Times a party found its key not yet made and waited.
    pub waits: usize,
    /// Keys made in all.
    pub dealt: usize,
}

/// Bytes the window holds for `req` dealt to `parties` parties (common components once).
pub fn window_bytes(req: &Request, parties: usize) -> usize {
    let lens = req.component_lens();
    let drawn: usize = lens[..req.drawn_components()].iter().sum();
    let common: usize = lens[req.drawn_components()..].iter().sum();
    8 * (drawn * parties + common)
}

/// Bytes all of `plan`'s material takes in one process, common components once.
pub fn plan_bytes(plan: &Plan, parties: usize) -> usize {
    plan.entries
        .iter()
        .map(|(_, r)| window_bytes(r, parties))
        .sum()
}

/// A running streaming dealer. `sources` hands each party its `MaterialSource`; `finish`
/// stops the dealer (whatever it has left to make) and returns what it did.
pub struct StreamDealer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StreamDealer {
    /// Start dealing `plan` to the parties of `seeds` (one per party), holding at most
    /// `budget_bytes` of material not yet taken (but see the module doc: a waited-for key
    /// is always made). The dealer's rayon pool has `threads` threads.
    pub fn start(
        plan: Arc<Plan>,
        seeds: Vec<Seed>,
        budget_bytes: usize,
        threads: usize,
    ) -> Result<StreamDealer> {
        let parties = seeds.len();
        if parties < 2 {
            return Err(Error::Material(format!(
                "the dealer needs 2 or more parties, got {parties}"
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("dealer {i}"))
            .build()
            .map_err(|e| Error::Material(format!("cannot start the dealer's threads: {e}")))?;
        let shared = Arc::new(Shared {
            planned: plan.entries.iter().cloned().collect(),
            plan,
            parties,
            budget_bytes,
            state: Mutex::new(State::default()),
            dealt_cv: Condvar::new(),
            room_cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dealer".into())
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.install(|| deal_loop(&s, &seeds))
                }));
                let mut st = s.lock();
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => st.failed = Some(e.to_string()),
                    Err(_) => st.failed = Some("the dealer thread panicked".into()),
                }
                st.finished = true;
                drop(st);
                s.dealt_cv.notify_all();
            })
            .map_err(|e| Error::Material(format!("cannot start the dealer thread: {e}")))?;
        Ok(StreamDealer {
            shared,
            thread: Some(thread),
        })
    }

    /// The material source of `party`.
    pub fn source(&self, party: usize) -> StreamSource {
        StreamSource {
            shared: self.shared.clone(),
            party,
        }
    }

    /// Stop the dealer and wait for it: after the online phase (what is left was not
    /// needed), or after a failure. Returns the dealer's error, if it failed.
    pub fn finish(mut self) -> (StreamStats, Option<Error>) {
        self.stop();
        let st = self.shared.lock();
        let stats = StreamStats {
            busy_s: st.busy_s,
            peak_bytes: st.peak_bytes,
            forced: st.forced,
            waits: st.waits,
            dealt: st.dealt.len(),
        };
        let err = st
            .failed
            .as_ref()
            .map(|m| Error::Material(format!("the dealer failed: {m}")));
        (stats, err)
    }

    fn stop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.room_cv.notify_all();
        if let Some(t) = self.thread.take() {
            // The dealer catches its own panics; a join error cannot carry one.
            let _ = t.join();
        }
    }
}

impl Drop for StreamDealer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The dealer thread: make keys in first-use order while the window has room, a waited-for
/// key first, until every key is made or the run stops.
fn deal_loop(s: &Shared, seeds: &[Seed]) -> Result<()> {
    let order = s.plan.in_use_order();
    let rank: HashMap<u64, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (*k, i))
        .collect();
    let mut next = 0;
    // FSS correction-word buffers: those handed out (the window's or the parties', until
    // every holder drops them) and those idle again, reused for the next keys.
    let mut lent: Vec<Arc<Vec<u64>>> = Vec::new();
    let mut idle: Vec<Vec<u64>> = Vec::new();
    loop {
        let (key, req) = {
            let mut st = s.lock();
            loop {
                if st.stopped {
                    return Ok(());
                }
                while next < order.len() && st.dealt.contains(&order[next].0) {
                    next += 1;
                }
                // A key a party waits for comes first, room or not (never a deadlock).
                let urgent = st
                    .waiting
                    .keys()
                    .filter(|k| !st.dealt.contains(k))
                    .min_by_key(|k| rank[*k])
                    .copied();
                if let Some(k) = urgent {
                    if st.bytes > 0
                        && st.bytes + window_bytes(&s.planned[&k], s.parties) > s.budget_bytes
                    {
                        st.forced += 1;
                    }
                    break (k, s.planned[&k].clone());
                }
                if next == order.len() {
                    return Ok(());
                }
                let (k, r) = order[next];
                // An empty window takes any request, so one larger than the budget is made.
                if st.bytes == 0 || st.bytes + window_bytes(r, s.parties) <= s.budget_bytes {
                    break (k, r.clone());
                }
                st = s.room_cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let t = Instant::now();
        let spare = spare_for(&req, &mut lent, &mut idle, s.budget_bytes);
        let (mats, common) = deal_key_into(seeds, key, &req, spare)?;
        let common: Vec<Arc<Vec<u64>>> = common.into_iter().map(Arc::new).collect();
        lent.extend(common.iter().cloned());
        let common_bytes = 8 * common.iter().map(|c| c.len()).sum::<usize>();
        let parties = mats
            .into_iter()
            .map(|m| {
                let own_bytes = 8 * m.iter().map(|c| c.len()).sum::<usize>();
                let mut components: Vec<Arc<Vec<u64>>> = m.into_iter().map(Arc::new).collect();
                components.extend(common.iter().cloned());
                Some(PartySlot {
                    components,
                    used: Used::default(),
                    own_bytes,
                })
            })
            .collect::<Vec<_>>();
        let bytes = common_bytes + parties.iter().flatten().map(|p| p.own_bytes).sum::<usize>();
        let busy = t.elapsed().as_secs_f64();
        let mut st = s.lock();
        st.busy_s += busy;
        st.bytes += bytes;
        st.peak_bytes = st.peak_bytes.max(st.bytes);
        st.dealt.insert(key);
        st.ready.insert(
            key,
            Slot {
                parties,
                common_bytes,
            },
        );
        drop(st);
        s.dealt_cv.notify_all();
    }
}

/// Buffers for `req`'s FSS correction words from those no one holds any more (their
/// pages are mapped: writing them again faults nothing in, where fresh ones of VGG16's
/// 3.2 GB cost the kernel ~1.35 s per GB to zero). Each component takes the smallest idle
/// buffer large enough; idle buffers beyond `cap_bytes` are freed, smallest first.
fn spare_for(
    req: &Request,
    lent: &mut Vec<Arc<Vec<u64>>>,
    idle: &mut Vec<Vec<u64>>,
    cap_bytes: usize,
) -> CorrectionWords {
    // Only this list holds a buffer whose count is 1, so no one can take it meanwhile.
    let (back, still): (Vec<_>, Vec<_>) = std::mem::take(lent)
        .into_iter()
        .partition(|a| Arc::strong_count(a) == 1);
    *lent = still;
    idle.extend(back.into_iter().filter_map(|a| Arc::try_unwrap(a).ok()));
    let mut cw = CorrectionWords::default();
    if let Request::FssLtz { .. } | Request::FssMic { .. } = req {
        let lens = req.component_lens();
        let common = &lens[req.drawn_components()..];
        let mut take = |need: usize| -> Vec<u64> {
            let best = idle
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= need)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            best.map_or_else(Vec::new, |i| idle.swap_remove(i))
        };
        // Largest first, so the large buffers go where only they fit.
        let mut idx: Vec<usize> = (0..common.len()).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(common[i]));
        let mut got: Vec<Vec<u64>> = vec![Vec::new(); common.len()];
        for i in idx {
            got[i] = take(common[i]);
        }
        if let Ok([scw, vcw, tcw, last]) = <[Vec<u64>; 4]>::try_from(got) {
            cw = CorrectionWords {
                scw,
                vcw,
                tcw,
                last,
            };
        }
    }
    idle.sort_by_key(|v| std::cmp::Reverse(v.capacity()));
    let mut kept = 0;
    idle.retain(|v| {
        kept += 8 * v.capacity();
        kept <= cap_bytes
    });
    cw
}

/// One party's view of a `StreamDealer`: `take` waits until the dealer has made the key.
pub struct StreamSource {
    shared: Arc<Shared>,
    party: usize,
}

impl MaterialSource for StreamSource {
    fn take(&self, key: u64, req: &Request, part: Part) -> Result<Taken> {
        let s = &*self.shared;
        super::material::check_planned(key, req, s.planned.get(&key))?;
        let mut st = s.lock();
        let mut waited = false;
        loop {
            if let Some(m) = &st.failed {
                return Err(Error::Material(format!("the dealer failed: {m}")));
            }
            if st.dealt.contains(&key) {
                break;
            }
            if st.finished || st.stopped {
                return Err(Error::Material(format!(
                    "the dealer stopped before making operation {key:#018x}"
                )));
            }
            if !waited {
                waited = true;
                st.waits += 1;
                *st.waiting.entry(key).or_default() += 1;
                s.room_cv.notify_all();
            }
            st = s.dealt_cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if waited {
            if let Some(n) = st.waiting.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    st.waiting.remove(&key);
                }
            }
        }
        let used_up = || {
            Error::Material(format!(
                "material for operation {key:#018x} ({req:?}) was already used by party {}",
                self.party
            ))
        };
        let slot = st.ready.get_mut(&key).ok_or_else(used_up)?;
        let mine = slot.parties[self.party].as_mut().ok_or_else(used_up)?;
        let done = mine.used.take(key, req, part, req.units())?;
        let ranges = req.component_ranges(part);
        if !done {
            return Ok(mine
                .components
                .iter()
                .zip(ranges)
                .map(|(c, r)| Words::View(c.clone(), r[0].clone()))
                .collect());
        }
        // This party's last part: its material leaves the window (the common components
        // with the last party to take them).
        let mine = slot.parties[self.party].take().expect("checked above");
        let mut freed = mine.own_bytes;
        if slot.parties.iter().all(Option::is_none) {
            freed += slot.common_bytes;
            st.ready.remove(&key);
        }
        st.bytes -= freed;
        drop(st);
        s.room_cv.notify_all();
        let whole = part.start == 0 && part.len == req.units();
        Ok(mine
            .components
            .into_iter()
            .zip(ranges)
            .map(|(c, r)| {
                if whole {
                    // Ours alone (moved out), or shared with another party (a view).
                    match Arc::try_unwrap(c) {
                        Ok(v) => Words::Owned(v),
                        Err(c) => {
                            let n = c.len();
                            Words::View(c, 0..n)
                        }
                    }
                } else {
                    Words::View(c, r[0].clone())
                }
            })
            .collect())
    }
}
