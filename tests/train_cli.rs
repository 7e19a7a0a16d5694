//! `mpc-pipe train`, the real binary in a scratch directory: a short MPC run on synthetic
//! data writes its CSV rows and .npy weights, the plaintext run prints the same epochs,
//! `--processes` gives the threaded run's weights and losses byte for byte, an ONNX model's
//! trained weights are written back into a copy of it, and bad options are refused with
//! exit code 2 and a message naming them.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mpc-pipe"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The loss and accuracy printed for each epoch.
fn epochs(out: &str) -> Vec<(f64, f64)> {
    out.lines()
        .filter(|l| l.starts_with("epoch "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = |k: &str| {
                let i = w.iter().position(|&x| x == k).unwrap();
                w[i + 1].parse::<f64>().unwrap()
            };
            (at("loss"), at("accuracy"))
        })
        .collect()
}

/// Run `train` with `args`, appending rows to `csv` and saving weights in `weights`;
/// returns stdout after checking the run succeeded.
fn train_ok(args: &[&str], csv: &std::path::Path, weights: &std::path::Path) -> String {
    let o = bin()
        .args(args)
        .arg("--out")
        .arg(csv)
        .arg("--save-weights")
        .arg(weights)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{args:?}: stdout: {out}\nstderr: {err}");
    out
}

const SMALL: &[&str] = &[
    "train",
    "--model",
    "digits-mlp",
    "--data",
    "synthetic",
    "--synthetic-train",
    "64",
    "--synthetic-test",
    "32",
    "--epochs",
    "2",
    "--batch",
    "16",
    // Reproducible runs (see tests/train.rs on decisions within an ulp of a tie).
    "--dealer-seed",
    "7",
];

/// The whole-job columns of every row of `csv` (per epoch): filled, and e2e_s at least
/// online_s and at least plan_s + deal_s (the epoch's wall time holds its dealers and dry
/// runs, and its training's online phase). f64 rows (`plaintext`) fill e2e_s only.
fn check_phase_columns(csv: &str, plaintext: bool) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|&c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let mut rows = 0;
    for line in lines {
        rows += 1;
        let cells: Vec<&str> = line.split(',').collect();
        let num = |name: &str| -> Option<f64> {
            let c = cells[col(name)];
            (!c.is_empty()).then(|| c.parse().unwrap_or_else(|_| panic!("{name}: {c}")))
        };
        let (online, e2e) = (
            num("online_s").unwrap(),
            num("e2e_s").expect("e2e_s filled"),
        );
        assert!(
            e2e.is_finite() && e2e >= online,
            "e2e_s {e2e} < online_s {online}: {line}"
        );
        if plaintext {
            for c in ["plan_s", "deal_s", "expand_s"] {
                assert_eq!(num(c), None, "{c} in an f64 row: {line}");
            }
            continue;
        }
        let (plan, deal, expand) = (
            num("plan_s").expect("plan_s filled"),
            num("deal_s").expect("deal_s filled"),
            num("expand_s").expect("expand_s filled"),
        );
        for v in [plan, deal, expand] {
            assert!(v.is_finite() && v >= 0.0, "{line}");
        }
        assert!(
            e2e >= plan + deal,
            "e2e_s {e2e} < plan_s {plan} + deal_s {deal}: {line}"
        );
        assert!(deal > 0.0, "every epoch deals: {line}");
    }
    assert!(rows > 0, "no rows in {csv}");
}

