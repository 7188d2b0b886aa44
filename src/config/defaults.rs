//! Every default, in one place (docs/configuration.md lists the same values).

pub const LISTEN: &str = "127.0.0.1:8080";
pub const INDEX: &str = "index.html";
pub const MAX_RANGES: usize = 16;
pub const HEADER_BYTES: u64 = 16 * 1024;
pub const MAX_HEADERS: usize = 100;
pub const TARGET_BYTES: u64 = 8 * 1024;
pub const HEADER_TIMEOUT_SECS: u64 = 10;
pub const KEEPALIVE_TIMEOUT_SECS: u64 = 60;
pub const SEND_TIMEOUT_SECS: u64 = 60;
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// Seconds /readyz fails before a stopping node stops accepting (HAProxy's default check
/// interval is 2 s, so two failed checks fit).
pub const DRAIN_DELAY_SECS: u64 = 5;
pub const MIN_SEND_RATE: u64 = 1024;
pub const MIN_SEND_RATE_WINDOW_SECS: u64 = 60;
pub const BODY_TIMEOUT_SECS: u64 = 10;
pub const MIN_BODY_RATE: u64 = 1024;
pub const BODY_MEMORY: u64 = 64 * 1024 * 1024;
pub const MAX_CONNECTIONS: usize = 16_384;
pub const REQUEST_BURST: u32 = 100;
pub const LINK_RATE_BURST: u64 = 1 << 20;
pub const ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const LISTING_MAX_ENTRIES: usize = 1000;
pub const BACKLOG: u32 = 4096;
pub const DEFER_ACCEPT_SECS: u64 = 1;
pub const SENDFILE_MAX_CHUNK: u64 = 2 * 1024 * 1024;
pub const COLD_CHECK_MIN: u64 = 64 * 1024;
pub const CACHE_ENTRIES: usize = 10_000;
pub const CACHE_MAPPED_BYTES: u64 = 256 * 1024 * 1024 * 1024;
pub const CACHE_VALID_SECS: u64 = 1;
/// Files of at most this many bytes leave in one write with their head (see docs/benchmarks.md
/// for the measured crossover).
pub const SMALL_BODY_MAX: u64 = 4 * 1024;
/// Bytes of small bodies each worker keeps in memory.
pub const SMALL_BODY_BYTES: u64 = 16 * 1024 * 1024;
pub const ZIP_ROOT_NAME: &str = "archive";
pub const ZIP_LEVEL: u32 = 3;
pub const ZIP_MAX_ENTRIES: usize = 200_000;
pub const ZIP_MAX_BYTES: u64 = 1 << 40;
pub const ZIP_MAX_CONCURRENT: usize = 32;
pub const ZIP_CRC_AHEAD_MAX: u64 = 1 << 30;
pub const ZIP_MAX_REQUEST_BODY: u64 = 1 << 20;
pub const ZIP_MAX_DEPTH: usize = 128;
/// Bytes per second the background digest thread may read (a fraction of one core's SHA-256).
pub const DIGEST_READ_RATE: u64 = 256 * 1024 * 1024;
/// Seconds a client gets to complete its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
