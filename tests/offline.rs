//! Offline material files: a round trip gives a correct online run, and files that are
//! truncated, corrupted, from another session, for another party or another plan are
//! refused with the documented error (never a panic, never a wrong result).

mod common;

use std::path::{Path, PathBuf};

use mpc_pipe::offline::file::{self, Expect, MaterialKey};
use mpc_pipe::offline::{deal, PartyMaterial};
use mpc_pipe::runtime::job::{build, JobSpec};
use mpc_pipe::runtime::{record_plan, run_online, SessionConfig};
use mpc_pipe::Error;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The material key of the tests' session key (a fixed, arbitrary one).
fn key() -> MaterialKey {
    MaterialKey::from_session_key(&[7u8; 32])
}

/// Deal the selftest job for (parties, batch) and write its files into `dir`.
fn write_material(dir: &Path, parties: usize, batch: usize, session: u64) -> [u8; 32] {
    let cfg = SessionConfig::new(parties);
    let job = build(&JobSpec::new("selftest", parties, batch)).unwrap();
    let plan = record_plan(&cfg, &*job.program).unwrap();
    for m in deal(&plan, parties, session) {
        file::save(&m, &file::party_file(dir, m.party), &key()).unwrap();
    }
    plan.hash()
}

/// Load `path` expecting (session, party, parties, plan hash).
fn load_as(
    path: &Path,
    session: u64,
    party: usize,
    parties: usize,
    plan_hash: [u8; 32],
) -> mpc_pipe::Result<PartyMaterial> {
    file::load(
        path,
        &Expect {
            session: Some(session),
            party,
            parties,
            plan_hash,
        },
        &key(),
    )
}

fn expect_material_err(r: mpc_pipe::Result<PartyMaterial>, needle: &str) {
    match r {
        Err(Error::Material(msg)) => assert!(
            msg.contains(needle),
            "error '{msg}' should mention '{needle}'"
        ),
        Err(other) => panic!("expected a material error mentioning '{needle}', got {other:?}"),
        Ok(_) => panic!("material was accepted, expected refusal mentioning '{needle}'"),
    }
}

