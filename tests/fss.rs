//! The `--protocols fss` suite (proto::fss, fss::dcf): the comparison gate and ReLU against
//! plaintext on ring edges and random values, their online costs (the target: a
//! 2-party ReLU in 1–2 rounds and at most 2 words per element per party; here 1 and 1),
//! max/argmax/max-pooling
//! through the gate, the refusal of N > 2, keys as material files (round trip, truncated,
//! another plan), and whole models under both suites against the same plaintext model.
//!
//! Comparisons, ReLU, max and pooling are exact (0 error): the gate works on ring integers
//! and the products multiply by scale-1 bits without truncation. Whole models under both
//! suites against plaintext and each other: tests/schemes.rs (its fixed-point bound);
//! bit-identical shares across schemes under fss: tests/bit_identical.rs.

mod common;
use common::*;

use std::path::PathBuf;

use mpc_pipe::fss::{dcf, Keys, Layout};
use mpc_pipe::model::plain;
use mpc_pipe::offline::file::{self, Expect, MaterialKey};
use mpc_pipe::offline::{deal, deal_with, dealer_seeds, Plan, Request};
use mpc_pipe::proto::{Ctx, Share};
use mpc_pipe::ring::{FixedPoint, Protocols, RingTensor};
use mpc_pipe::runtime::job::{build, JobSpec};
use mpc_pipe::runtime::{record_plan, run_online, SessionConfig};
use mpc_pipe::Error;

fn fss(parties: usize) -> SessionConfig {
    SessionConfig {
        fixed: FixedPoint::default().with_protocols(Protocols::Fss),
        ..SessionConfig::new(parties)
    }
}

/// Ring words at every edge of the sign: 0, ±1, ±2^62, i64::MIN, i64::MAX and their
/// neighbours, then uniform 64-bit words and small fixed-point values.
fn edge_words(d: &mut Data, random: usize) -> Vec<u64> {
    let mut v: Vec<u64> = vec![
        0,
        1,
        u64::MAX,
        2,
        u64::MAX - 1,
        1 << 62,
        (1 << 62) - 1,
        (1 << 62) + 1,
        (1u64 << 62).wrapping_neg(),
        1 << 63,
        (1 << 63) + 1,
        (1 << 63) - 1,
        (1 << 63) - 2,
    ];
    for _ in 0..random {
        v.push(d.next_u64());
    }
    let fp = FixedPoint::default();
    for _ in 0..random {
        v.push(fp.encode(d.uniform(-4.0, 4.0)));
    }
    v
}

#[test]
fn fss_ltz_relu_and_mask_are_exact_on_ring_edges_and_random_values() {
    let mut d = Data::new(7);
    let words = edge_words(&mut d, 300);
    let x = RingTensor::from_vec(&[words.len()], words.clone());
    let (ltz, relu, mask) = agree_with(&fss(2), |ctx| {
        let xs = ctx.share_input(1, Some(&x), x.shape())?;
        let l = ctx.ltz(&xs)?;
        let (r, m) = ctx.relu_with_mask(&xs)?;
        Ok((ctx.reveal(&l)?, ctx.reveal(&r)?, ctx.reveal(&m)?))
    });
    for (i, &w) in words.iter().enumerate() {
        let neg = (w as i64) < 0;
        assert_eq!(ltz.data()[i], neg as u64, "ltz of {:#x}", w);
        assert_eq!(relu.data()[i], if neg { 0 } else { w }, "relu of {:#x}", w);
        assert_eq!(mask.data()[i], !neg as u64, "mask of {:#x}", w);
    }
}

