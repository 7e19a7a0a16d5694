//! Criterion benchmarks of the u64 GEMM and conv2d kernels. Throughput is in elements =
//! multiply-accumulates, so criterion's "elem/s" reads as MAC/s. Every available ISA rung is
//! in the same group, with the scalar rung (portable blocked kernel) as the baseline and
//! matrixmultiply's f64 dgemm on the same shape for scale. The conv group puts conv2d next
//! to the GEMM of the same size so the im2col overhead is on the page.
//! Run: `cargo bench --bench kernels` (rayon's global pool: all cores).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mpc_pipe::kernels::{conv2d_with, conv_out, gemm_with, Isa, KernelSet, Mat, MatMut};
use mpc_pipe::ring::RingTensor;

fn data(len: usize, seed: u64) -> Vec<u64> {
    // SplitMix64: synthetic, non-secret operands.
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

fn rungs() -> Vec<&'static KernelSet> {
    Isa::ALL
        .into_iter()
        .filter_map(|isa| match KernelSet::for_isa(isa) {
            Ok(ks) => Some(ks),
            Err(_) => {
                eprintln!("skipping: CPU lacks {}", isa.features());
                None
            }
        })
        .collect()
}

fn gemm(c: &mut Criterion) {
    let shapes = [
        ("256x1024x1024", 256, 1024, 1024),
        ("3136x576x64", 3136, 576, 64),
        ("128x768x3072", 128, 768, 3072),
    ];
    for (label, m, k, n) in shapes {
        let mut g = c.benchmark_group(format!("gemm_u64/{label}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements((m * k * n) as u64));
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut out = vec![0u64; m * n];
        for ks in rungs() {
            g.bench_function(BenchmarkId::new("path", ks.isa.name()), |bch| {
                bch.iter(|| {
                    gemm_with(
                        ks,
                        Mat::row_major(&a, m, k),
                        Mat::row_major(&b, k, n),
                        MatMut::row_major(&mut out, m, n),
                        false,
                    )
                })
            });
        }
        let (af, bf): (Vec<f64>, Vec<f64>) = (
            a.iter().map(|&v| (v >> 40) as f64).collect(),
            b.iter().map(|&v| (v >> 40) as f64).collect(),
        );
        let mut cf = vec![0f64; m * n];
        g.bench_function(BenchmarkId::new("path", "dgemm_f64"), |bch| {
            bch.iter(|| unsafe {
                // SAFETY: row-major buffers of exactly m×k, k×n, m×n.
                matrixmultiply::dgemm(
                    m,
                    k,
                    n,
                    1.0,
                    af.as_ptr(),
                    k as isize,
                    1,
                    bf.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    cf.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
        g.finish();
    }
}

fn conv(c: &mut Criterion) {
    // (label, C, H=W, O, K, stride, padding)
    let layers = [
        ("resnet50_conv2_3x3", 64, 56, 64, 3, 1, 1),
        ("resnet50_conv1_7x7s2", 3, 224, 64, 7, 2, 3),
        ("vgg16_conv5_3x3", 512, 14, 512, 3, 1, 1),
        ("cifar_3x3_16", 16, 32, 16, 3, 1, 1),
    ];
    let ks = mpc_pipe::kernels::selected().expect("kernel ISA");
    for (label, ch, hw, o, kk, s, p) in layers {
        let ohw = conv_out(hw, kk, s, p);
        let (m, k, n) = (o, ch * kk * kk, ohw * ohw);
        let mut g = c.benchmark_group(format!("conv2d_u64/{label}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements((m * k * n) as u64));
        let x = RingTensor::from_vec(&[1, ch, hw, hw], data(ch * hw * hw, 3));
        let w = RingTensor::from_vec(&[o, ch, kk, kk], data(o * k, 4));
        g.bench_function(BenchmarkId::new("conv2d", ks.isa.name()), |bch| {
            bch.iter(|| conv2d_with(ks, &x, &w, s, p))
        });
        let bmat = data(k * n, 5);
        g.bench_function(BenchmarkId::new("same_size_gemm", ks.isa.name()), |bch| {
            bch.iter(|| {
                let mut out = vec![0u64; m * n];
                gemm_with(
                    ks,
                    Mat::row_major(w.data(), m, k),
                    Mat::row_major(&bmat, k, n),
                    MatMut::row_major(&mut out, m, n),
                    false,
                );
                out
            })
        });
        g.finish();
    }
}

criterion_group!(benches, gemm, conv);
criterion_main!(benches);
