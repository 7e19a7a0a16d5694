//! The benchmark CSV: one row per (configuration, scheme), appended and fsynced one line at
//! a time so an interrupted sweep keeps every finished row and can resume.
//! Depends on csv, serde, ring (the truncation mode of a row's key).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Point;
use crate::error::{Error, Result};
use crate::ring::Trunc;

/// One CSV row. Column names and order are an interface: extend, never rename.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Row {
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
    pub online_s: f64,
    pub compute_busy_s: f64,
    pub comm_wait_s: f64,
    pub bytes_per_party: u64,
    pub rounds: u64,
    pub cpu_util: f64,
    pub link_util: Option<f64>,
    pub max_abs_err: f64,
    pub speedup_vs_serial: Option<f64>,
    pub commit: String,
    pub host: String,
    pub isa: String,
    pub predicted_s: Option<f64>,
    /// Serial online time per inference over an unshaped, zero-latency link.
    pub t_compute_s: f64,
    /// Time the link alone needs for the serial traffic and rounds, per inference.
    pub t_comm_s: f64,
    /// η = (T_serial - T_scheme) / (T_serial - max(T_compute, T_comm)); empty for serial.
    pub overlap_efficiency: Option<f64>,
    /// `eager`, `streamed` or (older rows) `lazy` (see bench::mod); empty in rows from
    /// before this column.
    #[serde(default)]
    pub material: String,
    /// Truncation mode, `local` or `dealer` (see bench::mod); empty in rows from before
    /// this column, which were all made with the default for their party count.
    #[serde(default)]
    pub trunc: String,
    /// Bytes of the busiest directed link per inference (the most any party sent to one
    /// peer), which t_comm_s and link_util count; empty in rows from before this column.
    #[serde(default)]
    pub link_bytes: Option<u64>,
    /// Where the pipeline lanes ran, `threads` or `coroutines` (sched::Lanes); empty in
    /// rows from before this column, which all ran as threads.
    #[serde(default)]
    pub lanes: String,
    /// Messages the busiest party sent per inference (to all its peers; one per opening
    /// per peer and part: chunks and micro-batches add messages, not bytes or rounds).
    /// Empty in rows from before this column.
    #[serde(default)]
    pub messages: Option<u64>,
    /// Links between the parties: `memory` (in-process queues), `sealed` (loopback TCP,
    /// AEGIS-256X4 frames) or `plaintext` (loopback TCP in clear); empty in rows from
    /// before this column, which all ran in memory.
    #[serde(default)]
    pub channels: String,
    /// Whole-job phases per inference, seconds (medians over repetitions; README):
    /// the dry run that records the plan (once per configuration, shared by its schemes),
    /// the dealer (streamed: its busy time, beside the online phase), each party's material
    /// expansion, and e2e_s = plan + the repetition's wall time from the dealer's start to
    /// the last output (deal + expand + online upfront; less, overlapped, streamed). Empty in rows from before these columns. Training rows: per epoch,
    /// the epoch's training and evaluation sessions (plan_s 0 when their plans were
    /// recorded in an earlier epoch), e2e_s the epoch's wall time; f64 rows fill e2e_s only.
    #[serde(default)]
    pub plan_s: Option<f64>,
    #[serde(default)]
    pub deal_s: Option<f64>,
    #[serde(default)]
    pub expand_s: Option<f64>,
    #[serde(default)]
    pub e2e_s: Option<f64>,
    /// Training rows (`mpc-pipe train`, one per epoch): the epoch, from 1. Empty in
    /// inference rows. In a training row `batch` is the mini-batch, `reps` the steps of
    /// the epoch, `throughput_per_s` training samples per second and the latency columns
    /// the epoch's time per step.
    #[serde(default)]
    pub epoch: Option<usize>,
    /// Training rows: the epoch's mean training loss (revealed to the model owner).
    #[serde(default)]
    pub loss: Option<f64>,
    /// Training rows: test accuracy after the epoch, in [0, 1].
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// Comparison protocols, `crypten` or `fss` (ring::Protocols); empty in rows from
    /// before this column, which all ran crypten's (`Row::protocols`).
    #[serde(default)]
    pub protocols: String,
}

/// The identity of a row, for resuming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowKey(String);

