//! One TLS handshake on an accepted connection, within the listener's handshake timeout. A
//! failure costs one small task and is named, so /metrics can count it by reason. A client that
//! speaks plain HTTP to the port gets a plain 400 saying so, then the close (as nginx does).

use std::io;

use rustls::ServerConnection;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::records::RecordReader;
use super::Endpoint;
use crate::config::Ktls;

/// Why a handshake did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not finished within the handshake timeout.
    Timeout,
    /// The peer closed (or reset) before finishing.
    Closed,
    /// The first bytes were a plain HTTP request.
    PlainHttp,
    /// The first bytes were neither TLS nor HTTP.
    NotTls,
    /// No version, suite, group or ALPN protocol in common.
    Incompatible,
    /// A client certificate was required and missing, or did not verify.
    ClientCertificate,
    /// Any other protocol error (a malformed or unexpected message).
    Protocol,
}

impl Failure {
    /// Its index in [`LABELS`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The metric labels of [`Failure`], in its order.
pub const LABELS: [&str; 7] = [
    "timeout",
    "closed",
    "plain_http",
    "not_tls",
    "incompatible",
    "client_certificate",
    "protocol",
];

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Complete the server side of a handshake. On success the stream is handed back with its
/// session, which holds any bytes of the first request that came with the last flight.
pub async fn accept(
    tcp: TcpStream,
    endpoint: &Endpoint,
) -> Result<(TcpStream, ServerConnection), Failure> {
    let deadline = Instant::now() + endpoint.handshake_timeout;
    let mut first = [0u8; 1];
    match timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Ok(0)) | Ok(Err(_)) => return Err(Failure::Closed),
        Ok(Ok(_)) => {}
    }
    if first[0] != HANDSHAKE_RECORD {
        if first[0].is_ascii_uppercase() {
            refuse_plain_http(&tcp, deadline).await;
            return Err(Failure::PlainHttp);
        }
        return Err(Failure::NotTls);
    }
    let acceptor = TlsAcceptor::from(endpoint.server.clone());
    let done = if endpoint.ktls == Ktls::Auto && super::kernel::may_offload() {
        // The session may go to the kernel: rustls must not read past the handshake's records.
        let stream = timeout_at(deadline, acceptor.accept(RecordReader::new(tcp))).await;
        stream.map(|r| {
            r.map(|s| {
                let (io, session) = s.into_inner();
                (io.into_inner(), session)
            })
        })
    } else {
        let stream = timeout_at(deadline, acceptor.accept(tcp)).await;
        stream.map(|r| r.map(|s| s.into_inner()))
    };
    match done {
        Err(_) => Err(Failure::Timeout),
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(classify(&e)),
    }
}

/// The reason behind a failed handshake's error.
fn classify(e: &io::Error) -> Failure {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)) => {
            Failure::ClientCertificate
        }
        Some(rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol) => {
            Failure::Incompatible
        }
        Some(_) => Failure::Protocol,
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ) =>
        {
            Failure::Closed
        }
        None => Failure::Protocol,
    }
}

/// Answer a plain HTTP request on a TLS port with a plain 400, then read what the client sent
/// (briefly) so that the close is a FIN the client can read the answer before, not a reset.
async fn refuse_plain_http(tcp: &TcpStream, deadline: Instant) {
    const BODY: &str = "This port speaks HTTPS; the request was sent as plain HTTP.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    if tcp.try_write(answer.as_bytes()).is_err() {
        return;
    }
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
    let drain_until = deadline.min(Instant::now() + std::time::Duration::from_secs(1));
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match timeout_at(drain_until, tcp.readable()).await {
            Ok(Ok(())) => match tcp.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            },
            _ => return,
        }
    }
}
