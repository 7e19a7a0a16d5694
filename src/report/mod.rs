//! `mpc-pipe report`: the paper's tables and figures from benchmark CSVs (and `--trace`
//! timelines), written as DIR/report.md and SVG figures in DIR/figures/.
//! Depends on bench's CSV columns (by name, through report::load), plotters and
//! serde_json; sits beside bench, above runtime, and runs nothing but file I/O.
//!
//! Inputs: bench CSVs, with training rows (`mpc-pipe train --out`, which have an
//! `epoch`) drawn apart from inference rows (other CSVs, such as kernels.csv, are listed
//! and skipped), and
//! bench trace files (`trace-<configuration>--<scheme>.json`) given on the command line or
//! found in each CSV's directory and its `traces/` folder. Everything is read and checked
//! before DIR is touched; the report is drawn into a temporary folder inside DIR and moved
//! into place only when complete, so a failure leaves DIR as it was.

pub mod figures;
pub mod group;
pub mod load;
pub mod series;
pub mod tables;
pub mod trace;
pub mod training;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use load::{Loaded, PeerRecord, Record};
use series::{Depth, Gain, Sweep, Trace};
use tables::Input;

/// What a render produced.
pub struct Rendered {
    pub report: PathBuf,
    pub figures: Vec<PathBuf>,
    pub tables: usize,
    pub warnings: usize,
}

/// Render the report of `inputs` into `out`. `command` is the command line to print as
/// the report's origin.
pub fn render(inputs: &[PathBuf], out: &Path, command: &str) -> Result<Rendered> {
    if inputs.is_empty() {
        return Err(Error::Config(
            "report: no input files (give bench CSVs, e.g. results/*.csv)".into(),
        ));
    }
    let (files, records, traces, peers) = read_inputs(inputs)?;
    if records.is_empty() {
        return Err(Error::Config(format!(
            "report: none of {} is a bench CSV with rows",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if out.is_file() {
        return Err(Error::Config(format!(
            "--out {}: is a file; give a directory",
            out.display()
        )));
    }
    let created = !out.exists();
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Config(format!("cannot create --out {}: {e}", out.display())))?;
    let tmp = out.join(format!(".report-partial-{}", std::process::id()));
    let drawn = draw(&tmp, &files, &records, &traces, &peers, command);
    let drawn = drawn.and_then(|d| publish(&tmp, out).map(|()| d));
    match drawn {
        Ok((figures, tables, warnings)) => Ok(Rendered {
            report: out.join("report.md"),
            figures: figures.iter().map(|f| out.join(f)).collect(),
            tables,
            warnings,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            if created {
                let _ = std::fs::remove_dir(out);
            }
            Err(e)
        }
    }
}

/// Load every input: CSVs (bench or skipped), and traces.
/// Every input file, the bench rows, the timelines and other systems' rows.
type Inputs = (Vec<Input>, Vec<Record>, Vec<Trace>, Vec<PeerRecord>);

fn read_inputs(inputs: &[PathBuf]) -> Result<Inputs> {
    let mut files = Vec::new();
    let mut records = Vec::new();
    let mut peers = Vec::new();
    let mut trace_paths: Vec<PathBuf> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in inputs {
        let name = p.display().to_string();
        if !p.is_file() {
            return Err(Error::Config(format!("report: {name}: no such file")));
        }
        if p.extension().is_some_and(|e| e == "json") {
            trace_paths.push(p.clone());
            continue;
        }
        let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
        match load::load(p, &name)? {
            Loaded::Other => files.push(Input {
                name,
                skipped: Some("not a bench CSV (no `model` and `scheme` columns)".into()),
                rows: 0,
                absent: vec![],
                commands: vec![],
            }),
            Loaded::Peers(r) => {
                files.push(Input {
                    commands: recorded_commands(p),
                    name,
                    skipped: None,
                    rows: r.len(),
                    absent: vec![],
                });
                peers.extend(r);
            }
            Loaded::Bench { records: r, absent } => {
                files.push(Input {
                    commands: recorded_commands(p),
                    name,
                    skipped: None,
                    rows: r.len(),
                    absent,
                });
                records.extend(r);
            }
        }
    }
    for d in &dirs {
        for sub in [d.clone(), d.join("traces")] {
            let Ok(entries) = std::fs::read_dir(if sub.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &sub
            }) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("trace-") && n.ends_with(".json"))
                })
                .map(|p| p.strip_prefix("./").map(Path::to_path_buf).unwrap_or(p))
                .collect();
            found.sort();
            for f in found {
                if !trace_paths.contains(&f) {
                    trace_paths.push(f);
                }
            }
        }
    }
    let mut traces = Vec::new();
    for p in trace_paths {
        let file_name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (config, scheme) = trace::split_name(&file_name);
        files.push(Input {
            name: p.display().to_string(),
            skipped: scheme.is_none().then(|| {
                "a timeline without a scheme in its name (not from bench): not paired".into()
            }),
            rows: 0,
            absent: vec![],
            commands: vec![],
        });
        if let Some(scheme) = scheme {
            traces.push(Trace {
                file: p.display().to_string(),
                config,
                scheme,
                timeline: trace::load(&p)?,
            });
        }
    }
    Ok((files, records, traces, peers))
}

