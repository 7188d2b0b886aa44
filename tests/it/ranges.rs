use crate::support::{curl, Server, Tree};

const LEN: usize = 10_000;

fn served() -> (Tree, Server, Vec<u8>) {
    let t = Tree::new();
    let data = Tree::noise(LEN, 42);
    t.file("f.bin", &data);
    t.file("empty", b"");
    let s = Server::start(&t.root(), "");
    (t, s, data)
}

#[test]
fn single_ranges() {
    let (_t, s, data) = served();
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-499", 0, 499),
        ("bytes=500-999", 500, 999),
        ("bytes=-500", 9500, 9999),
        ("bytes=9500-", 9500, 9999),
        ("bytes=9000-20000", 9000, 9999),
        ("bytes=-20000", 0, 9999),
        ("bytes=0-0", 0, 0),
        ("bytes=0-99999999999999999999", 0, 9999),
        ("bytes=100-200,150-300", 100, 300),
        ("bytes=100-199,200-299", 100, 299),
    ];
    for &(h, a, b) in cases {
        let r = s.get("/f.bin", &[&format!("Range: {h}")]);
        assert_eq!(r.status, 206, "{h}");
        assert_eq!(
            r.header("content-range").unwrap(),
            format!("bytes {a}-{b}/{LEN}"),
            "{h}"
        );
        assert_eq!(
            r.header("content-length").unwrap(),
            (b - a + 1).to_string(),
            "{h}"
        );
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body, &data[a..=b], "{h}");
    }
}

#[test]
fn multipart_byteranges_are_exact() {
    let (_t, s, data) = served();
    let r = s.get("/f.bin", &["Range: bytes=0-9, 5000-5099, -10"]);
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart type");
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    // Parse the parts the way a client would and compare each to the file.
    let delim = format!("\r\n--{boundary}");
    let body = r.body.as_slice();
    let mut parts = Vec::new();
    let mut rest = body;
    loop {
        let at = find(rest, delim.as_bytes()).expect("delimiter");
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--\r\n") {
            assert_eq!(rest.len(), 4, "nothing after the closing delimiter");
            break;
        }
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&rest[2..head_end]).unwrap();
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: bytes "))
            .unwrap();
        assert!(head.contains("Content-Type: application/octet-stream"));
        let (span, total) = cr.split_once('/').unwrap();
        assert_eq!(total, LEN.to_string());
        let (a, b) = span.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let content = &rest[head_end + 4..head_end + 4 + (b - a + 1)];
        assert_eq!(content, &data[a..=b]);
        parts.push((a, b));
        rest = &rest[head_end + 4 + (b - a + 1)..];
    }
    assert_eq!(parts, vec![(0, 9), (5000, 5099), (9990, 9999)]);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn unsatisfiable_invalid_and_amplifying_ranges() {
    let (_t, s, data) = served();
    for h in [
        "bytes=10000-",
        "bytes=20000-30000",
        "bytes=-0",
        "bytes=99999999999999999999-",
    ] {
        let r = s.get("/f.bin", &[&format!("Range: {h}")]);
        assert_eq!(r.status, 416, "{h}");
        assert_eq!(r.header("content-range"), Some("bytes */10000"), "{h}");
    }
    for h in [
        "bytes=500-100",
        "bytes=abc",
        "items=0-5",
        "bytes=1-2-3",
        "bytes=",
    ] {
        let r = s.get("/f.bin", &[&format!("Range: {h}")]);
        assert_eq!((r.status, r.body.len()), (200, LEN), "{h} is ignored");
    }
    // Overlapping parts worth more than the file, and more than max_ranges parts: full 200.
    let r = s.get("/f.bin", &["Range: bytes=0-9999,0-9999,0-9999"]);
    assert_eq!((r.status, r.body.as_slice()), (200, data.as_slice()));
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 100, i * 100 + 1))
        .collect();
    let r = s.get("/f.bin", &[&format!("Range: bytes={}", many.join(","))]);
    assert_eq!(r.status, 200);
    // Two Range fields: invalid, ignored.
    let r = s.get("/f.bin", &["Range: bytes=0-0", "Range: bytes=1-1"]);
    assert_eq!(r.status, 200);
    // HEAD ignores Range (GET is the only method with range semantics).
    let r = s.raw("HEAD /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (200, Some("10000")));
}

#[test]
fn zero_length_file() {
    let (_t, s, _) = served();
    let r = s.get("/empty", &["Range: bytes=0-0"]);
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */0"))
    );
    let r = s.get("/empty", &["Range: bytes=-5"]);
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn if_range_with_etag_and_date() {
    let (_t, s, data) = served();
    let full = s.get("/f.bin", &[]);
    let etag = full.header("etag").unwrap().to_string();
    let lm = full.header("last-modified").unwrap().to_string();
    let r = s.get(
        "/f.bin",
        &["Range: bytes=0-9", &format!("If-Range: {etag}")],
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..10]));
    let r = s.get("/f.bin", &["Range: bytes=0-9", &format!("If-Range: {lm}")]);
    assert_eq!(r.status, 206);
    for stale in [
        "\"old\"".to_string(),
        format!("W/{etag}"),
        "Sat, 01 Jan 2000 00:00:00 GMT".to_string(),
        "junk".into(),
    ] {
        let r = s.get(
            "/f.bin",
            &["Range: bytes=0-9", &format!("If-Range: {stale}")],
        );
        assert_eq!((r.status, r.body.len()), (200, LEN), "If-Range {stale}");
    }
}

#[test]
fn curl_range_and_resume() {
    let (t, s, data) = served();
    let (ok, out, err) = curl(&["-r", "100-199", &s.url("/f.bin")]);
    assert!(ok, "{err}");
    assert_eq!(out, &data[100..200]);
    // A partial download resumed with -C - ends byte-identical.
    let dest = t.dir.path().join("resumed.bin");
    std::fs::write(&dest, &data[..3333]).unwrap();
    let (ok, _, err) = curl(&["-C", "-", "-o", dest.to_str().unwrap(), &s.url("/f.bin")]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}
