//! Conversions between arithmetic and XOR sharings (protocols.md §3.6, §3.7): A2B by a
//! log-depth tree of 64-bit parallel-prefix adders over the parties' own shares, and B2A of
//! bits with a dealer random bit. Depends on proto::{ctx, share, arith}, ring, offline.

use super::ctx::{Combine, Ctx};
use super::share::{BinShare, Share};
use crate::error::{Error, Result};
use crate::offline::{BitPair, Request};
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
        let mine = x.0.reshaped(&flat)?;
        let me = self.party();
        let mut terms = (0..self.parties())
            .map(|j| self.share_input_bin(j, (j == me).then_some(&mine), &flat))
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
                terms.push(self.add_bin(&x, &y)?);
                terms.extend(carried);
                continue;
            }
            let lefts: Vec<RingTensor> = terms.iter().step_by(2).map(|t| t.0.clone()).collect();
            let rights: Vec<RingTensor> = terms
                .iter()
                .skip(1)
                .step_by(2)
                .map(|t| t.0.clone())
                .collect();
            let sum = self.add_bin(
                &BinShare(RingTensor::concat(0, &lefts)),
                &BinShare(RingTensor::concat(0, &rights)),
            )?;
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
        if x.shape() != y.shape() {
            return Err(Error::Shape(format!(
                "binary add of shapes {:?} and {:?}",
                x.shape(),
                y.shape()
            )));
        }
        let shape = x.shape().to_vec();
        let flat = [x.0.len()];
        let n = x.0.len();
        let p0 = x.xor(y);
        let mut g = self.and(x, y)?.0.into_data();
        let mut p = p0.0.data().to_vec();
        for s in PREFIX_SHIFTS {
            // Element-major [P≪s, G≪s] pairs (the AND's layout: a lane's part of the
            // words stays contiguous): word 2i of the result is the new P_i, 2i + 1 G's update.
            let mut stacked = Vec::with_capacity(2 * n);
            for (pv, gv) in p.iter().zip(&g) {
                stacked.push(pv << s);
                stacked.push(gv << s);
            }
            let upd = self.and(
                &BinShare(RingTensor::from_vec(&flat, p)),
                &BinShare(RingTensor::from_vec(&[2 * n], stacked)),
            )?;
            let upd = upd.0.into_data();
            g.iter_mut()
                .zip(upd.chunks(2))
                .for_each(|(g, u)| *g ^= u[1]);
            p = upd.chunks(2).map(|u| u[0]).collect();
        }
        let sum: Vec<u64> =
            p0.0.data()
                .iter()
                .zip(&g)
                .map(|(p, g)| p ^ (g << 1))
                .collect();
        Ok(BinShare(RingTensor::from_vec(&shape, sum)))
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
        let z = self.open("b2a", &[&masked], Combine::Xor)?.pop().unwrap();
        let p0 = self.party() == 0;
        let out: Vec<u64> = z
            .data()
            .iter()
            .zip(r_arith.iter())
            .map(|(&z, &r)| {
                let z = z & 1;
                let v = r.wrapping_mul(1u64.wrapping_sub(2 * z));
                if p0 {
                    v.wrapping_add(z)
                } else {
                    v
                }
            })
            .collect();
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