#[test]
fn fss_comparisons_against_shares_and_constants_match_plaintext() {
    let mut d = Data::new(8);
    let a = d.tensor(&[64], -3.0, 3.0);
    let mut b = d.tensor(&[64], -3.0, 3.0);
    // Ties: equal values must compare as equal.
    for i in 0..8 {
        b.data_mut()[i] = a.data()[i];
    }
    let (lt, ge, sign, abs) = agree_with(&fss(2), |ctx| {
        let x = ctx.share_plain(0, Some(&a), a.shape())?;
        let y = ctx.share_plain(1, Some(&b), b.shape())?;
        let lt = ctx.reveal(&ctx.lt(&x, &y)?)?;
        let ge = ctx.reveal(&ctx.ge_const(&x, 0.5)?)?;
        let sign = ctx.reveal(&ctx.sign(&x)?)?;
        let abs = ctx.reveal_plain(&ctx.abs(&x)?)?;
        Ok((lt, ge, sign, abs))
    });
    let qa = quantize(&a);
    let qb = quantize(&b);
    for i in 0..64 {
        let (x, y) = (qa.data()[i], qb.data()[i]);
        assert_eq!(lt.data()[i], (x < y) as u64, "{x} < {y}");
        assert_eq!(ge.data()[i], (x >= 0.5) as u64, "{x} >= 0.5");
        assert_eq!(
            sign.data()[i] as i64,
            if x < 0.0 { -1 } else { 1 },
            "sign {x}"
        );
        assert_eq!(abs.data()[i], x.abs(), "|{x}|");
    }
}

/// (rounds, words sent per element) of `op` on 1024 elements under fss, 2 parties.
fn fss_cost(
    op: impl Fn(&Ctx, &Share) -> mpc_pipe::Result<()> + Sync,
    shape: &[usize],
) -> (u64, f64) {
    let n: usize = shape.iter().product();
    let x = Data::new(3).tensor(shape, -2.0, 2.0);
    let outs = run_with(&fss(2), |ctx| {
        let xs = ctx.share_plain(0, Some(&x), x.shape())?;
        let before = ctx.counters().snapshot();
        op(ctx, &xs)?;
        Ok(ctx.counters().snapshot().since(&before))
    });
    let worst = outs.iter().map(|o| o.value.bytes_sent()).max().unwrap();
    (outs[0].value.rounds, worst as f64 / 8.0 / n as f64)
}

/// The target, read from the counters: ltz and ReLU 1 round and 1 word per
/// element per party; a max over 4 entries (and a 2×2 max pool) two levels of one ReLU
/// gate each, 1 word per pair; argmax one more product round at its second level.
#[test]
fn fss_relu_costs_one_round_and_one_word_per_element() {
    assert_eq!(fss_cost(|c, x| c.ltz(x).map(drop), &[1024]), (1, 1.0));
    assert_eq!(fss_cost(|c, x| c.relu(x).map(drop), &[1024]), (1, 1.0));
    // 4 entries: 2 pairs, then 1: 3 words per 4 elements.
    assert_eq!(
        fss_cost(|c, x| c.max_dim(x, 1).map(drop), &[256, 4]),
        (2, 0.75)
    );
    let pool = fss_cost(|c, x| c.maxpool2d(x, 2, 2, 0).map(drop), &[1, 4, 16, 16]);
    assert_eq!(pool, (2, 0.75));
    // Second level: the merged one-hot's 4 entries, two words each (Beaver product).
    let (r, words) = fss_cost(|c, x| c.argmax_dim(x, 1).map(drop), &[256, 4]);
    assert_eq!((r, words), (3, 0.75 + 2.0));
}

#[test]
fn fss_max_argmax_and_maxpool_are_exact_with_ties_and_negatives() {
    let mut d = Data::new(11);
    let mut x = d.tensor(&[2, 3, 6, 6], -2.0, 2.0);
    // Ties inside windows and rows.
    for i in (0..x.len()).step_by(5) {
        let v = x.data()[i];
        if i + 1 < x.len() {
            x.data_mut()[i + 1] = v;
        }
    }
    let qx = quantize(&x);
    let (pool, max, hot) = agree_with(&fss(2), |ctx| {
        let xs = ctx.share_plain(0, Some(&x), x.shape())?;
        let p = ctx.reveal_plain(&ctx.maxpool2d(&xs, 2, 2, 1)?)?;
        let flat = Share(xs.0.reshape(&[36, 6])?);
        let (m, h) = ctx.max_argmax_dim(&flat, 1)?;
        Ok((p, ctx.reveal_plain(&m)?, ctx.reveal(&h)?))
    });
    let want = plain::eval(
        &mpc_pipe::model::graph::Op::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 1,
        },
        &[&qx],
    )
    .unwrap();
    assert_eq!(pool, want, "maxpool");
    for r in 0..36 {
        let row = &qx.data()[r * 6..r * 6 + 6];
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let first = row.iter().position(|&v| v == m).unwrap();
        assert_eq!(max.data()[r], m, "row {r} max");
        for (j, &h) in hot.data()[r * 6..r * 6 + 6].iter().enumerate() {
            assert_eq!(h, (j == first) as u64, "row {r} one-hot at {j}");
        }
    }
}

