//! The report's Markdown: the inputs and their provenance, the headline against the
//! paper's figures, and one table per configuration with the rows it came from.
//! Depends on report::{group, load, series}.

use std::fmt::Write;

use super::group::{eta, versus, Group, ETA_MIN_ROOM};
use super::load::{PeerRecord, Record};
use super::series::{scheme_order, throughput_spread, PAPER_LATENCY_CHANGE, PAPER_THROUGHPUT_GAIN};

/// What the report knows of one input file.
pub struct Input {
    pub name: String,
    /// None: not a bench CSV (another kind of CSV), with the reason.
    pub skipped: Option<String>,
    pub rows: usize,
    pub absent: Vec<&'static str>,
    /// Commands recorded for this file (results/README.md beside it), if any.
    pub commands: Vec<String>,
}

fn pct(v: f64) -> String {
    format!("{:+.1}%", 100.0 * v)
}

fn list(v: &[String]) -> String {
    v.join(", ")
}

/// The peers comparison (issue 20): each other system's row beside our bench rows of the
/// same workload and party count, whole job against whole job (our `e2e_s` is per
/// inference, so times the batch), with the ratio. Every row is named by file and line and
/// its host, and rows of different hosts are flagged, never merged. Nothing when no
/// other system's rows were given.
pub fn peers(md: &mut String, records: &[Record], peers: &[PeerRecord]) {
    if peers.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Against other systems (whole job, identical workloads)
"
    );
    let _ = writeln!(
        md,
        "Whole job as a user waits for it, seconds. Ours: `e2e_s` × `batch` of the bench row (plan, dealer, expansion and online latency; medians); online: `latency_ms_p50`. Theirs: the median whole job over their repetitions (min–max). Ratio = theirs / ours.
"
    );
    let _ = writeln!(
        md,
        "| workload | system | their job s (min–max, reps) | our job s | our online s | ratio | rows |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for p in peers {
        let ours: Vec<&Record> = records
            .iter()
            .filter(|r| r.model == p.model && r.parties == p.parties && r.e2e_s.is_some())
            .collect();
        let spread = match (p.e2e_s_min, p.e2e_s_max) {
            (Some(lo), Some(hi)) => format!("{:.3} ({lo:.3}–{hi:.3}, {})", p.e2e_s, p.reps),
            _ => format!("{:.3} ({})", p.e2e_s, p.reps),
        };
        if ours.is_empty() {
            let _ = writeln!(
                md,
                "| {} | {} | {spread} | – | – | – | {}:{} (no bench row of ours with e2e_s) |",
                p.model, p.system, p.file, p.line
            );
        }
        for r in ours {
            let job = r.e2e_s.unwrap_or(0.0) * r.batch as f64;
            let host = if r.host == p.host {
                format!("host {}", r.host)
            } else {
                format!("**hosts differ: {} vs {}**", r.host, p.host)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {spread} | {job:.3} ({}) | {:.3} | {:.1}× | {}:{}, {}:{}; {host} |",
                p.model,
                p.system,
                r.scheme,
                r.latency_ms_p50 / 1e3,
                p.e2e_s / job,
                p.file,
                p.line,
                r.file,
                r.line
            );
        }
    }
    let _ = writeln!(md);
}

