//! The offline phase: a trusted dealer turns a recorded plan of requests into per-party
//! correlated randomness (Beaver, AND and square triples, random bits, truncation masks).
//! Never timed with the online phase. Depends on ring, kernels, prg, error.
//!
//! Flow: a dry run of the program over a `RecordingSource` yields a `Plan`; `dealer::deal`
//! turns it into one `PartyMaterial` per party (party 0 gets corrections, every party a
//! seed); `PartyMaterial::expand` produces the `MaterialStore` the online phase reads by key.

pub mod dealer;
pub mod file;
pub mod material;
pub mod plan;

pub use dealer::{deal, deal_seeded, deal_with, dealer_seeds, PartyMaterial};
pub use material::{
    AndTriple, BitPair, FssLtzKeys, Material, MaterialSource, MaterialStore, RecordingSource,
    SquarePair, Taken, Triple, TruncMask, Words,
};
pub use plan::{DealerWork, Part, Plan, Request, Window};
