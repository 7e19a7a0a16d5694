//! `Ctx`: what a protocol sees of the world. A party id, the `Comm` to its peers, the
//! `MaterialSource` of the offline phase, the pairwise PRG seeds for zero sharings, a key
//! namespace and the part of the tensor this lane computes. Depends on comm,
//! offline::{material, plan}, prg, ring.
//!
//! Keys. Material and zero sharings are addressed by (key, part): the key is derived from
//! the graph node (`for_node`) and the operation's index within it, the part from the
//! lane's `Window` over the node's tensor. Every schedule runs a node's protocol calls in
//! the same order on every part, so each element meets the same material under every
//! schedule and the output shares are bit-identical. Message tags mix the key with the
//! window (and a lane salt), so the concurrent parts of one operation never share a tag.
//!
//! Rounds. A protocol round is counted once, by the lane that computes the first part of
//! the whole tensor (`primary`): the parts of one round, in chunks or micro-batches, are
//! one round, so `rounds` means the same under every schedule. Messages are counted by the
//! transport, one per message actually sent.

use std::cell::Cell;
use std::sync::Arc;

use crate::comm::{Comm, Counters, PartyId, Payload, Tag, SETUP_TAG};
use crate::error::{Error, Result};
use crate::kernels::ew;
use crate::offline::{MaterialSource, Part, Request, Window};
use crate::prg::{fresh_seed, map_stream_into, zip_streams_into, Seed};
use crate::ring::{FixedPoint, RingTensor};

/// How the shares of an opening combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    Add,
    Xor,
}

impl Combine {
    /// a ∘ b as a new vector.
    fn combined(self, a: &[u64], b: &[u64]) -> Vec<u64> {
        match self {
            Combine::Add => ew::concat_with(&[(a, b)], u64::wrapping_add),
            Combine::Xor => ew::concat_with(&[(a, b)], |x, y| x ^ y),
        }
    }

    /// acc ∘= b.
    fn fold_into(self, acc: &mut [u64], b: &[u64]) {
        match self {
            Combine::Add => acc
                .iter_mut()
                .zip(b)
                .for_each(|(a, b)| *a = a.wrapping_add(*b)),
            Combine::Xor => acc.iter_mut().zip(b).for_each(|(a, b)| *a ^= *b),
        }
    }
}

/// The seeds this party shares with its neighbours (CrypTen's "next"/"prev" generators).
#[derive(Clone, Debug)]
pub struct PairSeeds {
    /// Shared with party (i + 1) mod n.
    pub next: Seed,
    /// Shared with party (i - 1) mod n.
    pub prev: Seed,
}

impl PairSeeds {
    /// Session setup (untimed): draw a seed, send it to the next party, receive the
    /// previous party's (protocols.md §2.2).
    pub fn establish(comm: &dyn Comm) -> Result<PairSeeds> {
        let (me, n) = (comm.party(), comm.parties());
        let next = fresh_seed();
        let words = [
            u64::from_le_bytes(next[..8].try_into().unwrap()),
            u64::from_le_bytes(next[8..].try_into().unwrap()),
        ];
        comm.post((me + 1) % n, SETUP_TAG, words.to_vec().into())?;
        let got = comm.wait((me + n - 1) % n, SETUP_TAG, 2)?;
        let mut prev = [0u8; 16];
        prev[..8].copy_from_slice(&got[0].to_le_bytes());
        prev[8..].copy_from_slice(&got[1].to_le_bytes());
        Ok(PairSeeds { next, prev })
    }

    /// Seeds derived from `--dealer-seed` (reproducible experiments only: predictable),
    /// the same that `establish` would agree on between neighbours.
    pub fn from_dealer_seed(seed: u64, me: PartyId, n: usize) -> PairSeeds {
        let pair = |i: usize| crate::prg::Prg::derive_seed(seed, 0x7061_6972_0000_0000 | i as u64);
        PairSeeds {
            next: pair(me),
            prev: pair((me + n - 1) % n),
        }
    }

    /// Fixed seeds for dry runs, which never touch real data.
    pub fn dry() -> PairSeeds {
        PairSeeds {
            next: [0; 16],
            prev: [0; 16],
        }
    }
}

/// A `Comm` that goes nowhere: used by the dry run that records a program's plan.
/// Received messages are zeros of the expected length.
pub struct NullComm {
    party: PartyId,
    parties: usize,
    counters: Counters,
}

