use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::{Server, Tree};

const THRESHOLD: &str = "[open_file_cache]\nsmall_body_max = 1000\n";

/// Bytes sent from memory and by sendfile since `before`.
fn paths(s: &Server, before: &sendfiled::stats::Snapshot) -> (u64, u64, u64) {
    let now = s.settled_stats();
    (
        now.small_body_bytes - before.small_body_bytes,
        now.sendfile_bytes - before.sendfile_bytes,
        now.copied_bytes - before.copied_bytes,
    )
}

#[test]
fn bodies_around_the_threshold_are_exact_and_leave_by_the_right_path() {
    let t = Tree::new();
    let files: Vec<(String, Vec<u8>)> = [999usize, 1000, 1001]
        .iter()
        .map(|&n| (format!("/f{n}.bin"), Tree::noise(n, n as u64)))
        .collect();
    for (path, data) in &files {
        t.file(&path[1..], data);
    }
    let s = Server::start(&t.root(), THRESHOLD);
    for (path, data) in &files {
        // The first request opens the file and sends it by sendfile; the second keeps its bytes.
        assert_eq!(s.get(path, &[]).body, *data);
        let before = s.settled_stats();
        let get = s.get(path, &[]);
        assert_eq!(get.body, *data, "{path}");
        let (small, sendfile, copied) = paths(&s, &before);
        assert_eq!(copied, 0, "{path}: no copying fallback");
        if data.len() <= 1000 {
            assert_eq!(
                (small, sendfile),
                (data.len() as u64, 0),
                "{path} from memory"
            );
        } else {
            assert_eq!(
                (small, sendfile),
                (0, data.len() as u64),
                "{path} by sendfile"
            );
        }
        let head = s.request("HEAD", path, &[]);
        assert!(head.body.is_empty());
        for name in ["content-length", "etag", "last-modified", "content-type"] {
            assert_eq!(head.header(name), get.header(name), "{path}: HEAD {name}");
        }
    }
}

#[test]
fn ranges_and_multipart_inside_a_small_file() {
    let t = Tree::new();
    let data = Tree::noise(1000, 7);
    t.file("f.bin", &data);
    let s = Server::start(&t.root(), THRESHOLD);
    s.get("/f.bin", &[]);
    s.get("/f.bin", &[]);
    let before = s.settled_stats();
    for (range, want) in [
        ("bytes=10-19", &data[10..20]),
        ("bytes=-1", &data[999..]),
        ("bytes=0-", &data[..]),
        ("bytes=999-999", &data[999..]),
    ] {
        let r = s.get("/f.bin", &[&format!("Range: {range}")]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, want, "{range}");
    }
    let r = s.get("/f.bin", &["Range: bytes=0-9,500-509"]);
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").unwrap().to_string();
    let boundary = ct.split("boundary=").nth(1).unwrap();
    let parts: Vec<&[u8]> = split_parts(&r.body, boundary);
    assert_eq!(parts, vec![&data[0..10], &data[500..510]]);
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    let (small, sendfile, _) = paths(&s, &before);
    assert_eq!(sendfile, 0, "every part came from memory");
    assert_eq!(small, 10 + 1 + 1000 + 1 + 20);
}

/// The data of each part of a multipart/byteranges body.
fn split_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("\r\n--{boundary}");
    let text = body;
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = find(&text[at..], delimiter.as_bytes()) {
        let start = at + i + delimiter.len();
        if text[start..].starts_with(b"--") {
            break;
        }
        let data = start + find(&text[start..], b"\r\n\r\n").unwrap() + 4;
        let end = data + find(&text[data..], delimiter.as_bytes()).unwrap();
        out.push(&text[data..end]);
        at = end;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A file rewritten in place while it is served: every response's body is the one its ETag
/// names, and after the revalidation interval only the new version is served.
#[test]
fn a_rewritten_file_never_pairs_old_bytes_with_a_new_tag_or_outlives_revalidation() {
    let t = Tree::new();
    let old = Tree::noise(800, 1);
    let new = Tree::noise(800, 2);
    let path = t.file("f.bin", &old);
    let s = Server::start(
        &t.root(),
        "[open_file_cache]\nsmall_body_max = 1000\nvalid = \"200ms\"\n",
    );
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut check = |s: &Server| -> Vec<u8> {
        let r = s.get("/f.bin", &[]);
        let tag = r.header("etag").unwrap().to_string();
        let body = seen.entry(tag.clone()).or_insert_with(|| r.body.clone());
        assert_eq!(*body, r.body, "the bytes sent with {tag} changed");
        r.body
    };
    for _ in 0..5 {
        assert_eq!(check(&s), old);
    }
    std::thread::sleep(Duration::from_millis(20)); // a later mtime
    std::fs::write(&path, &new).unwrap(); // same inode: truncated and rewritten
    let written = Instant::now();
    let mut last = Vec::new();
    while written.elapsed() < Duration::from_millis(800) {
        let started = written.elapsed();
        last = check(&s);
        if started > Duration::from_millis(400) {
            assert_eq!(
                last, new,
                "still the old bytes {started:?} after the rewrite"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(last, new);
}

#[test]
fn the_small_body_budget_is_never_exceeded() {
    let t = Tree::new();
    let files: Vec<Vec<u8>> = (0..40).map(|i| Tree::noise(1000, 100 + i)).collect();
    for (i, data) in files.iter().enumerate() {
        t.file(&format!("{i:02}.bin"), data);
    }
    let s = Server::start(
        &t.root(),
        "[open_file_cache]\nsmall_body_max = 1000\nsmall_body_bytes = 10000\n",
    );
    let mut most = 0;
    for round in 0..3 {
        for (i, data) in files.iter().enumerate() {
            assert_eq!(
                s.get(&format!("/{i:02}.bin"), &[]).body,
                *data,
                "{i} in round {round}"
            );
            most = most.max(s.stats().small_cache_bytes);
        }
    }
    assert!(most <= 10_000, "{most} bytes held, over the budget");
    assert_eq!(
        most, 10_000,
        "the budget was used: ten bodies of 1000 bytes"
    );
}

#[test]
fn precompressed_variants_of_small_files_come_from_memory_too() {
    let t = Tree::new();
    t.file("app.js", b"console.log('plain');\n");
    t.file("app.js.gz", b"pretend these are gzip bytes");
    let s = Server::start(
        &t.root(),
        "[precompressed]\nenabled = true\norder = [\"gzip\"]\n[open_file_cache]\nsmall_body_max = 1000\n",
    );
    s.get("/app.js", &["Accept-Encoding: gzip"]);
    let before = s.settled_stats();
    let r = s.get("/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, b"pretend these are gzip bytes");
    let (small, sendfile, _) = paths(&s, &before);
    assert_eq!((small, sendfile), (28, 0));
}