impl RowKey {
    pub fn new(p: &Point, scheme: &str) -> RowKey {
        RowKey(format!(
            "{} b{} n{} {} {} {} trunc-{}{}{}",
            p.model,
            p.batch,
            p.parties,
            format!("{:?}", p.weights).to_lowercase(),
            p.link.name,
            scheme,
            p.trunc,
            channels_suffix(p.channels.as_str()),
            protocols_suffix(p.protocols.as_str())
        ))
    }
}

/// The key's protocol part: nothing for crypten, so rows from before the `protocols`
/// column (all crypten) resume the same configurations.
fn protocols_suffix(c: &str) -> String {
    match c {
        "" | "crypten" => String::new(),
        c => format!(" protocols-{c}"),
    }
}

/// The key's channel part: nothing for in-memory rows, so rows from before the `channels`
/// column (all in memory) resume the same configurations.
fn channels_suffix(c: &str) -> String {
    match c {
        "" | "memory" => String::new(),
        c => format!(" over-{c}"),
    }
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Row {
    pub fn key(&self) -> RowKey {
        // Rows from before the `trunc` column ran the only mode there was, which is the
        // default for their party count: they resume a configuration that leaves `trunc`
        // unset, and not one that asks for the other mode.
        let trunc = match self.trunc.as_str() {
            "" => Trunc::default_for(self.parties).as_str(),
            t => t,
        };
        RowKey(format!(
            "{} b{} n{} {} {} {} trunc-{trunc}{}{}",
            self.model,
            self.batch,
            self.parties,
            self.weights,
            self.network,
            self.scheme,
            channels_suffix(&self.channels),
            protocols_suffix(&self.protocols)
        ))
    }

    /// The row's comparison protocols: `crypten` for rows from before the column.
    pub fn protocols(&self) -> &str {
        match self.protocols.as_str() {
            "" => "crypten",
            p => p,
        }
    }
}

/// Rows already in `path` (none if it does not exist).
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, rec) in r.deserialize::<Row>().enumerate() {
        match rec {
            Ok(row) => rows.push(row),
            // A torn last line (crash mid-write) is dropped and rerun; anything else is an error.
            Err(e) => {
                return Err(Error::Config(format!(
                    "{} row {}: {e} (not a file this version of mpc-pipe bench wrote?)",
                    path.display(),
                    i + 2
                )))
            }
        }
    }
    Ok(rows)
}

/// Bring a CSV written by an older version up to this version's header: every column it
/// lacks is appended to the header and left empty in its rows, so a resumed sweep writes
/// rows that match the header. Columns only ever come at the end (extend, never rename),
/// so an old header is a prefix of the new one. The upgraded file replaces the old one by
/// rename, after an fsync: a crash leaves one or the other, whole.
pub fn upgrade(path: &Path) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) if !t.is_empty() => t,
        _ => return Ok(()),
    };
    let (old, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let new = header();
    if old == new {
        return Ok(());
    }
    let missing = match new.strip_prefix(old) {
        Some(rest) if rest.starts_with(',') => rest.matches(',').count(),
        _ => {
            return Err(Error::Config(format!(
                "{}: its header is not a prefix of this version's ({new}); write to a new file",
                path.display()
            )))
        }
    };
    let pad = ",".repeat(missing);
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&new);
    out.push('\n');
    for line in body.lines().filter(|l| !l.is_empty()) {
        out.push_str(line);
        out.push_str(&pad);
        out.push('\n');
    }
    let tmp = path.with_extension("csv.upgrade");
    {
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", tmp.display())))?;
        f.write_all(out.as_bytes())?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::Config(format!("cannot replace {}: {e}", path.display())))?;
    eprintln!(
        "{}: added {missing} new column(s) to the header (empty in its existing rows)",
        path.display()
    );
    Ok(())
}

/// This version's header line.
fn header() -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let row = Row::default();
    w.serialize(&row).expect("a row serializes");
    let bytes = w.into_inner().expect("in-memory writer");
    let text = String::from_utf8(bytes).expect("csv is utf-8");
    text.lines().next().unwrap_or_default().to_string()
}

/// Append one row (with the header first if the file is new or empty), in one write, fsynced.
pub fn append_row(path: &Path, row: &Row) -> Result<()> {
    let fresh = std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    let mut w = csv::WriterBuilder::new()
        .has_headers(fresh)
        .from_writer(Vec::new());
    w.serialize(row)
        .map_err(|e| Error::Config(format!("csv: {e}")))?;
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Config(format!("csv: {e}")))?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Config(format!("cannot open {}: {e}", path.display())))?;
    f.write_all(&bytes)?;
    f.sync_data()?;
    Ok(())
}

