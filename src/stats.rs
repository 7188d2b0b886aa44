//! Counters the server keeps about itself: how body bytes left (sendfile or a copy), requests,
//! connections, cold-file prefetches, protections that fired. One cache-line-aligned block per
//! worker, so counting never bounces a line between cores; readers sum the blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Declares the per-worker block and its summed snapshot from one list of counters.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// One worker's counters.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct WorkerStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time sum over all workers.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Snapshot {
            fn add(&mut self, w: &WorkerStats) {
                $(self.$name += w.$name.load(Relaxed);)*
            }
        }
    };
}

counters! {
    /// File body bytes sent by sendfile(2).
    sendfile_bytes,
    /// sendfile(2) calls that sent something.
    sendfile_calls,
    /// File body bytes that went through a userspace buffer or a kernel copy from the mapping
    /// (the fallback paths). Tests assert this stays 0 for regular files.
    copied_bytes,
    /// Requests answered.
    requests,
    /// Connections accepted.
    connections,
    /// Connections open now (accepted minus closed).
    open_connections,
    /// Times a cold file range was read ahead on the blocking pool before sendfile.
    cold_prefetches,
    /// Responses aborted because the file shrank under them.
    truncated_aborts,
    /// Opens answered by the open-file cache (including a revalidation by one stat).
    open_file_cache_hits,
    /// Opens that had to open the file.
    open_file_cache_misses,
    /// Accept-loop pauses because the global connection cap was reached (one per 5 ms waited).
    accept_pauses,
    /// Accept-loop back-offs because descriptors or memory ran out (one per 100 ms waited).
    accept_backoffs,
    /// Connections refused for exceeding the per-IP connection cap.
    rejected_per_ip_connections,
    /// Requests refused with 429 for exceeding the per-IP request rate.
    rejected_request_rate,
    /// Protected requests refused: no signature.
    signature_missing,
    /// Protected requests refused: malformed signature parameters.
    signature_malformed,
    /// Protected requests refused: expired link.
    signature_expired,
    /// Protected requests refused: unknown key id.
    signature_unknown_key,
    /// Protected requests refused: signature mismatch.
    signature_bad,
    /// Protected requests refused: prefix link used outside its prefix.
    signature_out_of_scope,
    /// Responses paced by a bandwidth limit.
    paced_responses,
    /// Connections closed because the client accepted nothing for the send timeout.
    send_timeouts,
    /// Connections closed because the client read slower than the minimum send rate.
    min_rate_closes,
    /// Ticks of the worker's heartbeat task (the watchdog's proof of life).
    heartbeats,
}

impl WorkerStats {
    /// Add `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The counter of a signature refusal reason.
    pub fn signature_denial(&self, why: crate::protect::signing::Denial) -> &AtomicU64 {
        use crate::protect::signing::Denial;
        match why {
            Denial::Missing => &self.signature_missing,
            Denial::Malformed => &self.signature_malformed,
            Denial::Expired => &self.signature_expired,
            Denial::UnknownKey => &self.signature_unknown_key,
            Denial::BadSignature => &self.signature_bad,
            Denial::OutOfScope => &self.signature_out_of_scope,
        }
    }
}

/// All workers' counters.
#[derive(Debug, Clone)]
pub struct Stats {
    workers: Arc<[WorkerStats]>,
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
            s.add(w);
        }
        s
    }
}
