//! Shared by the benches: a served tree and a keep-alive raw HTTP/1.1 client that allocates
//! nothing per request (fixed buffers), so allocation counts and timings are the server's.

use std::io::{Read, Write};
use std::net::TcpStream;

use sendfiled::config::{Config, Overrides, RawConfig};

/// A temporary root with `small.txt` (1 KiB), `mid.bin` (16 KiB) and `big.bin` (1 MiB).
pub fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    std::fs::write(dir.path().join("small.txt"), noise(1024)).unwrap();
    std::fs::write(dir.path().join("mid.bin"), noise(16 * 1024)).unwrap();
    std::fs::write(dir.path().join("big.bin"), noise(1 << 20)).unwrap();
    dir
}

/// Start a one-worker server on `root`.
pub fn server(root: &std::path::Path) -> sendfiled::RunningServer {
    let overrides = Overrides {
        root: Some(root.to_path_buf()),
        listen: vec!["127.0.0.1:0".into()],
        workers: Some(1),
        admin_listen: Some("off".into()),
        drain_delay: None,
        listing: false,
    };
    // Measured without the access log, as nginx is (access_log off).
    let raw = RawConfig {
        access_log: Some(sendfiled::config::RawAccessLog {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config = Config::from_raw(raw, None, &overrides).unwrap();
    sendfiled::start(config).unwrap()
}

/// A keep-alive connection that sends a fixed request and reads one response into a fixed buffer.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: vec![0u8; 2 << 20],
        }
    }

    /// Send `request` and read the whole response; returns the status code.
    pub fn roundtrip(&mut self, request: &[u8]) -> u16 {
        self.stream.write_all(request).unwrap();
        let mut have = 0;
        let (head_end, body_len) = loop {
            let n = self.stream.read(&mut self.buf[have..]).unwrap();
            assert!(n > 0, "server closed");
            have += n;
            if let Some(end) = self.buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = &self.buf[..end];
                let len = find_content_length(head);
                break (end + 4, len);
            }
        };
        let status = (self.buf[9] - b'0') as u16 * 100
            + (self.buf[10] - b'0') as u16 * 10
            + (self.buf[11] - b'0') as u16;
        let body_len = if status == 304 { 0 } else { body_len };
        while have < head_end + body_len {
            let n = self.stream.read(&mut self.buf[have..]).unwrap();
            assert!(n > 0, "server closed");
            have += n;
        }
        status
    }
}

impl Client {
    /// Send a HEAD `request` and read the response head only.
    pub fn roundtrip_head(&mut self, request: &[u8]) -> u16 {
        self.stream.write_all(request).unwrap();
        let mut have = 0;
        loop {
            let n = self.stream.read(&mut self.buf[have..]).unwrap();
            assert!(n > 0, "server closed");
            have += n;
            if self.buf[..have].ends_with(b"\r\n\r\n") {
                return 200;
            }
        }
    }
}

fn find_content_length(head: &[u8]) -> usize {
    let key = b"content-length: ";
    let Some(at) = head
        .windows(key.len())
        .position(|w| w.eq_ignore_ascii_case(key))
    else {
        return 0;
    };
    head[at + key.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, d| n * 10 + (d - b'0') as usize)
}
