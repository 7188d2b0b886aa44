//! Configuration: the TOML file and the command-line flags merged into one validated [`Config`].
//!
//! Two levels, as in ripgrep: [`RawConfig`] is exactly what serde read (every key optional, unknown
//! keys rejected), and [`Config`] is the checked result with typed values and defaults filled in.
//! Every error names the file and the key, in one line, before the server binds anything.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration problem, printed as one line: `<file>: <key>: <what is wrong>`.
#[derive(Debug)]
pub struct ConfigError {
    file: Option<PathBuf>,
    key: String,
    message: String,
}

impl ConfigError {
    fn new(file: Option<&Path>, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.map(Path::to_path_buf),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) if self.key.is_empty() => write!(f, "{}: {}", file.display(), self.message),
            Some(file) => write!(
                f,
                "{}: key `{}`: {}",
                file.display(),
                self.key,
                self.message
            ),
            None if self.key.is_empty() => write!(f, "{}", self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A duration written as `"10s"`, `"500ms"`, `"2m"`, `"1h"`, or a bare number of seconds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum DurationText {
    /// Whole seconds.
    Seconds(u64),
    /// A number with a unit suffix.
    Text(String),
}

/// A byte size written as `"16KiB"`, `"2MiB"`, `"1GiB"`, `"512"`, or a bare number of bytes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SizeText {
    /// Bytes.
    Bytes(u64),
    /// A number with a unit suffix.
    Text(String),
}

/// Whether names beginning with a dot are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DotfileRule {
    /// 404 for any path component starting with `.`, except a leading `/.well-known/`.
    Deny,
    /// Serve dotfiles like any other file.
    Allow,
}

/// How symbolic links met while resolving a request path are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SymlinkRule {
    /// Any symlink in the path is refused.
    Deny,
    /// Symlinks are followed while they stay beneath the root (relative targets only).
    InsideRoot,
    /// Symlinks are followed wherever they point (the operator trusts the tree).
    Follow,
}

/// How archive entries are stored (the `compress` parameter and `zip.compress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compress {
    /// Deflate text where it pays, store media and already-compressed data.
    Auto,
    /// Store everything (always sized and resumable).
    Store,
    /// Deflate every file.
    Deflate,
}

impl std::str::FromStr for Compress {
    type Err = String;

    /// The query parameter's spelling, the same as the file's.
    fn from_str(v: &str) -> Result<Compress, String> {
        match v {
            "auto" => Ok(Compress::Auto),
            "store" => Ok(Compress::Store),
            "deflate" => Ok(Compress::Deflate),
            _ => Err(format!("compress={v:?} is not auto, store or deflate")),
        }
    }
}

/// The file as read: every key optional so that defaults and CLI flags can fill the gaps.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub root: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub workers: Option<usize>,
    pub symlinks: Option<SymlinkRule>,
    pub dotfiles: Option<DotfileRule>,
    pub index: Option<String>,
    pub max_ranges: Option<usize>,
    pub limits: Option<RawLimits>,
    pub socket: Option<RawSocket>,
    pub open_file_cache: Option<RawOpenFileCache>,
    pub zip: Option<RawZip>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_control: Vec<RawCacheRule>,
    pub signing: Option<RawSigning>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bandwidth: Vec<RawBandwidthRule>,
    pub clients: Option<RawClients>,
    pub access_log: Option<RawAccessLog>,
    pub admin: Option<RawAdmin>,
    pub precompressed: Option<RawPrecompressed>,
    pub listing: Option<RawListing>,
}

/// `[precompressed]`: serve `x.br`, `x.zst`, `x.gz` beside `x` when the client accepts them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrecompressed {
    pub enabled: Option<bool>,
    pub order: Option<Vec<crate::http::encoding::Coding>>,
}

/// `[listing]`: directory listings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawListing {
    pub enabled: Option<bool>,
    pub max_entries: Option<usize>,
}

/// `[access_log]`: one line per request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
    pub format: Option<crate::access_log::Format>,
    /// `"-"` for stdout, else a file (relative to the config file's directory).
    pub path: Option<PathBuf>,
}

/// `[admin]`: the metrics and health listener.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// An address, or `"off"`.
    pub listen: Option<String>,
}

/// `[signing]`: signed expiring links.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    /// Path prefixes that need a valid signature.
    #[serde(default)]
    pub protected: Vec<String>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
}

/// `[[signing.keys]]`: one key, by id, in its own file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    pub file: PathBuf,
}

/// `[[bandwidth]]`: pace responses under a prefix.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBandwidthRule {
    pub prefix: String,
    pub rate: SizeText,
    pub burst: Option<SizeText>,
}

/// `[clients]`: connection caps and request rates.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClients {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub requests_per_second: Option<f64>,
    pub request_burst: Option<u32>,
    pub exempt: Option<Vec<String>>,
    pub link_rate_burst: Option<SizeText>,
}

