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
    if !may_offload() {
        return keep(tcp, session, "no TLS ULP in the kernel");
    }
    let Some(version) = session.protocol_version() else {
        return keep(tcp, session, "no protocol version");
    };
    if session.wants_write() {
        return keep(tcp, session, "records still queued");
    }
    let suite = session.negotiated_cipher_suite().map(|s| s.suite());
    if !suite.is_some_and(|s| kernel_takes(version, s)) {
        return keep(
            tcp,
            session,
            "the kernel cannot take this version and suite",
        );
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

/// Whether the kernel takes keys of `suite` for `version`, tried once per process on a loopback
/// connection of its own (with throwaway keys), so that a kernel without the cipher (or without
/// the ULP) costs a session nothing: it is kept in userspace before anything is handed over.
/// The answers are atomics (no lock on the connection path); two workers probing the same pair
/// at once both get the same answer.
fn kernel_takes(version: ProtocolVersion, suite: rustls::CipherSuite) -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;
    /// Per (TLS 1.2, 1.3) × cipher.
    static KNOWN: [AtomicU8; 6] = [const { AtomicU8::new(UNKNOWN) }; 6];
    let (Some(row), Some(cipher)) = (version_row(version), Cipher::of(suite)) else {
        return false;
    };
    let slot = &KNOWN[row * 3 + cipher as usize];
    match slot.load(Relaxed) {
        UNKNOWN => {
            let takes = probe(version, cipher).is_ok();
            slot.store(if takes { YES } else { NO }, Relaxed);
            takes
        }
        known => known == YES,
    }
}

/// 0 for TLS 1.2, 1 for TLS 1.3.
fn version_row(version: ProtocolVersion) -> Option<usize> {
    match version {
        ProtocolVersion::TLSv1_2 => Some(0),
        ProtocolVersion::TLSv1_3 => Some(1),
        _ => None,
    }
}

/// Set once the kernel has refused the ULP itself: no session can go to it, so handshakes need
/// not read record by record.
static NO_ULP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a session may still be handed to the kernel (false once it refused the ULP).
pub fn may_offload() -> bool {
    !NO_ULP.load(std::sync::atomic::Ordering::Relaxed)
}

/// Attach the ULP to a fresh loopback connection and install zero keys of `cipher`.
fn probe(version: ProtocolVersion, cipher: Cipher) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let _server = listener.accept()?;
    if let Err(e) = ktls::attach_ulp(client.as_fd()) {
        NO_ULP.store(true, std::sync::atomic::Ordering::Relaxed);
        return Err(e);
    }
    let unsupported = || std::io::Error::other("not a version the kernel knows");
    let info = crypto_info(version, 0, cipher, &[0; 32][..cipher.key_len()], &[0; 12])
        .ok_or_else(unsupported)?;
    ktls::install_tx(client.as_fd(), &info)?;
    ktls::install_rx(client.as_fd(), &info)
}

/// The AEADs the kernel's record layer knows.
#[derive(Clone, Copy)]
enum Cipher {
    Aes128Gcm = 0,
    Aes256Gcm = 1,
    Chacha20Poly1305 = 2,
}

impl Cipher {
    /// The AEAD of a suite rustls negotiates.
    fn of(suite: rustls::CipherSuite) -> Option<Cipher> {
        use rustls::CipherSuite as S;
        Some(match suite {
            S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Cipher::Aes128Gcm,
            S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Cipher::Aes256Gcm,
            S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Cipher::Chacha20Poly1305,
            _ => return None,
        })
    }

    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            _ => 32,
        }
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
    let tx = from_secrets(version, tx_seq, tx).ok_or_else(unsupported)?;
    let rx = from_secrets(version, rx_seq, rx).ok_or_else(unsupported)?;
    ktls::install_tx(tcp.as_fd(), &tx)?;
    ktls::install_rx(tcp.as_fd(), &rx)
}

/// One direction's keys as rustls hands them over, for the kernel.
fn from_secrets(
    version: ProtocolVersion,
    seq: u64,
    secrets: ConnectionTrafficSecrets,
) -> Option<TlsCryptoInfo> {
    let (cipher, key, iv) = match &secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (Cipher::Chacha20Poly1305, key, iv)
        }
        _ => return None,
    };
    crypto_info(version, seq, cipher, key.as_ref(), iv.as_ref())
}

/// The kernel's description of one direction's keys: `salt` is the first 4 bytes of the
/// AES-GCM IV and `iv` the other 8 (ChaCha20-Poly1305 takes all 12), `rec_seq` the next record's
/// sequence number.
fn crypto_info(
    version: ProtocolVersion,
    seq: u64,
    cipher: Cipher,
    key: &[u8],
    iv: &[u8],
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
    let (salt, explicit) = iv.split_at(4);
    Some(match cipher {
        Cipher::Aes128Gcm => TlsCryptoInfo::Aes128Gcm(libc::tls12_crypto_info_aes_gcm_128 {
            info: info(libc::TLS_CIPHER_AES_GCM_128),
            iv: explicit.try_into().ok()?,
            key: key.try_into().ok()?,
            salt: salt.try_into().ok()?,
            rec_seq,
        }),
        Cipher::Aes256Gcm => TlsCryptoInfo::Aes256Gcm(libc::tls12_crypto_info_aes_gcm_256 {
            info: info(libc::TLS_CIPHER_AES_GCM_256),
            iv: explicit.try_into().ok()?,
            key: key.try_into().ok()?,
            salt: salt.try_into().ok()?,
            rec_seq,
        }),
        Cipher::Chacha20Poly1305 => {
            TlsCryptoInfo::Chacha20Poly1305(libc::tls12_crypto_info_chacha20_poly1305 {
                info: info(libc::TLS_CIPHER_CHACHA20_POLY1305),
                iv: iv.try_into().ok()?,
                key: key.try_into().ok()?,
                salt: [],
                rec_seq,
            })
        }
    })
}
