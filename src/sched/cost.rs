//! Cost model for `auto` chunk and micro-batch counts and lane mode. Depends on
//! sched::Lanes only.
//!
//! Inputs, measured except F: T_c, the online time of the serial scheme over an unshaped,
//! zero-latency link (pure compute plus in-memory copies); B, the bytes the busiest
//! directed link carries (the most one party sends to one peer: each pair of parties has
//! links of its own, so with three parties a party's traffic to its two peers goes out in
//! parallel), of which F are weight masks (counted from the model); the number of
//! communication rounds, R; the link's bandwidth bw and one-way latency L. Every opening is
//! an all-to-all exchange, so each round costs one latency.
//!
//! ```text
//!   serial:            T = T_c + B/bw + R·L
//!   inner-layer, k:    T = R·L + max(T_c, B/bw) + min(T_c, B/bw)/k + (k-1)·R·o_c
//!   inter-batch, m:    T = max(T_c, B/bw, R·L) + (T_c + B/bw + R·L - max(...))/m + (m-1)·R·o_b
//!   both:              the inner-layer form with k·m lanes sharing the overlap, plus
//!                      (m-1)·R·o_b + m·(k-1)·R·o_c
//!   + inter-linear:    the form above with B - F, but never below B/bw
//! ```
//!
//! With inter-linear, F leaves the critical path: it goes out as background traffic in the
//! link's idle time; the link still has to carry it, hence the floor B/bw.
//!
//! Protocol suites: T_c, B and R are measured from the serial probe run under the job's
//! own `--protocols`, so the model prices the fss suite by its own counts (a 2-party ReLU
//! 1 round and 1 word per element instead of 9 and 23; reciprocal and inv_sqrt 4 rounds
//! each instead of 31 and 17, so softmax 17 and layernorm 6 instead of 41 and 19; PUMA's GeLU 3
//! instead of 12 (5 with the fss comparison gate); its DCF
//! evaluations are inside T_c) without a formula of its own per protocol.
//!
//! o_b and o_c are the per-round overheads of an extra micro-batch lane and an extra chunk
//! lane; the first lane's is already inside T_c. With lanes as threads both are a thread
//! hand-off and message setup, about 30 µs on this machine. As coroutines
//! (`Lanes::Coroutines`) a lane switch costs nanoseconds, and what remains is the
//! protocols' per-round fixed cost, which a micro-batch lane pays in full (o_b about
//! 10 µs: LeNet on lan, `all` from m = 2 to m = 4 gained 1.8 ms where the model without
//! overhead says 2.8 ms) and a chunk lane hardly at all (o_c about 2 µs: from k = 2 to
//! k = 4, 0.85 ms against 1.2 ms). The model ignores
//! that lanes compete for the same cores, so it is optimistic when T_c dominates; it is
//! reported beside the measured time for that reason.
//!
//! Lane mode (`lanes`): coroutines when there are no micro-batch lanes, or when a round's
//! compute, T_c/R, is under `COROUTINE_MAX_ROUND_S`. Chunk lanes of one layer all wait for
//! the same rounds, so running them on two cores at once gains little over taking turns
//! (the CIFAR ResNet at batch 8 on the `balanced` link, then 8.5 Gbit/s, `inter-linear+inner-layer` with
//! k = 8: p50 154-166 ms as coroutines against 164-180 ms as threads); micro-batch lanes
//! drift apart and fill each other's waits. k and m are chosen with the lanes priced by the
//! compute per round alone: priced as coroutines, chunks looked nearly free for the ResNet
//! and `all` took 8 chunks and 1 micro-batch (1.36x on `balanced`) over 8 micro-batches as
//! threads (1.64-1.71x). Thread lanes cost a wake-up per lane and round, which matters
//! when a round computes for tens of microseconds (LeNet on lan: 83 µs per round, `all`
//! 1.12-1.16x with threads against 1.23-1.25x as coroutines); coroutine lanes give up
//! running two lanes' elementwise protocol steps on two cores at once, which matters when a
//! round computes for longer (the CIFAR ResNet: 720 µs per round, `all` p50 about 8% slower
//! as coroutines). The threshold lies between the two, measured on this 2-core machine.

use super::Lanes;

/// What the model needs to know about a run.
#[derive(Clone, Copy, Debug)]
pub struct CostInputs {
    pub t_compute_s: f64,
    /// B: bytes over the busiest directed link.
    pub link_bytes: f64,
    pub rounds: f64,
    /// None = unshaped.
    pub bandwidth_mbps: Option<f64>,
    pub latency_ms: f64,
    /// F: bytes of weight masks on that link, part of `link_bytes`.
    pub weight_mask_bytes: f64,
}

