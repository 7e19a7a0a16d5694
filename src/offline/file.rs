//! On-disk offline material, one file per party, written by `mpc-pipe offline` and read by
//! the online phase. Depends on offline::{dealer, plan}, error, hmac, sha2.
//!
//! Layout (all integers little-endian):
//! ```text
//!   magic        8 bytes  "MPCPMAT\0"
//!   version      u32      FORMAT_VERSION
//!   party        u32
//!   parties      u32
//!   reserved     u32      0
//!   session      u64
//!   plan_hash    32 bytes SHA-256 of the plan (offline::Plan::hash)
//!   seed         16 bytes this party's PRG seed (secret: the file is created mode 0600)
//!   entries      u64      number of plan entries
//!   plan_words   u64      length of the plan section in 8-byte words
//!   corr_words   u64      length of the corrections section in words
//!   plan section          per entry: key, then the request's encoding (Request::encode)
//!   corrections           per entry in plan order, the components the dealer hands this
//!                         party (`Request::dealt_lens`): party 0's corrections, and
//!                         every party's FSS correction words (`--protocols fss`)
//!   mac          32 bytes HMAC-SHA256(material key, everything above)
//! ```
//! The material key is derived from the session key the parties hold (`MaterialKey`), so
//! a file edited on disk or in transit cannot be given a valid tag by anyone without that
//! key; version 1 had a plain SHA-256 checksum that an editor could recompute.
//!
//! Loading refuses, with an error naming the problem, a file that is too short or too long
//! for its header, has another magic or version, belongs to another session, party or
//! plan, or fails its MAC. It never panics on a damaged file and never allocates more
//! than the file's own size.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::dealer::PartyMaterial;
use super::plan::{Plan, Request};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"MPCPMAT\0";
/// Version of the file layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
const HEADER_BYTES: usize = 8 + 4 * 4 + 8 + 32 + 16 + 3 * 8;

/// The key of the material files' MAC: HMAC-SHA256(session key, label), so the session
/// key itself is used for one purpose per label (handshake, channels, material) and a
/// tag made for one purpose never verifies for another.
#[derive(Clone)]
pub struct MaterialKey([u8; 32]);

impl std::fmt::Debug for MaterialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaterialKey(..)")
    }
}

const MATERIAL_LABEL: &[u8] = b"mpc-pipe material mac v2";

impl MaterialKey {
    /// The material key of a session key (the 32 bytes of transport::SessionKey).
    pub fn from_session_key(session_key: &[u8; 32]) -> Self {
        let mut m = new_mac(session_key);
        m.update(MATERIAL_LABEL);
        MaterialKey(m.finalize().into_bytes().into())
    }
    fn mac(&self) -> Hmac<Sha256> {
        new_mac(&self.0)
    }
}

fn new_mac(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key size")
}

/// What the online phase expects of its material file.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The session the run belongs to; `None` accepts the file's session (it is then
    /// checked against the other parties' files by the caller).
    pub session: Option<u64>,
    pub party: usize,
    pub parties: usize,
    /// Hash of the plan the online program will follow.
    pub plan_hash: [u8; 32],
}

/// The conventional file name of a party's material inside a directory.
pub fn party_file(dir: &Path, party: usize) -> std::path::PathBuf {
    dir.join(format!("party{party}.mat"))
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Hmac<Sha256>,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)?;
        Ok(())
    }
    fn put_words(&mut self, words: &[u64]) -> Result<()> {
        let mut buf = Vec::with_capacity(8 * words.len().min(1 << 16));
        for chunk in words.chunks(1 << 16) {
            buf.clear();
            chunk
                .iter()
                .for_each(|w| buf.extend_from_slice(&w.to_le_bytes()));
            self.put(&buf)?;
        }
        Ok(())
    }
}

