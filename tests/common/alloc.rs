//! A global allocator for tests that counts the allocations made by one thread while it asks
//! for counting, keeps per thread the heap bytes allocated and not yet freed (and their peak),
//! and otherwise defers everything to the system allocator. A test binary installs it with
//! `#[global_allocator] static GLOBAL: common::alloc::Counting = common::alloc::Counting;` and
//! measures with [`counted`], or with [`live`], [`reset_peak`] and [`peak`]: a structure touched
//! only by the test's thread gets its own figure whatever other tests do meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Runs `f` on this thread and returns its result with the allocations (and reallocations) it
/// made on this thread.
pub fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

fn count() {
    if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// This thread's live heap bytes (allocated here minus freed here).
pub fn live() -> isize {
    LIVE.with(|l| l.get())
}

/// Restarts this thread's peak at its current live figure.
pub fn reset_peak() {
    PEAK.with(|p| p.set(live()));
}

/// This thread's highest live heap bytes since [`reset_peak`].
pub fn peak() -> isize {
    PEAK.with(|p| p.get())
}

fn add(by: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + by;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: defers every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        add(layout.size() as isize);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        add(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
