//! Crate-wide error type. Depends on std only (and thiserror).
//!
//! Errors name the peer and the operation where one is involved, and never carry secret
//! values (shares, masks, seeds): only shapes, ids and sizes.

use thiserror::Error;

/// Every failure mpc-pipe reports. Messages are for humans; variants are for callers.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad user input: options, config files, model names, shapes requested on the CLI.
    #[error("configuration error: {0}")]
    Config(String),
    /// Offline material that does not fit this session, party or plan, or is damaged.
    #[error("offline material refused: {0}")]
    Material(String),
    /// A peer failed or disconnected while we were doing `op`.
    #[error("peer {peer} failed during {op}: {msg}")]
    Peer {
        peer: usize,
        op: String,
        msg: String,
    },
    /// A peer stayed silent longer than the configured timeout.
    #[error("timed out after {secs:.1}s waiting for peer {peer} during {op}")]
    Timeout { peer: usize, op: String, secs: f64 },
    /// A malformed, oversized or unauthenticated frame or handshake.
    #[error("frame error: {0}")]
    Frame(String),
    /// Tensor shapes that do not fit the operation.
    #[error("shape error: {0}")]
    Shape(String),
    /// A protocol invariant was violated (wrong message length, unknown tag, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Operating-system I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The same error, for a failure several lanes report (a weight preparation every
    /// micro-batch waits for): the kind and message are kept, an I/O error's by its kind.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Config(m) => Error::Config(m.clone()),
            Error::Material(m) => Error::Material(m.clone()),
            Error::Peer { peer, op, msg } => Error::Peer {
                peer: *peer,
                op: op.clone(),
                msg: msg.clone(),
            },
            Error::Timeout { peer, op, secs } => Error::Timeout {
                peer: *peer,
                op: op.clone(),
                secs: *secs,
            },
            Error::Frame(m) => Error::Frame(m.clone()),
            Error::Shape(m) => Error::Shape(m.clone()),
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Crate result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a shape error with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}

/// Longest span in seconds a time option accepts (about 11.6 days). Nothing real waits
/// longer, and well beyond it a `Duration` from f64 panics (1e30 s) or `Instant + d`
/// overflows (1e19 s).
pub const MAX_SECONDS: f64 = 1e6;

/// The value of the time option `option` (seconds) as a `Duration`, refused with a
/// configuration error naming the option unless it is finite, at most `MAX_SECONDS`, and
/// positive (or zero when `zero_ok`).
pub fn seconds_option(option: &str, v: f64, zero_ok: bool) -> Result<std::time::Duration> {
    let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
    if !(v.is_finite() && low_ok && v <= MAX_SECONDS) {
        let least = if zero_ok { "at least 0" } else { "above 0" };
        return Err(Error::Config(format!(
            "{option} must be a number of seconds {least} and at most {MAX_SECONDS:e}, got {}",
            number(v)
        )));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// `v` as a person would write it: 1e30 rather than thirty-one digits.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-3..1e6).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Read the user-named file `path` (`what` says which option or file it is) as UTF-8,
/// refusing one larger than `cap` bytes without reading past the cap (so `/dev/zero` or
/// a huge file costs no memory). Errors are configuration errors naming the file.
pub fn read_capped(path: &std::path::Path, cap: u64, what: &str) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    if buf.len() as u64 > cap {
        return Err(Error::Config(format!(
            "{what} {} is larger than {cap} bytes: refused",
            path.display()
        )));
    }
    String::from_utf8(buf)
        .map_err(|_| Error::Config(format!("{what} {} is not UTF-8 text", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_option_refuses_what_would_panic_or_overflow() {
        for v in [
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e19,
            1e30,
            MAX_SECONDS * 1.01,
        ] {
            let e = seconds_option("--timeout-s", v, true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--timeout-s"), "{v}: {e}");
        }
        assert!(seconds_option("--timeout-s", 0.0, false).is_err());
        assert_eq!(
            seconds_option("--x", 0.0, true).unwrap(),
            std::time::Duration::ZERO
        );
        assert_eq!(
            seconds_option("--x", 2.5, false).unwrap(),
            std::time::Duration::from_millis(2500)
        );
    }

    #[test]
    fn read_capped_stops_at_the_cap() {
        let e = read_capped(std::path::Path::new("/dev/zero"), 1 << 10, "key file")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("larger than 1024 bytes") && e.contains("/dev/zero"),
            "{e}"
        );
    }
}