/// Commands that wrote `csv`, as recorded in the README.md beside it: code spans that run
/// `bench`, `train` or scripts/compare-crypten.sh with `--out` naming this file, or a bench-configs script given this
/// file as an argument (`sh bench-configs/train-digits.sh results/train-digits.csv`).
fn recorded_commands(csv: &Path) -> Vec<String> {
    let Some(name) = csv.file_name().and_then(|n| n.to_str()) else {
        return vec![];
    };
    let readme = csv.parent().unwrap_or(Path::new("")).join("README.md");
    let Ok(text) = std::fs::read_to_string(readme) else {
        return vec![];
    };
    let mut out: Vec<String> = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        let span = span.split_whitespace().collect::<Vec<_>>().join(" ");
        let is_name = |o: &str| Path::new(o).file_name().and_then(|n| n.to_str()) == Some(name);
        let out_names_it = span
            .split_once("--out ")
            .map(|(_, rest)| rest.split(' ').next().unwrap_or(""))
            .is_some_and(is_name);
        let runs = (span.contains(" bench ")
            || span.contains(" train ")
            || span.starts_with("scripts/compare-crypten.sh "))
            && out_names_it;
        let script = span.contains("bench-configs/")
            && span.contains(".sh ")
            && span
                .split(' ')
                .skip_while(|w| !w.ends_with(".sh"))
                .any(is_name);
        if (runs || script) && !out.contains(&span) {
            out.push(span);
        }
    }
    out
}

