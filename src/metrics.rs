//! The Prometheus text exposition of the server's counters (format 0.0.4): requests by method and
//! status class, body bytes by path, connections, the open-file cache, archives, protections
//! that fired, and a request-duration histogram. Rendered on demand from the per-worker blocks.

use std::fmt::Write;

use crate::access_log::METHODS;
use crate::stats::{Snapshot, BODY_REFUSAL_LABELS, DURATION_BUCKETS, EARLY_REFUSAL_LABELS};

/// What the exposition needs besides the counters.
pub struct Gauges {
    pub archives_active: usize,
    pub draining: bool,
    pub workers: usize,
    /// Each loaded certificate's file and expiry (Unix seconds).
    pub certificates: Vec<(String, i64)>,
}

/// Render every metric.
pub fn render(s: &Snapshot, g: &Gauges) -> String {
    let mut out = String::with_capacity(8192);
    requests(&mut out, s);
    durations(&mut out, s);
    transfer(&mut out, s);
    work(&mut out, s, g);
    refusals(&mut out, s);
    process(&mut out, s, g);
    digests(&mut out);
    tls(&mut out, s, g);
    out
}

/// HTTPS: handshakes, failures by reason, how records are encrypted, certificate expiry.
fn tls(out: &mut String, s: &Snapshot, g: &Gauges) {
    scalar(
        out,
        (
            "sendfiled_tls_handshakes_total",
            "counter",
            "TLS handshakes completed.",
        ),
        s.tls_handshakes,
    );
    let failures: Vec<(&str, u64)> = crate::tls::handshake::LABELS
        .iter()
        .copied()
        .zip(s.tls_handshake_failures)
        .collect();
    labelled(
        out,
        (
            "sendfiled_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed, by reason.",
        ),
        "reason",
        &failures,
    );
    labelled(
        out,
        (
            "sendfiled_tls_connections_total",
            "counter",
            "HTTPS connections by who encrypts their records: kernel (kTLS) or userspace (rustls).",
        ),
        "path",
        &[
            ("kernel", s.tls_kernel_connections),
            ("userspace", s.tls_userspace_connections),
        ],
    );
    scalar(
        out,
        (
            "sendfiled_tls_kernel_failures_total",
            "counter",
            "Connections lost because the kernel took the TLS ULP but refused the keys.",
        ),
        s.tls_kernel_failures,
    );
    family(
        out,
        (
            "sendfiled_tls_certificate_expiry_seconds",
            "gauge",
            "When each loaded certificate expires (notAfter, Unix seconds).",
        ),
    );
    for (file, not_after) in &g.certificates {
        let file = file.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "sendfiled_tls_certificate_expiry_seconds{{file=\"{file}\"}} {not_after}"
        );
    }
}

/// The background hashing behind `Repr-Digest` (all zero until a file is first looked up).
fn digests(out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = crate::digest::store::counters();
    let read = |f: fn(&crate::digest::store::Counters) -> u64| c.map_or(0, f);
    let rows: [(&str, &str, &str, u64); 7] = [
        (
            "sendfiled_digests_computed_total",
            "counter",
            "Files hashed for Repr-Digest.",
            read(|c| c.computed.load(Relaxed)),
        ),
        (
            "sendfiled_digests_from_attributes_total",
            "counter",
            "Digests read from fresh extended attributes instead of hashing.",
            read(|c| c.from_attributes.load(Relaxed)),
        ),
        (
            "sendfiled_digest_bytes_hashed_total",
            "counter",
            "Bytes read and hashed for Repr-Digest.",
            read(|c| c.bytes_hashed.load(Relaxed)),
        ),
        (
            "sendfiled_digest_cache_hits_total",
            "counter",
            "Open files that found their digest already known.",
            read(|c| c.cache_hits.load(Relaxed)),
        ),
        (
            "sendfiled_digest_queued_total",
            "counter",
            "Files queued for the digest thread.",
            read(|c| c.queued.load(Relaxed)),
        ),
        (
            "sendfiled_digest_queue_full_total",
            "counter",
            "Files not queued because the queue was full (queued again by a later request).",
            read(|c| c.dropped.load(Relaxed)),
        ),
        (
            "sendfiled_digest_queue_length",
            "gauge",
            "Files queued and not yet hashed.",
            read(|c| c.queue_length.load(Relaxed)),
        ),
    ];
    for (name, kind, help, value) in rows {
        scalar(out, (name, kind, help), value);
    }
}

