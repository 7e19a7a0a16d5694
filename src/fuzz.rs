//! Fuzz target bodies: one function per parser that reads bytes from a peer or a file. Each
//! takes arbitrary bytes, must never panic, abort or hang, and asserts the property that
//! makes its parser safe (a panic here is a finding). The cargo-fuzz targets in `fuzz/`
//! call these, and `tests/fuzz_corpus.rs` runs each over its committed corpus
//! (`fuzz/corpus/<target>/`) in the normal test suite. Depends on transport, offline,
//! bench::config, runtime::process (parties file), onnx, error.

use crate::comm::Tag;
use crate::error::Error;
use crate::offline::file::{self, Expect, MaterialKey};
use crate::transport::frame::{self, Decoder, Event};
use crate::transport::handshake::{handshake as run_handshake, HelloParams, PROTOCOL_VERSION};
use crate::transport::seal::{Opener, Sealer};
use crate::transport::SessionKey;

/// A target body: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory and cargo-fuzz binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decoder", frame_decoder),
    ("handshake", handshake),
    ("seal_record", seal_record),
    ("material_file", material_file),
    ("bench_config", bench_config),
    ("parties_file", parties_file),
    ("onnx_model", onnx_model),
    ("npy_file", npy_file),
];

/// Feed `bytes` to `d` in pieces whose sizes come from `splits` (cycled), collecting the
/// events until the first error.
fn feed_split(d: &mut Decoder, bytes: &[u8], splits: &[u8]) -> (Vec<Event>, Option<Error>) {
    let mut events = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let k = splits
            .get(i % splits.len().max(1))
            .map_or(rest.len(), |&s| s as usize + 1)
            .min(rest.len());
        i += 1;
        if let Err(e) = d.feed(&rest[..k]) {
            return (events, Some(e));
        }
        rest = &rest[k..];
        while let Some(e) = d.next_event() {
            events.push(e);
        }
    }
    (events, None)
}

/// The frame decoder on plaintext channels: the first byte picks the frame cap (so small
/// caps are exercised), the next four the split sizes. It may only fail with a frame error,
/// and once failed it stays failed.
pub fn frame_decoder(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let cap = 8 * (1 + data[0] as usize % 64);
    let mut d = Decoder::new(cap).with_message_cap(1 << 16);
    let (_, err) = feed_split(&mut d, &data[5..], &data[1..5]);
    if let Some(e) = err {
        assert!(matches!(e, Error::Frame(_)), "not a frame error: {e:?}");
        assert!(
            d.feed(&[0u8; 16]).is_err(),
            "a failed decoder accepted more"
        );
    }
}

/// The fixed key of the record-layer target.
const FUZZ_KEY: [u8; 32] = [0x42; 32];

/// The secure channel's record layer under an attacker who controls the wire: a valid
/// sealed stream of three messages is edited as the input says (pairs of position and
/// XOR byte, then bytes to append) and fed to a sealed decoder. Whatever it accepts must
/// be a prefix of what was sent, unchanged: no edit yields a message that was not sealed.
pub fn seal_record(data: &[u8]) {
    let sent: Vec<(u64, Vec<u64>)> = vec![
        (3, vec![1, 2, 3]),
        (4, vec![]),
        (5, (0..40).map(|i| i * 0x9e37_79b9).collect()),
    ];
    let mut sealer = Sealer::new(&FUZZ_KEY);
    let mut wire = Vec::new();
    for (tag, words) in &sent {
        // 64-byte frames: the third message spans several sealed frames.
        for (start, len, fin) in frame::frames_of(words.len(), 64) {
            let mut f = frame::header(
                frame::KIND_DATA,
                if fin { frame::FLAG_FIN } else { 0 },
                8 * len,
                Tag(*tag),
            )
            .to_vec();
            f.extend_from_slice(&frame::words_as_bytes(&words[start..start + len]));
            sealer.seal(&mut f, frame::HEADER_BYTES);
            wire.extend_from_slice(&f);
        }
    }
    let n_edits = data.first().map_or(0, |&b| (b % 8) as usize);
    let mut edits = data.get(1..).unwrap_or(&[]).chunks_exact(3);
    let mut changed = false;
    for e in edits.by_ref().take(n_edits) {
        let at = u16::from_le_bytes([e[0], e[1]]) as usize % wire.len();
        changed |= e[2] != 0;
        wire[at] ^= e[2];
    }
    let tail = &data[(1 + 3 * n_edits).min(data.len())..];
    wire.extend_from_slice(tail);
    let mut d = Decoder::new(64)
        .sealed(Opener::new(&FUZZ_KEY))
        .with_message_cap(1 << 16);
    let (events, err) = feed_split(&mut d, &wire, &[7, 200, 31]);
    assert!(events.len() <= sent.len(), "more messages than were sent");
    for (ev, (tag, words)) in events.iter().zip(&sent) {
        match ev {
            Event::Msg(t, w) => assert!(t.0 == *tag && w == words, "a message was altered"),
            other => panic!("an event that was never sent: {other:?}"),
        }
    }
    if !changed && tail.is_empty() {
        assert!(err.is_none() && events.len() == sent.len(), "{err:?}");
    }
    if let Some(e) = err {
        assert!(matches!(e, Error::Frame(_)), "not a frame error: {e:?}");
    }
}

