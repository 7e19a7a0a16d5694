//! Every pipeline scheme gives the serial result on every built-in CNN (tiny sizes): each
//! scheme's decoded output is checked against a plaintext f64 forward pass of the same
//! model with quantized weights and input, within a fixed-point error bound.
//!
//! The bound. With weights and input quantized exactly as the encoder does, a linear layer
//! computes Qx·Qw exactly in the ring; only its truncation errs: |err| < 2 ulp for 2
//! parties (each share rounds toward zero) and < 1 ulp for N > 2 (floor or floor + 1), in
//! both cases with mean ~0, so variance <= 2 ulp². Following probabilistic rounding-error
//! analysis (independent, zero-mean errors), each unit carries a variance σ² and a
//! deterministic error d:
//! - a linear layer maps variances through the squared weights, σ'ᵢ² = Σⱼ wᵢⱼ²σⱼ² + 2 ulp²,
//!   and d through |w|;
//! - a ReLU unit whose plaintext input is below -(7σ + d) outputs 0 in MPC too, so its
//!   error is 0; other units pass their error on (ReLU is 1-Lipschitz);
//! - a max-pool output errs at most by the largest error in its window, an average pool by
//!   the mean of its window's (errors of one window may be correlated: no 1/k² shrink),
//!   plus the encoded 1/k²'s deterministic error |window sum|·|1/k² - enc(1/k²)| (zero for
//!   the power-of-two and 1×1 pools of these models);
//! - a residual adds the σ of its two paths (they share an input: not independent).
//!
//! An element fails its 7σ + d with probability < 3e-12. (Tracking one worst case per
//! layer instead, the largest row norm of every layer multiplied up to a bound of ~5e2
//! for the 50 layers of resnet50-tiny, against errors of ~1e-4.)

mod common;
use common::*;

use mpc_pipe::model::graph::{Graph, Op};
use mpc_pipe::model::{plain, zoo, Weights};
use mpc_pipe::offline::deal;
use mpc_pipe::proto::Ctx;
use mpc_pipe::ring::{FixedPoint, PlainTensor, Protocols, Trunc};
use mpc_pipe::runtime::local::{fresh_session, run_online_as, MaterialMode};
use mpc_pipe::runtime::{record_plan, SessionConfig};
use mpc_pipe::sched::{self, Lanes, Schedule, Scheme};
use mpc_pipe::transport::emulator::LinkProfile;

fn q(t: &PlainTensor) -> PlainTensor {
    quantize(t)
}

/// (activation, per-unit variance σ², per-unit deterministic error d) of a tensor.
type Stats = (PlainTensor, PlainTensor, PlainTensor);