/// `[zip]`: archive downloads of directories and selections.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawZip {
    pub enabled: Option<bool>,
    pub root_name: Option<String>,
    pub compress: Option<Compress>,
    pub level: Option<u32>,
    pub max_entries: Option<usize>,
    pub max_bytes: Option<SizeText>,
    pub max_concurrent: Option<usize>,
    pub crc_ahead_max: Option<SizeText>,
    pub max_request_body: Option<SizeText>,
    pub max_depth: Option<usize>,
}

/// `[limits]`: request size limits and timeouts.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_bytes: Option<SizeText>,
    pub max_headers: Option<usize>,
    pub target_bytes: Option<SizeText>,
    pub header_timeout: Option<DurationText>,
    pub keepalive_timeout: Option<DurationText>,
    pub send_timeout: Option<DurationText>,
    pub min_send_rate: Option<SizeText>,
    pub min_send_rate_window: Option<DurationText>,
    pub shutdown_timeout: Option<DurationText>,
    pub body_timeout: Option<DurationText>,
    pub min_body_rate: Option<SizeText>,
    pub body_memory: Option<SizeText>,
}

/// `[socket]`: listener and connection tuning.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSocket {
    pub backlog: Option<u32>,
    pub defer_accept: Option<DurationText>,
    pub fastopen: Option<u32>,
    pub send_buffer: Option<SizeText>,
    pub sendfile_max_chunk: Option<SizeText>,
    pub cold_check_min: Option<SizeText>,
}

/// `[open_file_cache]`: the per-worker cache of open, mapped files.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenFileCache {
    pub entries: Option<usize>,
    pub mapped_bytes: Option<SizeText>,
    pub valid: Option<DurationText>,
}

/// `[[cache_control]]`: the first rule whose glob matches the request path sets Cache-Control.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRule {
    pub path: String,
    pub value: String,
}

/// Values given on the command line; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub listen: Vec<String>,
    pub workers: Option<usize>,
    /// `--admin-listen`: an address or `off`.
    pub admin_listen: Option<String>,
}

/// Request size limits and timeouts.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head (request line plus headers) before 431.
    pub header_bytes: usize,
    /// Most header fields in one request before 431.
    pub max_headers: usize,
    /// Longest request target before 414.
    pub target_bytes: usize,
    /// Time allowed for a whole request head once its first byte arrived (slowloris guard).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open waiting for its next request.
    pub keepalive_timeout: Duration,
    /// Time a response may go without the client accepting any byte before it is closed.
    pub send_timeout: Duration,
    /// Slowest accepted client, in bytes per second of time spent waiting on the client (0 = no
    /// rule); measured over `min_send_rate_window`.
    pub min_send_rate: u64,
    pub min_send_rate_window: Duration,
    /// Time in-flight responses get to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Longest wait for the next bytes of a request body (408 after it).
    pub body_timeout: Duration,
    /// Slowest accepted request body on average, in bytes per second after the first
    /// `body_timeout` (0 = no rule).
    pub min_body_rate: u64,
    /// Request-body bytes all workers may hold in memory at once (503 past it).
    pub body_memory: usize,
}

/// Listener and connection tuning.
#[derive(Clone, Debug)]
pub struct SocketTuning {
    pub backlog: u32,
    pub defer_accept: Duration,
    pub fastopen: u32,
    pub send_buffer: Option<u32>,
    pub sendfile_max_chunk: usize,
    pub cold_check_min: u64,
}

/// Per-worker open-file cache bounds.
#[derive(Clone, Debug)]
pub struct OpenFileCacheSettings {
    pub entries: usize,
    pub mapped_bytes: u64,
    pub valid: Duration,
}

/// Archive downloads.
#[derive(Clone, Debug)]
pub struct ZipSettings {
    pub enabled: bool,
    pub root_name: String,
    pub compress: Compress,
    pub level: u32,
    pub max_entries: usize,
    pub max_bytes: u64,
    pub max_concurrent: usize,
    pub crc_ahead_max: u64,
    pub max_request_body: usize,
    /// Deepest folder nesting an archive may walk (deeper: 403 before the first byte).
    pub max_depth: usize,
}

/// One Cache-Control rule.
#[derive(Clone, Debug)]
pub struct CacheRule {
    pub path: String,
    pub value: String,
}

/// The access log.
#[derive(Clone, Debug)]
pub struct AccessLogSettings {
    pub enabled: bool,
    pub format: crate::access_log::Format,
    /// `None` = stdout.
    pub path: Option<PathBuf>,
}

/// Signed links.
#[derive(Clone, Debug, Default)]
pub struct SigningSettings {
    pub keys: Vec<crate::bounded_read::KeySource>,
    /// Leading and trailing `/`.
    pub protected: Vec<String>,
}

