//! Which figures the rows support, and their data: each function takes the groups (or the
//! traces) and returns the figures to draw, or says why there is none. Depends on
//! report::{group, figures, trace}.
//!
//! No value is averaged: every point and bar is one CSV row (or one row against its own
//! group's serial row), and a figure's series never joins rows of two files.

use std::collections::BTreeMap;

use super::figures::{Bars, Lines, Panel, Point, Series, SCHEME_ORDER};
use super::group::{sources, versus, Config, Group};
use super::load::{PeerRecord, Record};
use super::trace::Timeline;

/// The paper's headline figures (MPC-Pipe abstract: up to about 50% higher throughput and
/// up to about 16% lower latency, GPUs, CrypTen).
pub const PAPER_THROUGHPUT_GAIN: f64 = 0.50;
pub const PAPER_LATENCY_CHANGE: f64 = -0.16;

/// The schemes present, in the paper's order, then any others in first-seen order.
pub fn scheme_order<'a>(rows: impl Iterator<Item = &'a Record>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in rows {
        if !seen.contains(&r.scheme) {
            seen.push(r.scheme.clone());
        }
    }
    let mut out: Vec<String> = SCHEME_ORDER
        .iter()
        .filter(|s| seen.iter().any(|x| x == *s))
        .map(|s| s.to_string())
        .collect();
    out.extend(
        seen.into_iter()
            .filter(|s| !SCHEME_ORDER.contains(&s.as_str())),
    );
    out
}

/// A short label of a group for a figure: "vgg16 · 2p · private", with the file's stem
/// when the same configuration is in more than one file.
pub fn short_label(g: &Group, all: &[Group], with_model: bool) -> String {
    let c = &g.config;
    let mut s = if with_model {
        format!("{} · {}p · {}", c.model, c.parties, c.weights)
    } else {
        format!("{}p · {}", c.parties, c.weights)
    };
    if c.batch != 1 {
        s = format!("{s} · b{}", c.batch);
    }
    if c.protocols != "crypten" {
        s = format!("{s} · {}", c.protocols);
    }
    if all.iter().filter(|o| o.config == g.config).count() > 1 {
        s = format!("{s} ({})", stem(&g.file));
    }
    s
}

pub fn stem(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_string())
}

/// A file-name-safe form of a label.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The throughput of a row's p99 and of its median repetition, batch / latency
/// (inferences/s), as (low, high): a repetition's throughput is its batch over its
/// latency, so latency's order statistics are throughput's, reversed. The row's
/// `throughput_per_s` (batch / mean latency) lies between them unless the median
/// repetition is slower than the mean. None without latencies.
pub fn throughput_spread(r: &Record) -> Option<(f64, f64)> {
    (r.latency_ms_p50 > 0.0 && r.latency_ms_p99 > 0.0).then(|| {
        let b = r.batch as f64 * 1e3;
        (b / r.latency_ms_p99, b / r.latency_ms_p50)
    })
}

/// What a throughput whisker shows, for captions.
pub const THROUGHPUT_WHISKER: &str = "batch / p99 latency to batch / p50 latency";

/// A value with its spread over repetitions (low, high), if known.
type WithSpread = (f64, Option<(f64, f64)>);

/// A row's throughput gain over `serial` (%), with its spread over the row's
/// repetitions (`throughput_spread` against serial's throughput).
fn throughput_gain(r: &Record, serial: &Record) -> WithSpread {
    let to = |t: f64| 100.0 * (t / serial.throughput_per_s - 1.0);
    (
        100.0 * versus(r, serial).throughput_gain,
        throughput_spread(r).map(|(lo, hi)| (to(lo), to(hi))),
    )
}

/// A row's p50 latency change against `serial`'s p50 (%), with its p99 against the same.
fn latency_change(r: &Record, serial: &Record) -> WithSpread {
    let to = |l: f64| 100.0 * (l / serial.latency_ms_p50 - 1.0);
    (
        100.0 * versus(r, serial).latency_change,
        Some((to(r.latency_ms_p50), to(r.latency_ms_p99))),
    )
}

/// Which gain a bar figure shows.
#[derive(Clone, Copy)]
pub enum Gain {
    Throughput,
    Latency,
}