/// Exclusive hold on a CSV for one sweep: while it lives, another sweep on the same file
/// is refused. Two sweeps appending to one file would write duplicate rows, each measured
/// on a machine the other was loading. The lock is an advisory `flock` on `FILE.lock`
/// beside the CSV (the CSV itself is replaced by rename when its header is upgraded, which
/// would drop a lock held on it); the kernel releases it when the process ends, however it
/// ends, so a stale file never blocks. The holder removes the file when it lets go (its
/// pid is in it meanwhile), so no lock file stays behind after a sweep, failed or not; a
/// process killed outright leaves one, which blocks nothing.
pub struct SweepLock {
    _file: std::fs::File,
    path: std::path::PathBuf,
}

impl Drop for SweepLock {
    fn drop(&mut self) {
        // Removed while still locked: a sweep that opened the old file and waits for it
        // notices, once it gets the lock, that the path no longer names its file, and
        // starts again on a fresh one (see `lock`), so two sweeps never both hold a lock.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `file` is still the file at `path` (not removed or replaced meanwhile).
#[cfg(unix)]
fn still_at(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Take the sweep lock of `path`, or fail naming the sweep that holds it.
pub fn lock(path: &Path) -> Result<SweepLock> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    // A holder that let go removed the file we locked: start again on the new one.
    for _ in 0..100 {
        let file = lock_once(path, &lock_path)?;
        #[cfg(unix)]
        if !still_at(&file, &lock_path) {
            continue;
        }
        return Ok(SweepLock {
            _file: file,
            path: lock_path,
        });
    }
    Err(Error::Config(format!(
        "{}: the sweep lock {} keeps being replaced; is another sweep starting and stopping?",
        path.display(),
        lock_path.display()
    )))
}

fn lock_once(path: &Path, lock_path: &Path) -> Result<std::fs::File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock_path)
        .map_err(|e| Error::Config(format!("cannot open {}: {e}", lock_path.display())))?;
    #[cfg(unix)]
    {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        // A just-released lock can still be held for a moment: a child this process forked
        // (to run git, or a party) shares the lock's descriptor until it execs. So a busy
        // lock is retried for a second before it counts as another sweep's.
        let mut rc = -1;
        for attempt in 0..20 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
        }
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Config(format!(
                "{} is being written by another `mpc-pipe bench`{} (lock {}): two sweeps on \
                 one file would append duplicate rows, each measured on a loaded machine; \
                 wait for it, stop it, or use another --out",
                path.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                lock_path.display()
            )));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Weights;
    use crate::transport::emulator::LinkProfile;

    fn point(parties: usize, trunc: Trunc) -> Point {
        Point {
            model: "lenet".into(),
            batch: 2,
            parties,
            weights: Weights::Private,
            link: LinkProfile::unshaped(),
            trunc,
            protocols: Default::default(),
            channels: Default::default(),
        }
    }

    fn row(parties: usize, trunc: &str) -> Row {
        Row {
            model: "lenet".into(),
            batch: 2,
            parties,
            weights: "private".into(),
            network: LinkProfile::unshaped().name,
            scheme: "serial".into(),
            trunc: trunc.into(),
            ..Row::default()
        }
    }

    #[test]
    fn rows_of_another_trunc_mode_are_another_configuration() {
        let (local, dealer) = (point(2, Trunc::Local), point(2, Trunc::Dealer));
        assert_eq!(row(2, "local").key(), RowKey::new(&local, "serial"));
        assert_eq!(row(2, "dealer").key(), RowKey::new(&dealer, "serial"));
        assert_ne!(row(2, "local").key(), RowKey::new(&dealer, "serial"));
        assert_ne!(row(2, "dealer").key(), RowKey::new(&local, "serial"));
        // Rows from before the column used the default: local for 2 parties, dealer for 3.
        assert_eq!(row(2, "").key(), RowKey::new(&local, "serial"));
        assert_ne!(row(2, "").key(), RowKey::new(&dealer, "serial"));
        assert_eq!(
            row(3, "").key(),
            RowKey::new(&point(3, Trunc::Dealer), "serial")
        );
    }
}
