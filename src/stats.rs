//! Counters the server keeps about itself: how body bytes left (sendfile or a copy), requests,
//! connections, cold-file prefetches, protections that fired. One cache-line-aligned block per
//! worker, so counting never bounces a line between cores; readers sum the blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Declares the per-worker block and its summed snapshot from one list of counters.
macro_rules! counters {
    (
        scalars { $($(#[doc = $doc:literal])* $name:ident,)* }
        arrays { $($(#[doc = $adoc:literal])* $array:ident[$len:expr],)* }
    ) => {
        /// One worker's counters.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct WorkerStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            $($(#[doc = $adoc])* pub $array: [AtomicU64; $len],)*
        }

        /// A point-in-time sum over all workers.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
            $($(#[doc = $adoc])* pub $array: [u64; $len],)*
        }

        impl Snapshot {
            fn add(&mut self, w: &WorkerStats) {
                $(self.$name += w.$name.load(Relaxed);)*
                $(for (sum, c) in self.$array.iter_mut().zip(&w.$array) {
                    *sum += c.load(Relaxed);
                })*
            }
        }
    };
}

/// Labels of `early_refusals`, in counter order (the framing module's `EarlyRefusal` indexes
/// them; the labels live here, below it, so that metrics need not look up the layers).
pub const EARLY_REFUSAL_LABELS: [&str; 5] = [
    "bare_lf",
    "duplicate_framing",
    "bad_content_length",
    "head_too_large",
    "malformed",
];

/// Labels of `body_refusals`, in counter order (`request_body::BodyError` indexes them).
pub const BODY_REFUSAL_LABELS: [&str; 5] = [
    "too_large",
    "too_slow",
    "malformed",
    "no_memory",
    "draining",
];

/// Upper bounds (seconds) of the request-duration histogram's buckets; one more counts the rest.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

counters! {
    scalars {
    /// File body bytes sent by sendfile(2).
    sendfile_bytes,
    /// sendfile(2) calls that sent something.
    sendfile_calls,
    /// File body bytes that went through a userspace buffer or a kernel copy from the mapping
    /// (the fallback paths). Tests assert this stays 0 for regular files.
    copied_bytes,
    /// File body bytes read by pread and encrypted in userspace (HTTPS without kernel TLS).
    tls_body_bytes,
    /// TLS handshakes completed.
    tls_handshakes,
    /// HTTPS connections whose records the kernel encrypts (kTLS).
    tls_kernel_connections,
    /// Connections lost because the kernel took the TLS ULP but refused the keys.
    tls_kernel_failures,
    /// HTTPS connections encrypted in userspace by rustls.
    tls_userspace_connections,
    /// File body bytes sent from memory in the same write as their head (the small-body path).
    small_body_bytes,
    /// Bytes of small bodies the open-file caches hold now (a gauge: each worker stores its own).
    small_cache_bytes,
    /// Requests answered.
    requests,
    /// Connections accepted.
    connections,
    /// Connections open now (accepted minus closed).
    open_connections,
    /// Times a connection writing to a fast reader stepped aside for the worker's other
    /// connections (once per `sendfile_max_chunk` bytes written without waiting).
    write_yields,
    /// Responses whose digest was confirmed by an fstat (no inotify watch vouched for the file).
    digest_fstat_checks,
    /// Precompressed variants found older than their file and not served.
    stale_variants,
    /// Connections closed for want of a valid PROXY header from a trusted peer.
    proxy_refusals,
    /// Times a cold file range was read ahead on the blocking pool before sendfile.
    cold_prefetches,
    /// Responses aborted because the file shrank under them.
    truncated_aborts,
    /// Opens answered by the open-file cache (including a revalidation by one stat).
    open_file_cache_hits,
    /// Opens that had to open the file.
    open_file_cache_misses,
    /// Cached files closed because descriptors ran out (EMFILE).
    open_file_cache_sheds,
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
    /// Archive responses started.
    archives_total,
    /// Bytes of archive bodies handed to the connection (stored data inside leave by sendfile
    /// and are counted in `sendfile_bytes` too).
    zip_bytes,
    /// Bytes written to clients (heads and bodies).
    bytes_sent,
    /// Sum of request durations, microseconds.
    duration_us_sum,
    /// Files left out of archives (unreadable, or a name no archive may hold).
    archive_entries_skipped,
    /// Access-log lines dropped because the log writer could not keep up.
    log_lines_dropped,
    }
    arrays {
    /// Finished exchanges by method (GET, HEAD, POST, OPTIONS, other) × status class (1xx..5xx):
    /// index `method * 5 + class - 1`.
    responses[25],
    /// Request durations, non-cumulative counts per bucket of [`DURATION_BUCKETS`] plus +Inf.
    duration_buckets[18],
    /// Requests refused before the service, by [`EARLY_REFUSAL_LABELS`].
    early_refusals[5],
    /// Request bodies refused, by [`BODY_REFUSAL_LABELS`].
    body_refusals[5],
    /// TLS handshakes that failed, by `tls::handshake::LABELS`.
    tls_handshake_failures[7],
    }
}

impl WorkerStats {
    /// Count a finished exchange.
    pub fn exchange(&self, method_index: usize, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5);
        Self::add(&self.responses[method_index.min(4) * 5 + class - 1], 1);
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        Self::add(&self.duration_buckets[bucket], 1);
        Self::add(&self.duration_us_sum, (seconds * 1e6) as u64);
    }

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
