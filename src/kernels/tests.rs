//! Bit-exact tests of every kernel rung against the naive references in scalar.rs. The
//! `kernel_suite!` macro instantiates the same suite once per ISA, each rung explicitly (not
//! only the one dispatch picks); a rung this CPU lacks prints "skipping: CPU lacks ..." and
//! returns. Ring arithmetic is exact, so every comparison is `assert_eq!`.

use proptest::prelude::*;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::scalar::{
    conv2d_grad_input_u64_scalar, conv2d_grad_weight_u64_scalar, conv2d_u64_scalar, gemm_u64_scalar,
};
use super::*;
use crate::ring::RingTensor;

const SENTINEL: u64 = 0xDEAD_BEEF_CAFE_F00D;

fn kernels_or_skip(isa: Isa) -> Option<&'static KernelSet> {
    match KernelSet::for_isa(isa) {
        Ok(ks) => Some(ks),
        Err(_) => {
            println!("skipping: CPU lacks {}", isa.features());
            None
        }
    }
}

/// Values that stress carries and signs: u64::MAX, 2^63, 2^32 ± 1, halves set, and random.
fn values(rng: &mut Xoshiro256PlusPlus, len: usize) -> Vec<u64> {
    const SPECIAL: [u64; 7] = [
        u64::MAX,
        1 << 63,
        (1 << 32) - 1,
        1 << 32,
        (1 << 32) + 1,
        0xFFFF_FFFF_0000_0000,
        0,
    ];
    (0..len)
        .map(|_| {
            let r = rng.next_u64();
            if r.is_multiple_of(4) {
                SPECIAL[(r >> 8) as usize % SPECIAL.len()]
            } else {
                rng.next_u64()
            }
        })
        .collect()
}

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Run C (+)= A·B with `ks` and with the scalar reference on the same strided operands,
/// with C embedded in a sentinel-filled buffer (padded rows and columns, an offset start),
/// and compare the whole buffer: the result region exactly, the rest untouched.
#[allow(clippy::too_many_arguments)]
fn check_gemm(
    ks: &KernelSet,
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
    c_t: bool,
    accumulate: bool,
    seed: u64,
) {
    let mut r = rng(seed);
    let a = values(&mut r, m * k + 3);
    let b = values(&mut r, k * n + 5);
    // A stored transposed ([k×m] row-major) or as [m×k] with an offset of 3.
    let (av, a_off) = if a_t {
        (Mat::row_major(&a, k, m).t(), 0)
    } else {
        (Mat::row_major(&a[3..], m, k), 3)
    };
    let bv = if b_t {
        Mat::row_major(&b, n, k).t()
    } else {
        Mat::row_major(&b[5..], k, n)
    };
    // C with 2 padding columns per row (or row of the transpose), starting at offset 7.
    let (pad, off) = (2usize, 7usize);
    let (rs_c, cs_c, len) = if c_t {
        (1isize, (m + pad) as isize, off + n * (m + pad) + 4)
    } else {
        ((n + pad) as isize, 1isize, off + m * (n + pad) + 4)
    };
    let init: Vec<u64> = if accumulate {
        values(&mut r, len)
    } else {
        vec![SENTINEL; len]
    };
    let mut got = init.clone();
    let mut want = init.clone();
    gemm_with(
        ks,
        av,
        bv,
        MatMut::new(&mut got[off..], m, n, rs_c, cs_c),
        accumulate,
    );
    let a_data: &[u64] = if a_t { &a } else { &a[a_off..] };
    let b_data: &[u64] = if b_t { &b } else { &b[5..] };
    gemm_u64_scalar(
        m,
        k,
        n,
        a_data,
        av.rs,
        av.cs,
        b_data,
        bv.rs,
        bv.cs,
        &mut want[off..],
        rs_c,
        cs_c,
        accumulate,
    );
    if got != want {
        let bad = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
        panic!(
            "{} gemm {m}x{k}x{n} (a_t {a_t}, b_t {b_t}, c_t {c_t}, acc {accumulate}) differs \
             at buffer index {bad}: got {:#x}, want {:#x}",
            ks.isa, got[bad], want[bad]
        );
    }
}

fn tensor(r: &mut Xoshiro256PlusPlus, shape: &[usize]) -> RingTensor {
    RingTensor::from_vec(shape, values(r, shape.iter().product()))
}

