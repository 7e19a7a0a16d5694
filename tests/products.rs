//! Product groups (proto::products): values opened once each give every product of the
//! group exactly (wrapping ring products against the plaintext), for 2 and 3 parties,
//! with the openings split over rounds as a protocol makes them; each value costs one
//! word per element and each opening one round; misuse (a value opened twice, a product
//! of an unopened value, a pair past the values) is an error, never a wrong share.

mod common;
use common::*;

use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::RingTensor;

/// Four values, among them random words and small fixed-point ones, and pairs with a
/// square, a value in three products and one in none: opened as {v0}, then {v1, v2, v3}.
#[test]
fn a_group_gives_every_product_exactly_at_one_word_per_value() {
    const PAIRS: [[u8; 2]; 5] = [[0, 0], [0, 1], [0, 3], [1, 3], [3, 3]];
    let n = 300;
    let mut d = Data::new(41);
    let vals: Vec<Vec<u64>> = (0..4)
        .map(|k| {
            (0..n)
                .map(|i| match (k + i) % 3 {
                    0 => d.next_u64(),
                    1 => (d.next_u64() >> 40).wrapping_neg(),
                    _ => d.next_u64() >> 44,
                })
                .collect()
        })
        .collect();
    for parties in [2, 3] {
        let outs = run(parties, |ctx: &Ctx| {
            let shares: Vec<Share> = vals
                .iter()
                .map(|v| {
                    let t = RingTensor::from_vec(&[n], v.clone());
                    ctx.share_input(0, Some(&t), &[n])
                })
                .collect::<mpc_pipe::Result<_>>()?;
            let before = ctx.counters().snapshot();
            let mut g = ctx.products(&[n], 4, &PAIRS)?;
            g.open(ctx, "first", &[(0, &shares[0])])?;
            let early = g.product(0)?;
            g.open(
                ctx,
                "rest",
                &[(1, &shares[1]), (2, &shares[2]), (3, &shares[3])],
            )?;
            let cost = ctx.counters().snapshot().since(&before);
            let mut prods = vec![early];
            for p in 1..PAIRS.len() {
                prods.push(g.product(p)?);
            }
            let opened = prods
                .iter()
                .map(|s| ctx.reveal(s))
                .collect::<mpc_pipe::Result<Vec<_>>>()?;
            Ok((opened, cost))
        });
        for o in &outs {
            let (opened, cost) = &o.value;
            assert_eq!(cost.rounds, 2, "{parties} parties");
            // Four values of n words each, to every other party.
            assert_eq!(
                cost.bytes_sent(),
                (4 * n * 8 * (parties - 1)) as u64,
                "{parties} parties"
            );
            for (p, &[i, j]) in PAIRS.iter().enumerate() {
                let (vi, vj) = (&vals[usize::from(i)], &vals[usize::from(j)]);
                for (e, (&x, &y)) in vi.iter().zip(vj).enumerate() {
                    assert_eq!(
                        opened[p].data()[e],
                        x.wrapping_mul(y),
                        "{parties} parties, pair {p}, element {e}"
                    );
                }
            }
        }
    }
}

/// Opening a value twice (a mask used twice would leak), a product before its values are
/// open, a product or value past the group, and pairs out of order or past the values
/// are refused.
#[test]
fn misuse_of_a_group_is_an_error() {
    let outs = run(2, |ctx: &Ctx| {
        let t = RingTensor::from_vec(&[4], vec![1, 2, 3, 4]);
        let x = ctx.share_input(0, Some(&t), &[4])?;
        let mut errs = Vec::new();
        errs.push(ctx.products(&[4], 2, &[[1, 0]]).is_err());
        errs.push(ctx.products(&[4], 2, &[[0, 2]]).is_err());
        let mut g = ctx.products(&[4], 2, &[[0, 1]])?;
        errs.push(g.product(0).is_err());
        g.open(ctx, "x", &[(0, &x)])?;
        errs.push(g.product(0).is_err());
        errs.push(g.masked(0, &x).is_err());
        errs.push(g.masked(2, &x).is_err());
        errs.push(g.product(1).is_err());
        let y = ctx.share_input(0, Some(&RingTensor::zeros(&[5])), &[5])?;
        errs.push(g.masked(1, &y).is_err());
        Ok(errs)
    });
    for o in &outs {
        assert!(o.value.iter().all(|&e| e), "{:?}", o.value);
    }
}
