//! Bench configuration files (TOML): the matrix to run and its repetition settings.
//! Depends on model, transport::emulator.
//!
//! ```toml
//! models = ["lenet", "resnet_cifar-tiny"]
//! networks = ["local", "lan", "wan"]      # names from bench-configs/links.toml
//! schemes = ["serial", "inter-linear", "inner-layer", "inter-batch", "all"]
//! batches = [4]
//! parties = [2, 3]
//! weights = ["private", "public"]
//! chunks = "auto"                          # or an integer k
//! batches_in_flight = "auto"               # or an integer m
//! lanes = "auto"                           # or "threads" / "coroutines" (pipeline lanes)
//! warmup = 1
//! reps = 5                                # at least this many measured repetitions
//! min_time_s = 1.0                        # and repeat until this much online time
//! interleave = true                       # schemes of a configuration take turns
//! timeout_s = 300
//! trunc = "dealer"                        # optional: "local" (2 parties only) or "dealer";
//!                                         # default local for 2 parties, dealer for more
//! protocols = ["crypten", "fss"]          # optional axis: comparison protocols (default
//!                                         # crypten; fss needs parties = [2])
//! trace_dir = "results/traces"            # optional: one timeline per measured row
//! channels = ["sealed", "plaintext"]       # optional axis: "memory" (default), or loopback
//!                                         # TCP with sealed or plaintext frames
//! ```

use std::path::Path;

use serde::Deserialize;

use super::{Point, MAX_REPS};
use crate::error::{Error, Result};
use crate::model::Weights;
use crate::ring::{Protocols, Trunc};
use crate::runtime::local::Channels;
use crate::runtime::process::{MAX_BATCH, MAX_LANES};
use crate::transport::emulator::LinkProfile;

/// Cap on a bench config file (the shipped ones are under 2 KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A key that takes one name or a list of them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A count that is either fixed or chosen by the cost model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Auto,
    Fixed(usize),
}

impl Count {
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Count::Fixed(k) => Some(*k),
            Count::Auto => None,
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(0) => Err(serde::de::Error::custom(
                "a count must be at least 1 or \"auto\"",
            )),
            Raw::N(n) => Ok(Count::Fixed(n)),
            Raw::S(s) if s == "auto" => Ok(Count::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected an integer or \"auto\", got \"{s}\""
            ))),
        }
    }
}

fn one() -> usize {
    1
}
fn five() -> usize {
    5
}
fn timeout() -> f64 {
    300.0
}
fn auto() -> Count {
    Count::Auto
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    pub models: Vec<String>,
    pub networks: Vec<String>,
    pub schemes: Vec<String>,
    pub batches: Vec<usize>,
    pub parties: Vec<usize>,
    pub weights: Vec<String>,
    #[serde(default = "auto")]
    pub chunks: Count,
    #[serde(default = "auto")]
    pub batches_in_flight: Count,
    /// Where pipeline lanes run: "threads", "coroutines", or "auto" (the default: the
    /// cost model's choice from the measured compute per round, `CostInputs::lanes`).
    #[serde(default)]
    pub lanes: Option<String>,
    #[serde(default = "one")]
    pub warmup: usize,
    #[serde(default = "five")]
    pub reps: usize,
    /// Repeat past `reps` until the measured online times add up to this many seconds
    /// (at most MAX_REPS): short lan runs are a few ms, and a VM's clock drifts between
    /// them, so two repetitions say little.
    #[serde(default)]
    pub min_time_s: f64,
    #[serde(default = "timeout")]
    pub timeout_s: f64,
    /// Measure the schemes of each configuration in turns, one repetition each (with the
    /// unshaped serial run for T_compute), instead of one scheme after the other: on a
    /// host whose speed drifts, their ratios then compare like with like. Every job of a
    /// configuration is held at once, so this is for small models.
    #[serde(default)]
    pub interleave: bool,
    /// Also report the cost model's prediction when k and m are fixed.
    #[serde(default)]
    pub predict: bool,
    /// File of extra link profiles (e.g. "bench-configs/links.toml"); names not built in
    /// (local, lan, wan) are looked up there.
    #[serde(default)]
    pub links_file: Option<String>,
    /// Truncation mode of every point ("local" or "dealer"); unset: `Trunc::default_for`
    /// each point's party count. "local" is refused when `parties` lists more than 2.
    #[serde(default)]
    pub trunc: Option<String>,
    /// Protocol suites of comparisons, an axis of the matrix (a name or a list of
    /// "crypten", "fss"); unset: crypten. "fss" is refused when `parties` lists more than 2.
    #[serde(default)]
    pub protocols: Option<OneOrMany>,
    /// Keep one timeline per measured row in this directory (an extra, untimed repetition
    /// with every wait recorded; see bench::run_matrix_traced). `bench --trace-dir`
    /// overrides it.
    #[serde(default)]
    pub trace_dir: Option<String>,
    /// Links between the parties, a matrix axis: "memory" (the default: in-process
    /// queues), "sealed" (loopback TCP with AEGIS-256X4 frames, as `party` runs) or
    /// "plaintext" (loopback TCP in clear, `--insecure-plaintext-channels`). Listing
    /// "sealed" and "plaintext" measures what the secure channels cost in one sweep.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Batch sizes of particular models, in place of `batches` for them (a workload whose
    /// batch is part of its definition, e.g. `batch_of = { W1 = 256, W4 = 32 }` in
    /// peers.toml). Every model named must be in `models`.
    #[serde(default)]
    pub batch_of: std::collections::BTreeMap<String, usize>,
}