/// Connection caps and per-client rates.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub max_connections: usize,
    pub limits: ClientLimits,
    /// The free burst of a link that carries `rate=` outside any `[[bandwidth]]` rule.
    pub link_rate_burst: u64,
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub root: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub workers: usize,
    pub symlinks: SymlinkRule,
    pub dotfiles: DotfileRule,
    pub index: String,
    pub max_ranges: usize,
    pub limits: Limits,
    pub socket: SocketTuning,
    pub open_file_cache: OpenFileCacheSettings,
    pub zip: ZipSettings,
    pub cache_control: Vec<CacheRule>,
    pub signing: SigningSettings,
    pub bandwidth: Vec<BandwidthRule>,
    pub clients: ClientSettings,
    pub access_log: AccessLogSettings,
    /// Precompressed variants, in the server's order of preference (empty = off).
    pub precompressed: Vec<crate::http::encoding::Coding>,
    /// Directory listings (`None` = off); the value is the most entries one page shows.
    pub listing: Option<usize>,
    /// The admin listener (/metrics, /healthz, /readyz); `None` = off.
    pub admin_listen: Option<SocketAddr>,
    /// Where the configuration came from, for messages.
    pub source: Option<PathBuf>,
}

/// The per-client policy.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Concurrent connections from one address; 0 = no cap.
    pub max_connections_per_ip: usize,
    /// Requests per second from one address (sustained); 0 = no limit.
    pub requests_per_second: f64,
    /// Requests an address may make at once above the rate.
    pub request_burst: f64,
    /// Addresses the per-IP rules do not apply to (load balancers, CDN edges).
    pub exempt: Vec<crate::cidr::Cidr>,
}

/// A bandwidth rule: responses under `prefix` leave at `rate` bytes per second after a free
/// `burst` (nginx's limit_rate and limit_rate_after).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandwidthRule {
    /// Leading and trailing `/` (or just `/` for everything).
    pub prefix: String,
    pub rate: u64,
    pub burst: u64,
}

/// Defaults, in one place (docs/configuration.md lists the same values).
pub mod defaults {
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
    pub const ZIP_ROOT_NAME: &str = "archive";
    pub const ZIP_LEVEL: u32 = 3;
    pub const ZIP_MAX_ENTRIES: usize = 200_000;
    pub const ZIP_MAX_BYTES: u64 = 1 << 40;
    pub const ZIP_MAX_CONCURRENT: usize = 32;
    pub const ZIP_CRC_AHEAD_MAX: u64 = 1 << 30;
    pub const ZIP_MAX_REQUEST_BODY: u64 = 1 << 20;
    pub const ZIP_MAX_DEPTH: usize = 128;
}

