//! Small helpers for the scoped threads that run independent git processes side by side
//! (planning time is mostly git start-up).

use std::thread::ScopedJoinHandle;

/// The result of a scoped thread; a panic in it is re-raised in the caller, as it would have
/// been had the work run on the caller's thread.
pub(crate) fn join<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
