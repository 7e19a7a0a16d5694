//! The binary's global allocator: small blocks from mimalloc's per-thread heaps, large
//! ones from the system's (glibc) heap, optionally with transparent huge pages
//! (`MPC_PIPE_HUGEPAGES=1`); and the process's read-only zero region (`zero_words`), which
//! lets a tensor of zeros cost no memory until it is written. Depends on libc and mimalloc
//! only.
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
//! mimalloc is built without transparent huge pages and told to keep what it frees
//! (`configure`): by default it returns freed memory to the OS after 1 s and maps 2 MiB
//! pages, so each training epoch's dealer re-faulted its memory a huge page at a time, and
//! `train --epochs 2` took 9.6-14 s of wall and 4.5-5.4 s of system time against 4.2-6.5 s
//! and 0.5-0.7 s with glibc alone. Without huge pages and with purging off: 3.2-4.7 s wall,
//! 0.7-0.9 s system time (paired, alternating, loaded machine), at 1.65 GB peak RSS against
//! 1.18 GB. `MIMALLOC_PURGE_DELAY=N` in the environment overrides the purge delay.
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
use std::sync::OnceLock;

/// On with `MPC_PIPE_HUGEPAGES=1` in the environment (read by `main`). Off by default: on
/// a 2-party VGG16 (before the allocator kept large blocks in one arena) it cut page faults
/// from 5.8M to 1.0M but raised system time from 21.5 s to 26.6 s (compaction and 2 MiB
/// zeroing), so it stays an experiment. Measured again with one arena (2026-12-07): the
/// system time of a 2-party VGG16 is the kernel zeroing fresh pages (`clear_page_erms`,
/// 35% of the process's samples; about 1.35 s per GB of fresh memory on this VM), which
/// huge pages do not change: glibc's own `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` took
/// the faults from 1.83M to 4.3k and the system time only from 9.97 s to 9.60 s. On a
/// one-shot W1 (`run --model W1 --batch 256`, alternating) this advice took the faults
/// from 24.9k to 10.1k and the process's CPU time from 196-206 ms to 177-187 ms, glibc's
/// tunable to 1.7k faults and 169-177 ms: what huge pages save is the fault entries, not
/// the zeroing. What cuts system time is touching less fresh memory (peak RSS).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turn the huge-page advice on or off (before heavy allocation).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t` (the Rust bindings name only some
/// options; a test checks the number against the option's default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Configure the allocator; the binary's `main` calls it first.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores an option value; -1 (never purge) is valid for it.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// Smallest block served by the system allocator; smaller ones come from mimalloc. The
/// layout of a block decides at allocation and at free alike, so each goes back where it
/// came from.
///
/// 64 KiB, not 1 MiB: mimalloc does not reuse freed blocks of 64 KiB-1 MiB well across
/// threads (they come and go on lanes, party threads and the dealer's rayon workers, and
/// are freed by other threads: messages, activations), and its footprint grew by about
/// 200 MB per training epoch: digits-cnn under inter-batch (batch 128, 4 micro-batches,
/// whose activations are a quarter of serial's and so fell under 1 MiB) committed 1.8 GiB
/// in mimalloc's arenas for 3 epochs, 1.86 GB peak RSS against 1.47 GB for serial, and
/// faulted in (and zeroed) 465k fresh pages. With 64 KiB: 1.23 GB and 308k, and serial
/// 1.21 GB; system time per 2-epoch job 1.33 -> 1.08 s (inter-batch), 1.12 -> 1.00 s
/// (serial), medians of 4 alternating runs on a loaded machine. glibc's one arena takes
/// these blocks back in its heap and serves them again without faults; they are few
/// enough (each is at least 64 KiB of work) that its lock is no bottleneck.
const LARGE: usize = 64 << 10;

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

/// Words of the zero region: 64 GiB of address space, more than any tensor this machine
/// could hold, of which nothing is backed by memory.
const ZERO_REGION_WORDS: usize = 1 << 33;

/// `n` zero words that cost no memory: a slice of one read-only anonymous mapping made
/// once per process. Nothing is charged for it (read-only private mappings are not
/// committed memory) and reading it maps the kernel's shared zero page, so the plan's dry
/// run can hand placeholder tensors of any size around for free. None for more than the
/// region holds, or where it cannot be mapped (the caller then allocates).
pub fn zero_words(n: usize) -> Option<&'static [u64]> {
    static REGION: OnceLock<usize> = OnceLock::new();
    let base = *REGION.get_or_init(map_zero_region);
    if base == 0 || n > ZERO_REGION_WORDS {
        return None;
    }
    // SAFETY: `base` is the start of a readable mapping of ZERO_REGION_WORDS words, 8-byte
    // aligned (page aligned), never unmapped and never writable (PROT_READ), and anonymous
    // memory reads as zeros: a valid `&'static [u64]` of any length up to the region's.
    Some(unsafe { std::slice::from_raw_parts(base as *const u64, n) })
}

/// The region's address, or 0 when it cannot be had.
fn map_zero_region() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; it
        // aliases nothing and is never unmapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ZERO_REGION_WORDS * 8,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            return p as usize;
        }
    }
    0
}

/// The process's resident and peak resident memory in MiB (`VmRSS`, `VmHWM` of
/// /proc/self/status), for `MPC_PIPE_RSS_TRACE`: where a full-size model's peak comes from
/// (each GiB first touched costs this VM about 0.6 s of kernel zeroing). None off Linux.
pub fn resident_mib() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib / 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The memory the kernel says is available for new allocations (`MemAvailable` of
/// /proc/meminfo), in bytes. None off Linux or on a kernel without the field.
pub fn available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// True when `MPC_PIPE_RSS_TRACE` is set: the inference traversal then prints the
/// process's resident memory after each node (read once).
pub fn rss_trace() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MPC_PIPE_RSS_TRACE").is_some())
}

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;
    use libmimalloc_sys::{mi_option_get, mi_option_set};

    /// The option number is the purge delay's: it starts at its default of 1000 ms (src/
    /// options.c of the bundled mimalloc; its neighbours default to 1 and 0), and
    /// `configure` sets it to -1.
    #[test]
    fn configure_turns_purging_off() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reading and writing an option value.
        unsafe {
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            super::configure();
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), -1);
            mi_option_set(MI_OPTION_PURGE_DELAY, 1000);
        }
    }
}
