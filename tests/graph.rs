//! The model graph: shape inference refuses inconsistent graphs naming the node; the f64
//! interpreter matches references written out here by hand; batch norm folds into its
//! conv without changing the function; and the MPC interpreter matches the f64 one on a
//! graph that uses every op, under every scheme, within the fixed-point and
//! approximation bounds stated below.

mod common;
use common::*;

use mpc_pipe::error::Error;
use mpc_pipe::model::graph::{GraphBuilder, Op};
use mpc_pipe::model::{plain, Weights};
use mpc_pipe::proto::Ctx;
use mpc_pipe::ring::PlainTensor;
use mpc_pipe::sched::{self, Lanes, Schedule, Scheme};

fn refused(b: &mut GraphBuilder, name: &str, op: Op, ins: &[usize]) -> String {
    match b.node(name, op, ins) {
        Err(Error::Config(m)) => {
            assert!(m.contains(&format!("node '{name}'")), "{m}");
            m
        }
        other => panic!("{name}: expected a configuration error, got {other:?}"),
    }
}

#[test]
fn inconsistent_graphs_are_refused_naming_the_node() {
    let mut d = Data::new(1);
    let mut b = GraphBuilder::new("bad", &[2, 3, 8, 8]);
    let x = b.input();
    let w = b.constant("w", d.tensor(&[4, 5, 3, 3], -1.0, 1.0));
    let m = refused(
        &mut b,
        "conv_bad",
        Op::Conv2d {
            stride: 1,
            padding: 1,
        },
        &[x, w],
    );
    assert!(m.contains("channels"), "{m}");
    let w2 = b.constant("w2", d.tensor(&[7, 4], -1.0, 1.0));
    let f = b.node("flat", Op::Flatten { axis: 1 }, &[x]).unwrap();
    refused(&mut b, "mm_bad", Op::MatMul, &[f, w2]);
    refused(
        &mut b,
        "reshape_bad",
        Op::Reshape {
            shape: vec![0, 5, -1],
        },
        &[f],
    );
    refused(
        &mut b,
        "perm_bad",
        Op::Transpose {
            perm: vec![0, 0, 1, 2],
        },
        &[x],
    );
    let v = b.constant("v", d.tensor(&[5], -1.0, 1.0));
    refused(&mut b, "add_bad", Op::Add, &[x, v]);
    refused(&mut b, "relu_const", Op::Relu, &[v]);
    refused(
        &mut b,
        "pool_bad",
        Op::MaxPool {
            kernel: 9,
            stride: 1,
            padding: 0,
        },
        &[x],
    );
    refused(&mut b, "div_zero", Op::DivConst(0.0), &[x]);
}

fn close(a: &PlainTensor, b: &PlainTensor, tol: f64, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    let e = a.max_abs_diff(b);
    assert!(e <= tol, "{what}: max error {e:.3e} > {tol:.1e}");
}

#[test]
fn plaintext_ops_match_hand_written_references() {
    let mut d = Data::new(2);
    // softmax along axis 1 of [2, 3, 4], layer norm, transpose, slice, reshape 0/-1.
    let xv = d.tensor(&[2, 3, 4], -2.0, 2.0);
    let mut b = GraphBuilder::new("ops", &[2, 3, 4]);
    let x = b.input();
    let s = b.node("sm", Op::Softmax { axis: 1 }, &[x]).unwrap();
    let t = b
        .node(
            "tr",
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[s],
        )
        .unwrap(); // [2,4,3]
    let sl = b
        .node(
            "sl",
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3,
            },
            &[t],
        )
        .unwrap(); // [2,2,3]
    let r = b
        .node("rs", Op::Reshape { shape: vec![0, -1] }, &[sl])
        .unwrap(); // [2,6]
    let g = b.finish(r).unwrap();
    let got = plain::forward(&g, &xv).unwrap();
    let xd = xv.data();
    let at = |i: usize, j: usize, k: usize| xd[i * 12 + j * 4 + k];
    let mut want = vec![];
    for i in 0..2 {
        for k in 1..3 {
            let z: f64 = (0..3).map(|j| at(i, j, k).exp()).sum();
            for j in 0..3 {
                want.push(at(i, j, k).exp() / z);
            }
        }
    }
    close(
        &got,
        &PlainTensor::from_vec(&[2, 6], want),
        1e-12,
        "softmax/transpose/slice/reshape",
    );

    // Gemm with both transposes and C, against loops.
    let (av, bv, cv) = (
        d.tensor(&[3, 2], -1.0, 1.0),
        d.tensor(&[4, 3], -1.0, 1.0),
        d.tensor(&[4], -1.0, 1.0),
    );
    let mut b = GraphBuilder::new("gemm", &[3, 2]);
    let (x, w, c) = (
        b.input(),
        b.constant("b", bv.clone()),
        b.constant("c", cv.clone()),
    );
    let y = b
        .node(
            "g",
            Op::Gemm {
                trans_a: true,
                trans_b: true,
            },
            &[x, w, c],
        )
        .unwrap();
    let g = b.finish(y).unwrap();
    let got = plain::forward(&g, &av).unwrap();
    let mut want = vec![0.0; 8];
    for i in 0..2 {
        for j in 0..4 {
            want[i * 4 + j] = cv.data()[j]
                + (0..3)
                    .map(|k| av.data()[k * 2 + i] * bv.data()[j * 3 + k])
                    .sum::<f64>();
        }
    }
    close(
        &got,
        &PlainTensor::from_vec(&[2, 4], want),
        1e-12,
        "gemm transA transB + C",
    );
}

