//! Counters the server keeps about itself: how body bytes left (sendfile or a copy), requests,
//! connections, cold-file prefetches. One cache-line-aligned block per worker, so counting never
//! bounces a line between cores; readers sum the blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One worker's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// File body bytes sent by sendfile(2).
    pub sendfile_bytes: AtomicU64,
    /// sendfile(2) calls that sent something.
    pub sendfile_calls: AtomicU64,
    /// File body bytes that went through a userspace buffer or a kernel copy from the mapping
    /// (the fallback paths). Tests assert this stays 0 for regular files.
    pub copied_bytes: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now (accepted minus closed).
    pub open_connections: AtomicU64,
    /// Times a cold file range was read ahead on the blocking pool before sendfile.
    pub cold_prefetches: AtomicU64,
    /// Responses aborted because the file shrank under them.
    pub truncated_aborts: AtomicU64,
}

impl WorkerStats {
    /// Add `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// All workers' counters.
#[derive(Debug, Clone)]
pub struct Stats {
    workers: Arc<[WorkerStats]>,
}

/// A point-in-time sum over all workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub sendfile_bytes: u64,
    pub sendfile_calls: u64,
    pub copied_bytes: u64,
    pub requests: u64,
    pub connections: u64,
    pub open_connections: u64,
    pub cold_prefetches: u64,
    pub truncated_aborts: u64,
}

impl Stats {
    /// Counters for `n` workers.
    pub fn new(n: usize) -> Stats {
        Stats {
            workers: (0..n).map(|_| WorkerStats::default()).collect(),
        }
    }

    /// Worker `i`'s block (the worker keeps an `Arc` of the whole set).
    pub fn worker(&self, i: usize) -> &WorkerStats {
        &self.workers[i]
    }

    /// Sum every worker's counters.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for w in self.workers.iter() {
            s.sendfile_bytes += w.sendfile_bytes.load(Relaxed);
            s.sendfile_calls += w.sendfile_calls.load(Relaxed);
            s.copied_bytes += w.copied_bytes.load(Relaxed);
            s.requests += w.requests.load(Relaxed);
            s.connections += w.connections.load(Relaxed);
            s.open_connections += w.open_connections.load(Relaxed);
            s.cold_prefetches += w.cold_prefetches.load(Relaxed);
            s.truncated_aborts += w.truncated_aborts.load(Relaxed);
        }
        s
    }
}