/// Compute of one round of a non-linear layer (relu, max-pool, their backward
/// selections) per element of a lane's tensor: digits-cnn's training rounds compute about
/// 170 µs at batch 128 and 54 µs at batch 32 (train --lanes doc), and its largest layer
/// has 65,536 and 16,384 elements there: 2.6 and 3.3 ns per element.
pub const ROUND_COMPUTE_PER_ELEMENT_S: f64 = 2.6e-9;

/// Bytes one party sends to a peer per round and per element of the largest layer's
/// tensor, on average over training's rounds: digits-cnn at batch 128 sends 362.4 MB in an
/// epoch's 1,772 rounds (204 KB a round), and its largest layer has 65,536 elements.
pub const ROUND_BYTES_PER_ELEMENT: f64 = 3.1;

/// Whether to split a non-linear layer into chunks inside a micro-batch (inner-layer with
/// inter-batch), where the micro-batch's part of the layer has `elements` elements, over a
/// link of one-way latency `latency_ms` and bandwidth `bandwidth_mbps` (None: unshaped):
/// when one round's latency is longer than what the part does in a round, both its
/// compute (`ROUND_COMPUTE_PER_ELEMENT_S`) and its bytes on the link
/// (`ROUND_BYTES_PER_ELEMENT`).
///
/// Why. Micro-batch lanes already overlap one lane's compute with another's bytes; what
/// chunks add inside them is lanes whose rounds are short enough to fill a latency the
/// micro-batches leave idle. When a part computes longer than a round's latency, the
/// micro-batches cover it; when its bytes take longer on the link, the link is what the
/// lanes wait for. Either way chunks only add messages (a quarter more for digits-cnn),
/// lane switches and slicing. Measured (training, digits-cnn at batch 128, 4 micro-batches,
/// epoch-2 samples/s, inner-layer+inter-batch over inter-batch with k = 2, medians of 2-5
/// alternating runs at load 4-6): at 10 Gbit/s 0.89 at 0.02 ms, 0.83 at 0.025 ms, 0.88 at
/// 0.035 ms, 1.33 at 0.05 ms; there the largest part (a relu, 16,384 elements) computes
/// about 43 µs and sends about 40 µs per round, between the latencies where chunks lost
/// and where they paid. At 2 Gbit/s and 0.05 ms its round's bytes take 200 µs, and `all`
/// with chunks inside the micro-batches ran 0.89-0.97x inter-batch.
/// The rule decides per layer (smaller layers, and smaller batches, cross at a lower
/// latency) from public values only (shapes and the link options), so every party chunks
/// alike; outputs do not depend on it. An unshaped link (latency 0) never chunks inside
/// micro-batches.
pub fn chunk_in_micro_batch(elements: usize, latency_ms: f64, bandwidth_mbps: Option<f64>) -> bool {
    let n = elements as f64;
    let compute_s = n * ROUND_COMPUTE_PER_ELEMENT_S;
    let bytes_s =
        bandwidth_mbps.map_or(0.0, |mbps| n * ROUND_BYTES_PER_ELEMENT * 8.0 / (mbps * 1e6));
    latency_ms * 1e-3 > compute_s.max(bytes_s)
}

const LANE_OVERHEAD_S: f64 = 30e-6;
const BATCH_COROUTINE_OVERHEAD_S: f64 = 10e-6;
const CHUNK_COROUTINE_OVERHEAD_S: f64 = 2e-6;
/// Rounds that compute for less than this run their lanes as coroutines.
pub const COROUTINE_MAX_ROUND_S: f64 = 250e-6;
const CANDIDATES: [usize; 4] = [1, 2, 4, 8];

impl CostInputs {
    /// B/bw: the time the link needs for the bytes.
    pub fn t_bw(&self) -> f64 {
        self.bandwidth_mbps
            .map_or(0.0, |mbps| self.link_bytes * 8.0 / (mbps * 1e6))
    }
    /// R·L: the time the rounds' latencies add up to.
    pub fn t_lat(&self) -> f64 {
        self.rounds * self.latency_ms * 1e-3
    }

    /// Where the lanes of a schedule with `m` micro-batches should run (see the module
    /// doc).
    pub fn lanes(&self, m: usize) -> Lanes {
        if m <= 1 {
            Lanes::Coroutines
        } else {
            self.round_lanes()
        }
    }

