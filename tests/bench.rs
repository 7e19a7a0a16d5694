//! The benchmark harness: every required CSV column, rows consistent with their own
//! definitions, and an interrupted sweep resumes without repeating or losing rows (also
//! from a file an older version wrote, with fewer columns).

use std::path::PathBuf;

use mpc_pipe::bench::{csv_out, run_matrix, BenchConfig};
use mpc_pipe::sched::cost::COROUTINE_MAX_ROUND_S;

const REQUIRED: [&str; 26] = [
    "model",
    "batch",
    "parties",
    "weights",
    "network",
    "bandwidth_mbps",
    "latency_ms",
    "scheme",
    "chunks",
    "batches_in_flight",
    "reps",
    "latency_ms_p50",
    "latency_ms_p99",
    "throughput_per_s",
    "online_s",
    "compute_busy_s",
    "comm_wait_s",
    "bytes_per_party",
    "rounds",
    "cpu_util",
    "link_util",
    "max_abs_err",
    "speedup_vs_serial",
    "commit",
    "host",
    "isa",
];

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join("out.csv")
}

const CONFIG: &str = r#"
models = ["lenet"]
networks = ["local", "lan"]
schemes = ["serial", "inner-layer", "inter-batch"]
batches = [2]
parties = [2]
weights = ["private"]
chunks = 2
batches_in_flight = 2
warmup = 0
reps = 2
"#;

