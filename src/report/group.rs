//! Grouping rows into the report's configurations, and what is derived from each row
//! against its configuration's serial row (gains, and whether η is meaningful).
//! Depends on report::load, and bench for η's threshold.
//!
//! A group is one configuration (model, batch, parties, weights, link, truncation mode,
//! channels, protocols) of one file: every row of a group was measured by one sweep writing one file, and its
//! gains are taken against that file's serial row. The same configuration in two files
//! (another host, another commit) is two groups, shown side by side, never averaged. A
//! group whose rows differ in commit, host or ISA path (a sweep resumed by a later build)
//! carries a warning naming what differs.

use super::load::Record;

/// η's denominator T_serial − max(T_compute, T_comm) under this share of T_serial makes η
/// ill-conditioned, so it is reported as n/a: the threshold bench applies to the CSV.
pub use crate::bench::ETA_MIN_ROOM;

/// The identity of a configuration, without the scheme.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Config {
    pub model: String,
    pub batch: usize,
    pub parties: usize,
    pub weights: String,
    pub network: String,
    /// Bandwidth and latency as written (floats are not keys).
    pub bandwidth: String,
    pub latency: String,
    pub trunc: String,
    /// `memory`, `sealed` or `plaintext` (rows from before the column: memory).
    pub channels: String,
    /// `crypten` or `fss` (rows from before the column: crypten).
    pub protocols: String,
}

impl Config {
    pub fn of(r: &Record) -> Config {
        Config {
            model: r.model.clone(),
            batch: r.batch,
            parties: r.parties,
            weights: r.weights.clone(),
            network: r.network.clone(),
            bandwidth: r
                .bandwidth_mbps
                .map_or("unshaped".into(), |b| format!("{b}")),
            latency: format!("{}", r.latency_ms),
            // Rows from before the column ran the default for their party count.
            trunc: match r.trunc.as_str() {
                "" if r.parties == 2 => "local".into(),
                "" => "dealer".into(),
                t => t.into(),
            },
            channels: match r.channels.as_str() {
                "" => "memory".into(),
                c => c.into(),
            },
            protocols: match r.protocols.as_str() {
                "" => "crypten".into(),
                p => p.into(),
            },
        }
    }

    /// "vgg16 · lan · 2 parties · private weights".
    pub fn title(&self) -> String {
        let over = match self.channels.as_str() {
            "memory" => String::new(),
            c => format!(" · {c} TCP channels"),
        };
        let suite = match self.protocols.as_str() {
            "crypten" => String::new(),
            p => format!(" · {p} protocols"),
        };
        format!(
            "{} · {} · {} parties · {} weights{over}{suite}",
            self.model, self.network, self.parties, self.weights
        )
    }

    /// The link, "10000 Mbit/s, 0.1 ms".
    pub fn link(&self) -> String {
        let bw = if self.bandwidth == "unshaped" {
            "unshaped".into()
        } else {
            format!("{} Mbit/s", self.bandwidth)
        };
        format!("{bw}, {} ms one-way", self.latency)
    }
}

/// The rows of one configuration in one file, in file order.
pub struct Group<'a> {
    pub config: Config,
    pub file: String,
    pub rows: Vec<&'a Record>,
}

impl<'a> Group<'a> {
    /// The serial row, if the group has exactly one.
    pub fn serial(&self) -> Option<&'a Record> {
        let mut s = self.rows.iter().filter(|r| r.scheme == "serial");
        match (s.next(), s.next()) {
            (Some(r), None) => Some(r),
            _ => None,
        }
    }

    /// Distinct values of a provenance field, in first-seen order.
    pub fn distinct(&self, f: impl Fn(&Record) -> &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rows {
            let v = f(r).to_string();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    /// What differs between the group's rows (commit, host, ISA path), naming the schemes
    /// of each value; empty when they all agree.
    pub fn provenance_warnings(&self) -> Vec<String> {
        type Field = fn(&Record) -> &str;
        let fields: [(&str, Field); 3] = [
            ("commit", |r| &r.commit),
            ("host", |r| &r.host),
            ("isa", |r| &r.isa),
        ];
        let mut out = Vec::new();
        for (name, f) in fields {
            let values = self.distinct(f);
            if values.len() > 1 {
                let parts: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let schemes: Vec<&str> = self
                            .rows
                            .iter()
                            .filter(|r| f(r) == v)
                            .map(|r| r.scheme.as_str())
                            .collect();
                        format!("{v} ({})", schemes.join(", "))
                    })
                    .collect();
                out.push(format!(
                    "rows of this configuration differ in {name}: {}; gains compare rows across them",
                    parts.join("; ")
                ));
            }
        }
        let mut schemes: Vec<&str> = self.rows.iter().map(|r| r.scheme.as_str()).collect();
        schemes.sort_unstable();
        let before = schemes.len();
        schemes.dedup();
        if schemes.len() != before {
            out.push("a scheme appears more than once; each row is shown, none averaged".into());
        }
        out
    }

    /// The file's line range of the group, "rows 2-7" or "rows 2, 9-12".
    pub fn lines(&self) -> String {
        line_ranges(self.rows.iter().map(|r| r.line))
    }
}

