//! Training rows (`mpc-pipe train --out`, one per epoch: bench's columns plus `epoch`,
//! `loss` and `accuracy`): their runs, the training tables and the data of the training
//! figures. Depends on report::{group, load, series, figures}.
//!
//! A run is one `mpc-pipe train` invocation: the consecutive epochs of one scheme in one
//! configuration of one file (an epoch not after the run's last starts a new run). Nothing
//! is averaged across runs or files: a table shows each run, its samples/s the median over
//! the run's epochs with the slowest and fastest epoch beside it. The f64 reference
//! (`--plaintext` rows: scheme `plaintext`, 1 party) is shown beside every MPC
//! configuration of its file, model and batch.

use std::fmt::Write;

use super::figures::{Bars, Lines, Panel, Point, Series};
use super::group::{line_ranges, Config};
use super::load::Record;
use super::series::{scheme_order, slug, stem};

/// The scheme `mpc-pipe train --plaintext` writes.
pub const PLAINTEXT: &str = "plaintext";

/// What the f64 reference is called in tables and legends.
const PLAINTEXT_NAME: &str = "plaintext (f64)";

/// The epochs of one training run, in order.
pub struct Run<'a> {
    pub scheme: String,
    pub rows: Vec<&'a Record>,
}

/// Median, slowest and fastest of `v` (not empty).
fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

impl Run<'_> {
    /// Training samples per second: median over the run's epochs, min, max.
    pub fn throughput(&self) -> (f64, f64, f64) {
        let v: Vec<f64> = self.rows.iter().map(|r| r.throughput_per_s).collect();
        median_min_max(&v)
    }

    fn last(&self) -> &Record {
        self.rows.last().expect("a run has an epoch")
    }

    fn label(&self, runs: &[Run]) -> String {
        let name = if self.scheme == PLAINTEXT {
            PLAINTEXT_NAME.to_string()
        } else {
            self.scheme.clone()
        };
        let same: Vec<&Run> = runs.iter().filter(|r| r.scheme == self.scheme).collect();
        match same.iter().position(|r| std::ptr::eq(*r, self)) {
            Some(i) if same.len() > 1 => format!("{name} (run {})", i + 1),
            _ => name,
        }
    }
}

/// The training runs of one configuration of one file, with the f64 reference runs of
/// the same file, model and batch.
pub struct Family<'a> {
    pub config: Config,
    pub file: String,
    pub runs: Vec<Run<'a>>,
    pub plain: Vec<Run<'a>>,
}

impl<'a> Family<'a> {
    /// The serial run, if there is exactly one.
    fn serial(&self) -> Option<&Run<'a>> {
        let mut s = self.runs.iter().filter(|r| r.scheme == "serial");
        match (s.next(), s.next()) {
            (Some(r), None) => Some(r),
            _ => None,
        }
    }

    fn all_rows(&self) -> impl Iterator<Item = &'a Record> + '_ {
        self.runs
            .iter()
            .chain(&self.plain)
            .flat_map(|r| r.rows.iter().copied())
    }

    /// "digits-cnn · custom · 2 parties" (MPC), or the model alone for a family of f64
    /// runs only.
    fn title(&self) -> String {
        if self.runs.is_empty() {
            return format!("{} · {PLAINTEXT_NAME} only", self.config.model);
        }
        let c = &self.config;
        format!(
            "{} · {} · {} parties{}",
            c.model,
            c.network,
            c.parties,
            c.suite()
        )
    }

    /// A short label for the throughput figure, with the file's stem when the same
    /// configuration has training rows in another file.
    fn label(&self, all: &[Family]) -> String {
        let c = &self.config;
        // A link set by flags has no name ("custom"): show the link itself, or the bars of
        // a sweep of links would carry one label.
        let net = if c.network == "custom" {
            format!("{} Mbit/s, {} ms", c.bandwidth, c.latency)
        } else {
            c.network.clone()
        };
        let mut s = format!("{} · {net} · {}p · b{}", c.model, c.parties, c.batch);
        if c.protocols != "crypten" {
            s = format!("{s} · {}", c.protocols);
        }
        if all.iter().filter(|f| f.config == self.config).count() > 1 {
            s = format!("{s} ({})", stem(&self.file));
        }
        s
    }

    /// Distinct values of a provenance field over the family's rows.
    fn distinct(&self, f: fn(&Record) -> &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.all_rows() {
            let v = f(r).to_string();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

/// Split `rows` (training rows, file order) into runs keyed by `key`: a row continues the
/// latest run of its key when its epoch comes after that run's last.
fn runs<'a, K: PartialEq>(
    rows: impl Iterator<Item = &'a Record>,
    key: impl Fn(&Record) -> K,
) -> Vec<(K, Run<'a>)> {
    let mut out: Vec<(K, Run)> = Vec::new();
    for r in rows {
        let k = key(r);
        let epoch = r.epoch.unwrap_or(0);
        let open = out
            .iter_mut()
            .rev()
            .find(|(o, _)| *o == k)
            .filter(|(_, run)| run.last().epoch.unwrap_or(0) < epoch);
        match open {
            Some((_, run)) => run.rows.push(r),
            None => out.push((
                k,
                Run {
                    scheme: r.scheme.clone(),
                    rows: vec![r],
                },
            )),
        }
    }
    out
}

/// The training families of `records` (its training rows), in order of first appearance.
pub fn families(records: &[Record]) -> Vec<Family<'_>> {
    let training = || records.iter().filter(|r| r.is_training());
    let mpc = runs(training().filter(|r| r.scheme != PLAINTEXT), |r| {
        (r.file.clone(), Config::of(r), r.scheme.clone())
    });
    let plain = runs(training().filter(|r| r.scheme == PLAINTEXT), |r| {
        (r.file.clone(), r.model.clone(), r.batch)
    });
    let mut out: Vec<Family> = Vec::new();
    for ((file, config, _), run) in mpc {
        match out
            .iter_mut()
            .find(|f| f.file == file && f.config == config)
        {
            Some(f) => f.runs.push(run),
            None => out.push(Family {
                config,
                file,
                runs: vec![run],
                plain: vec![],
            }),
        }
    }
    for ((file, model, batch), run) in plain {
        let mut placed = false;
        for f in out
            .iter_mut()
            .filter(|f| f.file == file && f.config.model == model && f.config.batch == batch)
        {
            f.plain.push(Run {
                scheme: run.scheme.clone(),
                rows: run.rows.clone(),
            });
            placed = true;
        }
        if !placed {
            let config = Config::of(run.rows[0]);
            match out
                .iter_mut()
                .find(|f| f.runs.is_empty() && f.file == file && f.config == config)
            {
                Some(f) => f.plain.push(run),
                None => out.push(Family {
                    config,
                    file,
                    runs: vec![],
                    plain: vec![run],
                }),
            }
        }
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:+.1}%", 100.0 * v)
}

