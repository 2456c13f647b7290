//! How `ordo serve` uses glibc's allocator: large blocks mapped on their
//! own, and free memory handed back after each snapshot.
//!
//! Measured with `benches/memory.sh` (docs/BENCHMARKS.md, "State
//! memory"): with glibc's defaults a server holding 1M accounts kept
//! about 60 MB that no live allocation used. glibc raises its mmap
//! threshold to the size of the largest mapped block freed, so after the
//! first snapshot image (18 MB at 1M accounts) was freed, later images
//! and the state tables as they doubled came from an arena's heap, and
//! an arena keeps what is freed into it, fragmented.
//!
//! So, at startup (before any thread exists): a fixed mmap threshold of
//! [`SERVE_MMAP_THRESHOLD_BYTES`] (which also stops glibc from moving
//! it), with the heap trimmed above [`SERVE_TRIM_THRESHOLD_BYTES`]; and
//! after each snapshot [`release_free_memory`] returns the free pages
//! inside the arenas to the kernel. Capping the arenas at 2 saved
//! another 3 to 7 bytes per account but cost up to 20% of the TCP
//! transfer rate in some runs (threads waiting for a shared arena's
//! lock), so glibc keeps its per-thread arenas.
//!
//! An operator who sets any `MALLOC_*` variable or a `glibc.malloc`
//! tunable (`GLIBC_TUNABLES`) gets glibc as configured, untouched.

/// Allocations at least this large get their own mapping, returned to the
/// kernel when freed. A slot's state table of 65,536 buckets (25 bytes
/// each; from about 29,000 rows) and snapshot images are above it; a
/// batch's buffers are below it.
pub const SERVE_MMAP_THRESHOLD_BYTES: i32 = 1 << 20;

/// Free memory at the top of an arena's heap beyond this is returned at
/// once (glibc's own rule is twice the mmap threshold).
pub const SERVE_TRIM_THRESHOLD_BYTES: i32 = 2 << 20;

/// Whether the operator configured glibc's malloc through the environment.
fn configured_by_environment() -> bool {
    std::env::vars_os().any(|(name, value)| {
        let name = name.to_string_lossy();
        name.starts_with("MALLOC_")
            || (name == "GLIBC_TUNABLES" && value.to_string_lossy().contains("glibc.malloc"))
    })
}

/// Sets `ordo serve`'s malloc parameters (see the module's doc). Call at
/// the start of `main`, before any other thread exists.
pub fn configure_for_serve() {
    if configured_by_environment() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc parameters; called before other
    // threads exist, as glibc asks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, SERVE_MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, SERVE_TRIM_THRESHOLD_BYTES);
    }
}

/// Returns the free pages inside malloc's arenas to the kernel. It walks
/// every arena under its lock, so it is called rarely: after a snapshot,
/// whose image and the batches before it are the churn it cleans up.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
