//! `mpc-pipe costs`: every online protocol's communication rounds and words sent per input
//! element per party, read from the engine's own counters (a real in-process run), and the
//! material it needs per element, from the plan its dry run records, beside what
//! protocols.md §3.1 predicts for CrypTen (or proto::fss for `--protocols fss`). Depends
//! on runtime, proto, ring.

use clap::Args;

use crate::error::{Error, Result};
use crate::proto::{Ctx, LinearOp, Share};
use crate::ring::{ExpApprox, FixedPoint, PlainTensor, Protocols, RingTensor};
use crate::runtime::{record_plan, run_local, SessionConfig};

#[derive(Args, Debug)]
pub struct CostsArgs {
    /// Party counts to measure (default 2,3; 2 with --protocols fss).
    #[arg(long, value_delimiter = ',')]
    pub parties: Option<Vec<usize>>,
    /// Comparison protocols: crypten or fss (2 parties only).
    #[arg(long, default_value = "crypten")]
    pub protocols: String,
    /// softmax's exp: limit or spline (fss only); default limit.
    #[arg(long)]
    pub exp: Option<String>,
    /// Elements per elementwise input.
    #[arg(long, default_value_t = 1024)]
    pub elements: usize,
    /// Instead of the protocol table: the offline material of these built-in models
    /// (comma-separated), 2 parties, from the plan their dry run records: compared
    /// elements, dealt words per party (FSS keys under --protocols fss) and the expanded
    /// material per party.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Batch of --models.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

/// Largest `--elements` (2^24: 128 MiB per tensor of shares).
const MAX_ELEMENTS: usize = 1 << 24;

type Op = Box<dyn Fn(&Ctx, &Share) -> Result<()> + Sync>;

/// (name, input shape for n elements, protocol, protocols.md 2PC prediction).
fn ops(n: usize) -> Vec<(&'static str, Vec<usize>, Op, &'static str)> {
    let w4 = RingTensor::zeros(&[4, 4, 3, 3]);
    vec![
        (
            "mul",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.mul(x, x).map(drop)),
            "1 r, 2 w; N>2: 2 r",
        ),
        (
            "square",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.square(x).map(drop)),
            "1 r, 1 w; N>2: 2 r",
        ),
        (
            "matmul [n/32×32]·[32×32] (private W)",
            vec![n / 32, 32],
            Box::new(|c: &Ctx, x: &Share| {
                let w = c.share_input(0, Some(&RingTensor::zeros(&[32, 32])), &[32, 32])?;
                c.matmul(x, &w).map(drop)
            }),
            "1 r, (#X+#W)/#X w; N>2: 2 r",
        ),
        (
            "matmul public W",
            vec![n / 32, 32],
            Box::new(|c: &Ctx, x: &Share| {
                c.matmul_public(x, &RingTensor::zeros(&[32, 32])).map(drop)
            }),
            "0 r, 0 w; N>2: 1 r (trunc)",
        ),
        (
            "conv2d 3×3 4→4 ch (private W)",
            vec![n / 64, 4, 4, 4],
            Box::new(move |c: &Ctx, x: &Share| {
                let w = c.share_input(0, Some(&w4), w4.shape())?;
                c.linear(
                    LinearOp::Conv2d {
                        stride: 1,
                        padding: 1,
                    },
                    x,
                    &w,
                )
                .map(drop)
            }),
            "1 r, (#X+#K)/#X w; N>2: 2 r",
        ),
        (
            "trunc",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.trunc(x).map(drop)),
            "0 r, 0 w; N>2: 1 r",
        ),
        (
            "and (binary)",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| {
                c.and(
                    &crate::proto::BinShare(x.0.clone()),
                    &crate::proto::BinShare(x.0.clone()),
                )
                .map(drop)
            }),
            "1 r, 2 w; N>2: 1 r",
        ),
        (
            "a2b",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.a2b(x).map(drop)),
            "7 r, 20 w; N>2: 7L = 14 r",
        ),
        (
            "b2a (1 bit)",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| {
                c.b2a_bit(&crate::proto::BinShare(x.0.map(|v| v & 1)))
                    .map(drop)
            }),
            "1 r, 1 w; N>2: 2 r",
        ),
        (
            "ltz",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.ltz(x).map(drop)),
            "8 r, 21 w; N>2: 7L+1 = 15 r",
        ),
        (
            "relu",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.relu(x).map(drop)),
            "9 r, 23 w; N>2: 7L+2 = 16 r",
        ),
        (
            "max over k=4 (dim 1)",
            vec![n / 4, 4],
            Box::new(|c: &Ctx, x: &Share| c.max_dim(x, 1).map(drop)),
            "CrypTen log-reduction+argmax ≈ 46 r (ours: tournament)",
        ),
        (
            "argmax over k=4",
            vec![n / 4, 4],
            Box::new(|c: &Ctx, x: &Share| c.argmax_dim(x, 1).map(drop)),
            "(with max)",
        ),
        (
            "maxpool2d 2×2",
            vec![1, n / 64, 8, 8],
            Box::new(|c: &Ctx, x: &Share| c.maxpool2d(x, 2, 2, 0).map(drop)),
            "≈ 46 r (ours: tournament)",
        ),
        (
            "avgpool2d 2×2",
            vec![1, n / 64, 8, 8],
            Box::new(|c: &Ctx, x: &Share| c.avgpool2d(x, 2, 2, 0).map(drop)),
            "0 r, 0 w; N>2: 1 r",
        ),
        (
            "exp",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.exp(x).map(drop)),
            "8 r, 8 w; N>2: 17 r",
        ),
        (
            "exp on x ≤ 0 (softmax's)",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.exp_nonpos(&x.neg()).map(drop)),
            "as exp (the limit form)",
        ),
        (
            "reciprocal",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.reciprocal(x).map(drop)),
            "≈ 38 r, ≈ 63 w; N>2: ≈ 74 r",
        ),
        (
            "inv_sqrt",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.inv_sqrt(x).map(drop)),
            "≈ 17 r",
        ),
        (
            "sqrt",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.sqrt(x).map(drop)),
            "≈ 18 r",
        ),
        (
            "softmax (rows of 16)",
            vec![n / 16, 16],
            Box::new(|c: &Ctx, x: &Share| c.softmax(x, 1).map(drop)),
            "max + 8 + 28 + 1 r",
        ),
        (
            "gelu (default)",
            vec![n],
            Box::new(|c: &Ctx, x: &Share| c.gelu(x).map(drop)),
            "PUMA: 1 LTZ + powers + select",
        ),
        (
            "layernorm (rows of 64)",
            vec![n / 64, 64],
            Box::new(|c: &Ctx, x: &Share| {
                let g = c
                    .fixed()
                    .encode_tensor(&PlainTensor::from_vec(&[64], vec![1.0; 64]));
                let b = RingTensor::zeros(&[64]);
                c.layernorm(x, &g, &b, 1e-5).map(drop)
            }),
            "1 square + inv_sqrt + 1 mul ≈ 19-20 r",
        ),
    ]
}

