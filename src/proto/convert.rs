//! Conversions between arithmetic and XOR sharings (protocols.md §3.6, §3.7): A2B by a
//! log-depth tree of 64-bit parallel-prefix adders over the parties' own shares, and B2A of
//! bits with a dealer random bit. Depends on proto::{ctx, share, arith}, ring, offline.

use super::ctx::{Combine, Ctx};
use super::share::{BinShare, Share};
use crate::error::{Error, Result};
use crate::offline::{AndTriple, BitPair, Request};
use crate::ring::RingTensor;

/// Shifts of the Kogge-Stone prefix levels over a 64-bit word: log2 64 = 6 levels.
const PREFIX_SHIFTS: [u32; 6] = [1, 2, 4, 8, 16, 32];

impl<'a> Ctx<'a> {
    /// A2B (§3.6): XOR shares of the ring value x.
    ///
    /// Party j's arithmetic share x_j is XOR-shared by party j for free (PRZS + XOR), which
    /// gives N binary sharings whose ring sum is x. They are added in a tree of
    /// L = ⌈log2 N⌉ levels; all pairs of a level go through one vectorised adder and an odd
    /// one is carried up. Cost: 7·L rounds; 2PC 20n words per party.
    pub fn a2b(&self, x: &Share) -> Result<BinShare> {
        let shape = x.shape().to_vec();
        let flat = [x.len()];
        let me = self.party();
        // Each term is shared in x's shape (the same words as flat: the sharing depends only
        // on the element count and the window) and flattened by moving, with no copy of x.
        let mut terms = (0..self.parties())
            .map(|j| {
                let t = self.share_input_bin(j, (j == me).then_some(&x.0), &shape)?;
                Ok(BinShare(t.0.reshape(&flat)?))
            })
            .collect::<Result<Vec<_>>>()?;
        while terms.len() > 1 {
            let carried = if terms.len() % 2 == 1 {
                terms.pop()
            } else {
                None
            };
            let pairs = terms.len() / 2;
            if pairs == 1 {
                let y = terms.pop().unwrap();
                let x = terms.pop().unwrap();
                terms.push(self.add_bin_owned(x, y)?);
                terms.extend(carried);
                continue;
            }
            // The pairs' sides stacked straight from the terms, which are then dropped.
            let side = |first: usize| {
                let refs: Vec<&RingTensor> =
                    terms.iter().skip(first).step_by(2).map(|t| &t.0).collect();
                RingTensor::from_vec(&[pairs * flat[0]], RingTensor::flat_concat(&refs))
            };
            let (lefts, rights) = (side(0), side(1));
            terms.clear();
            let sum = self.add_bin_owned(BinShare(lefts), BinShare(rights))?;
            terms = sum
                .0
                .split_axis(0, pairs)
                .into_iter()
                .map(BinShare)
                .collect();
            terms.extend(carried);
        }
        let total = terms.pop().expect("at least two parties");
        Ok(BinShare(total.0.reshape(&shape)?))
    }

    /// x + y mod 2^64 on XOR shares: a Kogge-Stone parallel-prefix adder (§3.6).
    ///
    /// G = x AND y (generate, 1 round) and P = x XOR y (propagate). Level s ∈ {1, 2, .., 32}
    /// combines each position's group with the one s below it:
    ///   G ← G XOR (P AND G≪s),  P ← P AND P≪s,
    /// as ONE AND of P broadcast against the pairs (P≪s, G≪s) (3n words). XOR stands for
    /// OR because a group that propagates never generates, so the two terms are disjoint.
    /// After 6 levels G_i is the carry out of bit i, and x + y = P₀ XOR (G ≪ 1).
    /// Cost: 7 rounds, 2n + 6·3n = 20n words per party (as CrypTen's SPK circuit).
    /// Zeros shifted into the low bits act as "no carry-in", which is what a sum needs.
    pub fn add_bin(&self, x: &BinShare, y: &BinShare) -> Result<BinShare> {
        self.add_bin_owned(x.clone(), y.clone())
    }