#[test]
fn train_writes_rows_and_weights_and_agrees_with_plaintext() {
    let dir = scratch("small");
    let csv = dir.join("train.csv");
    let w = dir.join("weights");
    let out = train_ok(SMALL, &csv, &w);
    let mpc = epochs(&out);
    assert_eq!(mpc.len(), 2, "{out}");
    let pcsv = dir.join("plain.csv");
    let o = bin()
        .args(SMALL)
        .arg("--plaintext")
        .arg("--out")
        .arg(&pcsv)
        .output()
        .unwrap();
    let (pout, perr) = text(&o);
    assert!(o.status.success(), "{perr}");
    check_phase_columns(&std::fs::read_to_string(&pcsv).unwrap(), true);
    let plain = epochs(&pout);
    // Same weights, order and batches: the losses agree to the fixed-point bound of a few
    // steps (1e-2 is ten times the per-weight bound of tests/train.rs), and accuracy on
    // 32 test samples within 2 samples.
    for ((lm, am), (lp, ap)) in mpc.iter().zip(&plain) {
        assert!((lm - lp).abs() < 1e-2, "loss {lm} vs {lp}");
        assert!(
            (am - ap).abs() <= 2.0 / 32.0 + 1e-9,
            "accuracy {am} vs {ap}"
        );
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    check_phase_columns(&text, false);
    for l in out.lines().filter(|l| l.starts_with("epoch ")) {
        assert!(l.contains("whole epoch") && l.contains("deal"), "{l}");
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "online_s",
        "compute_busy_s",
        "comm_wait_s",
        "bytes_per_party",
        "rounds",
        "cpu_util",
        "link_util",
        "epoch",
        "loss",
        "accuracy",
    ] {
        assert!(header.contains(&col), "no column {col} in {header:?}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2);
    let epoch_col = header.iter().position(|&c| c == "epoch").unwrap();
    let cells: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(cells[epoch_col], "2");
    // The MLP's 4 parameters (two weights, two biases), each a readable .npy.
    let mut files: Vec<_> = std::fs::read_dir(&w)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let (t, _) = mpc_pipe::onnx::npy::read(&files[0], "weight").unwrap();
    assert_eq!(t.shape(), &[64, 64]);
    assert!(t.data().iter().all(|v| v.is_finite()));
}

#[test]
fn train_refuses_bad_options_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--data", "imagenet"], "--data"),
        (&["train", "--batch", "0"], "--batch"),
        (&["train", "--lr", "-1"], "--lr"),
        (&["train", "--epochs", "0"], "--epochs"),
        (&["train", "--momentum", "1.5"], "--momentum"),
        (&["train", "--scheme", "serial+inter-batch"], "serial"),
        (&["train", "--processes", "--plaintext"], "--processes"),
        (
            &["train", "--processes", "--inbox-cap-mib", "0"],
            "--inbox-cap-mib",
        ),
        (&["train", "--model", "bert-small"], "no backward rule"),
        (&["train", "--model", "nosuch"], "unknown model"),
    ];
    for (args, want) in cases {
        let o = bin().args(*args).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// An imported ONNX model trains like a built-in one (the digits fixture: its batch norm
/// folded into the conv by the exporter, then conv, relu, maxpool, conv, relu, avgpool,
/// flatten, gemm).
#[test]
fn train_takes_an_onnx_model() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/onnx/digits_cnn.onnx"
    );
    let args = [
        "train",
        "--model",
        model,
        "--data",
        "synthetic",
        "--synthetic-train",
        "64",
        "--synthetic-test",
        "32",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--dealer-seed",
        "7",
    ];
    let o = bin().args(args).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    let o = bin().args(args).arg("--plaintext").output().unwrap();
    let (pout, perr) = text(&o);
    assert!(o.status.success(), "{perr}");
    let (m, p) = (epochs(&out), epochs(&pout));
    assert_eq!(m.len(), 1);
    // The fixture was trained on real digits: on synthetic data its logits spread by ~10,
    // its loss is ~11 and its gradients large, so the fixed-point differences of the four
    // steps grow with them; agreement within 1% of the loss.
    assert!(
        (m[0].0 - p[0].0).abs() < 1e-2 * p[0].0.abs().max(1.0),
        "loss {:?} vs {:?}",
        m[0],
        p[0]
    );
}

/// The .npy files of a --save-weights directory, by name.
fn npy_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    files.sort();
    files
}