impl NullComm {
    pub fn new(party: PartyId, parties: usize) -> Self {
        NullComm {
            party,
            parties,
            counters: Counters::new(parties),
        }
    }
}

impl Comm for NullComm {
    fn party(&self) -> PartyId {
        self.party
    }
    fn parties(&self) -> usize {
        self.parties
    }
    fn post(&self, to: PartyId, _tag: Tag, data: Payload) -> Result<()> {
        self.counters.sent(to, 8 * data.len() as u64);
        Ok(())
    }
    fn wait(&self, from: PartyId, _tag: Tag, len: usize) -> Result<Payload> {
        self.counters.received(from, 8 * len as u64);
        Ok(vec![0; len].into())
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Largest piece (u64 values, 64 MiB) of an opened message; see `Ctx::open_flat`.
const OPEN_PIECE: usize = 8 << 20;
/// Pieces of one open in flight at once, per peer.
const OPEN_WINDOW: usize = 2;

/// SplitMix64 finaliser: a bijective mixer for deriving keys.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Scope of the operations outside any graph node (input sharing, reveal).
const ROOT_SCOPE: u64 = 0x6d70_632d_7069_7065;

/// A party's protocol context. Not `Sync`: each lane (thread) has its own, derived with
/// `for_node`, `narrow` or `weights_lane`; the `Comm` and `MaterialSource` behind them are
/// shared.
pub struct Ctx<'a> {
    comm: &'a dyn Comm,
    material: &'a dyn MaterialSource,
    seeds: &'a PairSeeds,
    fixed: FixedPoint,
    scope: u64,
    next_op: Cell<u64>,
    /// The part of each node's tensor this lane computes.
    window: Window,
    /// Counts rounds (see the module doc).
    primary: bool,
    /// Mixed into message tags: lanes that open different things under one key.
    salt: u64,
    /// Post as background traffic (`Comm::post_bulk`): a scheduling choice made by whoever
    /// derives the context; the protocols never look at it.
    bulk: bool,
    /// Its openings are counted as rounds opened ahead (`CommStats::ahead_rounds`): a
    /// weights lane of inter-linear, whether its traffic is background or not.
    ahead: bool,
    /// The dry run that records the plan (`Ctx::for_plan`): what is taken and opened is
    /// recorded, but values are never computed (see `is_dry`).
    dry: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(
        comm: &'a dyn Comm,
        material: &'a dyn MaterialSource,
        seeds: &'a PairSeeds,
        fixed: FixedPoint,
    ) -> Self {
        Ctx {
            comm,
            material,
            seeds,
            fixed,
            scope: ROOT_SCOPE,
            next_op: Cell::new(0),
            window: Window::WHOLE,
            primary: true,
            salt: 0,
            bulk: false,
            ahead: false,
            dry: false,
        }
    }

    /// The context of the dry run that records a program's plan: every protocol makes its
    /// material requests and takes its operation keys exactly as online, but openings,
    /// zero sharings and local products return zeros of the right shape without touching
    /// the network, the PRG or the kernels (values cannot change what is requested:
    /// the protocols are data-oblivious).
    pub fn for_plan(
        comm: &'a dyn Comm,
        material: &'a dyn MaterialSource,
        seeds: &'a PairSeeds,
        fixed: FixedPoint,
    ) -> Self {
        Ctx {
            dry: true,
            ..Ctx::new(comm, material, seeds, fixed)
        }
    }

    /// Whether this is the plan's dry run (`for_plan`): values are placeholders, so work
    /// whose only product is values may be skipped; keys and requests may not.
    pub fn is_dry(&self) -> bool {
        self.dry
    }

    pub fn party(&self) -> PartyId {
        self.comm.party()
    }
    /// Number of computing parties N.
    pub fn parties(&self) -> usize {
        self.comm.parties()
    }
    pub fn fixed(&self) -> FixedPoint {
        self.fixed
    }
    pub fn frac_bits(&self) -> u32 {
        self.fixed.frac_bits
    }
    pub fn counters(&self) -> &Counters {
        self.comm.counters()
    }

    fn derived(&self, scope: u64, window: Window, primary: bool, salt: u64, op: u64) -> Ctx<'a> {
        Ctx {
            comm: self.comm,
            material: self.material,
            seeds: self.seeds,
            fixed: self.fixed,
            scope,
            next_op: Cell::new(op),
            window,
            primary,
            salt,
            bulk: self.bulk,
            ahead: self.ahead,
            dry: self.dry,
        }
    }

