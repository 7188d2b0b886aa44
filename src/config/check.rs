//! Validation, one function per section: each turns its part of the raw file into typed values
//! with defaults filled in, and names the file and the key in any error.

use crate::digest::Plan;
use crate::url_prefix::UrlPrefix;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSetBuilder};

use super::raw::*;
use super::*;

/// `listen`: at least one address, each resolved, none twice.
pub(super) fn listen(raw: &RawConfig, file: Option<&Path>) -> Result<Vec<SocketAddr>, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let listen_text = raw
        .listen
        .clone()
        .unwrap_or_else(|| vec![defaults::LISTEN.to_string()]);
    if listen_text.is_empty() && raw.tls.is_empty() {
        return Err(err(
            "listen",
            "needs at least one address (or a [[tls]] listener)".into(),
        ));
    }
    let mut listen = Vec::new();
    for text in &listen_text {
        let addr = resolve(text).map_err(|m| err("listen", m))?;
        if listen.contains(&addr) {
            return Err(err("listen", format!("{text:?} ({addr}) is given twice")));
        }
        listen.push(addr);
    }
    Ok(listen)
}

/// One address as written (`host:port`), resolved to its first address.
pub(super) fn resolve(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// `workers`: 0 or absent means one per core.
pub(super) fn workers(raw: &RawConfig, file: Option<&Path>) -> Result<usize, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let workers = match raw.workers {
        None | Some(0) => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        Some(n) if n > 1024 => return Err(err("workers", format!("{n} is more than 1024"))),
        Some(n) => n,
    };
    Ok(workers)
}

/// `[limits]`: request sizes, timeouts and body rules.
pub(super) fn limits(raw: &RawConfig, file: Option<&Path>) -> Result<Limits, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let l = raw.limits.clone().unwrap_or_default();
    let header_bytes =
        size(&l.header_bytes, defaults::HEADER_BYTES).map_err(|m| err("limits.header_bytes", m))?;
    if !(8192..=1024 * 1024).contains(&header_bytes) {
        return Err(err(
            "limits.header_bytes",
            format!("{header_bytes} is outside 8KiB..1MiB"),
        ));
    }
    let target_bytes =
        size(&l.target_bytes, defaults::TARGET_BYTES).map_err(|m| err("limits.target_bytes", m))?;
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
        keepalive_timeout: nonzero_duration(&l.keepalive_timeout, defaults::KEEPALIVE_TIMEOUT_SECS)
            .map_err(|m| err("limits.keepalive_timeout", m))?,
        send_timeout: nonzero_duration(&l.send_timeout, defaults::SEND_TIMEOUT_SECS)
            .map_err(|m| err("limits.send_timeout", m))?,
        min_send_rate: rate_or_off(&l.min_send_rate, defaults::MIN_SEND_RATE)
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
        min_body_rate: rate_or_off(&l.min_body_rate, defaults::MIN_BODY_RATE)
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
    Ok(limits)
}

/// `[socket]`: listener and connection tuning.
pub(super) fn socket(raw: &RawConfig, file: Option<&Path>) -> Result<SocketTuning, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
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
    Ok(socket)
}

