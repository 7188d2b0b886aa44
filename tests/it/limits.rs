use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::{closed_within, read_response, Server, Spawned, Tree};

#[test]
fn header_block_and_target_limits() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let s = Server::start(&t.root(), "");
    let big = "x".repeat(20_000);
    let r = s.raw(&format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n"
    ));
    assert_eq!(r.status, 431);
    let long = format!("/{}", "a".repeat(9000));
    let r = s.raw(&format!("GET {long} HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(r.status, 414);
    assert!(!r.text().contains("aaaa"));
    // Within the limits everything is fine.
    assert_eq!(s.get("/a.txt", &["X-Ok: yes"]).status, 200);
}

#[test]
fn slowloris_is_closed_after_the_header_timeout() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let s = Server::start(
        &t.root(),
        "[limits]\nheader_timeout = \"1s\"\n[socket]\ndefer_accept = 0\n",
    );
    // A client that drips a head one byte at a time.
    let mut c = s.connect();
    let start = Instant::now();
    let head =
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed = false;
    for b in head.iter() {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    closed = closed || closed_within(&mut c, 3);
    assert!(closed, "slow head was not closed");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    // A client that connects and says nothing.
    let mut quiet = s.connect();
    assert!(closed_within(&mut quiet, 4));
    // Meanwhile others are served.
    assert_eq!(s.get("/a.txt", &[]).status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let s = Server::start(
        &t.root(),
        "[limits]\nkeepalive_timeout = \"1s\"\nheader_timeout = \"10s\"\n",
    );
    let mut c = s.connect();
    // Requests within the idle timeout keep the connection.
    for _ in 0..3 {
        c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(400));
    }
    let start = Instant::now();
    assert!(closed_within(&mut c, 4), "idle connection stayed open");
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[test]
fn a_client_that_leaves_mid_response_frees_its_connection() {
    let t = Tree::new();
    t.file("big.bin", &Tree::noise(32 << 20, 3));
    let root = t.root();
    let s = Spawned::serve(&["--root", root.to_str().unwrap(), "--workers", "2"]);
    // Warm the cache (both workers) so its fds are part of the baseline.
    for _ in 0..8 {
        let mut warm = s.connect();
        warm.write_all(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_response(&mut warm, true).unwrap();
    }
    // And let the digest thread finish with the file (it holds a descriptor of its own while
    // it hashes): once a HEAD carries Repr-Digest, it is done.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut head = s.connect();
        head.write_all(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut head, true).unwrap();
        if r.header("repr-digest").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the digest never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = s.fds();
    for _ in 0..20 {
        let mut c = s.connect();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 65536];
        c.read_exact(&mut buf).unwrap();
        drop(c); // leaves with most of 32 MiB unsent
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.fds() != baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.fds(), baseline, "descriptors leaked");
    let mut c = s.connect();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 206);
}

#[test]
fn a_reader_that_stops_reading_is_closed_after_the_send_timeout() {
    let t = Tree::new();
    t.file("big.bin", &Tree::noise(32 << 20, 6));
    t.file("d/huge.bin", &Tree::noise(32 << 20, 7));
    let s = Server::start(
        &t.root(),
        "[limits]\nsend_timeout = \"1s\"\n[zip]\nmax_concurrent = 1\n",
    );
    // A file download and an archive download whose clients read a little, then stop.
    let mut stalled = Vec::new();
    for path in ["/big.bin", "/d/?download=zip&compress=store"] {
        let mut c = s.connect();
        write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut some = [0u8; 4096];
        c.read_exact(&mut some).unwrap();
        stalled.push(c);
    }
    let start = Instant::now();
    while s.stats().open_connections > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "stalled readers were never closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "closed before the timeout"
    );
    // The archive slot the stalled client held is free again.
    assert_eq!(
        s.get("/d/?download=zip&compress=store", &["Range: bytes=0-9"])
            .status,
        206
    );
    drop(stalled);
}
