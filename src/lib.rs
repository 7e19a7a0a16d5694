//! mpc-pipe: secret-sharing MPC for machine-learning inference on CPUs, with the MPC-Pipe
//! pipeline schemes that overlap computation and communication.
//!
//! Layers (dependencies point down only):
//! ```text
//!   cli                      subcommands
//!   bench | report | profile sweeps and their CSV | tables and figures from them | timelines
//!   train                    secure training: data sets, backward passes, SGD, epochs,
//!                            its parties as threads or processes
//!   runtime                  wiring: parties as threads/processes, dealer, timing
//!   sched                    schemes: strategies over the one traversal (lanes, slots)
//!   model | onnx             graph, zoo, f64 and MPC interpreters (the one traversal) |
//!                            ONNX import into that graph, .npy I/O, trained
//!                            weights written back into a copy of the model
//!   proto                    online protocols (Ctx methods), written like the math
//!   comm | offline           message interface | dealer + material
//!   prg | fss                CSPRNG | function secret sharing (DCF keys and evaluation)
//!   link                     link profiles (bandwidth, latency) the emulator applies
//!   lanes                    pipeline lanes as coroutines; the one way to block
//!   kernels                  wrapping u64 GEMM/conv
//!   ring                     Z_2^64 tensors, fixed point, f64 reference tensors
//!   alloc                    the binary's allocator (mimalloc for small blocks, glibc for large)
//! ```
//! `transport` implements `comm::Comm` (emulating `link` profiles) and is plugged in by
//! `runtime`.

pub mod alloc;
pub mod bench;
pub mod cli;
pub mod comm;
pub mod error;
pub mod fss;
pub mod fuzz;
pub mod kernels;
pub mod lanes;
pub mod link;
pub mod model;
pub mod offline;
pub mod onnx;
pub mod prg;
pub mod profile;
pub mod proto;
pub mod report;
pub mod ring;
pub mod runtime;
pub mod sched;
pub mod train;
pub mod transport;

pub use error::{Error, Result};
