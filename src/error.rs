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