impl Config {
    /// Read `file` (if any), apply `overrides`, and validate everything.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw = match file {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        Config::from_raw(raw, file, overrides)
    }

    /// Like [`Config::load`], for SIGHUP: a file with no setting at all (empty, or only
    /// comments) is refused rather than taken as "every default".
    pub fn load_for_reload(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        if let Some(path) = file {
            let bytes =
                crate::bounded_read::read_regular(path, crate::bounded_read::MAX_CONFIG_FILE)
                    .map_err(|e| {
                        ConfigError::new(Some(path), "", format!("cannot read config file: {e}"))
                    })?;
            let empty = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .is_some_and(|table| table.is_empty());
            if empty {
                return Err(ConfigError::new(
                    Some(path),
                    "",
                    "the file sets nothing (empty or truncated?); keeping the running configuration",
                ));
            }
        }
        Config::load(file, overrides)
    }

    /// Validate an already parsed file.
    pub fn from_raw(
        mut raw: RawConfig,
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
        if let Some(root) = &overrides.root {
            raw.root = Some(root.clone());
        }
        if !overrides.listen.is_empty() {
            raw.listen = Some(overrides.listen.clone());
        }
        if overrides.workers.is_some() {
            raw.workers = overrides.workers;
        }

        // A relative root in a file is relative to the file's directory; on the command line, to
        // the current directory.
        let root = raw.root.clone().unwrap_or_else(|| PathBuf::from("."));
        let root = match (file, overrides.root.is_some()) {
            (Some(f), false) if root.is_relative() => {
                f.parent().unwrap_or(Path::new(".")).join(root)
            }
            _ => root,
        };
        let root = check_root(&root).map_err(|m| err("root", m))?;

        let listen_text = raw
            .listen
            .clone()
            .unwrap_or_else(|| vec![defaults::LISTEN.to_string()]);
        if listen_text.is_empty() {
            return Err(err("listen", "needs at least one address".into()));
        }
        let mut listen = Vec::new();
        for text in &listen_text {
            let addr = text
                .to_socket_addrs()
                .map_err(|e| err("listen", format!("cannot resolve {text:?}: {e}")))?
                .next()
                .ok_or_else(|| err("listen", format!("{text:?} resolves to no address")))?;
            if listen.contains(&addr) {
                return Err(err("listen", format!("{text:?} ({addr}) is given twice")));
            }
            listen.push(addr);
        }

        let workers = match raw.workers {
            None | Some(0) => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            Some(n) if n > 1024 => return Err(err("workers", format!("{n} is more than 1024"))),
            Some(n) => n,
        };

        let symlinks = raw.symlinks.unwrap_or(SymlinkRule::InsideRoot);
        let index = raw
            .index
            .clone()
            .unwrap_or_else(|| defaults::INDEX.to_string());
        if index.is_empty() || index.contains('/') || index == "." || index == ".." {
            return Err(err("index", format!("{index:?} must be a plain file name")));
        }
        let max_ranges = raw.max_ranges.unwrap_or(defaults::MAX_RANGES);
        if max_ranges == 0 {
            return Err(err("max_ranges", "must be at least 1".into()));
        }

        let l = raw.limits.clone().unwrap_or_default();
        let header_bytes = size(&l.header_bytes, defaults::HEADER_BYTES)
            .map_err(|m| err("limits.header_bytes", m))?;
        if !(8192..=1024 * 1024).contains(&header_bytes) {
            return Err(err(
                "limits.header_bytes",
                format!("{header_bytes} is outside 8KiB..1MiB"),
            ));
        }
        let target_bytes = size(&l.target_bytes, defaults::TARGET_BYTES)
            .map_err(|m| err("limits.target_bytes", m))?;
        if target_bytes < 256 || target_bytes >= header_bytes {
            return Err(err(
                "limits.target_bytes",
                format!("{target_bytes} must be at least 256 and less than limits.header_bytes ({header_bytes})"),
            ));
        }
        let max_headers = l.max_headers.unwrap_or(defaults::MAX_HEADERS);
        if max_headers == 0 || max_headers > 1000 {
            return Err(err(
                "limits.max_headers",
                format!("{max_headers} is outside 1..1000"),
            ));
        }
        let limits = Limits {
            header_bytes: header_bytes as usize,
            max_headers,
            target_bytes: target_bytes as usize,
            header_timeout: nonzero_duration(&l.header_timeout, defaults::HEADER_TIMEOUT_SECS)
                .map_err(|m| err("limits.header_timeout", m))?,
            keepalive_timeout: nonzero_duration(
                &l.keepalive_timeout,
                defaults::KEEPALIVE_TIMEOUT_SECS,
            )
            .map_err(|m| err("limits.keepalive_timeout", m))?,
            send_timeout: nonzero_duration(&l.send_timeout, defaults::SEND_TIMEOUT_SECS)
                .map_err(|m| err("limits.send_timeout", m))?,
            min_send_rate: size(&l.min_send_rate, defaults::MIN_SEND_RATE)
                .map_err(|m| err("limits.min_send_rate", m))?,
            min_send_rate_window: nonzero_duration(
                &l.min_send_rate_window,
                defaults::MIN_SEND_RATE_WINDOW_SECS,
            )
            .map_err(|m| err("limits.min_send_rate_window", m))?,
            shutdown_timeout: duration(&l.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT_SECS)
                .map_err(|m| err("limits.shutdown_timeout", m))?,
            body_timeout: nonzero_duration(&l.body_timeout, defaults::BODY_TIMEOUT_SECS)
                .map_err(|m| err("limits.body_timeout", m))?,
            min_body_rate: size(&l.min_body_rate, defaults::MIN_BODY_RATE)
                .map_err(|m| err("limits.min_body_rate", m))?,
            body_memory: usize::try_from(
                size(&l.body_memory, defaults::BODY_MEMORY)
                    .map_err(|m| err("limits.body_memory", m))?,
            )
            .unwrap_or(usize::MAX),
        };
        if limits.body_memory < 64 * 1024 {
            return Err(err(
                "limits.body_memory",
                format!("{} is less than 64KiB", limits.body_memory),
            ));
        }

        let s = raw.socket.clone().unwrap_or_default();
        let sendfile_max_chunk = size(&s.sendfile_max_chunk, defaults::SENDFILE_MAX_CHUNK)
            .map_err(|m| err("socket.sendfile_max_chunk", m))?;
        if !(4096..=1 << 30).contains(&sendfile_max_chunk) {
            return Err(err(
                "socket.sendfile_max_chunk",
                format!("{sendfile_max_chunk} is outside 4KiB..1GiB"),
            ));
        }
        let send_buffer = match &s.send_buffer {
            None => None,
            Some(v) => {
                let n = parse_size(v).map_err(|m| err("socket.send_buffer", m))?;
                if n == 0 {
                    None
                } else {
                    Some(
                        u32::try_from(n)
                            .map_err(|_| err("socket.send_buffer", format!("{n} is too large")))?,
                    )
                }
            }
        };
        let socket = SocketTuning {
            backlog: s.backlog.unwrap_or(defaults::BACKLOG).max(1),
            defer_accept: duration(&s.defer_accept, defaults::DEFER_ACCEPT_SECS)
                .map_err(|m| err("socket.defer_accept", m))?,
            fastopen: s.fastopen.unwrap_or(0),
            send_buffer,
            sendfile_max_chunk: sendfile_max_chunk as usize,
            cold_check_min: size(&s.cold_check_min, defaults::COLD_CHECK_MIN)
                .map_err(|m| err("socket.cold_check_min", m))?,
        };

        let c = raw.open_file_cache.clone().unwrap_or_default();
        let open_file_cache = OpenFileCacheSettings {
            entries: c.entries.unwrap_or(defaults::CACHE_ENTRIES),
            mapped_bytes: size(&c.mapped_bytes, defaults::CACHE_MAPPED_BYTES)
                .map_err(|m| err("open_file_cache.mapped_bytes", m))?,
            valid: duration(&c.valid, defaults::CACHE_VALID_SECS)
                .map_err(|m| err("open_file_cache.valid", m))?,
        };
        if open_file_cache.entries > 60_000 {
            return Err(err(
                "open_file_cache.entries",
                format!(
                    "{} would approach vm.max_map_count (65530 mappings per process)",
                    open_file_cache.entries
                ),
            ));
        }

        let z = raw.zip.clone().unwrap_or_default();
        let root_name = z
            .root_name
            .clone()
            .unwrap_or_else(|| defaults::ZIP_ROOT_NAME.to_string());
        if root_name.is_empty()
            || root_name.contains(['/', '\\', '\0'])
            || root_name.starts_with('.')
        {
            return Err(err(
                "zip.root_name",
                format!("{root_name:?} must be a plain name"),
            ));
        }
        let level = z.level.unwrap_or(defaults::ZIP_LEVEL);
        if level > 9 {
            return Err(err("zip.level", format!("{level} is outside 0..9")));
        }
        let max_request_body = size(&z.max_request_body, defaults::ZIP_MAX_REQUEST_BODY)
            .map_err(|m| err("zip.max_request_body", m))?;
        let zip = ZipSettings {
            enabled: z.enabled.unwrap_or(true),
            root_name,
            compress: z.compress.unwrap_or(Compress::Auto),
            level,
            max_entries: z.max_entries.unwrap_or(defaults::ZIP_MAX_ENTRIES),
            max_bytes: size(&z.max_bytes, defaults::ZIP_MAX_BYTES)
                .map_err(|m| err("zip.max_bytes", m))?,
            max_concurrent: z.max_concurrent.unwrap_or(defaults::ZIP_MAX_CONCURRENT),
            crc_ahead_max: size(&z.crc_ahead_max, defaults::ZIP_CRC_AHEAD_MAX)
                .map_err(|m| err("zip.crc_ahead_max", m))?,
            max_request_body: usize::try_from(max_request_body).unwrap_or(usize::MAX),
            max_depth: z.max_depth.unwrap_or(defaults::ZIP_MAX_DEPTH),
        };
        if !(1..=1024).contains(&zip.max_depth) {
            return Err(err(
                "zip.max_depth",
                format!("{} is outside 1..1024", zip.max_depth),
            ));
        }

        let mut cache_control = Vec::new();
        for (i, rule) in raw.cache_control.iter().enumerate() {
            let key = format!("cache_control[{i}]");
            if !rule.path.starts_with('/') && !rule.path.starts_with('*') {
                return Err(err(
                    &format!("{key}.path"),
                    format!("{:?} must start with / or *", rule.path),
                ));
            }
            globset::Glob::new(&rule.path)
                .map_err(|e| err(&format!("{key}.path"), e.to_string()))?;
            http::HeaderValue::from_str(&rule.value).map_err(|_| {
                err(
                    &format!("{key}.value"),
                    format!("{:?} is not a valid header value", rule.value),
                )
            })?;
            cache_control.push(CacheRule {
                path: rule.path.clone(),
                value: rule.value.clone(),
            });
        }

        let signing = check_signing(raw.signing.clone().unwrap_or_default(), file)?;
        let bandwidth = check_bandwidth(&raw.bandwidth, file)?;
        let clients = check_clients(raw.clients.clone().unwrap_or_default(), file)?;
        let a = raw.access_log.clone().unwrap_or_default();
        let access_log = AccessLogSettings {
            enabled: a.enabled.unwrap_or(true),
            format: a.format.unwrap_or(crate::access_log::Format::Json),
            path: match a.path {
                None => None,
                Some(p) if p.as_os_str() == "-" => None,
                Some(p) => Some(
                    file.and_then(Path::parent)
                        .unwrap_or(Path::new("."))
                        .join(p),
                ),
            },
        };
        if let (true, Some(path)) = (access_log.enabled, &access_log.path) {
            check_log_path(path).map_err(|m| err("access_log.path", m))?;
        }
        let p = raw.precompressed.clone().unwrap_or_default();
        let order = p.order.clone().unwrap_or_else(|| {
            use crate::http::encoding::Coding;
            vec![Coding::Br, Coding::Zstd, Coding::Gzip]
        });
        for (i, c) in order.iter().enumerate() {
            if order[..i].contains(c) {
                return Err(err(
                    "precompressed.order",
                    format!("{:?} is listed twice", c.token()),
                ));
            }
        }
        let precompressed = if p.enabled.unwrap_or(false) {
            order
        } else {
            Vec::new()
        };
        let l = raw.listing.clone().unwrap_or_default();
        let listing_max = l.max_entries.unwrap_or(defaults::LISTING_MAX_ENTRIES);
        if listing_max == 0 {
            return Err(err("listing.max_entries", "must be at least 1".into()));
        }
        let listing = l.enabled.unwrap_or(false).then_some(listing_max);
        let admin_text = overrides
            .admin_listen
            .clone()
            .or_else(|| raw.admin.as_ref().and_then(|a| a.listen.clone()))
            .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
        let admin_listen = if admin_text == "off" {
            None
        } else {
            let addr = admin_text
                .to_socket_addrs()
                .map_err(|e| {
                    err(
                        "admin.listen",
                        format!("cannot resolve {admin_text:?}: {e}"),
                    )
                })?
                .next()
                .ok_or_else(|| {
                    err(
                        "admin.listen",
                        format!("{admin_text:?} resolves to no address"),
                    )
                })?;
            if listen
                .iter()
                .any(|l| l.port() == addr.port() && addr.port() != 0)
            {
                return Err(err(
                    "admin.listen",
                    format!("{addr} shares a port with `listen`; the admin listener needs its own"),
                ));
            }
            Some(addr)
        };

        Ok(Config {
            root,
            listen,
            workers,
            symlinks,
            dotfiles: raw.dotfiles.unwrap_or(DotfileRule::Deny),
            index,
            max_ranges,
            limits,
            socket,
            open_file_cache,
            zip,
            cache_control,
            signing,
            bandwidth,
            clients,
            access_log,
            precompressed,
            listing,
            admin_listen,
            source: file.map(Path::to_path_buf),
        })
    }

    /// The effective configuration as TOML, every key with its value (for `check-config`).
    pub fn to_toml(&self) -> String {
        let secs = |d: Duration| {
            if d.subsec_millis() == 0 {
                DurationText::Text(format!("{}s", d.as_secs()))
            } else {
                DurationText::Text(format!("{}ms", d.as_millis()))
            }
        };
        let raw = RawConfig {
            root: Some(self.root.clone()),
            listen: Some(self.listen.iter().map(|a| a.to_string()).collect()),
            workers: Some(self.workers),
            symlinks: Some(self.symlinks),
            dotfiles: Some(self.dotfiles),
            index: Some(self.index.clone()),
            max_ranges: Some(self.max_ranges),
            limits: Some(RawLimits {
                header_bytes: Some(SizeText::Bytes(self.limits.header_bytes as u64)),
                max_headers: Some(self.limits.max_headers),
                target_bytes: Some(SizeText::Bytes(self.limits.target_bytes as u64)),
                header_timeout: Some(secs(self.limits.header_timeout)),
                keepalive_timeout: Some(secs(self.limits.keepalive_timeout)),
                send_timeout: Some(secs(self.limits.send_timeout)),
                min_send_rate: Some(SizeText::Bytes(self.limits.min_send_rate)),
                min_send_rate_window: Some(secs(self.limits.min_send_rate_window)),
                shutdown_timeout: Some(secs(self.limits.shutdown_timeout)),
                body_timeout: Some(secs(self.limits.body_timeout)),
                min_body_rate: Some(SizeText::Bytes(self.limits.min_body_rate)),
                body_memory: Some(SizeText::Bytes(self.limits.body_memory as u64)),
            }),
            socket: Some(RawSocket {
                backlog: Some(self.socket.backlog),
                defer_accept: Some(secs(self.socket.defer_accept)),
                fastopen: Some(self.socket.fastopen),
                send_buffer: Some(SizeText::Bytes(self.socket.send_buffer.unwrap_or(0) as u64)),
                sendfile_max_chunk: Some(SizeText::Bytes(self.socket.sendfile_max_chunk as u64)),
                cold_check_min: Some(SizeText::Bytes(self.socket.cold_check_min)),
            }),
            open_file_cache: Some(RawOpenFileCache {
                entries: Some(self.open_file_cache.entries),
                mapped_bytes: Some(SizeText::Bytes(self.open_file_cache.mapped_bytes)),
                valid: Some(secs(self.open_file_cache.valid)),
            }),
            zip: Some(RawZip {
                enabled: Some(self.zip.enabled),
                root_name: Some(self.zip.root_name.clone()),
                compress: Some(self.zip.compress),
                level: Some(self.zip.level),
                max_entries: Some(self.zip.max_entries),
                max_bytes: Some(SizeText::Bytes(self.zip.max_bytes)),
                max_concurrent: Some(self.zip.max_concurrent),
                crc_ahead_max: Some(SizeText::Bytes(self.zip.crc_ahead_max)),
                max_request_body: Some(SizeText::Bytes(self.zip.max_request_body as u64)),
                max_depth: Some(self.zip.max_depth),
            }),
            cache_control: self
                .cache_control
                .iter()
                .map(|r| RawCacheRule {
                    path: r.path.clone(),
                    value: r.value.clone(),
                })
                .collect(),
            signing: Some(RawSigning {
                protected: self.signing.protected.clone(),
                keys: self
                    .signing
                    .keys
                    .iter()
                    .map(|k| RawKey {
                        id: k.id.clone(),
                        file: k.file.clone(),
                    })
                    .collect(),
            }),
            bandwidth: self
                .bandwidth
                .iter()
                .map(|b| RawBandwidthRule {
                    prefix: b.prefix.clone(),
                    rate: SizeText::Bytes(b.rate),
                    burst: Some(SizeText::Bytes(b.burst)),
                })
                .collect(),
            clients: Some(RawClients {
                max_connections: Some(self.clients.max_connections),
                max_connections_per_ip: Some(self.clients.limits.max_connections_per_ip),
                requests_per_second: Some(self.clients.limits.requests_per_second),
                request_burst: Some(self.clients.limits.request_burst as u32),
                exempt: Some(
                    self.clients
                        .limits
                        .exempt
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                ),
                link_rate_burst: Some(SizeText::Bytes(self.clients.link_rate_burst)),
            }),
            access_log: Some(RawAccessLog {
                enabled: Some(self.access_log.enabled),
                format: Some(self.access_log.format),
                path: Some(
                    self.access_log
                        .path
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("-")),
                ),
            }),
            precompressed: Some(RawPrecompressed {
                enabled: Some(!self.precompressed.is_empty()),
                order: (!self.precompressed.is_empty()).then(|| self.precompressed.clone()),
            }),
            listing: Some(RawListing {
                enabled: Some(self.listing.is_some()),
                max_entries: Some(self.listing.unwrap_or(defaults::LISTING_MAX_ENTRIES)),
            }),
            admin: Some(RawAdmin {
                listen: Some(
                    self.admin_listen
                        .map_or_else(|| "off".to_string(), |a| a.to_string()),
                ),
            }),
        };
        toml::to_string(&raw).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

