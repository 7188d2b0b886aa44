//! Handing a finished TLS session to the kernel (kTLS), so that file bodies keep leaving by
//! sendfile(2) and the kernel encrypts them. `ktls = "auto"` tries it on every connection: the
//! `tls` ULP is attached first (the socket is unchanged if the kernel has none, and the
//! connection stays with rustls); then the bytes rustls already decrypted are taken out, the
//! session's keys and sequence numbers are extracted and installed for both directions.

use std::io::Read;
use std::os::fd::AsFd;

use rustls::{ConnectionTrafficSecrets, ProtocolVersion, ServerConnection};
use tokio::net::TcpStream;

use crate::sys::ktls::{self, TlsCryptoInfo};

/// What became of a session offered to the kernel.
pub enum Offload {
    /// The kernel encrypts and decrypts; `prefix` is plaintext rustls had already decrypted
    /// (the start of the first request), to be read before the socket.
    Kernel { tcp: TcpStream, prefix: Vec<u8> },
    /// The kernel cannot take it; the session goes on in userspace.
    Userspace {
        tcp: TcpStream,
        session: Box<ServerConnection>,
        why: &'static str,
    },
    /// The ULP was attached but the keys could not be installed: the connection is lost.
    Failed(std::io::Error),
}

/// Offer `session` (its handshake complete and flushed) to the kernel.
pub fn offload(tcp: TcpStream, mut session: ServerConnection) -> Offload {
    let keep = |tcp, session, why| Offload::Userspace {
        tcp,
        session: Box::new(session),
        why,
    };
    let Some(version) = session.protocol_version() else {
        return keep(tcp, session, "no protocol version");
    };
    if session.wants_write() {
        return keep(tcp, session, "records still queued");
    }
    if ktls::attach_ulp(tcp.as_fd()).is_err() {
        return keep(tcp, session, "no TLS ULP in the kernel");
    }
    let mut prefix = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = session.reader().read(&mut chunk) {
        prefix.extend_from_slice(&chunk[..n]);
    }
    match install(&tcp, version, session) {
        Ok(()) => Offload::Kernel { tcp, prefix },
        Err(e) => Offload::Failed(e),
    }
}

/// Extract the session's keys and install them in both directions.
fn install(
    tcp: &TcpStream,
    version: ProtocolVersion,
    session: ServerConnection,
) -> std::io::Result<()> {
    let secrets = session
        .dangerous_extract_secrets()
        .map_err(std::io::Error::other)?;
    let unsupported = || std::io::Error::other("cipher suite or version the kernel cannot take");
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    let tx = crypto_info(version, tx_seq, tx).ok_or_else(unsupported)?;
    let rx = crypto_info(version, rx_seq, rx).ok_or_else(unsupported)?;
    ktls::install_tx(tcp.as_fd(), &tx)?;
    ktls::install_rx(tcp.as_fd(), &rx)
}

/// The kernel's description of one direction's keys: `salt` is the first 4 bytes of the
/// AES-GCM IV and `iv` the other 8 (ChaCha20-Poly1305 takes all 12), `rec_seq` the next record's
/// sequence number.
fn crypto_info(
    version: ProtocolVersion,
    seq: u64,
    secrets: ConnectionTrafficSecrets,
) -> Option<TlsCryptoInfo> {
    let version = match version {
        ProtocolVersion::TLSv1_2 => libc::TLS_1_2_VERSION,
        ProtocolVersion::TLSv1_3 => libc::TLS_1_3_VERSION,
        _ => return None,
    };
    let rec_seq = seq.to_be_bytes();
    let info = |cipher_type| libc::tls_crypto_info {
        version,
        cipher_type,
    };
    Some(match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            let (salt, iv) = iv.as_ref().split_at(4);
            TlsCryptoInfo::Aes128Gcm(libc::tls12_crypto_info_aes_gcm_128 {
                info: info(libc::TLS_CIPHER_AES_GCM_128),
                iv: iv.try_into().ok()?,
                key: key.as_ref().try_into().ok()?,
                salt: salt.try_into().ok()?,
                rec_seq,
            })
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            let (salt, iv) = iv.as_ref().split_at(4);
            TlsCryptoInfo::Aes256Gcm(libc::tls12_crypto_info_aes_gcm_256 {
                info: info(libc::TLS_CIPHER_AES_GCM_256),
                iv: iv.try_into().ok()?,
                key: key.as_ref().try_into().ok()?,
                salt: salt.try_into().ok()?,
                rec_seq,
            })
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            TlsCryptoInfo::Chacha20Poly1305(libc::tls12_crypto_info_chacha20_poly1305 {
                info: info(libc::TLS_CIPHER_CHACHA20_POLY1305),
                iv: iv.as_ref().try_into().ok()?,
                key: key.as_ref().try_into().ok()?,
                salt: [],
                rec_seq,
            })
        }
        _ => return None,
    })
}