    /// The lane mode by the compute per round alone, which also prices the lanes when k
    /// and m are chosen.
    fn round_lanes(&self) -> Lanes {
        if self.t_compute_s < COROUTINE_MAX_ROUND_S * self.rounds.max(1.0) {
            Lanes::Coroutines
        } else {
            Lanes::Threads
        }
    }

    /// (o_b, o_c): per-round overhead of an extra micro-batch lane and chunk lane.
    fn lane_overheads_s(&self) -> (f64, f64) {
        match self.round_lanes() {
            Lanes::Threads => (LANE_OVERHEAD_S, LANE_OVERHEAD_S),
            Lanes::Coroutines => (BATCH_COROUTINE_OVERHEAD_S, CHUNK_COROUTINE_OVERHEAD_S),
        }
    }

    /// Predicted online time of a scheme with k chunks and m micro-batches, with or without
    /// inter-linear.
    pub fn predict_scheme(&self, inter_linear: bool, k: usize, m: usize) -> f64 {
        if !inter_linear || self.weight_mask_bytes <= 0.0 {
            return self.predict(k, m);
        }
        let urgent = CostInputs {
            link_bytes: (self.link_bytes - self.weight_mask_bytes).max(0.0),
            ..*self
        };
        urgent.predict(k, m).max(self.t_bw())
    }

    /// Predicted online time with k chunks and m micro-batches.
    pub fn predict(&self, k: usize, m: usize) -> f64 {
        let (tc, tb, tl) = (self.t_compute_s, self.t_bw(), self.t_lat());
        let (o_b, o_c) = self.lane_overheads_s();
        let (k, m) = (k.max(1) as f64, m.max(1) as f64);
        if k == 1.0 && m == 1.0 {
            return tc + tb + tl;
        }
        let lanes = k * m;
        // Micro-batches also hide latency (another batch runs during a round trip); chunks
        // of one layer all wait for the same rounds, so they hide only compute or bytes.
        let lat_hidden = if m > 1.0 {
            tl.min(tc.max(tb)) * (1.0 - 1.0 / m)
        } else {
            0.0
        };
        let overlap = tc.min(tb);
        tc + tb + tl - overlap * (1.0 - 1.0 / lanes) - lat_hidden
            + self.rounds * ((m - 1.0) * o_b + m * (k - 1.0) * o_c)
    }