impl RawConfig {
    /// Read and parse a TOML file; unknown keys and type errors name the line.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let bytes = crate::bounded_read::read_regular(path, crate::bounded_read::MAX_CONFIG_FILE)
            .map_err(|e| {
            ConfigError::new(Some(path), "", format!("cannot read config file: {e}"))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ConfigError::new(Some(path), "", "config file: not UTF-8 text".to_string())
        })?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(line) => ConfigError::new(Some(path), "", format!("line {line}: {msg}")),
                None => ConfigError::new(Some(path), "", msg),
            }
        })
    }
}

/// A path prefix as written in the file → leading and trailing `/`, no `.`/`..`.
fn prefix(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} must start with /"));
    }
    let mut rel = String::new();
    crate::fs::path::normalize(text, &mut rel).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(if rel.is_empty() {
        "/".to_string()
    } else {
        format!("/{rel}/")
    })
}

fn check_signing(raw: RawSigning, file: Option<&Path>) -> Result<SigningSettings, ConfigError> {
    let err = |key: String, msg: String| ConfigError::new(file, key, msg);
    let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
    let mut keys: Vec<crate::bounded_read::KeySource> = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        if k.id.is_empty()
            || !k
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(err(
                format!("signing.keys[{i}].id"),
                format!("{:?} must be letters, digits, '-', '_' or '.'", k.id),
            ));
        }
        if keys.iter().any(|other| other.id == k.id) {
            return Err(err(
                format!("signing.keys[{i}].id"),
                format!("{:?} is used twice", k.id),
            ));
        }
        let path = base.join(&k.file);
        crate::bounded_read::read_key_file(&path)
            .map_err(|m| err(format!("signing.keys[{i}].file"), m))?;
        keys.push(crate::bounded_read::KeySource {
            id: k.id.clone(),
            file: path,
        });
    }
    let mut protected = Vec::new();
    for (i, p) in raw.protected.iter().enumerate() {
        protected.push(prefix(p).map_err(|m| err(format!("signing.protected[{i}]"), m))?);
    }
    if !protected.is_empty() && keys.is_empty() {
        return Err(err(
            "signing.keys".into(),
            "protected prefixes need at least one key".into(),
        ));
    }
    Ok(SigningSettings { keys, protected })
}

