//! `[[tls]]`: HTTPS listeners, validated. Each block is one group of addresses
//! with its own certificates, protocol versions, client-certificate rule and ticket keys. The
//! files are only named and checked for readability here; the `tls` module (a layer up) loads
//! them (at start-up and on every SIGHUP).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults::TLS_HANDSHAKE_TIMEOUT_SECS;
use super::raw::RawTls;
use super::{ConfigError, Ktls, TlsVersion};

/// One validated `[[tls]]` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    pub listen: Vec<SocketAddr>,
    /// Certificate chain and key files, absolute; the first is the default (no SNI, no match).
    pub certificates: Vec<CertificateFiles>,
    pub versions: Vec<TlsVersion>,
    /// The suites offered, by IANA name, in order of preference; empty: the provider's
    /// (AES-GCM and ChaCha20-Poly1305 with ECDHE only).
    pub cipher_suites: Vec<String>,
    pub ktls: Ktls,
    pub handshake_timeout: Duration,
    /// Session-ticket key files, newest first: the first issues, all decrypt. Empty: keys of
    /// this process only (resumption does not cross nodes or restarts).
    pub ticket_keys: Vec<PathBuf>,
    /// The CA bundle client certificates must chain to (authenticated origin pulls).
    pub client_ca: Option<PathBuf>,
}

/// A certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Validate every `[[tls]]` block: addresses resolved and not used twice (nor by a plain
/// listener), at least one certificate, a known version list. Paths are made absolute against
/// the configuration file's directory.
pub(super) fn check(
    raw: &[RawTls],
    plain: &[SocketAddr],
    file: Option<&Path>,
) -> Result<Vec<TlsListener>, ConfigError> {
    let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
    let mut taken: Vec<SocketAddr> = plain.to_vec();
    let mut out = Vec::new();
    for (i, block) in raw.iter().enumerate() {
        let err = |key: &str, msg: String| ConfigError::new(file, format!("tls[{i}].{key}"), msg);
        let listen = addresses(&block.listen, &mut taken).map_err(|m| err("listen", m))?;
        if block.certificates.is_empty() {
            return Err(err(
                "certificates",
                "needs at least one cert and key".into(),
            ));
        }
        let certificates = block
            .certificates
            .iter()
            .map(|c| CertificateFiles {
                cert: base.join(&c.cert),
                key: base.join(&c.key),
            })
            .collect();
        let versions = block
            .versions
            .clone()
            .unwrap_or_else(|| vec![TlsVersion::Tls12, TlsVersion::Tls13]);
        if versions.is_empty() {
            return Err(err("versions", "needs \"1.2\", \"1.3\" or both".into()));
        }
        let handshake_timeout =
            super::check::nonzero_duration(&block.handshake_timeout, TLS_HANDSHAKE_TIMEOUT_SECS)
                .map_err(|m| err("handshake_timeout", m))?;
        out.push(TlsListener {
            listen,
            certificates,
            versions,
            cipher_suites: block.cipher_suites.clone(),
            ktls: block.ktls.unwrap_or(Ktls::Auto),
            handshake_timeout,
            ticket_keys: block.ticket_keys.iter().map(|p| base.join(p)).collect(),
            client_ca: block.client_ca.as_ref().map(|p| base.join(p)),
        });
    }
    Ok(out)
}

/// Resolve `texts`, refusing an empty list and any address already in `taken` (which grows);
/// port 0 (the kernel picks one per listener) may repeat.
fn addresses(texts: &[String], taken: &mut Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    if texts.is_empty() {
        return Err("needs at least one address".into());
    }
    let mut out = Vec::new();
    for text in texts {
        let addr = super::check::resolve(text)?;
        if addr.port() != 0 && taken.contains(&addr) {
            return Err(format!("{text:?} ({addr}) is already a listener"));
        }
        taken.push(addr);
        out.push(addr);
    }
    Ok(out)
}
