//! Session authentication: the hello every TCP connection opens with. Depends on error (and
//! hmac, sha2).
//!
//! Both sides, symmetrically, on a blocking socket with the session timeout:
//!
//! ```text
//!   1. send hello = magic | version | party | parties | session | fresh 32-byte nonce
//!   2. receive the peer's hello; check magic, version, session, party count and party id
//!   3. send mac = HMAC-SHA256(key, LABEL | my hello | peer hello); verify the peer's mac
//!      over (peer hello | my hello)
//!   4. send a one-byte verdict (0 = accepted, else the reason); receive the peer's verdict
//! ```
//!
//! The mac covers both fresh nonces, so a recorded handshake cannot be replayed, and the
//! sender's hello comes first, so a mac cannot be reflected back. Steps 3 and 4 run even
//! when step 2 already failed, so both sides report the same, specific reason.
//!
//! The hello also says whether the connection's frames will be sealed (`transport::seal`,
//! the default) or plaintext (`--insecure-plaintext-channels`); both ends must agree. The
//! channel keys are HMACs under the session key with a label of their own over both hellos
//! (`ChannelKeys`), so they are fresh per connection and never cross the wire.

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Wire protocol version; bumped on any incompatible change of frames or handshake.
/// 3: heartbeat frames (`frame::KIND_HEARTBEAT`), which version 2 refuses as unknown.
/// 4: frames sealed with AEGIS-256X4 instead of AES-256-GCM (`transport::seal`), so a
/// version-3 peer is refused at the hello rather than at its first frame's tag.
pub const PROTOCOL_VERSION: u32 = 4;
const MAGIC: &[u8; 8] = b"MPCPIPE\0";
const LABEL: &[u8] = b"mpc-pipe session hello v1";
/// Label of the channel keys: distinct from `LABEL`, whose macs cross the wire in clear.
/// v2: frames sealed with AEGIS-256X4 (v1 was AES-256-GCM).
const CHANNEL_LABEL: &[u8] = b"mpc-pipe channel v2";
const HELLO_BYTES: usize = 64;

/// Pre-shared session key (32 bytes). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn fresh() -> Self {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("OS entropy");
        SessionKey(k)
    }

    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Config(
                "a session key is 64 hex digits (32 bytes)".into(),
            ));
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        Ok(SessionKey(k))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Who we are and whom we expect on a connection.
#[derive(Clone, Debug)]
pub struct HelloParams {
    pub party: usize,
    pub parties: usize,
    pub session: u64,
    pub version: u32,
    /// The peer we dialled (Some), or the range we accept from (None: any party with a
    /// higher id, since higher ids dial lower ones).
    pub expect: Option<usize>,
    /// Frames after the handshake go in clear (`--insecure-plaintext-channels`, for
    /// measuring what sealing costs) instead of sealed.
    pub plaintext: bool,
}

/// The keys of one connection's two directions (32 bytes each). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    pub send: [u8; 32],
    pub recv: [u8; 32],
}

impl std::fmt::Debug for ChannelKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKeys(..)")
    }
}

/// What a successful handshake establishes.
#[derive(Debug)]
pub struct Authenticated {
    /// The peer's party id.
    pub party: usize,
    /// The channel keys, or None when both ends chose plaintext channels.
    pub keys: Option<ChannelKeys>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Verdict {
    Ok = 0,
    Version = 1,
    Session = 2,
    Party = 3,
    Auth = 4,
    Parties = 5,
    Channels = 6,
}

impl Verdict {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Verdict::Ok,
            1 => Verdict::Version,
            2 => Verdict::Session,
            3 => Verdict::Party,
            4 => Verdict::Auth,
            5 => Verdict::Parties,
            6 => Verdict::Channels,
            _ => return None,
        })
    }

    fn reason(self) -> &'static str {
        match self {
            Verdict::Ok => "accepted",
            Verdict::Version => "protocol version mismatch",
            Verdict::Session => "session id mismatch",
            Verdict::Party => "unexpected party id",
            Verdict::Auth => "authentication failed (wrong session key)",
            Verdict::Parties => "party count mismatch",
            Verdict::Channels => "one end seals its frames, the other uses plaintext channels (--insecure-plaintext-channels must be given to every party or none)",
        }
    }
}

struct Hello {
    plaintext: bool,
    version: u32,
    party: u32,
    parties: u32,
    session: u64,
}

fn encode_hello(p: &HelloParams, nonce: &[u8; 32]) -> [u8; HELLO_BYTES] {
    let mut h = [0u8; HELLO_BYTES];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&p.version.to_le_bytes());
    h[12..16].copy_from_slice(&(p.party as u32).to_le_bytes());
    h[16..20].copy_from_slice(&(p.parties as u32).to_le_bytes());
    h[20] = p.plaintext as u8;
    h[24..32].copy_from_slice(&p.session.to_le_bytes());
    h[32..].copy_from_slice(nonce);
    h
}

fn decode_hello(h: &[u8; HELLO_BYTES]) -> Option<Hello> {
    if &h[..8] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
    Some(Hello {
        plaintext: h[20] != 0,
        version: u32_at(8),
        party: u32_at(12),
        parties: u32_at(16),
        session: u64::from_le_bytes(h[24..32].try_into().unwrap()),
    })
}

fn mac(key: &SessionKey, first: &[u8], second: &[u8]) -> Hmac<Sha256> {
    labelled_mac(key, LABEL, first, second)
}

fn labelled_mac(key: &SessionKey, label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("any key size");
    m.update(label);
    m.update(first);
    m.update(second);
    m
}