/// Grouped bars of every scheme's gain over serial, one figure per network, one group of
/// bars per configuration that has a serial row; networks with only one such
/// configuration share one figure.
/// Each comes with the rows it draws (`group::sources`).
pub fn gain_bars(groups: &[Group], gain: Gain) -> Vec<(String, Bars, String)> {
    let mut networks: Vec<String> = Vec::new();
    for g in groups {
        if !networks.contains(&g.config.network) {
            networks.push(g.config.network.clone());
        }
    }
    // (figure name, its link when it shows one network, its groups)
    let mut sets: Vec<(String, Option<String>, Vec<&Group>)> = Vec::new();
    let mut singles: Vec<&Group> = Vec::new();
    for net in networks {
        let gs: Vec<&Group> = groups
            .iter()
            // A configuration of serial rows alone (the peers workloads) has no gain to draw.
            .filter(|g| {
                g.config.network == net
                    && g.serial().is_some()
                    && g.rows.iter().any(|r| r.scheme != "serial")
            })
            .collect();
        match gs.len() {
            0 => {}
            1 => singles.push(gs[0]),
            _ => sets.push((net.clone(), Some(gs[0].config.link()), gs)),
        }
    }
    // Networks with one configuration each (the points of a sweep, mostly): one figure
    // for them all, each bar group naming its network, rather than a figure apiece.
    match singles.len() {
        0 => {}
        1 => sets.push((
            singles[0].config.network.clone(),
            Some(singles[0].config.link()),
            singles,
        )),
        _ => sets.push(("one-configuration-links".into(), None, singles)),
    }
    let mut out = Vec::new();
    for (net, link, gs) in sets {
        let series: Vec<String> = scheme_order(gs.iter().flat_map(|g| g.rows.iter().copied()))
            .into_iter()
            .filter(|s| s != "serial")
            .collect();
        let cells: Vec<Vec<Option<WithSpread>>> = gs
            .iter()
            .map(|g| {
                let serial = g.serial().expect("filtered on serial");
                series
                    .iter()
                    .map(|s| {
                        g.rows.iter().find(|r| &r.scheme == s).map(|r| match gain {
                            Gain::Throughput => throughput_gain(r, serial),
                            Gain::Latency => latency_change(r, serial),
                        })
                    })
                    .collect()
            })
            .collect();
        let values = cells
            .iter()
            .map(|row| row.iter().map(|c| c.map(|c| c.0)).collect())
            .collect();
        let spread = cells
            .iter()
            .map(|row| row.iter().map(|c| c.and_then(|c| c.1)).collect())
            .collect();
        let on = match &link {
            Some(link) => format!("{net} ({link})"),
            None => "links with one configuration each".into(),
        };
        let (title, x_label, references, whisker) = match gain {
            Gain::Throughput => (
                format!("Throughput gain over serial, {on}"),
                "throughput gain over serial (%)",
                vec![(
                    100.0 * PAPER_THROUGHPUT_GAIN,
                    "paper: up to +50%".to_string(),
                )],
                format!("whisker: {THROUGHPUT_WHISKER}"),
            ),
            Gain::Latency => (
                format!("Latency (p50) change against serial, {on}"),
                "p50 latency change against serial (%, negative = faster)",
                vec![(
                    100.0 * PAPER_LATENCY_CHANGE,
                    "paper: up to −16%".to_string(),
                )],
                "whisker: p50 to p99 latency".to_string(),
            ),
        };
        let from = sources(gs.iter().flat_map(|g| g.rows.iter().copied()));
        out.push((
            net.clone(),
            Bars {
                title,
                x_label: x_label.into(),
                categories: gs
                    .iter()
                    .map(|g| {
                        let label = short_label(g, groups, true);
                        match link {
                            Some(_) => label,
                            None => format!("{label} · {} ({})", g.config.network, g.config.link()),
                        }
                    })
                    .collect(),
                series,
                values,
                spread,
                whisker: Some(whisker),
                references,
            },
            from,
        ));
    }
    out
}

/// Which link quantity a sweep varies.
#[derive(Clone, Copy)]
pub enum Sweep {
    Bandwidth,
    Latency,
}

