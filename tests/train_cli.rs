//! `mpc-pipe train`, the real binary in a scratch directory: a short MPC run on synthetic
//! data writes its CSV rows and .npy weights, the plaintext run prints the same epochs,
//! and bad options are refused with exit code 2 and a message naming them.

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

#[test]
fn train_writes_rows_and_weights_and_agrees_with_plaintext() {
    let dir = scratch("small");
    let csv = dir.join("train.csv");
    let w = dir.join("weights");
    let o = bin()
        .args(SMALL)
        .arg("--out")
        .arg(&csv)
        .arg("--save-weights")
        .arg(&w)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    let mpc = epochs(&out);
    assert_eq!(mpc.len(), 2, "{out}");
    let o = bin().args(SMALL).arg("--plaintext").output().unwrap();
    let (pout, perr) = text(&o);
    assert!(o.status.success(), "{perr}");
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
        (&["train", "--processes"], "--processes"),
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
/// folded into the conv, then conv, relu, maxpool, conv, relu, avgpool, flatten, gemm).
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
