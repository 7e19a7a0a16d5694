//! `mpc-pipe report`: a small hand-written CSV fixture (tests/fixtures/report/small.csv,
//! with an extra column this version does not know, and two hand-written traces) renders
//! report.md with the values worked out by hand below and SVG figures that parse as XML and
//! name every series and axis; a CSV with a missing column or an unparsable value is
//! refused naming file, row and column, and nothing is left behind in DIR.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpc-pipe-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every text node of an SVG (which must parse as XML).
fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect()
}

fn assert_names(path: &Path, names: &[&str]) {
    let texts = svg_texts(path);
    for n in names {
        assert!(
            texts.iter().any(|t| t == n),
            "{} does not name {n:?}; its texts: {texts:?}",
            path.display()
        );
    }
}

fn render(out: &Path) -> String {
    let csv = fixture().join("small.csv");
    let r = mpc_pipe::report::render(&[csv], out, "mpc-pipe report small.csv").unwrap();
    assert_eq!(r.report, out.join("report.md"));
    std::fs::read_to_string(out.join("report.md")).unwrap()
}

#[test]
fn fixture_renders_tables_with_hand_computed_gains_and_eta() {
    let out = scratch("tables");
    let md = render(&out);
    // Row 4: inner-layer 15 inf/s against serial's 10 (+50.0%), p50 80 ms against 100
    // (-20.0%); η's room 0.1 - max(0.05, 0.02) = 50% of T_serial, so the CSV's 0.40 shows.
    // Its spread over repetitions as throughput: batch 1 / 85 ms = 11.765/s at p99,
    // 1 / 80 ms = 12.500/s at p50.
    assert!(
        md.contains(
            "| inner-layer | 4 | 1 | threads | 5 | 80.0 | 85.0 | -20.0% | 15.000 (11.765–12.500) | +50.0% | 0.40 |"
        ),
        "{md}"
    );
    // Row 6: serial p50 200 ms, T_comm 0.194 s: room 0.006 s = 3.0% < 5%, so the 0.33 the
    // CSV holds is not printed. Spread: 1 / 205 ms = 4.878/s, 1 / 198 ms = 5.051/s.
    assert!(
        md.contains("| -1.0% | 5.050 (4.878–5.051) | +1.0% | n/a (room 3.0% of T_serial < 5%) |"),
        "{md}"
    );
    assert!(!md.contains("| 0.33 |"), "{md}");
    // Row 10 was measured at another commit than the rest of its configuration.
    assert!(
        md.contains("differ in commit: aaa1111 (serial, inter-linear); abc9999 (inner-layer)"),
        "{md}"
    );
    // Every table names its rows, file, commit and host.
    assert!(
        md.contains("small.csv rows 2-4; commit aaa1111; host fixture-host"),
        "{md}"
    );
    // The headline puts the paper's figures beside the best row.
    assert!(
        md.contains(
            "| throughput against serial | +50.0% | +50.0% | toy · inner-layer (2p, private,"
        ),
        "{md}"
    );
    assert!(
        md.contains("| p50 latency against serial | -16.0% | -20.0% |"),
        "{md}"
    );
    // No latency sweep in the fixture: said in words, no empty figure.
    assert!(md.contains("No rows: no configuration in these files was measured at two or more values of latency"), "{md}");
    // Nothing of the temporary folder is left.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".report"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn fixture_figures_parse_as_xml_and_name_every_series_and_axis() {
    let out = scratch("figures");
    let md = render(&out);
    let figs = out.join("figures");
    let mut svgs: Vec<String> = std::fs::read_dir(&figs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    svgs.sort();
    let want = [
        "chunks.svg",
        "gain-latency-lan-1g.svg",
        "gain-latency-lan.svg",
        "gain-throughput-lan-1g.svg",
        "gain-throughput-lan.svg",
        "parties.svg",
        "utilization-toy-b1-n2-private-lan-local.svg",
    ];
    for w in want {
        assert!(svgs.iter().any(|s| s == w), "no {w} in {svgs:?}");
        assert!(
            md.contains(&format!("(figures/{w})")),
            "report.md does not show {w}"
        );
    }
    let sweep = svgs
        .iter()
        .find(|s| s.starts_with("sweep-bandwidth-"))
        .unwrap_or_else(|| panic!("no bandwidth sweep in {svgs:?}"));
    for s in &svgs {
        svg_texts(&figs.join(s));
    }
    let schemes = ["inter-linear", "inner-layer"];
    assert_names(
        &figs.join("gain-throughput-lan.svg"),
        &[
            schemes[0],
            schemes[1],
            "paper: up to +50%",
            "throughput gain over serial (%)",
            // Category labels: one per configuration.
            "toy · 2p · private",
            "toy · 3p · private",
        ],
    );
    assert_names(
        &figs.join(sweep),
        &[
            "serial",
            schemes[0],
            schemes[1],
            "link bandwidth (Mbit/s, log scale)",
            // Both panels span a decade or more over a sweep: log-scale y, said in the label.
            "latency per batch (ms, log scale)",
            "throughput (inferences/s, log scale)",
        ],
    );
    assert_names(
        &figs.join("parties.svg"),
        &[
            schemes[0],
            schemes[1],
            "parties",
            "throughput gain over serial (%)",
        ],
    );
    assert_names(
        &figs.join("chunks.svg"),
        &[
            "2p · private",
            "chunks per layer k",
            "p50 latency / serial's (×)",
        ],
    );
    assert_names(
        &figs.join("utilization-toy-b1-n2-private-lan-local.svg"),
        &[
            "compute lanes busy or ready, party 0 (100% = one lane)",
            "link into party 0 (% of bandwidth)",
            "utilization (%)",
        ],
    );
}

fn header() -> String {
    std::fs::read_to_string(fixture().join("small.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_missing_column_is_refused_naming_file_row_and_column() {
    let dir = scratch("missing");
    let text = std::fs::read_to_string(fixture().join("small.csv")).unwrap();
    // Drop the latency_ms_p99 column from every line.
    let idx = header()
        .split(',')
        .position(|c| c == "latency_ms_p99")
        .unwrap();
    let cut: String = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(idx);
            f.join(",") + "\n"
        })
        .collect();
    let csv = dir.join("no-p99.csv");
    std::fs::write(&csv, cut).unwrap();
    let out = dir.join("out");
    let err = mpc_pipe::report::render(std::slice::from_ref(&csv), &out, "x")
        .err()
        .expect("a file without latency_ms_p99 is refused")
        .to_string();
    assert!(err.contains(&csv.display().to_string()), "{err}");
    assert!(err.contains("row 1"), "{err}");
    assert!(err.contains("`latency_ms_p99`"), "{err}");
    assert!(!out.exists(), "a failed render left {}", out.display());
}

#[test]
fn an_unparsable_value_is_refused_with_exit_code_2_and_the_old_report_kept() {
    let dir = scratch("bad");
    let text = std::fs::read_to_string(fixture().join("small.csv")).unwrap();
    let idx = header()
        .split(',')
        .position(|c| c == "throughput_per_s")
        .unwrap();
    // Line 3 of the file (the second row) gets "fast" for its throughput.
    let bad: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
            if i == 2 {
                f[idx] = "fast".into();
            }
            f.join(",") + "\n"
        })
        .collect();
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, bad).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("report.md"), "old report\n").unwrap();
    let good = fixture().join("small.csv");
    let o = Command::new(env!("CARGO_BIN_EXE_mpc-pipe"))
        .arg("report")
        .arg(&good)
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&csv.display().to_string()), "{stderr}");
    assert!(stderr.contains("row 3"), "{stderr}");
    assert!(stderr.contains("`throughput_per_s`"), "{stderr}");
    assert!(stderr.contains("\"fast\""), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        "old report\n"
    );
    let entries: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["report.md".to_string()]);
}