/// One table per family: per run, samples/s (median over epochs, min–max), the gain of the
/// median over serial's, the final loss and test accuracy, and the rows.
pub fn tables(md: &mut String, fams: &[Family]) {
    let _ = writeln!(md, "## Training\n");
    let _ = writeln!(
        md,
        "From `mpc-pipe train --out` rows (one per epoch). Each line is one training run: \
         samples/s is the median over its epochs (slowest–fastest epoch), its gain is against \
         the serial run's median in the same table, loss is the last epoch's mean training \
         loss and accuracy the test accuracy after it. The f64 reference (`--plaintext`: same \
         initial weights, data order and schedule) is shown beside MPC; its samples/s is not \
         comparable (one process, no protocol).\n"
    );
    for f in fams {
        let c = &f.config;
        // Batch and link in the heading too: a sweep's tables would otherwise share one.
        let _ = match (f.runs.is_empty(), c.network == "custom") {
            (true, _) => writeln!(md, "### Training: {}\n", f.title()),
            (false, false) => writeln!(md, "### Training: {} · batch {}\n", f.title(), c.batch),
            (false, true) => writeln!(
                md,
                "### Training: {} · batch {} · {}\n",
                f.title(),
                c.batch,
                c.link()
            ),
        };
        let link = if f.runs.is_empty() {
            String::new()
        } else {
            format!(", link {}, truncation {}", c.link(), c.trunc)
        };
        let _ = writeln!(
            md,
            "Mini-batch {}{link}. Source: {} {}; commit {}; host {}; isa {}.\n",
            c.batch,
            f.file,
            line_ranges(f.all_rows().map(|r| r.line)),
            f.distinct(|r| &r.commit).join(", "),
            f.distinct(|r| &r.host).join(", "),
            f.distinct(|r| &r.isa).join(", "),
        );
        for (what, v) in [
            ("commit", f.distinct(|r| &r.commit)),
            ("host", f.distinct(|r| &r.host)),
            ("isa", f.distinct(|r| &r.isa)),
        ] {
            if v.len() > 1 {
                let _ = writeln!(
                    md,
                    "> **Warning:** the runs of this table differ in {what}: {}; gains compare \
                     runs across them.\n",
                    v.join(", ")
                );
            }
        }
        let serial = f.serial();
        let _ = writeln!(
            md,
            "| scheme | k | m | epochs | samples/s median (min–max) | vs serial | final loss | final test accuracy | rows |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        let order = scheme_order(f.runs.iter().map(|r| r.rows[0]));
        let mut runs: Vec<&Run> = f.runs.iter().collect();
        runs.sort_by_key(|r| order.iter().position(|s| *s == r.scheme).unwrap_or(99));
        for run in runs.into_iter().chain(&f.plain) {
            let (med, lo, hi) = run.throughput();
            let gain = match serial {
                Some(s) if run.scheme != "serial" && run.scheme != PLAINTEXT => {
                    pct(med / s.throughput().0 - 1.0)
                }
                _ => "–".into(),
            };
            let last = run.last();
            let first = run.rows[0];
            let (k, m) = if run.scheme == PLAINTEXT {
                ("–".to_string(), "–".to_string())
            } else {
                (
                    first.chunks.to_string(),
                    first.batches_in_flight.to_string(),
                )
            };
            let label = if run.scheme == PLAINTEXT {
                run.label(&f.plain)
            } else {
                run.label(&f.runs)
            };
            let _ = writeln!(
                md,
                "| {label} | {k} | {m} | {} | {med:.1} ({lo:.1}–{hi:.1}) | {gain} | {} | {} | {} |",
                run.rows.len(),
                last.loss.map_or("n/a".into(), |l| format!("{l:.4}")),
                last.accuracy
                    .map_or("n/a".into(), |a| format!("{:.2}%", 100.0 * a)),
                line_ranges(run.rows.iter().map(|r| r.line)),
            );
        }
        let _ = writeln!(md);
    }
}

/// Loss and test accuracy against epoch, every run of a family (MPC schemes and the f64
/// reference): one figure per family, with its file name stem.
pub fn curves(fams: &[Family]) -> Vec<(String, Lines)> {
    let mut out = Vec::new();
    for f in fams {
        let mut loss = Vec::new();
        let mut acc = Vec::new();
        let order = scheme_order(f.runs.iter().map(|r| r.rows[0]));
        let mut runs: Vec<&Run> = f.runs.iter().collect();
        runs.sort_by_key(|r| order.iter().position(|s| *s == r.scheme).unwrap_or(99));
        let named: Vec<(String, &Run)> = runs
            .into_iter()
            .map(|r| (r.label(&f.runs), r))
            .chain(f.plain.iter().map(|r| (r.label(&f.plain), r)))
            .collect();
        for (name, run) in named {
            let pts = |g: fn(&Record) -> Option<f64>| -> Vec<Point> {
                run.rows
                    .iter()
                    .filter_map(|r| {
                        Some(Point {
                            x: r.epoch? as f64,
                            y: g(r)?,
                            spread: None,
                        })
                    })
                    .collect()
            };
            loss.push(Series {
                name: name.clone(),
                points: pts(|r| r.loss),
            });
            acc.push(Series {
                name,
                points: pts(|r| r.accuracy.map(|a| 100.0 * a)),
            });
        }
        let key = format!("{} ({})", f.title(), stem(&f.file));
        // The batch and the link belong in the name: one file may hold runs of several
        // (a sweep of links), and each family needs a figure of its own.
        let link = if f.runs.is_empty() {
            String::new()
        } else {
            format!(", {}", f.config.link())
        };
        out.push((
            slug(&format!(
                "{}-{}-b{}{link}",
                stem(&f.file),
                f.title(),
                f.config.batch
            )),
            Lines {
                title: format!("Training: {key}, batch {}{link}", f.config.batch),
                x_label: "epoch".into(),
                log_x: false,
                ticks_at_data: true,
                reference: None,
                whisker: None,
                panels: vec![
                    Panel {
                        title: "training loss (mean over the epoch)".into(),
                        y_label: "cross-entropy loss".into(),
                        series: loss,
                        log_y: false,
                    },
                    Panel {
                        title: "test accuracy after the epoch".into(),
                        y_label: "test accuracy (%)".into(),
                        series: acc,
                        log_y: false,
                    },
                ],
                columns: 2,
                x_range: None,
            },
        ));
    }
    out
}

/// Training throughput per scheme: one group of bars per family with MPC runs, the
/// median samples/s of each scheme's run with a whisker from its slowest to its fastest
/// epoch. None when no family has MPC runs. A scheme with two runs in a family shows its
/// first (the table shows both).
pub fn throughput(fams: &[Family]) -> Option<Bars> {
    let with: Vec<&Family> = fams.iter().filter(|f| !f.runs.is_empty()).collect();
    if with.is_empty() {
        return None;
    }
    let series = scheme_order(with.iter().flat_map(|f| f.runs.iter().map(|r| r.rows[0])));
    let cell = |f: &Family, s: &str| {
        f.runs
            .iter()
            .find(|r| r.scheme == s)
            .map(|r| r.throughput())
    };
    Some(Bars {
        title: "Training throughput per scheme (MPC)".into(),
        x_label: "training samples/s (median over epochs)".into(),
        categories: with.iter().map(|f| f.label(fams)).collect(),
        values: with
            .iter()
            .map(|f| series.iter().map(|s| cell(f, s).map(|t| t.0)).collect())
            .collect(),
        spread: with
            .iter()
            .map(|f| {
                series
                    .iter()
                    .map(|s| cell(f, s).map(|t| (t.1, t.2)))
                    .collect()
            })
            .collect(),
        whisker: Some("whisker: slowest to fastest epoch".into()),
        series,
        references: vec![],
    })
}

/// The rows a figure of `fams` draws, "file rows ...".
pub fn sources(fams: &[Family]) -> String {
    super::group::sources(fams.iter().flat_map(|f| f.all_rows()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_min_max(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_min_max(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
