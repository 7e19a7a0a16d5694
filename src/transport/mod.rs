//! Implementations of `comm::Comm`: in-memory endpoints for all parties in one process, and
//! TCP endpoints for one party per process (loopback or remote hosts), both with the link
//! emulator. Depends on comm, link, error (and crossbeam, mio, hmac, sha2, ring).

pub mod bulk;
pub mod emulator;
pub mod frame;
pub mod handshake;
pub mod inbox;
pub mod memory;
pub mod seal;
pub mod tcp;

// Where callers named it before it moved to `crate::link`.
pub use crate::link::LinkProfile;
pub use handshake::SessionKey;
pub use memory::MemoryNetwork;
pub use tcp::{TcpConfig, TcpEndpoint, TcpNetwork};