impl BenchConfig {
    /// The fixed lane mode, or None for `auto`.
    pub fn fixed_lanes(&self) -> Result<Option<crate::sched::Lanes>> {
        match self.lanes.as_deref().map(str::trim) {
            None | Some("auto") => Ok(None),
            Some(l) => l.parse().map(Some),
        }
    }
    pub fn load(path: &Path) -> Result<BenchConfig> {
        let text = crate::error::read_capped(path, MAX_CONFIG_BYTES, "bench config")?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<BenchConfig, String> {
        let c: BenchConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.reps == 0 || c.reps > MAX_REPS {
            return Err(format!(
                "reps must be between 1 and {MAX_REPS}, got {}",
                c.reps
            ));
        }
        if c.warmup > MAX_REPS {
            return Err(format!(
                "warmup must be at most {MAX_REPS}, got {}",
                c.warmup
            ));
        }
        // The same checks as the command-line options: a value that would panic turning
        // into a Duration, overflow a deadline, or repeat for ever is refused here.
        for (key, v, zero_ok) in [
            ("min_time_s", c.min_time_s, true),
            ("timeout_s", c.timeout_s, false),
        ] {
            crate::error::seconds_option(key, v, zero_ok).map_err(|e| match e {
                Error::Config(m) => m,
                other => other.to_string(),
            })?;
        }
        if let Some(&b) = c.batches.iter().find(|&&b| b == 0 || b > MAX_BATCH) {
            return Err(format!(
                "batches must each be between 1 and {MAX_BATCH}, got {b}"
            ));
        }
        if let Some(&n) = c
            .parties
            .iter()
            .find(|&&n| !(2..=crate::runtime::MAX_PARTIES).contains(&n))
        {
            return Err(format!(
                "parties must each be between 2 and {}, got {n}",
                crate::runtime::MAX_PARTIES
            ));
        }
        for (key, count) in [
            ("chunks", c.chunks),
            ("batches_in_flight", c.batches_in_flight),
        ] {
            if let Some(k) = count.fixed().filter(|&k| k > MAX_LANES) {
                return Err(format!(
                    "{key} must be \"auto\" or at most {MAX_LANES}, got {k}"
                ));
            }
        }
        for s in &c.schemes {
            s.parse::<crate::sched::Scheme>()
                .map_err(|e| e.to_string())?;
        }
        if c.models.is_empty()
            || c.networks.is_empty()
            || c.schemes.is_empty()
            || c.batches.is_empty()
            || c.parties.is_empty()
            || c.weights.is_empty()
        {
            return Err("every matrix axis (models, networks, schemes, batches, parties, weights) needs at least one value".into());
        }
        if let Some((m, b)) = c
            .batch_of
            .iter()
            .find(|(m, &b)| b == 0 || !c.models.contains(m))
        {
            return Err(if *b == 0 {
                format!("batch_of: {m} = 0, a batch must be at least 1")
            } else {
                format!("batch_of names '{m}', which is not in models")
            });
        }
        c.channels().map_err(|e| match e {
            Error::Config(m) => m,
            other => other.to_string(),
        })?;
        if c.protocols()?.contains(&Protocols::Fss) {
            if let Some(&n) = c.parties.iter().find(|&&n| n != 2) {
                return Err(format!(
                    "protocols = \"fss\" needs exactly 2 parties, but parties lists {n}: its comparison keys (a distributed comparison function) split a function between two parties; use protocols = \"crypten\" or drop {n} from parties"
                ));
            }
        }
        if let Some(t) = c.trunc()? {
            if let Some(&n) = c.parties.iter().find(|&&n| t.check(n).is_err()) {
                return Err(format!(
                    "trunc = \"{t}\" needs exactly 2 parties, but parties lists {n}: with more, the sum of the shares wraps around the ring and dividing each share is almost always wrong; use trunc = \"dealer\" or drop {n} from parties"
                ));
            }
        }
        Ok(c)
    }

    /// The `protocols` key, parsed (crypten when unset).
    fn protocols(&self) -> std::result::Result<Vec<Protocols>, String> {
        let names = match &self.protocols {
            None => return Ok(vec![Protocols::Crypten]),
            Some(OneOrMany::One(s)) => vec![s.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        if names.is_empty() {
            return Err("protocols needs at least one value (\"crypten\" or \"fss\")".into());
        }
        names
            .iter()
            .map(|s| {
                s.parse::<Protocols>()
                    .map_err(|_| format!("protocols must be \"crypten\" or \"fss\", got \"{s}\""))
            })
            .collect()
    }

    /// The `channels` key, parsed (memory when unset).
    fn channels(&self) -> Result<Vec<Channels>> {
        match &self.channels {
            None => Ok(vec![Channels::Memory]),
            Some(v) if v.is_empty() => Err(Error::Config(
                "channels needs at least one value (\"memory\", \"sealed\" or \"plaintext\")"
                    .into(),
            )),
            Some(v) => v.iter().map(|s| s.parse()).collect(),
        }
    }

    /// The `trunc` key, parsed (`None` when unset).
    fn trunc(&self) -> std::result::Result<Option<Trunc>, String> {
        self.trunc
            .as_deref()
            .map(|s| {
                s.parse::<Trunc>()
                    .map_err(|_| format!("trunc must be \"local\" or \"dealer\", got \"{s}\""))
            })
            .transpose()
    }

    /// The configurations in run order (schemes vary innermost, serial first if listed).
    pub fn points(&self) -> Result<Vec<Point>> {
        let mut out = Vec::new();
        for model in &self.models {
            for net in &self.networks {
                let link = match (LinkProfile::named(net), &self.links_file) {
                    (Ok(l), _) => l,
                    (Err(_), Some(f)) => LinkProfile::load(Path::new(f), net)?,
                    (Err(e), None) => return Err(e),
                };
                let own = self.batch_of.get(model).map(std::slice::from_ref);
                for &batch in own.unwrap_or(&self.batches) {
                    for &parties in &self.parties {
                        for w in &self.weights {
                            let trunc = self
                                .trunc()
                                .map_err(Error::Config)?
                                .unwrap_or(Trunc::default_for(parties));
                            trunc.check(parties)?;
                            for protocols in self.protocols().map_err(Error::Config)? {
                                protocols.check(parties)?;
                                for channels in self.channels()? {
                                    out.push(Point {
                                        model: model.clone(),
                                        batch,
                                        parties,
                                        weights: w.parse::<Weights>()?,
                                        link: link.clone(),
                                        trunc,
                                        protocols,
                                        channels,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
