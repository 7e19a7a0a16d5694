//! The real binary, run as a user would, in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mpc-pipe"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The session key the tests' material files are MACed with.
const KEY_HEX: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// Run the binary with `args`, the directory `dir`, then `more` (with the tests' session
/// key in the environment, for material files).
fn with_dir(args: &[&str], dir: &Path, more: &[&str]) -> Output {
    bin()
        .args(args)
        .arg(dir)
        .args(more)
        .env("MPC_PIPE_SESSION_KEY", KEY_HEX)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The stdout of a run that must have succeeded.
fn succeeded(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    out
}

/// A run given offline material recorded for a different plan fails with exit code 1 and
/// says why.
fn assert_refused_for_another_plan(o: &Output) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("offline material refused") && err.contains("another plan"),
        "stderr: {err}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let o = bin().arg("--help").output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "stderr: {err}");
    for sub in ["run", "offline", "costs", "kernels", "netcheck"] {
        assert!(out.contains(sub), "--help does not list {sub}:\n{out}");
    }
}

#[test]
fn default_run_prints_outputs_error_and_counters() {
    let o = bin().arg("run").output().unwrap();
    let out = succeeded(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("max_abs_err: "))
        .unwrap_or_else(|| panic!("no max_abs_err line in:\n{out}"));
    let v: f64 = line["max_abs_err: ".len()..].trim().parse().unwrap();
    // tests/schemes.rs bounds the fixed-point error of lenet at 1.1e-3 against a quantized
    // reference; quantizing its weights (|Δw| < 2^-16, fan-in <= 256, |x| <= ~4) adds at most
    // ~0.02 per layer before ReLU, so 0.05 flags a broken run without flagging precision.
    assert!(v < 0.05, "max_abs_err {v}");
    assert!(out.contains("sample 0 mpc:") && out.contains("sample 0 plaintext:"));
    assert!(out.contains("party 0: online_s") && out.contains("party 1: online_s"));
}

#[test]
fn offline_files_feed_the_online_run_and_a_wrong_plan_is_refused() {
    let dir = scratch("offline");
    let o = with_dir(
        &["offline", "--out"],
        &dir,
        &["--parties", "3", "--batch", "2"],
    );
    succeeded(&o);
    let o = with_dir(
        &["run", "--material"],
        &dir,
        &["--parties", "3", "--batch", "2"],
    );
    let out = succeeded(&o);
    assert!(out.contains("material from files"));
    let o = with_dir(
        &["run", "--material"],
        &dir,
        &["--parties", "3", "--batch", "1"],
    );
    assert_refused_for_another_plan(&o);
    std::fs::remove_dir_all(&dir).ok();
}

