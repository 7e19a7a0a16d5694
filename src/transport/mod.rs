//! Implementations of `comm::Comm`: in-memory endpoints for all parties in one process.
//! Depends on comm, error (and crossbeam/mio for the networked transports).

pub mod memory;

pub use memory::MemoryNetwork;