/// Latency and throughput against bandwidth (latency fixed) or against latency
/// (bandwidth fixed): a family is the rows of one file that differ only in that quantity,
/// with at least two values of it.
pub fn sweeps(records: &[Record], sweep: Sweep) -> Vec<(String, Lines, String)> {
    // family key -> scheme -> points
    let mut fams: BTreeMap<(String, String), BTreeMap<String, Vec<&Record>>> = BTreeMap::new();
    for r in records {
        let Some(bw) = r.bandwidth_mbps else { continue };
        let c = Config::of(r);
        let fixed = match sweep {
            Sweep::Bandwidth => format!("{} ms one-way", r.latency_ms),
            Sweep::Latency => format!("{bw} Mbit/s"),
        };
        let key = format!(
            "{} · b{} · {}p · {} weights · {} · trunc {}{}",
            c.model,
            c.batch,
            c.parties,
            c.weights,
            fixed,
            c.trunc,
            c.suite()
        );
        fams.entry((r.file.clone(), key))
            .or_default()
            .entry(r.scheme.clone())
            .or_default()
            .push(r);
    }
    let x_of = |r: &Record| match sweep {
        Sweep::Bandwidth => r.bandwidth_mbps.unwrap_or(f64::NAN),
        Sweep::Latency => r.latency_ms,
    };
    let mut out = Vec::new();
    for ((file, key), by_scheme) in fams {
        let mut xs: Vec<f64> = by_scheme.values().flatten().map(|r| x_of(r)).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        if xs.len() < 2 || xs.iter().any(|x| *x <= 0.0) {
            // A log axis needs positive values; one value is no sweep.
            continue;
        }
        let order = scheme_order(by_scheme.values().flatten().copied());
        let mut lat = Vec::new();
        let mut thr = Vec::new();
        for s in &order {
            let mut rows = by_scheme[s].clone();
            rows.sort_by(|a, b| x_of(a).total_cmp(&x_of(b)));
            lat.push(Series {
                name: s.clone(),
                points: rows
                    .iter()
                    .map(|r| Point {
                        x: x_of(r),
                        y: r.latency_ms_p50,
                        spread: Some((r.latency_ms_p50, r.latency_ms_p99)),
                    })
                    .collect(),
            });
            thr.push(Series {
                name: s.clone(),
                points: rows
                    .iter()
                    .map(|r| Point {
                        x: x_of(r),
                        y: r.throughput_per_s,
                        spread: throughput_spread(r),
                    })
                    .collect(),
            });
        }
        let from = sources(by_scheme.values().flatten().copied());
        let (what, x_label) = match sweep {
            Sweep::Bandwidth => ("bandwidth", "link bandwidth (Mbit/s, log scale)"),
            Sweep::Latency => ("latency", "one-way link latency (ms, log scale)"),
        };
        out.push((
            format!("{}-{}", stem(&file), key),
            Lines {
                title: format!("Against {what}: {key} ({})", stem(&file)),
                x_label: x_label.into(),
                log_x: true,
                ticks_at_data: true,
                reference: None,
                whisker: Some("bar: spread over repetitions (panel titles)".into()),
                panels: vec![
                    Panel {
                        title: "latency p50 (bar: p50 to p99)".into(),
                        y_label: "latency per batch (ms)".into(),
                        series: lat,
                        log_y: true,
                    },
                    Panel {
                        title: format!("throughput (bar: {THROUGHPUT_WHISKER})"),
                        y_label: "throughput (inferences/s)".into(),
                        series: thr,
                        log_y: true,
                    },
                ],
                columns: 2,
                x_range: None,
            },
            from,
        ));
    }
    out
}

/// Which pipelining depth a figure shows.
#[derive(Clone, Copy)]
pub enum Depth {
    /// Throughput against micro-batches in flight (inter-batch rows).
    MicroBatches,
    /// p50 latency against chunks (inner-layer rows).
    Chunks,
}