    /// The (k, m) with the lowest predicted time among 1, 2, 4, 8 (m limited by the batch).
    pub fn choose(
        &self,
        inter_linear: bool,
        inner_layer: bool,
        inter_batch: bool,
        batch: usize,
    ) -> (usize, usize, f64) {
        let ks: &[usize] = if inner_layer { &CANDIDATES } else { &[1] };
        let ms: Vec<usize> = if inter_batch {
            CANDIDATES
                .iter()
                .copied()
                .filter(|&m| m <= batch.max(1))
                .collect()
        } else {
            vec![1]
        };
        let mut best = (1, 1, f64::INFINITY);
        for &k in ks {
            for &m in &ms {
                let t = self.predict_scheme(inter_linear, k, m);
                if t < best.2 {
                    best = (k, m, t);
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_inside_micro_batches_only_where_latency_outlasts_a_rounds_work() {
        let g10 = Some(10_000.0);
        // digits-cnn at batch 128 in 4 micro-batches: its largest part, 16,384 elements,
        // computes 42.6 µs and sends 40.6 µs per round at 10 Gbit/s: not chunked at 0.02
        // or 0.035 ms, chunked at 0.05; at 2 Gbit/s its bytes take 203 µs: not chunked.
        assert!(!chunk_in_micro_batch(16_384, 0.02, g10));
        assert!(!chunk_in_micro_batch(16_384, 0.035, g10));
        assert!(chunk_in_micro_batch(16_384, 0.05, g10));
        assert!(!chunk_in_micro_batch(16_384, 0.05, Some(2_000.0)));
        assert!(chunk_in_micro_batch(16_384, 0.25, Some(2_000.0)));
        // A quarter of the elements (batch 32) crosses at a quarter of the latency.
        assert!(chunk_in_micro_batch(4_096, 0.02, g10));
        assert!(!chunk_in_micro_batch(4_096, 0.01, g10));
        // Unshaped: never.
        assert!(!chunk_in_micro_batch(1, 0.0, None));
        // Without a bandwidth limit, the crossing is where latency equals the part's
        // compute per round.
        let n = 10_000;
        let cross_ms = n as f64 * ROUND_COMPUTE_PER_ELEMENT_S * 1e3;
        assert!(!chunk_in_micro_batch(n, cross_ms * 0.99, None));
        assert!(chunk_in_micro_batch(n, cross_ms * 1.01, None));
        // With one, where it equals the larger of compute and bytes.
        let mbps = 100.0;
        let bytes_ms = n as f64 * ROUND_BYTES_PER_ELEMENT * 8.0 / (mbps * 1e6) * 1e3;
        assert!(bytes_ms > cross_ms);
        assert!(!chunk_in_micro_batch(n, bytes_ms * 0.99, Some(mbps)));
        assert!(chunk_in_micro_batch(n, bytes_ms * 1.01, Some(mbps)));
    }

    #[test]
    fn serial_prediction_is_the_sum_of_its_parts() {
        let c = CostInputs {
            t_compute_s: 1.0,
            link_bytes: 125e6,
            rounds: 100.0,
            bandwidth_mbps: Some(1000.0),
            latency_ms: 10.0,
            weight_mask_bytes: 0.0,
        };
        // 1 s compute + 1 Gbit at 1 Gbit/s + 100 rounds × 10 ms
        assert!((c.predict(1, 1) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn overlap_never_beats_the_larger_of_compute_and_communication() {
        let c = CostInputs {
            t_compute_s: 2.0,
            link_bytes: 250e6,
            rounds: 10.0,
            bandwidth_mbps: Some(1000.0),
            latency_ms: 0.1,
            weight_mask_bytes: 0.0,
        };
        for k in [1, 2, 4, 8] {
            for m in [1, 2, 4, 8] {
                assert!(c.predict(k, m) >= 2.0, "k={k} m={m}: {}", c.predict(k, m));
            }
        }
    }

    #[test]
    fn inter_linear_hides_the_weight_masks_but_not_below_the_link_time() {
        // 0.1 s compute; 1 Gbit/s carries 125 MB in 1 s, of which 100 MB are F; 10 rounds
        // of 1 ms. Serial: 0.1 + 1 + 0.01. Inter-linear: F off the critical path, so
        // 0.1 + 0.2 + 0.01 by the formula, but the link still needs 1 s for all of it.
        let mut c = CostInputs {
            t_compute_s: 0.1,
            link_bytes: 125e6,
            rounds: 10.0,
            bandwidth_mbps: Some(1000.0),
            latency_ms: 1.0,
            weight_mask_bytes: 100e6,
        };
        assert!((c.predict_scheme(false, 1, 1) - 1.11).abs() < 1e-9);
        assert!((c.predict_scheme(true, 1, 1) - 1.0).abs() < 1e-9);
        // With little F, the critical path is what remains: 0.1 + 0.92 + 0.01.
        c.weight_mask_bytes = 10e6;
        assert!((c.predict_scheme(true, 1, 1) - 1.03).abs() < 1e-9);
    }

    #[test]
    fn lane_mode_follows_the_compute_per_round() {
        // 78 rounds, as LeNet: 83 µs of compute per round runs as coroutines, 720 µs (the
        // CIFAR ResNet's) as threads; the switch sits at COROUTINE_MAX_ROUND_S.
        let mut c = CostInputs {
            t_compute_s: 78.0 * 83e-6,
            link_bytes: 6.3e6,
            rounds: 78.0,
            bandwidth_mbps: Some(10_000.0),
            latency_ms: 0.1,
            weight_mask_bytes: 0.0,
        };
        assert_eq!(c.lanes(2), Lanes::Coroutines);
        c.t_compute_s = 78.0 * 720e-6;
        assert_eq!(c.lanes(2), Lanes::Threads);
        c.t_compute_s = 78.0 * COROUTINE_MAX_ROUND_S * 0.999;
        assert_eq!(c.lanes(2), Lanes::Coroutines);
        c.t_compute_s = 78.0 * COROUTINE_MAX_ROUND_S * 1.001;
        assert_eq!(c.lanes(2), Lanes::Threads);
        // Without micro-batches, coroutines however long the rounds.
        assert_eq!(c.lanes(1), Lanes::Coroutines);
        // As threads, every extra lane costs the same per round, however the lanes are
        // split: 4 chunks × 2 micro-batches and 2 chunks × 4 have the same 8 lanes and
        // overlap, and differ only by the latency that the micro-batches hide,
        // min(R·L, max(T_c, B/bw)) · (1 - 1/m): a quarter of it more with m = 4.
        let hidden = c.t_lat().min(c.t_compute_s.max(c.t_bw())) / 4.0;
        let diff = c.predict(4, 2) - c.predict(2, 4);
        assert!((diff - hidden).abs() < 1e-12, "{diff} vs {hidden}");
    }
}