fn check_bandwidth(
    raw: &[RawBandwidthRule],
    file: Option<&Path>,
) -> Result<Vec<BandwidthRule>, ConfigError> {
    let mut rules: Vec<BandwidthRule> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let err =
            |key: &str, msg: String| ConfigError::new(file, format!("bandwidth[{i}].{key}"), msg);
        let p = prefix(&r.prefix).map_err(|m| err("prefix", m))?;
        if rules.iter().any(|o| o.prefix == p) {
            return Err(err("prefix", format!("{p:?} has two rules")));
        }
        let rate = parse_size(&r.rate).map_err(|m| err("rate", m))?;
        if rate < 1024 {
            return Err(err("rate", format!("{rate} is below 1KiB per second")));
        }
        let burst = size(&r.burst, 0).map_err(|m| err("burst", m))?;
        rules.push(BandwidthRule {
            prefix: p,
            rate,
            burst,
        });
    }
    Ok(rules)
}

fn check_clients(raw: RawClients, file: Option<&Path>) -> Result<ClientSettings, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, format!("clients.{key}"), msg);
    let max_connections = raw.max_connections.unwrap_or(defaults::MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(err("max_connections", "must be at least 1".into()));
    }
    let rps = raw.requests_per_second.unwrap_or(0.0);
    if !(rps == 0.0 || (0.001..=1e9).contains(&rps)) {
        return Err(err(
            "requests_per_second",
            format!("{rps} must be 0 (off) or between 0.001 and 1e9"),
        ));
    }
    let burst = raw.request_burst.unwrap_or(defaults::REQUEST_BURST);
    if burst == 0 {
        return Err(err("request_burst", "must be at least 1".into()));
    }
    let mut exempt = Vec::new();
    for (i, c) in raw.exempt.unwrap_or_default().iter().enumerate() {
        exempt.push(crate::cidr::Cidr::parse(c).map_err(|m| err(&format!("exempt[{i}]"), m))?);
    }
    Ok(ClientSettings {
        max_connections,
        limits: ClientLimits {
            max_connections_per_ip: raw.max_connections_per_ip.unwrap_or(0),
            requests_per_second: rps,
            request_burst: f64::from(burst),
            exempt,
        },
        link_rate_burst: size(&raw.link_rate_burst, defaults::LINK_RATE_BURST)
            .map_err(|m| err("link_rate_burst", m))?,
    })
}

