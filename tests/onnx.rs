//! ONNX import against independent references made at fixture time
//! (scripts/make-onnx-fixtures.sh): onnxruntime's float32 outputs (NAME.ort.npy) and the
//! same torch module run in float64 (NAME.f64.npy; numpy for the hand-made graph).
//!
//! Bounds, and where they come from:
//! - f64 interpreter vs the float64 reference: 1e-6 times the output's largest magnitude
//!   (at least 1). Both evaluate the same float32 weights in f64, except that the exporter
//!   folds BatchNorm into the preceding conv in float32, so the file's folded weights carry
//!   float32 rounding (6e-8 relative) the float64 module does not. The tanh-GELU export is
//!   imported as the erf GELU, which differs from it by at most 4.74e-4 (at |x| = 2.70),
//!   so that fixture's bound is 4.8e-4.
//! - f64 interpreter vs onnxruntime: 1e-5 times the output's largest magnitude (at least
//!   1), onnxruntime's float32 rounding (unit roundoff 6e-8, accumulated over dot products
//!   of at most 400 terms: ~1e-7 relative typical, 2.4e-5 worst case).
//! - MPC vs onnxruntime: 1e-2 (issue 18's target) at 16 fractional bits: inputs and
//!   constants are encoded to the nearest grid point (≤ half an ulp, unbiased); each truncation
//!   errs by < 2 ulp (3e-5) per layer; the approximations dominate: PUMA GELU (≤ 8.6e-3 on
//!   [-1.95, 2.5], proto::nn), softmax's exp and reciprocal, layer norm's inv_sqrt (0.5%
//!   relative for variances in [0.1, 150]), sigmoid (≤ 1.1e-3, model::mpc).

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::PathBuf;

use mpc_pipe::error::Error;
use mpc_pipe::model::graph::{Graph, Op};
use mpc_pipe::model::{plain, Weights};
use mpc_pipe::onnx::{self, npy};
use mpc_pipe::proto::Ctx;
use mpc_pipe::ring::PlainTensor;
use mpc_pipe::sched::{self, Lanes, Schedule, Scheme};

/// Every fixture with a reference output.
const FIXTURES: [&str; 13] = [
    "conv_relu",
    "bn_cnn",
    "resnet_block",
    "mlp_ln_gelu_softmax",
    "gelu_tanh",
    "attention",
    "lenet_avg",
    "elementwise",
    "pools",
    "handmade",
    "digits_cnn",
    "mlp_opset13",
    "concat_const",
];

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(file)
}

fn npy_of(file: &str) -> PlainTensor {
    npy::read(&path(file), "fixture").unwrap().0
}

struct Fixture {
    graph: Graph,
    x: PlainTensor,
    ort: PlainTensor,
    f64_ref: PlainTensor,
}

fn fixture(name: &str) -> Fixture {
    Fixture {
        graph: onnx::load(&path(&format!("{name}.onnx")), None)
            .unwrap_or_else(|e| panic!("{name}: {e}")),
        x: npy_of(&format!("{name}.input.npy")),
        ort: npy_of(&format!("{name}.ort.npy")),
        f64_ref: npy_of(&format!("{name}.f64.npy")),
    }
}

fn max_diff(a: &PlainTensor, b: &PlainTensor, what: &str) -> f64 {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    a.max_abs_diff(b)
}

#[test]
fn f64_interpreter_matches_float64_torch_and_onnxruntime() {
    for name in FIXTURES {
        let f = fixture(name);
        let y = plain::forward(&f.graph, &f.x).unwrap();
        let scale = f.ort.data().iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let exact_bound = if name == "gelu_tanh" {
            4.8e-4
        } else {
            1e-6 * scale
        };
        let d64 = max_diff(&y, &f.f64_ref, name);
        assert!(d64 <= exact_bound, "{name}: {d64:e} from float64 torch");
        let dort = max_diff(&y, &f.ort, name);
        assert!(
            dort <= 1e-5 * scale + if name == "gelu_tanh" { 4.8e-4 } else { 0.0 },
            "{name}: {dort:e} from onnxruntime"
        );
    }
}

