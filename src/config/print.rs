//! The effective configuration printed back as TOML (for `check-config`): every key with its
//! value, in the file's own spelling.

use std::time::Duration;

use super::raw::*;
use super::*;

impl Config {
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