/// Parse a size such as `"2MiB"` (for values that arrive outside the file, e.g. in a link).
pub use crate::units::{parse_duration, parse_size_text};

fn parse_size(v: &SizeText) -> Result<u64, String> {
    match v {
        SizeText::Bytes(n) => Ok(*n),
        SizeText::Text(t) => parse_size_text(t),
    }
}

/// The access log's path must be a file (or not exist yet) in an existing folder.
fn check_log_path(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{} is a directory", path.display()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(format!("the folder of {} does not exist", path.display()));
    }
    Ok(())
}

/// The protections `old` has and `new` would drop, one line each, for the reload's warnings.
pub fn dropped_protections(old: &Config, new: &Config) -> Vec<String> {
    let mut dropped = Vec::new();
    for prefix in &old.signing.protected {
        if !new.signing.protected.contains(prefix) {
            dropped.push(format!(
                "signing.protected {prefix:?} is no longer protected"
            ));
        }
    }
    for rule in &old.bandwidth {
        if !new.bandwidth.iter().any(|r| r.prefix == rule.prefix) {
            dropped.push(format!("[[bandwidth]] rule for {:?} removed", rule.prefix));
        }
    }
    let (o, n) = (&old.clients.limits, &new.clients.limits);
    if o.max_connections_per_ip > 0 && n.max_connections_per_ip == 0 {
        dropped.push("clients.max_connections_per_ip turned off".into());
    }
    if o.requests_per_second > 0.0 && n.requests_per_second == 0.0 {
        dropped.push("clients.requests_per_second turned off".into());
    }
    if old.dotfiles == DotfileRule::Deny && new.dotfiles == DotfileRule::Allow {
        dropped.push("dotfiles now served".into());
    }
    if old.symlinks != new.symlinks && new.symlinks == SymlinkRule::Follow {
        dropped.push("symlinks now followed anywhere".into());
    }
    dropped
}

