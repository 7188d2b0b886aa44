use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[cfg(feature = "fault-injection")]
use crate::support::read_response;
use crate::support::{request_at, Spawned, Tree};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Wait until the server's descriptor count is back to `baseline` (or fail after 15 s).
fn fds_settle(s: &Spawned, baseline: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.fds() > baseline {
        assert!(
            Instant::now() < deadline,
            "descriptors leaked: {} now, {baseline} before",
            s.fds()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where the body starts in `bytes` (a response's first bytes), and its Content-Length.
fn head_and_length(bytes: &[u8]) -> (usize, usize) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (end, length)
}

fn get(s: &Spawned, path: &str) -> crate::support::Response {
    request_at(s.addr, "GET", path, &[])
}

#[test]
fn ten_thousand_connections_opened_and_dropped() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    t.file("big.bin", &Tree::noise(8 << 20, 1));
    let s = Spawned::serve(&["--root", t.root().to_str().unwrap(), "--workers", "2"]);
    // The kernel picks a worker per connection by a hash of its ports, so warm both workers'
    // open-file caches with enough connections that neither misses a file (four were not:
    // one run in eight left a worker to open big.bin during the loop, one descriptor over).
    for _ in 0..32 {
        assert_eq!(get(&s, "/a.txt").status, 200);
        assert_eq!(get(&s, "/big.bin").status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (fds, rss) = (s.fds(), rss_kib(s.pid()));

    for i in 0..10_000 {
        let mut c = s.connect();
        match i % 4 {
            0 => {}                                                  // connect and leave
            1 => c.write_all(b"GET /a.txt HTTP/1.1\r\nHo").unwrap(), // half a head
            2 => c
                .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap(), // never reads
            _ => {
                // A reset instead of a close.
                socket2::SockRef::from(&c)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
            }
        }
    }
    fds_settle(&s, fds);
    assert_eq!(get(&s, "/a.txt").body, b"alpha", "still serving");
    let after = rss_kib(s.pid());
    assert!(
        after < rss + rss / 2 + 16 * 1024,
        "memory did not come back: {rss} KiB before, {after} KiB after"
    );
    assert!(s.terminate(15).success());
}

#[test]
fn files_deleted_or_replaced_while_they_are_sent() {
    let t = Tree::new();
    let old = Tree::noise(24 << 20, 2);
    let new = Tree::noise(1 << 20, 3);
    let deleted = t.file("deleted.bin", &old);
    let replaced = t.file("replaced.bin", &old);
    t.file("d/big.bin", &old);
    let late = t.file("d/zz-late.txt", b"sent last");
    // One worker, so that one open-file cache holds every entry; warm it so that the cached
    // descriptors are part of the baseline.
    let s = Spawned::serve(&["--root", t.root().to_str().unwrap(), "--workers", "1"]);
    assert_eq!(get(&s, "/d/?download=zip&compress=store").status, 200);
    assert_eq!(get(&s, "/deleted.bin").status, 200);
    assert_eq!(get(&s, "/replaced.bin").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = s.fds();

    // A file deleted, and one replaced by rename, mid-transfer: the open descriptor still names
    // the old bytes, so both responses complete with exactly the old content.
    for (path, disk) in [("/deleted.bin", &deleted), ("/replaced.bin", &replaced)] {
        let mut c = s.connect();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let mut body = vec![0u8; 1 << 20];
        c.read_exact(&mut body).unwrap();
        if path == "/deleted.bin" {
            std::fs::remove_file(disk).unwrap();
        } else {
            let tmp = t.root().join("replaced.tmp");
            std::fs::write(&tmp, &new).unwrap();
            std::fs::rename(&tmp, disk).unwrap();
        }
        c.read_to_end(&mut body).unwrap();
        assert!(body == old, "{path}: the old bytes, complete");
    }
    std::thread::sleep(Duration::from_millis(1100)); // the open-file cache revalidates
    assert_eq!(get(&s, "/deleted.bin").status, 404);
    assert!(get(&s, "/replaced.bin").body == new);

    // A file deleted while an archive is being sent: the archive is cut short, never completed
    // with wrong contents.
    let mut c = s.connect();
    write!(
        c,
        "GET /d/?download=zip&compress=store HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = vec![0u8; 1 << 20];
    c.read_exact(&mut first).unwrap();
    let (head_end, length) = head_and_length(&first);
    std::fs::remove_file(&late).unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let got = first.len() - head_end + rest.len();
    assert!(
        got < length,
        "an archive missing a file must not look complete"
    );

    fds_settle(&s, baseline);
    assert!(s.terminate(15).success());
}

/// Read errors (EIO) from a file, injected at the syscall layer (`fault-injection` feature), end
/// that response and only that one, in a plain download and in an archive.
#[cfg(feature = "fault-injection")]
#[test]
fn read_errors_abort_only_that_response() {
    use std::os::unix::fs::MetadataExt;
    let t = Tree::new();
    let bad = t.file("d/bad.bin", &Tree::noise(8 << 20, 5));
    t.file("d/good.txt", b"good");
    let ino = std::fs::metadata(&bad).unwrap().ino();
    let s = Spawned::serve_env(
        &[("SENDFILED_FAULT_EIO_INODES", ino.to_string())],
        &["--root", t.root().to_str().unwrap(), "--workers", "1"],
    );
    assert_eq!(get(&s, "/d/good.txt").body, b"good");
    // HEADs open and cache everything without reading it, so the baseline includes them.
    for path in ["/d/bad.bin", "/d/?download=zip&compress=store"] {
        let mut c = s.connect();
        write!(
            c,
            "HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        assert_eq!(read_response(&mut c, true).unwrap().status, 200);
    }
    std::thread::sleep(Duration::from_millis(200));
    let baseline = s.fds();
    for path in ["/d/bad.bin", "/d/?download=zip&compress=store"] {
        let mut c = s.connect();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        let (end, length) = head_and_length(&all);
        assert!(
            all.len() - end < length,
            "{path}: a read error must cut the body short"
        );
    }
    assert_eq!(
        get(&s, "/d/good.txt").body,
        b"good",
        "others are still served"
    );
    fds_settle(&s, baseline);
    assert!(s.terminate(15).success());
}

/// A file the kernel will not map (injected: `fault-injection` feature) takes the copying
/// fallback, read on the blocking pool: full bodies, ranges and archives stay byte-exact, and
/// the copied bytes are counted.
#[cfg(feature = "fault-injection")]
#[test]
fn unmappable_files_are_copied_byte_exact() {
    use std::os::unix::fs::MetadataExt;
    let t = Tree::new();
    let data = Tree::noise(300_000, 9);
    let odd = t.file("d/odd.bin", &data);
    let ino = std::fs::metadata(&odd).unwrap().ino();
    let admin = crate::support::free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let s = Spawned::serve_env(
        &[("SENDFILED_FAULT_NOMAP_INODES", ino.to_string())],
        &[
            "--root",
            t.root().to_str().unwrap(),
            "--workers",
            "1",
            "--admin-listen",
            &admin_addr,
        ],
    );
    assert_eq!(get(&s, "/d/odd.bin").body, data, "the whole file");
    let ranged =
        crate::support::request_at(s.addr, "GET", "/d/odd.bin", &["Range: bytes=100000-199999"]);
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, &data[100_000..200_000], "a range");
    let zip = get(&s, "/d/?download=zip&compress=store");
    assert_eq!(zip.status, 200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.zip"), &zip.body).unwrap();
    crate::support::run_ok(
        std::process::Command::new("unzip")
            .arg("-q")
            .arg("a.zip")
            .current_dir(dir.path()),
        "unzip",
    );
    assert_eq!(
        std::fs::read(dir.path().join("d/odd.bin")).unwrap(),
        data,
        "in an archive"
    );
    let metrics =
        crate::support::request_at(admin_addr.parse().unwrap(), "GET", "/metrics", &[]).text();
    let copied: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sendfiled_body_bytes_total{path=\"copy\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        copied >= 2 * 300_000 + 100_000,
        "copied bytes counted: {copied}"
    );
    assert!(s.terminate(15).success());
}
