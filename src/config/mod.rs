//! Configuration: the TOML file and the command-line flags merged into one validated [`Config`].
//!
//! Two levels, as in ripgrep: [`RawConfig`] is exactly what serde read (every key optional, unknown
//! keys rejected), and [`Config`] is the checked result with typed values and defaults filled in.
//! Every error names the file and the key, in one line, before the server binds anything.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod check;
pub mod defaults;
mod print;
mod raw;
mod reload;
mod tls;

pub use raw::*;
pub use reload::dropped_protections;
pub use tls::{CertificateFiles, TlsListener};

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

/// A protocol version a listener offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Whether to hand the session keys to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ktls {
    /// Use kernel TLS where the kernel offers it, userspace TLS where it does not.
    Auto,
    /// Always userspace TLS.
    Off,
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

/// Values given on the command line; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub listen: Vec<String>,
    pub workers: Option<usize>,
    /// `--admin-listen`: an address or `off`.
    pub admin_listen: Option<String>,
    /// `--drain-delay`: a duration.
    pub drain_delay: Option<String>,
    /// `--listing`: directory listings on.
    pub listing: bool,
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
    /// Slowest accepted client, per second of time spent waiting on the client (`None`: no
    /// rule, written 0); measured over `min_send_rate_window`.
    pub min_send_rate: Option<Rate>,
    pub min_send_rate_window: Duration,
    /// Time in-flight responses get to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Longest wait for the next bytes of a request body (408 after it).
    pub body_timeout: Duration,
    /// Slowest accepted request body on average, after the first `body_timeout` (`None`: no
    /// rule, written 0).
    pub min_body_rate: Option<Rate>,
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
    /// Files of at most this many bytes are sent from memory with their head (0: never).
    pub small_body_max: u64,
    /// Bytes of such bodies held per worker.
    pub small_body_bytes: u64,
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

/// One Cache-Control rule, as written.
#[derive(Clone, Debug)]
pub struct CacheRule {
    pub path: String,
    pub value: String,
}

/// `[[cache_control]]`, compiled once at validation: the rules as written (for the printed
/// form) and the glob set and header values requests are matched with.
#[derive(Clone, Debug, Default)]
pub struct CacheRules {
    rules: Vec<CacheRule>,
    globs: globset::GlobSet,
    values: Vec<http::HeaderValue>,
}

impl CacheRules {
    /// The rules, each glob already checked and compiled.
    pub(crate) fn new(
        rules: Vec<CacheRule>,
        globs: globset::GlobSet,
        values: Vec<http::HeaderValue>,
    ) -> CacheRules {
        CacheRules {
            rules,
            globs,
            values,
        }
    }

    /// The rules as written, in order.
    pub fn rules(&self) -> &[CacheRule] {
        &self.rules
    }

    /// The Cache-Control value of the first rule matching `rel` (no leading `/`).
    pub fn value_for(&self, rel: &str) -> Option<http::HeaderValue> {
        if self.values.is_empty() {
            return None;
        }
        let path = format!("/{rel}");
        let first = self.globs.matches(&path).into_iter().min()?;
        Some(self.values[first].clone())
    }
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
    pub protected: Vec<crate::url_prefix::UrlPrefix>,
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
    pub cache_control: CacheRules,
    pub signing: SigningSettings,
    pub bandwidth: Vec<BandwidthRule>,
    pub clients: ClientSettings,
    pub access_log: AccessLogSettings,
    /// Precompressed variants (`None` = off), in the server's order of preference.
    pub precompressed: Option<Vec<crate::http::encoding::Coding>>,
    /// Directory listings (`None` = off); the value is the most entries one page shows.
    pub listing: Option<usize>,
    /// The admin listener (/metrics, /healthz, /readyz); `None` = off.
    pub admin_listen: Option<SocketAddr>,
    /// Balancers and proxies in front of the node.
    pub proxy: ProxySettings,
    /// After SIGTERM, how long /readyz fails while the node still accepts and serves, before
    /// it stops accepting and drains.
    pub drain_delay: Duration,
    /// `[digests]`: off (`None`), or what to learn and send.
    pub digests: Option<std::sync::Arc<crate::digest::Plan>>,
    /// `[[tls]]`: HTTPS listeners (beside the plain ones in `listen`).
    pub tls: Vec<TlsListener>,
    /// Where the configuration came from, for messages.
    pub source: Option<PathBuf>,
}

/// Who may tell the server the client's address, and how.
#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    /// Peers whose PROXY header or forwarding header is believed.
    pub trusted: Vec<crate::cidr::Cidr>,
    /// Every connection starts with a PROXY protocol header (v1 or v2), from a trusted peer.
    pub protocol: bool,
    /// The request header that names the client, from a trusted peer.
    pub client_header: Option<ClientHeader>,
}

pub use crate::http::forwarded::ClientHeader;

impl ProxySettings {
    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = crate::cidr::canonical(ip);
        self.trusted.iter().any(|c| c.contains(ip))
    }
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
    pub prefix: crate::url_prefix::UrlPrefix,
    pub rate: Rate,
    pub burst: u64,
}

/// Parse a size such as `"2MiB"` (for values that arrive outside the file, e.g. in a link).
pub use crate::units::{parse_duration, parse_size_text, Rate};

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

    /// Validate an already parsed file. (Long only because it lists every section: each line
    /// hands one section to its check in `check`, and the struct literal names every field.)
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
        let root = check::check_root(&root).map_err(|m| err("root", m))?;

        let listen = check::listen(&raw, file)?;
        let tls = tls::check(&raw.tls, &listen, file)?;
        let workers = check::workers(&raw, file)?;
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

        let limits = check::limits(&raw, file)?;

        let socket = check::socket(&raw, file)?;

        let open_file_cache = check::open_file_cache(&raw, file)?;

        let zip = check::zip(&raw, file)?;

        let cache_control = check::cache_control(&raw, file)?;

        let signing = check::check_signing(raw.signing.clone().unwrap_or_default(), file)?;
        let bandwidth = check::check_bandwidth(&raw.bandwidth, file)?;
        let clients = check::check_clients(raw.clients.clone().unwrap_or_default(), file)?;
        let access_log = check::access_log(&raw, file)?;
        let precompressed = check::precompressed(&raw, file)?;
        let listing = check::listing(&raw, file, overrides)?;
        let admin_listen = check::admin(&raw, file, overrides, &listen)?;
        let drain_delay = check::drain_delay(&raw, file, overrides)?;
        let proxy = check::proxy(&raw, file)?;
        let digests = check::digests(&raw, file)?;

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
            drain_delay,
            proxy,
            digests,
            tls,
            source: file.map(Path::to_path_buf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check::parse_size;
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