fn check_root(root: &Path) -> Result<PathBuf, String> {
    let canonical = root
        .canonicalize()
        .map_err(|e| format!("{} cannot be used: {e}", root.display()))?;
    if !canonical.is_dir() {
        return Err(format!("{} is not a directory", canonical.display()));
    }
    std::fs::read_dir(&canonical)
        .map_err(|e| format!("{} is not readable: {e}", canonical.display()))?;
    Ok(canonical)
}

fn duration(v: &Option<DurationText>, default_secs: u64) -> Result<Duration, String> {
    match v {
        None => Ok(Duration::from_secs(default_secs)),
        Some(DurationText::Seconds(s)) => Ok(Duration::from_secs(*s)),
        Some(DurationText::Text(t)) => parse_duration(t),
    }
}

fn nonzero_duration(v: &Option<DurationText>, default_secs: u64) -> Result<Duration, String> {
    let d = duration(v, default_secs)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn size(v: &Option<SizeText>, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(v) => parse_size(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(parse_size(&SizeText::Text("16KiB".into())).unwrap(), 16384);
        assert_eq!(parse_size(&SizeText::Text("2MiB".into())).unwrap(), 2 << 20);
        assert!(parse_size(&SizeText::Text("2 parsecs".into())).is_err());
        assert!(parse_size(&SizeText::Text("99999999999999999999T".into())).is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let raw: RawConfig = toml::from_str("[limits]\nheader_timeout = \"soon\"\n").unwrap();
        let e = Config::from_raw(raw, Some(Path::new("/etc/x.toml")), &Overrides::default())
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("/etc/x.toml: key `limits.header_timeout`:"),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<RawConfig>("rooot = \"/srv\"\n").is_err());
        assert!(toml::from_str::<RawConfig>("[limits]\nheader_byts = 1\n").is_err());
    }
}