/// Bytes, connections and the open-file cache: how body bytes left, what was written, who is
/// connected.
fn transfer(out: &mut String, s: &Snapshot) {
    labelled(
        out,
        ("sendfiled_body_bytes_total", "counter", "Response body bytes by how they left: sendfile (file data, including archives' stored data), small (small files from memory, in one write with the head), copy (fallback through a buffer), tls (read by pread and encrypted in userspace), zip (archive bodies, all of their bytes)."),
        "path",
        &[
            ("sendfile", s.sendfile_bytes),
            ("small", s.small_body_bytes),
            ("copy", s.copied_bytes),
            ("tls", s.tls_body_bytes),
            ("zip", s.zip_bytes),
        ],
    );
    scalar(
        out,
        (
            "sendfiled_small_body_cache_bytes",
            "gauge",
            "Bytes of small file bodies held in memory by the open-file caches.",
        ),
        s.small_cache_bytes,
    );
    scalar(
        out,
        (
            "sendfiled_sent_bytes_total",
            "counter",
            "Bytes written to clients, heads and bodies.",
        ),
        s.bytes_sent,
    );
    scalar(
        out,
        (
            "sendfiled_sendfile_calls_total",
            "counter",
            "sendfile(2) calls that sent data.",
        ),
        s.sendfile_calls,
    );
    scalar(
        out,
        (
            "sendfiled_connections_active",
            "gauge",
            "Open client connections.",
        ),
        s.open_connections,
    );
    scalar(
        out,
        (
            "sendfiled_connections_total",
            "counter",
            "Accepted client connections.",
        ),
        s.connections,
    );
    labelled(
        out,
        (
            "sendfiled_open_file_cache_total",
            "counter",
            "Open-file cache lookups by result.",
        ),
        "result",
        &[
            ("hit", s.open_file_cache_hits),
            ("miss", s.open_file_cache_misses),
        ],
    );
}

/// Archives, cold prefetches and truncated files.
fn work(out: &mut String, s: &Snapshot, g: &Gauges) {
    scalar(
        out,
        (
            "sendfiled_archives_active",
            "gauge",
            "Archive streams being sent.",
        ),
        g.archives_active as u64,
    );
    scalar(
        out,
        (
            "sendfiled_archives_total",
            "counter",
            "Archive requests that reached the archive path.",
        ),
        s.archives_total,
    );
    scalar(
        out,
        (
            "sendfiled_cold_prefetches_total",
            "counter",
            "File ranges read ahead on the blocking pool before sendfile (cold page cache).",
        ),
        s.cold_prefetches,
    );
    scalar(
        out,
        (
            "sendfiled_write_yields_total",
            "counter",
            "Times a connection sending to a fast reader stepped aside for the worker's other connections (once per socket.sendfile_max_chunk).",
        ),
        s.write_yields,
    );
    scalar(
        out,
        (
            "sendfiled_digest_fstat_checks_total",
            "counter",
            "Responses whose Repr-Digest was confirmed by an fstat because no inotify watch vouched for the file (first response, a write seen, or a file system not watched).",
        ),
        s.digest_fstat_checks,
    );
    scalar(
        out,
        (
            "sendfiled_stale_variants_total",
            "counter",
            "Precompressed variants found older than their file (to the second) and not served.",
        ),
        s.stale_variants,
    );
    scalar(
        out,
        (
            "sendfiled_proxy_refusals_total",
            "counter",
            "Connections closed for want of a valid PROXY header from a trusted peer (proxy.protocol).",
        ),
        s.proxy_refusals,
    );
    scalar(
        out,
        (
            "sendfiled_truncated_aborts_total",
            "counter",
            "Responses aborted because their file shrank.",
        ),
        s.truncated_aborts,
    );
}