/// conv2d forward and both gradients against the direct references.
#[allow(clippy::too_many_arguments)]
fn check_conv(
    ks: &KernelSet,
    (b, c, h, w): (usize, usize, usize, usize),
    (o, kh, kw): (usize, usize, usize),
    stride: usize,
    padding: usize,
    seed: u64,
) {
    let mut r = rng(seed);
    let x = tensor(&mut r, &[b, c, h, w]);
    let wt = tensor(&mut r, &[o, c, kh, kw]);
    let got = conv2d_with(ks, &x, &wt, stride, padding);
    let want = conv2d_u64_scalar(&x, &wt, stride, padding);
    assert_eq!(
        got,
        want,
        "{} conv2d x {:?} w {:?} s {stride} p {padding}",
        ks.isa,
        x.shape(),
        wt.shape()
    );
    let dy = tensor(&mut r, want.shape());
    let gi = conv2d_grad_input_with(ks, &dy, &wt, (h, w), stride, padding);
    let wi = conv2d_grad_input_u64_scalar(&dy, &wt, (h, w), stride, padding);
    assert_eq!(
        gi,
        wi,
        "{} conv2d grad input x {:?} w {:?} s {stride} p {padding}",
        ks.isa,
        x.shape(),
        wt.shape()
    );
    let gw = conv2d_grad_weight_with(ks, &x, &dy, (kh, kw), stride, padding);
    let ww = conv2d_grad_weight_u64_scalar(&x, &dy, (kh, kw), stride, padding);
    assert_eq!(
        gw,
        ww,
        "{} conv2d grad weight x {:?} w {:?} s {stride} p {padding}",
        ks.isa,
        x.shape(),
        wt.shape()
    );
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("test thread pool")
}

