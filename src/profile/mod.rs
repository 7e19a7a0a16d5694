//! Timelines of a run: communication spans recorded around every `wait` (by `TracedComm`,
//! a decorator over any `Comm`) and compute spans derived as the gaps between them on each
//! lane thread, written as Chrome trace event JSON (opens in Perfetto and
//! chrome://tracing): one process per party, one thread per lane (party thread, chunk,
//! micro-batch, weights lane). Depends on comm, error; protocols never see it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use crate::comm::{Comm, Counters, PartyId, Payload, Tag};
use crate::error::Result;

/// One recorded wait.
#[derive(Clone, Debug)]
struct Span {
    party: PartyId,
    thread: String,
    peer: PartyId,
    start_us: f64,
    dur_us: f64,
    bytes: usize,
}

/// Collects spans from every party of a run.
pub struct Recorder {
    origin: Instant,
    spans: Mutex<Vec<Span>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            origin: Instant::now(),
            spans: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    fn us(&self, t: Instant) -> f64 {
        t.duration_since(self.origin).as_secs_f64() * 1e6
    }

    /// Chrome trace event JSON: "comm" spans (waits) and "compute" spans (the time a lane
    /// thread spent between its waits).
    pub fn write_chrome_trace(&self, w: &mut impl Write) -> Result<()> {
        let mut spans = self.spans.lock().unwrap().clone();
        spans.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
        let mut tids: HashMap<(PartyId, String), usize> = HashMap::new();
        let mut events = Vec::new();
        let mut last_end: HashMap<(PartyId, String), f64> = HashMap::new();
        for s in &spans {
            let key = (s.party, s.thread.clone());
            let n = tids.len();
            let tid = *tids.entry(key.clone()).or_insert(n);
            if let Some(&end) = last_end.get(&key) {
                if s.start_us > end {
                    events.push(format!(r#"{{"name":"compute","cat":"compute","ph":"X","pid":{},"tid":{tid},"ts":{end:.1},"dur":{:.1}}}"#, s.party, s.start_us - end));
                }
            }
            events.push(format!(
                r#"{{"name":"wait p{}","cat":"comm","ph":"X","pid":{},"tid":{tid},"ts":{:.1},"dur":{:.1},"args":{{"peer":{},"bytes":{}}}}}"#,
                s.peer, s.party, s.start_us, s.dur_us, s.peer, s.bytes
            ));
            last_end.insert(key, s.start_us + s.dur_us);
        }
        for ((party, thread), tid) in &tids {
            events.push(format!(r#"{{"name":"thread_name","ph":"M","pid":{party},"tid":{tid},"args":{{"name":"{}"}}}}"#, thread.replace('"', "'")));
        }
        let parties: std::collections::BTreeSet<PartyId> = tids.keys().map(|k| k.0).collect();
        for p in parties {
            events.push(format!(
                r#"{{"name":"process_name","ph":"M","pid":{p},"args":{{"name":"party {p}"}}}}"#
            ));
        }
        writeln!(w, "{{\"traceEvents\":[")?;
        writeln!(w, "{}", events.join(",\n"))?;
        writeln!(w, "],\"displayTimeUnit\":\"ms\"}}")?;
        Ok(())
    }

    /// Number of recorded waits.
    pub fn len(&self) -> usize {
        self.spans.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `Comm` that records each `wait` as a span on the calling thread's lane.
pub struct TracedComm<'a> {
    pub inner: &'a dyn Comm,
    pub recorder: &'a Recorder,
}

impl Comm for TracedComm<'_> {
    fn party(&self) -> PartyId {
        self.inner.party()
    }
    fn parties(&self) -> usize {
        self.inner.parties()
    }
    fn post(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        self.inner.post(to, tag, data)
    }
    fn post_bulk(&self, to: PartyId, tag: Tag, data: Payload) -> Result<()> {
        self.inner.post_bulk(to, tag, data)
    }
    fn wait(&self, from: PartyId, tag: Tag, len: usize) -> Result<Payload> {
        let t0 = Instant::now();
        let r = self.inner.wait(from, tag, len);
        let t1 = Instant::now();
        let thread = crate::lanes::current_name();
        self.recorder.spans.lock().unwrap().push(Span {
            party: self.inner.party(),
            thread,
            peer: from,
            start_us: self.recorder.us(t0),
            dur_us: (t1 - t0).as_secs_f64() * 1e6,
            bytes: 8 * len,
        });
        r
    }
    fn counters(&self) -> &Counters {
        self.inner.counters()
    }
}
