//! The process's heap, kept close to what it holds. A monitor runs for
//! weeks on small machines, so memory it freed but still holds is a cost
//! like any other (#19: at 10,000 checks, 83 MiB RSS held a 49 MiB heap).
//!
//! glibc's malloc gives threads that allocate at the same time arenas of
//! their own and keeps freed memory for reuse. Two levers, both glibc's own:
//! at most `limits::MALLOC_ARENAS_MAX` arenas (set before any thread
//! starts), and `release_free`, which hands the free pages back to the
//! kernel (`malloc_trim`), run once the config is loaded (decoding 10,000
//! checks leaves megabytes of holes) and then every
//! `limits::MEMORY_RELEASE_EVERY`. Elsewhere (musl, another allocator) both
//! do nothing.

use tokio_util::sync::CancellationToken;

use crate::limits;

/// Caps the allocator's arenas; call before the runtime's threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets one of the allocator's tunables, and it is
    // called from `main` before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, limits::MALLOC_ARENAS_MAX);
    }
}

/// Returns the allocator's free pages to the kernel.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks and releases the allocator's own free
    // lists; it takes the allocator's locks and touches no live block.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// `release_free` now and every `limits::MEMORY_RELEASE_EVERY`, until
/// `cancel` fires. On the blocking pool: a trim walks the whole heap.
pub async fn release_free_periodically(cancel: CancellationToken) {
    let mut interval = tokio::time::interval(limits::MEMORY_RELEASE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let _ = tokio::task::spawn_blocking(release_free).await;
    }
}