/// Write report.md and the figures into `dir`; returns the figures' paths relative to it,
/// the number of tables and of warnings.
fn draw(
    dir: &Path,
    files: &[Input],
    records: &[Record],
    traces: &[Trace],
    peers: &[PeerRecord],
    command: &str,
) -> Result<(Vec<PathBuf>, usize, usize)> {
    std::fs::create_dir_all(dir.join("figures"))?;
    let (trained, inference): (Vec<Record>, Vec<Record>) =
        records.iter().cloned().partition(Record::is_training);
    let all = records;
    let records = &inference[..];
    let groups = group::groups(records);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# MPC-Pipe: tables and figures from the committed results\n"
    );
    let _ = writeln!(
        md,
        "Generated by `{command}` from the files below; every number is one CSV row, \
         named by file and row (its line in the file). Regenerate with the same command.\n"
    );
    tables::inputs(&mut md, files, all);
    tables::headline(&mut md, &groups);
    tables::peers(&mut md, records, peers);
    let warnings = tables::warnings(&mut md, &groups);
    let mut figs: Vec<PathBuf> = Vec::new();
    let _ = writeln!(md, "## Figures\n");
    if let Some(bars) = series::peers(records, peers) {
        let _ = writeln!(md, "### Against other systems\n");
        let rel = PathBuf::from("figures/peers.svg");
        figures::bars(&dir.join(&rel), &bars)?;
        let _ = writeln!(
            md,
            "![{}]({})\n\nEach bar is one workload's row of the other system against \
             one bench row of ours (the table above names both rows).\n",
            bars.title,
            rel.display()
        );
        figs.push(rel);
    }

    let _ = writeln!(md, "### Gain per scheme, per model and network\n");
    let _ = writeln!(
        md,
        "Each bar is one scheme's row against the serial row of its own configuration and \
         file; the dashed line is the paper's headline figure; whiskers show the scheme's \
         spread over repetitions. One figure per network; networks with one configuration \
         each (the points of a sweep) share one. Configurations without a serial row are \
         left out.\n"
    );
    for gain in [Gain::Throughput, Gain::Latency] {
        for (net, bars, from) in series::gain_bars(&groups, gain) {
            let kind = match gain {
                Gain::Throughput => "throughput",
                Gain::Latency => "latency",
            };
            let rel = PathBuf::from(format!("figures/gain-{kind}-{}.svg", series::slug(&net)));
            figures::bars(&dir.join(&rel), &bars)?;
            let _ = writeln!(
                md,
                "![{}]({})\n\nRows: {from}.\n",
                bars.title,
                rel.display()
            );
            figs.push(rel);
        }
    }

    for (sweep, what, config) in [
        (
            Sweep::Bandwidth,
            "bandwidth",
            "bench-configs/sweep-bandwidth.toml",
        ),
        (
            Sweep::Latency,
            "latency",
            "bench-configs/sweep-latency.toml",
        ),
    ] {
        let _ = writeln!(md, "### Latency and throughput against {what}\n");
        let found = series::sweeps(records, sweep);
        if found.is_empty() {
            let _ = writeln!(
                md,
                "No rows: no configuration in these files was measured at two or more values \
                 of {what} with everything else fixed. `{config}` measures such a sweep.\n"
            );
        }
        for (key, lines, from) in found {
            let rel = PathBuf::from(format!("figures/sweep-{what}-{}.svg", series::slug(&key)));
            figures::lines(&dir.join(&rel), &lines)?;
            let _ = writeln!(
                md,
                "![{}]({})\n\nRows: {from}. Bars: p50 to p99 latency over the row's \
                 repetitions, and the same repetitions as throughput ({}).\n",
                lines.title,
                rel.display(),
                series::THROUGHPUT_WHISKER
            );
            figs.push(rel);
        }
    }

    for (depth, heading, name, none) in [
        (
            Depth::MicroBatches,
            "Throughput against micro-batches in flight",
            "micro-batches",
            "no inter-batch row with more than one micro-batch in flight",
        ),
        (
            Depth::Chunks,
            "Latency against chunks",
            "chunks",
            "no inner-layer row with more than one chunk",
        ),
    ] {
        let _ = writeln!(md, "### {heading}\n");
        match series::depth(&groups, depth) {
            Some((lines, from)) if figures::has_points(&lines) => {
                let rel = PathBuf::from(format!("figures/{name}.svg"));
                figures::lines(&dir.join(&rel), &lines)?;
                let _ = writeln!(
                    md,
                    "Each line is one configuration: its serial row (depth 1) and its rows of \
                     the scheme at the depth the cost model chose (or the config fixed), \
                     relative to serial.\n\n![{}]({})\n\nRows: {from}.\n",
                    lines.title,
                    rel.display()
                );
                figs.push(rel);
            }
            _ => {
                let _ = writeln!(md, "No rows: {none}.\n");
            }
        }
    }

    let _ = writeln!(md, "### Scaling with the number of parties\n");
    match series::parties(&groups) {
        Some((lines, from)) => {
            let rel = PathBuf::from("figures/parties.svg");
            figures::lines(&dir.join(&rel), &lines)?;
            let _ = writeln!(
                md,
                "One panel per model, network and weights of one file, where rows of two or \
                 more party counts exist; each point is a scheme's row against the serial \
                 row of the same party count, its bar the scheme's repetitions as \
                 throughput ({}) against serial's.\n\n![{}]({})\n\nRows: {from}.\n",
                series::THROUGHPUT_WHISKER,
                lines.title,
                rel.display()
            );
            figs.push(rel);
        }
        None => {
            let _ = writeln!(
                md,
                "No rows: no configuration was measured with two or more party counts \
                 with a serial row (`bench-configs/scaling-parties.toml` measures 2, 3 and 4).\n"
            );
        }
    }
    for (key, lines, from) in series::party_curves(&groups) {
        let rel = PathBuf::from(format!("figures/parties-{}.svg", series::slug(&key)));
        figures::lines(&dir.join(&rel), &lines)?;
        let _ = writeln!(
            md,
            "Measured at three or more party counts: each scheme's latency and throughput \
             against the number of parties.\n\n![{}]({})\n\nRows: {from}.\n",
            lines.title,
            rel.display()
        );
        figs.push(rel);
    }

    let _ = writeln!(md, "### CPU and link utilization over time\n");
    let bandwidth = |config: &str| {
        records
            .iter()
            .find(|r| series::trace_config(r) == config)
            .and_then(|r| r.bandwidth_mbps)
    };
    let util = series::utilization(traces, bandwidth);
    if util.is_empty() {
        let _ = writeln!(
            md,
            "No timelines: no serial and pipelined bench traces of one configuration were \
             found (`mpc-pipe bench` writes them with the config key `trace_dir` or \
             `--trace-dir`).\n"
        );
    } else {
        let _ = writeln!(
            md,
            "From bench traces (one extra, untimed repetition per row). Compute: party \
             0's compute spans per bin, summed over its lanes (100% = one lane busy); a span \
             is the gap between a lane's waits, so a lane ready but waiting for the core \
             counts as well, and the sum can exceed the cores (coroutine lanes take turns on \
             one thread). Link: each message party 0 took, spread over the time the link \
             needs to carry it, ending when its wait ended, against the link's bandwidth. \
             Panels share the time axis. Files: {}.\n",
            traces
                .iter()
                .map(|t| t.file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (config, lines) in util {
        let rel = PathBuf::from(format!("figures/utilization-{}.svg", series::slug(&config)));
        figures::lines(&dir.join(&rel), &lines)?;
        let _ = writeln!(md, "![{}]({})\n", lines.title, rel.display());
        figs.push(rel);
    }

    let fams = training::families(&trained);
    if !fams.is_empty() {
        training::tables(&mut md, &fams);
        let _ = writeln!(md, "### Training: loss and test accuracy against epoch\n");
        let _ = writeln!(
            md,
            "Each line is one training run. The schemes train the same weights up to \
             fixed-point rounding (they change when work is done, not what), so their \
             curves lie on one another; the f64 reference shows what fixed point costs.\n"
        );
        for (name, lines) in training::curves(&fams) {
            let rel = PathBuf::from(format!("figures/training-{name}.svg"));
            figures::lines(&dir.join(&rel), &lines)?;
            let _ = writeln!(md, "![{}]({})\n", lines.title, rel.display());
            figs.push(rel);
        }
        if let Some(bars) = training::throughput(&fams) {
            let _ = writeln!(md, "### Training throughput per scheme\n");
            let rel = PathBuf::from("figures/training-throughput.svg");
            figures::bars(&dir.join(&rel), &bars)?;
            let _ = writeln!(
                md,
                "![{}]({})\n\nRows: {}.\n",
                bars.title,
                rel.display(),
                training::sources(&fams)
            );
            figs.push(rel);
        }
    }

    tables::configurations(&mut md, &groups, files);
    tables::definitions(&mut md);
    std::fs::write(dir.join("report.md"), md)?;
    Ok((figs, groups.len(), warnings))
}

/// Move a finished report from `tmp` into `out`: its figures folder replaces the old one
/// whole, then report.md replaces the old one (each a rename).
fn publish(tmp: &Path, out: &Path) -> Result<()> {
    let old = out.join(format!(".report-old-{}", std::process::id()));
    let figures = out.join("figures");
    let had = figures.exists();
    if had {
        std::fs::rename(&figures, &old)?;
    }
    if let Err(e) = std::fs::rename(tmp.join("figures"), &figures) {
        // Put the old figures back: DIR stays as it was.
        if had {
            let _ = std::fs::rename(&old, &figures);
        }
        return Err(e.into());
    }
    std::fs::rename(tmp.join("report.md"), out.join("report.md"))?;
    let _ = std::fs::remove_dir_all(&old);
    let _ = std::fs::remove_dir_all(tmp);
    Ok(())
}
