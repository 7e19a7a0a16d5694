//! Bulk elementwise ring ops on slices (add, sub, mul, scale, xor, and, shifts), compiled
//! once per ISA rung from the same loop bodies: under `target_feature` LLVM vectorises them
//! (vpmullq for the products on AVX-512, a vpmuludq sequence on AVX2). Add/xor/shift are
//! memory-bound and gain little; the products are where the wider rungs pay (see
//! `mpc-pipe kernels --elementwise`). Depends on std::arch only.

use super::{BinFn, ParFn};

/// The elementwise kernels of one rung.
#[derive(Clone, Copy)]
pub(crate) struct EwSet {
    pub add: BinFn,
    pub sub: BinFn,
    pub mul: BinFn,
    pub xor: BinFn,
    pub and: BinFn,
    pub scale: ParFn,
    /// out += a·k: one row of B, scaled, into a row of C (the few-rows GEMM).
    pub axpy: ParFn,
    pub shl: ParFn,
    pub shr_logical: ParFn,
    pub shr_arith: ParFn,
}

macro_rules! bodies {
    ($($attr:meta)?) => {
        #[inline(always)]
        fn bin(out: &mut [u64], a: &[u64], b: &[u64], f: impl Fn(u64, u64) -> u64) {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
        #[inline(always)]
        fn par(out: &mut [u64], a: &[u64], f: impl Fn(u64) -> u64) {
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x);
            }
        }
        $(#[$attr])? pub(super) fn add(o: &mut [u64], a: &[u64], b: &[u64]) { bin(o, a, b, u64::wrapping_add) }
        $(#[$attr])? pub(super) fn sub(o: &mut [u64], a: &[u64], b: &[u64]) { bin(o, a, b, u64::wrapping_sub) }
        $(#[$attr])? pub(super) fn mul(o: &mut [u64], a: &[u64], b: &[u64]) { bin(o, a, b, u64::wrapping_mul) }
        $(#[$attr])? pub(super) fn xor(o: &mut [u64], a: &[u64], b: &[u64]) { bin(o, a, b, |x, y| x ^ y) }
        $(#[$attr])? pub(super) fn and(o: &mut [u64], a: &[u64], b: &[u64]) { bin(o, a, b, |x, y| x & y) }
        $(#[$attr])? pub(super) fn scale(o: &mut [u64], a: &[u64], k: u64) { par(o, a, |x| x.wrapping_mul(k)) }
        $(#[$attr])? pub(super) fn axpy(o: &mut [u64], a: &[u64], k: u64) {
            for (o, &x) in o.iter_mut().zip(a) {
                *o = o.wrapping_add(x.wrapping_mul(k));
            }
        }
        $(#[$attr])? pub(super) fn shl(o: &mut [u64], a: &[u64], s: u64) {
            assert!(s < 64, "shift by {s}");
            par(o, a, |x| x << s)
        }
        $(#[$attr])? pub(super) fn shr_logical(o: &mut [u64], a: &[u64], s: u64) {
            assert!(s < 64, "shift by {s}");
            par(o, a, |x| x >> s)
        }
        $(#[$attr])? pub(super) fn shr_arith(o: &mut [u64], a: &[u64], s: u64) {
            assert!(s < 64, "shift by {s}");
            par(o, a, |x| ((x as i64) >> s) as u64)
        }
    };
}

mod portable {
    bodies!();
}

// The target_feature fns are safe to call only where the feature exists; `EwSet::avx2` and
// `EwSet::avx512` are only called by `kernels::build` after detection, and the fns are
// reached only through those sets.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    bodies!(target_feature(enable = "avx2"));
}
#[cfg(target_arch = "x86_64")]
mod avx512 {
    bodies!(target_feature(enable = "avx512f,avx512dq"));
}

macro_rules! set {
    ($m:ident) => {
        EwSet {
            add: |o, a, b| unsafe { $m::add(o, a, b) },
            sub: |o, a, b| unsafe { $m::sub(o, a, b) },
            mul: |o, a, b| unsafe { $m::mul(o, a, b) },
            xor: |o, a, b| unsafe { $m::xor(o, a, b) },
            and: |o, a, b| unsafe { $m::and(o, a, b) },
            scale: |o, a, k| unsafe { $m::scale(o, a, k) },
            axpy: |o, a, k| unsafe { $m::axpy(o, a, k) },
            shl: |o, a, s| unsafe { $m::shl(o, a, s) },
            shr_logical: |o, a, s| unsafe { $m::shr_logical(o, a, s) },
            shr_arith: |o, a, s| unsafe { $m::shr_arith(o, a, s) },
        }
    };
}

impl EwSet {
    pub(crate) fn portable() -> Self {
        EwSet {
            add: portable::add,
            sub: portable::sub,
            mul: portable::mul,
            xor: portable::xor,
            and: portable::and,
            scale: portable::scale,
            axpy: portable::axpy,
            shl: portable::shl,
            shr_logical: portable::shr_logical,
            shr_arith: portable::shr_arith,
        }
    }

    /// Only for a CPU with avx2 (called by `kernels::build` after detection).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn avx2() -> Self {
        set!(avx2)
    }

    /// Only for a CPU with avx512f+avx512dq (called by `kernels::build` after detection).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn avx512() -> Self {
        set!(avx512)
    }
}