/// How an error of the connection itself (closed, reset, timed out) before the peer's
/// hello arrived begins: the dialler tries again on it (`is_connection_failure`).
const LOST_BEFORE_HELLO: &str = "connection lost before the hello: ";

fn io_err(peer: &str, step: &str, e: std::io::Error) -> Error {
    let why = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out".to_string(),
        std::io::ErrorKind::UnexpectedEof => "connection closed by the peer".to_string(),
        _ => e.to_string(),
    };
    Error::Frame(format!("handshake with {peer} failed while {step}: {why}"))
}

/// Whether `e` says the connection was lost before the peer's hello arrived (nothing was
/// refused: a listener shedding load dropped it), so dialling again may succeed.
pub fn is_connection_failure(e: &Error) -> bool {
    matches!(e, Error::Frame(m) if m.starts_with(LOST_BEFORE_HELLO))
}

/// Run the handshake on `s` (blocking, with the socket's timeouts already set). `peer`
/// names the other end for messages. Returns the authenticated peer's party id and the
/// connection's channel keys.
pub fn handshake<S: Read + Write>(
    s: &mut S,
    p: &HelloParams,
    key: &SessionKey,
    peer: &str,
) -> Result<Authenticated> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).expect("OS entropy");
    let mine = encode_hello(p, &nonce);
    let lost = |e: Error| match e {
        Error::Frame(m) => Error::Frame(format!("{LOST_BEFORE_HELLO}{m}")),
        other => other,
    };
    s.write_all(&mine)
        .map_err(|e| lost(io_err(peer, "sending the hello", e)))?;
    let mut theirs = [0u8; HELLO_BYTES];
    s.read_exact(&mut theirs)
        .map_err(|e| lost(io_err(peer, "reading the hello", e)))?;
    let Some(h) = decode_hello(&theirs) else {
        return Err(Error::Frame(format!(
            "handshake with {peer} failed: the peer does not speak the mpc-pipe protocol"
        )));
    };
    let peer_name = format!("party {} at {peer}", h.party);
    let party_ok = match p.expect {
        Some(e) => h.party as usize == e,
        None => (h.party as usize) > p.party && (h.party as usize) < p.parties,
    };
    let mut verdict = if h.version != p.version {
        Verdict::Version
    } else if h.session != p.session {
        Verdict::Session
    } else if h.parties as usize != p.parties {
        Verdict::Parties
    } else if !party_ok {
        Verdict::Party
    } else if h.plaintext != p.plaintext {
        Verdict::Channels
    } else {
        Verdict::Ok
    };
    let tag = mac(key, &mine, &theirs).finalize().into_bytes();
    s.write_all(&tag)
        .map_err(|e| io_err(&peer_name, "sending the authenticator", e))?;
    let mut their_tag = [0u8; 32];
    s.read_exact(&mut their_tag)
        .map_err(|e| io_err(&peer_name, "reading the authenticator", e))?;
    if mac(key, &theirs, &mine).verify_slice(&their_tag).is_err() && verdict == Verdict::Ok {
        verdict = Verdict::Auth;
    }
    s.write_all(&[verdict as u8])
        .and_then(|_| s.flush())
        .map_err(|e| io_err(&peer_name, "sending the verdict", e))?;
    let mut v = [0u8; 1];
    let their_verdict = s.read_exact(&mut v).map(|_| Verdict::from_byte(v[0]));
    if verdict != Verdict::Ok {
        let detail = match verdict {
            Verdict::Version => format!("it speaks version {}, we speak {}", h.version, p.version),
            Verdict::Session => {
                format!("its session is {:#x}, ours is {:#x}", h.session, p.session)
            }
            Verdict::Parties => format!("it has {} parties, we have {}", h.parties, p.parties),
            Verdict::Channels => format!(
                "it {} plaintext channels, we {}",
                if h.plaintext { "asks for" } else { "refuses" },
                if p.plaintext {
                    "ask for them"
                } else {
                    "refuse them"
                }
            ),
            Verdict::Party => match p.expect {
                Some(e) => format!("we dialled party {e}"),
                None => format!(
                    "we are party {} and accept only parties {}..{}",
                    p.party,
                    p.party + 1,
                    p.parties
                ),
            },
            _ => "its authenticator does not verify under our session key".into(),
        };
        return Err(Error::Frame(format!(
            "refused {peer_name}: {} ({detail})",
            verdict.reason()
        )));
    }
    match their_verdict {
        Ok(Some(Verdict::Ok)) => Ok(Authenticated {
            party: h.party as usize,
            keys: (!p.plaintext).then(|| ChannelKeys {
                send: labelled_mac(key, CHANNEL_LABEL, &mine, &theirs)
                    .finalize()
                    .into_bytes()
                    .into(),
                recv: labelled_mac(key, CHANNEL_LABEL, &theirs, &mine)
                    .finalize()
                    .into_bytes()
                    .into(),
            }),
        }),
        Ok(Some(v)) => Err(Error::Frame(format!(
            "{peer_name} refused our hello: {}",
            v.reason()
        ))),
        Ok(None) => Err(Error::Frame(format!(
            "{peer_name} sent an invalid handshake verdict"
        ))),
        Err(e) => Err(io_err(&peer_name, "reading the verdict", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hex_round_trips_and_debug_hides_it() {
        let k = SessionKey::fresh();
        assert_eq!(SessionKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(!format!("{k:?}").contains(&k.to_hex()[..8]));
        assert!(SessionKey::from_hex("abc").is_err());
    }
}
