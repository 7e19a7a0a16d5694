//! The whole job's floor (issue 20): the multiply-accumulates of every Beaver product of
//! matrices or convolutions (the dealer's triple product, and each party's two online
//! products of the same size) at the GEMM rate measured here on every core of the rayon
//! pool, plus the dealer's AES-CTR keystream at the PRG rate measured the same way. `run`
//! prints it beside e2e_s; the rates are measured after the job, so they see the machine
//! as it was then. Depends on offline (the plan), kernels and prg.

use std::time::Instant;

use crate::offline::plan::DealerWork;

/// A job's floor and the rates it was computed at.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Multiply-accumulates of all products: the dealer's and every party's two.
    pub macs: u64,
    /// Keystream bytes the dealer draws.
    pub keystream_bytes: u64,
    /// GMAC/s of a 256×1024·1024×1024 product on the pool (best of 3 after a warm-up).
    pub gemm_gmacs: f64,
    /// GB/s of keystream drawn on the pool (best of 3 after a warm-up).
    pub prg_gbs: f64,
}

impl Bound {
    /// The floor of a plan whose dealer work is `w` (`Plan::dealer_work`), run by
    /// `parties` parties, with the rates measured now.
    pub fn measure(w: DealerWork, parties: usize) -> Bound {
        Bound {
            macs: w.macs * (1 + 2 * parties as u64),
            keystream_bytes: 8 * w.prg_words,
            gemm_gmacs: if w.macs > 0 { gemm_rate() } else { f64::NAN },
            prg_gbs: if w.prg_words > 0 {
                prg_rate()
            } else {
                f64::NAN
            },
        }
    }

    /// Seconds the products and the keystream take at the measured rates.
    pub fn seconds(&self) -> f64 {
        let t = |work: u64, rate: f64| {
            if work == 0 {
                0.0
            } else {
                work as f64 / (rate * 1e9)
            }
        };
        t(self.macs, self.gemm_gmacs) + t(self.keystream_bytes, self.prg_gbs)
    }

    /// The `bound:` line `run` prints, with the ratio of `e2e_s` to the floor.
    pub fn line(&self, e2e_s: f64) -> String {
        format!(
            "bound: gmac {:.3} at {:.2} GMAC/s + keystream_gb {:.3} at {:.2} GB/s = {:.4} s  e2e_over_bound {:.2}",
            self.macs as f64 / 1e9,
            self.gemm_gmacs,
            self.keystream_bytes as f64 / 1e9,
            self.prg_gbs,
            self.seconds(),
            e2e_s / self.seconds()
        )
    }
}

/// Best of three timed runs of `f` after one untimed, in seconds.
fn best_of_3(mut f: impl FnMut()) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// GMAC/s of the shape `mpc-pipe kernels` reports first (W1's product), on the pool.
fn gemm_rate() -> f64 {
    let (m, k, n) = (256, 1024, 1024);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let a: Vec<u64> = (0..m * k).map(|_| next()).collect();
    let b: Vec<u64> = (0..k * n).map(|_| next()).collect();
    let mut c = vec![0u64; m * n];
    let s = best_of_3(|| crate::kernels::gemm_into(m, k, n, &a, &b, &mut c, false));
    (m * k * n) as f64 / s / 1e9
}

/// GB/s of keystream, 64 MiB drawn in parallel chunks on the pool, as the dealer does.
fn prg_rate() -> f64 {
    let words = 8 << 20;
    let s = best_of_3(|| {
        std::hint::black_box(crate::prg::stream_words(&[7; 16], 1, 0, words));
    });
    (8 * words) as f64 / s / 1e9
}