/// Per model: what its plan asks of the dealer, per party (2 parties).
fn model_material(
    models: &[String],
    batch: usize,
    protocols: Protocols,
    exp: Option<ExpApprox>,
) -> Result<()> {
    let cfg = SessionConfig {
        fixed: FixedPoint::default()
            .with_protocols(protocols)
            .with_exp(exp),
        ..SessionConfig::new(2)
    };
    let gib = |w: usize| 8.0 * w as f64 / (1u64 << 30) as f64;
    println!("protocols {protocols}, 2 parties, batch {batch}");
    println!("| model | compared elements | dealt to party 0 GiB | dealt to party 1 GiB | expanded material per party GiB |");
    println!("|---|---|---|---|---|");
    for model in models {
        let spec = crate::runtime::job::JobSpec::new(model, 2, batch);
        crate::runtime::process::check_sizes(&spec)?;
        let job = crate::runtime::job::build(&spec)?;
        let plan = record_plan(&cfg, &*job.plan_program)?;
        let compared: usize = plan
            .entries
            .iter()
            .map(|(_, r)| match r {
                crate::offline::Request::FssLtz { len, .. }
                | crate::offline::Request::FssMic { len } => *len,
                _ => 0,
            })
            .sum();
        let dealt = |p: usize| -> usize {
            plan.entries
                .iter()
                .map(|(_, r)| r.dealt_lens(p).iter().sum::<usize>())
                .sum()
        };
        println!(
            "| {model} | {compared} | {:.3} | {:.3} | {:.3} |",
            gib(dealt(0)),
            gib(dealt(1)),
            gib(plan.total_words())
        );
    }
    Ok(())
}