macro_rules! kernel_suite {
    ($name:ident, $isa:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn gemm_matches_scalar_every_small_m_n_with_k_around_kc() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                for k in [0, 1, 2, 7, ks.kc - 1, ks.kc, ks.kc + 1] {
                    for m in 0..=2 * ks.mr {
                        for n in 0..=2 * ks.nr {
                            let seed = (m * 1000 + n) as u64 * 1000 + k as u64;
                            check_gemm(ks, m, k, n, false, false, false, k % 2 == 1, seed);
                        }
                    }
                }
            }

            #[test]
            fn gemm_matches_scalar_odd_and_prime_shapes_parallel() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                let shapes = [(17, 17, 17), (257, 13, 31), (266, 513, 265), (97, 1031, 61)];
                pool(2).install(|| {
                    for (i, &(m, k, n)) in shapes.iter().enumerate() {
                        check_gemm(ks, m, k, n, false, false, false, false, i as u64);
                        check_gemm(ks, m, k, n, false, false, false, true, 10 + i as u64);
                    }
                });
            }

            #[test]
            fn gemm_matches_scalar_transposed_and_strided_operands() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                let shapes = [(1, 1, 1), (ks.mr + 1, ks.kc + 1, ks.nr + 3), (37, 300, 41)];
                for (i, &(m, k, n)) in shapes.iter().enumerate() {
                    for bits in 0..8u64 {
                        let (a_t, b_t, c_t) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                        check_gemm(
                            ks,
                            m,
                            k,
                            n,
                            a_t,
                            b_t,
                            c_t,
                            bits % 3 == 0,
                            100 * i as u64 + bits,
                        );
                    }
                }
            }

            #[test]
            fn gemm_single_thread_pool_matches_scalar() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                pool(1).install(|| check_gemm(ks, 131, 260, 77, false, false, false, true, 7));
            }

            #[test]
            fn gemm_high_bits_only_inputs() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                // Every product of these wraps or carries across the 32-bit halves.
                let (m, k, n) = (2 * ks.mr + 1, 9, 2 * ks.nr + 1);
                let a: Vec<u64> = (0..m * k)
                    .map(|i| if i % 2 == 0 { u64::MAX } else { 1 << 63 })
                    .collect();
                let b: Vec<u64> = (0..k * n)
                    .map(|i| [u64::MAX, 1 << 63, 0xFFFF_FFFF_0000_0001][i % 3])
                    .collect();
                let mut got = vec![SENTINEL; m * n];
                let mut want = vec![0; m * n];
                gemm_with(
                    ks,
                    Mat::row_major(&a, m, k),
                    Mat::row_major(&b, k, n),
                    MatMut::row_major(&mut got, m, n),
                    false,
                );
                gemm_u64_scalar(
                    m, k, n, &a, k as isize, 1, &b, n as isize, 1, &mut want, n as isize, 1, false,
                );
                assert_eq!(got, want);
            }

            #[test]
            fn conv_and_grads_match_direct_layer_like_shapes() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                // 3x3 same (VGG/ResNet), 1x1 stride 2 (ResNet downsample), 7x7 stride 2 pad 3
                // (ResNet stem), 5x5 valid (LeNet), 1x1 stride 1, batch > 1.
                check_conv(ks, (2, 5, 9, 9), (7, 3, 3), 1, 1, 1);
                check_conv(ks, (1, 6, 8, 8), (9, 1, 1), 2, 0, 2);
                // 1x1 stride 1 (ResNet bottleneck): the plain-GEMM shortcut.
                check_conv(ks, (2, 7, 5, 6), (10, 1, 1), 1, 0, 6);
                check_conv(ks, (1, 3, 13, 11), (4, 7, 7), 2, 3, 3);
                check_conv(ks, (3, 2, 12, 12), (3, 5, 5), 1, 0, 4);
                pool(2).install(|| check_conv(ks, (2, 16, 14, 14), (24, 3, 3), 1, 1, 5));
                // Many output channels over few pixels (ResNet50 conv5-like): on 2 threads m
                // splits into several row blocks, which share one B packed up front when
                // that saves enough repeated packing (k = 1152); with k = 288 each row block
                // packs its own, and the last slab is short.
                pool(2).install(|| check_conv(ks, (1, 128, 7, 7), (400, 3, 3), 1, 1, 12));
                pool(2).install(|| check_conv(ks, (1, 32, 7, 7), (160, 3, 3), 1, 1, 7));
                pool(1).install(|| check_conv(ks, (1, 32, 7, 7), (400, 3, 3), 1, 1, 8));
                // Output rows a whole number of slivers wide (CIFAR-like), padded stride 1:
                // every sliver is one copied run of the padded image; padding 2 with a 5x5
                // kernel, and a batch that reuses the padded copy.
                check_conv(ks, (3, 4, 16, 16), (8, 3, 3), 1, 1, 9);
                check_conv(ks, (2, 3, 8, 16), (5, 5, 5), 1, 2, 10);
                pool(2).install(|| check_conv(ks, (1, 16, 32, 32), (16, 3, 3), 1, 1, 11));
            }

            #[test]
            fn elementwise_matches_scalar() {
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                let mut r = rng(99);
                for len in [0, 1, 7, 8, 33, 1000] {
                    let a = values(&mut r, len);
                    let b = values(&mut r, len);
                    let mut out = vec![SENTINEL; len];
                    let bins: [(super::super::BinFn, fn(u64, u64) -> u64); 5] = [
                        (ks.ew.add, u64::wrapping_add),
                        (ks.ew.sub, u64::wrapping_sub),
                        (ks.ew.mul, u64::wrapping_mul),
                        (ks.ew.xor, |x, y| x ^ y),
                        (ks.ew.and, |x, y| x & y),
                    ];
                    for (f, g) in bins {
                        f(&mut out, &a, &b);
                        let want: Vec<u64> = a.iter().zip(&b).map(|(&x, &y)| g(x, y)).collect();
                        assert_eq!(out, want);
                    }
                    for s in [0u64, 1, 16, 31, 32, 63] {
                        let k = b.first().copied().unwrap_or(3) | s;
                        (ks.ew.scale)(&mut out, &a, k);
                        assert_eq!(out, a.iter().map(|x| x.wrapping_mul(k)).collect::<Vec<_>>());
                        (ks.ew.shl)(&mut out, &a, s);
                        assert_eq!(out, a.iter().map(|x| x << s).collect::<Vec<_>>());
                        (ks.ew.shr_logical)(&mut out, &a, s);
                        assert_eq!(out, a.iter().map(|x| x >> s).collect::<Vec<_>>());
                        (ks.ew.shr_arith)(&mut out, &a, s);
                        assert_eq!(
                            out,
                            a.iter()
                                .map(|&x| ((x as i64) >> s) as u64)
                                .collect::<Vec<_>>()
                        );
                    }
                }
            }

            #[test]
            fn conv_regress_stride1_run_entirely_in_right_padding() {
                // Shrunk proptest case: with padding 2 and kw 2, the last output columns of
                // a row read only right padding (the contiguous-run pack indexed past the
                // line).
                let Some(ks) = kernels_or_skip($isa) else {
                    return;
                };
                check_conv(ks, (1, 1, 2, 8), (1, 1, 2), 1, 2, 0);
                // The same with a B panel (8 slivers of 16 = 128 columns) starting at the
                // last output column (42 of 43) of a row, so that the avx512 rung meets it.
                check_conv(ks, (1, 1, 1, 40), (1, 1, 2), 1, 2, 0);
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

                #[test]
                fn gemm_random_shapes_match_scalar(
                    m in 0usize..70, k in 0usize..300, n in 0usize..70,
                    a_t: bool, b_t: bool, c_t: bool, acc: bool, seed: u64,
                ) {
                    let Some(ks) = kernels_or_skip($isa) else { return Ok(()) };
                    check_gemm(ks, m, k, n, a_t, b_t, c_t, acc, seed);
                }

                #[test]
                fn conv_random_shapes_match_direct(
                    b in 1usize..3, c in 1usize..5, h in 1usize..11, w in 1usize..11,
                    o in 1usize..6, kh in 1usize..5, kw in 1usize..5,
                    stride in 1usize..4, padding in 0usize..3, seed: u64,
                ) {
                    prop_assume!(h + 2 * padding >= kh && w + 2 * padding >= kw);
                    let Some(ks) = kernels_or_skip($isa) else { return Ok(()) };
                    check_conv(ks, (b, c, h, w), (o, kh, kw), stride, padding, seed);
                }
            }
        }
    };
}