/// The fixture's graph on its input in MPC (input from the last party), revealed.
fn mpc(f: &Fixture, parties: usize, schedule: &Schedule, weights: Weights) -> PlainTensor {
    let shape = f.graph.input_shape().to_vec();
    reveal_all(parties, |ctx: &Ctx| {
        let x = ctx.share_plain(parties - 1, Some(&f.x), &shape)?;
        let y = sched::forward(ctx, &f.graph, &x, weights, schedule)?;
        ctx.reveal_plain(&y)
    })
}

fn schedule(scheme: &str, lanes: Lanes) -> Schedule {
    Schedule {
        scheme: scheme.parse::<Scheme>().unwrap(),
        chunks: 2,
        batches_in_flight: 2,
        lanes,
    }
}

/// Every scheme alone, two combinations and all of them, both lane modes, 2 and 3
/// parties (dealer truncation at 3, local at 2).
const SCHEMES: [(&str, Lanes); 6] = [
    ("serial", Lanes::Threads),
    ("inter-linear", Lanes::Threads),
    ("inner-layer", Lanes::Coroutines),
    ("inter-batch", Lanes::Threads),
    ("inter-linear+inner-layer", Lanes::Coroutines),
    ("all", Lanes::Coroutines),
];

#[test]
fn mpc_matches_onnxruntime_under_every_scheme_for_2_and_3_parties() {
    for name in FIXTURES {
        let f = fixture(name);
        let mut worst = Vec::new();
        for parties in [2, 3] {
            for (scheme, lanes) in SCHEMES {
                let got = mpc(&f, parties, &schedule(scheme, lanes), Weights::Private);
                let d = max_diff(&got, &f.ort, name);
                worst.push(format!("{parties}p {scheme} {d:.2e}"));
                assert!(d <= 1e-2, "{name} {parties}p {scheme}: {d:e}");
            }
        }
        eprintln!("{name}: {}", worst.join(", "));
    }
}

/// Material and masks are addressed by (node, part of the tensor), so with one dealer seed
/// every schedule draws the same randomness and each party ends with the output share it
/// has under serial, bit for bit (so the revealed outputs are identical too), on the fixtures with the most kinds
/// of node (attention, elementwise, pools, and concat_const, whose constants a micro-batch
/// takes its rows of).
#[test]
fn every_schedule_reveals_serials_bits_on_imported_graphs() {
    for name in ["attention", "elementwise", "pools", "concat_const"] {
        let f = fixture(name);
        let shape = f.graph.input_shape().to_vec();
        for parties in [2, 3] {
            let mut cfg = mpc_pipe::runtime::SessionConfig::new(parties);
            cfg.dealer_seed = Some(18);
            // Every party's output share.
            let run = |schedule: &Schedule| -> Vec<Vec<u64>> {
                let outs = run_with(&cfg, |ctx: &Ctx| {
                    let x = ctx.share_plain(parties - 1, Some(&f.x), &shape)?;
                    let y = sched::forward(ctx, &f.graph, &x, Weights::Private, schedule)?;
                    Ok(y.0.data().to_vec())
                });
                outs.into_iter().map(|o| o.value).collect()
            };
            let serial = run(&Schedule::serial());
            for (scheme, lanes) in &SCHEMES[1..] {
                assert_eq!(
                    run(&schedule(scheme, *lanes)),
                    serial,
                    "{name} {parties}p {scheme}"
                );
            }
        }
    }
}

