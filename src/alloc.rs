//! The binary's global allocator: small blocks from mimalloc's per-thread heaps, large
//! ones from the system's (glibc) heap, optionally with transparent huge pages
//! (`MPC_PIPE_HUGEPAGES=1`). Depends on libc and mimalloc only.
//!
//! Why two allocators. The binary keeps glibc on one arena with its large blocks in the
//! heap (`transport::tcp::tune_allocator_for_messages`), so a full-size model's 0.1–1 GB
//! temporaries are reused instead of faulted in afresh. But one arena also serialises every
//! small allocation of the many lanes of a pipelined scheme: digits-cnn training under
//! inter-batch (4 micro-batch lanes per party) spent 14% of its samples in `_int_malloc`
//! and much of its kernel time in futex hand-offs, and took 1.50 s per epoch against
//! serial's 0.65 s. glibc with 16 arenas fixed that (0.63 s) but put a 2-party VGG16 at
//! 23.6 s of system time and 11.1 GB instead of 13.9 s and 8.7 GB; mimalloc for every
//! block fixed it too, but raised VGG16's peak RSS by 1–1.3 GB. Blocks under `LARGE` go to
//! mimalloc, the rest to glibc's one arena, which then sees only a few large blocks.
//!
//! Why: a party's big buffers (material, messages, activations of a full-size model) are
//! faulted in 4 KiB at a time, and on this VM a 2-party VGG16 spent more time in the kernel
//! (page faults and zeroing) than in user code. Where THP is in `madvise` mode (the
//! default of many distributions, and of this machine), a 2 MiB page per fault cuts the
//! faults 512-fold. Blocks under `HUGE` are left alone: most are short-lived, and a huge
//! page for them would waste memory.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;
use std::sync::atomic::{AtomicBool, Ordering};

/// On with `MPC_PIPE_HUGEPAGES=1` in the environment (read by `main`). Off by default: on
/// a 2-party VGG16 (before the allocator kept large blocks in one arena) it cut page faults
/// from 5.8M to 1.0M but raised system time from 21.5 s to 26.6 s (compaction and 2 MiB
/// zeroing), so it stays an experiment.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turn the huge-page advice on or off (before heavy allocation).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Smallest block served by the system allocator; smaller ones come from mimalloc. The
/// layout of a block decides at allocation and at free alike, so each goes back where it
/// came from.
const LARGE: usize = 1 << 20;

/// Smallest block given huge pages.
const HUGE: usize = 4 << 20;
const PAGE_2M: usize = 2 << 20;

/// mimalloc under `LARGE` bytes; `System` from there, with `madvise(MADV_HUGEPAGE)` on the
/// 2 MiB-aligned interior of every block of at least `HUGE` bytes when enabled.
pub struct HugePages;

fn advise(p: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && len >= HUGE && ENABLED.load(Ordering::Relaxed) {
        let start = (p as usize).next_multiple_of(PAGE_2M);
        let end = (p as usize + len) & !(PAGE_2M - 1);
        if end > start {
            // SAFETY: the range lies inside a block we own; MADV_HUGEPAGE only changes how
            // its future page faults are served, never its contents. A refusal (THP off)
            // leaves ordinary pages, so the result is ignored.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
}

// SAFETY: every call is forwarded to mimalloc or `System` with the caller's layout, chosen
// by the layout's size, which is the same at allocation and at free; a reallocation that
// crosses `LARGE` moves the block with a copy of the bytes both layouts hold. `advise` does
// not touch the memory.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE {
            return MiMalloc.alloc(layout);
        }
        let p = System.alloc(layout);
        advise(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE {
            return MiMalloc.alloc_zeroed(layout);
        }
        let p = System.alloc_zeroed(layout);
        advise(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if layout.size() < LARGE {
            MiMalloc.dealloc(p, layout)
        } else {
            System.dealloc(p, layout)
        }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (layout.size() < LARGE, new_size < LARGE) {
            (true, true) => MiMalloc.realloc(p, layout, new_size),
            (false, false) => {
                let q = System.realloc(p, layout, new_size);
                advise(q, new_size);
                q
            }
            _ => {
                let new = Layout::from_size_align_unchecked(new_size, layout.align());
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                q
            }
        }
    }
}