#[test]
fn batch_norm_folds_into_its_conv_without_changing_the_function() {
    let mut d = Data::new(3);
    let xv = d.tensor(&[2, 3, 6, 6], -1.0, 1.0);
    let params: Vec<PlainTensor> = vec![
        d.tensor(&[4], 0.5, 1.5),
        d.tensor(&[4], -0.5, 0.5),
        d.tensor(&[4], -0.5, 0.5),
        d.tensor(&[4], 0.2, 2.0),
    ];
    let (wv, bv) = (
        d.tensor(&[4, 3, 3, 3], -0.5, 0.5),
        d.tensor(&[4], -0.1, 0.1),
    );
    let mut b = GraphBuilder::new("bn", &[2, 3, 6, 6]);
    let x = b.input();
    let (w, bias) = (b.constant("w", wv.clone()), b.constant("b", bv.clone()));
    let y = b
        .node(
            "conv",
            Op::Conv2d {
                stride: 1,
                padding: 1,
            },
            &[x, w, bias],
        )
        .unwrap();
    let p: Vec<usize> = params
        .iter()
        .enumerate()
        .map(|(i, t)| b.constant(&format!("p{i}"), t.clone()))
        .collect();
    let z = b
        .node(
            "bn",
            Op::BatchNorm { eps: 1e-5 },
            &[y, p[0], p[1], p[2], p[3]],
        )
        .unwrap();
    let g = b.finish(z).unwrap();
    assert!(
        g.nodes
            .iter()
            .any(|n| n.name == "bn" && n.op == Op::Identity),
        "the batch norm is folded"
    );
    let got = plain::forward(&g, &xv).unwrap();
    // Reference: the conv, then the batch norm formula per channel.
    let conv = xv.conv2d(&wv, 1, 1).add_bias(&bv);
    let mut want = conv.clone();
    let hw = 36;
    for (i, v) in want.data_mut().iter_mut().enumerate() {
        let c = (i / hw) % 4;
        let (gm, bt, mu, var) = (
            params[0].data()[c],
            params[1].data()[c],
            params[2].data()[c],
            params[3].data()[c],
        );
        *v = (*v - mu) / (var + 1e-5).sqrt() * gm + bt;
    }
    close(&got, &want, 1e-12, "folded batch norm");
}

