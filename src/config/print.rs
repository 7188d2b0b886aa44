//! The effective configuration printed back as TOML (for `check-config`): every key with its
//! value, in the file's own spelling. Each validated section turns back into its raw form here,
//! one conversion per section, and serde writes the file.

use std::time::Duration;

use super::raw::*;
use super::*;

impl Config {
    /// The effective configuration as TOML, every key with its value (for `check-config`).
    pub fn to_toml(&self) -> String {
        let raw = RawConfig {
            root: Some(self.root.clone()),
            listen: Some(self.listen.iter().map(|a| a.to_string()).collect()),
            workers: Some(self.workers),
            symlinks: Some(self.symlinks),
            dotfiles: Some(self.dotfiles),
            index: Some(self.index.clone()),
            max_ranges: Some(self.max_ranges),
            limits: Some((&self.limits).into()),
            socket: Some((&self.socket).into()),
            open_file_cache: Some((&self.open_file_cache).into()),
            zip: Some((&self.zip).into()),
            cache_control: self.cache_control.rules().iter().map(Into::into).collect(),
            signing: Some((&self.signing).into()),
            bandwidth: self.bandwidth.iter().map(Into::into).collect(),
            clients: Some((&self.clients).into()),
            access_log: Some((&self.access_log).into()),
            precompressed: Some(RawPrecompressed {
                enabled: Some(self.precompressed.is_some()),
                order: self.precompressed.clone(),
            }),
            listing: Some(RawListing {
                enabled: Some(self.listing.is_some()),
                max_entries: Some(self.listing.unwrap_or(defaults::LISTING_MAX_ENTRIES)),
            }),
            proxy: Some(RawProxy {
                trusted: Some(self.proxy.trusted.iter().map(|c| c.to_string()).collect()),
                protocol: Some(self.proxy.protocol),
                client_header: self.proxy.client_header.as_ref().map(|h| match h {
                    ClientHeader::XForwardedFor => "x-forwarded-for".to_string(),
                    ClientHeader::Forwarded => "forwarded".to_string(),
                    ClientHeader::Single(name) => name.as_str().to_string(),
                }),
            }),
            digests: Some(RawDigests {
                mode: Some(
                    self.digests
                        .as_ref()
                        .map_or(crate::digest::Mode::Off, |p| p.mode),
                ),
                algorithms: self.digests.as_ref().map(|p| p.algorithms.clone()),
                read_rate: self.digests.as_ref().and_then(|p| bytes(p.read_rate.get())),
                etag: Some(
                    self.digests
                        .as_ref()
                        .map_or_else(Default::default, |p| p.etag),
                ),
                write_attributes: self.digests.as_ref().map(|p| p.write_attributes),
            }),
            tls: self.tls.iter().map(Into::into).collect(),
            drain: Some(RawDrain {
                delay: secs(self.drain_delay),
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

/// A duration in the file's spelling: whole seconds as `"10s"`, else milliseconds.
fn secs(d: Duration) -> Option<DurationText> {
    Some(if d.subsec_millis() == 0 {
        DurationText::Text(format!("{}s", d.as_secs()))
    } else {
        DurationText::Text(format!("{}ms", d.as_millis()))
    })
}

/// A size in bytes.
fn bytes(n: u64) -> Option<SizeText> {
    Some(SizeText::Bytes(n))
}

/// A rate as the file writes it: bytes per second, 0 for no rule.
fn rate_or_zero(rate: Option<Rate>) -> u64 {
    rate.map_or(0, Rate::get)
}

impl From<&Limits> for RawLimits {
    fn from(l: &Limits) -> Self {
        RawLimits {
            header_bytes: bytes(l.header_bytes as u64),
            max_headers: Some(l.max_headers),
            target_bytes: bytes(l.target_bytes as u64),
            header_timeout: secs(l.header_timeout),
            keepalive_timeout: secs(l.keepalive_timeout),
            send_timeout: secs(l.send_timeout),
            min_send_rate: bytes(rate_or_zero(l.min_send_rate)),
            min_send_rate_window: secs(l.min_send_rate_window),
            shutdown_timeout: secs(l.shutdown_timeout),
            body_timeout: secs(l.body_timeout),
            min_body_rate: bytes(rate_or_zero(l.min_body_rate)),
            body_memory: bytes(l.body_memory as u64),
        }
    }
}

impl From<&SocketTuning> for RawSocket {
    fn from(s: &SocketTuning) -> Self {
        RawSocket {
            backlog: Some(s.backlog),
            defer_accept: secs(s.defer_accept),
            fastopen: Some(s.fastopen),
            send_buffer: bytes(s.send_buffer.unwrap_or(0) as u64),
            sendfile_max_chunk: bytes(s.sendfile_max_chunk as u64),
            cold_check_min: bytes(s.cold_check_min),
        }
    }
}

impl From<&OpenFileCacheSettings> for RawOpenFileCache {
    fn from(c: &OpenFileCacheSettings) -> Self {
        RawOpenFileCache {
            entries: Some(c.entries),
            mapped_bytes: bytes(c.mapped_bytes),
            valid: secs(c.valid),
            small_body_max: bytes(c.small_body_max),
            small_body_bytes: bytes(c.small_body_bytes),
        }
    }
}

impl From<&ZipSettings> for RawZip {
    fn from(z: &ZipSettings) -> Self {
        RawZip {
            enabled: Some(z.enabled),
            root_name: Some(z.root_name.clone()),
            compress: Some(z.compress),
            level: Some(z.level),
            max_entries: Some(z.max_entries),
            max_bytes: bytes(z.max_bytes),
            max_concurrent: Some(z.max_concurrent),
            crc_ahead_max: bytes(z.crc_ahead_max),
            max_request_body: bytes(z.max_request_body as u64),
            max_depth: Some(z.max_depth),
        }
    }
}

impl From<&CacheRule> for RawCacheRule {
    fn from(r: &CacheRule) -> Self {
        RawCacheRule {
            path: r.path.clone(),
            value: r.value.clone(),
        }
    }
}

impl From<&SigningSettings> for RawSigning {
    fn from(s: &SigningSettings) -> Self {
        RawSigning {
            protected: s.protected.iter().map(|p| p.to_string()).collect(),
            keys: s
                .keys
                .iter()
                .map(|k| RawKey {
                    id: k.id.clone(),
                    file: k.file.clone(),
                })
                .collect(),
        }
    }
}

impl From<&BandwidthRule> for RawBandwidthRule {
    fn from(b: &BandwidthRule) -> Self {
        RawBandwidthRule {
            prefix: b.prefix.to_string(),
            rate: SizeText::Bytes(b.rate.get()),
            burst: bytes(b.burst),
        }
    }
}

impl From<&ClientSettings> for RawClients {
    fn from(c: &ClientSettings) -> Self {
        RawClients {
            max_connections: Some(c.max_connections),
            max_connections_per_ip: Some(c.limits.max_connections_per_ip),
            requests_per_second: Some(c.limits.requests_per_second),
            request_burst: Some(c.limits.request_burst as u32),
            exempt: Some(c.limits.exempt.iter().map(|c| c.to_string()).collect()),
            link_rate_burst: bytes(c.link_rate_burst),
        }
    }
}

impl From<&AccessLogSettings> for RawAccessLog {
    fn from(a: &AccessLogSettings) -> Self {
        RawAccessLog {
            enabled: Some(a.enabled),
            format: Some(a.format),
            path: Some(a.path.clone().unwrap_or_else(|| PathBuf::from("-"))),
        }
    }
}

impl From<&TlsListener> for RawTls {
    fn from(t: &TlsListener) -> Self {
        RawTls {
            listen: t.listen.iter().map(|a| a.to_string()).collect(),
            certificates: t
                .certificates
                .iter()
                .map(|c| RawCertificate {
                    cert: c.cert.clone(),
                    key: c.key.clone(),
                })
                .collect(),
            versions: Some(t.versions.clone()),
            cipher_suites: t.cipher_suites.clone(),
            ktls: Some(t.ktls),
            handshake_timeout: secs(t.handshake_timeout),
            ticket_keys: t.ticket_keys.clone(),
            client_ca: t.client_ca.clone(),
        }
    }
}
