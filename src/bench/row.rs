//! Row assembly: one CSV row from a scheme's measurement, its serial baseline and the
//! point's link, with the derived columns (throughput, percentiles, utilizations, gain over
//! serial, overlap efficiency η). Depends on bench's Measured/Point/Choice and csv_out.

use hdrhistogram::Histogram;

use super::jobs::Choice;
use super::{median, Measured, Point, Row};

/// η's denominator T_serial − max(T_compute, T_comm) under this share of T_serial makes η
/// ill-conditioned: a few percent of noise in T_scheme moves it by whole units (quick.toml
/// on wan printed η of 6 to 9), so such rows leave `overlap_efficiency` empty.
pub const ETA_MIN_ROOM: f64 = 0.05;

/// What every row of a sweep says about the build and the machine.
pub struct Stamp {
    pub commit: String,
    pub host: String,
    pub isa: String,
}

/// Serial's throughput (inferences/s) and median repetition latency (s).
#[derive(Clone, Copy)]
pub struct Serial {
    pub throughput: f64,
    pub median_s: f64,
}

impl Serial {
    pub fn of(m: &Measured, batch: usize) -> Serial {
        let n = m.latencies_s.len();
        Serial {
            throughput: (batch * n) as f64 / m.online_s,
            median_s: m.median_s(),
        }
    }
}

/// η = (T_serial - T_scheme) / (T_serial - max(T_compute, T_comm)), or None when serial is
/// not slower than the bound by at least ETA_MIN_ROOM of T_serial (no room to overlap
/// anything, or too little to measure the share hidden).
pub fn eta(t_serial: f64, t_scheme: f64, t_compute: f64, t_comm: f64) -> Option<f64> {
    let room = t_serial - t_compute.max(t_comm);
    (room > 0.0 && room >= ETA_MIN_ROOM * t_serial).then(|| (t_serial - t_scheme) / room)
}

/// The median of η over turns: each turn's serial, scheme and T_compute repetitions ran
/// back to back, so host drift between turns cancels. None when the medians leave too
/// little room (as `eta`), so the row agrees with what its p50 columns say.
pub fn paired_eta(serial: &[f64], scheme: &[f64], compute: &[f64], t_comm: f64) -> Option<f64> {
    let (ts, tc) = (median(serial), median(compute));
    let room = ts - tc.max(t_comm);
    // Also None when a median is NaN (no repetitions).
    if room.is_nan() || room < ETA_MIN_ROOM * ts {
        return None;
    }
    let per_turn: Vec<f64> = serial
        .iter()
        .zip(scheme)
        .zip(compute)
        .filter_map(|((&s, &x), &c)| {
            let room = s - c.max(t_comm);
            (room > 0.0).then(|| (s - x) / room)
        })
        .collect();
    (!per_turn.is_empty()).then(|| median(&per_turn))
}

pub fn percentile_ms(lat: &[f64], q: f64) -> f64 {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
    for &l in lat {
        h.saturating_record((l * 1e6).max(1.0) as u64);
    }
    h.value_at_quantile(q) as f64 / 1e3
}

/// A row from a measurement. `turns`: serial's and T_compute's repetitions taken in the
/// same turns (interleaved), for a paired η; `tc` is T_compute, `t_comm` T_comm.
#[allow(clippy::too_many_arguments)]
pub fn row_of(
    p: &Point,
    c: &Choice,
    meas: &Measured,
    serial: Option<Serial>,
    turns: Option<(&Measured, &Measured)>,
    tc: f64,
    t_comm: f64,
    stamp: &Stamp,
) -> Row {
    let n_reps = meas.latencies_s.len();
    // Medians of per-repetition times, per inference of the batch.
    let per_inference = |v: &[f64]| (!v.is_empty()).then(|| median(v) / p.batch.max(1) as f64);
    let throughput = (p.batch * n_reps) as f64 / meas.online_s;
    let overlap_efficiency = if c.scheme.is_serial() {
        None
    } else {
        match turns {
            Some((st, ct)) => {
                paired_eta(&st.latencies_s, &meas.latencies_s, &ct.latencies_s, t_comm)
            }
            None => serial.and_then(|s| eta(s.median_s, meas.median_s(), tc, t_comm)),
        }
    };
    let link_util = p
        .link
        .bandwidth_mbps
        .map(|mbps| meas.link_bytes as f64 * 8.0 * n_reps as f64 / (mbps * 1e6 * meas.online_s));
    Row {
        model: p.model.clone(),
        batch: p.batch,
        parties: p.parties,
        weights: format!("{:?}", p.weights).to_lowercase(),
        network: p.link.name.clone(),
        bandwidth_mbps: p.link.bandwidth_mbps,
        latency_ms: p.link.latency_ms,
        scheme: c.scheme.to_string(),
        chunks: c.k,
        batches_in_flight: c.m,
        reps: n_reps,
        latency_ms_p50: percentile_ms(&meas.latencies_s, 0.5),
        latency_ms_p99: percentile_ms(&meas.latencies_s, 0.99),
        throughput_per_s: throughput,
        online_s: meas.online_s,
        compute_busy_s: meas.cpu_s,
        comm_wait_s: meas.wait_s,
        bytes_per_party: meas.bytes_per_party,
        rounds: meas.rounds,
        cpu_util: meas.cpu_s / meas.online_s,
        link_util,
        max_abs_err: meas.max_abs_err,
        speedup_vs_serial: serial.map(|s| throughput / s.throughput),
        commit: stamp.commit.clone(),
        host: stamp.host.clone(),
        isa: stamp.isa.clone(),
        predicted_s: c.predicted.map(|t| t * n_reps as f64),
        t_compute_s: tc,
        t_comm_s: t_comm,
        overlap_efficiency,
        material: meas.material.to_string(),
        trunc: p.trunc.to_string(),
        protocols: p.protocols.to_string(),
        link_bytes: Some(meas.link_bytes),
        lanes: c.lanes.to_string(),
        messages: Some(meas.messages),
        channels: p.channels.to_string(),
        plan_s: per_inference(&[meas.plan_s]),
        deal_s: per_inference(&meas.deal_s),
        expand_s: per_inference(&meas.expand_s),
        e2e_s: per_inference(
            &meas
                .wall_s
                .iter()
                .map(|w| meas.plan_s + w)
                .collect::<Vec<_>>(),
        ),
        epoch: None,
        loss: None,
        accuracy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_empty_when_the_room_is_under_five_percent_of_serial() {
        // T_serial 100, bound 96: room 4 < 5.
        assert_eq!(eta(100.0, 98.0, 96.0, 10.0), None);
        // Room 10: (100 - 95) / 10.
        assert_eq!(eta(100.0, 95.0, 10.0, 90.0), Some(0.5));
        // Serial faster than the bound: no room at all.
        assert_eq!(eta(100.0, 95.0, 120.0, 10.0), None);
    }

    #[test]
    fn paired_eta_is_empty_when_the_median_room_is_under_five_percent() {
        let serial = [100.0, 100.0, 100.0];
        let compute = [97.0, 97.0, 97.0];
        assert_eq!(paired_eta(&serial, &[98.0; 3], &compute, 1.0), None);
        let compute = [80.0, 80.0, 80.0];
        // Each turn: (100 - 90) / 20.
        assert_eq!(paired_eta(&serial, &[90.0; 3], &compute, 1.0), Some(0.5));
    }
}