/// A graph with every op the MPC interpreter runs, on [B=2, 4, 4, 4]: conv, unfolded batch
/// norm (after a relu), global and plain average pools, max pool, flatten, gemm with a
/// constant on either side, matmul of activations, reshape with 0 and -1, transpose,
/// concat, slice, add/sub with constants and activations, mul/div by constants, softmax,
/// layer norm, gelu, identity.
fn every_op_graph(d: &mut Data) -> mpc_pipe::model::Graph {
    let mut b = GraphBuilder::new("every-op", &[2, 4, 4, 4]);
    let x = b.input();
    let w = b.constant("w", d.tensor(&[4, 4, 3, 3], -0.3, 0.3));
    let c = b
        .node(
            "conv",
            Op::Conv2d {
                stride: 1,
                padding: 1,
            },
            &[x, w],
        )
        .unwrap();
    let r = b.node("relu", Op::Relu, &[c]).unwrap();
    let p: Vec<usize> = [(0.5, 1.5), (-0.2, 0.2), (-0.2, 0.2), (0.5, 1.5)]
        .iter()
        .map(|&(lo, hi)| b.constant("bn", d.tensor(&[4], lo, hi)))
        .collect();
    let bn = b
        .node(
            "bn",
            Op::BatchNorm { eps: 1e-5 },
            &[r, p[0], p[1], p[2], p[3]],
        )
        .unwrap();
    let mp = b
        .node(
            "mp",
            Op::MaxPool {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            &[bn],
        )
        .unwrap(); // [2,4,2,2]
    let ap = b
        .node(
            "ap",
            Op::AvgPool {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            &[bn],
        )
        .unwrap();
    let gp = b.node("gap", Op::GlobalAvgPool, &[bn]).unwrap(); // [2,4,1,1]
    let cat = b.node("cat", Op::Concat { axis: 1 }, &[mp, ap]).unwrap(); // [2,8,2,2]
    let f = b.node("flat", Op::Flatten { axis: 1 }, &[cat]).unwrap(); // [2,32]
    let fg = b
        .node("flatg", Op::Reshape { shape: vec![0, -1] }, &[gp])
        .unwrap(); // [2,4]
    let w1 = b.constant("w1", d.tensor(&[6, 32], -0.3, 0.3));
    let g1 = b
        .node(
            "gemm_tb",
            Op::Gemm {
                trans_a: false,
                trans_b: true,
            },
            &[f, w1],
        )
        .unwrap(); // [2,6]
    let c1 = b.constant("c1", d.tensor(&[6], -0.1, 0.1));
    let g1 = b.node("bias", Op::Add, &[g1, c1]).unwrap();
    let (gam, bet) = (
        b.constant("g", d.tensor(&[6], 0.8, 1.2)),
        b.constant("b", d.tensor(&[6], -0.1, 0.1)),
    );
    let ln = b
        .node("ln", Op::LayerNorm { eps: 1e-5 }, &[g1, gam, bet])
        .unwrap();
    let h = b.node("gelu", Op::Gelu, &[ln]).unwrap();
    let h = b.node("id", Op::Identity, &[h]).unwrap();
    let hs = b
        .node(
            "slice",
            Op::Slice {
                axis: 1,
                start: 2,
                end: 6,
            },
            &[h],
        )
        .unwrap(); // [2,4]
    let m = b.node("resid", Op::Sub, &[hs, fg]).unwrap();
    let m = b.node("scale", Op::MulConst(1.5), &[m]).unwrap();
    let m3 = b
        .node(
            "rs3",
            Op::Reshape {
                shape: vec![0, 2, 2],
            },
            &[m],
        )
        .unwrap(); // [2,2,2]
    let mt = b
        .node(
            "t",
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[m3],
        )
        .unwrap();
    let mm = b.node("mm", Op::MatMul, &[m3, mt]).unwrap(); // [2,2,2] activation x activation
    let mm = b.node("div", Op::DivConst(2.0), &[mm]).unwrap();
    let sm = b.node("softmax", Op::Softmax { axis: 1 }, &[mm]).unwrap();
    let wl = b.constant("wl", d.tensor(&[3, 2], -0.5, 0.5));
    let left = b.node("wx", Op::MatMul, &[wl, sm]).unwrap(); // [2,3,2] constant on the left
    let k = b.constant("k", d.tensor(&[2], -0.5, 0.5));
    let out = b.node("csub", Op::Sub, &[k, left]).unwrap();
    b.finish(out).unwrap()
}

/// Bound 0.05: LayerNorm's inv_sqrt errs by 0.5% relative on row variances in [0.1, 150]
/// (these rows' are ~0.3-1), so |y| ≤ 2 errs by 0.01; the GeLU approximation by ≤ 0.02
/// (proto::nn); the path after it scales by 1.5, sums two products of |values| ≤ 1 and
/// halves (gain ≤ 1.5: 0.03 + 0.015 carried from LayerNorm); softmax (exp limit form,
/// Newton reciprocal) is 1/2-Lipschitz per entry and adds < 0.01; the left product's
/// weights are ≤ 0.5 over 2 terms (gain ≤ 1). Fixed-point steps add ulps (1.5e-5 each).
#[test]
fn mpc_interpreter_matches_plaintext_on_every_op_under_every_scheme() {
    let mut d = Data::new(4);
    let g = every_op_graph(&mut d);
    let xv = d.tensor(g.input_shape(), -1.0, 1.0);
    let want = plain::forward(&g, &xv).unwrap();
    let shape = g.input_shape().to_vec();
    for parties in [2, 3] {
        for weights in [Weights::Private, Weights::Public] {
            for scheme in ["serial", "all"] {
                let schedule = Schedule {
                    scheme: scheme.parse::<Scheme>().unwrap(),
                    chunks: 2,
                    batches_in_flight: 2,
                    lanes: Lanes::Coroutines,
                };
                let got = reveal_all(parties, |ctx: &Ctx| {
                    let x = ctx.share_plain(parties - 1, Some(&xv), &shape)?;
                    let y = sched::forward(ctx, &g, &x, weights, &schedule)?;
                    ctx.reveal_plain(&y)
                });
                close(
                    &got,
                    &want,
                    0.05,
                    &format!("{parties}p {weights:?} {scheme}"),
                );
            }
        }
    }
}

/// A weight of f32 values is stored as f32 (half the memory), and one too large to widen
/// whole (over 32 MiB as f64) is read by column blocks in the f64 interpreter: Gemm plain
/// and with transposed B, and MatMul of a 3-D activation, each against naive f64 loops on
/// the same values. Bound: each output sums K = 2048 products of magnitude < 1 in another
/// order, so the two f64 sums differ by at most about 2·K·u·K ≈ 1e-9 (u = 2^-53).
#[test]
fn large_f32_weights_are_stored_compactly_and_read_by_blocks() {
    let (m, k, n) = (3, 2048, 2100);
    let mut d = Data::new(11);
    let f32v = |t: PlainTensor| t.map(|v| v as f32 as f64);
    let xv = d.tensor(&[m, k], -1.0, 1.0);
    let wv = f32v(d.tensor(&[k, n], -1.0, 1.0));
    let bias = f32v(d.tensor(&[n], -0.5, 0.5));
    let naive = |bias: Option<&PlainTensor>| {
        let mut want = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = bias.map_or(0.0, |b| b.data()[j])
                    + (0..k)
                        .map(|q| xv.data()[i * k + q] * wv.data()[q * n + j])
                        .sum::<f64>();
            }
        }
        PlainTensor::from_vec(&[m, n], want)
    };
    let want = naive(Some(&bias));
    for trans_b in [false, true] {
        let mut b = GraphBuilder::new("big", &[m, k]);
        let stored = if trans_b { wv.transpose2() } else { wv.clone() };
        let (x, w, c) = (
            b.input(),
            b.constant("w", stored),
            b.constant("c", bias.clone()),
        );
        let y = b
            .node(
                "g",
                Op::Gemm {
                    trans_a: false,
                    trans_b,
                },
                &[x, w, c],
            )
            .unwrap();
        let g = b.finish(y).unwrap();
        let wc = g.tensors[w].constant().unwrap();
        assert!(wc.is_compact(), "f32 values are stored as f32");
        assert_eq!(wc.bytes(), 4 * k * n);
        assert!(8 * k * n > 32 << 20, "large enough to be read by blocks");
        let got = plain::forward(&g, &xv).unwrap();
        close(&got, &want, 1e-9, &format!("gemm trans_b {trans_b}"));
    }
    let mut b = GraphBuilder::new("big3", &[1, m, k]);
    let (x, w) = (b.input(), b.constant("w", wv.clone()));
    let y = b.node("mm", Op::MatMul, &[x, w]).unwrap();
    let g = b.finish(y).unwrap();
    let got = plain::forward(&g, &xv.clone().reshape(&[1, m, k])).unwrap();
    assert_eq!(got.shape(), &[1, m, n]);
    close(
        &got.reshape(&[m, n]),
        &naive(None),
        1e-9,
        "matmul 3-D by 2-D",
    );
}