/// Throughput against micro-batches in flight, or latency against chunks, each relative to
/// its group's serial row (which is the depth-1 point): one series per group with a row of
/// the scheme at a depth above 1, one panel per model and network. Each point carries its
/// row's spread over repetitions, against serial's median (p50 to p99 latency; throughput
/// of the p99 and of the median repetition).
pub fn depth(groups: &[Group], depth: Depth) -> Option<(Lines, String)> {
    let (scheme, depth_of): (&str, fn(&Record) -> usize) = match depth {
        Depth::MicroBatches => ("inter-batch", |r| r.batches_in_flight),
        Depth::Chunks => ("inner-layer", |r| r.chunks),
    };
    let mut panels: Vec<Panel> = Vec::new();
    let mut drawn: Vec<&Record> = Vec::new();
    for g in groups {
        let Some(serial) = g.serial() else { continue };
        let rows: Vec<&&Record> = g
            .rows
            .iter()
            .filter(|r| r.scheme == scheme && depth_of(r) > 1)
            .collect();
        if rows.is_empty() {
            continue;
        }
        drawn.push(serial);
        drawn.extend(rows.iter().map(|r| **r));
        let point = |r: &Record, x: f64| match depth {
            Depth::MicroBatches => Point {
                x,
                y: r.throughput_per_s / serial.throughput_per_s,
                spread: throughput_spread(r)
                    .map(|(lo, hi)| (lo / serial.throughput_per_s, hi / serial.throughput_per_s)),
            },
            Depth::Chunks => Point {
                x,
                y: r.latency_ms_p50 / serial.latency_ms_p50,
                spread: Some((
                    r.latency_ms_p50 / serial.latency_ms_p50,
                    r.latency_ms_p99 / serial.latency_ms_p50,
                )),
            },
        };
        let mut points = vec![point(serial, 1.0)];
        points.extend(rows.iter().map(|r| point(r, depth_of(r) as f64)));
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
        let title = format!(
            "{} · {} ({}){}",
            g.config.model,
            g.config.network,
            g.config.link(),
            g.config.suite()
        );
        let series = Series {
            name: short_label(g, groups, false),
            points,
        };
        match panels.iter_mut().find(|p| p.title == title) {
            Some(p) => p.series.push(series),
            None => panels.push(Panel {
                title,
                y_label: match depth {
                    Depth::MicroBatches => "throughput / serial's (×)".into(),
                    Depth::Chunks => "p50 latency / serial's (×)".into(),
                },
                series: vec![series],
                log_y: false,
            }),
        }
    }
    if panels.is_empty() {
        return None;
    }
    let lines = match depth {
        Depth::MicroBatches => Lines {
            title: "Inter-batch: throughput against micro-batches in flight (m = 1 is serial)"
                .into(),
            x_label: "micro-batches in flight m".into(),
            log_x: false,
            ticks_at_data: true,
            reference: Some((1.0 + PAPER_THROUGHPUT_GAIN, "paper: up to +50%".into())),
            whisker: Some(format!("bar: {THROUGHPUT_WHISKER}")),
            columns: panels.len().min(3),
            x_range: None,
            panels,
        },
        Depth::Chunks => Lines {
            title: "Inner-layer: p50 latency against chunks (k = 1 is serial)".into(),
            x_label: "chunks per layer k".into(),
            log_x: false,
            ticks_at_data: true,
            reference: Some((1.0 + PAPER_LATENCY_CHANGE, "paper: up to −16%".into())),
            whisker: Some("bar: p50 to p99 latency".into()),
            columns: panels.len().min(3),
            x_range: None,
            panels,
        },
    };
    Some((lines, sources(drawn.into_iter())))
}

/// The groups of one file that differ only in their party count (model, batch, weights,
/// network, suite), keyed by a panel title; in first-seen order.
fn party_families<'g, 'a: 'g>(
    groups: impl Iterator<Item = &'g Group<'a>>,
) -> Vec<(String, Vec<&'g Group<'a>>)> {
    let mut fams: Vec<(String, Vec<&Group>)> = Vec::new();
    for g in groups {
        let c = &g.config;
        let key = format!(
            "{} · {} · {} weights{}{} ({})",
            c.model,
            c.network,
            c.weights,
            if c.batch == 1 {
                String::new()
            } else {
                format!(" · b{}", c.batch)
            },
            c.suite(),
            stem(&g.file)
        );
        match fams.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(g),
            None => fams.push((key, vec![g])),
        }
    }
    fams.retain(|(_, gs)| {
        let mut counts: Vec<usize> = gs.iter().map(|g| g.config.parties).collect();
        counts.sort_unstable();
        counts.dedup();
        counts.len() >= 2
    });
    fams
}

/// Each scheme's throughput gain against the number of parties: a panel per (file,
/// model, batch, weights, network) with rows of at least two party counts that have a
/// serial row.
pub fn parties(groups: &[Group]) -> Option<(Lines, String)> {
    let mut panels = Vec::new();
    let mut drawn: Vec<&Record> = Vec::new();
    for (key, gs) in party_families(groups.iter().filter(|g| g.serial().is_some())) {
        drawn.extend(gs.iter().flat_map(|g| g.rows.iter().copied()));
        let order = scheme_order(gs.iter().flat_map(|g| g.rows.iter().copied()));
        let series = order
            .iter()
            .filter(|s| *s != "serial")
            .map(|s| {
                let mut points: Vec<Point> = gs
                    .iter()
                    .filter_map(|g| {
                        let serial = g.serial()?;
                        let r = g.rows.iter().find(|r| &r.scheme == s)?;
                        let (y, spread) = throughput_gain(r, serial);
                        Some(Point {
                            x: g.config.parties as f64,
                            y,
                            spread,
                        })
                    })
                    .collect();
                points.sort_by(|a, b| a.x.total_cmp(&b.x));
                Series {
                    name: s.clone(),
                    points,
                }
            })
            .collect();
        panels.push(Panel {
            title: key,
            y_label: "throughput gain over serial (%)".into(),
            series,
            log_y: false,
        });
    }
    if panels.is_empty() {
        return None;
    }
    let lines = Lines {
        title: "Scaling with parties: each scheme's throughput gain over serial".into(),
        x_label: "parties".into(),
        log_x: false,
        ticks_at_data: true,
        reference: Some((100.0 * PAPER_THROUGHPUT_GAIN, "paper: up to +50%".into())),
        whisker: Some(format!("bar: {THROUGHPUT_WHISKER}")),
        columns: panels.len().min(3),
        x_range: None,
        panels,
    };
    Some((lines, sources(drawn.into_iter())))
}