#[test]
fn other_csvs_are_listed_and_skipped() {
    let dir = scratch("other");
    let kernels = dir.join("kernels.csv");
    std::fs::write(&kernels, "run,shape,gmacs\n1,a,2.0\n").unwrap();
    let out = dir.join("out");
    let r = mpc_pipe::report::render(&[fixture().join("small.csv"), kernels.clone()], &out, "x");
    assert!(r.is_ok(), "{:?}", r.err().map(|e| e.to_string()));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains(&format!(
            "| {} | 0 |  |  |  | not recorded | skipped: not a bench CSV",
            kernels.display()
        )),
        "{md}"
    );
}

/// The sweep configs vary one link quantity and hold the other, so their rows form the
/// report's sweeps (checked against links.toml, not against the report's code).
#[test]
fn sweep_configs_vary_only_their_quantity() {
    // `links_file` is relative to the package root, where cargo runs tests.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, bandwidth_varies) in [("sweep-bandwidth", true), ("sweep-latency", false)] {
        let cfg =
            mpc_pipe::bench::BenchConfig::load(&root.join(format!("bench-configs/{name}.toml")))
                .unwrap();
        let points = cfg.points().unwrap();
        let mut bw: Vec<String> = points
            .iter()
            .map(|p| format!("{:?}", p.link.bandwidth_mbps))
            .collect();
        let mut lat: Vec<String> = points
            .iter()
            .map(|p| format!("{}", p.link.latency_ms))
            .collect();
        bw.dedup();
        lat.dedup();
        let (varies, fixed) = if bandwidth_varies {
            (bw, lat)
        } else {
            (lat, bw)
        };
        assert!(varies.len() >= 3, "{name}: {varies:?}");
        assert_eq!(fixed.len(), 1, "{name}: {fixed:?}");
    }
}