/// What proto::fss predicts for the protocols built on `ltz`, 2PC (`None`: as crypten).
fn fss_prediction(name: &str) -> Option<&'static str> {
    Some(match name {
        "ltz" => "fss: 1 r, 1 w; key 1536 B",
        "relu" => "fss: 1 r, 1 w; key 2048 B",
        "max over k=4 (dim 1)" => "fss: 2 levels × 1 ReLU gate = 2 r, 0.75 w",
        "argmax over k=4" => "fss: 2 ReLU gates + 1 one-hot product = 3 r",
        "maxpool2d 2×2" => "fss: 2 levels × 1 ReLU gate = 2 r, 0.75 w",
        // proto::spline: the gate (1 r, 1 w), then one product group (proto::products,
        // each value opened once): x·y0 (x, y0: 2 w), {e², y0·e} (e: 1 w; inv_sqrt also
        // y0), {y0e·e, y0e·e²} (2 w); key 1560 B (64-bit DCF), m + 1 DCF evaluations per
        // element.
        "reciprocal" => "fss spline: 4 r, 6 w; key 1560 B, 356 DCF evals",
        "inv_sqrt" => "fss spline: 4 r, 7 w; key 1560 B, 227 DCF evals",
        "sqrt" => "fss: inv_sqrt + 1 mul = 5 r, 9 w",
        "softmax (rows of 16)" => {
            "fss: max 4 + exp 8 + reciprocal_pos 4 + 1 = 17 r (--exp spline: exp 3, 12 r)"
        }
        // proto::spline's exp_fss: the gate (1 r, 1 w), f, G1, G3, G2 opened (4 w) for
        // {f², G1·f, G3·f}, then f², G3f (2 w) for {G2·f², G3f·f²}; 2L + 1 = 25 DCF
        // evaluations at f = 16.
        "exp on x ≤ 0 (softmax's)" => "as exp (--exp spline: 3 r, 7 w; key 1560 B, 25 DCF evals)",
        "layernorm (rows of 64)" => "fss: 1 square + inv_sqrt 4 + 1 mul = 6 r",
        // proto::spline's gelu_puma_fss: the gate with x's product-group opening (1 r,
        // 2 w), then x², z1, z2, z3 (4 w) for {x³, x⁴, z2·x², z3·x} and P3, Q, z2x², x⁴
        // (4 w) for {z1·P3, z2·Q, z2x²·x⁴}, then the sum's exact truncation (1 r, 1 w).
        "gelu (default)" => "fss spline: 4 r, 11 w (values opened once, the sum truncated exactly); key 1560 B, 4 DCF evals",
        _ => return None,
    })
}