/// Latency and throughput against the number of parties, every scheme serial included,
/// for each family of `party_families` measured at three or more party counts (a curve,
/// where two counts are a comparison the gain figure and the tables already show): one
/// figure each, with the rows it draws.
pub fn party_curves(groups: &[Group]) -> Vec<(String, Lines, String)> {
    let mut out = Vec::new();
    for (key, gs) in party_families(groups.iter()) {
        let mut counts: Vec<usize> = gs.iter().map(|g| g.config.parties).collect();
        counts.sort_unstable();
        counts.dedup();
        if counts.len() < 3 {
            continue;
        }
        let rows: Vec<&Record> = gs.iter().flat_map(|g| g.rows.iter().copied()).collect();
        let order = scheme_order(rows.iter().copied());
        let of = |s: &str, f: &dyn Fn(&Record) -> Point| {
            let mut points: Vec<Point> = gs
                .iter()
                .filter_map(|g| g.rows.iter().find(|r| r.scheme == s).map(|r| f(r)))
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            Series {
                name: s.to_string(),
                points,
            }
        };
        let lat = order
            .iter()
            .map(|s| {
                of(s, &|r| Point {
                    x: r.parties as f64,
                    y: r.latency_ms_p50,
                    spread: Some((r.latency_ms_p50, r.latency_ms_p99)),
                })
            })
            .collect();
        let thr = order
            .iter()
            .map(|s| {
                of(s, &|r| Point {
                    x: r.parties as f64,
                    y: r.throughput_per_s,
                    spread: throughput_spread(r),
                })
            })
            .collect();
        out.push((
            key.clone(),
            Lines {
                title: format!("Against parties: {key}"),
                x_label: "parties".into(),
                log_x: false,
                ticks_at_data: true,
                reference: None,
                whisker: Some("bar: spread over repetitions (panel titles)".into()),
                panels: vec![
                    Panel {
                        title: "latency p50 (bar: p50 to p99)".into(),
                        y_label: "latency per batch (ms)".into(),
                        series: lat,
                        log_y: false,
                    },
                    Panel {
                        title: format!("throughput (bar: {THROUGHPUT_WHISKER})"),
                        y_label: "throughput (inferences/s)".into(),
                        series: thr,
                        log_y: false,
                    },
                ],
                columns: 2,
                x_range: None,
            },
            sources(rows.into_iter()),
        ));
    }
    out
}

/// A bench trace of one scheme of one configuration.
pub struct Trace {
    pub file: String,
    pub config: String,
    pub scheme: String,
    pub timeline: Timeline,
}

/// The configuration string bench names a trace by (see bench's trace files).
pub fn trace_config(r: &Record) -> String {
    let c = Config::of(r);
    format!(
        "{}-b{}-n{}-{}-{}-{}",
        c.model, c.batch, c.parties, c.weights, c.network, c.trunc
    )
}