    /// The context of graph node `node` in this lane: keys restart in the node's own scope,
    /// so a node's material does not depend on what ran before it.
    pub fn for_node(&self, node: u64) -> Ctx<'a> {
        let scope = mix(ROOT_SCOPE ^ mix(node.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        self.derived(scope, self.window, self.primary, self.salt, 0)
    }

    /// The context of units `i0..i1` of this lane's tensor, each of whose `count` units is
    /// split into `q` sub-units (a chunk or micro-batch). It continues this context's
    /// operation sequence, so its keys are those this context would use next.
    pub fn narrow(&self, q: usize, i0: usize, i1: usize) -> Ctx<'a> {
        let w = self.window.narrow(q, i0, i1);
        self.derived(
            self.scope,
            w,
            self.primary && i0 == 0,
            self.salt,
            self.next_op.get(),
        )
    }

    /// A lane that opens weight masks ahead of the activations (inter-linear): same keys,
    /// its own tags, counts no rounds (its openings belong to the layers' rounds).
    pub fn weights_lane(&self) -> Ctx<'a> {
        self.derived(
            self.scope,
            Window::WHOLE,
            false,
            0x7765_6967_6874_7300,
            self.next_op.get(),
        )
    }

    /// This context, counting no rounds: a lane whose rounds run alongside another
    /// lane's and are counted there (training's micro-batches, whose products take
    /// triples of their own, so their keys come from their own nodes, not a window).
    pub fn uncounted(&self) -> Ctx<'a> {
        self.derived(
            self.scope,
            self.window,
            false,
            self.salt,
            self.next_op.get(),
        )
    }

    /// This lane's window over each node's tensor.
    pub fn window(&self) -> Window {
        self.window
    }

    /// This context with every message it posts sent as background traffic
    /// (`Comm::post_bulk`), as are its children's, its openings counted as opened ahead.
    /// Keys and tags do not change.
    pub fn background(mut self) -> Ctx<'a> {
        self.bulk = true;
        self.ahead = true;
        self
    }

    /// This context with its openings counted as opened ahead, its traffic left in the
    /// foreground: a weights lane whose masks are wanted almost at once (training).
    pub fn counted_ahead(mut self) -> Ctx<'a> {
        self.ahead = true;
        self
    }

    /// The operation index this context will use next.
    pub fn op_index(&self) -> u64 {
        self.next_op.get()
    }

    /// Move to operation index `op` (a lane that skipped operations it does not run).
    pub fn set_op_index(&self, op: u64) {
        self.next_op.set(op);
    }

    fn send(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        if self.bulk {
            self.comm.post_bulk(to, tag, data)
        } else {
            self.comm.post(to, tag, data)
        }
    }

    fn bump(&self) -> u64 {
        let op = self.next_op.get();
        self.next_op.set(op + 1);
        op
    }

    /// A fresh operation key in this scope.
    pub(crate) fn next_key(&self) -> u64 {
        let op = self.bump();
        mix(self.scope.wrapping_add(mix(op)))
    }

    /// The message tag of operation `key` in this lane.
    fn tag(&self, key: u64) -> Tag {
        let w = self.window;
        let part = mix(w.start as u64 ^ mix((w.total as u64).wrapping_add(self.salt)));
        Tag(mix(key ^ part))
    }

    /// The material planned for operation `key` of this node, this lane's part of it:
    /// `req` is what the lane's part needs.
    pub(crate) fn material(&self, key: u64, req: Request) -> Result<crate::offline::Taken> {
        let (whole, part) = req.widen(self.window).map_err(Error::Protocol)?;
        self.material.take(key, &whole, part)
    }

    /// The material of operation `key` for the whole tensor, whatever this lane's window
    /// (a linear layer's triple, which every lane uses rows of).
    pub(crate) fn material_whole(&self, key: u64, req: Request) -> Result<crate::offline::Taken> {
        let part = Part {
            start: 0,
            len: req.units(),
        };
        self.material.take(key, &req, part)
    }

    /// A pseudo-random zero sharing (PRZS) under `key`: PRG_prev - PRG_next (XOR for
    /// binary); with 2 parties, −PRG_s at party 0 and +PRG_s at party 1 (XOR: PRG_s at
    /// both) for the one seed s that party 0 drew (party 0's `next`, party 1's `prev`), with `value(i)` combined into element i at the party that shares a value
    /// (None elsewhere). `windowed`: the tensor is this lane's part of the node's tensor,
    /// and gets its part of the whole tensor's zero sharing; otherwise (constants) the
    /// whole is shared.
    ///
    /// In one pass (the value is the owner's input or weight, encoded as it is read): each
    /// element is written once, both keystreams drawn beside it in L1 on the rayon pool. A
    /// model's largest weight (VGG16's 25088×4096) is 0.8 GB per party, and drawing each
    /// stream into a tensor of its own, combining them and adding the value cost four
    /// passes over it.
    pub(crate) fn zero_sharing(
        &self,
        key: u64,
        shape: &[usize],
        combine: Combine,
        windowed: bool,
        value: Option<impl Fn(usize) -> u64 + Sync>,
    ) -> RingTensor {
        if self.dry {
            return RingTensor::zeros(shape);
        }
        let n: usize = shape.iter().product();
        let at = match (windowed, self.window) {
            (true, w) if !w.is_whole() && w.count > 0 => (n / w.count) * w.start,
            _ => 0,
        };
        let mut out = Vec::with_capacity(n);
        let dst = &mut out.spare_capacity_mut()[..n];
        match (combine, value) {
            (Combine::Add, None) => self.zero_sharing_into(key, at, dst, |_, z| z),
            (Combine::Add, Some(v)) => {
                self.zero_sharing_into(key, at, dst, |i, z| z.wrapping_add(v(i)))
            }
            (Combine::Xor, None) => self.binary_zero_sharing_into(key, at, dst, |_, z| z),
            (Combine::Xor, Some(v)) => self.binary_zero_sharing_into(key, at, dst, |i, z| z ^ v(i)),
        }
        // SAFETY: the sharing wrote all of the first n spare slots.
        unsafe { out.set_len(n) };
        RingTensor::from_vec(shape, out)
    }

    /// Words `at..at + dst.len()` of the arithmetic zero sharing under `key`, each passed
    /// with its index through `f` into `dst` (every slot written): a sharing written
    /// straight into a message, masked in the same pass.
    pub(crate) fn zero_sharing_into(
        &self,
        key: u64,
        at: usize,
        dst: &mut [std::mem::MaybeUninit<u64>],
        f: impl Fn(usize, u64) -> u64 + Sync,
    ) {
        match self.two_party_stream() {
            Some((seed, true)) => {
                map_stream_into(seed, key, at, dst, |i, s| f(i, s.wrapping_neg()))
            }
            Some((seed, false)) => map_stream_into(seed, key, at, dst, f),
            None => {
                let seeds = [&self.seeds.prev, &self.seeds.next];
                zip_streams_into(seeds, key, at, dst, |i, p, q| f(i, p.wrapping_sub(q)));
            }
        }
    }

    /// With 2 parties, the one stream of the zero sharings and whether this party negates
    /// it. Why one: the two pairwise seeds of N parties are between the same two parties
    /// when N = 2, and one uniform stream r shared by both already makes (−r, r) a zero
    /// sharing that hides the owner's value; the second stream only doubled the AES work
    /// (W1's weight and input sharings were a fifth of its CPU time). CrypTen keeps both
    /// generators for any N; its sharing with one is the same distribution.
    fn two_party_stream(&self) -> Option<(&Seed, bool)> {
        match (self.parties(), self.party()) {
            (2, 0) => Some((&self.seeds.next, true)),
            (2, _) => Some((&self.seeds.prev, false)),
            _ => None,
        }
    }

    /// As `zero_sharing_into`, for the XOR zero sharing.
    fn binary_zero_sharing_into(
        &self,
        key: u64,
        at: usize,
        dst: &mut [std::mem::MaybeUninit<u64>],
        f: impl Fn(usize, u64) -> u64 + Sync,
    ) {
        match self.two_party_stream() {
            Some((seed, _)) => map_stream_into(seed, key, at, dst, f),
            None => {
                let seeds = [&self.seeds.prev, &self.seeds.next];
                zip_streams_into(seeds, key, at, dst, |i, p, q| f(i, p ^ q));
            }
        }
    }

    fn name_op(e: Error, label: &str) -> Error {
        match e {
            Error::Timeout { peer, op, secs } => Error::Timeout {
                peer,
                op: format!("{label} ({op})"),
                secs,
            },
            Error::Peer { peer, op, msg } => Error::Peer {
                peer,
                op: format!("{label} ({op})"),
                msg,
            },
            other => other,
        }
    }

    /// One communication round: every party sends its shares of all `parts` to every peer
    /// (one message, or a stream of pieces if it is large) and combines what it receives.
    /// Returns the opened tensors.
    pub(crate) fn open(
        &self,
        label: &str,
        parts: &[&RingTensor],
        combine: Combine,
    ) -> Result<Vec<RingTensor>> {
        let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
        let msg = if self.dry {
            Vec::new()
        } else {
            RingTensor::flat_concat(parts)
        };
        self.open_flat(label, msg, &shapes, combine)
    }

    /// As `open`, for parts already concatenated in `total` (in the order of `shapes`):
    /// callers with large operands build the message once instead of part by part.
    pub(crate) fn open_flat(
        &self,
        label: &str,
        total: Vec<u64>,
        shapes: &[&[usize]],
        combine: Combine,
    ) -> Result<Vec<RingTensor>> {
        let key = self.next_key();
        self.open_flat_keyed(label, key, total, shapes, combine)
    }

    /// As `open_flat`, tagged by a key reserved earlier.
    pub(crate) fn open_flat_keyed(
        &self,
        label: &str,
        key: u64,
        total: Vec<u64>,
        shapes: &[&[usize]],
        combine: Combine,
    ) -> Result<Vec<RingTensor>> {
        self.count_round();
        if self.dry {
            return Ok(shapes.iter().map(|s| RingTensor::zeros(s)).collect());
        }
        let mut total = self.combined(label, key, total, combine)?;
        // The largest part keeps the message's buffer; only the others are copied out.
        let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        // The first of the largest: callers put the part they want handed back first, and
        // `max_by_key` alone would take the last of equal parts (every AND of equal
        // operands), moving the buffer's second half down over the first.
        let big = (0..lens.len())
            .max_by_key(|&i| (lens[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        let start: usize = lens[..big].iter().sum();
        let mut out: Vec<Option<RingTensor>> = Vec::with_capacity(shapes.len());
        let mut off = 0;
        for (i, (s, &len)) in shapes.iter().zip(&lens).enumerate() {
            out.push((i != big).then(|| RingTensor::from_vec(s, total[off..off + len].to_vec())));
            off += len;
        }
        if let Some(slot) = out.get_mut(big) {
            total.truncate(start + lens[big]);
            total.drain(..start);
            *slot = Some(RingTensor::from_vec(shapes[big], total));
        }
        Ok(out
            .into_iter()
            .map(|t| t.expect("every part filled"))
            .collect())
    }

    /// As `open_flat`, the combined words handed back whole, in the message's order, for a
    /// caller that reads its parts where they lie and writes its result over them: no part
    /// is copied out, and no result buffer is allocated beside them. On a ReLU of 3.2M
    /// elements the AND's copied-out ε and separate result were 3n of its ~20n words per
    /// party. `None` in the dry run, whose values are never computed.
    pub(crate) fn open_flat_raw(
        &self,
        label: &str,
        total: Vec<u64>,
        combine: Combine,
    ) -> Result<Option<Vec<u64>>> {
        let key = self.next_key();
        self.count_round();
        if self.dry {
            return Ok(None);
        }
        self.combined(label, key, total, combine).map(Some)
    }

    /// The opening of `total` under `key`: whole or streamed by its size.
    fn combined(
        &self,
        label: &str,
        key: u64,
        total: Vec<u64>,
        combine: Combine,
    ) -> Result<Vec<u64>> {
        if total.len() <= OPEN_PIECE {
            self.open_whole(key, total, combine)
        } else {
            self.open_streamed(key, total, combine)
        }
        .map_err(|e| Self::name_op(e, label))
    }

    fn count_round(&self) {
        if self.primary {
            self.counters().round();
        } else if self.ahead {
            // A weights lane's opening (inter-linear): beside the rounds, counted apart.
            self.counters().ahead_round();
        }
    }

    /// The combined value of a one-piece message: our share goes to every peer as one
    /// shared buffer (no copy per peer; in process, none at all), and the sum is written to
    /// a new buffer, since peers may still be reading ours.
    fn open_whole(&self, key: u64, mine: Vec<u64>, combine: Combine) -> Result<Vec<u64>> {
        let (me, n) = (self.party(), self.parties());
        let tag = self.tag(key);
        let mine = Arc::new(mine);
        for peer in (0..n).filter(|&p| p != me) {
            self.send(peer, tag, Payload::shared(&mine, 0..mine.len()))?;
        }
        let mut sum: Option<Vec<u64>> = None;
        for peer in (0..n).filter(|&p| p != me) {
            let theirs = self.comm.wait(peer, tag, mine.len())?;
            sum = Some(match sum {
                None => combine.combined(&mine, &theirs),
                Some(mut acc) => {
                    combine.fold_into(&mut acc, &theirs);
                    acc
                }
            });
        }
        // No peers (one party) leaves our own share, unshared: no copy.
        Ok(sum.unwrap_or_else(|| Arc::try_unwrap(mine).unwrap_or_else(|m| m.to_vec())))
    }

    /// The combined value of a large message, sent as a stream of pieces with at most
    /// OPEN_WINDOW of them ahead of the one being combined: otherwise every party holds a
    /// copy of the whole message per peer until it is delivered. VGG16's first FC weight
    /// mask is 0.8 GB, and three parties in one process peaked at 21.6 GiB with it sent
    /// whole. The window keeps the link busy as long as a piece takes longer to send than a
    /// round trip (64 MiB is 1.3 s at 400 Mbps against 40 ms), so it is still one round.
    /// Each piece is copied per peer and combined in place: against a piece's transfer the
    /// copy is nothing, and shared pieces would keep the whole message alive beside the sum.
    fn open_streamed(&self, key: u64, mut total: Vec<u64>, combine: Combine) -> Result<Vec<u64>> {
        let (me, n) = (self.party(), self.parties());
        let pieces = total.len().div_ceil(OPEN_PIECE).max(1);
        // One key for the whole message, whatever its size: the number of keys a lane uses
        // must not depend on how large its part is.
        let tags: Vec<Tag> = (0..pieces).map(|i| self.tag(mix(key ^ i as u64))).collect();
        let len = total.len();
        let range = |i: usize| i * OPEN_PIECE..((i + 1) * OPEN_PIECE).min(len);
        let send = |i: usize, total: &[u64]| -> Result<()> {
            for peer in (0..n).filter(|&p| p != me) {
                self.send(peer, tags[i], total[range(i)].to_vec().into())?;
            }
            Ok(())
        };
        for i in 0..pieces.min(OPEN_WINDOW) {
            send(i, &total)?;
        }
        for i in 0..pieces {
            let mine = &mut total[range(i)];
            for peer in (0..n).filter(|&p| p != me) {
                let theirs = self.comm.wait(peer, tags[i], mine.len())?;
                combine.fold_into(mine, &theirs);
            }
            // Piece i is combined in place; the pieces sent ahead lie after it, untouched.
            if i + OPEN_WINDOW < pieces {
                send(i + OPEN_WINDOW, &total)?;
            }
        }
        Ok(total)
    }

    /// One round in which only `to` learns the sum of everyone's `x`.
    pub(crate) fn open_to(
        &self,
        to: PartyId,
        label: &str,
        x: &RingTensor,
    ) -> Result<Option<RingTensor>> {
        let tag = self.tag(self.next_key());
        let (me, n) = (self.party(), self.parties());
        if to >= n {
            return Err(Error::Config(format!(
                "cannot reveal to party {to}: there are {n} parties"
            )));
        }
        self.count_round();
        if self.dry {
            return Ok((me == to).then(|| RingTensor::zeros(x.shape())));
        }
        if me != to {
            self.send(to, tag, x.data().to_vec().into())
                .map_err(|e| Self::name_op(e, label))?;
            return Ok(None);
        }
        let mut total = x.clone();
        for peer in (0..n).filter(|&p| p != me) {
            let theirs = self
                .comm
                .wait(peer, tag, x.len())
                .map_err(|e| Self::name_op(e, label))?;
            Combine::Add.fold_into(total.data_mut(), &theirs);
        }
        Ok(Some(total))
    }
}