#[test]
fn rows_have_every_column_and_consistent_values() {
    let out = scratch("cols");
    let cfg = BenchConfig::parse(CONFIG).unwrap();
    let rows = run_matrix(&cfg, &out).unwrap();
    assert_eq!(rows.len(), 6);
    let header = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    // Columns are only ever appended: the last one is the newest.
    assert_eq!(header.rsplit(',').next(), Some("protocols"), "{header}");
    assert!(rows.iter().all(|r| r.protocols == "crypten"), "{rows:?}");
    // Every scheme of a configuration runs the same protocol calls: the same bytes and
    // rounds as serial, and at least as many messages.
    let serial = rows.iter().find(|r| r.scheme == "serial").unwrap();
    for r in &rows {
        assert_eq!(r.bytes_per_party, serial.bytes_per_party, "{}", r.scheme);
        assert_eq!(r.rounds, serial.rounds, "{}", r.scheme);
        assert!(
            r.messages.unwrap() >= serial.messages.unwrap(),
            "{}",
            r.scheme
        );
    }
    for col in REQUIRED {
        assert!(
            header.split(',').any(|h| h == col),
            "CSV header lacks {col}: {header}"
        );
    }
    // The whole job's phases: one plan recording serves every row of the job (the
    // network and scheme are not part of it), and e2e_s adds the offline phases to each
    // repetition's latency, so its median is at least the median latency.
    for r in &rows {
        let (plan, deal, expand, e2e) = (
            r.plan_s.unwrap(),
            r.deal_s.unwrap(),
            r.expand_s.unwrap(),
            r.e2e_s.unwrap(),
        );
        assert!(plan > 0.0 && deal > 0.0 && expand >= 0.0, "{r:?}");
        assert_eq!(plan, serial.plan_s.unwrap(), "one dry run: {r:?}");
        let latency = r.latency_ms_p50 / 1e3 / r.batch as f64;
        assert!(e2e >= latency * 0.999 && e2e >= plan, "{r:?}");
    }
    for r in &rows {
        // Definitions from the issue: throughput = inferences / online_s; p50 <= p99.
        let want = (r.batch * r.reps) as f64 / r.online_s;
        assert!((r.throughput_per_s - want).abs() <= 1e-9 * want, "{r:?}");
        assert!(r.latency_ms_p50 <= r.latency_ms_p99 * 1.001);
        assert!(r.bytes_per_party > 0 && r.rounds > 0);
        // lenet's output error is ~1e-4 (tests/schemes.rs bounds it at 1.1e-3 against the
        // quantized model, and weight quantization adds at most ~1e-2).
        assert!(r.max_abs_err < 2e-2, "{r:?}");
        if r.scheme == "serial" {
            assert_eq!(r.speedup_vs_serial, Some(1.0));
        }
        assert_eq!(r.link_util.is_some(), r.network == "lan");
        // lenet's material is far below the eager limit: expanded before the clock.
        assert_eq!(r.material, "eager", "{r:?}");
        // No `trunc` key: the 2-party default, CrypTen's local truncation.
        assert_eq!(r.trunc, "local", "{r:?}");
        // No `lanes` key: coroutines exactly when there are no micro-batch lanes or a round
        // computes for less than the threshold, from the row's own T_compute and rounds.
        let per_round = r.t_compute_s / r.rounds as f64;
        let want = if r.batches_in_flight <= 1 || per_round < COROUTINE_MAX_ROUND_S {
            "coroutines"
        } else {
            "threads"
        };
        assert_eq!(r.lanes, want, "{r:?}");
    }
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

/// Each pair of parties has a directed link of its own, so with three parties a party's
/// bytes to its two peers go out in parallel. T_comm is a lower bound on the serial time
/// (each round waits one latency and at least its busiest link's bytes), so it must count
/// the busiest link, not everything a party sends: the latter put 3-party T_comm above the
/// measured serial time (ResNet50 wan: 189 s against 121 s).
#[test]
fn three_party_link_time_counts_the_busiest_link_and_bounds_serial() {
    let out = scratch("three");
    let cfg = BenchConfig::parse(
        r#"
models = ["lenet"]
networks = ["gbit"]
links_file = "bench-configs/links.toml"
schemes = ["serial"]
batches = [1]
parties = [3]
weights = ["private"]
warmup = 0
reps = 2
"#,
    )
    .unwrap();
    let rows = run_matrix(&cfg, &out).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let (bw, link) = (r.bandwidth_mbps.unwrap(), r.link_bytes.unwrap());
    // The busiest link carries at least the average of a party's two links, at most all.
    assert!(
        2 * link >= r.bytes_per_party && link <= r.bytes_per_party,
        "{r:?}"
    );
    // t_comm_s by its definition, from the row's own columns.
    let want = link as f64 * 8.0 / (bw * 1e6) + r.rounds as f64 * r.latency_ms * 1e-3;
    assert!((r.t_comm_s - want).abs() <= 1e-9 * want, "{r:?}");
    // 5% for timer granularity; counting both links against one bandwidth overshoots by
    // the byte term, here about 40%.
    assert!(r.latency_ms_p50 * 1e-3 >= 0.95 * r.t_comm_s, "{r:?}");
    let util = r.link_util.unwrap();
    assert!(util > 0.0 && util <= 1.0, "{r:?}");
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

/// While one sweep writes a file, a second one on the same file is refused with a message
/// that names the file and the holder; once the first is done, the file is free again and
/// no lock file is left behind, after success or failure.
#[test]
fn a_second_sweep_on_the_same_file_is_refused_while_the_first_runs() {
    let out = scratch("lock");
    let cfg = BenchConfig::parse(&CONFIG.replace(r#"["local", "lan"]"#, r#"["local"]"#)).unwrap();
    let held = csv_out::lock(&out).unwrap();
    let e = run_matrix(&cfg, &out).unwrap_err().to_string();
    assert!(
        e.contains(&out.display().to_string())
            && e.contains("another `mpc-pipe bench`")
            && e.contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    assert!(!out.exists(), "a refused sweep must not write rows");
    drop(held);
    let lock_file = PathBuf::from(format!("{}.lock", out.display()));
    assert!(!lock_file.exists(), "the holder removes its lock file");
    assert_eq!(run_matrix(&cfg, &out).unwrap().len(), 3);
    assert!(!lock_file.exists(), "a finished sweep leaves no lock file");
    // A failing sweep (a matrix naming an unknown link) leaves none either.
    let bad = BenchConfig::parse(&CONFIG.replace(r#"["local", "lan"]"#, r#"["nonet"]"#)).unwrap();
    assert!(run_matrix(&bad, &out).is_err());
    assert!(!lock_file.exists(), "a failed sweep leaves no lock file");
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn an_interrupted_sweep_resumes_where_it_stopped() {
    let out = scratch("resume");
    let cfg = BenchConfig::parse(CONFIG).unwrap();
    run_matrix(&cfg, &out).unwrap();
    let full = csv_out::read_rows(&out).unwrap();
    assert_eq!(full.len(), 6);
    // Simulate a crash after four rows: keep the header and the first four lines.
    let text = std::fs::read_to_string(&out).unwrap();
    let kept: Vec<&str> = text.lines().take(5).collect();
    std::fs::write(&out, kept.join("\n") + "\n").unwrap();
    run_matrix(&cfg, &out).unwrap();
    let resumed = csv_out::read_rows(&out).unwrap();
    assert_eq!(
        resumed.len(),
        6,
        "resume must add exactly the two missing rows"
    );
    assert_eq!(
        &resumed[..4],
        &full[..4],
        "finished rows must be kept as they were"
    );
    let keys: Vec<_> = resumed.iter().map(|r| r.key().to_string()).collect();
    let mut uniq = keys.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        keys.len(),
        "no configuration may be repeated: {keys:?}"
    );
    // A complete file: nothing left to run.
    run_matrix(&cfg, &out).unwrap();
    assert_eq!(csv_out::read_rows(&out).unwrap().len(), 6);
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn bad_configs_are_refused_with_the_reason() {
    assert!(BenchConfig::parse("models = []")
        .unwrap_err()
        .contains("missing field"));
    let bad_scheme = CONFIG.replace("\"inter-batch\"]", "\"warp\"]");
    assert!(BenchConfig::parse(&bad_scheme)
        .unwrap_err()
        .contains("unknown scheme"));
    let zero = CONFIG.replace("chunks = 2", "chunks = 0");
    assert!(BenchConfig::parse(&zero).is_err());
    let negative = format!("{CONFIG}min_time_s = -1.0\n");
    assert!(BenchConfig::parse(&negative)
        .unwrap_err()
        .contains("min_time_s"));
    let unknown = format!("{CONFIG}trunc = \"exact\"\n");
    let e = BenchConfig::parse(&unknown).unwrap_err();
    assert!(e.contains("trunc must be") && e.contains("exact"), "{e}");
    let three = format!("{CONFIG}trunc = \"local\"\n").replace("parties = [2]", "parties = [2, 3]");
    let e = BenchConfig::parse(&three).unwrap_err();
    assert!(
        e.contains("needs exactly 2 parties") && e.contains("lists 3"),
        "{e}"
    );
    let ok = format!("{CONFIG}trunc = \"dealer\"\n").replace("parties = [2]", "parties = [2, 3]");
    assert!(BenchConfig::parse(&ok).is_ok());
    let e = BenchConfig::parse(&format!("{CONFIG}batch_of = {{ vgg16 = 4 }}\n")).unwrap_err();
    assert!(e.contains("batch_of") && e.contains("vgg16"), "{e}");
    let e = BenchConfig::parse(&format!("{CONFIG}batch_of = {{ lenet = 0 }}\n")).unwrap_err();
    assert!(e.contains("batch_of") && e.contains("at least 1"), "{e}");
}

/// `batch_of` gives a model its own batch in place of `batches` (peers.toml's W1 and W4);
/// the other models keep `batches`.
#[test]
fn batch_of_replaces_batches_for_its_models() {
    let text = CONFIG.replace("models = [\"lenet\"]", "models = [\"lenet\", \"W3\"]")
        + "batch_of = { lenet = 5 }\n";
    let cfg = BenchConfig::parse(&text).unwrap();
    let points = cfg.points().unwrap();
    assert!(points
        .iter()
        .filter(|p| p.model == "lenet")
        .all(|p| p.batch == 5));
    assert!(points
        .iter()
        .filter(|p| p.model == "W3")
        .all(|p| p.batch == 2));
    assert_eq!(points.len(), 4);
}

#[test]
fn min_time_s_repeats_until_the_online_times_add_up() {
    let out = scratch("mintime");
    let text = CONFIG
        .replace("[\"local\", \"lan\"]", "[\"local\"]")
        .replace(
            "[\"serial\", \"inner-layer\", \"inter-batch\"]",
            "[\"serial\"]",
        )
        + "min_time_s = 0.25\n";
    let cfg = BenchConfig::parse(&text).unwrap();
    let rows = run_matrix(&cfg, &out).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    // At least `reps`, and enough repetitions that their online times reach min_time_s;
    // the one before the last was still short of it.
    assert!(r.reps >= 2, "{r:?}");
    assert!(r.online_s >= 0.25, "{r:?}");
    assert!(
        r.reps == 2 || r.online_s - r.latency_ms_p99 * 1.001e-3 < 0.25,
        "{r:?}"
    );
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn a_file_from_before_the_material_trunc_link_bytes_and_lanes_columns_is_upgraded_and_resumed() {
    let out = scratch("upgrade");
    let cfg = BenchConfig::parse(CONFIG).unwrap();
    run_matrix(&cfg, &out).unwrap();
    // An older version's file: no `material`, `trunc`, `link_bytes`, `lanes`, `messages`,
    // `channels`, `plan_s`, `deal_s`, `expand_s`, `e2e_s`, training (`epoch`, `loss`,
    // `accuracy`) and `protocols` columns, and crashed after four rows.
    let text = std::fs::read_to_string(&out).unwrap();
    let old: Vec<String> = text
        .lines()
        .take(5)
        .map(|l| {
            let mut rest = l;
            for _ in 0..14 {
                rest = rest.rsplit_once(',').unwrap().0;
            }
            rest.to_string()
        })
        .collect();
    assert!(old[0].ends_with(",overlap_efficiency"), "{}", old[0]);
    std::fs::write(&out, old.join("\n") + "\n").unwrap();
    let rows = run_matrix(&cfg, &out).unwrap();
    assert_eq!(rows.len(), 6);
    let read = csv_out::read_rows(&out).unwrap();
    assert_eq!(read.len(), 6);
    // Old rows did not record their material, truncation mode or busiest link; new rows
    // do. The old rows were resumed: an empty trunc is the default for their party count.
    assert!(read[..4].iter().all(|r| r.material.is_empty()), "{read:?}");
    assert!(read[..4].iter().all(|r| r.trunc.is_empty()), "{read:?}");
    assert!(read[..4].iter().all(|r| r.link_bytes.is_none()), "{read:?}");
    assert!(read[..4].iter().all(|r| r.lanes.is_empty()), "{read:?}");
    assert!(read[4..].iter().all(|r| !r.lanes.is_empty()), "{read:?}");
    assert!(read[..4].iter().all(|r| r.e2e_s.is_none()), "{read:?}");
    assert!(read[4..].iter().all(|r| r.e2e_s.is_some()), "{read:?}");
    // Two parties: the one link carries everything a party sends.
    assert!(
        read[4..]
            .iter()
            .all(|r| r.link_bytes == Some(r.bytes_per_party)),
        "{read:?}"
    );
    assert!(read[4..].iter().all(|r| r.material == "eager"), "{read:?}");
    assert!(read[4..].iter().all(|r| r.trunc == "local"), "{read:?}");
    let header = std::fs::read_to_string(&out).unwrap();
    assert!(header.lines().next().unwrap().ends_with(
        ",material,trunc,link_bytes,lanes,messages,channels,plan_s,deal_s,expand_s,e2e_s,epoch,loss,accuracy,protocols"
    ));
    // Old rows ran crypten's protocols and say nothing; the row reads them so.
    assert!(read[..4]
        .iter()
        .all(|r| r.protocols.is_empty() && r.protocols() == "crypten"));
    assert!(
        read[4..].iter().all(|r| r.protocols == "crypten"),
        "{read:?}"
    );
    // Old rows ran in memory and say nothing; new rows say so.
    assert!(read[..4].iter().all(|r| r.channels.is_empty()), "{read:?}");
    assert!(read[4..].iter().all(|r| r.channels == "memory"), "{read:?}");
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

/// `channels = ["sealed", "plaintext"]` runs each configuration over loopback TCP both
/// ways in one sweep: one row per (channels, scheme), each saying which it used, with the
/// same traffic (sealing adds bytes on the wire, not to the protocol's messages) and a
/// correct result; an unknown value is refused naming the key.
#[test]
fn channels_axis_runs_over_sealed_and_plaintext_tcp_and_records_which() {
    let out = scratch("channels");
    let text = CONFIG
        .replace(r#"["local", "lan"]"#, r#"["local"]"#)
        .replace(
            r#"["serial", "inner-layer", "inter-batch"]"#,
            r#"["serial"]"#,
        )
        + "channels = [\"sealed\", \"plaintext\"]\n";
    let cfg = BenchConfig::parse(&text).unwrap();
    let rows = run_matrix(&cfg, &out).unwrap();
    let read = csv_out::read_rows(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(read, rows);
    let chans: Vec<&str> = read.iter().map(|r| r.channels.as_str()).collect();
    assert_eq!(chans, ["sealed", "plaintext"]);
    assert_eq!(read[0].bytes_per_party, read[1].bytes_per_party);
    assert_eq!(read[0].rounds, read[1].rounds);
    // lenet at 16 fractional bits: tests/cli.rs bounds its error at 0.05.
    assert!(read.iter().all(|r| r.max_abs_err < 0.05), "{read:?}");
    // A resumed sweep finds both rows (the channel is part of the row's identity).
    assert_eq!(run_matrix(&cfg, &out).unwrap().len(), 2);
    assert_eq!(csv_out::read_rows(&out).unwrap().len(), 2);
    let e = BenchConfig::parse(&(CONFIG.to_string() + "channels = [\"tls\"]\n")).unwrap_err();
    assert!(e.contains("channels") && e.contains("tls"), "{e}");
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

/// A configuration with another `trunc` is another configuration: its rows are run and
/// appended beside the default's, and each resumes only its own.
#[test]
fn rows_of_another_trunc_mode_are_run_not_resumed() {
    let out = scratch("truncmode");
    let base = CONFIG
        .replace("[\"local\", \"lan\"]", "[\"local\"]")
        .replace(
            "[\"serial\", \"inner-layer\", \"inter-batch\"]",
            "[\"serial\"]",
        )
        .replace("reps = 2", "reps = 1");
    let default = BenchConfig::parse(&base).unwrap();
    let dealer = BenchConfig::parse(&format!("{base}trunc = \"dealer\"\n")).unwrap();
    let local = BenchConfig::parse(&format!("{base}trunc = \"local\"\n")).unwrap();
    run_matrix(&default, &out).unwrap();
    run_matrix(&dealer, &out).unwrap();
    let rows = csv_out::read_rows(&out).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].trunc.as_str(), rows[1].trunc.as_str()),
        ("local", "dealer")
    );
    // One more round per truncation for the dealer's protocol.
    assert!(rows[1].rounds > rows[0].rounds, "{rows:?}");
    assert!(rows[1].max_abs_err < 2e-2, "{rows:?}");
    // Both finished: explicit local is the default's configuration, nothing is rerun.
    run_matrix(&local, &out).unwrap();
    run_matrix(&dealer, &out).unwrap();
    assert_eq!(csv_out::read_rows(&out).unwrap().len(), 2);
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

/// `protocols = ["crypten", "fss"]` is an axis: one row per suite, each saying which it
/// ran, fss with far fewer rounds (1 per ReLU against 9) and within the same error; a
/// rerun resumes both; fss with more than 2 parties or an unknown suite is refused.
#[test]
fn the_protocols_axis_runs_both_suites_and_fss_refuses_three_parties() {
    let out = scratch("protocols");
    let base = CONFIG
        .replace("[\"local\", \"lan\"]", "[\"local\"]")
        .replace(
            "[\"serial\", \"inner-layer\", \"inter-batch\"]",
            "[\"serial\"]",
        )
        .replace("reps = 2", "reps = 1");
    let both = BenchConfig::parse(&format!("{base}protocols = [\"crypten\", \"fss\"]\n")).unwrap();
    run_matrix(&both, &out).unwrap();
    let rows = csv_out::read_rows(&out).unwrap();
    let suites: Vec<&str> = rows.iter().map(|r| r.protocols.as_str()).collect();
    assert_eq!(suites, ["crypten", "fss"], "{rows:?}");
    assert!(rows[1].rounds * 3 < rows[0].rounds, "{rows:?}");
    assert!(rows.iter().all(|r| r.max_abs_err < 2e-2), "{rows:?}");
    run_matrix(&both, &out).unwrap();
    assert_eq!(csv_out::read_rows(&out).unwrap().len(), 2);
    let three = format!("{base}protocols = \"fss\"\n").replace("parties = [2]", "parties = [2, 3]");
    let e = BenchConfig::parse(&three).unwrap_err();
    assert!(
        e.contains("fss") && e.contains("2 parties") && e.contains("lists 3"),
        "{e}"
    );
    let e = BenchConfig::parse(&format!("{base}protocols = \"garbled\"\n")).unwrap_err();
    assert!(
        e.contains("protocols must be") && e.contains("garbled"),
        "{e}"
    );
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn interleaved_schemes_take_the_same_turns() {
    let out = scratch("interleave");
    let text = format!("{CONFIG}interleave = true\nmin_time_s = 0.05\n");
    let cfg = BenchConfig::parse(&text).unwrap();
    let rows = run_matrix(&cfg, &out).unwrap();
    assert_eq!(rows.len(), 6);
    for point in rows.chunks(3) {
        // One repetition per scheme per turn: equal counts, and one T_compute per point.
        assert!(point.iter().all(|r| r.reps == point[0].reps), "{point:?}");
        assert!(point[0].reps >= 2);
        assert!(point.iter().all(|r| r.t_compute_s == point[0].t_compute_s));
        assert!(point[0].t_compute_s > 0.0);
        for r in point {
            let want = (r.batch * r.reps) as f64 / r.online_s;
            assert!((r.throughput_per_s - want).abs() <= 1e-9 * want, "{r:?}");
            assert!(r.max_abs_err < 2e-2, "{r:?}");
        }
    }
    // Resuming a finished interleaved file runs nothing more.
    run_matrix(&cfg, &out).unwrap();
    assert_eq!(csv_out::read_rows(&out).unwrap().len(), 6);
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn the_commit_column_says_dirty_only_when_sources_differ_from_the_commit() {
    let dir = scratch("commit-id").parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("results")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "fn a() {}\n").unwrap();
    std::fs::write(dir.join("results/x.csv"), "a\n").unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(&dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let head = git(&["rev-parse", "--short", "HEAD"]);
    assert_eq!(mpc_pipe::bench::commit_id_of(&dir), head);
    // A sweep appending to results/ leaves the run's commit as it is.
    std::fs::write(dir.join("results/x.csv"), "a\nb\n").unwrap();
    assert_eq!(mpc_pipe::bench::commit_id_of(&dir), head);
    // Changed sources do not build the commit: the column must say so.
    std::fs::write(dir.join("src/lib.rs"), "fn b() {}\n").unwrap();
    assert_eq!(mpc_pipe::bench::commit_id_of(&dir), format!("{head}-dirty"));
    std::fs::remove_dir_all(&dir).ok();
}

/// bench-configs/peers.toml runs the issue's workloads W1..W7 at their own batch sizes, and
/// each built-in workload has the issue's shapes (checked against its definitions, not
/// against the zoo's code paths).
#[test]
fn peers_config_runs_the_issues_workloads() {
    use mpc_pipe::model::zoo;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = BenchConfig::load(&root.join("bench-configs/peers.toml")).unwrap();
    let got: Vec<(String, usize, usize)> = cfg
        .points()
        .unwrap()
        .iter()
        .map(|p| (p.model.clone(), p.batch, p.parties))
        .collect();
    let want: Vec<(String, usize, usize)> = [256, 1, 1, 32, 1, 1, 1]
        .iter()
        .enumerate()
        .map(|(i, &b)| (format!("W{}", i + 1), b, 2))
        .collect();
    assert_eq!(got, want);
    // Per-sample input shapes (batch excluded).
    let shapes: [(&str, &[usize]); 7] = [
        ("W1", &[1024]),
        ("W2", &[1 << 20]),
        ("W3", &[64, 56, 56]),
        ("W4", &[1, 28, 28]),
        ("W5", &[3, 32, 32]),
        ("W6", &[128, 768]),
        ("W7", &[3, 224, 224]),
    ];
    for (m, s) in shapes {
        assert_eq!(zoo::input_shape(m, None).unwrap(), s, "{m}");
    }
    let out = |m: &str, b: usize| zoo::build(m, 1, b).unwrap().output_shape().to_vec();
    assert_eq!(out("W1", 256), [256, 1024]);
    assert_eq!(out("W2", 1), [1, 1 << 20]);
    assert_eq!(out("W3", 1), [1, 64, 56, 56]);
    assert_eq!(out("W4", 32), [32, 10]);
    assert_eq!(out("W5", 1), [1, 10]);
    assert_eq!(out("W6", 1), [1, 128, 768]);
}