kernel_suite!(scalar_isa, Isa::Scalar);
kernel_suite!(avx2_isa, Isa::Avx2);
kernel_suite!(avx512_isa, Isa::Avx512);

#[test]
fn isa_names_round_trip_and_scalar_is_always_available() {
    for isa in Isa::ALL {
        assert_eq!(Isa::parse(isa.name()), Some(isa));
    }
    assert_eq!(Isa::parse("sse9"), None);
    assert!(Isa::Scalar.available());
    assert!(Isa::detect().available());
}

#[test]
fn isa_override_picks_forced_rung_and_refuses_missing_features() {
    let all = |_: Isa| true;
    let no_avx512 = |i: Isa| i != Isa::Avx512;
    assert_eq!(choose(None, all), Ok(Isa::Avx512));
    assert_eq!(choose(Some(""), no_avx512), Ok(Isa::Avx2));
    assert_eq!(choose(Some("scalar"), all), Ok(Isa::Scalar));
    assert_eq!(choose(Some("avx2"), no_avx512), Ok(Isa::Avx2));
    let err = choose(Some("avx512"), no_avx512).unwrap_err();
    assert!(err.contains("lacks") && err.contains("avx512dq"), "{err}");
    assert!(choose(Some("neon"), all)
        .unwrap_err()
        .contains("not one of"));
}

#[test]
#[should_panic(expected = "maps two elements to one place")]
fn gemm_refuses_aliasing_output_layout() {
    let ks = KernelSet::for_isa(Isa::Scalar).unwrap();
    let (a, b) = (vec![1u64; 4], vec![1u64; 4]);
    let mut c = vec![0u64; 4];
    gemm_with(
        ks,
        Mat::row_major(&a, 2, 2),
        Mat::row_major(&b, 2, 2),
        MatMut::new(&mut c, 2, 2, 1, 1),
        false,
    );
}

#[test]
#[should_panic(expected = "outside a slice")]
fn gemm_refuses_out_of_bounds_operand() {
    let ks = KernelSet::for_isa(Isa::Scalar).unwrap();
    let (a, b) = (vec![1u64; 3], vec![1u64; 4]);
    let mut c = vec![0u64; 4];
    gemm_with(
        ks,
        Mat::row_major(&a, 2, 2),
        Mat::row_major(&b, 2, 2),
        MatMut::row_major(&mut c, 2, 2),
        false,
    );
}