#[test]
fn files_round_trip_into_a_correct_online_run() {
    for parties in [2, 3] {
        let dir = scratch(&format!("rt{parties}"));
        let hash = write_material(&dir, parties, 2, 77);
        let material: Vec<PartyMaterial> = (0..parties)
            .map(|p| load_as(&file::party_file(&dir, p), 77, p, parties, hash).unwrap())
            .collect();
        let job = build(&JobSpec::new("selftest", parties, 2)).unwrap();
        let outs = run_online(&SessionConfig::new(parties), material, &*job.program).unwrap();
        // x² then ·w with |x| <= 1.75, |w| <= 0.5, k = 4: input quantization (< 1 ulp each)
        // and two truncations (2 ulp each) stay far below 1e-3.
        let err = outs[0].value.max_abs_diff(&job.reference);
        assert!(err < 1e-3, "{parties} parties: max_abs_err {err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn truncated_file_is_refused() {
    let dir = scratch("trunc");
    let hash = write_material(&dir, 2, 1, 5);
    let path = file::party_file(&dir, 0);
    let len = std::fs::metadata(&path).unwrap().len();
    for cut in [len - 1, len / 2, 10] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        expect_material_err(load_as(&path, 5, 0, 2, hash), "truncated");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn corrupted_or_foreign_file_is_refused() {
    let dir = scratch("corrupt");
    let hash = write_material(&dir, 2, 1, 5);
    let path = file::party_file(&dir, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() - 40;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    expect_material_err(load_as(&path, 5, 0, 2, hash), "checksum");
    std::fs::write(&path, vec![0x55u8; 4096]).unwrap();
    expect_material_err(load_as(&path, 5, 0, 2, hash), "not an mpc-pipe");
    std::fs::remove_dir_all(&dir).ok();
}

/// Any single bit flipped anywhere in a file (header, seed, plan, corrections or the tag
/// itself) is refused: 100 random positions in party 0's file (it has corrections) and
/// party 1's, each flip on a fresh copy. The load may name another problem first (magic,
/// sizes, party, plan hash), but it never accepts.
#[test]
fn every_random_single_bit_flip_is_detected() {
    use rand_xoshiro::rand_core::{RngCore, SeedableRng};
    let dir = scratch("flips");
    let hash = write_material(&dir, 2, 2, 5);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(23);
    let mut detected = 0;
    for party in [0, 1] {
        let path = file::party_file(&dir, party);
        let good = std::fs::read(&path).unwrap();
        let flipped = dir.join(format!("flipped{party}.mat"));
        for _ in 0..100 {
            let bit = (rng.next_u64() % (8 * good.len() as u64)) as usize;
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&flipped, &bytes).unwrap();
            match load_as(&flipped, 5, party, 2, hash) {
                Err(Error::Material(_)) => detected += 1,
                other => panic!(
                    "party {party}: bit {bit} of {} flipped: {:?}",
                    good.len(),
                    other.map(|_| "accepted")
                ),
            }
        }
        // The untouched file still loads (the flips were detected, not everything refused).
        assert!(load_as(&path, 5, party, 2, hash).is_ok());
    }
    assert_eq!(detected, 200);
    std::fs::remove_dir_all(&dir).ok();
}

/// An editor who changes the seed or a correction and recomputes an unkeyed checksum (the
/// version-1 SHA-256 trailer) or a MAC under any key but the session's is refused; the
/// same file MACed under the right key loads, so only the key is what was missing.
#[test]
fn an_edited_file_with_its_checksum_recomputed_is_refused() {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let dir = scratch("forge");
    let hash = write_material(&dir, 2, 1, 5);
    let path = file::party_file(&dir, 0);
    let good = std::fs::read(&path).unwrap();
    let body = good.len() - 32;
    // The seed (bytes 64..80) and the last word of the corrections.
    for at in [64, body - 8] {
        let mut edited = good[..body].to_vec();
        edited[at] ^= 0x5a;
        let sha = Sha256::digest(&edited);
        // What the loader computes for `key`, redone by hand: HMAC-SHA256 under
        // HMAC-SHA256(session key, label), over everything before the tag.
        let mac_under = |session: [u8; 32]| {
            let mut k = <Hmac<Sha256> as Mac>::new_from_slice(&session).unwrap();
            k.update(b"mpc-pipe material mac v2");
            let mk = k.finalize().into_bytes();
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&mk).unwrap();
            m.update(&edited);
            m.finalize().into_bytes().to_vec()
        };
        for (what, tag) in [
            ("sha256", sha.to_vec()),
            ("another key", mac_under([8u8; 32])),
        ] {
            let mut f = edited.clone();
            f.extend_from_slice(&tag);
            std::fs::write(&path, &f).unwrap();
            match load_as(&path, 5, 0, 2, hash) {
                Err(Error::Material(m)) => assert!(m.contains("MAC"), "{what}: {m}"),
                other => panic!(
                    "byte {at} edited, {what} trailer: {:?}",
                    other.map(|_| "accepted")
                ),
            }
        }
        let mut f = edited.clone();
        f.extend_from_slice(&mac_under([7u8; 32]));
        std::fs::write(&path, &f).unwrap();
        let m = load_as(&path, 5, 0, 2, hash).expect("the right key's MAC verifies");
        if at == 64 {
            assert_ne!(m.seed[0], good[64]);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn file_of_another_session_is_refused() {
    let dir = scratch("session");
    let hash = write_material(&dir, 2, 1, 1111);
    expect_material_err(
        load_as(&file::party_file(&dir, 1), 2222, 1, 2, hash),
        "session",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn file_for_another_party_is_refused() {
    let dir = scratch("party");
    let hash = write_material(&dir, 3, 1, 9);
    expect_material_err(
        load_as(&file::party_file(&dir, 1), 9, 2, 3, hash),
        "party 1",
    );
    expect_material_err(
        load_as(&file::party_file(&dir, 1), 9, 1, 4, hash),
        "3 parties",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn file_for_another_plan_is_refused() {
    let dir = scratch("plan");
    write_material(&dir, 2, 1, 9);
    // The same job at batch 2 has another plan (other shapes).
    let job2 = build(&JobSpec::new("selftest", 2, 2)).unwrap();
    let other = record_plan(&SessionConfig::new(2), &*job2.program)
        .unwrap()
        .hash();
    expect_material_err(
        load_as(&file::party_file(&dir, 0), 9, 0, 2, other),
        "another plan",
    );
    // Both hashes in full: a prefix could be the same for two plans.
    let full: String = other.iter().map(|b| format!("{b:02x}")).collect();
    expect_material_err(load_as(&file::party_file(&dir, 0), 9, 0, 2, other), &full);
    std::fs::remove_dir_all(&dir).ok();
}

/// The truncation mode is part of the plan: with 2 parties, `dealer` records a truncation
/// mask for each truncation and `local` none, so the plan hashes differ and material dealt
/// for one mode is refused by a run in the other (a run with the wrong masks, or without
/// them, would give wrong results or fail at the first truncation).
#[test]
fn material_of_one_truncation_mode_is_refused_by_the_other() {
    use mpc_pipe::offline::Request;
    use mpc_pipe::ring::Trunc;
    let job = build(&JobSpec::new("selftest", 2, 1)).unwrap();
    let cfg = |t| {
        let mut c = SessionConfig::new(2);
        c.fixed = c.fixed.with_trunc(Some(t));
        c
    };
    let masks = |p: &mpc_pipe::offline::Plan| {
        p.entries
            .iter()
            .filter(|(_, r)| matches!(r, Request::Trunc { .. }))
            .count()
    };
    let local = record_plan(&cfg(Trunc::Local), &*job.program).unwrap();
    let dealer = record_plan(&cfg(Trunc::Dealer), &*job.program).unwrap();
    let default = record_plan(&SessionConfig::new(2), &*job.program).unwrap();
    assert_eq!(masks(&local), 0);
    // selftest truncates twice (x², then ·w).
    assert_eq!(masks(&dealer), 2);
    assert_eq!(default.hash(), local.hash(), "the 2-party default is local");
    assert_ne!(local.hash(), dealer.hash());

    let dir = scratch("truncmode");
    for m in deal(&dealer, 2, 31) {
        file::save(&m, &file::party_file(&dir, m.party), &key()).unwrap();
    }
    expect_material_err(
        load_as(&file::party_file(&dir, 0), 31, 0, 2, local.hash()),
        "another plan",
    );
    let material: Vec<PartyMaterial> = (0..2)
        .map(|p| load_as(&file::party_file(&dir, p), 31, p, 2, dealer.hash()).unwrap())
        .collect();
    let outs = run_online(&cfg(Trunc::Dealer), material, &*job.program).unwrap();
    // As files_round_trip_into_a_correct_online_run: far below 1e-3.
    let err = outs[0].value.max_abs_diff(&job.reference);
    assert!(err < 1e-3, "max_abs_err {err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Material drawn on demand from the seed gives the same online result as expanded
/// material, and refuses a request that was not planned or is asked for twice.
#[test]
fn lazy_material_matches_expanded_and_refuses_misuse() {
    use mpc_pipe::offline::{MaterialSource, Part, Request};
    let whole = |r: &Request| Part {
        start: 0,
        len: r.units(),
    };
    let job = build(&JobSpec::new("selftest", 3, 2)).unwrap();
    let cfg = SessionConfig::new(3);
    let plan = record_plan(&cfg, &*job.program).unwrap();
    let material = deal(&plan, 3, 4);
    for m in &material {
        let eager = m.clone().into_store().unwrap();
        let lazy = m.clone().into_lazy();
        for (key, req) in &plan.entries {
            assert_eq!(
                lazy.take(*key, req, whole(req)).unwrap(),
                eager.take(*key, req, whole(req)).unwrap(),
                "party {} key {key:#x}",
                m.party
            );
        }
        let (key, req) = &plan.entries[0];
        assert!(
            matches!(lazy.take(*key, req, whole(req)), Err(Error::Material(_))),
            "second use must be refused"
        );
        assert!(matches!(
            lazy.take(12345, &Request::Mul { len: 1 }, Part { start: 0, len: 1 }),
            Err(Error::Material(_))
        ));
    }
}

/// A part of a request's material is exactly those units of the whole (so every lane of a
/// schedule meets the serial run's material), from the eager store, the lazy store and
/// the seed alike; parts never overlap, and the whole is freed once every unit is taken.
#[test]
fn parts_of_material_are_slices_of_the_whole_and_used_once() {
    use mpc_pipe::offline::{MaterialSource, Part, Plan, Request};
    let reqs = [
        Request::Mul { len: 10 },
        Request::And { len: 6, rep: 2 },
        Request::Bit { len: 7 },
        Request::Trunc { len: 9, shift: 16 },
        Request::Square { len: 5 },
        Request::Products {
            len: 8,
            values: 3,
            pairs: vec![[0, 0], [0, 2], [1, 2]],
        },
        Request::BatchMatmul {
            batch: 4,
            m: 2,
            k: 3,
            n: 2,
        },
    ];
    let plan = Plan::from_entries(
        reqs.iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (i as u64 + 1, r))
            .collect(),
    );
    for m in deal(&plan, 3, 9) {
        let whole_store = m.clone().into_store().unwrap();
        let (eager, lazy) = (m.clone().into_store().unwrap(), m.clone().into_lazy());
        for (key, req) in &plan.entries {
            let units = req.units();
            let whole = whole_store
                .take(
                    *key,
                    req,
                    Part {
                        start: 0,
                        len: units,
                    },
                )
                .unwrap();
            // Independent reference: the units' words cut out of the whole by hand.
            let cut = |s: usize, e: usize| -> Vec<Vec<u64>> {
                let lens = req.component_lens();
                whole
                    .iter()
                    .zip(&lens)
                    .map(|(c, &l)| {
                        // Every layout is unit-major: a unit's words are contiguous.
                        let per = l / units;
                        c[s * per..e * per].to_vec()
                    })
                    .collect()
            };
            let mid = units / 2;
            let words = |t: Vec<mpc_pipe::offline::Words>| -> Vec<Vec<u64>> {
                t.into_iter().map(|w| w.to_vec()).collect()
            };
            for store in [&eager as &dyn MaterialSource, &lazy] {
                let second = store
                    .take(
                        *key,
                        req,
                        Part {
                            start: mid,
                            len: units - mid,
                        },
                    )
                    .unwrap();
                assert_eq!(
                    words(second),
                    cut(mid, units),
                    "party {} {req:?} second half",
                    m.party
                );
                assert!(
                    matches!(
                        store.take(*key, req, Part { start: mid, len: 1 }),
                        Err(Error::Material(_))
                    ),
                    "a unit taken twice must be refused"
                );
                let first = store.take(*key, req, Part { start: 0, len: mid }).unwrap();
                assert_eq!(
                    words(first),
                    cut(0, mid),
                    "party {} {req:?} first half",
                    m.party
                );
            }
        }
        assert_eq!(
            eager.remaining(),
            0,
            "every key is freed once all of it is taken"
        );
    }
}

/// The dealt material reconstructs to what each request promises, in the layouts the
/// protocols read: c = a·b elementwise and per matrix of a batch, and an AND triple's
/// c[i·rep + r] = a[i] & b[i·rep + r] (element-major).
/// The dealer's material reconstructs to each request's relation, checked element by
/// element against scalar arithmetic (a naive product and convolution), for every kind
/// of request, with requests long enough to span several of the dealer's parallel chunks.
/// The material an in-process dealer keeps for the parties (`deal_with`, keep) is word for
/// word what each party expands from its own seed (keep nothing).
#[test]
fn dealt_material_reconstructs_to_its_relations() {
    use mpc_pipe::offline::{deal_with, dealer_seeds, Plan, Request};
    let reqs = [
        Request::Mul { len: 70_001 },
        Request::Square { len: 40_000 },
        // Masks past a chunk (32 Ki words), a square, a repeated value, an unused one.
        Request::Products {
            len: 33_001,
            values: 4,
            pairs: vec![[0, 1], [1, 1], [1, 3], [0, 3]],
        },
        Request::And { len: 5, rep: 3 },
        Request::And { len: 9_000, rep: 8 },
        // A chunk boundary (32 Ki words) inside an element's words.
        Request::And {
            len: 12_000,
            rep: 3,
        },
        Request::Bit { len: 33_000 },
        Request::Trunc {
            len: 35_000,
            shift: 16,
        },
        Request::Matmul { m: 5, k: 7, n: 3 },
        Request::Conv2d {
            x: [2, 3, 5, 4],
            w: [4, 3, 3, 3],
            stride: 1,
            padding: 1,
        },
        Request::BatchMatmul {
            batch: 3,
            m: 2,
            k: 4,
            n: 3,
        },
        Request::ConvGradInput {
            dy: [2, 4, 3, 2],
            w: [4, 3, 3, 3],
            in_hw: [5, 4],
            stride: 2,
            padding: 1,
        },
        Request::ConvGradWeight {
            x: [2, 3, 5, 4],
            dy: [2, 4, 5, 4],
            k_hw: [3, 3],
            stride: 1,
            padding: 1,
        },
    ];
    let plan = Plan::from_entries(
        reqs.iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (i as u64 + 7, r))
            .collect(),
    );
    let seeds = dealer_seeds(3, None);
    let expanded = common::taken_all(&plan, deal_with(&plan, &seeds, 5, &[true; 3]));
    let from_seeds = common::taken_all(&plan, deal_with(&plan, &seeds, 5, &[false; 3]));
    assert!(
        expanded == from_seeds,
        "kept material differs from the seeds' expansion"
    );
    for ((_, req), parts) in plan.entries.iter().zip(&expanded) {
        let comb = |j: usize, xor: bool| -> Vec<u64> {
            let mut acc = vec![0u64; parts[0][j].len()];
            for p in parts {
                for (a, v) in acc.iter_mut().zip(&p[j]) {
                    *a = if xor { *a ^ v } else { a.wrapping_add(*v) };
                }
            }
            acc
        };
        let dot = |a: &[u64], b: &[u64]| {
            a.iter()
                .zip(b)
                .fold(0u64, |s, (x, y)| s.wrapping_add(x.wrapping_mul(*y)))
        };
        match *req {
            Request::Mul { len } => {
                let (a, b, c) = (comb(0, false), comb(1, false), comb(2, false));
                for i in 0..len {
                    assert_eq!(c[i], a[i].wrapping_mul(b[i]));
                }
            }
            Request::Square { len } => {
                let (r, r2) = (comb(0, false), comb(1, false));
                for i in 0..len {
                    assert_eq!(r2[i], r[i].wrapping_mul(r[i]));
                }
            }
            Request::Products {
                len,
                values,
                ref pairs,
            } => {
                let masks: Vec<Vec<u64>> = (0..values).map(|k| comb(k, false)).collect();
                for (p, &[i, j]) in pairs.iter().enumerate() {
                    let c = comb(values + p, false);
                    for e in 0..len {
                        let want = masks[usize::from(i)][e].wrapping_mul(masks[usize::from(j)][e]);
                        assert_eq!(c[e], want, "product {p} element {e}");
                    }
                }
                assert!(
                    masks.windows(2).all(|w| w[0] != w[1]),
                    "the masks of a group must be independent"
                );
            }
            Request::And { len, rep } => {
                let (a, b, c) = (comb(0, true), comb(1, true), comb(2, true));
                for i in 0..len {
                    for r in 0..rep {
                        assert_eq!(c[i * rep + r], a[i] & b[i * rep + r]);
                    }
                }
            }
            Request::Bit { len } => {
                let (bits, r) = (comb(0, true), comb(1, false));
                for i in 0..len {
                    assert!(bits[i] <= 1, "XOR shares of one bit");
                    assert_eq!(r[i], bits[i]);
                }
            }
            Request::Trunc { len, shift } => {
                let (r, hi, msb) = (comb(0, false), comb(1, false), comb(2, false));
                for i in 0..len {
                    assert_eq!(hi[i], (r[i] % (1 << 63)) >> shift);
                    assert_eq!(msb[i], r[i] >> 63);
                }
            }
            Request::Matmul { m, k, n } => {
                let (a, b, c) = (comb(0, false), comb(1, false), comb(2, false));
                for i in 0..m {
                    for j in 0..n {
                        let col: Vec<u64> = (0..k).map(|l| b[l * n + j]).collect();
                        assert_eq!(c[i * n + j], dot(&a[i * k..(i + 1) * k], &col));
                    }
                }
            }
            Request::Conv2d {
                x,
                w,
                stride,
                padding,
            } => {
                let (a, b, c) = (comb(0, false), comb(1, false), comb(2, false));
                let [bn, ci, h, wd] = x;
                let [co, _, kh, kw] = w;
                let (oh, ow) = (
                    (h + 2 * padding - kh) / stride + 1,
                    (wd + 2 * padding - kw) / stride + 1,
                );
                assert_eq!(c.len(), bn * co * oh * ow);
                for (idx, &got) in c.iter().enumerate() {
                    let (n_, o, y, xx) = (
                        idx / (co * oh * ow),
                        idx / (oh * ow) % co,
                        idx / ow % oh,
                        idx % ow,
                    );
                    let mut want = 0u64;
                    for cc in 0..ci {
                        for dy in 0..kh {
                            for dx in 0..kw {
                                let (iy, ix) = (
                                    (y * stride + dy) as isize - padding as isize,
                                    (xx * stride + dx) as isize - padding as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = a[((n_ * ci + cc) * h + iy as usize) * wd + ix as usize];
                                let wv = b[((o * ci + cc) * kh + dy) * kw + dx];
                                want = want.wrapping_add(xv.wrapping_mul(wv));
                            }
                        }
                    }
                    assert_eq!(got, want, "conv triple at output {idx}");
                }
            }
            // Training's conv gradient triples, against the scalar kernels (the reference
            // the SIMD kernels are tested against bit for bit).
            Request::ConvGradInput {
                dy,
                w,
                in_hw,
                stride,
                padding,
            } => {
                let ks =
                    mpc_pipe::kernels::KernelSet::for_isa(mpc_pipe::kernels::Isa::Scalar).unwrap();
                let (a, b, c) = (comb(0, false), comb(1, false), comb(2, false));
                let want = mpc_pipe::kernels::conv2d_grad_input_with(
                    ks,
                    &mpc_pipe::ring::RingTensor::from_vec(&dy, a),
                    &mpc_pipe::ring::RingTensor::from_vec(&w, b),
                    (in_hw[0], in_hw[1]),
                    stride,
                    padding,
                );
                assert_eq!(c, want.data(), "conv input-gradient triple");
            }
            Request::ConvGradWeight {
                x,
                dy,
                k_hw,
                stride,
                padding,
            } => {
                let ks =
                    mpc_pipe::kernels::KernelSet::for_isa(mpc_pipe::kernels::Isa::Scalar).unwrap();
                let (a, b, c) = (comb(0, false), comb(1, false), comb(2, false));
                let want = mpc_pipe::kernels::conv2d_grad_weight_with(
                    ks,
                    &mpc_pipe::ring::RingTensor::from_vec(&x, a),
                    &mpc_pipe::ring::RingTensor::from_vec(&dy, b),
                    (k_hw[0], k_hw[1]),
                    stride,
                    padding,
                );
                assert_eq!(c, want.data(), "conv weight-gradient triple");
            }
            // 2-party material, not in this 3-party plan: tests/fss.rs checks its dealer.
            Request::FssLtz { .. } | Request::FssMic { .. } => {
                unreachable!("FSS keys are dealt to 2 parties")
            }
            Request::BatchMatmul { batch, m, k, n } => {
                let (a, b, c) = (comb(0, false), comb(1, false), comb(2, false));
                for t in 0..batch {
                    for i in 0..m {
                        for j in 0..n {
                            let col: Vec<u64> = (0..k).map(|l| b[t * k * n + l * n + j]).collect();
                            let row = &a[t * m * k + i * k..t * m * k + (i + 1) * k];
                            assert_eq!(c[t * m * n + i * n + j], dot(row, &col));
                        }
                    }
                }
            }
        }
    }
}

/// Files are written owner-only to a fresh name and renamed into place: an existing 0644
/// file ends up 0600, a symlink at the path is replaced and its target left untouched, and
/// nothing else is left in the folder. A directory or FIFO where a file should be is
/// refused at once with an error naming it (a FIFO used to hang the reader).
#[cfg(unix)]
#[test]
fn files_are_private_never_written_through_links_and_only_regular_files_load() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("perm");
    let cfg = SessionConfig::new(2);
    let job = build(&JobSpec::new("selftest", 2, 1)).unwrap();
    let plan = record_plan(&cfg, &*job.program).unwrap();
    let ms = deal(&plan, 2, 77);
    // An existing world-readable file.
    let p0 = file::party_file(&dir, 0);
    std::fs::write(&p0, b"old").unwrap();
    std::fs::set_permissions(&p0, std::fs::Permissions::from_mode(0o644)).unwrap();
    file::save(&ms[0], &p0, &key()).unwrap();
    let mode = std::fs::metadata(&p0).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert!(load_as(&p0, 77, 0, 2, plan.hash()).is_ok());
    // A symlink at the path: replaced, its target untouched.
    let target = dir.join("victim");
    std::fs::write(&target, b"keep me").unwrap();
    let p1 = file::party_file(&dir, 1);
    let _ = std::fs::remove_file(&p1);
    std::os::unix::fs::symlink(&target, &p1).unwrap();
    file::save(&ms[1], &p1, &key()).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert!(!std::fs::symlink_metadata(&p1)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(load_as(&p1, 77, 1, 2, plan.hash()).is_ok());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // A directory and a FIFO in place of a file.
    let sub = dir.join("a-directory");
    std::fs::create_dir_all(&sub).unwrap();
    expect_material_err(load_as(&sub, 77, 0, 2, plan.hash()), "a-directory");
    let fifo = dir.join("a-fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    expect_material_err(load_as(&fifo, 77, 0, 2, plan.hash()), "a-fifo");
    std::fs::remove_dir_all(&dir).ok();
}