/// `[open_file_cache]`: the per-worker cache of open, mapped files.
pub(super) fn open_file_cache(
    raw: &RawConfig,
    file: Option<&Path>,
) -> Result<OpenFileCacheSettings, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let c = raw.open_file_cache.clone().unwrap_or_default();
    let open_file_cache = OpenFileCacheSettings {
        entries: c.entries.unwrap_or(defaults::CACHE_ENTRIES),
        mapped_bytes: size(&c.mapped_bytes, defaults::CACHE_MAPPED_BYTES)
            .map_err(|m| err("open_file_cache.mapped_bytes", m))?,
        valid: duration(&c.valid, defaults::CACHE_VALID_SECS)
            .map_err(|m| err("open_file_cache.valid", m))?,
        small_body_max: size(&c.small_body_max, defaults::SMALL_BODY_MAX)
            .map_err(|m| err("open_file_cache.small_body_max", m))?,
        small_body_bytes: size(&c.small_body_bytes, defaults::SMALL_BODY_BYTES)
            .map_err(|m| err("open_file_cache.small_body_bytes", m))?,
    };
    if open_file_cache.small_body_max > 1024 * 1024 {
        return Err(err(
            "open_file_cache.small_body_max",
            "must be at most 1MiB: larger bodies cost less by sendfile".into(),
        ));
    }
    if open_file_cache.entries > 60_000 {
        return Err(err(
            "open_file_cache.entries",
            format!(
                "{} would approach vm.max_map_count (65530 mappings per process)",
                open_file_cache.entries
            ),
        ));
    }
    Ok(open_file_cache)
}

/// `[zip]`: archive downloads.
pub(super) fn zip(raw: &RawConfig, file: Option<&Path>) -> Result<ZipSettings, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let z = raw.zip.clone().unwrap_or_default();
    let root_name = z
        .root_name
        .clone()
        .unwrap_or_else(|| defaults::ZIP_ROOT_NAME.to_string());
    if root_name.is_empty() || root_name.contains(['/', '\\', '\0']) || root_name.starts_with('.') {
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
    Ok(zip)
}

/// `[[cache_control]]`: each glob and value checked and compiled here, once.
pub(super) fn cache_control(
    raw: &RawConfig,
    file: Option<&Path>,
) -> Result<CacheRules, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let (mut rules, mut globs, mut values) = (Vec::new(), GlobSetBuilder::new(), Vec::new());
    for (i, rule) in raw.cache_control.iter().enumerate() {
        let key = format!("cache_control[{i}]");
        if !rule.path.starts_with('/') && !rule.path.starts_with('*') {
            return Err(err(
                &format!("{key}.path"),
                format!("{:?} must start with / or *", rule.path),
            ));
        }
        let glob = GlobBuilder::new(&rule.path).literal_separator(true).build();
        globs.add(glob.map_err(|e| err(&format!("{key}.path"), e.to_string()))?);
        values.push(http::HeaderValue::from_str(&rule.value).map_err(|_| {
            err(
                &format!("{key}.value"),
                format!("{:?} is not a valid header value", rule.value),
            )
        })?);
        rules.push(CacheRule {
            path: rule.path.clone(),
            value: rule.value.clone(),
        });
    }
    let globs = globs
        .build()
        .map_err(|e| err("cache_control", e.to_string()))?;
    Ok(CacheRules::new(rules, globs, values))
}

/// `[access_log]`: format and destination (a file in an existing folder).
pub(super) fn access_log(
    raw: &RawConfig,
    file: Option<&Path>,
) -> Result<AccessLogSettings, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
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
    Ok(access_log)
}

/// `[precompressed]`: `None` when off, else the variants looked for, in order (at least one).
pub(super) fn precompressed(
    raw: &RawConfig,
    file: Option<&Path>,
) -> Result<Option<Vec<crate::http::encoding::Coding>>, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
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
    // An empty order serves no variant, so it is off, as it always was (and prints back as
    // `enabled = false`).
    if !p.enabled.unwrap_or(false) || order.is_empty() {
        return Ok(None);
    }
    Ok(Some(order))
}

/// `[listing]`: `None` when off, else the entries per page.
pub(super) fn listing(
    raw: &RawConfig,
    file: Option<&Path>,
    overrides: &Overrides,
) -> Result<Option<usize>, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let l = raw.listing.clone().unwrap_or_default();
    let listing_max = l.max_entries.unwrap_or(defaults::LISTING_MAX_ENTRIES);
    if listing_max == 0 {
        return Err(err("listing.max_entries", "must be at least 1".into()));
    }
    let enabled = overrides.listing || l.enabled.unwrap_or(false);
    let listing = enabled.then_some(listing_max);
    Ok(listing)
}

