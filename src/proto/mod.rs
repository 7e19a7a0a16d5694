//! Online protocols, written as in protocols.md. Depends on ring, kernels, offline
//! (`MaterialSource`), comm and prg. Never on transport, schedulers, threads or clocks.
//!
//! Every protocol is a method of `Ctx`, so model code reads like the math:
//! `let y = ctx.matmul(&x, &w)?; let z = ctx.relu(&y)?;`.

pub mod approx;
pub mod arith;
pub mod compare;
pub mod convert;
pub mod ctx;
pub mod fss;
pub mod linear;
pub mod nn;
pub mod pool;
pub mod products;
pub mod share;
pub mod spline;
pub mod trunc;

pub use ctx::{Ctx, NullComm, PairSeeds};
pub use linear::{LinearKeys, LinearOp, LinearTriple, PreparedLinear};
pub use products::Products;
pub use share::{BinShare, Share};