/// Issue 18's real-data target: a small CNN trained on scikit-learn's 8x8 digits (98.3%
/// held-out accuracy in torch); on its 360 held-out images the MPC argmax agrees with
/// onnxruntime's on at least 99.5% (at most one image of 360), 2 parties serial and 3
/// parties under all schemes.
#[test]
fn mpc_argmax_agrees_with_onnxruntime_on_held_out_digits() {
    let f = fixture("digits_cnn");
    let argmax = |t: &PlainTensor| -> Vec<usize> {
        t.data()
            .chunks(10)
            .map(|r| (0..10).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
            .collect()
    };
    let want = argmax(&f.ort);
    for (parties, scheme) in [(2, "serial"), (3, "all")] {
        let got = mpc(
            &f,
            parties,
            &schedule(scheme, Lanes::Coroutines),
            Weights::Private,
        );
        let agree = argmax(&got)
            .iter()
            .zip(&want)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!("digits {parties}p {scheme}: {agree}/360 argmax agree");
        assert!(
            agree as f64 >= 0.995 * 360.0,
            "{parties}p {scheme}: {agree}/360"
        );
    }
}

#[test]
fn public_weights_give_the_same_answers() {
    for name in ["bn_cnn", "elementwise", "handmade", "concat_const"] {
        let f = fixture(name);
        for parties in [2, 3] {
            let got = mpc(&f, parties, &Schedule::serial(), Weights::Public);
            let d = max_diff(&got, &f.ort, name);
            assert!(d <= 1e-2, "{name} public {parties}p: {d:e}");
        }
    }
}

/// The fixtures exercise every graph op the importer produces (so a test above covers
/// each; ONNX Identity and Dropout become no node at all, and the hand-made fixture runs
/// them), and GELU and spelled-out layer-norm subgraphs are fused into one node each.
#[test]
fn fixtures_cover_every_imported_op() {
    let mut kinds = BTreeSet::new();
    for name in FIXTURES {
        let g = fixture(name).graph;
        kinds.extend(g.nodes.iter().map(|n| n.op.kind()));
        if name.contains("gelu") || name == "mlp_opset13" {
            assert!(g.nodes.iter().any(|n| n.op == Op::GeluErf), "{name}");
        }
        // torch's expand of a learned token (Expand of Where of Equal on constants) is
        // folded, and the token joins the activations as a constant input of Concat.
        if name == "concat_const" {
            let with_const = g.nodes.iter().filter(|n| {
                matches!(n.op, Op::Concat { .. })
                    && n.inputs.iter().any(|&t| g.tensors[t].constant().is_some())
            });
            assert_eq!(with_const.count(), 2, "{name}");
        }
        // Opset 13 spells layer normalisation out; it is fused back into one node.
        if name.starts_with("mlp") {
            assert!(
                g.nodes.iter().any(|n| matches!(n.op, Op::LayerNorm { .. })),
                "{name}"
            );
        }
    }
    for k in [
        "conv2d",
        "gemm",
        "matmul",
        "add",
        "sub",
        "mul_tensor",
        "mul",
        "div",
        "relu",
        "sigmoid",
        "maxpool",
        "avgpool",
        "avgpool_valid",
        "global_avgpool",
        "flatten",
        "reshape",
        "transpose",
        "concat",
        "slice",
        "softmax",
        "layernorm",
        "gelu_erf",
        "batchnorm",
    ] {
        assert!(
            kinds.contains(k),
            "no fixture imports to a '{k}' node: {kinds:?}"
        );
    }
}

fn config_error(r: mpc_pipe::error::Result<Graph>) -> String {
    match r {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("expected a configuration error, got {e}"),
        Ok(_) => panic!("expected a configuration error, got a graph"),
    }
}

#[test]
fn every_prefix_of_a_model_file_is_refused_without_panicking() {
    let bytes = std::fs::read(path("bn_cnn.onnx")).unwrap();
    let n = bytes.len();
    let mut cuts: Vec<usize> = (0..40).map(|i| i * n / 40).collect();
    cuts.extend([n - 1, n - 2, n - 10, 1, 2, 3]);
    for cut in cuts {
        config_error(onnx::import(&bytes[..cut], None, "cut.onnx"));
    }
    let m = config_error(onnx::import(&bytes[..n / 2], None, "cut.onnx"));
    assert!(m.contains("cut.onnx") && m.contains("truncated"), "{m}");
    // Garbage is refused too.
    config_error(onnx::import(&[0xff; 64], None, "junk.onnx"));
}

#[test]
fn an_unsupported_op_is_refused_naming_node_and_op() {
    let m = config_error(onnx::load(&path("unsupported_cos.onnx"), None));
    assert!(
        m.contains("node 'the_cosine'") && m.contains("(Cos)") && m.contains("not supported"),
        "{m}"
    );
}

#[test]
fn a_dynamic_input_asks_for_input_shape_and_takes_it() {
    let p = path("dynamic_relu.onnx");
    let m = config_error(onnx::load(&p, None));
    assert!(m.contains("--input-shape") && m.contains("[?, 4]"), "{m}");
    let m = config_error(onnx::load(&p, Some(&[3, 5])));
    assert!(m.contains("--input-shape [3, 5] does not fit"), "{m}");
    let g = onnx::load(&p, Some(&[3, 4])).unwrap();
    assert_eq!(g.input_shape(), [3, 4]);
    let x = PlainTensor::from_vec(&[3, 4], (0..12).map(|i| i as f64 - 6.0).collect());
    assert_eq!(plain::forward(&g, &x).unwrap(), x.relu());
}

#[test]
fn a_truncated_npy_is_refused() {
    let bytes = std::fs::read(path("conv_relu.input.npy")).unwrap();
    let dir = std::env::temp_dir().join(format!("mpc-pipe-onnx-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for cut in [bytes.len() - 3, bytes.len() / 2, 60, 5] {
        let p = dir.join("cut.npy");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        match npy::read(&p, "--input") {
            Err(Error::Config(m)) => assert!(m.contains("--input") && m.contains("cut.npy"), "{m}"),
            other => panic!("cut at {cut}: expected a configuration error, got {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_round_trips_in_both_dtypes() {
    let dir = std::env::temp_dir().join(format!("mpc-pipe-onnx-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = PlainTensor::from_vec(&[2, 3], vec![0.1, -2.5, 3.0, 1e-3, 7.25, -0.0]);
    for dtype in [npy::Dtype::F32, npy::Dtype::F64] {
        let p = dir.join("t.npy");
        npy::write(&p, &t, dtype).unwrap();
        let (back, d) = npy::read(&p, "t").unwrap();
        assert_eq!(d, dtype);
        let tol = if dtype == npy::Dtype::F32 {
            1e-7 * 7.25
        } else {
            0.0
        };
        assert!(back.max_abs_diff(&t) <= tol, "{dtype:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 18 item 4: the GELU ONNX models get (`Op::GeluErf`) is within 1e-3 of the exact
/// erf GELU over the whole range activations reach; the stated bound is 3e-4 (model::mpc:
/// 1.27e-4 tail beyond |x| = 4, 1.6e-5 series, < 1e-4 fixed point).
#[test]
fn gelu_erf_is_within_3e_4_of_the_exact_gelu_from_minus_10_to_10() {
    use mpc_pipe::model::graph::GraphBuilder;
    let n = 4001;
    let xv = PlainTensor::from_vec(
        &[1, n],
        (0..n)
            .map(|i| -10.0 + 20.0 * i as f64 / (n - 1) as f64)
            .collect(),
    );
    let exact = xv.map(plain::gelu);
    let mut b = GraphBuilder::new("gelu", &[1, n]);
    let x = b.input();
    let y = b.node("g", Op::GeluErf, &[x]).unwrap();
    let g = b.finish(y).unwrap();
    for parties in [2, 3] {
        let got = reveal_all(parties, |ctx: &Ctx| {
            let x = ctx.share_plain(0, Some(&xv), &[1, n])?;
            let y = sched::forward(ctx, &g, &x, Weights::Private, &Schedule::serial())?;
            ctx.reveal_plain(&y)
        });
        let e = got.max_abs_diff(&exact);
        eprintln!("gelu_erf {parties} parties: max abs error {e:e}");
        assert!(e <= 3e-4, "{parties}p: {e:e}");
    }
}

/// Sigmoid (model::mpc): e^-a (a = |x|) by exp's limit form errs by at most
/// e^-a·[(e^(a²/512) - 1) + 512u] (the approximation, and exp's fixed-point error of
/// 256·2u relative: one truncation of a/256 raised to the 256th power; u = 2^-16), which
/// σ divides by (1 + e^-a)²: at most 1.95e-3 (at a = 0); the reciprocal on [1, 2] adds
/// (2x + 2)u ≤ 1e-4: bound 2.1e-3.
#[test]
fn sigmoid_is_within_2_1e_3_from_minus_12_to_12() {
    use mpc_pipe::model::graph::GraphBuilder;
    let n = 2401;
    let xv = PlainTensor::from_vec(
        &[1, n],
        (0..n)
            .map(|i| -12.0 + 24.0 * i as f64 / (n - 1) as f64)
            .collect(),
    );
    let exact = xv.map(|v| 1.0 / (1.0 + (-v).exp()));
    let mut b = GraphBuilder::new("sigmoid", &[1, n]);
    let x = b.input();
    let y = b.node("s", Op::Sigmoid, &[x]).unwrap();
    let g = b.finish(y).unwrap();
    for parties in [2, 3] {
        let got = reveal_all(parties, |ctx: &Ctx| {
            let x = ctx.share_plain(0, Some(&xv), &[1, n])?;
            let y = sched::forward(ctx, &g, &x, Weights::Private, &Schedule::serial())?;
            ctx.reveal_plain(&y)
        });
        let e = got.max_abs_diff(&exact);
        eprintln!("sigmoid {parties} parties: max abs error {e:e}");
        assert!(e <= 2.1e-3, "{parties}p: {e:e}");
    }
}

/// Corrupted files (a few random bytes changed) are refused or imported, never a panic,
/// and what imports runs in the f64 interpreter without a panic either.
#[test]
fn corrupted_model_files_never_panic() {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut refused, mut imported) = (0, 0);
    for name in [
        "bn_cnn",
        "attention",
        "mlp_ln_gelu_softmax",
        "mlp_opset13",
        "handmade",
        "elementwise",
        "pools",
    ] {
        let bytes = std::fs::read(path(&format!("{name}.onnx"))).unwrap();
        for _ in 0..150 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() % b.len() as u64) as usize;
                b[i] = next() as u8;
            }
            let r = std::panic::catch_unwind(|| {
                onnx::import(&b, None, "m.onnx").map(|g| {
                    let x = PlainTensor::zeros(g.input_shape());
                    let _ = plain::forward(&g, &x);
                })
            });
            match r {
                Ok(Ok(())) => imported += 1,
                Ok(Err(_)) => refused += 1,
                Err(_) => panic!("{name}: a corrupted file made the importer panic"),
            }
        }
    }
    assert!(
        refused > 0 && imported > 0,
        "{refused} refused, {imported} imported"
    );
}

mod handmade_protos {
    //! Models built here from the protobuf messages, for refusals no exporter emits.
    use super::*;
    use mpc_pipe::onnx::proto::*;
    use prost::Message;

    fn attr_i(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 2,
            i,
            ..Default::default()
        }
    }
    fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: ints.to_vec(),
            ..Default::default()
        }
    }
    fn input(name: &str, dims: &[i64]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                dim_value: Some(d),
                                dim_param: None,
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }
    fn weight(name: &str, dims: &[i64]) -> TensorProto {
        let n: i64 = dims.iter().product();
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: FLOAT,
            float_data: (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect(),
            ..Default::default()
        }
    }
    /// A model of `nodes` on input "x" of `dims`, output "y", initializers `inits`.
    fn model(dims: &[i64], nodes: Vec<NodeProto>, inits: Vec<TensorProto>, opset: i64) -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "test".into(),
            graph: Some(GraphProto {
                node: nodes,
                name: "g".into(),
                initializer: inits,
                input: vec![input("x", dims)],
                output: vec![input("y", &[])],
            }),
        }
        .encode_to_vec()
    }
    fn node(op: &str, name: &str, ins: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            name: name.into(),
            op_type: op.into(),
            domain: String::new(),
            attribute: attrs,
        }
    }
    fn refusal(bytes: &[u8]) -> String {
        config_error(onnx::import(bytes, None, "t.onnx"))
    }

    #[test]
    fn unsupported_attributes_are_named_with_node_and_op() {
        let conv = |attrs| {
            model(
                &[1, 2, 6, 6],
                vec![node("Conv", "conv7", &["x", "w"], attrs)],
                vec![weight("w", &[4, 2, 3, 3])],
                17,
            )
        };
        let m = refusal(&conv(vec![attr_i("group", 2)]));
        assert!(
            m.contains("node 'conv7' (Conv)") && m.contains("'group' = 2"),
            "{m}"
        );
        let m = refusal(&conv(vec![attr_ints("dilations", &[2, 2])]));
        assert!(m.contains("conv7") && m.contains("'dilations'"), "{m}");
        let m = refusal(&conv(vec![attr_ints("pads", &[1, 0, 1, 0])]));
        assert!(m.contains("conv7") && m.contains("'pads'"), "{m}");
        let m = refusal(&conv(vec![attr_ints("pads", &[1 << 40; 4])]));
        assert!(m.contains("conv7") && m.contains("out of range"), "{m}");
        // The same conv without them imports and computes.
        let g = onnx::import(&conv(vec![attr_ints("pads", &[1; 4])]), None, "t.onnx").unwrap();
        assert_eq!(g.output_shape(), [1, 4, 6, 6]);

        let pool = |attrs| {
            model(
                &[1, 2, 6, 6],
                vec![node("MaxPool", "mp", &["x"], attrs)],
                vec![],
                17,
            )
        };
        let m = refusal(&pool(vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_i("ceil_mode", 1),
        ]));
        assert!(
            m.contains("node 'mp' (MaxPool)") && m.contains("'ceil_mode' = 1"),
            "{m}"
        );
        let m = refusal(&pool(vec![attr_ints("kernel_shape", &[2, 3])]));
        assert!(m.contains("mp") && m.contains("'kernel_shape'"), "{m}");
    }

    #[test]
    fn insecure_or_unknown_computations_are_refused_before_running() {
        // Division by an activation, an op outside the list, a lone Erf, another opset.
        let div = model(
            &[2, 3],
            vec![
                node("Relu", "r", &["x"], vec![]),
                NodeProto {
                    output: vec!["y".into()],
                    ..node("Div", "divide", &["x", "r"], vec![])
                },
            ],
            vec![],
            17,
        );
        let div = {
            // Rename the relu's output so Div reads it.
            let mut m = ModelProto::decode(&div[..]).unwrap();
            let g = m.graph.as_mut().unwrap();
            g.node[0].output = vec!["r".into()];
            m.encode_to_vec()
        };
        let m = refusal(&div);
        assert!(
            m.contains("node 'divide' (Div)") && m.contains("divides by an activation"),
            "{m}"
        );
        let m = refusal(&model(
            &[2, 3],
            vec![node("Erf", "e", &["x"], vec![])],
            vec![],
            17,
        ));
        assert!(
            m.contains("node 'e' (Erf)") && m.contains("GELU pattern"),
            "{m}"
        );
        let m = refusal(&model(
            &[2, 3],
            vec![node("TopK", "tk", &["x"], vec![])],
            vec![],
            17,
        ));
        assert!(
            m.contains("node 'tk' (TopK)") && m.contains("not supported"),
            "{m}"
        );
        let m = refusal(&model(
            &[2, 3],
            vec![node("Relu", "r", &["x"], vec![])],
            vec![],
            9,
        ));
        assert!(m.contains("opset 9"), "{m}");
        // A weight larger than the cap is refused from its dims, before any allocation.
        let mut big = weight("w", &[1]);
        big.dims = vec![1 << 20, 1 << 20];
        big.float_data.clear();
        let m = refusal(&model(
            &[2, 3],
            vec![node("MatMul", "mm", &["x", "w"], vec![])],
            vec![big],
            17,
        ));
        assert!(
            m.contains("initializer 'w'") && m.contains("more than"),
            "{m}"
        );
    }

    /// One tensor read twice by a node (x·x, x + x) and by two nodes: the products run as
    /// Beaver squares of the same share, matching f64 within the fixed-point error.
    #[test]
    fn a_tensor_used_twice_is_fine() {
        let mut sq = node("Mul", "sq", &["x", "x"], vec![]);
        sq.output = vec!["s".into()];
        let mut dbl = node("Add", "dbl", &["x", "x"], vec![]);
        dbl.output = vec!["d".into()];
        let out = node("Sub", "out", &["s", "d"], vec![]);
        let g = onnx::import(
            &model(&[2, 5], vec![sq, dbl, out], vec![], 17),
            None,
            "t.onnx",
        )
        .unwrap();
        let xv = PlainTensor::from_vec(&[2, 5], (0..10).map(|i| i as f64 * 0.37 - 1.6).collect());
        let want = xv.map(|v| v * v - 2.0 * v);
        assert!(plain::forward(&g, &xv).unwrap().max_abs_diff(&want) < 1e-12);
        let got = reveal_all(3, |ctx: &Ctx| {
            let x = ctx.share_plain(2, Some(&xv), &[2, 5])?;
            let y = sched::forward(ctx, &g, &x, Weights::Private, &Schedule::serial())?;
            ctx.reveal_plain(&y)
        });
        // Inputs off the grid by < 1 ulp (1.5e-5) times |2x - 2| ≤ 6, plus the product's
        // truncation (2 ulp): < 1.2e-4.
        assert!(
            got.max_abs_diff(&want) < 1.2e-4,
            "{}",
            got.max_abs_diff(&want)
        );
    }
}

