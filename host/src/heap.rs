//! `heap.rs` hands the allocator's free pages back to the kernel.
//!
//! glibc's malloc gives each busy thread an arena and returns memory to the
//! kernel only from the top of an arena. Requests allocate and free from
//! several threads (tokio's workers, the blocking pool that compiles
//! components), so freed memory in the middle of an arena stays resident:
//! bench/soak measured RSS 17 MiB above what was in use after 4 minutes of
//! mixed traffic, all of it released by one `malloc_trim`. Trimming after
//! the resident set has grown keeps it near what is actually allocated.
//! Other allocators (musl's) return memory by themselves, so there this
//! does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Trims run and bytes they gave back, for `/_burrow/metrics`.
static TRIMS: AtomicU64 = AtomicU64::new(0);
static TRIMMED_BYTES: AtomicU64 = AtomicU64::new(0);

/// How often the server looks at its resident set.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Growth of the resident set since the last trim that is worth a trim. A
/// trim walks every arena under its lock (bench/soak: a median 6.4 ms to
/// release 12 MiB), so it runs only when there is likely something to give
/// back.
pub const TRIM_AFTER_GROWTH: u64 = 4 << 20;

/// Returns free heap pages to the kernel; the bytes of resident memory
/// that went away (0 where the allocator has nothing to trim).
pub fn trim() -> u64 {
    let before = resident_bytes();
    release_free_pages();
    before.saturating_sub(resident_bytes())
}

/// Every `every`, trims if the resident set is `growth` bytes above its
/// lowest level since the last trim (or since start-up); runs until the
/// task is aborted.
pub fn trim_periodically(every: Duration, growth: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut settled = resident_bytes();
        loop {
            tick.tick().await;
            let now = resident_bytes();
            settled = settled.min(now);
            if now < settled.saturating_add(growth) {
                continue;
            }
            // Off the async workers: it can hold an arena's lock for some
            // milliseconds.
            let Ok((released, took)) = tokio::task::spawn_blocking(|| {
                let t0 = Instant::now();
                (trim(), t0.elapsed())
            })
            .await
            else {
                return;
            };
            settled = resident_bytes();
            TRIMS.fetch_add(1, Ordering::Relaxed);
            TRIMMED_BYTES.fetch_add(released, Ordering::Relaxed);
            tracing::debug!(
                "heap trim returned {:.1} MiB to the kernel in {:.2} ms; resident now {:.1} MiB",
                released as f64 / f64::from(1 << 20),
                took.as_secs_f64() * 1e3,
                settled as f64 / f64::from(1 << 20)
            );
        }
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_pages() {
    // SAFETY: malloc_trim only inspects and madvises glibc's own free
    // lists, under the arenas' locks; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_pages() {}

/// The process's resident set and the trims, in Prometheus text.
pub fn render_metrics(out: &mut crate::metrics::Exposition) {
    out.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        resident_bytes() as f64,
    );
    out.counter(
        "burrow_heap_trims_total",
        "Heap trims run after the resident set grew.",
        TRIMS.load(Ordering::Relaxed) as f64,
    );
    out.counter(
        "burrow_heap_trimmed_bytes_total",
        "Resident bytes heap trims returned to the kernel.",
        TRIMMED_BYTES.load(Ordering::Relaxed) as f64,
    );
}

/// This process's resident set, from /proc/self/statm (0 where there is none).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * page_size()
}

#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the running system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Freed small blocks below a live one stay resident until a trim; the
    /// trim gives most of them back. Run on its own thread so that the
    /// blocks come from one arena that other tests barely touch.
    #[test]
    fn trim_returns_freed_blocks_below_a_live_one() {
        std::thread::spawn(|| {
            const BLOCKS: usize = 64 * 1024; // 64 MiB in 1 KiB blocks
            let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8; 1024]).collect();
            let last = blocks.pop();
            let before_free = resident_bytes();
            drop(blocks);
            let held = resident_bytes();
            let released = trim();
            let after = resident_bytes();
            drop(last);
            assert!(
                held + (8 << 20) > before_free,
                "glibc returned the blocks without a trim ({before_free} → {held} bytes): \
                 nothing for this test to show"
            );
            assert!(
                released >= 32 << 20,
                "trim released {released} bytes of 64 MiB freed (resident {held} → {after})"
            );
        })
        .join()
        .unwrap();
    }
}