/// `--processes`: each party a child process over loopback TCP (sealed channels), every
/// session of the run over one connection. Under one --dealer-seed the material and the
/// pairwise seeds are those of the threaded run and the protocol is deterministic given
/// them, so losses, accuracies and trained weights are the same to the last bit; 3
/// parties (dealer truncation, counters gathered from two peers), 2 epochs (the first
/// epoch's plan and the later one's, momentum buffers carried over), all schemes at once.
#[test]
fn train_processes_match_the_threaded_run_byte_for_byte() {
    let dir = scratch("processes");
    let args = [
        "train",
        "--model",
        "digits-cnn",
        "--data",
        "synthetic",
        "--synthetic-train",
        "32",
        "--synthetic-test",
        "16",
        "--epochs",
        "2",
        "--batch",
        "16",
        "--parties",
        "3",
        "--scheme",
        "all",
        "--dealer-seed",
        "7",
    ];
    let run = |name: &str, extra: &[&str]| {
        let (csv, w) = (dir.join(format!("{name}.csv")), dir.join(name));
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        let out = train_ok(&all, &csv, &w);
        (out, std::fs::read_to_string(&csv).unwrap(), npy_files(&w))
    };
    let (tout, tcsv, tw) = run("threads", &[]);
    let (pout, pcsv, pw) = run("processes", &["--processes"]);
    assert!(pout.contains("3 parties as processes"), "{pout}");
    // Printed with 4 decimals: equal lines, and the weights below to the last bit.
    assert_eq!(epochs(&tout).len(), 2, "{tout}");
    assert_eq!(epochs(&tout), epochs(&pout), "losses and accuracies");
    assert_eq!(tw.len(), 6, "{tw:?}");
    assert_eq!(pw.len(), tw.len());
    for (a, b) in tw.iter().zip(&pw) {
        assert_eq!(a.file_name(), b.file_name());
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{} differs",
            a.display()
        );
    }
    // One process wrote the rows: one per epoch, saying how the parties talked.
    let rows = |csv: &str| -> Vec<Vec<String>> {
        csv.lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    check_phase_columns(&tcsv, false);
    check_phase_columns(&pcsv, false);
    let (t, p) = (rows(&tcsv), rows(&pcsv));
    assert_eq!(p.len(), 3, "{pcsv}");
    let col = |name: &str| t[0].iter().position(|c| c == name).unwrap();
    for r in 1..3 {
        assert_eq!(p[r][col("channels")], "sealed");
        assert_eq!(t[r][col("channels")], "memory");
        for c in [
            "epoch",
            "loss",
            "accuracy",
            "rounds",
            "bytes_per_party",
            "parties",
        ] {
            assert_eq!(p[r][col(c)], t[r][col(c)], "column {c}");
        }
    }
}

