//! The ZIP encoder, end to end: files with fuzzed names, sizes and contents are archived by a real
//! server (stored and deflated) and read back by an independent reader (the `zip` crate). Every
//! name and every byte must come back, and the length must be what the server announced.
#![no_main]
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    _server: sendfiled::RunningServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let raw: sendfiled::config::RawConfig =
            toml::from_str("[access_log]\nenabled = false\n").unwrap();
        let overrides = sendfiled::config::Overrides {
            root: Some(dir.path().to_path_buf()),
            listen: vec!["127.0.0.1:0".into()],
            workers: Some(1),
            admin_listen: Some("off".into()),
        };
        let config = sendfiled::config::Config::from_raw(raw, None, &overrides).unwrap();
        let server = sendfiled::start(config).unwrap();
        Fixture {
            addr: server.local_addrs()[0],
            dir,
            _server: server,
        }
    })
}

fn fetch(addr: std::net::SocketAddr, path: &str) -> (u64, Vec<u8>) {
    let mut c = TcpStream::connect(addr).unwrap();
    // HTTP/1.0: an archive of unknown length (deflated) comes close-delimited, not chunked.
    write!(c, "GET {path} HTTP/1.0\r\nHost: f\r\n\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.") && head[9..].starts_with("200"),
        "{head}"
    );
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(u64::MAX, |v| v.trim().parse().unwrap());
    (len, all[end..].to_vec())
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let case = format!("c{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let dir = f.dir.path().join(&case);
    std::fs::create_dir(&dir).unwrap();
    // Up to 8 files: a name byte picks a name, two bytes a size, the rest is content.
    let mut files = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && files.len() < 8 {
        let name = format!(
            "f{}-{}.txt",
            files.len(),
            ["a", "é", "z z", "报"][usize::from(rest[0] % 4)]
        );
        let size = usize::from(u16::from_le_bytes([rest[1], rest[2]])) % 70_000;
        rest = &rest[3..];
        let body: Vec<u8> = rest.iter().copied().cycle().take(size).collect();
        std::fs::write(dir.join(&name), &body).unwrap();
        files.push((name, body));
    }
    for mode in ["store", "deflate"] {
        let (announced, bytes) = fetch(f.addr, &format!("/{case}/?download=zip&compress={mode}"));
        if announced != u64::MAX {
            assert_eq!(announced, bytes.len() as u64, "Content-Length is exact");
        }
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a readable archive");
        for (name, body) in &files {
            let mut entry = archive
                .by_name(&format!("{case}/{name}"))
                .unwrap_or_else(|e| panic!("{name}: {e} ({mode})"));
            let mut got = Vec::new();
            entry.read_to_end(&mut got).unwrap();
            assert!(&got == body, "{name} differs ({mode})");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
});