/// Propagate `Stats` through the (quantized) graph, node by node.
fn bound(g: &Graph, x: &PlainTensor) -> Stats {
    let zero = PlainTensor::zeros(x.shape());
    let mut st: Vec<Option<Stats>> = vec![None; g.tensors.len()];
    st[g.input] = Some((x.clone(), zero.clone(), zero));
    let trunc_var = 2.0 * ULP * ULP;
    for n in &g.nodes {
        let inp = |k: usize| st[n.inputs[k]].clone().expect("computed before");
        let cst = |k: usize| {
            n.inputs
                .get(k)
                .and_then(|&t| g.tensors[t].constant())
                .map(|c| c.to_plain())
        };
        let ev = |op: &Op, ins: &[&PlainTensor]| plain::eval(op, ins).unwrap();
        let out: Stats = match &n.op {
            Op::Conv2d { .. } | Op::MatMul => {
                let (x, v, d) = inp(0);
                let w = cst(1).expect("a linear layer's weight");
                let (w2, wa) = (w.map(|w| w * w), w.map(f64::abs));
                let bias = cst(2);
                let mut ins = vec![&x, &w];
                ins.extend(bias.as_ref());
                (
                    ev(&n.op, &ins),
                    ev(&n.op, &[&v, &w2]).map(|v| v + trunc_var),
                    ev(&n.op, &[&d, &wa]),
                )
            }
            Op::Add => match cst(1) {
                // A (quantized, exactly shared) bias adds no error.
                Some(b) => {
                    let (x, v, d) = inp(0);
                    let y = ev(&n.op, &[&x, &b]);
                    let z = PlainTensor::zeros(y.shape());
                    (y, ev(&n.op, &[&v, &z]), ev(&n.op, &[&d, &z]))
                }
                None => {
                    // A residual: the two paths share their input, so add standard
                    // deviations, not variances.
                    let ((xa, va, da), (xb, vb, db)) = (inp(0), inp(1));
                    (
                        xa.add(&xb),
                        va.zip(&vb, |a, b| (a.sqrt() + b.sqrt()).powi(2)),
                        da.add(&db),
                    )
                }
            },
            Op::Relu => {
                // Units surely negative output exactly 0 in MPC as in plaintext.
                let (x, v, d) = inp(0);
                let dead = x.zip(&v, |x, v| x + 7.0 * v.sqrt()).zip(&d, |t, d| {
                    if t + d < 0.0 {
                        0.0
                    } else {
                        1.0
                    }
                });
                (x.relu(), v.mul(&dead), d.mul(&dead))
            }
            Op::MaxPool { .. } | Op::Flatten { .. } | Op::Identity => {
                let (x, v, d) = inp(0);
                (ev(&n.op, &[&x]), ev(&n.op, &[&v]), ev(&n.op, &[&d]))
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let (x, v, d) = inp(0);
                let k2 = (kernel * kernel) as f64;
                let fp = FixedPoint::default();
                let enc_err = (1.0 / k2 - fp.decode(fp.encode(1.0 / k2))).abs();
                // |window sum| <= k² · mean |x| over the window.
                let sums = x.map(f64::abs).avgpool2d(*kernel, *stride, *padding);
                (
                    ev(&n.op, &[&x]),
                    ev(&n.op, &[&v]).map(|v| v + trunc_var),
                    ev(&n.op, &[&d]).zip(&sums, |d, s| d + s * k2 * enc_err),
                )
            }
            other => panic!("the CNN bound does not cover {other:?}"),
        };
        st[n.output] = Some(out);
    }
    st[g.output].take().unwrap()
}

fn check_model(name: &str, parties: usize, weights: Weights, schemes: &[&str]) {
    check_model_as(name, parties, weights, schemes, None, None)
}

/// As `check_model`; with `Some(mode)`, the material is dealt and used in that mode
/// instead of the one `run_online` would pick for the plan's size, and with `Some(trunc)`
/// products are truncated that way instead of by the default for `parties`.
fn check_model_as(
    name: &str,
    parties: usize,
    weights: Weights,
    schemes: &[&str],
    mode: Option<MaterialMode>,
    trunc: Option<Trunc>,
) {
    check_model_with(
        name,
        parties,
        weights,
        schemes,
        mode,
        trunc,
        Protocols::Crypten,
    );
}

/// As `check_model_as`, under the comparison protocols `protocols`. Returns each run's
/// decoded output (schemes in order, micro-batch lanes as threads first) and the
/// per-unit bound.
fn check_model_with(
    name: &str,
    parties: usize,
    weights: Weights,
    schemes: &[&str],
    mode: Option<MaterialMode>,
    trunc: Option<Trunc>,
    protocols: Protocols,
) -> (Vec<PlainTensor>, PlainTensor) {
    let mut cfg = config_with_trunc(parties, trunc);
    cfg.fixed = cfg.fixed.with_protocols(protocols);
    let mut outputs = Vec::new();
    let batch = 2;
    let model = zoo::build(name, 3, batch).unwrap();
    let qmodel = model.map_constants(q);
    let shape = model.input_shape().to_vec();
    let input = Data::new(99).tensor(&shape, 0.0, 1.0);
    let (want, var, d) = bound(&qmodel, &q(&input));
    let per_unit = var.zip(&d, |v, d| 7.0 * v.sqrt() + d);
    let err_bound = per_unit.data().iter().cloned().fold(0.0, f64::max);
    // Micro-batch lanes both as threads and as coroutines: the same protocol calls either way.
    let runs = schemes.iter().flat_map(|s| {
        let both = s.contains("inter-batch") || *s == "all";
        [(*s, Lanes::Threads)]
            .into_iter()
            .chain(both.then_some((*s, Lanes::Coroutines)))
    });
    for (scheme, lanes) in runs {
        let schedule = Schedule {
            scheme: scheme.parse::<Scheme>().unwrap(),
            chunks: 2,
            batches_in_flight: 2,
            lanes,
        };
        let program = |ctx: &Ctx| {
            let x = ctx.share_plain(parties - 1, Some(&input), &shape)?;
            let y = sched::forward(ctx, &model, &x, weights, &schedule)?;
            ctx.reveal_plain(&y)
        };
        let got = match mode {
            None => reveal_all_with(&cfg, program),
            Some(mode) => {
                let plan = record_plan(&cfg, &program).unwrap();
                let material = deal(&plan, parties, fresh_session());
                let link = LinkProfile::unshaped();
                let outs = run_online_as(&cfg, &link, material, mode, &program, None).unwrap();
                assert!(outs.iter().all(|o| o.value == outs[0].value));
                outs.into_iter().next().unwrap().value
            }
        };
        eprintln!(
            "{name} {parties}p {weights:?} {scheme} lanes {lanes} trunc {trunc:?} protocols {protocols}: bound {err_bound:.3e}, max error {:.3e}",
            got.max_abs_diff(&want)
        );
        assert_close(
            &got,
            &want,
            |i| per_unit.data()[i],
            &format!(
                "{name} {parties} parties {weights:?} {scheme} lanes {lanes} trunc {trunc:?} protocols {protocols} (largest bound {err_bound:.2e})"
            ),
        );
        outputs.push(got);
    }
    (outputs, per_unit)
}

