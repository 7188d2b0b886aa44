//! HTTPS: each `[[tls]]` block compiled into a rustls server configuration (certificates chosen
//! by SNI, the versions asked for, ALPN `http/1.1`, session tickets, optional client-certificate
//! verification), once per settings generation, so that SIGHUP re-reads every file and a broken
//! one keeps the running generation. The handshake itself is in [`handshake`].
//!
//! The crypto provider is *ring*: it builds with the C compiler alone (aws-lc-rs needs cmake),
//! which keeps CI and packaging simple; both offer the same suites here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

mod certinfo;
pub(crate) mod handshake;
pub(crate) mod kernel;
mod records;
mod resolve;
mod tickets;

pub use certinfo::CertificateInfo;

use crate::config::{CertificateFiles, Ktls, TlsListener, TlsVersion};

/// Largest PEM file read (a long chain is a few KiB; a CA bundle a few hundred).
const MAX_PEM: u64 = 4 << 20;

/// One compiled `[[tls]]` block.
pub struct Endpoint {
    pub server: Arc<ServerConfig>,
    pub certificates: Vec<CertificateInfo>,
    pub handshake_timeout: Duration,
    pub ktls: Ktls,
}

/// Load every file `listener` names and build its server configuration. The error names the
/// file at fault.
pub fn compile(listener: &TlsListener) -> Result<Endpoint, String> {
    let provider = Arc::new(provider(&listener.cipher_suites)?);
    let mut certs = Vec::new();
    let mut certificates = Vec::new();
    for files in &listener.certificates {
        let (key, info) = load_pair(files, &provider)?;
        certs.push(key);
        certificates.push(info);
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = listener
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("versions: {e}"))?;
    let builder = match &listener.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, &provider)?),
    };
    let mut server = builder.with_cert_resolver(Arc::new(resolve::BySni { certs }));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.ticketer = ticketer(&listener.ticket_keys)?;
    server.max_early_data_size = 0;
    // kTLS needs the session's keys once the handshake is done.
    server.enable_secret_extraction = listener.ktls == Ktls::Auto;
    Ok(Endpoint {
        server: Arc::new(server),
        certificates,
        handshake_timeout: listener.handshake_timeout,
        ktls: listener.ktls,
    })
}

/// The ring provider, its suites cut down to `names` (in that order) when any are given.
fn provider(names: &[String]) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let all = std::mem::take(&mut provider.cipher_suites);
    for name in names {
        let suite = all
            .iter()
            .find(|s| s.suite().as_str() == Some(name.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = all.iter().filter_map(|s| s.suite().as_str()).collect();
                format!("cipher_suites: {name:?} is not one of {}", known.join(", "))
            })?;
        provider.cipher_suites.push(*suite);
    }
    Ok(provider)
}

/// A chain and its key, checked to belong together.
fn load_pair(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, CertificateInfo), String> {
    let chain = read_chain(&files.cert)?;
    let key_pem = read_pem(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no usable private key: {e}", files.key.display()))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let (serial, not_after) = certinfo::read(&chain[0]).ok_or_else(|| {
        format!(
            "{}: the first certificate cannot be read",
            files.cert.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "{} does not belong to {}: {e}",
                files.key.display(),
                files.cert.display()
            ))
        }
    }
    let info = CertificateInfo {
        file: files.cert.clone(),
        serial,
        not_after,
    };
    Ok((Arc::new(certified), info))
}

/// Every certificate of a PEM file, at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE block", path.display()));
    }
    Ok(chain)
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    crate::bounded_read::read_regular(path, MAX_PEM)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Client certificates must chain to the bundle at `ca`.
fn client_verifier(
    ca: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_chain(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", ca.display()))
}

/// The fleet's shared ticket keys, or keys of this process (rotated by rustls) when none are
/// configured.
fn ticketer(files: &[std::path::PathBuf]) -> Result<Arc<dyn ProducesTickets>, String> {
    if files.is_empty() {
        return rustls::crypto::ring::Ticketer::new().map_err(|e| format!("tickets: {e}"));
    }
    Ok(Arc::new(tickets::SharedTickets::load(files)?))
}
