//! `mpc-pipe netcheck`: configured against measured bandwidth and latency of each link
//! profile, over the in-memory and the TCP loopback transport; and, with
//! `--tcp-throughput`, our TCP transport against a plain blocking socket copy between two
//! processes. Depends on transport, runtime::process (parties file), comm.
//!
//! Latency: median round trip of 1-word ping-pongs, halved (one-way). Bandwidth: one party
//! posts a stream of 1 MiB messages; bandwidth = bits / (time of the last delivery - time of
//! the first post - measured one-way latency), which inverts the emulator's formula.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::comm::{Comm, Tag};
use crate::error::{Error, Result};
use crate::link::LinkProfile;
use crate::runtime::process::{PartiesFile, KEY_ENV};
use crate::transport::{MemoryNetwork, SessionKey, TcpConfig, TcpNetwork};

#[derive(Args, Debug, Default)]
pub struct NetcheckArgs {
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
    /// Profiles to check (default: local, lan, wan).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// TOML file of link profiles (e.g. bench-configs/links.toml); default: built-ins.
    #[arg(long)]
    pub links_file: Option<PathBuf>,
    /// Also check a custom link with this bandwidth (Mbit/s).
    #[arg(long)]
    pub bandwidth_mbps: Option<f64>,
    /// Also check a custom link with this one-way latency (ms).
    #[arg(long)]
    pub latency_ms: Option<f64>,
    /// Which transports to measure: memory, tcp or both.
    #[arg(long, default_value = "both")]
    pub transport: String,
    /// Instead: our TCP transport against a plain blocking socket copy, between two
    /// processes on loopback, unshaped.
    #[arg(long)]
    pub tcp_throughput: bool,
    /// Runs of each side of --tcp-throughput (the medians are compared).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Bytes moved by --tcp-throughput.
    #[arg(long, default_value_t = 1 << 30)]
    pub bytes: u64,
    /// Our TCP frames in clear instead of sealed (AEGIS-256X4), to measure what the secure
    /// channels cost.
    #[arg(long)]
    pub insecure_plaintext_channels: bool,
    /// Internal: the child side of --tcp-throughput ("plain:ADDR" or "mpc:PARTIES_FILE").
    #[arg(long, hide = true)]
    pub tput_child: Option<String>,
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct NetRow {
    pub profile: String,
    pub transport: &'static str,
    pub bandwidth_configured_mbps: Option<f64>,
    pub bandwidth_measured_mbps: f64,
    pub latency_configured_ms: f64,
    pub latency_measured_ms: f64,
}

const MSG_WORDS: usize = 1 << 17; // 1 MiB

/// Measure `link` with two endpoints `a` (sender) and `b`.
fn measure(a: &dyn Comm, b: &dyn Comm, link: &LinkProfile) -> Result<(f64, f64)> {
    // Latency: ping-pong; b echoes on its own thread.
    let pings = if link.latency_ms >= 5.0 { 15 } else { 200 };
    let mut rtts = Vec::with_capacity(pings);
    std::thread::scope(|s| -> Result<()> {
        let echo = s.spawn(move || -> Result<()> {
            for i in 0..pings as u64 {
                let v = b.wait(0, Tag(i), 1)?;
                b.post(0, Tag(i), v)?;
            }
            Ok(())
        });
        for i in 0..pings as u64 {
            let t = Instant::now();
            a.post(1, Tag(i), vec![i].into())?;
            a.wait(1, Tag(i), 1)?;
            rtts.push(t.elapsed().as_secs_f64());
        }
        echo.join().unwrap()
    })?;
    rtts.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let one_way_s = rtts[rtts.len() / 2] / 2.0;

    // Bandwidth: enough bytes for ~0.4 s on a shaped link (at least 32 MiB), 256 MiB if
    // unshaped.
    let bytes = match link.bandwidth_mbps {
        Some(bw) => ((bw * 1e6 / 8.0 * 0.4) as usize).max(32 << 20),
        None => 256 << 20,
    };
    let msgs = bytes.div_ceil(MSG_WORDS * 8).max(4);
    let base = 1u64 << 32;
    let payload: Vec<Vec<u64>> = (0..msgs as u64).map(|i| vec![i; MSG_WORDS]).collect();
    let t0 = Instant::now();
    let t_last = std::thread::scope(|s| -> Result<f64> {
        let rx = s.spawn(move || -> Result<f64> {
            for i in 0..msgs as u64 {
                b.wait(0, Tag(base + i), MSG_WORDS)?;
            }
            Ok(t0.elapsed().as_secs_f64())
        });
        for (i, m) in payload.into_iter().enumerate() {
            a.post(1, Tag(base + i as u64), m.into())?;
        }
        rx.join().unwrap()
    })?;
    let bits = (msgs * MSG_WORDS * 64) as f64;
    let bw_mbps = bits / (t_last - one_way_s).max(1e-9) / 1e6;
    Ok((bw_mbps, one_way_s * 1e3))
}

fn profiles(a: &NetcheckArgs) -> Result<Vec<LinkProfile>> {
    let mut ps = if a.profiles.is_empty() {
        match &a.links_file {
            Some(f) => LinkProfile::load_all(f)?,
            None => LinkProfile::builtin(),
        }
    } else {
        a.profiles
            .iter()
            .map(|n| LinkProfile::from_options(Some(n), a.links_file.as_deref(), None, None))
            .collect::<Result<_>>()?
    };
    if a.bandwidth_mbps.is_some() || a.latency_ms.is_some() {
        let c = LinkProfile::from_options(None, None, a.bandwidth_mbps, a.latency_ms)?;
        if a.profiles.is_empty() {
            ps = vec![c];
        } else {
            ps.push(c);
        }
    }
    Ok(ps)
}

/// Measure every profile on the chosen transports.
pub fn check(a: &NetcheckArgs) -> Result<Vec<NetRow>> {
    let (mem, tcp) = match a.transport.as_str() {
        "memory" => (true, false),
        "tcp" => (false, true),
        "both" => (true, true),
        t => {
            return Err(Error::Config(format!(
                "--transport must be memory, tcp or both, not '{t}'"
            )))
        }
    };
    let timeout = Duration::from_secs(60);
    let mut rows = vec![];
    for p in profiles(a)? {
        let row = |transport, (bw, lat)| NetRow {
            profile: p.name.clone(),
            transport,
            bandwidth_configured_mbps: p.bandwidth_mbps,
            bandwidth_measured_mbps: bw,
            latency_configured_ms: p.latency_ms,
            latency_measured_ms: lat,
        };
        if mem {
            let eps = MemoryNetwork::endpoints_with_links(2, timeout, p.clone());
            rows.push(row("memory", measure(&eps[0], &eps[1], &p)?));
        }
        if tcp {
            let (e0, e1) = tcp_pair(&p, timeout, a.insecure_plaintext_channels)?;
            rows.push(row("tcp", measure(&e0, &e1, &p)?));
        }
    }
    Ok(rows)
}

/// Two TCP endpoints of one session in this process, on loopback ports chosen by the OS.
pub fn tcp_pair(
    link: &LinkProfile,
    timeout: Duration,
    plaintext: bool,
) -> Result<(crate::transport::TcpEndpoint, crate::transport::TcpEndpoint)> {
    let ls = [
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    ];
    let addrs = vec![ls[0].local_addr()?, ls[1].local_addr()?];
    let key = SessionKey::fresh();
    let session = crate::runtime::local::fresh_session();
    let [l0, l1] = ls;
    let cfg = |id| {
        let mut c = TcpConfig::new(id, addrs.clone(), session, key.clone());
        c.timeout = timeout;
        c.link = link.clone();
        c.plaintext = plaintext;
        c
    };
    let (c0, c1) = (cfg(0), cfg(1));
    std::thread::scope(|s| {
        let h = s.spawn(move || TcpNetwork::connect_with(&c1, l1));
        let e0 = TcpNetwork::connect_with(&c0, l0);
        let e1 = h.join().unwrap();
        Ok((e0?, e1?))
    })
}

fn fmt_bw(b: Option<f64>) -> String {
    b.map_or_else(|| "unshaped".into(), |b| format!("{b:.1}"))
}

pub fn run(a: &NetcheckArgs) -> Result<()> {
    if let Some(c) = &a.tput_child {
        return tput_child(c, a.bytes, a.insecure_plaintext_channels);
    }
    if a.tcp_throughput {
        return tcp_throughput(a.bytes, a.reps, a.insecure_plaintext_channels);
    }
    let rows = check(a)?;
    if a.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout());
        w.write_record([
            "profile",
            "transport",
            "bandwidth_configured_mbps",
            "bandwidth_measured_mbps",
            "latency_configured_ms",
            "latency_measured_ms",
        ])
        .map_err(|e| Error::Io(e.into()))?;
        for r in &rows {
            w.write_record([
                r.profile.clone(),
                r.transport.to_string(),
                r.bandwidth_configured_mbps
                    .map_or(String::new(), |b| format!("{b}")),
                format!("{:.1}", r.bandwidth_measured_mbps),
                format!("{}", r.latency_configured_ms),
                format!("{:.4}", r.latency_measured_ms),
            ])
            .map_err(|e| Error::Io(e.into()))?;
        }
        w.flush()?;
    } else {
        println!(
            "{:<8} {:<9} {:>14} {:>14} {:>8} {:>13} {:>13} {:>10}",
            "profile",
            "transport",
            "bw_conf_mbps",
            "bw_meas_mbps",
            "bw_err",
            "lat_conf_ms",
            "lat_meas_ms",
            "lat_err_ms"
        );
        for r in &rows {
            let bw_err = r.bandwidth_configured_mbps.map_or("-".into(), |c| {
                format!("{:+.1}%", (r.bandwidth_measured_mbps / c - 1.0) * 100.0)
            });
            println!(
                "{:<8} {:<9} {:>14} {:>14.1} {:>8} {:>13.3} {:>13.4} {:>+10.4}",
                r.profile,
                r.transport,
                fmt_bw(r.bandwidth_configured_mbps),
                r.bandwidth_measured_mbps,
                bw_err,
                r.latency_configured_ms,
                r.latency_measured_ms,
                r.latency_measured_ms - r.latency_configured_ms
            );
        }
    }
    Ok(())
}