/// `[admin] listen` (or `--admin-listen`): an address of its own, or `off`.
pub(super) fn admin(
    raw: &RawConfig,
    file: Option<&Path>,
    overrides: &Overrides,
    listen: &[SocketAddr],
) -> Result<Option<SocketAddr>, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let admin_text = overrides
        .admin_listen
        .clone()
        .or_else(|| raw.admin.as_ref().and_then(|a| a.listen.clone()))
        .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
    let admin_listen = if admin_text == "off" {
        None
    } else {
        let addr = resolve(&admin_text).map_err(|m| err("admin.listen", m))?;
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
    Ok(admin_listen)
}

pub(super) fn check_signing(
    raw: RawSigning,
    file: Option<&Path>,
) -> Result<SigningSettings, ConfigError> {
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
        protected.push(UrlPrefix::parse(p).map_err(|m| err(format!("signing.protected[{i}]"), m))?);
    }
    if !protected.is_empty() && keys.is_empty() {
        return Err(err(
            "signing.keys".into(),
            "protected prefixes need at least one key".into(),
        ));
    }
    Ok(SigningSettings { keys, protected })
}

pub(super) fn check_bandwidth(
    raw: &[RawBandwidthRule],
    file: Option<&Path>,
) -> Result<Vec<BandwidthRule>, ConfigError> {
    let mut rules: Vec<BandwidthRule> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let err =
            |key: &str, msg: String| ConfigError::new(file, format!("bandwidth[{i}].{key}"), msg);
        let p = UrlPrefix::parse(&r.prefix).map_err(|m| err("prefix", m))?;
        if rules.iter().any(|o| o.prefix == p) {
            return Err(err("prefix", format!("{p:?} has two rules")));
        }
        let rate = parse_size(&r.rate).map_err(|m| err("rate", m))?;
        let rate = Rate::new(rate)
            .filter(|r| r.get() >= 1024)
            .ok_or_else(|| err("rate", format!("{rate} is below 1KiB per second")))?;
        let burst = size(&r.burst, 0).map_err(|m| err("burst", m))?;
        rules.push(BandwidthRule {
            prefix: p,
            rate,
            burst,
        });
    }
    Ok(rules)
}

pub(super) fn check_clients(
    raw: RawClients,
    file: Option<&Path>,
) -> Result<ClientSettings, ConfigError> {
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

pub(super) fn parse_size(v: &SizeText) -> Result<u64, String> {
    match v {
        SizeText::Bytes(n) => Ok(*n),
        SizeText::Text(t) => parse_size_text(t),
    }
}

/// The access log's path must be a file (or not exist yet) in an existing folder.
pub(super) fn check_log_path(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{} is a directory", path.display()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(format!("the folder of {} does not exist", path.display()));
    }
    Ok(())
}