/// The inputs table: every file, what it held, where it came from.
pub fn inputs(md: &mut String, inputs: &[Input], records: &[Record]) {
    let _ = writeln!(md, "## Inputs\n");
    let _ = writeln!(
        md,
        "| file | bench rows | commits | hosts | ISA paths | command (from the README beside it) | note |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for i in inputs {
        let of: Vec<&Record> = records.iter().filter(|r| r.file == i.name).collect();
        let distinct = |f: fn(&Record) -> &str| {
            let mut v: Vec<String> = Vec::new();
            for r in &of {
                let x = f(r).to_string();
                if !v.contains(&x) {
                    v.push(x);
                }
            }
            list(&v)
        };
        let note = match &i.skipped {
            Some(why) => format!("skipped: {why}"),
            None if i.absent.is_empty() => String::new(),
            None => format!(
                "written before the column(s) {} existed: shown as n/a",
                i.absent
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i.name,
            i.rows,
            distinct(|r| &r.commit),
            distinct(|r| &r.host),
            distinct(|r| &r.isa),
            commands(&i.commands),
            note
        );
    }
    let _ = writeln!(md);
}

fn commands(c: &[String]) -> String {
    if c.is_empty() {
        "not recorded".into()
    } else {
        c.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Ours beside the paper's headline figures: the best throughput gain and latency change
/// overall, and per model and network.
pub fn headline(md: &mut String, groups: &[Group]) {
    let _ = writeln!(md, "## Headline: ours beside the paper\n");
    let _ = writeln!(
        md,
        "The paper (MPC-Pipe, GPUs under CrypTen, VGG16/ResNet50/Transformers, LAN and WAN) \
         reports up to about {} throughput and up to about {} latency against serial \
         execution. Below, for each model and network, the best scheme of any configuration \
         here (each value is one CSV row against the serial row of its own configuration and \
         file; nothing is averaged).\n",
        pct(PAPER_THROUGHPUT_GAIN),
        pct(PAPER_LATENCY_CHANGE)
    );
    // (model, network) -> best (gain, where), best (latency change, where)
    type Best = Option<(f64, String)>;
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut best: Vec<(Best, Best)> = Vec::new();
    let mut overall: (Best, Best) = (None, None);
    for g in groups {
        let Some(serial) = g.serial() else { continue };
        // Serial rows alone (the peers workloads): nothing to compare, no row.
        if g.rows.iter().all(|r| r.scheme == "serial") {
            continue;
        }
        let k = (g.config.model.clone(), g.config.network.clone());
        let idx = match keys.iter().position(|x| *x == k) {
            Some(i) => i,
            None => {
                keys.push(k);
                best.push((None, None));
                keys.len() - 1
            }
        };
        for r in g.rows.iter().filter(|r| r.scheme != "serial") {
            let v = versus(r, serial);
            let at = format!(
                "{} ({}p, {}, {} row {})",
                r.scheme, g.config.parties, g.config.weights, g.file, r.line
            );
            let (bt, bl) = &mut best[idx];
            for (slot, val, better) in [
                (bt, v.throughput_gain, true),
                (bl, v.latency_change, false),
                (&mut overall.0, v.throughput_gain, true),
                (&mut overall.1, v.latency_change, false),
            ] {
                let wins = match slot {
                    None => true,
                    Some((b, _)) => (better && val > *b) || (!better && val < *b),
                };
                if wins {
                    *slot = Some((val, format!("{} · {}", g.config.model, at)));
                }
            }
        }
    }
    let show = |b: &Best| b.as_ref().map_or("–".into(), |(v, _)| pct(*v));
    let wher = |b: &Best| b.as_ref().map_or("–".into(), |(_, w)| w.clone());
    let _ = writeln!(md, "| | paper (up to) | ours (best) | where |");
    let _ = writeln!(md, "|---|---|---|---|");
    let _ = writeln!(
        md,
        "| throughput against serial | {} | {} | {} |",
        pct(PAPER_THROUGHPUT_GAIN),
        show(&overall.0),
        wher(&overall.0)
    );
    let _ = writeln!(
        md,
        "| p50 latency against serial | {} | {} | {} |\n",
        pct(PAPER_LATENCY_CHANGE),
        show(&overall.1),
        wher(&overall.1)
    );
    let _ = writeln!(
        md,
        "| model | network | best throughput gain | scheme (parties, weights, file row) | best p50 latency change | scheme (parties, weights, file row) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for ((model, net), (t, l)) in keys.iter().zip(&best) {
        let strip = |b: &Best| {
            wher(b)
                .strip_prefix(&format!("{model} · "))
                .map(str::to_string)
                .unwrap_or_else(|| wher(b))
        };
        let _ = writeln!(
            md,
            "| {model} | {net} | {} | {} | {} | {} |",
            show(t),
            strip(t),
            show(l),
            strip(l)
        );
    }
    let _ = writeln!(md);
}

/// Configurations measured in more than one file, and groups of mixed provenance.
pub fn warnings(md: &mut String, groups: &[Group]) -> usize {
    let mut lines = Vec::new();
    let mut seen: Vec<&super::group::Config> = Vec::new();
    for g in groups {
        if seen.contains(&&g.config) {
            continue;
        }
        seen.push(&g.config);
        let same: Vec<&Group> = groups.iter().filter(|o| o.config == g.config).collect();
        if same.len() > 1 {
            let what: Vec<String> = same
                .iter()
                .map(|o| {
                    format!(
                        "{} (commit {}, host {}, isa {})",
                        o.file,
                        list(&o.distinct(|r| &r.commit)),
                        list(&o.distinct(|r| &r.host)),
                        list(&o.distinct(|r| &r.isa))
                    )
                })
                .collect();
            lines.push(format!(
                "{} ({}) is in {} files: {}. Shown as separate tables, not averaged.",
                g.config.title(),
                g.config.link(),
                same.len(),
                what.join("; ")
            ));
        }
    }
    for g in groups {
        for w in g.provenance_warnings() {
            lines.push(format!("{} in {}: {w}.", g.config.title(), g.file));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(md, "## Warnings\n");
        for l in &lines {
            let _ = writeln!(md, "- {l}");
        }
        let _ = writeln!(md);
    }
    lines.len()
}

/// One table per configuration and file.
pub fn configurations(md: &mut String, groups: &[Group], inputs: &[Input]) {
    let _ = writeln!(md, "## Tables: every configuration\n");
    let _ = writeln!(
        md,
        "One table per model × network × parties × weights (and batch, truncation mode) and \
         file. Latency is per batch, p50 and p99 over the row's repetitions (`reps`); \
         throughput is inferences per second over all of them, and in brackets the \
         throughput of the repetition at the p99 and at the p50 latency (batch / latency), \
         the spread over repetitions. Gains are against the \
         serial row of the same table. η is the overlap efficiency (definition at the end); \
         n/a names why there is none.\n"
    );
    for g in groups {
        let c = &g.config;
        let _ = writeln!(md, "### {}\n", c.title());
        let cmds = inputs
            .iter()
            .find(|i| i.name == g.file)
            .map(|i| commands(&i.commands))
            .unwrap_or_else(|| "not recorded".into());
        let _ = writeln!(
            md,
            "Batch {}, link {}, truncation {}. Source: {} {}; commit {}; host {}; isa {}; command: {}.\n",
            c.batch,
            c.link(),
            c.trunc,
            g.file,
            g.lines(),
            list(&g.distinct(|r| &r.commit)),
            list(&g.distinct(|r| &r.host)),
            list(&g.distinct(|r| &r.isa)),
            cmds
        );
        for w in g.provenance_warnings() {
            let _ = writeln!(md, "> **Warning:** {w}.\n");
        }
        let serial = g.serial();
        if serial.is_none() {
            let _ = writeln!(
                md,
                "> No single serial row in this configuration: gains and η are not computed.\n"
            );
        }
        let _ = writeln!(
            md,
            "| scheme | k | m | lanes | reps | p50 ms | p99 ms | p50 vs serial | inf/s (p99–p50 rep) | throughput vs serial | η | CPU util | link util | row |"
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let order = scheme_order(g.rows.iter().copied());
        let mut rows: Vec<&Record> = g.rows.clone();
        rows.sort_by_key(|r| order.iter().position(|s| *s == r.scheme).unwrap_or(99));
        for r in rows {
            let (lat, thr) = match serial {
                Some(s) if r.scheme != "serial" => {
                    let v = versus(r, s);
                    (pct(v.latency_change), pct(v.throughput_gain))
                }
                _ => ("–".into(), "–".into()),
            };
            let opt = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.0}%", 100.0 * v));
            let thr_spread = throughput_spread(r)
                .map_or(String::new(), |(lo, hi)| format!(" ({lo:.3}–{hi:.3})"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {:.3}{thr_spread} | {} | {} | {} | {} | {} |",
                r.scheme,
                r.chunks,
                r.batches_in_flight,
                if r.lanes.is_empty() { "n/a" } else { &r.lanes },
                r.reps,
                r.latency_ms_p50,
                r.latency_ms_p99,
                lat,
                r.throughput_per_s,
                thr,
                eta(r, serial),
                opt(r.cpu_util),
                opt(r.link_util),
                r.line
            );
        }
        let _ = writeln!(md);
    }
}

/// The definitions the tables use.
pub fn definitions(md: &mut String) {
    let _ = writeln!(md, "## Definitions\n");
    let _ = writeln!(
        md,
        "- **Overlap efficiency** η = (T_serial − T_scheme) / (T_serial − max(T_compute, T_comm)), \
         with T_serial and T_scheme the p50 latencies of the serial row and the scheme's row, \
         T_compute the serial run over an unshaped link and T_comm the link time of the serial \
         traffic and rounds (`t_compute_s`, `t_comm_s`). 1 means the scheme hid all the overlap \
         there was room for. When the denominator is under {:.0}% of T_serial, η is \
         ill-conditioned (noise of a few percent moves it by whole units) and is shown as n/a \
         with the room it had; `mpc-pipe bench` leaves the CSV column empty there too. With \
         `interleave = true` the CSV's η is the median over paired turns, which the report \
         shows as is. † Above 1, the scheme ran faster than max(T_compute, T_comm): that \
         bound comes from serial's runs (T_compute is one unshaped serial run on a shared \
         machine), so it was loose in that run, or the scheme kept the cores busier than \
         serial's unshaped run did; the value is shown as measured.",
        ETA_MIN_ROOM * 100.0
    );
    let _ = writeln!(
        md,
        "- **Gain over serial**: throughput / serial throughput − 1; p50 latency change: p50 / \
         serial p50 − 1 (negative is faster). The serial row is the one of the same table."
    );
    let _ = writeln!(
        md,
        "- **Spread over repetitions**: latency p50 and p99 of the row's repetitions; \
         throughput, batch / p99 latency to batch / p50 latency (a repetition's throughput is \
         its batch over its latency, so these are the same repetitions seen as throughput; \
         `throughput_per_s`, batch over the mean latency, usually lies between them). Gains \
         carry the same spread against serial's median. Training: the slowest and fastest \
         epoch of a run."
    );
    let _ = writeln!(
        md,
        "- **CPU util** = compute_busy_s / online_s (process CPU time per party over wall time; \
         above 100% with parallel kernels); **link util** = link_bytes · 8 · reps / (bandwidth · \
         online_s), n/a on an unshaped link."
    );
    let _ = writeln!(
        md,
        "- Column definitions: README.md, section \"Benchmarks and their CSV\"."
    );
}