/// Chunk of the throughput comparison: one message of ours, one write of the baseline.
const TPUT_CHUNK_WORDS: usize = 1 << 19; // 4 MiB

/// Parent of the throughput comparison: a child process sends `bytes` to us, over a plain
/// blocking socket and over our TCP transport, alternately, `reps` times each; prints every
/// run and the ratio of the median times.
fn tcp_throughput(bytes: u64, reps: usize, plaintext: bool) -> Result<()> {
    let chunks = (bytes as usize).div_ceil(TPUT_CHUNK_WORDS * 8).max(1);
    let total = (chunks * TPUT_CHUNK_WORDS * 8) as f64;
    let gbps = |s: f64| total * 8.0 / s / 1e9;
    let (mut plain, mut ours) = (vec![], vec![]);
    for r in 0..reps.max(1) {
        let p = plain_once(bytes, chunks)?;
        let o = ours_once(bytes, chunks, plaintext)?;
        println!(
            "rep {r}: plain_s={p:.3} ({:.2} Gbit/s)  ours_s={o:.3} ({:.2} Gbit/s)",
            gbps(p),
            gbps(o)
        );
        plain.push(p);
        ours.push(o);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (p, o) = (median(&mut plain), median(&mut ours));
    println!(
        "tcp-throughput bytes={} reps={} plain_s={p:.3} plain_gbps={:.2} ours_s={o:.3} ours_gbps={:.2} ratio={:.3}",
        total as u64,
        plain.len(),
        gbps(p),
        gbps(o),
        p / o
    );
    Ok(())
}

/// One plain blocking socket copy; returns seconds from "go" to the last byte received.
fn plain_once(bytes: u64, chunks: usize) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let total = chunks * TPUT_CHUNK_WORDS * 8;
    let l = TcpListener::bind("127.0.0.1:0")?;
    let mut child = Command::new(&exe)
        .args(["netcheck", "--bytes", &bytes.to_string(), "--tput-child"])
        .arg(format!("plain:{}", l.local_addr()?))
        .stdin(Stdio::null())
        .spawn()?;
    let (mut s, _) = l.accept()?;
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; TPUT_CHUNK_WORDS * 8];
    let mut ready = [0u8; 1];
    s.read_exact(&mut ready)?;
    let t0 = Instant::now();
    s.write_all(b"g")?;
    let mut got = 0usize;
    while got < total {
        let k = s.read(&mut buf)?;
        if k == 0 {
            return Err(Error::Peer {
                peer: 1,
                op: "plain socket copy".into(),
                msg: "closed early".into(),
            });
        }
        got += k;
    }
    let plain_s = t0.elapsed().as_secs_f64();
    s.write_all(b"d")?;
    child.wait()?;
    Ok(plain_s)
}

