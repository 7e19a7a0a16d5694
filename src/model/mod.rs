//! Models as graphs (`graph`, their constants stored compactly: ring::constant), the
//! built-in zoo (`zoo`), and the graph's two interpreters:
//! `plain` (f64 reference) and `mpc` (protocol calls on a `Ctx`, with an `Exec` choosing
//! lanes). Depends on proto and ring; never on transport or schedulers.
//!
//! Weights belong to the model owner, party 0, which secret-shares them for free (PRZS)
//! when `Weights::Private`; with `Weights::Public` every party knows them and linear layers
//! are local products. Inputs belong to the data owner, the last party.

pub mod backward;
pub mod graph;
pub mod mpc;
pub mod plain;
pub mod zoo;

pub use crate::ring::Constant;
pub use graph::{Graph, GraphBuilder, Node, Op, TensorId};

use crate::error::{Error, Result};

/// Who knows the model weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// Secret-shared by party 0; linear layers use Beaver triples.
    Private,
    /// Known to every party; linear layers are local products.
    Public,
}

impl std::str::FromStr for Weights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "private" => Ok(Weights::Private),
            "public" => Ok(Weights::Public),
            _ => Err(Error::Config(format!(
                "weights must be 'private' or 'public', got '{s}'"
            ))),
        }
    }
}