/// CPU and link utilization over time, serial against each pipelined scheme of the same
/// configuration: one figure per configuration with a serial trace and another scheme's.
/// `bandwidth` gives a configuration's link bandwidth (from the CSV rows), if known.
pub fn utilization(
    traces: &[Trace],
    bandwidth: impl Fn(&str) -> Option<f64>,
) -> Vec<(String, Lines)> {
    let mut configs: Vec<&str> = Vec::new();
    for t in traces {
        if !configs.contains(&t.config.as_str()) {
            configs.push(&t.config);
        }
    }
    let mut out = Vec::new();
    for config in configs {
        let of: Vec<&Trace> = traces.iter().filter(|t| t.config == config).collect();
        let Some(serial) = of.iter().find(|t| t.scheme == "serial") else {
            continue;
        };
        let mut shown: Vec<&Trace> = vec![serial];
        let order = SCHEME_ORDER;
        let mut others: Vec<&&Trace> = of.iter().filter(|t| t.scheme != "serial").collect();
        others.sort_by_key(|t| order.iter().position(|s| *s == t.scheme).unwrap_or(99));
        if others.is_empty() {
            continue;
        }
        shown.extend(others.into_iter().copied());
        let span_us = shown.iter().map(|t| t.timeline.span_us).fold(0.0, f64::max);
        let bins = 60;
        let bin_us = span_us / bins as f64;
        let bw = bandwidth(config);
        let panels = shown
            .iter()
            .map(|t| {
                let xs = |i: usize| (i as f64 + 0.5) * bin_us / 1e3;
                let used = ((t.timeline.span_us / bin_us).ceil() as usize).clamp(1, bins);
                let mut series = vec![Series {
                    name: "compute lanes busy or ready, party 0 (100% = one lane)".into(),
                    points: t
                        .timeline
                        .cpu(bin_us, used)
                        .into_iter()
                        .enumerate()
                        .map(|(i, y)| Point {
                            x: xs(i),
                            y: 100.0 * y,
                            spread: None,
                        })
                        .collect(),
                }];
                if let Some(mbps) = bw {
                    series.push(Series {
                        name: "link into party 0 (% of bandwidth)".into(),
                        points: t
                            .timeline
                            .link(mbps, bin_us, used)
                            .into_iter()
                            .enumerate()
                            .map(|(i, y)| Point {
                                x: xs(i),
                                y: 100.0 * y,
                                spread: None,
                            })
                            .collect(),
                    });
                }
                Panel {
                    title: format!(
                        "{} ({:.1} ms, {} lane{})",
                        t.scheme,
                        t.timeline.span_us / 1e3,
                        t.timeline.lanes,
                        if t.timeline.lanes == 1 { "" } else { "s" }
                    ),
                    y_label: "utilization (%)".into(),
                    series,
                    log_y: false,
                }
            })
            .collect();
        out.push((
            config.to_string(),
            Lines {
                title: format!(
                    "Utilization over time, one inference batch: {config}{}",
                    bw.map_or(" (bandwidth unknown: no CSV row)".into(), |b| format!(
                        " at {b} Mbit/s"
                    ))
                ),
                x_label: format!(
                    "time since the first span (ms; bins of {:.2} ms)",
                    bin_us / 1e3
                ),
                log_x: false,
                ticks_at_data: false,
                reference: None,
                whisker: None,
                panels,
                columns: 1,
                x_range: Some((0.0, span_us / 1e3)),
            },
        ));
    }
    out
}

/// Against other systems: per workload, how many times longer the other system's whole job
/// took than ours (theirs / our whole job, and theirs / our online time), one bar per bench
/// row of ours with `e2e_s`; the whisker spans their fastest to slowest repetition. None
/// without a peer row that has a row of ours.
pub fn peers(records: &[Record], peers: &[PeerRecord]) -> Option<Bars> {
    let mut categories = Vec::new();
    let mut values = Vec::new();
    let mut spread = Vec::new();
    for p in peers {
        for r in records
            .iter()
            .filter(|r| r.model == p.model && r.parties == p.parties && r.e2e_s.is_some())
        {
            let job = r.e2e_s.unwrap_or(0.0) * r.batch as f64;
            let online = r.latency_ms_p50 / 1e3;
            if job <= 0.0 || online <= 0.0 {
                continue;
            }
            categories.push(format!("{} · {} · ours {}", p.model, p.system, r.scheme));
            values.push(vec![Some(p.e2e_s / job), Some(p.e2e_s / online)]);
            let w = |t: f64| match (p.e2e_s_min, p.e2e_s_max) {
                (Some(lo), Some(hi)) => Some((lo / t, hi / t)),
                _ => None,
            };
            spread.push(vec![w(job), w(online)]);
        }
    }
    if categories.is_empty() {
        return None;
    }
    Some(Bars {
        title: "Other systems' whole job against ours, identical workloads".into(),
        x_label: "their whole job / ours (×; above 1: ours is faster)".into(),
        categories,
        series: vec![
            "against our whole job (plan, dealer, expansion, online)".into(),
            "against our online time".into(),
        ],
        values,
        spread,
        whisker: Some("their fastest to slowest repetition".into()),
        references: vec![(1.0, "equal time".into())],
    })
}
