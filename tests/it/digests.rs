//! RFC 9530 digests and content ETags as clients see them: `Repr-Digest` checked against
//! Python's hashlib on every kind of response, `Want-Repr-Digest`, variants, files rewritten in
//! place, a download resumed in three ranges by a Python client, `sendfiled digest` on a tree,
//! a file system without extended attributes, and two nodes whose copies differ in time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::support::{run_ok, set_mtime, Response, Server, Spawned, Tree};

/// The base64 digest of the file at `path` in `alg` ("sha256", "sha512"), by Python's hashlib.
fn hashlib(path: &Path, alg: &str) -> String {
    let out = run_ok(
        Command::new("python3").args([
            "-c",
            "import base64,hashlib,sys\n\
             d = hashlib.new(sys.argv[1], open(sys.argv[2], 'rb').read()).digest()\n\
             print(base64.b64encode(d).decode())",
            alg,
            path.to_str().unwrap(),
        ]),
        "python3 hashlib",
    );
    String::from_utf8(out).unwrap().trim().to_string()
}

/// The `Repr-Digest` value hashlib expects for `path`.
fn expected(path: &Path, alg: &str) -> String {
    let token = if alg == "sha256" {
        "sha-256"
    } else {
        "sha-512"
    };
    format!("{token}=:{}:", hashlib(path, alg))
}

/// GETs `path` until a response carries `Repr-Digest` (the first ones go without: the digest
/// is computed in the background); panics after 10 s.
fn until_digest(s: &Server, path: &str, headers: &[&str]) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get(path, headers);
        if r.header("repr-digest").is_some() {
            return r;
        }
        assert!(Instant::now() < deadline, "no Repr-Digest on {path}: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn repr_digest_is_the_files_sha256_on_200_206_multipart_and_head() {
    let t = Tree::new();
    let big = t.file("big.bin", &Tree::noise(300_000, 1));
    let small = t.file("small.txt", &Tree::noise(900, 2));
    let s = Server::start(&t.root(), "");
    for (path, file) in [("/big.bin", &big), ("/small.txt", &small)] {
        let first = s.get(path, &[]);
        assert_eq!(first.status, 200);
        assert_eq!(
            first.header("repr-digest"),
            None,
            "the first response does not wait for the digest"
        );
        let want = expected(file, "sha256");
        let r = until_digest(&s, path, &[]);
        assert_eq!(r.header("repr-digest").unwrap(), want, "200 {path}");
        let one = s.get(path, &["Range: bytes=10-99"]);
        assert_eq!(one.status, 206);
        assert_eq!(one.header("repr-digest").unwrap(), want, "206 {path}");
        let multi = s.get(path, &["Range: bytes=0-9,100-199"]);
        assert_eq!(multi.status, 206);
        assert!(multi
            .header("content-type")
            .unwrap()
            .starts_with("multipart/byteranges"));
        assert_eq!(
            multi.header("repr-digest").unwrap(),
            want,
            "multipart {path}"
        );
        let head = s.request("HEAD", path, &[]);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("repr-digest").unwrap(), want, "HEAD {path}");
        let not_modified = s.get(
            path,
            &[&format!("If-None-Match: {}", r.header("etag").unwrap())],
        );
        assert_eq!(not_modified.status, 304);
    }
}

