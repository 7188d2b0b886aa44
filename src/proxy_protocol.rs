//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a balancer puts before the
//! first byte of each connection to say whose connection it is. Parsed here, from bytes peeked
//! off the socket, before hyper sees a byte; only the header's own bytes are then consumed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// The longest header this server reads: v2's 16 bytes and up to 520 of addresses and TLVs.
pub const MAX_HEADER: usize = 16 + 520;

/// A complete header: its length, and the client's address (`None` for a LOCAL connection or
/// an UNKNOWN protocol, which mean "use the peer's").
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub source: Option<SocketAddr>,
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    Missing,
    /// It starts like one but breaks the spec.
    Malformed,
}

/// Read the PROXY header at the start of `tcp`, consuming exactly its bytes, within `limit`:
/// the client's address (`None`: use the peer's). A connection that ends, stalls or sends
/// anything else is an error; the caller closes it.
pub async fn read(
    tcp: &tokio::net::TcpStream,
    limit: std::time::Duration,
) -> std::io::Result<Option<SocketAddr>> {
    use std::io::{Error, ErrorKind};
    let read = async {
        let mut buf = [0u8; MAX_HEADER];
        let mut seen = 0;
        loop {
            let n = tcp.peek(&mut buf).await?;
            if n == 0 || n == seen && n == buf.len() {
                return Err(Error::new(ErrorKind::UnexpectedEof, "no PROXY header"));
            }
            match parse(&buf[..n]) {
                Ok(Some(header)) => {
                    consume(tcp, header.len).await?;
                    return Ok(header.source);
                }
                // Part of a header (rare: a balancer sends it in one segment). Peeking leaves
                // the socket readable, so waiting for readiness would spin: look again shortly.
                Ok(None) => {
                    seen = n;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::InvalidData,
                        format!("{e:?} PROXY header"),
                    ))
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "PROXY header timeout"))?
}

/// Read and drop the header's `len` bytes (already peeked, so they are there).
async fn consume(tcp: &tokio::net::TcpStream, mut len: usize) -> std::io::Result<()> {
    let mut sink = [0u8; MAX_HEADER];
    while len > 0 {
        tcp.readable().await?;
        match tcp.try_read(&mut sink[..len]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Parse the start of a connection: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if buf.len() >= 12 && buf[..12] == V2_SIGNATURE[..] {
        return parse_v2(buf);
    }
    if !V2_SIGNATURE.starts_with(&buf[..buf.len().min(12)]) || buf.is_empty() {
        return parse_v1(buf);
    }
    Ok(None) // a prefix of the v2 signature
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(ProxyError::Missing);
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed)
        } else {
            Ok(None)
        };
    };
    if end + 2 > V1_MAX {
        return Err(ProxyError::Malformed);
    }
    let line = std::str::from_utf8(&buf[prefix.len()..end]).map_err(|_| ProxyError::Malformed)?;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip: IpAddr = src.parse().map_err(|_| ProxyError::Malformed)?;
            let _: IpAddr = dst.parse().map_err(|_| ProxyError::Malformed)?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(ProxyError::Malformed);
            }
            let source_port = port(sport)?;
            port(dport)?;
            Some(SocketAddr::new(ip, source_port))
        }
        _ => return Err(ProxyError::Malformed),
    };
    Ok(Some(Header {
        len: end + 2,
        source,
    }))
}

/// A v1 port: decimal digits only, no leading zero, at most 65535.
fn port(text: &str) -> Result<u16, ProxyError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::Malformed);
    }
    text.parse().map_err(|_| ProxyError::Malformed)
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(ProxyError::Malformed);
    }
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > MAX_HEADER {
        return Err(ProxyError::Malformed);
    }
    if buf.len() < len {
        return Ok(None);
    }
    if command == 0 {
        return Ok(Some(Header { len, source: None })); // LOCAL: the balancer's own check
    }
    let addresses = &buf[16..len];
    let source = match buf[13] {
        // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
        0x11 if addresses.len() >= 12 => {
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
        0x21 if addresses.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addresses[..16]);
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        0x11 | 0x21 => return Err(ProxyError::Malformed),
        // UNSPEC, UDP, UNIX: not a TCP client; keep the peer.
        _ => None,
    };
    Ok(Some(Header { len, source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h),
            Ok(Some(Header {
                len: 45,
                source: Some("192.0.2.7:56324".parse().unwrap())
            }))
        );
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            parse(h6).unwrap().unwrap().source,
            Some("[2001:db8::1]:1".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().source, None);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(None), "incomplete");
        assert_eq!(parse(b"PRO"), Ok(None));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"[..],
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyError::Malformed), "{bad:?}");
        }
        assert_eq!(parse(&[b'P'; 200][..]), Err(ProxyError::Missing));
        let long = [&b"PROXY "[..], &[b'1'; 120][..]].concat();
        assert_eq!(parse(&long), Err(ProxyError::Malformed));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
    }

    #[test]
    fn version_2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 9, 10, 0, 0, 1, 0xdb, 0xf0, 1, 187,
        ]);
        h.extend_from_slice(b"GET /");
        assert_eq!(
            parse(&h),
            Ok(Some(Header {
                len: 28,
                source: Some("10.0.0.9:56304".parse().unwrap())
            }))
        );
        assert_eq!(parse(&h[..20]), Ok(None));
        assert_eq!(parse(&h[..7]), Ok(None), "a prefix of the signature");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local).unwrap().unwrap(),
            Header {
                len: 16,
                source: None
            }
        );
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(ProxyError::Malformed));
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert_eq!(parse(&v3), Err(ProxyError::Malformed));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(ProxyError::Malformed));
    }
}