/// Lines as ranges, "rows 2-7" or "rows 2, 9-12" ("row 5" for one).
pub fn line_ranges(lines: impl Iterator<Item = u64>) -> String {
    let mut lines: Vec<u64> = lines.collect();
    lines.sort_unstable();
    lines.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            lines[i].to_string()
        } else {
            format!("{}-{}", lines[i], lines[j])
        });
        i = j + 1;
    }
    format!(
        "{} {}",
        if lines.len() == 1 { "row" } else { "rows" },
        parts.join(", ")
    )
}

/// Which rows of which files `rows` are: "a.csv rows 2-7; b.csv row 3", files in
/// first-seen order.
pub fn sources<'a>(rows: impl Iterator<Item = &'a Record>) -> String {
    let mut files: Vec<(&str, Vec<u64>)> = Vec::new();
    for r in rows {
        match files.iter_mut().find(|(f, _)| *f == r.file) {
            Some((_, l)) => l.push(r.line),
            None => files.push((&r.file, vec![r.line])),
        }
    }
    files
        .into_iter()
        .map(|(f, l)| format!("{f} {}", line_ranges(l.into_iter())))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Group rows by (file, configuration), in order of first appearance.
pub fn groups(records: &[Record]) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for r in records {
        let config = Config::of(r);
        match out
            .iter_mut()
            .find(|g| g.file == r.file && g.config == config)
        {
            Some(g) => g.rows.push(r),
            None => out.push(Group {
                config,
                file: r.file.clone(),
                rows: vec![r],
            }),
        }
    }
    out
}

/// A row against its group's serial row.
#[derive(Clone, Debug, PartialEq)]
pub struct Versus {
    /// throughput / serial throughput − 1.
    pub throughput_gain: f64,
    /// p50 latency / serial p50 latency − 1 (negative: faster).
    pub latency_change: f64,
}

pub fn versus(r: &Record, serial: &Record) -> Versus {
    Versus {
        throughput_gain: r.throughput_per_s / serial.throughput_per_s - 1.0,
        latency_change: r.latency_ms_p50 / serial.latency_ms_p50 - 1.0,
    }
}

/// η of a row as the report prints it: the CSV's value, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub enum Eta {
    Value(f64),
    /// The denominator is under ETA_MIN_ROOM of T_serial (the share it is).
    IllConditioned(f64),
    /// Serial is not slower than max(T_compute, T_comm): nothing to overlap.
    NoRoom,
    /// The row has no η and the reason cannot be derived (a column is empty).
    Missing(&'static str),
    /// Serial itself.
    Serial,
}

/// η of `r` with `serial` its group's serial row. The room is recomputed from the row's
/// T_compute and T_comm and serial's p50, so rows written before the threshold existed
/// get n/a too.
pub fn eta(r: &Record, serial: Option<&Record>) -> Eta {
    if r.scheme == "serial" {
        return Eta::Serial;
    }
    let (Some(tc), Some(tm)) = (r.t_compute_s, r.t_comm_s) else {
        return match r.overlap_efficiency {
            Some(e) => Eta::Value(e),
            None => Eta::Missing("t_compute_s or t_comm_s empty"),
        };
    };
    let Some(s) = serial else {
        return match r.overlap_efficiency {
            Some(e) => Eta::Value(e),
            None => Eta::Missing("no serial row in this configuration"),
        };
    };
    let t_serial = s.latency_ms_p50 / 1e3;
    let room = t_serial - tc.max(tm);
    if room <= 0.0 {
        Eta::NoRoom
    } else if room < ETA_MIN_ROOM * t_serial {
        Eta::IllConditioned(room / t_serial)
    } else {
        match r.overlap_efficiency {
            Some(e) => Eta::Value(e),
            None => Eta::Missing("empty in the CSV"),
        }
    }
}

impl std::fmt::Display for Eta {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Eta::Value(e) => write!(f, "{e:.2}"),
            Eta::IllConditioned(share) => write!(
                f,
                "n/a (room {:.1}% of T_serial < {:.0}%)",
                share * 100.0,
                ETA_MIN_ROOM * 100.0
            ),
            Eta::NoRoom => write!(f, "n/a (T_serial ≤ max(T_compute, T_comm))"),
            Eta::Missing(why) => write!(f, "n/a ({why})"),
            Eta::Serial => write!(f, "–"),
        }
    }
}
