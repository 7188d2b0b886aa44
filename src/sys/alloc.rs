//! A counting wrapper around the system allocator, for the allocations-per-request bench (a
//! binary opts in with `#[global_allocator]`; the server itself never installs it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counts allocations and reallocations, then defers to [`System`].
#[derive(Debug, Default)]
pub struct CountingAllocator {
    count: AtomicU64,
}

impl CountingAllocator {
    /// A counter at zero.
    pub const fn new() -> Self {
        CountingAllocator {
            count: AtomicU64::new(0),
        }
    }

    /// Allocations plus reallocations so far, in all threads.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which upholds
// the GlobalAlloc contract; the only addition is a relaxed atomic increment.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count.fetch_add(1, Relaxed);
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count.fetch_add(1, Relaxed);
        // SAFETY: the caller's obligations for `realloc` are passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