#[test]
fn fss_with_more_than_two_parties_is_refused_naming_the_option() {
    let e = record_plan(&fss(3), &|ctx: &Ctx| {
        let x = ctx.share_input(0, Some(&RingTensor::zeros(&[4])), &[4])?;
        ctx.relu(&x).map(drop)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("fss") && e.contains("2 parties"), "{e}");
}

/// The gate's one request per comparison: the dry run records one `FssLtz` per ltz or
/// ReLU, and no AND or bit material.
#[test]
fn fss_plan_holds_one_key_request_per_comparison_and_no_binary_material() {
    let plan = record_plan(&fss(2), &|ctx: &Ctx| {
        let x = ctx.share_input(0, Some(&RingTensor::zeros(&[10])), &[10])?;
        ctx.relu(&x)?;
        ctx.ltz(&x).map(drop)
    })
    .unwrap();
    let reqs: Vec<&Request> = plan.entries.iter().map(|(_, r)| r).collect();
    assert_eq!(
        reqs.iter()
            .filter(|r| matches!(r, Request::FssLtz { len: 10, .. }))
            .count(),
        2,
        "{reqs:?}"
    );
    assert!(
        !reqs
            .iter()
            .any(|r| matches!(r, Request::And { .. } | Request::Bit { .. })),
        "{reqs:?}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-fss-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Keys go into the same material files: both parties' files hold the correction words
/// (party 1 has no other dealt words), a round trip runs lenet correctly, and a file
/// truncated or made for the crypten plan of the same job is refused.
#[test]
fn fss_keys_round_trip_through_material_files_and_bad_files_are_refused() {
    let key = MaterialKey::from_session_key(&[9u8; 32]);
    let dir = scratch("files");
    let job = build(&JobSpec::new("lenet", 2, 1)).unwrap();
    let plan = record_plan(&fss(2), &*job.plan_program).unwrap();
    let crypten_plan = record_plan(&SessionConfig::new(2), &*job.plan_program).unwrap();
    assert_ne!(plan.hash(), crypten_plan.hash());
    for m in deal(&plan, 2, 41) {
        file::save(&m, &file::party_file(&dir, m.party), &key).unwrap();
    }
    let expect = |party: usize, hash: [u8; 32]| Expect {
        session: Some(41),
        party,
        parties: 2,
        plan_hash: hash,
    };
    // Party 1's file holds the correction words: at least 1536 bytes per compared element.
    let compared: usize = plan
        .entries
        .iter()
        .filter_map(|(_, r)| match r {
            Request::FssLtz { len, .. } => Some(*len),
            _ => None,
        })
        .sum();
    let len1 = std::fs::metadata(file::party_file(&dir, 1)).unwrap().len();
    assert!(
        compared > 0 && len1 >= 1536 * compared as u64,
        "{len1} for {compared}"
    );
    let material: Vec<_> = (0..2)
        .map(|p| file::load(&file::party_file(&dir, p), &expect(p, plan.hash()), &key).unwrap())
        .collect();
    let outs = run_online(&fss(2), material, &*job.program).unwrap();
    // What is checked is that keys read back from files compute lenet: a wrong or
    // misread key flips ReLU signs and moves outputs by O(1). 1e-2 is above the 7σ + d
    // truncation bound tests/schemes.rs derives for lenet (its runs print it) and far
    // below such an error; the comparisons themselves add none.
    let err = outs[0].value.max_abs_diff(&job.reference);
    assert!(err < 1e-2, "lenet from fss files: max_abs_err {err}");
    for p in 0..2 {
        let path = file::party_file(&dir, p);
        match file::load(&path, &expect(p, crypten_plan.hash()), &key) {
            Err(Error::Material(m)) => assert!(m.contains("another plan"), "{m}"),
            other => panic!("crypten plan accepted fss keys: {:?}", other.map(|_| ())),
        }
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 8)
            .unwrap();
        match file::load(&path, &expect(p, plan.hash()), &key) {
            Err(Error::Material(m)) => assert!(m.contains("truncated"), "{m}"),
            other => panic!("truncated keys accepted: {:?}", other.map(|_| ())),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every party's components of each request, taken whole from its store.
fn taken(plan: &Plan, keep: bool) -> Vec<Vec<Vec<Vec<u64>>>> {
    taken_all(
        plan,
        deal_with(plan, &dealer_seeds(2, Some(3)), 5, &[keep; 2]),
    )
}

/// The dealer's half of the gate, checked on what the parties' stores hand out (kept as
/// drawn, and expanded from seeds and dealt words: the same): msb(r) and (ReLU) r·msb(r)
/// reconstruct, both parties hold the same correction words, and the two keys evaluate
/// at 0, α − 1, α, α + 1, 2^63 − 1 and random points to β·[x < α] with α = r mod 2^63 and
/// β = 1 − 2·msb(r) (ReLU: and r·β), the comparison proto::fss derives the sign from.
#[test]
fn fss_dealer_makes_keys_of_the_gates_comparison() {
    let plan = Plan::from_entries(vec![
        (
            3,
            Request::FssLtz {
                len: 300,
                relu: true,
            },
        ),
        (
            4,
            Request::FssLtz {
                len: 17,
                relu: false,
            },
        ),
    ]);
    let kept = taken(&plan, true);
    assert!(
        kept == taken(&plan, false),
        "kept material differs from the seeds' expansion"
    );
    let low = u64::MAX >> 1;
    let mut d = Data::new(21);
    for ((_, req), parts) in plan.entries.iter().zip(&kept) {
        let Request::FssLtz { len, relu } = *req else {
            unreachable!()
        };
        let sum = |j: usize| -> Vec<u64> {
            (0..len)
                .map(|i| parts[0][j][i].wrapping_add(parts[1][j][i]))
                .collect()
        };
        let r = sum(0);
        let msb = sum(2);
        for i in 0..len {
            assert_eq!(msb[i], r[i] >> 63, "msb(r) of element {i}");
        }
        if relu {
            let rr = sum(3);
            for i in 0..len {
                assert_eq!(
                    rr[i],
                    r[i].wrapping_mul(r[i] >> 63),
                    "r·msb(r) of element {i}"
                );
            }
        }
        let n = parts[0].len();
        assert!(
            parts[0][n - 4..] == parts[1][n - 4..],
            "the parties' correction words differ"
        );
        let x: Vec<u64> = (0..len)
            .map(|i| {
                let a = r[i] & low;
                match i % 6 {
                    0 => 0,
                    1 => a.wrapping_sub(1) & low,
                    2 => a,
                    3 => (a + 1) & low,
                    4 => low,
                    _ => d.next_u64() & low,
                }
            })
            .collect();
        let w = 1 + usize::from(relu);
        let layout = Layout::new(63, w).unwrap();
        let share = |p: usize| {
            let c = &parts[p];
            let keys = Keys {
                layout,
                seed: &c[1],
                scw: &c[n - 4],
                vcw: &c[n - 3],
                tcw: &c[n - 2],
                last: &c[n - 1],
            };
            dcf::eval(p, keys, &x).unwrap()
        };
        let (y0, y1) = (share(0), share(1));
        for i in 0..len {
            let beta = 1u64.wrapping_sub(2 * (r[i] >> 63));
            let below = x[i] < r[i] & low;
            for c in 0..w {
                let payload = if c == 0 {
                    beta
                } else {
                    r[i].wrapping_mul(beta)
                };
                let want = if below { payload } else { 0 };
                let got = y0[i * w + c].wrapping_add(y1[i * w + c]);
                assert_eq!(got, want, "element {i} word {c} (relu {relu})");
            }
        }
    }
}
