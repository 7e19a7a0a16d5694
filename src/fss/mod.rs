//! Function secret sharing: the dealer's keys and the parties' local evaluation of
//! distributed comparison functions (`dcf`), the primitive of the `--protocols fss` suite
//! (proto::fss). Depends on aes, rayon and error only: the dealer (offline) makes keys
//! with it and the online protocols (proto) evaluate them, so it sits beside prg, below
//! both.

pub mod dcf;

pub use dcf::{CorrectionWords, Keys, Layout};

/// Domain of the comparison inside `ltz` under `--protocols fss`: the low 63 bits of the
/// opened x + r (proto::fss derives the sign from them, bit 63 and the mask's top bit), so
/// every 64-bit value is compared exactly; there is no narrower domain to overflow.
pub const LTZ_DCF_BITS: u32 = 63;