/// One transfer over our TCP transport (party 1, the child, posts 4 MiB messages to us).
fn ours_once(bytes: u64, chunks: usize, plaintext: bool) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let addrs = vec![
        TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    ];
    let file = std::env::temp_dir().join(format!(
        "mpc-pipe-netcheck-{:016x}.toml",
        crate::runtime::local::fresh_session()
    ));
    PartiesFile::from_addrs(&addrs).save(&file)?;
    let key = SessionKey::fresh();
    let mut child = Command::new(&exe)
        .args(["netcheck", "--bytes", &bytes.to_string(), "--tput-child"])
        .arg(format!("mpc:{}", file.display()))
        .args(plaintext.then_some("--insecure-plaintext-channels"))
        .env(KEY_ENV, key.to_hex())
        .stdin(Stdio::null())
        .spawn()?;
    let mut cfg = TcpConfig::new(0, addrs, 7, key);
    cfg.timeout = Duration::from_secs(60);
    cfg.plaintext = plaintext;
    let ep = TcpNetwork::connect(&cfg)?;
    let _ = std::fs::remove_file(&file);
    ep.wait(1, Tag(u64::MAX - 8), 1)?;
    let t0 = Instant::now();
    ep.post(1, Tag(0), vec![0].into())?;
    for i in 0..chunks as u64 {
        ep.wait(1, Tag(1 + i), TPUT_CHUNK_WORDS)?;
    }
    let ours_s = t0.elapsed().as_secs_f64();
    ep.post(1, Tag(u64::MAX - 7), vec![0].into())?;
    drop(ep);
    child.wait()?;
    Ok(ours_s)
}

