//! The server process's one allocator setting: large allocations get pages of their own, which
//! go back to the system when freed.
//!
//! glibc serves an allocation of at least `M_MMAP_THRESHOLD` (128 KiB at start) with its own
//! mapping, but raises that threshold to the size of every such block freed, up to 32 MiB.
//! After the first sign-in, each password check's 19 MiB argon2 buffer therefore comes from a
//! thread's arena, and every arena keeps the largest it ever held: a node's resident memory
//! grew by about 19 MiB per concurrent sign-in it had seen (72 -> 978 MiB in a 10-minute
//! soak; 376 MiB right after 22 users signed in at once), while the heap in use stayed small.
//! Setting the threshold fixes it (and stops the adjustment): with 4 MiB the same one-node
//! soak stayed at 34-47 MiB (docs/benchmarks.md). An operator's own `MALLOC_MMAP_THRESHOLD_`
//! wins.
#![allow(unsafe_code)]

/// Blocks of this size and larger are mapped on their own.
const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Sets the threshold for this process, unless the environment already does.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_large_blocks() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt takes two integers and changes a setting of glibc's allocator; it is
    // called before the runtime starts any thread.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::warn!("could not set glibc's mmap threshold: freed memory may stay resident");
    }
}

/// Other allocators keep their own policy.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}