/// `bench` with a trace directory keeps one timeline per measured row, named so that the
/// report pairs serial with the pipelined scheme of the same configuration.
#[test]
fn bench_traces_feed_the_utilization_figure() {
    let dir = scratch("bench-traces");
    let cfg = mpc_pipe::bench::BenchConfig::parse(
        r#"
models = ["lenet"]
networks = ["lan"]
schemes = ["serial", "inner-layer"]
batches = [2]
parties = [2]
weights = ["private"]
chunks = 2
warmup = 0
reps = 1
"#,
    )
    .unwrap();
    let csv = dir.join("t.csv");
    let traces = dir.join("traces");
    mpc_pipe::bench::run_matrix_traced(&cfg, &csv, Some(&traces)).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&traces)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "trace-lenet-b2-n2-private-lan-local--inner-layer.json".to_string(),
            "trace-lenet-b2-n2-private-lan-local--serial.json".to_string(),
        ]
    );
    let out = dir.join("out");
    mpc_pipe::report::render(&[csv], &out, "x").unwrap();
    assert_names(
        &out.join("figures/utilization-lenet-b2-n2-private-lan-local.svg"),
        &[
            "compute lanes busy or ready, party 0 (100% = one lane)",
            "link into party 0 (% of bandwidth)",
        ],
    );
}