/// Child of the throughput comparison: sends the same bytes in 4 MiB pieces, made before the
/// clock starts in both modes (one 1 GiB buffer for the socket copy, 256 owned messages
/// for ours), so only the transports are compared. The plain receiver reuses one buffer;
/// ours hands every message over, so it allocates each one (the API's cost, kept).
fn tput_child(spec: &str, bytes: u64, plaintext: bool) -> Result<()> {
    let chunks = (bytes as usize).div_ceil(TPUT_CHUNK_WORDS * 8).max(1);
    if let Some(addr) = spec.strip_prefix("plain:") {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut go = [0u8; 1];
        // The same distinct bytes our transport sends (not one hot buffer over and over).
        let buf: Vec<u64> = (0..(chunks * TPUT_CHUNK_WORDS) as u64)
            .map(|i| i % TPUT_CHUNK_WORDS as u64)
            .collect();
        let bytes = crate::transport::frame::words_as_bytes(&buf);
        s.write_all(b"r")?;
        s.read_exact(&mut go)?;
        for c in bytes.chunks(TPUT_CHUNK_WORDS * 8) {
            s.write_all(c)?;
        }
        s.read_exact(&mut go)?;
        return Ok(());
    }
    let file = spec
        .strip_prefix("mpc:")
        .ok_or_else(|| Error::Config("bad --tput-child".into()))?;
    let addrs = PartiesFile::load(std::path::Path::new(file))?.addrs()?;
    let key = SessionKey::from_hex(&std::env::var(KEY_ENV).unwrap_or_default())?;
    let mut cfg = TcpConfig::new(1, addrs, 7, key);
    cfg.timeout = Duration::from_secs(60);
    cfg.plaintext = plaintext;
    let ep = TcpNetwork::connect(&cfg)?;
    let msgs: Vec<Vec<u64>> = (0..chunks)
        .map(|_| (0..TPUT_CHUNK_WORDS as u64).collect())
        .collect();
    ep.post(0, Tag(u64::MAX - 8), vec![0].into())?;
    ep.wait(0, Tag(0), 1)?;
    for (i, m) in msgs.into_iter().enumerate() {
        ep.post(0, Tag(1 + i as u64), m.into())?;
    }
    ep.wait(0, Tag(u64::MAX - 7), 1)?;
    Ok(())
}
