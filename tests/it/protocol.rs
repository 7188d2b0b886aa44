use std::io::Write;

use crate::support::{converse, read_response, Server, Tree};

fn hello() -> (Tree, Server) {
    let t = Tree::new();
    t.file("hello.txt", b"hello world\n");
    t.file("data.bin", &Tree::noise(100_000, 7));
    let s = Server::start(&t.root(), "");
    (t, s)
}

#[test]
fn get_has_the_representation_headers() {
    let (t, s) = hello();
    let r = s.get("/hello.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello world\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("12"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("date").is_some());
    let meta = std::fs::metadata(t.root().join("hello.txt")).unwrap();
    let mtime = meta.modified().unwrap();
    assert_eq!(
        r.header("last-modified").unwrap(),
        httpdate::fmt_http_date(mtime)
    );
    // strong ETag from (mtime ns, size) only
    use std::os::unix::fs::MetadataExt;
    let ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    assert_eq!(r.header("etag").unwrap(), format!("\"{ns:x}-c\""));
    let bin = s.get("/data.bin", &[]);
    assert_eq!(bin.header("content-type"), Some("application/octet-stream"));
}

#[test]
fn etag_is_stable_across_restarts_and_copies() {
    let (t, s) = hello();
    let first = s.get("/hello.txt", &[]).header("etag").unwrap().to_string();
    drop(s);
    // A copy with the same mtime (as rsync -t makes) on another "node" has the same tag.
    let other = Tree::new();
    let copy = other.file("hello.txt", b"hello world\n");
    let mtime = std::fs::metadata(t.root().join("hello.txt"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let s2 = Server::start(&other.root(), "");
    assert_eq!(s2.get("/hello.txt", &[]).header("etag").unwrap(), first);
    let s3 = Server::start(&t.root(), "");
    assert_eq!(s3.get("/hello.txt", &[]).header("etag").unwrap(), first);
}

/// A GET of `path` once its digest is known (the background hashing adds `Repr-Digest` to
/// later responses), so that HEAD and GET describe the same state.
fn settled_get(s: &Server, path: &str) -> crate::support::Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = s.get(path, &[]);
        if r.status != 200 || r.header("repr-digest").is_some() {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "no digest for {path}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn head_has_the_same_headers_and_no_body() {
    let (_t, s) = hello();
    for path in ["/hello.txt", "/data.bin", "/missing"] {
        let get = settled_get(&s, path);
        let mut c = s.connect();
        // HEAD then GET pipelined: if HEAD carried a body, the second head would be garbage.
        write!(c, "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let head = read_response(&mut c, true).unwrap();
        let next = read_response(&mut c, false).unwrap();
        assert_eq!(head.status, get.status, "{path}");
        let mut a = head.headers.clone();
        let mut b = get.headers.clone();
        a.remove("date");
        b.remove("date");
        b.remove("connection");
        assert_eq!(a, b, "{path}: HEAD and GET headers differ");
        assert_eq!(next.status, 200);
        assert_eq!(next.body, b"hello world\n");
    }
}

#[test]
fn head_of_an_empty_file_says_zero() {
    let t = Tree::new();
    t.file("empty", b"");
    let s = Server::start(&t.root(), "");
    let r = s.raw("HEAD /empty HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    let g = s.get("/empty", &[]);
    assert_eq!(g.header("content-length"), Some("0"));
    assert!(g.body.is_empty());
}

#[test]
fn options_and_other_methods() {
    let (_t, s) = hello();
    let r = s.request("OPTIONS", "/hello.txt", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = s.raw("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 204);
    for m in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "BREW"] {
        let r = s.request(m, "/hello.txt", &["Content-Length: 0"]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{m}");
    }
}

#[test]
fn host_is_required_once_in_http11() {
    let (_t, s) = hello();
    assert_eq!(s.raw("GET /hello.txt HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(
        s.raw("GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            .status,
        400
    );
    assert_eq!(s.raw("GET /hello.txt HTTP/1.0\r\n\r\n").status, 200);
    assert_eq!(
        s.raw("GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n").status,
        200
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_t, s) = hello();
    let data = Tree::noise(100_000, 7);
    let mut c = s.connect();
    let mut req = String::new();
    let paths = [
        "/hello.txt",
        "/data.bin",
        "/missing",
        "/hello.txt",
        "/data.bin",
    ];
    for p in &paths {
        req.push_str(&format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    req.push_str(
        "GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n",
    );
    c.write_all(req.as_bytes()).unwrap();
    for p in &paths {
        let r = read_response(&mut c, false).unwrap();
        match *p {
            "/hello.txt" => assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world\n"[..])),
            "/data.bin" => assert_eq!((r.status, r.body.as_slice()), (200, &data[..])),
            _ => assert_eq!(r.status, 404),
        }
    }
    let r = read_response(&mut c, false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (206, &data[10..20]));
    assert!(
        read_response(&mut c, false).is_none(),
        "nothing after the last response"
    );
}

#[test]
fn error_bodies_are_short_and_never_echo_the_target() {
    let (_t, s) = hello();
    for path in [
        "/%3Cscript%3Ealert(1)%3C/script%3E",
        "/<script>x</script>",
        "/..%2f..%2fetc",
        "/%ff",
    ] {
        let r = s.get(path, &[]);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        if !r.body.is_empty() {
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        }
        assert!(r.body.len() < 64);
        let text = r.text();
        assert!(
            !text.contains("script") && !text.contains("etc"),
            "{path}: {text}"
        );
    }
}

#[test]
fn a_bad_connection_does_not_disturb_others() {
    let (_t, s) = hello();
    let mut good = s.connect();
    write!(good, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut good, false).unwrap().status, 200);
    let mut bad = s.connect();
    bad.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
        .unwrap();
    let r = read_response(&mut bad, false);
    assert!(r.is_none() || r.unwrap().status == 400);
    write!(good, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut good, false).unwrap().body,
        b"hello world\n"
    );
}

#[test]
fn ambiguous_framing_gets_400_and_a_closed_connection() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    t.file("b.txt", b"bravo");
    let s = Server::start(&t.root(), "");
    let smuggle = "GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            format!("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"),
        ),
        (
            "Transfer-Encoding with Content-Length",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\n{smuggle}"),
        ),
        (
            "duplicate Content-Length",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n{smuggle}"),
        ),
        (
            "list Content-Length",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0, 0\r\n\r\n{smuggle}"),
        ),
        (
            "Transfer-Encoding other than chunked",
            format!("POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggle}"),
        ),
        (
            "obs-fold",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n{smuggle}"),
        ),
        ("bare LF", format!("GET /a.txt HTTP/1.1\nHost: t\n\n{smuggle}")),
        (
            "bare LF inside a head",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\nX: y\r\n\r\n{smuggle}"),
        ),
        (
            "NUL in a header",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n{smuggle}"),
        ),
    ];
    for (what, raw) in cases {
        let (statuses, closed) = converse(&s, raw.as_bytes());
        assert_eq!(
            statuses,
            [400],
            "{what}: exactly one 400, never the smuggled request"
        );
        assert!(closed, "{what}: the connection is closed");
    }
    // Garbage after a valid request: the valid one is answered, the garbage never is.
    let (statuses, closed) = converse(
        &s,
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n\x16\x03\x01\x00garbage\r\n\r\n",
    );
    assert_eq!((statuses[0], closed), (200, true));
    assert!(statuses[1..].iter().all(|st| *st == 400), "{statuses:?}");
    // Ordinary pipelining and bodies with bare LFs still work.
    let (statuses, _) = converse(
        &s,
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses, [200, 200]);
    t.mkdir("d");
    t.file("d/x.txt", b"x");
    let body = "{\"paths\":\n[\"x.txt\"]}";
    let (statuses, _) = converse(
        &s,
        format!(
            "POST /d/?download=zip HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(statuses, [200]);
}
