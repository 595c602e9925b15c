//! Small helpers for scoped threads: independent git processes side by side (planning time
//! is mostly git start-up), and the per-job work of big pipelines split over two cores (a
//! 1,000-job pipeline spends milliseconds on each pass), with results in the jobs' order so
//! callers report exactly what a sequential loop reports (first error first).

use std::sync::OnceLock;
use std::thread::ScopedJoinHandle;

/// The result of a scoped thread; a panic in it is re-raised in the caller, as it would have
/// been had the work run on the caller's thread.
pub(crate) fn join<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Below this many items a thread costs more (tens of microseconds to start) than it saves.
const MIN_ITEMS: usize = 64;

/// Whether a second core is there to use (asked once: the answer reads cgroup files).
pub(crate) fn two_cores() -> bool {
    static CORES: OnceLock<bool> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// `items.iter().map(f).collect()`, with the second half mapped on another thread when the
/// slice is big enough and the machine has a second core.
pub(crate) fn map_in_order<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    if items.len() < MIN_ITEMS || !two_cores() {
        return items.iter().map(&f).collect();
    }
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|s| {
        let f = &f;
        let other = s.spawn(move || second.iter().map(f).collect::<Vec<R>>());
        let mut out: Vec<R> = Vec::with_capacity(items.len());
        out.extend(first.iter().map(f));
        out.extend(join(other));
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_for_small_and_big_inputs() {
        for n in [0usize, 1, 63, 64, 65, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let out = map_in_order(&items, |i| i * 2);
            assert_eq!(
                out,
                items.iter().map(|i| i * 2).collect::<Vec<_>>(),
                "n={n}"
            );
        }
    }
}
