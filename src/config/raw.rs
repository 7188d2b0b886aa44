//! The configuration file exactly as serde reads it: every key optional (so defaults and flags can
//! fill the gaps), unknown keys refused, sizes and durations as written.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Compress, ConfigError, DotfileRule, Ktls, SymlinkRule, TlsVersion};

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
    pub drain: Option<RawDrain>,
    pub proxy: Option<RawProxy>,
    pub precompressed: Option<RawPrecompressed>,
    pub listing: Option<RawListing>,
    pub digests: Option<RawDigests>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<RawTls>,
}

/// `[[tls]]` as serde reads it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Vec<String>,
    pub certificates: Vec<RawCertificate>,
    pub versions: Option<Vec<TlsVersion>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    pub ktls: Option<Ktls>,
    pub handshake_timeout: Option<DurationText>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ticket_keys: Vec<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// `[[tls.certificates]]`: a PEM chain (leaf first) and its PEM private key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[precompressed]`: serve `x.br`, `x.zst`, `x.gz` beside `x` when the client accepts them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrecompressed {
    pub enabled: Option<bool>,
    pub order: Option<Vec<crate::http::encoding::Coding>>,
}

/// `[digests]`: RFC 9530 `Repr-Digest` and content-based ETags.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigests {
    pub mode: Option<crate::digest::Mode>,
    pub algorithms: Option<Vec<crate::digest::Algorithm>>,
    pub read_rate: Option<SizeText>,
    pub etag: Option<crate::digest::EtagSource>,
    pub write_attributes: Option<bool>,
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

/// `[proxy]`: who may say whose connection or request it is.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub trusted: Option<Vec<String>>,
    pub protocol: Option<bool>,
    pub client_header: Option<String>,
}

/// `[drain]`: how a SIGTERM warns the load balancer before the node stops accepting.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    pub delay: Option<DurationText>,
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
    pub small_body_max: Option<SizeText>,
    pub small_body_bytes: Option<SizeText>,
}

/// `[[cache_control]]`: the first rule whose glob matches the request path sets Cache-Control.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRule {
    pub path: String,
    pub value: String,
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
