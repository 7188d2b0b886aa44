use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::support::{read_response, Server, Tree};

#[test]
fn file_bodies_leave_by_sendfile_only() {
    let t = Tree::new();
    let data = Tree::noise(3 << 20, 11);
    t.file("f.bin", &data);
    t.file("small.txt", b"tiny body");
    let s = Server::start(&t.root(), "");
    let before = s.settled_stats();
    let mut expected_body = 0u64;
    let r = s.get("/f.bin", &[]);
    assert_eq!(r.body, data);
    expected_body += data.len() as u64;
    let r = s.get("/f.bin", &["Range: bytes=1000-2000000"]);
    assert_eq!(r.body, &data[1000..=2000000]);
    expected_body += 1999001;
    let r = s.get("/f.bin", &["Range: bytes=0-99,1000000-1000099,-100"]);
    assert_eq!(r.status, 206);
    expected_body += 300;
    let r = s.get("/small.txt", &[]);
    assert_eq!(r.body, b"tiny body");
    expected_body += 9;
    let after = s.settled_stats();
    assert_eq!(
        after.copied_bytes - before.copied_bytes,
        0,
        "no file byte was copied"
    );
    assert_eq!(after.sendfile_bytes - before.sendfile_bytes, expected_body);
    // Each sendfile call is capped (sendfile_max_chunk, 2 MiB by default).
    assert!(after.sendfile_calls - before.sendfile_calls >= 5);
}

/// A reader that takes 64 KiB every few milliseconds: partial sendfiles and EAGAIN on every
/// other call, and still every byte in place.
#[test]
fn slow_reader_gets_exact_bytes() {
    let t = Tree::new();
    let data = Tree::noise(8 << 20, 5);
    t.file("f.bin", &data);
    let s = Server::start(&t.root(), "");
    let mut c = s.connect();
    c.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=4000000-4000009\r\nConnection: close\r\n\r\n").unwrap();
    let mut slow = SlowReader {
        inner: &mut c,
        chunk: 64 * 1024,
        pause: Duration::from_millis(2),
    };
    let r = read_response(&mut slow, false).unwrap();
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "body differs");
    let r2 = read_response(&mut slow, false).unwrap();
    assert_eq!(r2.body, &data[4000000..4000010]);
    assert_eq!(s.settled_stats().copied_bytes, 0);
}

struct SlowReader<'a, R> {
    inner: &'a mut R,
    chunk: usize,
    pause: Duration,
}

impl<R: Read> Read for SlowReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(self.pause);
        let n = buf.len().min(self.chunk);
        self.inner.read(&mut buf[..n])
    }
}

/// A 5 GiB sparse file with markers past 4 GiB: Content-Length, ranges across the 4 GiB line
/// and the whole body are exact.
#[test]
fn files_over_4_gib() {
    const SIZE: u64 = 5 << 30;
    let t = Tree::new();
    let path = t.file("huge.bin", b"");
    let mut f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_len(SIZE).unwrap();
    let markers: [(u64, &[u8]); 3] = [
        (0, b"START"),
        ((4 << 30) + 12345, b"PAST-4-GIB"),
        (SIZE - 3, b"END"),
    ];
    for (at, m) in markers {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(m).unwrap();
    }
    drop(f);
    let s = Server::start(&t.root(), "");
    let at = (4u64 << 30) + 12340;
    let r = s.get("/huge.bin", &[&format!("Range: bytes={at}-{}", at + 19)]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes {at}-{}/{SIZE}", at + 19)
    );
    assert_eq!(&r.body[5..15], b"PAST-4-GIB");
    let r = s.get("/huge.bin", &["Range: bytes=-3"]);
    assert_eq!(r.body, b"END");

    // The whole body, streamed and checked without holding it in memory.
    let mut c = s.connect();
    c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.contains(&format!("content-length: {SIZE}\r\n")),
        "{head}"
    );
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    let mut found = Vec::new();
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (at, m) in markers {
            if at >= pos && at < pos + n as u64 {
                let off = (at - pos) as usize;
                let end = (off + m.len()).min(n);
                assert_eq!(&buf[off..end], &m[..end - off]);
                found.push(at);
            }
        }
        pos += n as u64;
    }
    assert_eq!(pos, SIZE);
    assert_eq!(found.len(), 3);
    assert_eq!(s.settled_stats().copied_bytes, 0);
}

/// A file truncated while it is being sent: that response is cut short (the connection closes
/// before Content-Length is reached), and the server goes on serving.
#[test]
fn truncation_aborts_only_that_response() {
    let t = Tree::new();
    let data = Tree::noise(32 << 20, 9);
    let path = t.file("shrinking.bin", &data);
    t.file("ok.txt", b"still here");
    let s = Server::start(&t.root(), "");
    let mut c = s.connect();
    c.write_all(b"GET /shrinking.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 1 << 20];
    c.read_exact(&mut first).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let total = first.len() + rest.len();
    assert!(
        total < (32 << 20),
        "a truncated file must not be padded to its old length"
    );
    assert_eq!(s.settled_stats().truncated_aborts, 1);
    assert_eq!(s.get("/ok.txt", &[]).body, b"still here");
}

/// A file evicted from the page cache is read ahead on the blocking pool before sendfile.
#[test]
fn cold_files_are_read_ahead_off_the_worker() {
    let t = Tree::new();
    let data = Tree::noise(8 << 20, 13);
    let path = t.file("cold.bin", &data);
    let f = std::fs::File::open(&path).unwrap();
    f.sync_all().unwrap();
    sendfiled::sys::evict_page_cache(&f).unwrap();
    // Without digests: the digest thread's read of the file would warm it meanwhile.
    let s = Server::start(&t.root(), "[digests]\nmode = \"off\"\n");
    let r = s.get("/cold.bin", &[]);
    assert!(r.body == data);
    let st = s.settled_stats();
    assert!(st.cold_prefetches >= 1, "{st:?}");
    assert_eq!(st.copied_bytes, 0);
}

/// A client that reads as fast as the server sends never makes a write wait; the connection
/// still steps aside every `sendfile_max_chunk` bytes so that the worker's other connections
/// are served meanwhile (without it, the 64 MiB went out in one poll of its task).
#[test]
fn a_fast_reader_does_not_hold_the_worker() {
    let t = Tree::new();
    let data = Tree::noise(64 << 20, 12);
    t.file("big.bin", &data);
    let s = Server::start(&t.root(), "[socket]\nsendfile_max_chunk = \"1MiB\"\n");
    let before = s.settled_stats();
    let (ok, body, _) = crate::support::curl(&["-s", &s.url("/big.bin")]);
    assert!(ok);
    assert!(body == data, "every byte in place");
    let yields = s.settled_stats().write_yields - before.write_yields;
    eprintln!("{yields} write yields");
    assert!(
        yields > 0,
        "a 64 MiB response to a fast reader never stepped aside"
    );
}