/// The peers comparison: another system's CSV (a `system` column, as
/// scripts/compare-crypten.sh writes) is read beside bench rows, and each workload's whole
/// job is set against ours, e2e_s × batch (worked out by hand: 0.0008 s × 256 = 0.2048 s
/// against CrypTen's 0.6144 s is 3.0×). A workload we have no row for says so; a file of
/// that kind without a needed column is refused naming it.
#[test]
fn a_peers_csv_is_set_beside_our_whole_job() {
    let dir = scratch("peers");
    let ours = dir.join("mpc-pipe.csv");
    std::fs::write(
        &ours,
        "model,batch,parties,weights,network,latency_ms,scheme,chunks,batches_in_flight,reps,\
         latency_ms_p50,latency_ms_p99,throughput_per_s,commit,host,e2e_s\n\
         W1,256,2,private,local,0,serial,1,1,3,150.0,160.0,1706.7,abc,vm,0.0008\n",
    )
    .unwrap();
    let theirs = dir.join("crypten.csv");
    let head = "model,system,workload,batch,parties,weights,provider,threads_per_party,reps,\
                e2e_s,e2e_s_min,e2e_s_max,online_s,max_abs_err,commit,host,command\n";
    std::fs::write(
        &theirs,
        format!(
            "{head}W1,crypten,matmul,256,2,private,TFP,1,3,0.6144,0.6,0.7,0.5,1e-3,c,vm,x\n\
             W2,crypten,relu,1,2,private,TFP,1,3,1.8,1.7,1.9,1.7,1e-5,c,vm,x\n"
        ),
    )
    .unwrap();
    let out = dir.join("out");
    mpc_pipe::report::render(&[ours.clone(), theirs.clone()], &out, "x").unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let want = format!(
        "| W1 | crypten | 0.614 (0.600–0.700, 3) | 0.205 (serial) | 0.150 | 3.0× | {}:2, {}:2; host vm |",
        theirs.display(),
        ours.display()
    );
    assert!(md.contains(&want), "{want}\n{md}");
    assert!(
        md.contains("| W2 | crypten | 1.800 (1.700–1.900, 3) | – | – | – |"),
        "{md}"
    );
    // The figure names its series, axis and bar, and its ratio bar (3.0×) and reference
    // line sit where the axis puts them: nothing else is checked by hand here. A serial row
    // alone has no gain: no gain figure and no headline row for it.
    let fig = out.join("figures/peers.svg");
    assert_names(
        &fig,
        &[
            "against our whole job (plan, dealer, expansion, online)",
            "against our online time",
            "their whole job / ours (×; above 1: ours is faster)",
            "W1 · crypten · ours serial",
            "equal time",
        ],
    );
    assert!(md.contains("](figures/peers.svg)"), "{md}");
    assert!(!out.join("figures/gain-throughput-local.svg").exists());
    assert!(!md.contains("| W1 | local |"), "{md}");
    // A peers CSV lacking e2e_s is refused, naming the file and the column.
    std::fs::write(
        &theirs,
        "model,system,batch,parties,reps,host\nW1,crypten,1,2,3,vm\n",
    )
    .unwrap();
    let e = match mpc_pipe::report::render(&[ours, theirs.clone()], &dir.join("out2"), "x") {
        Ok(_) => panic!("a peers CSV without e2e_s was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&theirs.display().to_string()) && e.contains("e2e_s"),
        "{e}"
    );
}

/// Elements of an SVG stroked in `colour` (plotters writes "#RRGGBB").
fn stroked(path: &Path, colour: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    doc.descendants()
        .filter(|n| n.attribute("stroke") == Some(colour))
        .count()
}

/// The colour the report draws whiskers in (report::figures).
const WHISKER: &str = "#222222";

/// Timing figures show the spread over repetitions: the gain bars carry a whisker per bar
/// (three strokes each: the bar and its two caps), the sweep's latency and throughput
/// points error bars, and the legends say what the whiskers are.
#[test]
fn timing_figures_show_their_spread_over_repetitions() {
    let out = scratch("spread");
    render(&out);
    let figs = out.join("figures");
    // lan holds four non-serial rows with latencies (2p: inter-linear, inner-layer; 3p:
    // the same): four whiskers of three strokes, and the legend's glyph of three.
    let gain = figs.join("gain-throughput-lan.svg");
    assert_eq!(stroked(&gain, WHISKER), 4 * 3 + 3, "{}", gain.display());
    assert_names(
        &gain,
        &["whisker: batch / p99 latency to batch / p50 latency"],
    );
    assert_names(
        &figs.join("gain-latency-lan.svg"),
        &["whisker: p50 to p99 latency"],
    );
    let sweep = std::fs::read_dir(&figs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sweep-bandwidth-")
        })
        .unwrap();
    assert_names(
        &sweep,
        &[
            "throughput (bar: batch / p99 latency to batch / p50 latency)",
            "latency p50 (bar: p50 to p99)",
        ],
    );
}