/// Write `m` to `path` (created with owner-only permissions: it holds a secret seed),
/// authenticated under `key`.
pub fn save(m: &PartyMaterial, path: &Path, key: &MaterialKey) -> Result<()> {
    if m.expanded.is_some() {
        // Party 0's corrections then live inside the expansion: a file of seed and
        // corrections would lack them. Files come from `deal_seeded`, which keeps none.
        return Err(Error::Material(
            "expanded in-process material cannot be saved as a seed file".into(),
        ));
    }
    let mut plan_bytes = Vec::new();
    for (key, req) in &m.plan.entries {
        plan_bytes.extend_from_slice(&key.to_le_bytes());
        req.encode(&mut plan_bytes);
    }
    let corr_words: usize = m
        .plan
        .entries
        .iter()
        .map(|(_, req)| req.dealt_lens(m.party).iter().sum::<usize>())
        .sum();
    // A fresh temporary name beside `path`, created exclusively, owner-only and without
    // following links, then renamed over `path`: an existing file keeps neither its mode
    // (a 0644 file would otherwise stay 0644) nor, if `path` is a symlink, its target (the
    // rename replaces the link, never writes through it), and a crash leaves no half file.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{base}.{}.{:016x}.tmp",
        std::process::id(),
        u64::from_le_bytes(crate::prg::fresh_seed()[..8].try_into().unwrap())
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = opts
        .open(&tmp)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", tmp.display())))?;
    let written = write_body(m, file, key, &plan_bytes, corr_words).and_then(|f| {
        f.sync_all()?;
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::Config(format!(
                "cannot move {} to {}: {e}",
                tmp.display(),
                path.display()
            ))
        })
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The file's contents: written through a MACing writer; the tag last. Returns the file
/// for the caller to sync.
fn write_body(
    m: &PartyMaterial,
    file: File,
    key: &MaterialKey,
    plan_bytes: &[u8],
    corr_words: usize,
) -> Result<File> {
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: key.mac(),
    };
    w.put(MAGIC)?;
    w.put(&FORMAT_VERSION.to_le_bytes())?;
    w.put(&(m.party as u32).to_le_bytes())?;
    w.put(&(m.parties as u32).to_le_bytes())?;
    w.put(&0u32.to_le_bytes())?;
    w.put(&m.session.to_le_bytes())?;
    w.put(&m.plan_hash)?;
    w.put(&m.seed)?;
    w.put(&(m.plan.entries.len() as u64).to_le_bytes())?;
    w.put(&((plan_bytes.len() / 8) as u64).to_le_bytes())?;
    w.put(&(corr_words as u64).to_le_bytes())?;
    w.put(plan_bytes)?;
    for (key, req) in &m.plan.entries {
        let lens = req.dealt_lens(m.party);
        if lens.is_empty() {
            continue;
        }
        let c = m.corrections.get(key).ok_or_else(|| {
            Error::Material(format!(
                "party {} material lacks the dealer's words for operation {key:#018x} ({req:?})",
                m.party
            ))
        })?;
        if c.iter().map(Vec::len).ne(lens.iter().copied()) {
            return Err(Error::Material(format!(
                "the dealer's words for operation {key:#018x} ({req:?}) have the wrong sizes"
            )));
        }
        for comp in c {
            w.put_words(comp)?;
        }
    }
    let tag = w.hash.finalize().into_bytes();
    w.inner.write_all(&tag)?;
    w.inner
        .into_inner()
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
/// The whole hash in hex: a prefix could be the same for two different plans.
fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read and check a party's material file; its MAC under `key` is verified before anything
/// in it is used.
pub fn load(path: &Path, expect: &Expect, key: &MaterialKey) -> Result<PartyMaterial> {
    let name = path.display();
    // Checked before opening: opening a FIFO would block until a writer comes.
    let meta =
        std::fs::metadata(path).map_err(|e| Error::Material(format!("cannot open {name}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::Material(format!(
            "{name} is not a regular file (a directory, FIFO or device): not material"
        )));
    }
    let file = File::open(path).map_err(|e| Error::Material(format!("cannot open {name}: {e}")))?;
    let file_len = file.metadata()?.len();
    load_from(
        BufReader::with_capacity(1 << 20, file),
        file_len,
        &name.to_string(),
        expect,
        key,
    )
}

