//! Parties as real processes of the `mpc-pipe` binary over loopback TCP: results match the
//! plaintext reference, and a killed or silent party makes every other party exit non-zero,
//! naming the peer and the operation, within the timeout.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpc_pipe::runtime::job::{build, JobSpec};
use mpc_pipe::runtime::process::{spawn_parties, PartiesFile, ProcessRun, KEY_ENV};
use mpc_pipe::transport::SessionKey;

const ULP: f64 = 1.0 / 65536.0;
const EXE: &str = env!("CARGO_BIN_EXE_mpc-pipe");

#[test]
fn three_party_processes_match_the_reference_and_each_other() {
    let spec = JobSpec::new("selftest", 3, 2);
    let job = build(&spec).unwrap();
    let mut run = ProcessRun::new(spec);
    run.exe = Some(PathBuf::from(EXE));
    run.timeout = Duration::from_secs(20);
    let outs = spawn_parties(&run).unwrap();
    assert_eq!(outs.len(), 3);
    // Bound derived in tests/transport_tcp.rs: 4.5 ULP, rounded up to 5.
    for o in &outs {
        assert!(o.value.max_abs_diff(&job.reference) <= 5.0 * ULP);
        assert_eq!(o.value.data(), outs[0].value.data());
        assert!(o.online_s > 0.0);
    }
    // Every byte party i sent to j, j received from i.
    for i in 0..3 {
        for j in 0..3 {
            let (s, r) = (&outs[i].stats.per_peer[j], &outs[j].stats.per_peer[i]);
            assert_eq!(s.bytes_sent, r.bytes_recv, "{i} -> {j}");
            assert_eq!(s.msgs_sent, r.msgs_recv, "{i} -> {j}");
        }
    }
}

/// Start the 3 parties of a session by hand; party 2 stalls before its online phase.
fn start_with_staller(timeout_s: f64) -> (Vec<Child>, mpsc::Receiver<()>, PathBuf) {
    let ls: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<_> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(ls);
    let file = std::env::temp_dir().join(format!(
        "mpc-pipe-test-{}-{}.toml",
        std::process::id(),
        addrs[0].port()
    ));
    PartiesFile::from_addrs(&addrs).save(&file).unwrap();
    let key = SessionKey::fresh();
    let (tx, rx) = mpsc::channel();
    let kids = (0..3)
        .map(|id| {
            let mut c = Command::new(EXE);
            c.args(["party", "--id", &id.to_string(), "--session", "5eed"])
                .arg("--parties")
                .arg(&file)
                .args(["--timeout-s", &timeout_s.to_string()])
                .env(KEY_ENV, key.to_hex())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if id == 2 {
                c.args(["--debug-stall-s", "60"]);
            }
            let mut child = c.spawn().unwrap();
            if id == 2 {
                let err = child.stderr.take().unwrap();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        if line.contains("stalling") {
                            let _ = tx.send(());
                        }
                    }
                });
            }
            child
        })
        .collect();
    (kids, rx, file)
}

/// Wait for a child with a bound; returns (exit success, stderr, elapsed).
fn finish(mut c: Child, bound: Duration) -> (bool, String, Duration) {
    let t = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
            return (st.success(), err, t.elapsed());
        }
        if t.elapsed() > bound {
            let _ = c.kill();
            panic!("party did not exit within {bound:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn killed_party_makes_the_others_fail_naming_it() {
    let timeout_s = 20.0;
    let (mut kids, ready, file) = start_with_staller(timeout_s);
    ready
        .recv_timeout(Duration::from_secs(20))
        .expect("party 2 reached its online phase");
    let mut staller = kids.pop().unwrap();
    let t = Instant::now();
    staller.kill().unwrap();
    staller.wait().unwrap();
    for (id, c) in kids.into_iter().enumerate() {
        let (ok, err, _) = finish(c, Duration::from_secs_f64(timeout_s));
        assert!(!ok, "party {id} reported success");
        assert!(err.contains("peer 2 failed during"), "party {id}: {err}");
        // The operation: a send or a receive of a protocol message, by tag.
        assert!(err.contains("of tag 0x"), "party {id}: {err}");
    }
    // A dead peer is detected at once, not after the timeout.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let _ = std::fs::remove_file(file);
}

#[test]
fn silent_party_makes_the_others_time_out_naming_it() {
    let timeout_s = 1.5;
    let (mut kids, ready, file) = start_with_staller(timeout_s);
    ready
        .recv_timeout(Duration::from_secs(20))
        .expect("party 2 reached its online phase");
    let mut staller = kids.pop().unwrap();
    for (id, c) in kids.into_iter().enumerate() {
        // Each wait is bounded by the timeout; allow process start-up and scheduling slack.
        let (ok, err, took) = finish(c, Duration::from_secs_f64(timeout_s + 5.0));
        assert!(!ok, "party {id} reported success");
        assert!(
            err.contains("timed out after 1.5s waiting for peer 2"),
            "party {id}: {err}"
        );
        assert!(took <= Duration::from_secs_f64(timeout_s + 5.0));
    }
    staller.kill().unwrap();
    staller.wait().unwrap();
    let _ = std::fs::remove_file(file);
}

/// The session key of the material tests (both dealings: the MAC must pass for the
/// mixed-dealing check to be reached).
const KEY_HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// `mpc-pipe offline --out DIR` for the 2-party selftest.
fn offline(dir: &std::path::Path) {
    let st = Command::new(EXE)
        .args([
            "offline",
            "--model",
            "selftest",
            "--parties",
            "2",
            "--batch",
            "2",
        ])
        .arg("--out")
        .arg(dir)
        .env(KEY_ENV, KEY_HEX)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn party_processes_load_their_own_material_files_and_refuse_mixed_dealings() {
    let base = std::env::temp_dir().join(format!("mpc-pipe-mat-{}", std::process::id()));
    let (a, b) = (base.join("a"), base.join("b"));
    offline(&a);
    offline(&b);
    let spec = JobSpec::new("selftest", 2, 2);
    let job = build(&spec).unwrap();
    let mut run = ProcessRun::new(spec);
    run.exe = Some(PathBuf::from(EXE));
    run.timeout = Duration::from_secs(20);
    run.material_dir = Some(a.clone());
    run.key = Some(SessionKey::from_hex(KEY_HEX).unwrap());
    let outs = spawn_parties(&run).unwrap();
    // Bound derived in tests/transport_tcp.rs: 4.5 ULP, rounded up to 5.
    for o in &outs {
        assert!(o.value.max_abs_diff(&job.reference) <= 5.0 * ULP);
    }
    // Party 1's file from another dealing: both files pass their own checks (same plan),
    // but the parties must notice they were not dealt together.
    std::fs::copy(b.join("party1.mat"), a.join("party1.mat")).unwrap();
    match spawn_parties(&run) {
        Err(e) => assert!(
            e.to_string().contains("different `mpc-pipe offline` runs"),
            "{e}"
        ),
        Ok(_) => panic!("mixed dealings were accepted"),
    }
    let _ = std::fs::remove_dir_all(base);
}