fn train_fixture() -> PathBuf {
    fixture().join("train.csv")
}

/// Training rows (a reduced copy of a real `bench-configs/train-digits.sh` run: serial,
/// inner-layer and the f64 reference, three epochs each) get a table of their own, worked
/// out by hand: samples/s is the median over epochs with min–max (serial 720.9, 858.0,
/// 864.2: 858.0; inner-layer 1044.1, 1064.6, 1033.0: 1044.1, +21.7% over serial's median,
/// 1044.1 / 858.0 = 1.2169), the last epoch's loss and test accuracy (0.8333... = 83.33%);
/// they are not inference rows (no duplicate scheme rows in the inference tables), and
/// their figures name every series and axis.
#[test]
fn training_rows_get_their_own_table_and_figures() {
    let out = scratch("training");
    let r = mpc_pipe::report::render(
        &[fixture().join("small.csv"), train_fixture()],
        &out,
        "mpc-pipe report small.csv train.csv",
    )
    .unwrap();
    let md = std::fs::read_to_string(&r.report).unwrap();
    for want in [
        "### Training: digits-cnn · custom · 2 parties",
        "| serial | 1 | 1 | 3 | 858.0 (720.9–864.2) | – | 0.4019 | 83.33% | rows 2-4 |",
        "| inner-layer | 2 | 1 | 3 | 1044.1 (1033.0–1064.6) | +21.7% | 0.3962 | 83.33% | rows 5-7 |",
        "| plaintext (f64) | – | – | 3 | 16731.6 (16117.8–16750.4) | – | 0.3999 | 83.33% | rows 8-10 |",
    ] {
        assert!(md.contains(want), "no {want:?} in\n{md}");
    }
    assert!(!md.contains("### digits-cnn"), "{md}");
    assert!(!md.contains("a scheme appears more than once"), "{md}");
    let figs = out.join("figures");
    let curves = std::fs::read_dir(&figs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("training-") && n != "training-throughput.svg"
        })
        .expect("a loss and accuracy figure");
    assert_names(
        &curves,
        &[
            "serial",
            "inner-layer",
            "plaintext (f64)",
            "epoch",
            "cross-entropy loss",
            "test accuracy (%)",
        ],
    );
    let thr = figs.join("training-throughput.svg");
    assert_names(
        &thr,
        &[
            "serial",
            "inner-layer",
            "training samples/s (median over epochs)",
            "whisker: slowest to fastest epoch",
            "digits-cnn · 4000 Mbit/s, 0.05 ms · 2p · b32",
        ],
    );
    // Two MPC runs, one whisker (three strokes) each, and the legend's glyph.
    assert_eq!(stroked(&thr, WHISKER), 2 * 3 + 3);
    // A file of training rows alone renders too, naming the script that wrote it when the
    // README beside it records one.
    let alone = scratch("training-alone");
    let copy = alone.join("train-digits.csv");
    std::fs::copy(train_fixture(), &copy).unwrap();
    std::fs::write(
        alone.join("README.md"),
        "Made by `sh bench-configs/train-digits.sh results/train-digits.csv` on vm.\n",
    )
    .unwrap();
    let r = mpc_pipe::report::render(std::slice::from_ref(&copy), &alone, "x").unwrap();
    assert!(alone.join("figures/training-throughput.svg").is_file());
    let md = std::fs::read_to_string(r.report).unwrap();
    assert!(
        md.contains("| `sh bench-configs/train-digits.sh results/train-digits.csv` |"),
        "{md}"
    );
    // An epoch that is not a number is refused naming file, row and column, and nothing
    // is left in DIR.
    let bad = alone.join("bad-train.csv");
    let text = std::fs::read_to_string(train_fixture()).unwrap();
    std::fs::write(
        &bad,
        text.replacen(",local,memory,2,", ",local,memory,two,", 1),
    )
    .unwrap();
    let out = alone.join("out");
    let err = mpc_pipe::report::render(std::slice::from_ref(&bad), &out, "x")
        .err()
        .expect("an unparsable epoch is refused")
        .to_string();
    assert!(
        err.contains(&format!("{} row 3 column `epoch`", bad.display())),
        "{err}"
    );
    assert!(!out.exists());
}