    /// `add_bin` of terms the caller no longer needs: x's buffer becomes P₀ and then the
    /// sum, and y is dropped once G and P₀ are formed. Between levels a party holds P₀, G
    /// and P (3n words); within one, the triple and the opened message (5n + 3n) beside
    /// them, and nothing else: the pairs (P≪s, G≪s) are written straight into the message,
    /// and the new P and G straight from the opened words (`prefix_level`). A2B on a VGG16
    /// ReLU of 3.2M elements held ~20-24 words per element per party before.
    pub fn add_bin_owned(&self, x: BinShare, y: BinShare) -> Result<BinShare> {
        if x.shape() != y.shape() {
            return Err(Error::Shape(format!(
                "binary add of shapes {:?} and {:?}",
                x.shape(),
                y.shape()
            )));
        }
        let shape = x.shape().to_vec();
        let n = x.0.len();
        let g = self.and(&x, &y)?;
        if self.is_dry() {
            // The same keys and openings as online; the values are never read.
            for _ in PREFIX_SHIFTS {
                self.and_triple(n, 2)?;
                self.and_open(Vec::new())?;
            }
            return Ok(BinShare(RingTensor::zeros(&shape)));
        }
        let mut g = g.0.into_data();
        let mut p0 = x.0.into_data();
        p0.iter_mut().zip(y.0.data()).for_each(|(p, y)| *p ^= y);
        drop(y);
        let mut p = p0.clone();
        for s in PREFIX_SHIFTS {
            self.prefix_level(s, &mut p, &mut g)?;
        }
        drop(p);
        p0.iter_mut().zip(&g).for_each(|(p, g)| *p ^= g << 1);
        Ok(BinShare(RingTensor::try_from_vec(&shape, p0)?))
    }

    /// One level of the adder: the AND of P broadcast against the element-major pairs
    /// [P≪s, G≪s] (word 2i of its result is the new P_i, word 2i + 1 G_i's update), with
    /// its message written from p and g and its result read from the opened words: the
    /// same message and the same words as `and` on the stacked pairs, without the 2n-word
    /// stack, the AND's result, or a copy of ε.
    fn prefix_level(&self, s: u32, p: &mut [u64], g: &mut [u64]) -> Result<()> {
        let n = p.len();
        let AndTriple { a, b, c } = self.and_triple(n, 2)?;
        let (a, b, c) = (&a[..n], &b[..2 * n], &c[..2 * n]);
        // [y ^ b, x ^ a] with y the pairs and x = P, as `and` writes it.
        let mut msg: Vec<u64> = Vec::with_capacity(3 * n);
        let dst = &mut msg.spare_capacity_mut()[..3 * n];
        let (pairs, tail) = dst.split_at_mut(2 * n);
        for i in 0..n {
            pairs[2 * i].write((p[i] << s) ^ b[2 * i]);
            pairs[2 * i + 1].write((g[i] << s) ^ b[2 * i + 1]);
        }
        for i in 0..n {
            tail[i].write(p[i] ^ a[i]);
        }
        // SAFETY: the two loops wrote all 3n spare slots.
        unsafe { msg.set_len(3 * n) };
        let opened = self
            .and_open(msg)?
            .ok_or_else(|| Error::Protocol("adder level opened nothing online".into()))?;
        let (delta, eps) = opened.split_at(2 * n);
        let t = LevelTerms {
            a,
            eps: &eps[..n],
            b,
            delta,
            c,
        };
        if self.party() == 0 {
            t.run::<true>(p, g);
        } else {
            t.run::<false>(p, g);
        }
        Ok(())
    }

