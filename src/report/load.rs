//! Reading benchmark CSVs for the report: columns are looked up by name, so files written
//! before a column existed (it is absent) and files with columns this version does not
//! know (they are ignored) both load. An empty value is a missing value. A column a table
//! needs that is absent from a file, or a value that does not parse, is an error naming
//! the file, the row (its line in the file) and the column. Depends on csv, error.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// One row of a bench CSV, with where it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// The file as named on the command line.
    pub file: String,
    /// Line of the row in its file (the header is line 1).
    pub line: u64,
    pub model: String,
    pub batch: usize,
    pub parties: usize,
    pub weights: String,
    pub network: String,
    pub bandwidth_mbps: Option<f64>,
    pub latency_ms: f64,
    pub scheme: String,
    pub chunks: usize,
    pub batches_in_flight: usize,
    pub reps: usize,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub throughput_per_s: f64,
    pub cpu_util: Option<f64>,
    pub link_util: Option<f64>,
    pub commit: String,
    pub host: String,
    pub isa: String,
    pub t_compute_s: Option<f64>,
    pub t_comm_s: Option<f64>,
    pub overlap_efficiency: Option<f64>,
    /// Empty in rows from before the column (they ran the default for their party count).
    pub trunc: String,
    /// Empty in rows from before the column (they ran as threads).
    pub lanes: String,
    /// Empty in rows from before the column (they ran in memory).
    pub channels: String,
    /// The whole job per inference (plan + dealer + expansion + online), seconds; absent
    /// in rows from before the column.
    pub e2e_s: Option<f64>,
    /// Empty in rows from before the column (they ran crypten's protocols).
    pub protocols: String,
}

/// One row of another system's CSV for the peers comparison (`scripts/compare-crypten.sh`
/// writes them: a `system` column and no `scheme`), with where it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerRecord {
    pub file: String,
    pub line: u64,
    /// The workload, W1..W7 (bench-configs/peers.toml).
    pub model: String,
    pub system: String,
    /// Samples in the job (its times are for the whole job, not per inference).
    pub batch: usize,
    pub parties: usize,
    pub reps: usize,
    /// Median, fastest and slowest whole job over the repetitions, seconds.
    pub e2e_s: f64,
    pub e2e_s_min: Option<f64>,
    pub e2e_s_max: Option<f64>,
    pub host: String,
}

/// Columns a peers CSV must have.
pub const PEER_REQUIRED: [&str; 7] = [
    "model", "system", "batch", "parties", "reps", "e2e_s", "host",
];

/// What one input file held.
#[derive(Debug)]
pub enum Loaded {
    /// A bench CSV: its rows, and the optional columns its header lacks.
    Bench {
        records: Vec<Record>,
        absent: Vec<&'static str>,
    },
    /// Another system's rows for the peers comparison.
    Peers(Vec<PeerRecord>),
    /// Another kind of CSV (kernels.csv, conv.csv): no `model` and `scheme` columns.
    Other,
}

/// Columns every table needs: a file without one of them is refused.
pub const REQUIRED: [&str; 15] = [
    "model",
    "batch",
    "parties",
    "weights",
    "network",
    "latency_ms",
    "scheme",
    "chunks",
    "batches_in_flight",
    "reps",
    "latency_ms_p50",
    "latency_ms_p99",
    "throughput_per_s",
    "commit",
    "host",
];

/// Columns the report uses where present (older files lack some of them).
pub const OPTIONAL: [&str; 13] = [
    "bandwidth_mbps",
    "cpu_util",
    "link_util",
    "isa",
    "t_compute_s",
    "t_comm_s",
    "overlap_efficiency",
    "trunc",
    "lanes",
    "speedup_vs_serial",
    "channels",
    "e2e_s",
    "protocols",
];

