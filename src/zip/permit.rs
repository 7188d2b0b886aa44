//! The archive slot: one archive stream (or manifest walk) counted against `zip.max_concurrent`
//! while it lives, across every worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One archive stream counted against the concurrency limit while it lives.
#[derive(Debug)]
pub struct ArchivePermit(Arc<AtomicUsize>);

impl ArchivePermit {
    /// Take a slot if fewer than `max` archives are streaming.
    pub fn try_acquire(active: &Arc<AtomicUsize>, max: usize) -> Option<ArchivePermit> {
        let mut now = active.load(Ordering::Relaxed);
        loop {
            if now >= max {
                return None;
            }
            match active.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(ArchivePermit(active.clone())),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for ArchivePermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