    /// B2A of single bits (§3.7): bit 0 of every word of x becomes an arithmetic 0/1 of
    /// scale 1. The higher bits of x are ignored (cleared before the opening, which would
    /// otherwise reveal them). With the dealer's random bit r, shared as (<r>, [r]):
    /// open z = x XOR r (1 round, n words), then [x] = [r]·(1 − 2z) + z (z added by party 0).
    pub fn b2a_bit(&self, x: &BinShare) -> Result<Share> {
        let len = x.0.len();
        let key = self.next_key();
        let BitPair {
            xor: r_bin,
            arith: r_arith,
        } = BitPair::from_material(self.material(key, Request::Bit { len })?)?;
        if r_bin.len() != len || r_arith.len() != len {
            return Err(Error::Material(format!(
                "random bits of {} words for {len} elements",
                r_bin.len()
            )));
        }
        let masked = RingTensor::from_vec(
            x.shape(),
            x.0.data()
                .iter()
                .zip(r_bin.iter())
                .map(|(x, r)| (x & 1) ^ r)
                .collect(),
        );
        let Some(mut out) = self.open_flat_raw("b2a", masked.into_data(), Combine::Xor)? else {
            return Ok(Share(RingTensor::zeros(x.shape())));
        };
        // [x] written over the opened z, its only reader.
        let p0 = self.party() == 0;
        for (z, &r) in out.iter_mut().zip(r_arith.iter()) {
            let zb = *z & 1;
            let v = r.wrapping_mul(1u64.wrapping_sub(2 * zb));
            *z = if p0 { v.wrapping_add(zb) } else { v };
        }
        Ok(Share(RingTensor::try_from_vec(x.shape(), out)?))
    }

    /// B2A of the low `bits` bits of every word (§3.7, k-bit variant): the bit planes are
    /// stacked into one batched single-bit B2A (1 round, bits·n words), then summed as
    /// Σ 2^i·bit_i locally. With bits = 64 this is the full conversion of x mod 2^64.
    pub fn b2a(&self, x: &BinShare, bits: u32) -> Result<Share> {
        if bits == 0 || bits > 64 {
            return Err(Error::Config(format!("b2a of {bits} bits: must be 1..=64")));
        }
        let n = x.0.len();
        let planes: Vec<RingTensor> = (0..bits)
            .map(|i| RingTensor::from_vec(&[n], x.0.data().iter().map(|w| w >> i).collect()))
            .collect();
        let b = self.b2a_bit(&BinShare(RingTensor::concat(0, &planes)))?;
        let mut out = vec![0u64; n];
        for (i, plane) in b.0.data().chunks(n.max(1)).enumerate().take(bits as usize) {
            for (o, &v) in out.iter_mut().zip(plane) {
                *o = o.wrapping_add(v << i);
            }
        }
        Ok(Share(RingTensor::try_from_vec(x.shape(), out)?))
    }
}

/// The local step of one adder level (`Ctx::prefix_level`): `and`'s z over the pairs,
/// z_j = c_j ^ (ε_i & b_j) ^ (a_i & δ_j) (b_j ^ δ_j in place of b_j at party 0), with
/// z_2i written to P_i and z_2i+1 XORed into G_i. Const party, so the loop is straight.
struct LevelTerms<'a> {
    a: &'a [u64],
    eps: &'a [u64],
    b: &'a [u64],
    delta: &'a [u64],
    c: &'a [u64],
}

impl LevelTerms<'_> {
    fn run<const P0: bool>(&self, p: &mut [u64], g: &mut [u64]) {
        let n = p.len();
        let (g, a, eps) = (&mut g[..n], &self.a[..n], &self.eps[..n]);
        let (b, d, c) = (&self.b[..2 * n], &self.delta[..2 * n], &self.c[..2 * n]);
        for i in 0..n {
            let (ai, ei) = (a[i], eps[i]);
            let (j, k) = (2 * i, 2 * i + 1);
            let (bj, bk) = if P0 {
                (b[j] ^ d[j], b[k] ^ d[k])
            } else {
                (b[j], b[k])
            };
            p[i] = c[j] ^ (ei & bj) ^ (ai & d[j]);
            g[i] ^= c[k] ^ (ei & bk) ^ (ai & d[k]);
        }
    }
}