/// `offline --key-file K` creates K owner-only with a fresh key when it is missing; the
/// online run needs that key: none is a configuration error, another key fails the MAC,
/// and a key file others may read is refused as ssh refuses such a private key.
#[cfg(unix)]
#[test]
fn material_is_macd_with_the_session_key_from_a_private_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("matkey");
    let (mat, key) = (dir.join("mat"), dir.join("session.key"));
    let _ = std::fs::remove_file(&key);
    let k = key.to_str().unwrap();
    let offline = bin()
        .args(["offline", "--key-file", k, "--out"])
        .arg(&mat)
        .env_remove("MPC_PIPE_SESSION_KEY")
        .output()
        .unwrap();
    succeeded(&offline);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let run = |extra: &[&str], env: Option<&str>| {
        let mut c = bin();
        c.args(["run", "--material"]).arg(&mat).args(extra);
        match env {
            Some(v) => c.env("MPC_PIPE_SESSION_KEY", v),
            None => c.env_remove("MPC_PIPE_SESSION_KEY"),
        };
        c.output().unwrap()
    };
    let out = succeeded(&run(&["--key-file", k], None));
    assert!(out.contains("material from files"), "{out}");
    let o = run(&[], None);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("needs the session key"), "{err}");
    let o = run(&[], Some(KEY_HEX));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("fails its MAC"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = run(&["--key-file", k], None);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("may be read by group or others"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn trunc_dealer_runs_2_parties_and_its_files_are_refused_by_a_local_run() {
    let rounds = |out: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with("party 0:")).unwrap();
        line.split("rounds ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut runs = Vec::new();
    for mode in ["local", "dealer"] {
        let o = bin().args(["run", "--trunc", mode]).output().unwrap();
        let out = succeeded(&o);
        assert!(out.contains(&format!("trunc {mode}")), "{out}");
        runs.push(rounds(&out));
    }
    // Local truncation is free; the dealer's costs one more round per truncation.
    assert!(
        runs[1] > runs[0],
        "rounds local {} dealer {}",
        runs[0],
        runs[1]
    );

    let dir = scratch("trunc");
    let o = with_dir(&["offline", "--trunc", "dealer", "--out"], &dir, &[]);
    succeeded(&o);
    let o = with_dir(&["run", "--trunc", "dealer", "--material"], &dir, &[]);
    succeeded(&o);
    // The default for 2 parties is local: the dealer's files are for another plan.
    let o = with_dir(&["run", "--material"], &dir, &[]);
    assert_refused_for_another_plan(&o);
    std::fs::remove_dir_all(&dir).ok();
}

/// `--protocols fss`: in-process and as party processes (where party 0 deals and sends
/// party 1 its keys' correction words before the online phase), the run says which suite
/// it ran and takes far fewer rounds; material files of the fss plan run under fss and
/// are refused by a crypten run.
#[test]
fn protocols_fss_runs_in_process_as_processes_and_from_files() {
    let rounds = |out: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with("party 0:")).unwrap();
        line.split("rounds ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let crypten = succeeded(&bin().args(["run"]).output().unwrap());
    let fss = succeeded(&bin().args(["run", "--protocols", "fss"]).output().unwrap());
    assert!(fss.contains("protocols fss"), "{fss}");
    assert!(3 * rounds(&fss) < rounds(&crypten), "{fss}\n{crypten}");
    let procs = bin()
        .args(["run", "--protocols", "fss", "--processes"])
        .output()
        .unwrap();
    let out = succeeded(&procs);
    assert_eq!(rounds(&out), rounds(&fss), "{out}");
    // `--exp spline` reaches both parties of a process run (the job description carries
    // it): the same rounds as in process.
    let spline = [
        "run",
        "--model",
        "bert-small",
        "--protocols",
        "fss",
        "--exp",
        "spline",
    ];
    let inproc = succeeded(&bin().args(spline).output().unwrap());
    let procs = succeeded(&bin().args(spline).arg("--processes").output().unwrap());
    let limit = succeeded(
        &bin()
            .args(["run", "--model", "bert-small", "--protocols", "fss"])
            .output()
            .unwrap(),
    );
    assert_eq!(rounds(&procs), rounds(&inproc), "{procs}");
    assert!(rounds(&inproc) < rounds(&limit), "{inproc}\n{limit}");

    let dir = scratch("fss");
    succeeded(&with_dir(
        &["offline", "--protocols", "fss", "--out"],
        &dir,
        &[],
    ));
    succeeded(&with_dir(
        &["run", "--protocols", "fss", "--material"],
        &dir,
        &[],
    ));
    let o = with_dir(&["run", "--material"], &dir, &[]);
    assert_refused_for_another_plan(&o);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_options_name_the_problem() {
    for (args, needle) in [
        (vec!["run", "--parties", "9"], "--parties"),
        (vec!["run", "--model", "alexnet"], "unknown model"),
        (vec!["run", "--scheme", "pipelined"], "unknown scheme"),
        (vec!["run", "--weights", "secret"], "weights"),
        (vec!["run", "--batch", "0"], "--batch"),
        (
            vec!["run", "--trunc", "exact"],
            "--trunc must be local or dealer",
        ),
        (
            vec!["run", "--parties", "3", "--trunc", "local"],
            "--trunc local needs exactly 2 parties",
        ),
        (
            vec!["run", "--protocols", "garbled"],
            "--protocols must be crypten or fss",
        ),
        (
            vec!["run", "--parties", "3", "--protocols", "fss"],
            "--protocols fss needs exactly 2 parties",
        ),
        (
            vec!["run", "--exp", "spline"],
            "--exp spline needs --protocols fss",
        ),
        (
            vec!["run", "--protocols", "fss", "--exp", "taylor"],
            "--exp must be limit or spline",
        ),
        (
            vec!["costs", "--parties", "2,3", "--protocols", "fss"],
            "--protocols fss needs exactly 2 parties",
        ),
        (
            vec![
                "offline",
                "--out",
                "/nonexistent-mpc-pipe-test/unused",
                "--parties",
                "3",
                "--trunc",
                "local",
            ],
            "--trunc local needs exactly 2 parties",
        ),
    ] {
        let o = bin().args(&args).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: stderr '{err}' should mention {needle}"
        );
    }
}

/// `run --processes` hands the job to its children as one description: every job, link,
/// timeout and material option, each set to a non-default value, reaches every party
/// unchanged (each party writes the job it parsed where `MPC_PIPE_ECHO_JOB_DIR` says).
#[test]
fn run_processes_hands_every_option_to_every_party() {
    let dir = scratch("echo");
    let mat = dir.join("mat");
    let links = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-configs/links.toml");
    let job: Vec<&str> = vec![
        "--model",
        "bert-small",
        "--seq-len",
        "8",
        "--parties",
        "3",
        "--batch",
        "3",
        "--weights",
        "public",
        "--seed",
        "7",
        "--frac-bits",
        "14",
        "--trunc",
        "dealer",
        "--scheme",
        "inner-layer+inter-batch",
        "--chunks",
        "3",
        "--batches-in-flight",
        "3",
        "--lanes",
        "coroutines",
        "--dealer-seed",
        "99",
    ];
    succeeded(
        &bin()
            .arg("offline")
            .args(&job)
            .arg("--out")
            .arg(&mat)
            .env("MPC_PIPE_SESSION_KEY", KEY_HEX)
            .output()
            .unwrap(),
    );
    let o = bin()
        .arg("run")
        .args(&job)
        .args(["--processes", "--timeout-s", "45", "--network", "wan-1g"])
        .arg("--links-file")
        .arg(&links)
        .args(["--latency-ms", "0.2", "--bandwidth-mbps", "5000"])
        .args(["--inbox-cap-mib", "4096", "--insecure-plaintext-channels"])
        .arg("--material")
        .arg(&mat)
        .env("MPC_PIPE_ECHO_JOB_DIR", &dir)
        .env("MPC_PIPE_SESSION_KEY", KEY_HEX)
        .output()
        .unwrap();
    succeeded(&o);
    let expected = serde_json::json!({
        "spec": {
            "model": "bert-small",
            "parties": 3,
            "batch": 3,
            "weights": "public",
            "seed": 7,
            "schedule": {
                "scheme": {"inter_linear": false, "inner_layer": true, "inter_batch": true},
                "chunks": 3,
                "batches_in_flight": 3,
                "lanes": "coroutines"
            },
            "seq_len": 8,
            "dealer_seed": 99
        },
        // 3 parties: `protocols` keeps its default (fss needs 2; the fss test covers it).
        "fixed": {"frac_bits": 14, "trunc": "dealer", "protocols": "crypten"},
        "timeout_s": 45.0,
        "link": {"name": "wan-1g", "bandwidth_mbps": 5000.0, "latency_ms": 0.2},
        "material_dir": mat.to_str().unwrap(),
        "inbox_cap_mib": 4096,
        "plaintext_channels": true
    });
    for id in 0..3 {
        let path = dir.join(format!("party{id}.json"));
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Every key the description has, compared; one the test does not know fails too.
        assert_eq!(got, expected, "party {id}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A run that must fail with a configuration error (exit code 2) naming `needle`.
fn refused_naming(args: &[&str], needle: &str) {
    let o = bin().args(args).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: stderr '{err}' should mention {needle}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn absurd_numbers_are_configuration_errors_naming_the_option() {
    for (args, needle) in [
        (vec!["run", "--timeout-s", "1e30"], "--timeout-s"),
        (vec!["run", "--timeout-s", "-1"], "--timeout-s"),
        (vec!["run", "--timeout-s", "nan"], "--timeout-s"),
        (vec!["run", "--latency-ms", "1e300"], "--latency-ms"),
        (
            vec!["run", "--bandwidth-mbps", "1e-300"],
            "--bandwidth-mbps",
        ),
        (vec!["run", "--batch", "1000000000000"], "--batch"),
        (vec!["run", "--chunks", "1000000000000"], "--chunks"),
        (vec!["run", "--inbox-cap-mib", "0"], "--inbox-cap-mib"),
        (vec!["costs", "--elements", "100000000000000"], "--elements"),
        (vec!["costs", "--elements", "0"], "--elements"),
        (vec!["costs", "--elements", "100"], "--elements"),
        (vec!["netcheck", "--latency-ms", "1e300"], "--latency-ms"),
    ] {
        refused_naming(&args, needle);
    }
}

/// A parties file for 2 parties on loopback, in `dir`, with `extra` appended.
fn parties_file(dir: &Path, extra: &str) -> PathBuf {
    let f = dir.join("parties.toml");
    std::fs::write(
        &f,
        format!("[[party]]\nid = 0\naddr = \"127.0.0.1:1\"\n[[party]]\nid = 1\naddr = \"127.0.0.1:2\"\n{extra}"),
    )
    .unwrap();
    f
}

#[test]
fn party_refuses_hostile_files_and_times_before_it_connects() {
    let dir = scratch("party-probes");
    let f = parties_file(&dir, "");
    let party = |more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["party", "--id", "0", "--session", "1", "--parties"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(f.to_str().unwrap().into());
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let key = "--key=".to_string() + &"ab".repeat(32);
    for (args, needle) in [
        (party(&["--key-file", "/dev/zero"]), "--key-file"),
        (party(&[&key, "--timeout-s", "1e19"]), "--timeout-s"),
        (party(&[&key, "--debug-stall-s=-1"]), "--debug-stall-s"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused_naming(&args, needle);
    }
    // A key file others may read is refused, as ssh refuses such a private key.
    use std::os::unix::fs::PermissionsExt;
    let kf = dir.join("key");
    std::fs::write(&kf, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = party(&["--key-file", kf.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused_naming(&args, "chmod 600");
    // Unknown keys in a parties file (a typo such as `adr`) are refused, naming the file.
    let bad = parties_file(&dir, "[[party]]\nid = 2\nadr = \"127.0.0.1:3\"\n");
    let o = bin()
        .args(["party", "--id", "0", "--session", "1", &key, "--parties"])
        .arg(&bad)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("parties file") && err.contains("adr"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The party that fails is blamed, even though the parties it stops exit before it.
#[test]
fn run_processes_blames_the_party_that_failed_not_the_first_to_exit() {
    let o = bin()
        .args([
            "run",
            "--processes",
            "--model",
            "selftest",
            "--parties",
            "3",
        ])
        .args(["--batch", "2", "--timeout-s", "20"])
        .env("MPC_PIPE_DEBUG_FAIL", "2")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("peer 2 failed during party process") && err.contains("fault injection"),
        "{err}"
    );
}

/// With `--dealer-seed`, parties as separate processes over TCP reveal bit-identical
/// outputs under every scheme and lane mode (the in-process test in tests/bit_identical.rs
/// compares the shares themselves), and the same as in one process.
#[test]
fn processes_reveal_bit_identical_outputs_under_every_scheme() {
    let digest = |args: &[&str]| -> String {
        let o = bin().arg("run").args(args).output().unwrap();
        succeeded(&o);
        let (out, _) = text(&o);
        out.lines()
            .find_map(|l| l.strip_prefix("output_sha256: "))
            .unwrap_or_else(|| panic!("no digest in {out}"))
            .to_string()
    };
    for (model, parties) in [("lenet", "2"), ("lenet", "3"), ("bert-small", "2")] {
        let base = [
            "--model",
            model,
            "--parties",
            parties,
            "--batch",
            "2",
            "--seq-len",
            "4",
            "--dealer-seed",
            "17",
        ];
        let base: Vec<&str> = if model == "lenet" {
            base.iter()
                .copied()
                .filter(|a| *a != "--seq-len" && *a != "4")
                .collect()
        } else {
            base.to_vec()
        };
        let serial = digest(&[&base[..], &["--scheme", "serial"]].concat());
        for (scheme, lanes) in [
            ("serial", "threads"),
            ("inter-linear", "threads"),
            ("inner-layer", "coroutines"),
            ("inter-batch", "threads"),
            ("all", "coroutines"),
        ] {
            let args = [
                &base[..],
                &["--processes", "--scheme", scheme, "--lanes", lanes],
            ]
            .concat();
            assert_eq!(
                digest(&args),
                serial,
                "{model} {parties}p {scheme} {lanes} over TCP"
            );
        }
    }
}

/// Every bench config value that used to panic, abort on allocation or run for ever is a
/// configuration error (exit 2) naming the key and the file, before anything runs; and a
/// config file of unbounded size is refused at its cap without being read whole.
#[test]
fn bench_config_values_out_of_range_are_refused_naming_key_and_file() {
    let dir = scratch("benchcfg");
    let cfg = dir.join("bad.toml");
    let base =
        "models=[\"lenet\"]\nnetworks=[\"local\"]\nschemes=[\"serial\"]\nweights=[\"private\"]\n";
    for (extra, key) in [
        ("timeout_s = -1\nbatches=[1]\nparties=[2]", "timeout_s"),
        ("timeout_s = nan\nbatches=[1]\nparties=[2]", "timeout_s"),
        ("timeout_s = 1e30\nbatches=[1]\nparties=[2]", "timeout_s"),
        ("timeout_s = 0\nbatches=[1]\nparties=[2]", "timeout_s"),
        ("min_time_s = 1e300\nbatches=[1]\nparties=[2]", "min_time_s"),
        ("min_time_s = -0.5\nbatches=[1]\nparties=[2]", "min_time_s"),
        ("batches=[100000000000]\nparties=[2]", "batches"),
        ("batches=[0]\nparties=[2]", "batches"),
        ("batches=[1]\nparties=[100000]", "parties"),
        ("batches=[1]\nparties=[1]", "parties"),
        ("reps = 100000000000000\nbatches=[1]\nparties=[2]", "reps"),
        (
            "warmup = 100000000000000\nbatches=[1]\nparties=[2]",
            "warmup",
        ),
        ("chunks = 100000000000\nbatches=[1]\nparties=[2]", "chunks"),
        (
            "batches_in_flight = 5000\nbatches=[1]\nparties=[2]",
            "batches_in_flight",
        ),
    ] {
        std::fs::write(&cfg, format!("{base}{extra}\n")).unwrap();
        let o = bin()
            .args(["bench", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(dir.join("never.csv"))
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(
            err.contains(key) && err.contains("bad.toml") && !err.contains("panicked"),
            "{extra}: {err}"
        );
        assert!(
            !dir.join("never.csv").exists(),
            "{extra}: a CSV was written"
        );
    }
    let o = bin()
        .args(["bench", "--config", "/dev/zero", "--out"])
        .arg(dir.join("never.csv"))
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("larger than"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
