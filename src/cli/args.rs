//! Options shared by several subcommands: what job to run (`JobArgs`) and how to shape the
//! links (`LinkArgs`). Depends on runtime::job, sched, model, link.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::link::LinkProfile;
use crate::model::Weights;
use crate::ring::{ExpApprox, FixedPoint, Protocols, Trunc};
use crate::runtime::job::JobSpec;
use crate::runtime::process::check_sizes;
use crate::sched::{Schedule, Scheme};

/// What every party must agree on to run the same job.
#[derive(Args, Debug, Clone)]
pub struct JobArgs {
    /// Built-in model to run (see README for the list).
    #[arg(long, default_value = "lenet")]
    pub model: String,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Who knows the weights: private (secret-shared by party 0) or public.
    #[arg(long, default_value = "private")]
    pub weights: String,
    /// Seed of the synthetic weights and input (the same at every party).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = 16)]
    pub frac_bits: u32,
    /// Truncation after products: local (each party divides its share, CrypTen's 2-party
    /// protocol; wrong with probability ~|x|/2^64 per element) or dealer (one round with a
    /// dealer's mask, exact to one ulp). Default: local for 2 parties, dealer for more
    /// (local is refused for more than 2).
    #[arg(long)]
    pub trunc: Option<String>,
    /// Protocols of comparisons and what is built on them (ReLU, max, argmax, pooling):
    /// crypten (A2B and B2A, any number of parties) or fss (function secret sharing: the
    /// dealer's DCF keys, one opening per comparison; exactly 2 parties).
    #[arg(long, default_value = "crypten")]
    pub protocols: String,
    /// softmax's exp: limit (CrypTen's (1 + x/256)^256, 8 rounds) or spline (fss only: a
    /// half-unit piecewise cubic on one interval-containment key, 3 rounds, within a few
    /// ulp, but 25 DCF evaluations and a key per element: slower end to end on BERT-base
    /// here, see README). Default: limit.
    #[arg(long)]
    pub exp: Option<String>,
    /// Sequence length of a BERT model (default: 128 for bert-base, 16 for bert-small).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Pipeline scheme: serial, or inter-linear, inner-layer, inter-batch joined by '+'
    /// (e.g. inter-linear+inner-layer), or all.
    #[arg(long, default_value = "serial")]
    pub scheme: String,
    /// Chunks per layer for inner-layer (k).
    #[arg(long, default_value_t = 2)]
    pub chunks: usize,
    /// Micro-batches in flight for inter-batch (m).
    #[arg(long, default_value_t = 2)]
    pub batches_in_flight: usize,
    /// Where pipeline lanes (micro-batches, chunks, weights) run: threads (an OS thread
    /// each) or coroutines (taking turns on the party's thread; cheaper when rounds compute
    /// little)
    #[arg(long, default_value = "threads")]
    pub lanes: String,
    /// Derive the dealer's and the pairwise seeds from this value, so that the same job
    /// gives bit-identical output shares under every scheme. For reproducible experiments
    /// only: it makes every mask predictable to anyone who knows it.
    #[arg(long)]
    pub dealer_seed: Option<u64>,
}

impl Default for JobArgs {
    fn default() -> Self {
        JobArgs {
            model: "lenet".into(),
            batch: 1,
            weights: "private".into(),
            seed: 1,
            frac_bits: 16,
            trunc: None,
            protocols: "crypten".into(),
            exp: None,
            seq_len: None,
            scheme: "serial".into(),
            chunks: 2,
            batches_in_flight: 2,
            lanes: "threads".into(),
            dealer_seed: None,
        }
    }
}

/// `--scheme`, `--chunks`, `--batches-in-flight` and `--lanes` as a schedule, checked
/// (`run`, `offline`, `party` and `infer` share them).
pub fn schedule_of(
    scheme: &str,
    chunks: usize,
    batches_in_flight: usize,
    lanes: &str,
) -> Result<Schedule> {
    if chunks == 0 || batches_in_flight == 0 {
        return Err(Error::Config(
            "--chunks and --batches-in-flight must be at least 1".into(),
        ));
    }
    Ok(Schedule {
        scheme: scheme.parse::<Scheme>()?,
        chunks,
        batches_in_flight,
        lanes: lanes.parse()?,
    })
}

impl JobArgs {
    /// The job for `parties` parties, with every option checked.
    pub fn spec(&self, parties: usize) -> Result<JobSpec> {
        let schedule = schedule_of(
            &self.scheme,
            self.chunks,
            self.batches_in_flight,
            &self.lanes,
        )?;
        let spec = JobSpec {
            model: self.model.clone(),
            parties,
            batch: self.batch,
            weights: self.weights.parse::<Weights>()?,
            seed: self.seed,
            schedule,
            seq_len: self.seq_len,
            dealer_seed: self.dealer_seed,
            infer: None,
            train: None,
        };
        check_sizes(&spec)?;
        Ok(spec)
    }