/// One encoding everywhere (ring::encode_at, round to nearest): the data owner's input
/// and a model constant, each 0.7 ulp or 2.6 ulp from zero, reach the parties as the
/// nearest grid points (1 and 3 ulp; truncation would give 0 and 2), with private and
/// public weights, so the revealed x + c is exact on the grid.
#[test]
fn inputs_and_model_constants_are_encoded_to_the_nearest_grid_point() {
    use mpc_pipe::model::graph::GraphBuilder;
    let u = ULP;
    let xs = [0.7 * u, -0.7 * u, 2.6 * u, -2.6 * u, 0.3 * u];
    let cs = [0.7 * u, 2.6 * u, -0.7 * u, -2.6 * u, -0.3 * u];
    let nearest = |v: f64| (v / u).round();
    let want: Vec<f64> = xs
        .iter()
        .zip(&cs)
        .map(|(x, c)| (nearest(*x) + nearest(*c)) * u)
        .collect();
    assert_eq!(want, [2.0 * u, 2.0 * u, 2.0 * u, -6.0 * u, 0.0]);
    let mut b = GraphBuilder::new("enc", &[1, 5]);
    let c = b.constant("c", PlainTensor::from_vec(&[1, 5], cs.to_vec()));
    let y = b.node("add", Op::Add, &[b.input(), c]).unwrap();
    let g = b.finish(y).unwrap();
    let x = PlainTensor::from_vec(&[1, 5], xs.to_vec());
    for weights in [Weights::Private, Weights::Public] {
        for parties in [2, 3] {
            let got = reveal_all(parties, |ctx: &Ctx| {
                let xs = ctx.share_plain(parties - 1, Some(&x), &[1, 5])?;
                let y = sched::forward(ctx, &g, &xs, weights, &Schedule::serial())?;
                ctx.reveal_plain(&y)
            });
            assert_eq!(got.data(), &want[..], "{weights:?} {parties}p");
        }
    }
}