/// A model from ONNX whose weights are its initializers: `--save-weights` writes, beside
/// the .npy files, a copy of the .onnx with the trained values. Importing that copy gives
/// the trained weights exactly (fixed-point values k·2^-16 are exact in float32), and the
/// f64 interpreter on it gives what it gives on the trained graph (the original with the
/// .npy values put in); every other byte of the model (its doc string here) is kept.
#[test]
fn train_writes_an_onnx_model_back_with_the_trained_weights() {
    use mpc_pipe::model::graph::Producer;
    use mpc_pipe::model::{backward, plain};
    let fixture = |f: &str| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/onnx")).join(f)
    };
    let model = fixture("trainable_cnn.onnx");
    let dir = scratch("onnx-out");
    let o = bin()
        .args(["train", "--model"])
        .arg(&model)
        .args([
            "--data",
            "digits",
            "--epochs",
            "1",
            "--batch",
            "64",
            "--lr",
            "0.1",
            "--dealer-seed",
            "7",
            "--save-weights",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    let saved = dir.join("trainable_cnn.trained.onnx");
    assert!(out.contains(&saved.display().to_string()), "{out}");
    let bytes = std::fs::read(&saved).unwrap();
    let doc = b"kept byte for byte by train --save-weights";
    assert!(bytes.windows(doc.len()).any(|w| w == doc));
    let g_saved = mpc_pipe::onnx::load(&saved, None).unwrap();
    let g0 = mpc_pipe::onnx::load(&model, None).unwrap();
    let params = backward::parameters(&g_saved).unwrap();
    assert_eq!(params, backward::parameters(&g0).unwrap());
    let files = npy_files(&dir);
    assert_eq!(files.len(), params.len());
    let mut trained = g0.clone();
    let mut moved: f64 = 0.0;
    for (&p, f) in params.iter().zip(&files) {
        let (v, _) = mpc_pipe::onnx::npy::read(f, "weight").unwrap();
        let s = g_saved.tensors[p].constant().unwrap().to_plain();
        assert_eq!(s.shape(), v.shape(), "{}", f.display());
        assert_eq!(
            s.data(),
            v.data(),
            "{}: not the trained values",
            f.display()
        );
        moved = moved.max(v.max_abs_diff(&g0.tensors[p].constant().unwrap().to_plain()));
        trained.tensors[p].producer = Producer::Const(v.into());
    }
    assert!(moved > 1e-3, "training moved no weight ({moved})");
    let (x, _) = mpc_pipe::onnx::npy::read(&fixture("trainable_cnn.input.npy"), "x").unwrap();
    // The fixture imports as onnxruntime runs it (float32 rounding: 1e-5 at |y| < 1).
    let (ort, _) = mpc_pipe::onnx::npy::read(&fixture("trainable_cnn.ort.npy"), "y").unwrap();
    assert!(plain::forward(&g0, &x).unwrap().max_abs_diff(&ort) < 1e-5);
    let (ys, yt) = (
        plain::forward(&g_saved, &x).unwrap(),
        plain::forward(&trained, &x).unwrap(),
    );
    assert_eq!(ys.data(), yt.data());
}

/// A parameter the importer makes (here a Gemm's alpha applied to its weight: the graph
/// trains `fc.weight.alpha`, which no initializer holds) cannot be written back: the run
/// says so before training, naming it, and writes the .npy files only.
#[test]
fn train_says_when_an_onnx_model_cannot_be_written_back() {
    use mpc_pipe::onnx::proto::{AttributeProto, ModelProto};
    use prost::Message;
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/onnx/trainable_cnn.onnx"
    );
    let mut m = ModelProto::decode(&std::fs::read(src).unwrap()[..]).unwrap();
    let gemm = m
        .graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.op_type == "Gemm")
        .unwrap();
    gemm.attribute.push(AttributeProto {
        name: "alpha".into(),
        r#type: 1,
        f: 0.5,
        ..Default::default()
    });
    let dir = scratch("onnx-alpha");
    let model = dir.join("alpha.onnx");
    std::fs::write(&model, m.encode_to_vec()).unwrap();
    let w = dir.join("weights");
    let o = bin()
        .args(["train", "--model"])
        .arg(&model)
        .args([
            "--data",
            "synthetic",
            "--synthetic-train",
            "16",
            "--synthetic-test",
            "8",
            "--epochs",
            "1",
            "--batch",
            "16",
            "--save-weights",
        ])
        .arg(&w)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    let note = out
        .lines()
        .find(|l| l.contains("will not be written as ONNX"))
        .unwrap_or_else(|| panic!("no note in {out}"));
    assert!(note.contains("'fc.weight.alpha'"), "{note}");
    assert!(out.contains("trained model not written as ONNX"), "{out}");
    assert_eq!(npy_files(&w).len(), 6);
    assert_eq!(std::fs::read_dir(&w).unwrap().count(), 6, "only .npy files");
}

/// A party process that fails (fault injection: party 1 fails before its first online
/// phase) ends `train --processes` with exit code 1 and an error naming that party, no
/// panic, and no CSV row.
#[test]
fn a_failing_training_party_process_exits_1_naming_it() {
    let dir = scratch("proc-fail");
    let csv = dir.join("t.csv");
    let o = bin()
        .args(SMALL)
        .args(["--processes", "--parties", "3", "--out"])
        .arg(&csv)
        .env("MPC_PIPE_DEBUG_FAIL", "1")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("party 1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.contains("epoch "), "{out}");
    let rows = std::fs::read_to_string(&csv).unwrap_or_default();
    assert!(rows.lines().count() <= 1, "rows written: {rows}");
}

/// Under a fixed --dealer-seed, training gives the weights of the recorded run
/// (tests/fixtures/train-weights; its README says which binary wrote them), to the last
/// bit: how and when material is dealt must not change what is computed. Three epochs, so
/// the first epoch's plan and the later one's both serve, momentum carried over.
#[test]
fn trained_weights_under_a_dealer_seed_are_those_of_the_recorded_run() {
    let dir = scratch("recorded");
    let w = dir.join("weights");
    let o = bin()
        .args([
            "train",
            "--model",
            "digits-cnn",
            "--data",
            "synthetic",
            "--synthetic-train",
            "64",
            "--synthetic-test",
            "16",
            "--epochs",
            "3",
            "--batch",
            "16",
            "--dealer-seed",
            "11",
            "--save-weights",
        ])
        .arg(&w)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train-weights");
    let got = npy_files(&w);
    assert_eq!(got.len(), 6, "{got:?}");
    for f in got {
        let name = f.file_name().unwrap();
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(fixtures.join(name)).unwrap(),
            "{} differs from the recorded run",
            name.to_string_lossy()
        );
    }
}