#[test]
fn lenet_every_scheme_matches_plaintext_2_and_3_parties() {
    check_model("lenet", 2, Weights::Private, &SCHEMES);
    check_model("lenet", 3, Weights::Private, &SCHEMES);
    check_model("lenet", 2, Weights::Public, &SCHEMES);
}

/// Material drawn from the seeds on demand (what plans too large to expand use), with
/// party 0's corrections moved into the store and freed as taken, decodes within the same
/// bound as expanded material.
#[test]
fn lazy_material_matches_plaintext_2_and_3_parties() {
    for parties in [2, 3] {
        let schemes = ["serial", "all"];
        check_model_as(
            "lenet",
            parties,
            Weights::Private,
            &schemes,
            Some(MaterialMode::Lazy),
            None,
        );
        check_model_as(
            "lenet",
            parties,
            Weights::Private,
            &schemes,
            Some(MaterialMode::Eager),
            None,
        );
    }
}

/// 2 parties with the dealer-assisted truncation (`--trunc dealer`): the plan now holds
/// truncation masks, which every scheme must slice and consume like the 3-party runs do.
/// Its error per truncation is below 1 ulp (floor or floor + 1), so its mean square is
/// below the 2 ulp² the bound allows (the 3-party runs above use the same protocol and the
/// same bound).
#[test]
fn lenet_2_parties_dealer_truncation_matches_plaintext() {
    for weights in [Weights::Private, Weights::Public] {
        check_model_as("lenet", 2, weights, &SCHEMES, None, Some(Trunc::Dealer));
    }
}

/// `--protocols fss` (2 parties) under every scheme decodes within the same bound as the
/// crypten suite: its comparisons are exact too, so the bound's ReLU and max-pool rules
/// hold unchanged. The same model under both suites then agrees within the sum of the two
/// runs' bounds, 2·(7σ + d) per unit.
#[test]
fn fss_suite_every_scheme_matches_plaintext_and_the_crypten_suite() {
    for model in ["lenet", "resnet_cifar-tiny"] {
        let (crypten, bound) = check_model_with(
            model,
            2,
            Weights::Private,
            &["serial"],
            None,
            None,
            Protocols::Crypten,
        );
        let (fss, _) = check_model_with(
            model,
            2,
            Weights::Private,
            &SCHEMES,
            None,
            None,
            Protocols::Fss,
        );
        eprintln!(
            "{model}: crypten and fss serial outputs differ by {:.3e}",
            crypten[0].max_abs_diff(&fss[0])
        );
        assert_close(
            &fss[0],
            &crypten[0],
            |i| 2.0 * bound.data()[i],
            &format!("{model}: fss against crypten"),
        );
    }
}

#[test]
fn resnet_cifar_every_scheme_matches_plaintext() {
    check_model("resnet_cifar-tiny", 2, Weights::Private, &SCHEMES);
    check_model(
        "resnet_cifar-tiny",
        3,
        Weights::Public,
        &["serial", "inner-layer", "inter-batch"],
    );
}