    /// The fixed-point settings for `parties` parties: --frac-bits, --trunc and
    /// --protocols, checked.
    pub fn fixed(&self, parties: usize) -> Result<FixedPoint> {
        if !(1..=40).contains(&self.frac_bits) {
            return Err(Error::Config(format!(
                "--frac-bits must be in 1..=40, got {}",
                self.frac_bits
            )));
        }
        let trunc = match &self.trunc {
            None => None,
            Some(s) => {
                let t = s.parse::<Trunc>().map_err(|_| {
                    Error::Config(format!("--trunc must be local or dealer, got '{s}'"))
                })?;
                if t == Trunc::Local && parties != 2 {
                    return Err(Error::Config(format!(
                        "--trunc local needs exactly 2 parties, got {parties}: with more, the sum of the shares wraps around the ring and dividing each share is almost always wrong; use --trunc dealer"
                    )));
                }
                Some(t)
            }
        };
        let protocols = self.protocols.parse::<Protocols>().map_err(|_| {
            Error::Config(format!(
                "--protocols must be crypten or fss, got '{}'",
                self.protocols
            ))
        })?;
        if protocols == Protocols::Fss && parties != 2 {
            return Err(Error::Config(format!(
                "--protocols fss needs exactly 2 parties, got {parties}: its comparison keys (a distributed comparison function) split a function between two parties; use --protocols crypten"
            )));
        }
        let exp = match &self.exp {
            None => None,
            Some(s) => {
                let e = s.parse::<ExpApprox>().map_err(|_| {
                    Error::Config(format!("--exp must be limit or spline, got '{s}'"))
                })?;
                if e == ExpApprox::Spline && protocols != Protocols::Fss {
                    return Err(Error::Config(
                        "--exp spline needs --protocols fss: its pieces come from an \
                         interval-containment key (a DCF between two parties)"
                            .into(),
                    ));
                }
                Some(e)
            }
        };
        Ok(FixedPoint::new(self.frac_bits)
            .with_trunc(trunc)
            .with_protocols(protocols)
            .with_exp(exp))
    }
}

/// Link emulation options.
#[derive(Args, Debug, Clone, Default)]
pub struct LinkArgs {
    /// Emulated link profile: local (unshaped), lan, wan, or a name from --links-file.
    #[arg(long, visible_alias = "link")]
    pub network: Option<String>,
    /// TOML file of link profiles (e.g. bench-configs/links.toml).
    #[arg(long)]
    pub links_file: Option<PathBuf>,
    /// Emulated bandwidth per directed link in Mbit/s (overrides the profile).
    #[arg(long, allow_negative_numbers = true)]
    pub bandwidth_mbps: Option<f64>,
    /// Emulated one-way latency in ms (overrides the profile).
    #[arg(long, allow_negative_numbers = true)]
    pub latency_ms: Option<f64>,
}

impl LinkArgs {
    pub fn profile(&self) -> Result<LinkProfile> {
        LinkProfile::from_options(
            self.network.as_deref(),
            self.links_file.as_deref(),
            self.bandwidth_mbps,
            self.latency_ms,
        )
    }
}

/// How `run`, `infer` and `train` place their parties: threads of this process, or child
/// processes over loopback TCP (`--processes`) with the transport's options.
#[derive(Args, Debug, Clone)]
pub struct ProcessArgs {
    /// Run every party as a child process (`mpc-pipe party`) over loopback TCP.
    #[arg(long)]
    pub processes: bool,
    /// With --processes: most MiB a peer may have sent that no one has asked for yet
    /// (messages it posts ahead); past it the peer is dropped with an error naming it.
    #[arg(long, default_value_t = crate::transport::tcp::DEFAULT_INBOX_CAP_MIB)]
    pub inbox_cap_mib: u64,
    /// With --processes: frames in clear instead of sealed (AEGIS-256X4), for measuring
    /// what the secure channels cost only.
    #[arg(long)]
    pub insecure_plaintext_channels: bool,
}

impl Default for ProcessArgs {
    fn default() -> Self {
        ProcessArgs {
            processes: false,
            inbox_cap_mib: crate::transport::tcp::DEFAULT_INBOX_CAP_MIB,
            insecure_plaintext_channels: false,
        }
    }
}

impl ProcessArgs {
    /// Every option checked before anything runs: the inbox cap's range, and `--trace`
    /// (`trace`), which records parties run as threads only.
    pub fn check(&self, trace: Option<&std::path::Path>) -> Result<()> {
        crate::runtime::process::inbox_cap_bytes(self.inbox_cap_mib)?;
        if self.processes && trace.is_some() {
            // The recorder lives in this process; the parties' spans are in theirs.
            return Err(Error::Config(
                "--trace records parties run as threads of this process; it cannot be combined with --processes".into(),
            ));
        }
        Ok(())
    }

    /// The transport options of the child processes.
    pub fn apply(&self, pr: &mut crate::runtime::process::ProcessRun) {
        pr.inbox_cap_mib = self.inbox_cap_mib;
        pr.plaintext_channels = self.insecure_plaintext_channels;
    }
}