/// Load one CSV. `name` is how the report names the file.
pub fn load(path: &Path, name: &str) -> Result<Loaded> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| Error::Config(format!("cannot read {name}: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| Error::Config(format!("{name} row 1 (header): {e}")))?
        .clone();
    let index: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (h, i)).collect();
    if !index.contains_key("model") && !index.contains_key("scheme") {
        return Ok(Loaded::Other);
    }
    if index.contains_key("system") && !index.contains_key("scheme") {
        return load_peers(reader, &index, name);
    }
    if let Some(col) = REQUIRED.iter().find(|c| !index.contains_key(*c)) {
        return Err(Error::Config(format!(
            "{name} row 1 (header): column `{col}` is missing; the report needs it for every table"
        )));
    }
    let absent: Vec<&'static str> = OPTIONAL
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    let records = each_row(reader, &index, name, |cell, line| {
        Ok(Record {
            file: name.to_string(),
            line,
            model: cell.text("model"),
            batch: cell.required("batch")?,
            parties: cell.required("parties")?,
            weights: cell.text("weights"),
            network: cell.text("network"),
            bandwidth_mbps: cell.optional("bandwidth_mbps")?,
            latency_ms: cell.required("latency_ms")?,
            scheme: cell.text("scheme"),
            chunks: cell.required("chunks")?,
            batches_in_flight: cell.required("batches_in_flight")?,
            reps: cell.required("reps")?,
            latency_ms_p50: cell.required("latency_ms_p50")?,
            latency_ms_p99: cell.required("latency_ms_p99")?,
            throughput_per_s: cell.required("throughput_per_s")?,
            cpu_util: cell.optional("cpu_util")?,
            link_util: cell.optional("link_util")?,
            commit: cell.text("commit"),
            host: cell.text("host"),
            isa: cell.text("isa"),
            t_compute_s: cell.optional("t_compute_s")?,
            t_comm_s: cell.optional("t_comm_s")?,
            overlap_efficiency: cell.optional("overlap_efficiency")?,
            trunc: cell.text("trunc"),
            lanes: cell.text("lanes"),
            channels: cell.text("channels"),
            e2e_s: cell.optional("e2e_s")?,
            protocols: cell.text("protocols"),
        })
    })?;
    Ok(Loaded::Bench { records, absent })
}

/// `f` on every row of `reader` (with its line in the file), collected; a row that does
/// not parse as CSV is an error naming the file and the line.
fn each_row<T>(
    mut reader: csv::Reader<std::fs::File>,
    index: &HashMap<&str, usize>,
    name: &str,
    mut f: impl FnMut(&Cell, u64) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::Config(format!("{name} row {line}: {e}"))
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let cell = Cell {
            name,
            line,
            rec: &rec,
            index,
        };
        out.push(f(&cell, line)?);
    }
    Ok(out)
}

/// The rows of a peers CSV (see `PeerRecord`).
fn load_peers(
    reader: csv::Reader<std::fs::File>,
    index: &HashMap<&str, usize>,
    name: &str,
) -> Result<Loaded> {
    if let Some(col) = PEER_REQUIRED.iter().find(|c| !index.contains_key(*c)) {
        return Err(Error::Config(format!(
            "{name} row 1 (header): column `{col}` is missing; a peers CSV (with `system`) needs it"
        )));
    }
    let rows = each_row(reader, index, name, |cell, line| {
        Ok(PeerRecord {
            file: name.to_string(),
            line,
            model: cell.text("model"),
            system: cell.text("system"),
            batch: cell.required("batch")?,
            parties: cell.required("parties")?,
            reps: cell.required("reps")?,
            e2e_s: cell.required("e2e_s")?,
            e2e_s_min: cell.optional("e2e_s_min")?,
            e2e_s_max: cell.optional("e2e_s_max")?,
            host: cell.text("host"),
        })
    })?;
    Ok(Loaded::Peers(rows))
}

/// The cells of one row, by column name.
struct Cell<'a> {
    name: &'a str,
    line: u64,
    rec: &'a csv::StringRecord,
    index: &'a HashMap<&'a str, usize>,
}

impl Cell<'_> {
    fn raw(&self, col: &str) -> &str {
        self.index
            .get(col)
            .and_then(|&i| self.rec.get(i))
            .unwrap_or("")
            .trim()
    }
    fn text(&self, col: &str) -> String {
        self.raw(col).to_string()
    }
    /// A value that must be present and parse.
    fn required<T: std::str::FromStr>(&self, col: &str) -> Result<T> {
        match self.optional(col)? {
            Some(v) => Ok(v),
            None => Err(Error::Config(format!(
                "{} row {} column `{col}`: empty, but every table needs it",
                self.name, self.line
            ))),
        }
    }
    /// A value that may be empty (or its column absent), but parses when present.
    fn optional<T: std::str::FromStr>(&self, col: &str) -> Result<Option<T>> {
        let v = self.raw(col);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| {
            Error::Config(format!(
                "{} row {} column `{col}`: cannot parse \"{v}\" as a number",
                self.name, self.line
            ))
        })
    }
}
