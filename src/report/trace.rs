//! `--trace` timelines (Chrome trace event JSON, written by profile::Recorder) turned into
//! CPU and link utilization over time for the report. Depends on serde_json, error.
//!
//! A timeline holds, per party and lane, "compute" spans (the time a lane ran between its
//! waits) and "comm" spans (a `wait`, with the bytes it took). Utilization is taken for
//! party 0 (the parties do symmetric work) in equal time bins. Compute is the compute-span
//! time of all its lanes in a bin over the bin's length (1.0 = one lane busy). A compute
//! span is the gap between a lane's waits, so a lane that is ready but waiting for the
//! core (coroutine lanes take turns on one thread; thread lanes share the cores) counts
//! too: the curve is lanes computing or ready, and can exceed the cores. Link is each
//! message's bytes spread over the time the link needs for them, ending when its wait
//! ended, over what the link carries in a bin: the incoming link's occupancy as far as
//! the timeline tells (a message that arrived long before it was waited for is placed
//! late).

use std::path::Path;

use crate::error::{Error, Result};

/// The spans of party 0 of one timeline, in µs from its first span.
pub struct Timeline {
    /// (start µs, duration µs) of every compute span.
    pub compute: Vec<(f64, f64)>,
    /// (end µs, bytes) of every wait.
    pub arrivals: Vec<(f64, f64)>,
    /// Lanes (threads) of party 0 that appear.
    pub lanes: usize,
    /// End of the last span, µs.
    pub span_us: f64,
}

/// How a bench trace file is named: `trace-<configuration>--<scheme>.json`. A file of
/// another name (a `run --trace` output) has no scheme.
pub fn split_name(file_name: &str) -> (String, Option<String>) {
    let stem = file_name
        .strip_prefix("trace-")
        .unwrap_or(file_name)
        .trim_end_matches(".json");
    match stem.rsplit_once("--") {
        Some((config, scheme)) => (config.to_string(), Some(scheme.to_string())),
        None => (stem.to_string(), None),
    }
}

pub fn load(path: &Path) -> Result<Timeline> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

pub fn parse(text: &str) -> std::result::Result<Timeline, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not trace event JSON: {e}"))?;
    let events = v
        .get("traceEvents")
        .and_then(|e| e.as_array())
        .ok_or("no traceEvents array")?;
    let mut compute = Vec::new();
    let mut arrivals = Vec::new();
    let mut lanes = std::collections::BTreeSet::new();
    let mut t0 = f64::INFINITY;
    for (i, e) in events.iter().enumerate() {
        if e.get("ph").and_then(|p| p.as_str()) != Some("X")
            || e.get("pid").and_then(|p| p.as_u64()) != Some(0)
        {
            continue;
        }
        let num = |k: &str| {
            e.get(k)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| format!("event {i}: no number `{k}`"))
        };
        let (ts, dur) = (num("ts")?, num("dur")?);
        t0 = t0.min(ts);
        if let Some(tid) = e.get("tid").and_then(|t| t.as_u64()) {
            lanes.insert(tid);
        }
        match e.get("cat").and_then(|c| c.as_str()) {
            Some("compute") => compute.push((ts, dur)),
            Some("comm") => {
                let bytes = e
                    .get("args")
                    .and_then(|a| a.get("bytes"))
                    .and_then(|b| b.as_f64())
                    .unwrap_or(0.0);
                arrivals.push((ts + dur, bytes));
            }
            _ => {}
        }
    }
    if !t0.is_finite() {
        return Err("no spans of party 0".into());
    }
    for c in &mut compute {
        c.0 -= t0;
    }
    for a in &mut arrivals {
        a.0 -= t0;
    }
    let span_us = compute
        .iter()
        .map(|(s, d)| s + d)
        .chain(arrivals.iter().map(|a| a.0))
        .fold(0.0, f64::max);
    Ok(Timeline {
        compute,
        arrivals,
        lanes: lanes.len(),
        span_us,
    })
}