pub(super) fn check_root(root: &Path) -> Result<PathBuf, String> {
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

pub(super) fn duration(v: &Option<DurationText>, default_secs: u64) -> Result<Duration, String> {
    match v {
        None => Ok(Duration::from_secs(default_secs)),
        Some(DurationText::Seconds(s)) => Ok(Duration::from_secs(*s)),
        Some(DurationText::Text(t)) => parse_duration(t),
    }
}

pub(super) fn nonzero_duration(
    v: &Option<DurationText>,
    default_secs: u64,
) -> Result<Duration, String> {
    let d = duration(v, default_secs)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

pub(super) fn size(v: &Option<SizeText>, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(v) => parse_size(v),
    }
}

/// A rate in bytes per second where 0 means "no rule".
pub(super) fn rate_or_off(v: &Option<SizeText>, default: u64) -> Result<Option<Rate>, String> {
    size(v, default).map(Rate::new)
}

/// `[drain] delay` (or `--drain-delay`): at most ten minutes.
pub(super) fn drain_delay(
    raw: &RawConfig,
    file: Option<&Path>,
    overrides: &Overrides,
) -> Result<Duration, ConfigError> {
    let delay = match &overrides.drain_delay {
        Some(text) => parse_duration(text),
        None => duration(
            &raw.drain.as_ref().and_then(|d| d.delay.clone()),
            defaults::DRAIN_DELAY_SECS,
        ),
    }
    .map_err(|m| ConfigError::new(file, "drain.delay", m))?;
    if delay > Duration::from_secs(600) {
        return Err(ConfigError::new(
            file,
            "drain.delay",
            format!("{delay:?} is longer than ten minutes"),
        ));
    }
    Ok(delay)
}

/// `[proxy]`: trusted CIDRs, the PROXY protocol, and the client header.
pub(super) fn proxy(raw: &RawConfig, file: Option<&Path>) -> Result<ProxySettings, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let p = raw.proxy.clone().unwrap_or_default();
    let mut trusted = Vec::new();
    for (i, c) in p.trusted.unwrap_or_default().iter().enumerate() {
        trusted
            .push(crate::cidr::Cidr::parse(c).map_err(|m| err(&format!("proxy.trusted[{i}]"), m))?);
    }
    let client_header = match p.client_header.as_deref().map(str::to_ascii_lowercase) {
        None => None,
        Some(h) if h == "x-forwarded-for" => Some(ClientHeader::XForwardedFor),
        Some(h) if h == "forwarded" => Some(ClientHeader::Forwarded),
        Some(h) => Some(ClientHeader::Single(
            http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| err("proxy.client_header", format!("{h:?} is not a header name")))?,
        )),
    };
    let protocol = p.protocol.unwrap_or(false);
    if (protocol || client_header.is_some()) && trusted.is_empty() {
        return Err(err(
            "proxy.trusted",
            "is empty: list the balancers' addresses that may name the client".into(),
        ));
    }
    Ok(ProxySettings {
        trusted,
        protocol,
        client_header,
    })
}

/// `[digests]`: `None` when off; else the mode, the algorithms (SHA-256 unless listed), the
/// read rate and the ETag source. A content ETag needs SHA-256.
pub(super) fn digests(
    raw: &RawConfig,
    file: Option<&Path>,
) -> Result<Option<std::sync::Arc<Plan>>, ConfigError> {
    use crate::digest::{Algorithm, EtagSource, Mode};
    let err = |key: &str, msg: String| ConfigError::new(file, key, msg);
    let d = raw.digests.clone().unwrap_or_default();
    let mode = d.mode.unwrap_or_default();
    let etag = d.etag.unwrap_or_default();
    if mode == Mode::Off {
        if etag == EtagSource::Content {
            return Err(err(
                "digests.etag",
                "\"content\" needs digests (mode = \"background\" or \"precomputed-only\")".into(),
            ));
        }
        return Ok(None);
    }
    let algorithms = d.algorithms.unwrap_or_else(|| vec![Algorithm::Sha256]);
    if algorithms.is_empty() {
        return Err(err(
            "digests.algorithms",
            "lists no algorithm (use mode = \"off\")".into(),
        ));
    }
    if etag == EtagSource::Content && !algorithms.contains(&Algorithm::Sha256) {
        return Err(err(
            "digests.etag",
            "\"content\" needs \"sha-256\" in digests.algorithms".into(),
        ));
    }
    let read_rate =
        size(&d.read_rate, defaults::DIGEST_READ_RATE).map_err(|m| err("digests.read_rate", m))?;
    let read_rate =
        Rate::new(read_rate).ok_or_else(|| err("digests.read_rate", "must be above 0".into()))?;
    Ok(Some(std::sync::Arc::new(Plan {
        mode,
        algorithms,
        read_rate,
        etag,
        write_attributes: d.write_attributes.unwrap_or(false),
    })))
}