/// One file of training runs on two links (a sweep, as results/train-links.csv) gives each
/// link its own loss and accuracy figure: a figure named for the file and model alone was
/// written once per link, each overwriting the last, and report.md linked one file many times.
#[test]
fn training_runs_on_two_links_get_a_figure_each() {
    let dir = scratch("training-links");
    let text = std::fs::read_to_string(train_fixture()).unwrap();
    let mut lines = text.lines();
    let head = lines.next().unwrap();
    let mpc: Vec<&str> = lines.filter(|l| l.contains(",custom,")).collect();
    let mut csv = format!("{head}\n");
    for l in &mpc {
        csv += &format!("{l}\n");
    }
    for l in &mpc {
        csv += &format!("{}\n", l.replacen(",4000.0,0.05,", ",10000.0,0.02,", 1));
    }
    let file = dir.join("links.csv");
    std::fs::write(&file, csv).unwrap();
    let out = dir.join("out");
    let r = mpc_pipe::report::render(std::slice::from_ref(&file), &out, "x").unwrap();
    let md = std::fs::read_to_string(&r.report).unwrap();
    let curves: Vec<String> = std::fs::read_dir(out.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("training-") && n != "training-throughput.svg")
        .collect();
    assert_eq!(curves.len(), 2, "{curves:?}");
    for name in &curves {
        assert_eq!(
            md.matches(name.as_str()).count(),
            1,
            "{name} linked once in\n{md}"
        );
    }
    assert!(md.contains("4000 Mbit/s, 0.05 ms one-way"), "{md}");
    assert!(md.contains("10000 Mbit/s, 0.02 ms one-way"), "{md}");
}

/// A `protocols` column splits configurations by suite (both suites shown, never
/// averaged), and a file without it is the CrypTen-style suite: no suite in its titles.
#[test]
fn rows_of_two_protocol_suites_are_two_configurations() {
    let dir = scratch("protocols");
    let csv = dir.join("suites.csv");
    let head = "model,batch,parties,weights,network,bandwidth_mbps,latency_ms,scheme,chunks,\
                batches_in_flight,reps,latency_ms_p50,latency_ms_p99,throughput_per_s,commit,host,protocols\n";
    std::fs::write(
        &csv,
        format!(
            "{head}toy,1,2,private,wan,400,20,serial,1,1,3,100,110,10,c,h,crypten\n\
             toy,1,2,private,wan,400,20,inner-layer,4,1,3,90,95,11,c,h,crypten\n\
             toy,1,2,private,wan,400,20,serial,1,1,3,50,55,20,c,h,fss\n\
             toy,1,2,private,wan,400,20,inner-layer,4,1,3,40,42,25,c,h,fss\n"
        ),
    )
    .unwrap();
    let out = dir.join("out");
    mpc_pipe::report::render(std::slice::from_ref(&csv), &out, "x").unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("### toy · wan · 2 parties · private weights\n"),
        "{md}"
    );
    assert!(
        md.contains("### toy · wan · 2 parties · private weights · fss protocols\n"),
        "{md}"
    );
    // Each suite's gain against its own serial row: 11/10 and 25/20.
    assert!(md.contains("| +10.0% |"), "{md}");
    assert!(md.contains("| +25.0% |"), "{md}");
    assert_names(
        &out.join("figures/gain-throughput-wan.svg"),
        &["toy · 2p · private", "toy · 2p · private · fss"],
    );
    // small.csv has no `protocols` column: its titles name no suite.
    let md = render(&scratch("protocols-absent"));
    assert!(!md.contains("protocols\n"), "{md}");
}

