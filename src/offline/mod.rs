//! The offline phase: a trusted dealer turns a recorded plan of requests into per-party
//! correlated randomness (Beaver, AND and square triples, random bits, truncation masks).
//! Never timed with the online phase (a streamed run's dealer runs beside it and is timed
//! apart, see stream.rs). Depends on ring, kernels, prg, fss, error.
//!
//! Flow: a dry run of the program over a `RecordingSource` yields a `Plan`; `dealer::deal`
//! turns it into one `PartyMaterial` per party (party 0 gets corrections, every party a
//! seed); `PartyMaterial::expand` produces the `MaterialStore` the online phase reads by key.
//! In one process, a plan too large to hold is dealt by `stream::StreamDealer` instead,
//! key by key in first-use order while the online phase runs.

pub mod dealer;
pub mod file;
pub mod material;
pub mod plan;
pub mod stream;

pub use dealer::{deal, deal_key, deal_seeded, deal_with, dealer_seeds, PartyMaterial};
pub use material::{
    AndTriple, BitPair, FssLtzKeys, FssMicKeys, Material, MaterialSource, MaterialStore,
    ProductMasks, RecordingSource, SquarePair, Taken, Triple, TruncMask, Words,
};
pub use plan::{DealerWork, Part, Plan, Request, Window};
pub use stream::{StreamDealer, StreamSource, StreamStats};