#[test]
fn public_api_matches_scalar() {
    let mut r = rng(5);
    let (m, k, n) = (19, 23, 29);
    let a = tensor(&mut r, &[m, k]);
    let b = tensor(&mut r, &[k, n]);
    let mut want = vec![0; m * n];
    gemm_u64_scalar(
        m,
        k,
        n,
        a.data(),
        k as isize,
        1,
        b.data(),
        n as isize,
        1,
        &mut want,
        n as isize,
        1,
        false,
    );
    assert_eq!(matmul(&a, &b).data(), &want[..]);
    // Aᵀ·B with A stored [k×m], A·Bᵀ with B stored [n×k].
    let at = a.transpose2();
    let bt = b.transpose2();
    let mut c = vec![SENTINEL; m * n];
    gemm_at_b_into(m, k, n, at.data(), b.data(), &mut c, false);
    assert_eq!(c, want);
    gemm_a_bt_into(m, k, n, a.data(), bt.data(), &mut c, true);
    let twice: Vec<u64> = want.iter().map(|v| v.wrapping_mul(2)).collect();
    assert_eq!(c, twice);
    let x = tensor(&mut r, &[1, 3, 6, 6]);
    let w = tensor(&mut r, &[2, 3, 3, 3]);
    assert_eq!(conv2d(&x, &w, 1, 1), conv2d_u64_scalar(&x, &w, 1, 1));
    let mut out = vec![0; 6];
    let (x6, y6) = (values(&mut r, 6), values(&mut r, 6));
    ew::mul(&mut out, &x6, &y6);
    assert_eq!(
        out,
        x6.iter()
            .zip(&y6)
            .map(|(a, b)| a.wrapping_mul(*b))
            .collect::<Vec<_>>()
    );
}

/// `Im2colB::pack_panel` straight against the column matrix written out from its definition,
/// B[(ci, ky, kx), (oy, ox)] = x[ci, oy·s + ky − p, ox·s + kx − p] (0 outside), in the sliver
/// layout the driver reads: for geometries with and without padding (`conv2d_with` pads the
/// image itself, so only a direct call reaches the clipping path), strides 1 and 2, output
/// rows narrower and wider than a sliver, and a panel that starts mid-row.
#[test]
fn im2col_panels_match_the_column_matrix() {
    use super::conv::{Geom, Im2colB};
    use super::pack::BSource;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    // (c, h, w, kh, kw, stride, padding)
    for &(c, h, w, kh, kw, s, p) in &[
        (2, 8, 8, 3, 3, 1, 1),
        (2, 8, 8, 3, 3, 1, 0),
        (3, 9, 7, 3, 3, 2, 1),
        (2, 10, 12, 3, 3, 2, 0),
        (1, 5, 5, 5, 5, 1, 2),
        (2, 20, 20, 1, 1, 2, 0),
    ] {
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1);
        let g = Geom {
            c,
            h,
            w,
            kh,
            kw,
            oh,
            ow,
            stride: s,
            padding: p,
        };
        let x = values(&mut rng, c * h * w);
        let b = |row: usize, col: usize| -> u64 {
            let (ci, ky, kx) = (row / (kh * kw), row % (kh * kw) / kw, row % kw);
            let (oy, ox) = (col / ow, col % ow);
            let (iy, ix) = (
                (oy * s + ky) as isize - p as isize,
                (ox * s + kx) as isize - p as isize,
            );
            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                0
            } else {
                x[ci * h * w + iy as usize * w + ix as usize]
            }
        };
        let src = Im2colB { x: &x, g };
        let (ckk, n) = (c * kh * kw, oh * ow);
        for nr in [4, 8, 16] {
            for (p0, j0) in [(0, 0), (1, 3)] {
                let (kc, ncols) = (ckk - p0, n - j0);
                let slivers = ncols.div_ceil(nr);
                let mut dst = vec![u64::MAX; slivers * kc * nr];
                src.pack_panel(p0, kc, j0, ncols, nr, false, &mut dst);
                for sl in 0..slivers {
                    for r in 0..kc {
                        for t in 0..nr {
                            let col = j0 + sl * nr + t;
                            let want = if col < n { b(p0 + r, col) } else { 0 };
                            assert_eq!(
                                dst[sl * kc * nr + r * nr + t],
                                want,
                                "geometry {:?} nr {nr} p0 {p0} j0 {j0}: sliver {sl} row {r} lane {t}",
                                (c, h, w, kh, kw, s, p)
                            );
                        }
                    }
                }
            }
        }
    }
}
