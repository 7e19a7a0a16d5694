//! `mpc-pipe kernels`: GMAC/s of each u64 GEMM path (scalar, avx2, avx512) on the issue's
//! shapes, single-threaded and on all cores, against the register-only bound of that path
//! and f64 dgemm measured in the same run; optionally conv2d against the equivalent GEMM on
//! ResNet50/VGG16/CIFAR layer shapes (`--conv`). `--csv` prints one row per
//! (shape, path, threads). Depends on kernels (report, bound).

use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::kernels::report::{self, ConvRow, GemmRow, Opts, CONV_LAYERS, SHAPES};
use crate::kernels::{self, Isa};

#[derive(Args, Debug, Default)]
pub struct KernelsArgs {
    /// Print CSV, one row per (shape, path, threads).
    #[arg(long)]
    pub csv: bool,
    /// Quick run: two shapes (256x1024x1024 and the ResNet one), 4 repetitions, a smaller
    /// scalar sub-block, and 4 of the conv layers.
    #[arg(long)]
    pub quick: bool,
    /// Paths to measure (comma-separated scalar,avx2,avx512); default: all this CPU has.
    #[arg(long, value_delimiter = ',')]
    pub paths: Vec<String>,
    /// Thread counts to measure; default: 1 and all cores.
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Timed repetitions per measurement (best one reported); default 10 (4 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Also compare conv2d with the equivalent GEMM on ResNet50/VGG16/CIFAR layers
    /// (selected path, all cores and single-threaded).
    #[arg(long)]
    pub conv: bool,
    /// Only the conv comparison, no GEMM table.
    #[arg(long)]
    pub conv_only: bool,
    /// Also measure the bulk elementwise ring ops of each path (single thread, in-cache
    /// slices of 16Ki elements).
    #[arg(long)]
    pub elementwise: bool,
    /// Also measure the AES-CTR keystream rate of `prg` (the dealer's and the material
    /// expansion's bound), on 1 thread and on all cores, in GB/s.
    #[arg(long)]
    pub prg: bool,
    /// Only measure FSS comparison keys (`--protocols fss`): DCF key generation and
    /// evaluation on the 63-bit domain of `ltz` (and the spline gate's 64-bit keys at many
    /// points each), elements/s on 1 thread and on all cores,
    /// and the AES rate that is against the keystream rate of `prg` (measured beside it).
    #[arg(long)]
    pub fss: bool,
}

pub fn run(a: &KernelsArgs) -> Result<()> {
    if a.fss {
        return fss_rates(a.csv, a.reps.unwrap_or(if a.quick { 4 } else { 10 }));
    }
    let selected = kernels::selected()?.isa;
    let paths: Vec<Isa> = if a.paths.is_empty() {
        Isa::ALL.into_iter().filter(|i| i.available()).collect()
    } else {
        a.paths
            .iter()
            .map(|p| {
                let isa = Isa::parse(p)
                    .ok_or_else(|| Error::Config(format!("unknown kernel path {p:?}")))?;
                kernels::KernelSet::for_isa(isa)?;
                Ok(isa)
            })
            .collect::<Result<_>>()?
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if a.threads.is_empty() {
        let mut t = vec![1, cores];
        t.dedup();
        t
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) {
        return Err(Error::Config("--threads must be positive".into()));
    }
    let reps = a.reps.unwrap_or(if a.quick { 4 } else { 10 });
    let opts = Opts {
        paths,
        threads: threads.clone(),
        reps,
        shapes: if a.quick {
            vec![0, 2]
        } else {
            (0..SHAPES.len()).collect()
        },
        scalar_max_macs: if a.quick { 1 << 26 } else { 1 << 28 },
        bound_time: Duration::from_millis(200),
    };
    let cpu = cpu_name();
    if !a.conv_only {
        if a.csv {
            println!(
                "shape,m,k,n,path,isa_selected,threads,measured_m,gmacs,bound_gmacs,\
                 ratio_to_bound,dgemm_gmacs,ratio_to_dgemm,gmacs_cpu,bound_gmacs_cpu,\
                 ratio_to_bound_cpu,ratio_to_bound_paired,dgemm_gmacs_cpu,ratio_to_dgemm_cpu,\
                 speedup_vs_1t,speedup_cpu_vs_1t,reps,cpu,speedup_paired,bound_speedup_paired"
            );
        } else {
            println!("mpc-pipe kernels: u64 wrapping GEMM, selected path {selected}, {cores} cores, {cpu}");
            println!(
                "best of {reps} runs after a warm-up. GMAC/s by wall clock; [cpu] = from MACs x \
                 threads / CPU-seconds the process got\n(insensitive to time given to other \
                 jobs on this shared machine). bound = register-only multiply-add loop of the \
                 same path\non the same threads, interleaved with the GEMM runs; paired = \
                 median over runs of (GEMM [cpu] rate / the bound slice\njust before it). \
                 dgemm = matrixmultiply f64 (wall). x1t = over the same path's 1-thread rate;\n\
                 x1t paired = median of (wall rate / a 1-thread run just before it), and bound \
                 x1t the same for the bound loop (this machine's own scaling at that moment)."
            );
            println!(
                "{:<30} {:>7} {:>3} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>6} {:>5} {:>5} {:>6} {:>6}",
                "shape",
                "path",
                "thr",
                "GMAC/s",
                "[cpu]",
                "bound",
                "[cpu]",
                "/bound",
                "[cpu]",
                "paired",
                "dgemm",
                "/dgemm",
                "x1t",
                "[cpu]",
                "paired",
                "bound"
            );
        }
        report::gemm_table(&opts, |r| print_gemm(r, a.csv, selected, reps, &cpu))?;
        if !a.csv {
            println!(
                "(scalar rows marked * timed a sub-block of m rows; dgemm on >1 thread splits \
                 rows across the pool, matrixmultiply itself is single-threaded)"
            );
        }
    }
    if a.conv || a.conv_only {
        let layers: Vec<_> = if a.quick {
            CONV_LAYERS
                .iter()
                .copied()
                .filter(|l| {
                    l.0.contains("conv2 3x3")
                        || l.0.contains("conv3_2")
                        || l.0.contains("conv5_2")
                        || l.0.contains("conv1 7x7")
                })
                .collect()
        } else {
            CONV_LAYERS.to_vec()
        };
        if a.csv {
            println!(
                "layer,path,threads,m,k,n,conv_ms,gemm_ms,conv_cpu_ms,gemm_cpu_ms,conv_over_gemm"
            );
        } else {
            println!();
            println!(
                "conv2d (batch 1, implicit im2col) vs the GEMM of the same size \
                 [O x C*K*K]*[C*K*K x OH*OW] on materialised operands, path {selected}"
            );
            println!(
                "{:<32} {:>3} {:>16} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
                "layer",
                "thr",
                "m x k x n",
                "conv ms",
                "gemm ms",
                "[cpu]",
                "[cpu]",
                "ratio",
                "wall"
            );
        }
        for &t in &threads {
            report::conv_table(&layers, selected, t, reps, |r| print_conv(r, a.csv))?;
        }
    }
    if a.prg {
        prg_rates(a.csv, reps)?;
    }
    if a.elementwise {
        if a.csv {
            println!("op,path,len,gelems_cpu");
        } else {
            println!();
            println!("elementwise slice ops, 1 thread, GElem/s by CPU time (best of {reps})");
            println!("{:<10} {:>7} {:>8} {:>9}", "op", "path", "len", "GElem/s");
        }
        for &isa in &opts.paths {
            for r in report::elementwise_table(isa, 1 << 14, reps)? {
                if a.csv {
                    println!("{},{},{},{:.3}", r.op, r.path, r.len, r.gelems);
                } else {
                    println!(
                        "{:<10} {:>7} {:>8} {:>9.2}",
                        r.op,
                        r.path.name(),
                        r.len,
                        r.gelems
                    );
                }
            }
        }
    }
    Ok(())
}

fn print_gemm(r: &GemmRow, csv: bool, selected: Isa, reps: usize, cpu: &str) {
    if csv {
        println!(
            "\"{}\",{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},\"{}\",{:.3},{:.3}",
            r.shape,
            r.m,
            r.k,
            r.n,
            r.path,
            selected,
            r.threads,
            r.measured_m,
            r.gmacs,
            r.bound_gmacs,
            r.ratio_to_bound(),
            r.dgemm_gmacs,
            r.ratio_to_dgemm(),
            r.gmacs_cpu,
            r.bound_gmacs_cpu,
            r.ratio_to_bound_cpu(),
            r.ratio_to_bound_paired,
            r.dgemm_gmacs_cpu,
            r.ratio_to_dgemm_cpu(),
            r.speedup_vs_1t,
            r.speedup_cpu_vs_1t,
            reps,
            cpu,
            r.speedup_paired,
            r.bound_speedup_paired
        );
    } else {
        let mark = if r.measured_m < r.m { "*" } else { " " };
        println!(
            "{:<30} {:>6}{} {:>3} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>5.1}% {:>5.1}% {:>5.1}% {:>7.2} {:>6.2} {:>5.2} {:>5.2} {:>6.2} {:>6.2}",
            r.shape,
            r.path.name(),
            mark,
            r.threads,
            r.gmacs,
            r.gmacs_cpu,
            r.bound_gmacs,
            r.bound_gmacs_cpu,
            100.0 * r.ratio_to_bound(),
            100.0 * r.ratio_to_bound_cpu(),
            100.0 * r.ratio_to_bound_paired,
            r.dgemm_gmacs,
            r.ratio_to_dgemm(),
            r.speedup_vs_1t,
            r.speedup_cpu_vs_1t,
            r.speedup_paired,
            r.bound_speedup_paired
        );
    }
}

fn print_conv(r: &ConvRow, csv: bool) {
    if csv {
        println!(
            "\"{}\",{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3}",
            r.layer,
            r.path,
            r.threads,
            r.m,
            r.k,
            r.n,
            r.conv_ms,
            r.gemm_ms,
            r.conv_cpu_ms,
            r.gemm_cpu_ms,
            r.ratio()
        );
    } else {
        println!(
            "{:<32} {:>3} {:>16} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6.2} {:>6.2}",
            r.layer,
            r.threads,
            format!("{}x{}x{}", r.m, r.k, r.n),
            r.conv_ms,
            r.gemm_ms,
            r.conv_cpu_ms,
            r.gemm_cpu_ms,
            r.ratio(),
            r.ratio_wall()
        );
    }
}

/// CPU model name for the report (Linux); "unknown" elsewhere.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// DCF key generation and evaluation rates (best of `reps`, wall time) for 2^18 ReLU keys
/// (the 63-bit domain `ltz` uses, two payload words), on a 1-thread pool and on the global
/// pool. Each element costs 8·63 + 2 AES blocks to make (both keys) and 2·63 + 1 to
/// evaluate (one key), so the AES bytes per second put beside the PRG's keystream rate
/// show how close to AES-NI's pace the evaluation runs. `many`: the spline gate's
/// evaluation of one 64-bit key at 179 points (2·64 + 1 blocks per point); `exp-many` and
/// `exp-shared`: exp's 25 clustered points per key, by `eval_many` and by
/// `eval_many_shared` (which walks only the levels below each point's common prefix).
fn fss_rates(csv: bool, reps: usize) -> Result<()> {
    use crate::fss::{dcf, Keys, LTZ_DCF_BITS};
    let len = 1usize << 18;
    // ReLU's keys (two payload words; ltz's are the same but for one word fewer).
    let l = crate::fss::ltz_layout(true);
    let draw = |stream: u64, n: usize| {
        let mut v = vec![0u64; n];
        crate::prg::Prg::new(&crate::prg::fresh_seed(), stream).fill_u64(&mut v);
        v
    };
    let low = u64::MAX >> 1;
    let alpha: Vec<u64> = draw(0, len).into_iter().map(|v| v & low).collect();
    let x: Vec<u64> = draw(1, len).into_iter().map(|v| v & low).collect();
    let beta = draw(2, len * l.width);
    let (s0, s1) = (draw(3, 2 * len), draw(4, 2 * len));
    let best_of = |n: usize, f: &dyn Fn()| {
        (0..reps.max(1))
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                n as f64 / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    };
    let best = |f: &dyn Fn()| best_of(len, f);
    let cw = dcf::gen(l, &alpha, &beta, [&s0, &s1])?;
    let keys = Keys {
        layout: l,
        seed: &s0,
        scw: &cw.scw,
        vcw: &cw.vcw,
        tcw: &cw.tcw,
        last: &cw.last,
    };
    let gen = || {
        dcf::gen(l, &alpha, &beta, [&s0, &s1]).expect("in domain");
    };
    let eval = || {
        dcf::eval(0, keys, &x).expect("in domain");
    };
    // proto::spline's use: 64-bit keys of one payload word, each at PER points (the
    // m + 1 of softmax's reciprocal_pos); the rate counts points.
    const PER: usize = 179;
    let m = crate::fss::mic_layout();
    let mkeys = len / PER;
    let mcw = dcf::gen(
        m,
        &draw(5, mkeys),
        &vec![1; mkeys],
        [&s0[..2 * mkeys], &s1[..2 * mkeys]],
    )?;
    let mic = Keys {
        layout: m,
        seed: &s0[..2 * mkeys],
        scw: &mcw.scw,
        vcw: &mcw.vcw,
        tcw: &mcw.tcw,
        last: &mcw.last,
    };
    let points = draw(6, mkeys * PER);
    let spline = || {
        dcf::eval_many(0, mic, PER, &points).expect("in domain");
    };
    // proto::spline's exp: per key ȳ = y + 2^63 and y + k·2^15, k = 1..=24 (the half-unit
    // breakpoints at f = 16), y uniform: `many` walks every point from the root,
    // `shared` only below each point's common prefix with the previous one.
    const EXP_PER: usize = 25;
    let ekeys = len / EXP_PER;
    let ecw = dcf::gen(
        m,
        &draw(7, ekeys),
        &vec![1; ekeys],
        [&s0[..2 * ekeys], &s1[..2 * ekeys]],
    )?;
    let emic = Keys {
        layout: m,
        seed: &s0[..2 * ekeys],
        scw: &ecw.scw,
        vcw: &ecw.vcw,
        tcw: &ecw.tcw,
        last: &ecw.last,
    };
    let epoints: Vec<u64> = draw(8, ekeys)
        .into_iter()
        .flat_map(|y| {
            std::iter::once(y ^ (1 << 63))
                .chain((1..EXP_PER as u64).map(move |k| y.wrapping_add(k << 15)))
        })
        .collect();
    let exp_many = || {
        dcf::eval_many(0, emic, EXP_PER, &epoints).expect("in domain");
    };
    let exp_shared = || {
        dcf::eval_many_shared(0, emic, EXP_PER, 1, 20, &epoints).expect("in domain");
    };
    let one = crate::kernels::report::pool(1)?;
    let threads = rayon::current_num_threads();
    let mic_blocks = 2.0 * m.bits as f64 + 1.0;
    let rows = [
        ("gen", 1, one.install(|| best(&gen)), 8.0 * 63.0 + 2.0),
        ("gen", threads, best(&gen), 8.0 * 63.0 + 2.0),
        ("eval", 1, one.install(|| best(&eval)), 2.0 * 63.0 + 1.0),
        ("eval", threads, best(&eval), 2.0 * 63.0 + 1.0),
        (
            "many",
            1,
            one.install(|| best_of(points.len(), &spline)),
            mic_blocks,
        ),
        ("many", threads, best_of(points.len(), &spline), mic_blocks),
        (
            "exp-many",
            1,
            one.install(|| best_of(epoints.len(), &exp_many)),
            mic_blocks,
        ),
        (
            "exp-shared",
            1,
            one.install(|| best_of(epoints.len(), &exp_shared)),
            mic_blocks,
        ),
        (
            "exp-many",
            threads,
            best_of(epoints.len(), &exp_many),
            mic_blocks,
        ),
        (
            "exp-shared",
            threads,
            best_of(epoints.len(), &exp_shared),
            mic_blocks,
        ),
    ];
    let (prg_one, prg_all) = prg_measure(reps);
    if csv {
        println!("dcf,threads,elements_per_s,aes_gbytes_per_s,prg_gbytes_per_s");
    } else {
        println!();
        println!(
            "DCF of {LTZ_DCF_BITS} bits, 2 payload words (fss ReLU keys, {} B per party per element), AES path {} (MPC_PIPE_DCF), best of {reps}",
            l.key_bytes(),
            crate::fss::aes::Path::selected()?.name()
        );
        println!(
            "many: proto::spline's eval_many, 64-bit keys of 1 payload word, {PER} points per key (Melem/s counts points)"
        );
        println!(
            "exp-many / exp-shared: exp's {EXP_PER} points per key (y + 2^63, y + k·2^15), eval_many against eval_many_shared (AES GB/s as if every point walked all 64 levels)"
        );
        println!(
            "{:<10} {:>7} {:>14} {:>12} {:>12}",
            "op", "threads", "Melem/s", "AES GB/s", "PRG GB/s"
        );
    }
    for (op, t, rate, blocks) in rows {
        let aes = rate * blocks * 16.0 / 1e9;
        let prg = if t == 1 { prg_one } else { prg_all };
        if csv {
            println!("{op},{t},{rate:.0},{aes:.3},{prg:.3}");
        } else {
            println!(
                "{op:<10} {t:>7} {:>14.3} {aes:>12.2} {prg:>12.2}",
                rate / 1e6
            );
        }
    }
    Ok(())
}

/// AES-CTR keystream rates (GB/s, best of `reps`): one thread, and all cores.
fn prg_measure(reps: usize) -> (f64, f64) {
    prg_measure_on(crate::prg::Path::detect(), reps)
}

fn prg_measure_on(path: crate::prg::Path, reps: usize) -> (f64, f64) {
    use crate::prg::Prg;
    use rayon::prelude::*;
    let mut buf = vec![0u64; 32 << 20];
    let seed = crate::prg::fresh_seed();
    let mut best = |f: &dyn Fn(&mut [u64])| {
        (0..reps.max(1))
            .map(|_| {
                let t = std::time::Instant::now();
                f(&mut buf);
                (8 * buf.len()) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    let one = best(&|b| Prg::at_on(path, &seed, 1, 0).fill_u64(b));
    let all = best(&|b| {
        b.par_chunks_mut(1 << 15)
            .enumerate()
            .for_each(|(i, c)| Prg::at_on(path, &seed, 1, i << 15).fill_u64(c))
    });
    (one, all)
}

/// AES-CTR keystream rate (best of `reps`, wall time) over a 256 MiB buffer: one stream on
/// one thread, and the buffer in 32 Ki-word chunks over the rayon pool, as the dealer draws;
/// on every path this CPU has (the first is the one runs use).
fn prg_rates(csv: bool, reps: usize) -> Result<()> {
    use crate::prg::Path;
    let threads = rayon::current_num_threads();
    // The one runs use first, then the others this CPU has.
    let paths: Vec<Path> = std::iter::once(Path::detect())
        .chain(
            Path::ALL
                .into_iter()
                .filter(|&p| p.available() && p != Path::detect()),
        )
        .collect();
    if csv {
        println!("prg,threads,gbytes_per_s,path");
    } else {
        println!();
        println!(
            "AES-CTR keystream (prg), GB/s by wall time (best of {reps}); runs use {}",
            Path::detect().name()
        );
    }
    for path in paths {
        let (one, all) = prg_measure_on(path, reps);
        if csv {
            println!("aes-ctr,1,{one:.3},{}", path.name());
            println!("aes-ctr,{threads},{all:.3},{}", path.name());
        } else {
            println!(
                "{:>9}: 1 thread: {one:.2}   {threads} threads: {all:.2}",
                path.name()
            );
        }
    }
    Ok(())
}