/// The log, pacing, and the process's own state.
fn process(out: &mut String, s: &Snapshot, g: &Gauges) {
    scalar(
        out,
        (
            "sendfiled_access_log_dropped_lines_total",
            "counter",
            "Access-log lines dropped because the log's pipe or file could not keep up.",
        ),
        s.log_lines_dropped,
    );
    scalar(
        out,
        (
            "sendfiled_paced_responses_total",
            "counter",
            "Responses paced by a bandwidth limit.",
        ),
        s.paced_responses,
    );
    scalar(
        out,
        (
            "sendfiled_draining",
            "gauge",
            "1 while the server drains for shutdown.",
        ),
        u64::from(g.draining),
    );
    scalar(
        out,
        ("sendfiled_workers", "gauge", "Worker threads."),
        g.workers as u64,
    );
}

/// A metric family's name, type and help text.
type Family<'a> = (&'a str, &'a str, &'a str);

fn family(out: &mut String, (name, kind, help): Family<'_>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family with one unlabelled value.
fn scalar(out: &mut String, f: Family<'_>, v: u64) {
    family(out, f);
    let _ = writeln!(out, "{} {v}", f.0);
}

/// A family with one label `key` and a value per label.
fn labelled(out: &mut String, f: Family<'_>, key: &str, values: &[(&str, u64)]) {
    family(out, f);
    for (label, v) in values {
        let _ = writeln!(out, "{}{{{key}=\"{label}\"}} {v}", f.0);
    }
}

/// Finished requests by method and status class.
fn requests(out: &mut String, s: &Snapshot) {
    family(
        out,
        (
            "sendfiled_requests_total",
            "counter",
            "Finished requests by method and status class.",
        ),
    );
    for (m, method) in METHODS.iter().enumerate() {
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "sendfiled_requests_total{{method=\"{method}\",status=\"{class}xx\"}} {}",
                s.responses[m * 5 + class - 1]
            );
        }
    }
}

/// The request-duration histogram (cumulative buckets, sum and count).
fn durations(out: &mut String, s: &Snapshot) {
    family(
        out,
        (
            "sendfiled_request_duration_seconds",
            "histogram",
            "Time from a request's head to its last byte handed to the kernel.",
        ),
    );
    let mut cumulative = 0;
    for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
        cumulative += s.duration_buckets[i];
        let _ = writeln!(
            out,
            "sendfiled_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += s.duration_buckets[DURATION_BUCKETS.len()];
    let _ = writeln!(
        out,
        "sendfiled_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
         sendfiled_request_duration_seconds_sum {}\n\
         sendfiled_request_duration_seconds_count {cumulative}",
        s.duration_us_sum as f64 / 1e6
    );
}

/// Everything the protections turned away, by reason.
fn refusals(out: &mut String, s: &Snapshot) {
    labelled(
        out,
        (
            "sendfiled_limiter_rejections_total",
            "counter",
            "Clients held back or turned away, by reason.",
        ),
        "reason",
        &[
            ("per_ip_connections", s.rejected_per_ip_connections),
            ("request_rate", s.rejected_request_rate),
            ("send_timeout", s.send_timeouts),
            ("min_send_rate", s.min_rate_closes),
            ("connection_cap_pause", s.accept_pauses),
            ("fd_exhaustion_backoff", s.accept_backoffs),
        ],
    );
    let early: Vec<(&str, u64)> = EARLY_REFUSAL_LABELS
        .into_iter()
        .zip(s.early_refusals)
        .collect();
    labelled(
        out,
        ("sendfiled_early_refusals_total", "counter", "Requests refused by the parser or the stream guard before the service saw them, by reason."),
        "reason",
        &early,
    );
    let bodies: Vec<(&str, u64)> = BODY_REFUSAL_LABELS
        .into_iter()
        .zip(s.body_refusals)
        .collect();
    labelled(
        out,
        (
            "sendfiled_body_refusals_total",
            "counter",
            "Request bodies refused (and their connections closed), by reason.",
        ),
        "reason",
        &bodies,
    );
    labelled(
        out,
        (
            "sendfiled_signature_failures_total",
            "counter",
            "Protected requests refused, by reason.",
        ),
        "reason",
        &[
            ("missing", s.signature_missing),
            ("malformed", s.signature_malformed),
            ("expired", s.signature_expired),
            ("unknown_key", s.signature_unknown_key),
            ("bad_signature", s.signature_bad),
            ("out_of_scope", s.signature_out_of_scope),
        ],
    );
}
