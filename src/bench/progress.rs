//! The progress of a benchmark sweep: a bar over its rows on a terminal (with elapsed time,
//! an estimate of the time left and the configuration being measured, redrawn every
//! second, so a row that runs for minutes still shows life), and one line per row when
//! stderr is not a terminal (CI logs, nohup). Depends on indicatif.

use std::cell::Cell;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    /// Rows found already finished (resumed), which say nothing of how long a row takes.
    skipped: Cell<usize>,
    /// When the first row was measured.
    first: Cell<Option<Instant>>,
}

impl Progress {
    pub fn new(rows: usize) -> Self {
        let bar = ProgressBar::new(rows as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} rows  {elapsed_precise}  {wide_msg}",
            )
            .expect("a valid progress template")
            .progress_chars("=> "),
        );
        if !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_secs(1));
        }
        Progress {
            bar,
            skipped: Cell::new(0),
            first: Cell::new(None),
        }
    }

    /// Row `done + 1` was found finished already.
    pub fn skip(&self, done: usize, line: &str) {
        self.skipped.set(self.skipped.get() + 1);
        self.bar.set_position(done as u64 + 1);
        self.log(line);
    }

    /// `done` rows are finished; `what` is being measured now.
    pub fn at(&self, done: usize, what: &str) {
        let total = self.bar.length().unwrap_or(0) as usize;
        let first = self.first.get().unwrap_or_else(Instant::now);
        self.first.set(Some(first));
        let measured = done.saturating_sub(self.skipped.get());
        let eta = if measured > 0 {
            let per_row = first.elapsed().as_secs_f64() / measured as f64;
            format!(", eta {:.0}s", per_row * total.saturating_sub(done) as f64)
        } else {
            String::new()
        };
        let elapsed = self.bar.elapsed().as_secs_f64();
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("{what}{eta}"));
        self.log(&format!(
            "[{}/{total}] {what}  (elapsed {elapsed:.0}s{eta})",
            done + 1
        ));
    }

    /// A line above the bar (or on stderr when there is no bar).
    pub fn log(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self, done: usize) {
        self.bar.set_position(done as u64);
        self.bar.finish_and_clear();
    }
}