impl Timeline {
    /// CPU utilization (cores busy) per bin of `bin_us`, over `bins` bins.
    pub fn cpu(&self, bin_us: f64, bins: usize) -> Vec<f64> {
        let mut busy = vec![0.0; bins];
        for &(s, d) in &self.compute {
            // Spread each span over the bins it covers, by bin index (float steps could
            // stall on a boundary).
            let (a, b) = (s, s + d);
            let first = (a / bin_us).floor().max(0.0) as usize;
            let last = ((b / bin_us).floor() as usize).min(bins.saturating_sub(1));
            for (i, t) in busy.iter_mut().enumerate().take(last + 1).skip(first) {
                let lo = a.max(i as f64 * bin_us);
                let hi = b.min((i + 1) as f64 * bin_us);
                if hi > lo {
                    *t += hi - lo;
                }
            }
        }
        busy.iter().map(|t| t / bin_us).collect()
    }

    /// Link utilization (share of `bandwidth_mbps`) per bin: each message's bytes are
    /// spread over the time the link needs to carry them, ending when its wait ended (the
    /// wire time just before it could be taken), clipped at the timeline's start.
    pub fn link(&self, bandwidth_mbps: f64, bin_us: f64, bins: usize) -> Vec<f64> {
        let mut bytes = vec![0.0; bins];
        for &(t, b) in &self.arrivals {
            // Mbit/s = bits per µs.
            let wire_us = b * 8.0 / bandwidth_mbps;
            let (a, e) = ((t - wire_us).max(0.0), t);
            if e <= a {
                let i = ((t / bin_us) as usize).min(bins.saturating_sub(1));
                bytes[i] += b;
                continue;
            }
            let first = (a / bin_us).floor() as usize;
            let last = ((e / bin_us).floor() as usize).min(bins.saturating_sub(1));
            for (i, x) in bytes.iter_mut().enumerate().take(last + 1).skip(first) {
                let lo = a.max(i as f64 * bin_us);
                let hi = e.min((i + 1) as f64 * bin_us);
                if hi > lo {
                    *x += b * (hi - lo) / (e - a);
                }
            }
        }
        let capacity_bytes = bandwidth_mbps * bin_us / 8.0;
        bytes.iter().map(|b| b / capacity_bytes).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_spreads_a_span_over_the_bins_it_covers() {
        // One compute span from 50 to 250 µs, bins of 100 µs: half of bin 0, all of bin
        // 1, half of bin 2.
        let t = Timeline {
            compute: vec![(50.0, 200.0)],
            arrivals: vec![],
            lanes: 1,
            span_us: 250.0,
        };
        assert_eq!(t.cpu(100.0, 3), vec![0.5, 1.0, 0.5]);
    }

    #[test]
    fn link_spreads_each_message_over_its_wire_time_before_it_was_taken() {
        // 1000 Mbit/s carries 12500 bytes in 100 µs: a message of that size taken at
        // 100 µs filled bin 0; 6250 bytes taken at 250 µs were on the wire 200-250 µs,
        // half of bin 2; 12500 bytes taken at 350 µs were on the wire 250-350 µs, half of
        // bin 2 and half of bin 3.
        let t = Timeline {
            compute: vec![],
            arrivals: vec![(100.0, 12500.0), (250.0, 6250.0), (350.0, 12500.0)],
            lanes: 1,
            span_us: 350.0,
        };
        assert_eq!(t.link(1000.0, 100.0, 4), vec![1.0, 0.0, 1.0, 0.5]);
    }

    #[test]
    fn bench_trace_names_split_at_the_last_double_dash() {
        assert_eq!(
            split_name("trace-lenet-b4-n2-private-lan-local--inter-linear+inner-layer.json"),
            (
                "lenet-b4-n2-private-lan-local".into(),
                Some("inter-linear+inner-layer".into())
            )
        );
        assert_eq!(
            split_name("trace-resnet_cifar-tiny-lan.json"),
            ("resnet_cifar-tiny-lan".into(), None)
        );
    }
}
