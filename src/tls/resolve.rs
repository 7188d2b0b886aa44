//! Choosing the certificate for a handshake: the first configured one valid for the name the
//! client asked for (SNI) whose key can sign with a scheme the client offers; the first
//! configured one when the client names nothing or no certificate matches.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificates of one listener, in configuration order.
#[derive(Debug)]
pub struct BySni {
    pub certs: Vec<Arc<CertifiedKey>>,
}

impl BySni {
    fn matches(cert: &CertifiedKey, name: &str) -> bool {
        let Ok(name) = rustls_pki_types::ServerName::try_from(name) else {
            return false;
        };
        let Some(der) = cert.cert.first() else {
            return false;
        };
        webpki::EndEntityCert::try_from(der)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.certs.len() > 1 {
            if let Some(name) = hello.server_name() {
                let schemes = hello.signature_schemes();
                let found = self
                    .certs
                    .iter()
                    .find(|c| c.key.choose_scheme(schemes).is_some() && BySni::matches(c, name));
                if let Some(c) = found {
                    return Some(c.clone());
                }
            }
        }
        self.certs.first().cloned()
    }
}