/// A stream whose reads come from the fuzz input and whose writes are discarded.
struct Scripted<'a>(&'a [u8]);

impl std::io::Read for Scripted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

impl std::io::Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The handshake, listening side and dialling side, against a peer that sends the input:
/// without the session key no input is authenticated, so every run ends in an error (a
/// frame error, as the transport reports them).
pub fn handshake(data: &[u8]) {
    let key = SessionKey([0x17; 32]);
    for expect in [None, Some(1)] {
        let p = HelloParams {
            party: if expect.is_some() { 2 } else { 0 },
            parties: 3,
            session: 0x5e55,
            version: PROTOCOL_VERSION,
            expect,
            plaintext: data.first().is_some_and(|b| b & 1 == 1),
        };
        match run_handshake(&mut Scripted(data), &p, &key, "fuzz") {
            Ok(a) => panic!("a stranger was authenticated as party {}", a.party),
            Err(e) => assert!(matches!(e, Error::Frame(_)), "{e:?}"),
        }
    }
}

/// The material file loader on the input as a whole file: refused with a material or I/O
/// error unless it is a file MACed under the fuzz key (the corpus holds such files, so
/// the fuzzer starts from accepted files and mutates them; any accepted mutation would
/// be a forged MAC).
pub fn material_file(data: &[u8]) {
    let expect = Expect {
        session: None,
        party: data.get(12).map_or(0, |&p| p as usize % 4),
        parties: data.get(16).map_or(2, |&p| p as usize),
        plan_hash: data
            .get(32..64)
            .and_then(|h| h.try_into().ok())
            .unwrap_or([0; 32]),
    };
    let key = MaterialKey::from_session_key(&FUZZ_KEY);
    match file::load_from(data, data.len() as u64, "fuzz.mat", &expect, &key) {
        Ok(m) => {
            // Accepted: it must be exactly what `save` would write for what was read.
            let dir = std::env::temp_dir().join(format!("mpc-pipe-fuzz-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join("resave.mat");
            file::save(&m, &path, &key).expect("re-save");
            let again = std::fs::read(&path).expect("re-read");
            let _ = std::fs::remove_dir_all(&dir);
            assert!(
                again == data,
                "an accepted file differs from its own re-save"
            );
        }
        Err(Error::Material(_) | Error::Io(_)) => {}
        Err(e) => panic!("unexpected error kind: {e:?}"),
    }
}

/// The bench config parser, then the matrix it describes: a configuration error or a
/// valid matrix, never a panic.
pub fn bench_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = crate::bench::BenchConfig::parse(text) {
        // Only the built-in link names: a links file would be read from disk.
        if c.links_file.is_none() {
            let _ = c.points();
        }
        let _ = c.fixed_lanes();
    }
}

/// The parties file parser and its id checks (addresses given as host names are not
/// resolved here: that would ask the system resolver).
pub fn parties_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = crate::runtime::process::PartiesFile::parse(text) {
        if p.party
            .iter()
            .all(|e| e.addr.parse::<std::net::SocketAddr>().is_ok())
        {
            if let Ok(addrs) = p.addrs() {
                assert_eq!(addrs.len(), p.party.len());
            }
        }
    }
}

/// The ONNX importer: a graph or a configuration error.
pub fn onnx_model(data: &[u8]) {
    match crate::onnx::import(data, None, "fuzz.onnx") {
        Ok(_) | Err(Error::Config(_)) => {}
        Err(e) => panic!("unexpected error kind: {e:?}"),
    }
}

/// The .npy reader: a tensor whose element count matches its shape, or an error.
pub fn npy_file(data: &[u8]) {
    if let Ok((t, _)) = crate::onnx::npy::parse(data) {
        assert_eq!(t.shape().iter().product::<usize>(), t.data().len());
        assert!(t.data().iter().all(|v| v.is_finite()));
    }
}