#[test]
fn vgg16_every_scheme_matches_plaintext() {
    check_model("vgg16-tiny", 2, Weights::Private, &SCHEMES);
    check_model("vgg16-tiny", 3, Weights::Private, &["serial", "all"]);
}

#[test]
fn resnet50_every_scheme_matches_plaintext() {
    check_model("resnet50-tiny", 2, Weights::Private, &SCHEMES);
    check_model("resnet50-tiny", 2, Weights::Public, &["serial", "all"]);
}

#[test]
fn scheme_names_parse_and_print_canonically() {
    for s in SCHEMES {
        let parsed: Scheme = s.parse().unwrap();
        let again: Scheme = parsed.to_string().parse().unwrap();
        assert_eq!(parsed, again);
    }
    assert_eq!(
        "inner-layer+inter-linear"
            .parse::<Scheme>()
            .unwrap()
            .to_string(),
        "inter-linear+inner-layer"
    );
    assert!("serial+inner-layer".parse::<Scheme>().is_err());
    assert!("pipelined".parse::<Scheme>().is_err());
    let _ = FixedPoint::default();
}

/// BERT (bert-small, 2 blocks): every scheme against the exact f64 encoder. Here the
/// approximations dominate the fixed-point error, so the bound is built from their
/// documented accuracy (proto::nn, proto::approx): the PUMA GeLU is within 0.02 of the
/// exact GeLU, carried through the FFN down-projection by its largest L2 row norm (errors
/// of independent elements, as above); LayerNorm's inv_sqrt is within 0.5% relative for
/// row variances in [0.1, 150] (these rows have variance ~1), so an output |y| <= 4 errs by
/// 0.02; softmax (exp limit form and Newton reciprocal) contributes below 0.01 on scores of
/// magnitude < 4. A block's input error passes through the residual and is rescaled by
/// LayerNorm (factor 1/std <= 2 here). Per block: e' = 2·(e + ‖W2‖₂·0.02 + 0.01) + 0.02.
/// The bound above for `model` (bert-small's graph), per output element.
fn bert_small_bound(model: &Graph) -> f64 {
    let mut e = 0.0;
    // Each block's FFN down-projection is the MatMul that reads a GeLU's output.
    for n in &model.nodes {
        let Op::MatMul = n.op else { continue };
        let gelu_in = matches!(
            model.tensors[n.inputs[0]].producer,
            mpc_pipe::model::graph::Producer::Node(p) if model.nodes[p].op == Op::Gelu
        );
        let Some(w2) = model.tensors[n.inputs[1]].constant().filter(|_| gelu_in) else {
            continue;
        };
        let norm2 = w2
            .to_plain()
            .transpose2()
            .data()
            .chunks(w2.shape()[0])
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .fold(0.0, f64::max);
        e = 2.0 * (e + norm2 * 0.02 + 0.01) + 0.02;
    }
    e
}

/// bert-small's decoded output under `cfg` and one scheme.
fn bert_small_run(
    cfg: &SessionConfig,
    model: &Graph,
    input: &PlainTensor,
    weights: Weights,
    scheme: &str,
) -> PlainTensor {
    let shape = model.input_shape().to_vec();
    let parties = cfg.parties;
    let schedule = Schedule {
        scheme: scheme.parse::<Scheme>().unwrap(),
        chunks: 2,
        batches_in_flight: 2,
        lanes: Lanes::Coroutines,
    };
    reveal_all_with(cfg, |ctx: &Ctx| {
        let x = ctx.share_plain(parties - 1, Some(input), &shape)?;
        let y = sched::forward(ctx, model, &x, weights, &schedule)?;
        ctx.reveal_plain(&y)
    })
}

#[test]
fn bert_small_every_scheme_matches_plaintext() {
    let batch = 2;
    let model = zoo::build("bert-small", 5, batch).unwrap();
    let input = Data::new(7).tensor(model.input_shape(), -1.0, 1.0);
    let want = plain::forward(&model, &input).unwrap();
    let e = bert_small_bound(&model);
    // 2 parties also with the dealer-assisted truncation: its error (< 1 ulp) is below
    // the local one's, which the bound does not even count beside the approximations.
    for (parties, weights, schemes, trunc) in [
        (2, Weights::Private, &SCHEMES[..], None),
        (3, Weights::Public, &["serial", "all"][..], None),
        (
            2,
            Weights::Private,
            &["serial", "all"][..],
            Some(Trunc::Dealer),
        ),
    ] {
        let cfg = config_with_trunc(parties, trunc);
        for scheme in schemes {
            let got = bert_small_run(&cfg, &model, &input, weights, scheme);
            eprintln!(
                "bert-small {parties}p {weights:?} {scheme} trunc {trunc:?}: bound {e:.3e}, max error {:.3e}",
                got.max_abs_diff(&want)
            );
            assert_close(
                &got,
                &want,
                |_| e,
                &format!("bert-small {parties} parties {weights:?} {scheme} trunc {trunc:?}"),
            );
        }
    }
}