pub fn run(a: &CostsArgs) -> Result<()> {
    // Shapes split the elements into rows of up to 64; a protocol's working set is a few
    // dozen tensors of this size per party.
    if a.elements == 0 || !a.elements.is_multiple_of(64) || a.elements > MAX_ELEMENTS {
        return Err(crate::error::Error::Config(format!(
            "--elements must be a positive multiple of 64, at most {MAX_ELEMENTS}, got {}",
            a.elements
        )));
    }
    let n = a.elements;
    let protocols: Protocols = a.protocols.parse().map_err(|_| {
        Error::Config(format!(
            "--protocols must be crypten or fss, got '{}'",
            a.protocols
        ))
    })?;
    let parties = a.parties.clone().unwrap_or(match protocols {
        Protocols::Crypten => vec![2, 3],
        Protocols::Fss => vec![2],
    });
    for &p in &parties {
        if !(2..=crate::runtime::local::MAX_PARTIES).contains(&p) {
            return Err(Error::Config(format!(
                "--parties must be between 2 and {}, got {p}",
                crate::runtime::local::MAX_PARTIES
            )));
        }
        if protocols == Protocols::Fss && p != 2 {
            return Err(Error::Config(format!(
                "--protocols fss needs exactly 2 parties, got {p} in --parties: its comparison keys (a distributed comparison function) split a function between two parties"
            )));
        }
    }
    let exp = match &a.exp {
        None => None,
        Some(s) => {
            let e = s
                .parse::<ExpApprox>()
                .map_err(|_| Error::Config(format!("--exp must be limit or spline, got '{s}'")))?;
            if e == ExpApprox::Spline && protocols != Protocols::Fss {
                return Err(Error::Config("--exp spline needs --protocols fss".into()));
            }
            Some(e)
        }
    };
    if !a.models.is_empty() {
        return model_material(&a.models, a.batch, protocols, exp);
    }
    match exp {
        Some(e) => println!("protocols {protocols}, exp {}", e.as_str()),
        None => println!("protocols {protocols}"),
    }
    println!("| protocol | parties | rounds | words sent / element / party | dealt key bytes / element (party 1) | material bytes / element / party | predicted: 2PC rounds, words per party; N > 2 rounds (L = 2 for N = 3) |");
    println!("|---|---|---|---|---|---|---|");
    for (name, shape, op, predicted) in ops(n) {
        let predicted = match protocols {
            Protocols::Crypten => predicted,
            Protocols::Fss => fss_prediction(name).unwrap_or(predicted),
        };
        for &p in &parties {
            let cfg = SessionConfig {
                fixed: FixedPoint::default()
                    .with_protocols(protocols)
                    .with_exp(exp),
                ..SessionConfig::new(p)
            };
            let elems: usize = shape.iter().product();
            let input = PlainTensor::from_vec(
                &shape,
                (0..elems)
                    .map(|i| (i % 17) as f64 * 0.25 - 2.0 + 0.01)
                    .collect(),
            );
            let program = |ctx: &Ctx| -> Result<(u64, u64)> {
                let x = ctx.share_plain(0, Some(&input), &shape)?;
                let before = ctx.counters().snapshot();
                op(ctx, &x)?;
                let d = ctx.counters().snapshot().since(&before);
                Ok((d.rounds, d.bytes_sent()))
            };
            let outs = run_local(&cfg, &program)?;
            let (rounds, bytes) = outs.iter().map(|o| o.value).max_by_key(|v| v.1).unwrap();
            // Material of the operation alone: the plan of the whole program less that of
            // sharing the input.
            let plan = record_plan(&cfg, &program)?;
            let share_only = |ctx: &Ctx| ctx.share_plain(0, Some(&input), &shape).map(drop);
            let base = record_plan(&cfg, &share_only)?;
            let dealt = |pl: &crate::offline::Plan| -> usize {
                pl.entries
                    .iter()
                    .map(|(_, r)| r.dealt_lens(1).iter().sum::<usize>())
                    .sum()
            };
            let per = |w: usize| 8.0 * w as f64 / elems as f64;
            println!(
                "| {name} | {p} | {rounds} | {:.2} | {:.1} | {:.1} | {predicted} |",
                bytes as f64 / 8.0 / elems as f64,
                per(dealt(&plan) - dealt(&base)),
                per(plan.total_words() - base.total_words()),
            );
        }
    }
    Ok(())
}