/// Read and check material of `file_len` bytes from `r` (`name` names it in errors): the
/// loader without the file system, so it is a fuzz target on byte strings.
pub fn load_from<R: Read>(
    mut r: R,
    file_len: u64,
    name: &str,
    expect: &Expect,
    key: &MaterialKey,
) -> Result<PartyMaterial> {
    if file_len < HEADER_BYTES as u64 {
        return Err(Error::Material(format!(
            "{name} is truncated: {file_len} bytes, shorter than the {HEADER_BYTES}-byte header"
        )));
    }
    let mut h = vec![0u8; HEADER_BYTES];
    r.read_exact(&mut h)?;
    if &h[..8] != MAGIC {
        return Err(Error::Material(format!(
            "{name} is not an mpc-pipe offline material file (bad magic)"
        )));
    }
    let version = u32_at(&h, 8);
    if version != FORMAT_VERSION {
        return Err(Error::Material(format!(
            "{name} has format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let (party, parties) = (u32_at(&h, 12) as usize, u32_at(&h, 16) as usize);
    let session = u64_at(&h, 24);
    let plan_hash: [u8; 32] = h[32..64].try_into().unwrap();
    let seed: [u8; 16] = h[64..80].try_into().unwrap();
    let (entries, plan_words, corr_words) = (u64_at(&h, 80), u64_at(&h, 88), u64_at(&h, 96));
    let body_bytes = plan_words
        .checked_add(corr_words)
        .and_then(|w| w.checked_mul(8));
    let expected_len = body_bytes.and_then(|b| b.checked_add(HEADER_BYTES as u64 + 32));
    match expected_len {
        Some(l) if l == file_len => {}
        Some(l) if l > file_len => {
            return Err(Error::Material(format!(
                "{name} is truncated: its header announces {l} bytes, the file has {file_len}"
            )))
        }
        Some(l) => {
            return Err(Error::Material(format!(
                "{name} has {} unexpected trailing bytes after its {l} announced bytes",
                file_len - l
            )))
        }
        None => {
            return Err(Error::Material(format!(
                "{name} has an impossible header (section sizes overflow)"
            )))
        }
    }
    if party != expect.party {
        return Err(Error::Material(format!(
            "{name} holds material for party {party}, but this is party {}",
            expect.party
        )));
    }
    if parties != expect.parties {
        return Err(Error::Material(format!(
            "{name} was made for {parties} parties, this session has {}",
            expect.parties
        )));
    }
    if let Some(s) = expect.session {
        if s != session {
            return Err(Error::Material(format!(
                "{name} belongs to session {session:#018x}, this run is session {s:#018x}"
            )));
        }
    }
    if plan_hash != expect.plan_hash {
        return Err(Error::Material(format!(
            "{name} was made for another plan (hash {}, this program's plan is {}): model, batch, parties or scheme differ",
            hex(&plan_hash),
            hex(&expect.plan_hash)
        )));
    }
    let mut hash = key.mac();
    hash.update(&h);
    let mut read_words = |n: u64, hash: &mut Hmac<Sha256>| -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(n as usize);
        let mut buf = vec![0u8; 8 << 16];
        let mut left = n as usize;
        while left > 0 {
            let take = left.min(1 << 16);
            r.read_exact(&mut buf[..8 * take])?;
            hash.update(&buf[..8 * take]);
            out.extend(
                buf[..8 * take]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
            );
            left -= take;
        }
        Ok(out)
    };
    let plan_section = read_words(plan_words, &mut hash)?;
    let corr_section = read_words(corr_words, &mut hash)?;
    let mut tag = [0u8; 32];
    r.read_exact(&mut tag)?;
    // Constant-time comparison (hmac's verify), so the time taken says nothing about how
    // much of a forged tag was right.
    if hash.verify_slice(&tag).is_err() {
        return Err(Error::Material(format!(
            "{name} fails its MAC (checksum mismatch): it was edited or damaged after `mpc-pipe offline` wrote it, or made with another session key"
        )));
    }
    let damaged = || Error::Material(format!("{name} has a malformed plan section"));
    let mut it = plan_section.into_iter();
    let mut plan_entries = Vec::with_capacity((entries as usize).min(plan_words as usize));
    for _ in 0..entries {
        let key = it.next().ok_or_else(damaged)?;
        let req = Request::decode(&mut it).ok_or_else(damaged)?;
        plan_entries.push((key, req));
    }
    let plan = Plan {
        entries: plan_entries,
        order: Vec::new(),
    };
    if plan.hash() != plan_hash {
        return Err(Error::Material(format!(
            "{name}: the plan section does not match the plan hash in its header"
        )));
    }
    let mut corrections = HashMap::new();
    {
        let mut off = 0usize;
        for (key, req) in &plan.entries {
            let lens = req.dealt_lens(party);
            if lens.is_empty() {
                continue;
            }
            let mut comps = Vec::new();
            for &l in &lens {
                let end = off
                    .checked_add(l)
                    .filter(|&e| e <= corr_section.len())
                    .ok_or_else(|| {
                        Error::Material(format!(
                            "{name}: corrections section too short for the plan"
                        ))
                    })?;
                comps.push(corr_section[off..end].to_vec());
                off = end;
            }
            corrections.insert(*key, comps);
        }
        if off != corr_section.len() {
            return Err(Error::Material(format!(
                "{name}: corrections section longer than the plan needs"
            )));
        }
    }
    Ok(PartyMaterial {
        party,
        parties,
        session,
        plan: Arc::new(plan),
        plan_hash,
        seed,
        corrections,
        expanded: None,
    })
}