#[test]
fn a_precompressed_variant_carries_its_own_digest() {
    let t = Tree::new();
    let plain = t.file("app.js", "console.log('hello');\n".repeat(400).as_bytes());
    let gz = t.file("app.js.gz", &Tree::noise(2000, 3));
    let s = Server::start(&t.root(), "[precompressed]\nenabled = true\n");
    let r = until_digest(&s, "/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("repr-digest").unwrap(), expected(&gz, "sha256"));
    let r = until_digest(&s, "/app.js", &["Accept-Encoding: identity"]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("repr-digest").unwrap(), expected(&plain, "sha256"));
}

#[test]
fn want_repr_digest_chooses_among_the_algorithms_by_preference() {
    let t = Tree::new();
    let f = t.file("f.bin", &Tree::noise(50_000, 4));
    let s = Server::start(
        &t.root(),
        "[digests]\nalgorithms = [\"sha-256\", \"sha-512\"]\n",
    );
    until_digest(&s, "/f.bin", &[]);
    let with = |want: &str| {
        s.get("/f.bin", &[&format!("Want-Repr-Digest: {want}")])
            .header("repr-digest")
            .map(str::to_string)
    };
    let sha512 = Some(expected(&f, "sha512"));
    let sha256 = Some(expected(&f, "sha256"));
    assert_eq!(with("sha-512=10, sha-256=1"), sha512);
    assert_eq!(with("sha-256=3, sha-512=9"), sha512);
    assert_eq!(with("sha-512=0, sha-256=2"), sha256);
    assert_eq!(
        with("md5=10, sha-256=1"),
        sha256,
        "an unknown algorithm is skipped"
    );
    assert_eq!(with("md5=10"), sha256, "only unknown ones: our default");
    assert_eq!(
        with("sha-256=0, sha-512=0"),
        None,
        "every one refused: none sent"
    );
    assert_eq!(
        with("sha-256=, garbage"),
        sha256,
        "a field that does not parse is ignored"
    );
}

#[test]
fn a_file_changed_in_place_never_sends_the_old_digest_with_the_new_bytes() {
    let t = Tree::new();
    let path = t.file("f.bin", &Tree::noise(100_000, 5));
    let s = Server::start(&t.root(), "[open_file_cache]\nvalid = \"2s\"\n");
    let old = until_digest(&s, "/f.bin", &[]);
    let old_digest = old.header("repr-digest").unwrap().to_string();
    // Same size, other bytes, written into the same inode.
    std::fs::write(&path, Tree::noise(100_000, 6)).unwrap();
    let new_digest = expected(&path, "sha256");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/f.bin", &[]);
        let sent = r.header("repr-digest").map(str::to_string);
        let body_digest = {
            let scratch = t.dir.path().join("body");
            std::fs::write(&scratch, &r.body).unwrap();
            expected(&scratch, "sha256")
        };
        if let Some(sent) = &sent {
            assert_eq!(sent, &body_digest, "a digest that is not the body's");
            assert_ne!(sent, &old_digest);
        }
        if sent.as_deref() == Some(&new_digest) {
            break;
        }
        assert!(Instant::now() < deadline, "the new digest never came");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the temporary directory's file system is one that `fs::watch` watches (ext4, XFS,
/// Btrfs, tmpfs, F2FS); elsewhere every response keeps its fstat.
fn watchable(dir: &Path) -> bool {
    let out = run_ok(
        Command::new("stat").args(["-f", "-c", "%t", dir.to_str().unwrap()]),
        "stat -f",
    );
    let magic = String::from_utf8(out).unwrap().trim().to_string();
    ["ef53", "58465342", "9123683e", "1021994", "f2f52010"].contains(&magic.as_str())
}

/// Once a file's digest is confirmed, its inotify watch vouches for it and later responses cost
/// no fstat; a same-size rewrite whose mtime is then put back (`touch -r`, so size and mtime
/// both say "unchanged") is still seen and never sends the old digest with the new bytes.
#[test]
fn a_watched_file_costs_no_fstat_until_written_and_a_rewrite_with_its_old_mtime_is_seen() {
    let t = Tree::new();
    let path = t.file("w.bin", &Tree::noise(100_000, 30));
    let s = Server::start(&t.root(), "[open_file_cache]\nvalid = \"1s\"\n");
    let old = until_digest(&s, "/w.bin", &[]);
    let old_digest = old.header("repr-digest").unwrap().to_string();
    let checks = || s.settled_stats().digest_fstat_checks;
    let before = checks();
    for _ in 0..20 {
        assert_eq!(
            s.get("/w.bin", &[]).header("repr-digest"),
            Some(&*old_digest)
        );
    }
    if watchable(t.dir.path()) {
        assert_eq!(
            checks(),
            before,
            "responses of a watched, unchanged file ran an fstat"
        );
    } else {
        eprintln!("SKIPPED (partly): the temporary directory's file system is not watched; checked the fstat path only");
        assert_eq!(checks(), before + 20);
    }
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, Tree::noise(100_000, 32)).unwrap();
    set_mtime(&path, mtime);
    let new_digest = expected(&path, "sha256");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/w.bin", &[]);
        let sent = r.header("repr-digest").map(str::to_string);
        assert_ne!(
            sent.as_deref(),
            Some(&*old_digest),
            "the old digest with the new bytes"
        );
        if sent.as_deref() == Some(&new_digest) {
            break;
        }
        assert!(Instant::now() < deadline, "the new digest never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(checks() > before, "the write was confirmed by an fstat");
}

/// A client that resumes a download in three ranges, checking each part's `Repr-Digest` is the
/// same and the whole against it at the end (Python, as a real client would be written).
const RESUMING_CLIENT: &str = r#"
import base64, hashlib, sys, urllib.request
url, size = sys.argv[1], int(sys.argv[2])
cuts = [0, size // 3, 2 * size // 3, size]
parts, digests, etag = [], set(), None
for first, end in zip(cuts, cuts[1:]):
    req = urllib.request.Request(url, headers={"Range": f"bytes={first}-{end - 1}"})
    if etag:
        req.add_header("If-Range", etag)
    with urllib.request.urlopen(req) as r:
        assert r.status == 206, r.status
        etag = etag or r.headers["ETag"]
        digests.add(r.headers["Repr-Digest"])
        parts.append(r.read())
assert len(digests) == 1, digests
(sent,) = digests
assert sent.startswith("sha-256=:") and sent.endswith(":"), sent
whole = b"".join(parts)
assert hashlib.sha256(whole).digest() == base64.b64decode(sent[9:-1]), "digest mismatch"
print(len(whole), "verified")
"#;

#[test]
fn a_download_resumed_in_three_ranges_verifies_against_repr_digest() {
    let t = Tree::new();
    let size = 3_000_001;
    t.file("iso/disk.img", &Tree::noise(size, 7));
    let s = Server::start(&t.root(), "");
    until_digest(&s, "/iso/disk.img", &["Range: bytes=0-0"]);
    let out = run_ok(
        Command::new("python3").args([
            "-c",
            RESUMING_CLIENT,
            &s.url("/iso/disk.img"),
            &size.to_string(),
        ]),
        "the resuming Python client",
    );
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        format!("{size} verified")
    );
}

/// The attribute Python's `os.getxattr` reads for `path`, if any.
fn attribute(path: &Path) -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os,sys\ntry: print(os.getxattr(sys.argv[1], 'user.sendfiled.sha256').decode())\nexcept OSError: print('none')",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (text != "none").then_some(text)
}

fn digest_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(crate::support::binary())
        .arg("digest")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_digest_command_writes_10000_attributes_and_check_finds_a_file_changed_behind_its_back() {
    let t = Tree::new();
    for i in 0..10_000u64 {
        let len = 100 + (i as usize * 37) % 3000;
        t.file(&format!("d{}/f{i}.bin", i % 100), &Tree::noise(len, i + 1));
    }
    let (ok, out, err) = digest_cli(&[t.root().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("10000 files") && out.contains("10000 written"),
        "{out}"
    );

    let sample = t.root().join("d7/f4207.bin");
    let hex = {
        let b64 = hashlib(&sample, "sha256");
        let raw = run_ok(
            Command::new("python3").args([
                "-c",
                "import base64,sys\nprint(base64.b64decode(sys.argv[1]).hex())",
                &b64,
            ]),
            "hex",
        );
        String::from_utf8(raw).unwrap().trim().to_string()
    };
    let attr = attribute(&sample).expect("an attribute on the sample file");
    assert!(
        attr.starts_with("v1 ") && attr.ends_with(&hex),
        "{attr} vs {hex}"
    );

    let (ok, out, err) = digest_cli(&["--check", t.root().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("10000 good"), "{out}");

    // Behind its back: other bytes of the same size, and the old mtime put back.
    let meta = std::fs::metadata(&sample).unwrap();
    let mut bytes = std::fs::read(&sample).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&sample, &bytes).unwrap();
    set_mtime(&sample, meta.modified().unwrap());
    // And one changed openly (a new mtime): its attribute is stale.
    let touched = t.root().join("d3/f3.bin");
    std::fs::write(&touched, b"new bytes").unwrap();
    let (ok, out, err) = digest_cli(&["--check", t.root().to_str().unwrap()]);
    assert!(!ok, "--check passed a tree with a corrupted file: {out}");
    assert!(out.contains("9998 good, 1 mismatched, 1 stale"), "{out}");
    assert!(
        err.contains("mismatch") && err.contains("d7/f4207.bin"),
        "{err}"
    );
    assert!(err.contains("stale") && err.contains("d3/f3.bin"), "{err}");
}

#[test]
fn precomputed_only_sends_the_digests_the_command_wrote_and_never_hashes() {
    let t = Tree::new();
    let done = t.file("done.bin", &Tree::noise(70_000, 8));
    let (ok, out, err) = digest_cli(&[t.root().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let later = t.file("later.bin", &Tree::noise(70_000, 9));
    let s = Server::start(&t.root(), "[digests]\nmode = \"precomputed-only\"\n");
    let r = until_digest(&s, "/done.bin", &[]);
    assert_eq!(r.header("repr-digest").unwrap(), expected(&done, "sha256"));
    let _ = later;
    for _ in 0..20 {
        let r = s.get("/later.bin", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("repr-digest"),
            None,
            "a file the command never saw got hashed"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// ramfs keeps no extended attributes: the server hashes into memory and says so once; the
/// command fails, naming the reason.
#[test]
fn a_file_system_without_attributes_degrades_to_memory_with_one_log_line() {
    let t = Tree::new();
    let mount = t.dir.path().join("ramfs");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "ramfs", "ramfs", mount.to_str().unwrap()])
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: cannot mount ramfs here (needs root): {mounted:?}");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    for name in ["a.bin", "b.bin", "c.bin"] {
        std::fs::write(mount.join(name), Tree::noise(40_000, 10)).unwrap();
    }
    let node = Spawned::serve(&["--root", mount.to_str().unwrap()]);
    for name in ["a.bin", "b.bin", "c.bin"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = crate::support::request_at(node.addr, "GET", &format!("/{name}"), &[]);
            if let Some(d) = r.header("repr-digest") {
                assert_eq!(d, expected(&mount.join(name), "sha256"));
                break;
            }
            assert!(Instant::now() < deadline, "no digest on ramfs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (ok, out, err) = digest_cli(&[mount.to_str().unwrap()]);
    assert!(
        !ok,
        "the command claims to have written attributes on ramfs: {out}"
    );
    assert!(out.contains("3 failed"), "{out}");
    assert!(err.to_lowercase().contains("not supported"), "{err}");
    let log = node.log.lock().unwrap().clone();
    let lines = log
        .lines()
        .filter(|l| l.contains("cannot keep digests in extended attributes"))
        .count();
    assert_eq!(lines, 1, "{log}");
    drop(node);
}

/// Two copies of a tree whose file times differ (`cp` without `-p`).
fn copies_with_different_times(data: &[u8]) -> (Tree, Tree) {
    let (a, b) = (Tree::new(), Tree::new());
    for (t, secs) in [(&a, 1_700_000_000u64), (&b, 1_750_000_000)] {
        let p = t.file("media/film.mp4", data);
        set_mtime(&p, SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    }
    (a, b)
}

/// nginx balancing round robin over two nodes; each node's copy has its own Last-Modified,
/// which tells which node answered.
fn round_robin(
    dir: &Path,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
) -> crate::support::Nginx {
    crate::support::Nginx::start(
        dir,
        &format!(
            "  upstream origin {{\n    server {a};\n    server {b};\n  }}\n\
  server {{\n    listen 127.0.0.1:{{port}};\n    location / {{\n      proxy_pass http://origin;\n\
      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}"
        ),
    )
}

/// Through the balancer: a first response cut after `cut` bytes, and a resumption with
/// If-Range that the balancer sends to the other node. Returns (the first response's head,
/// the resumption).
fn cut_and_resume(lb: std::net::SocketAddr, cut: usize) -> (Response, Response) {
    let first = crate::support::request_at(
        lb,
        "GET",
        "/media/film.mp4",
        &[&format!("Range: bytes=0-{}", cut - 1)],
    );
    assert_eq!(first.status, 206, "{:?}", first.headers);
    let if_range = first.header("etag").map_or_else(
        || first.header("last-modified").unwrap().to_string(),
        str::to_string,
    );
    let rest = crate::support::request_at(
        lb,
        "GET",
        "/media/film.mp4",
        &[
            &format!("Range: bytes={cut}-"),
            &format!("If-Range: {if_range}"),
        ],
    );
    (first, rest)
}

#[test]
fn content_etags_agree_across_nodes_whose_file_times_differ_and_resume_through_nginx() {
    let data = Tree::noise(2_000_000, 11);
    let (a, b) = copies_with_different_times(&data);
    let content = "[digests]\netag = \"content\"\n";
    let (node_a, node_b) = (
        Server::start(&a.root(), content),
        Server::start(&b.root(), content),
    );
    let first_a = node_a.get("/media/film.mp4", &[]);
    assert_eq!(
        first_a.header("etag"),
        None,
        "no content ETag before the digest is known"
    );
    let ra = until_digest(&node_a, "/media/film.mp4", &[]);
    let rb = until_digest(&node_b, "/media/film.mp4", &[]);
    assert_ne!(ra.header("last-modified"), rb.header("last-modified"));
    assert_eq!(ra.header("etag"), rb.header("etag"));
    assert_eq!(ra.header("repr-digest"), rb.header("repr-digest"));

    let lb = round_robin(a.dir.path(), node_a.addr, node_b.addr);
    let cut = 700_000;
    let (first, rest) = cut_and_resume(lb.addr, cut);
    assert_ne!(
        first.header("last-modified"),
        rest.header("last-modified"),
        "both requests reached the same node"
    );
    assert_eq!(
        rest.status, 206,
        "If-Range failed across nodes: {:?}",
        rest.headers
    );
    let mut got = first.body.clone();
    got.extend_from_slice(&rest.body);
    assert!(got == data, "the resumed download is byte-exact");
}

#[test]
fn with_time_based_etags_if_range_across_such_nodes_falls_back_to_a_full_200() {
    let data = Tree::noise(500_000, 12);
    let (a, b) = copies_with_different_times(&data);
    let (node_a, node_b) = (Server::start(&a.root(), ""), Server::start(&b.root(), ""));
    let (ra, rb) = (
        node_a.get("/media/film.mp4", &[]),
        node_b.get("/media/film.mp4", &[]),
    );
    assert_ne!(ra.header("etag"), rb.header("etag"));
    let lb = round_robin(a.dir.path(), node_a.addr, node_b.addr);
    let (first, rest) = cut_and_resume(lb.addr, 100_000);
    assert_ne!(first.header("last-modified"), rest.header("last-modified"));
    assert_eq!(
        rest.status, 200,
        "RFC 9110: a failed If-Range gets the whole representation"
    );
    assert!(rest.body == data);
}

/// Writes `files` under `t` with mtime `secs` + `nanos` (directories too: their times are in
/// the archive).
fn tree_at(files: &[(&str, Vec<u8>)], secs: u64, nanos: u32) -> Tree {
    let t = Tree::new();
    let when = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    for (rel, bytes) in files {
        let p = t.file(rel, bytes);
        set_mtime(&p, when);
    }
    for dir in ["pack/sub", "pack"] {
        set_mtime(&t.root().join(dir), when);
    }
    t
}

/// GETs the archive until it carries an ETag (with content ETags, the first requests queue the
/// members' digests and go without).
fn archive_with_etag(s: &Server) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/pack/?download=zip&compress=store", &[]);
        assert_eq!(r.status, 200);
        if r.header("etag").is_some() {
            return r;
        }
        assert!(Instant::now() < deadline, "the archive never got an ETag");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn archive_content_etags_are_equal_exactly_when_the_archive_bytes_are() {
    let files = [
        ("pack/a.bin", Tree::noise(40_000, 13)),
        ("pack/sub/b.txt", b"hello archive\n".to_vec()),
    ];
    let content = "[digests]\netag = \"content\"\n";
    // Same bytes, times equal to the second (what the archive records), not to the nanosecond.
    let (a, b) = (
        tree_at(&files, 1_700_000_000, 1),
        tree_at(&files, 1_700_000_000, 999_000),
    );
    let (sa, sb) = (
        Server::start(&a.root(), content),
        Server::start(&b.root(), content),
    );
    let (za, zb) = (archive_with_etag(&sa), archive_with_etag(&sb));
    assert!(
        za.body == zb.body,
        "the two nodes send the same archive bytes"
    );
    assert_eq!(za.header("etag"), zb.header("etag"));
    let (da, db) = (Server::start(&a.root(), ""), Server::start(&b.root(), ""));
    let (ta, tb) = (archive_with_etag(&da), archive_with_etag(&db));
    assert_ne!(
        ta.header("etag"),
        tb.header("etag"),
        "time-based tags see the nanoseconds"
    );

    // One member's bytes change behind the times' back: another content ETag.
    let p = a.root().join("pack/a.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    set_mtime(&p, SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 1));
    let sa2 = Server::start(&a.root(), content);
    let za2 = archive_with_etag(&sa2);
    assert!(za2.body != za.body);
    assert_ne!(za2.header("etag"), za.header("etag"));

    // Times a second apart: other bytes in the archive, so another ETag.
    let c = tree_at(&files, 1_700_000_001, 1);
    let sc = Server::start(&c.root(), content);
    let zc = archive_with_etag(&sc);
    assert!(zc.body != zb.body);
    assert_ne!(zc.header("etag"), zb.header("etag"));
}

/// A node told to keep what it hashes: the attribute appears, /metrics counts the work, and
/// the access log says which responses carried a digest.
#[test]
fn write_attributes_metrics_and_the_access_log_tell_the_same_story() {
    let t = Tree::new();
    let size = 200_000;
    let f = t.file("f.bin", &Tree::noise(size, 14));
    let log = t.dir.path().join("access.log");
    let config = t.dir.path().join("sendfiled.toml");
    std::fs::write(
        &config,
        format!(
            "[digests]\nwrite_attributes = true\n[access_log]\nenabled = true\nformat = \"json\"\npath = \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let admin = crate::support::free_port();
    let node = Spawned::serve(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        // One worker: its log lines are in request order.
        "--workers",
        "1",
    ]);
    let get = || crate::support::request_at(node.addr, "GET", "/f.bin", &[]);
    assert_eq!(get().header("repr-digest"), None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get().header("repr-digest").is_none() {
        assert!(Instant::now() < deadline, "no digest");
        std::thread::sleep(Duration::from_millis(20));
    }
    let attr = attribute(&f).expect("the node wrote the attribute");
    assert!(attr.starts_with(&format!("v1 {size} ")), "{attr}");

    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let metrics = crate::support::request_at(admin_addr, "GET", "/metrics", &[]).text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    assert_eq!(value("sendfiled_digests_computed_total"), 1.0);
    assert_eq!(value("sendfiled_digest_bytes_hashed_total"), size as f64);
    assert_eq!(value("sendfiled_digest_queued_total"), 1.0);
    assert_eq!(value("sendfiled_digest_queue_length"), 0.0);
    assert!(value("sendfiled_digest_cache_hits_total") >= 1.0);
    let status = node.terminate(10);
    assert!(status.success());
    let lines = std::fs::read_to_string(&log).unwrap();
    let first = lines.lines().next().unwrap();
    let last = lines.lines().last().unwrap();
    assert!(first.contains("\"digest\":false"), "{first}");
    assert!(last.contains("\"digest\":true"), "{last}");
}
