//! Function secret sharing: the dealer's keys and the parties' local evaluation of
//! distributed comparison functions (`dcf`), the primitive of the `--protocols fss` suite
//! (proto::fss), and the fixed-key AES under it (`aes`: VAES, AES-NI or the aes crate,
//! with kernels fused with it in `gen_vaes`, `eval_vaes`). Depends on aes, rayon,
//! core::arch and error only: the dealer (offline) makes keys with it and the online
//! protocols (proto) evaluate them, so it sits beside prg, below both.

pub mod aes;
pub mod dcf;
mod eval_vaes;
mod gen_vaes;

pub use dcf::{CorrectionWords, Keys, Layout};

/// Domain of the comparison inside `ltz` under `--protocols fss`: the low 63 bits of the
/// opened x + r (proto::fss derives the sign from them, bit 63 and the mask's top bit), so
/// every 64-bit value is compared exactly; there is no narrower domain to overflow.
pub const LTZ_DCF_BITS: u32 = 63;

/// The key layout of proto::fss's gate: one payload word for `ltz`, two for ReLU (the
/// sign's and the mask-times-sign's, so ReLU needs no product round).
pub fn ltz_layout(relu: bool) -> Layout {
    Layout {
        bits: LTZ_DCF_BITS,
        width: 1 + usize::from(relu),
    }
}

/// Domain of the multiple-interval-containment gate (proto::spline): the whole 64-bit
/// ring, so every input, however large, falls in exactly one piece.
pub const MIC_DCF_BITS: u32 = 64;

/// The key layout of proto::spline's gate: [z < r] over 64 bits, payload 1 (one word).
pub fn mic_layout() -> Layout {
    Layout {
        bits: MIC_DCF_BITS,
        width: 1,
    }
}