/// bert-small under `--protocols fss` (softmax's reciprocal and layernorm's inv_sqrt
/// from proto::spline, GeLU's and max's comparisons from fss gates), every scheme,
/// against the exact f64 encoder within the same bound as the crypten suite: the spline
/// approximations are tighter than the ones the bound counts (reciprocal within
/// ~2.2·(1/x + 1)u on [1, 128] against Newton's (2x + 2)u; inv_sqrt within ~1e-4 on row
/// variances ~1 against 0.5%), and the comparisons are exact in both suites. The two
/// suites' outputs then agree within twice the bound.
#[test]
fn bert_small_fss_every_scheme_matches_plaintext_and_the_crypten_suite() {
    let batch = 2;
    let model = zoo::build("bert-small", 5, batch).unwrap();
    let input = Data::new(7).tensor(model.input_shape(), -1.0, 1.0);
    let want = plain::forward(&model, &input).unwrap();
    let e = bert_small_bound(&model);
    let fss = SessionConfig {
        fixed: FixedPoint::default().with_protocols(Protocols::Fss),
        ..SessionConfig::new(2)
    };
    let crypten = bert_small_run(
        &config_with_trunc(2, None),
        &model,
        &input,
        Weights::Private,
        "serial",
    );
    for scheme in SCHEMES {
        let got = bert_small_run(&fss, &model, &input, Weights::Private, scheme);
        eprintln!(
            "bert-small fss {scheme}: bound {e:.3e}, max error {:.3e}, against crypten {:.3e} (crypten's own {:.3e})",
            got.max_abs_diff(&want),
            got.max_abs_diff(&crypten),
            crypten.max_abs_diff(&want)
        );
        assert_close(&got, &want, |_| e, &format!("bert-small fss {scheme}"));
        assert_close(
            &got,
            &crypten,
            |_| 2.0 * e,
            &format!("bert-small fss {scheme} against crypten"),
        );
    }
}

/// A lane's failure keeps its kind through the slots and lanes: material made for another
/// program fails inter-linear's weights lane with a material error, and the activations
/// that wait for that layer, and so the run, report the same kind (not a generic one).
#[test]
fn a_weights_lane_failure_keeps_its_kind() {
    use mpc_pipe::error::Error;
    use mpc_pipe::runtime::run_online;
    let cfg = config_with_trunc(2, None);
    let g = |batch: usize| zoo::build("lenet", 3, batch).unwrap();
    let (g2, g4) = (g(2), g(4));
    let input = Data::new(1).tensor(g4.input_shape(), 0.0, 1.0);
    fn program<'a>(
        graph: &'a Graph,
        input: &'a PlainTensor,
        schedule: Schedule,
    ) -> impl Fn(&Ctx) -> mpc_pipe::error::Result<PlainTensor> + Sync + 'a {
        move |ctx: &Ctx| {
            let shape = graph.input_shape().to_vec();
            let x = ctx.share_plain(1, Some(input), &shape)?;
            let y = sched::forward(ctx, graph, &x, Weights::Private, &schedule)?;
            ctx.reveal_plain(&y)
        }
    }
    let schedule = Schedule {
        scheme: "inter-linear".parse::<Scheme>().unwrap(),
        chunks: 2,
        batches_in_flight: 2,
        lanes: Lanes::Threads,
    };
    // The plan of batch 2; the run is of batch 4: the first triple asked for is not there.
    let input2 = Data::new(1).tensor(g2.input_shape(), 0.0, 1.0);
    let plan = record_plan(&cfg, &program(&g2, &input2, schedule)).unwrap();
    let material = deal(&plan, 2, fresh_session());
    let err = run_online(&cfg, material, &program(&g4, &input, schedule)).expect_err("must fail");
    assert!(matches!(err, Error::Material(_)), "got {err:?}");
}
