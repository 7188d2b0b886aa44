//! The memory all request bodies held at once may use, across every worker: one atomic count
//! against a cap (`limits.body_memory`), so that many slow bodies cannot grow the process.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of request bodies held in memory by all workers, against a cap.
#[derive(Debug)]
pub struct BodyBudget {
    held: AtomicUsize,
    cap: AtomicUsize,
}

impl BodyBudget {
    pub fn new(cap: usize) -> Self {
        BodyBudget {
            held: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
        }
    }

    /// A reload may change the cap; bodies being read keep what they hold.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// Take `n` bytes of the budget, if they are left.
    pub fn take(&self, n: usize) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                h.checked_add(n).filter(|t| *t <= cap)
            })
            .is_ok()
    }

    /// Hand `n` bytes back.
    pub fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}