/// Rows of one configuration at 2, 3 and 4 parties get a latency and throughput curve
/// against parties, every scheme serial included, beside the gain figure.
#[test]
fn three_party_counts_draw_latency_and_throughput_against_parties() {
    let dir = scratch("parties");
    let csv = dir.join("scaling.csv");
    let mut text = String::from(
        "model,batch,parties,weights,network,bandwidth_mbps,latency_ms,scheme,chunks,\
         batches_in_flight,reps,latency_ms_p50,latency_ms_p99,throughput_per_s,commit,host,trunc\n",
    );
    for (n, serial_ms) in [(2, 100.0), (3, 150.0), (4, 210.0)] {
        let fast: f64 = serial_ms * 0.8;
        text.push_str(&format!(
            "toy,4,{n},private,lan,10000,0.1,serial,1,1,3,{serial_ms},{},{},c,h,dealer\n\
             toy,4,{n},private,lan,10000,0.1,inter-batch,1,4,3,{fast},{},{},c,h,dealer\n",
            serial_ms * 1.1,
            4000.0 / serial_ms,
            fast * 1.1,
            4000.0 / fast
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.join("out");
    let r = mpc_pipe::report::render(std::slice::from_ref(&csv), &out, "x").unwrap();
    let curve = r
        .figures
        .iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("parties-")
        })
        .unwrap_or_else(|| panic!("no parties- figure in {:?}", r.figures));
    assert_names(
        curve,
        &[
            "serial",
            "inter-batch",
            "parties",
            "latency per batch (ms)",
            "throughput (inferences/s)",
        ],
    );
    assert!(out.join("figures/parties.svg").is_file());
}

/// bench-configs/scaling-parties.toml varies the party count alone (2, 3, 4), so its rows
/// form the report's party curves.
#[test]
fn the_party_scaling_config_varies_only_the_party_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = mpc_pipe::bench::BenchConfig::load(&root.join("bench-configs/scaling-parties.toml"))
        .unwrap();
    let points = cfg.points().unwrap();
    let mut parties: Vec<usize> = points.iter().map(|p| p.parties).collect();
    parties.sort_unstable();
    parties.dedup();
    assert_eq!(parties, vec![2, 3, 4]);
    let rest: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {:?} {}",
                p.model, p.batch, p.link.name, p.weights, p.trunc
            )
        })
        .collect();
    assert!(rest.iter().all(|r| *r == rest[0]), "{rest:?}");
}

/// Networks with one configuration each (the points of a sweep) share one gain figure,
/// each group of bars naming its network and link, instead of a figure apiece.
#[test]
fn networks_with_one_configuration_share_one_gain_figure() {
    let dir = scratch("one-config");
    let csv = dir.join("sweep.csv");
    std::fs::write(
        &csv,
        "model,batch,parties,weights,network,bandwidth_mbps,latency_ms,scheme,chunks,\
         batches_in_flight,reps,latency_ms_p50,latency_ms_p99,throughput_per_s,commit,host\n\
         toy,1,2,private,bw-1g,1000,0.1,serial,1,1,3,100,110,10,c,h\n\
         toy,1,2,private,bw-1g,1000,0.1,inner-layer,4,1,3,90,95,11,c,h\n\
         toy,1,2,private,bw-3g,3000,0.1,serial,1,1,3,50,55,20,c,h\n\
         toy,1,2,private,bw-3g,3000,0.1,inner-layer,4,1,3,40,42,25,c,h\n",
    )
    .unwrap();
    let out = dir.join("out");
    mpc_pipe::report::render(std::slice::from_ref(&csv), &out, "x").unwrap();
    let figs = out.join("figures");
    assert!(!figs.join("gain-throughput-bw-1g.svg").exists());
    assert!(!figs.join("gain-throughput-bw-3g.svg").exists());
    assert_names(
        &figs.join("gain-throughput-one-configuration-links.svg"),
        &[
            "toy · 2p · private · bw-1g (1000 Mbit/s, 0.1 ms one-way)",
            "toy · 2p · private · bw-3g (3000 Mbit/s, 0.1 ms one-way)",
            "inner-layer",
        ],
    );
}
