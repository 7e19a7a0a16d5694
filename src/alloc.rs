//! The binary's global allocator: the system's, optionally asking for transparent huge
//! pages on large blocks (`MPC_PIPE_HUGEPAGES=1`). Depends on libc only.
//!
//! Why: a party's big buffers (material, messages, activations of a full-size model) are
//! faulted in 4 KiB at a time, and on this VM a 2-party VGG16 spent more time in the kernel
//! (page faults and zeroing) than in user code. Where THP is in `madvise` mode (the
//! default of many distributions, and of this machine), a 2 MiB page per fault cuts the
//! faults 512-fold. Blocks under `HUGE` are left alone: most are short-lived, and a huge
//! page for them would waste memory.

use std::alloc::{GlobalAlloc, Layout, System};
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

/// Smallest block given huge pages.
const HUGE: usize = 4 << 20;
const PAGE_2M: usize = 2 << 20;

/// `System`, with `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned interior of every block of
/// at least `HUGE` bytes.
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

// SAFETY: every call is forwarded to `System` with the caller's layout; `advise` does not
// touch the memory.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        advise(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        advise(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout)
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        advise(q, new_size);
        q
    }
}
