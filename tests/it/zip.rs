use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{curl, read_response, run_ok, Server, Spawned, Tree};

/// Run every reader the project promises to satisfy on `zip`; panic with its output if one fails.
fn check_readers(zip: &Path) {
    let z = zip.to_str().unwrap();
    let sh = |script: &str| {
        run_ok(Command::new("sh").arg("-c").arg(script), script);
    };
    sh(&format!("unzip -tq '{z}'"));
    sh(&format!("zip -T '{z}'"));
    sh(&format!("7z t '{z}' >/dev/null"));
    sh(&format!("bsdtar -tvf '{z}' >/dev/null"));
    sh(&format!("bsdtar -xOf - < '{z}' >/dev/null"));
    sh(&format!(
        "python3 -c 'import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); sys.exit(z.testzip() is not None or not all(i.flag_bits & 0x800 for i in z.infolist()))' '{z}'"
    ));
    let dir = tempfile::tempdir().unwrap();
    sh(&format!("cd '{}' && jar x < '{z}'", dir.path().display()));
}

/// Names and contents of every file in `zip`, as Python's zipfile reads them.
fn contents(zip: &Path) -> Vec<(String, Vec<u8>)> {
    let script = "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist():\n  d=z.read(i)\n  sys.stdout.buffer.write(i.filename.encode()+b'\\0'+str(len(d)).encode()+b'\\0'+d)";
    let out = run_ok(
        Command::new("python3").args(["-c", script, zip.to_str().unwrap()]),
        "python3 zipfile",
    );
    let mut rest = out.as_slice();
    let mut items = Vec::new();
    while !rest.is_empty() {
        let a = rest.iter().position(|&b| b == 0).unwrap();
        let name = String::from_utf8(rest[..a].to_vec()).unwrap();
        rest = &rest[a + 1..];
        let b = rest.iter().position(|&b| b == 0).unwrap();
        let len: usize = std::str::from_utf8(&rest[..b]).unwrap().parse().unwrap();
        rest = &rest[b + 1..];
        items.push((name, rest[..len].to_vec()));
        rest = &rest[len..];
    }
    items
}

/// Download `url` with curl into `dest`; returns the response headers.
fn download(url: &str, dest: &Path) -> String {
    let headers = dest.with_extension("headers");
    let (ok, _, err) = curl(&[
        "-D",
        headers.to_str().unwrap(),
        "-o",
        dest.to_str().unwrap(),
        url,
    ]);
    assert!(ok, "{err}");
    std::fs::read_to_string(headers)
        .unwrap()
        .to_ascii_lowercase()
}

fn mixed_tree() -> (Tree, Vec<(&'static str, Vec<u8>)>) {
    let t = Tree::new();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("docs/readme.txt", b"hello archive\n".to_vec()),
        (
            "docs/text/lorem.txt",
            b"lorem ipsum dolor sit amet ".repeat(400_000),
        ),
        ("docs/photos/cat.jpg", Tree::noise(300_000, 1)),
        ("docs/data.bin", Tree::noise(200_000, 2)),
        (
            "docs/中文/报告 2026.txt",
            "中文内容".repeat(100).into_bytes(),
        ),
        ("docs/zero.txt", Vec::new()),
    ];
    for (p, b) in &files {
        t.file(p, b);
    }
    t.mkdir("docs/empty/inner");
    t.file("docs/.secret", b"hidden");
    (t, files)
}

#[test]
fn every_reader_accepts_every_kind() {
    let (t, files) = mixed_tree();
    // A small crc_ahead_max turns the larger files into StoredBlocks entries.
    for (config, query) in [
        ("", "compress=store"),
        ("", "compress=deflate&level=6"),
        ("", "compress=auto"),
        ("[zip]\ncrc_ahead_max = \"100KiB\"\n", "compress=store"),
        ("[zip]\ncrc_ahead_max = \"100KiB\"\n", "compress=auto"),
    ] {
        let s = Server::start(&t.root(), config);
        let dest = t.dir.path().join("out.zip");
        let headers = download(&s.url(&format!("/docs/?download=zip&{query}")), &dest);
        assert!(
            headers.contains("content-type: application/zip"),
            "{headers}"
        );
        assert!(
            headers.contains("content-disposition: attachment; filename=\"docs.zip\""),
            "{headers}"
        );
        check_readers(&dest);
        let got = contents(&dest);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"docs/") && names.contains(&"docs/empty/inner/"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.contains(".secret")),
            "dotfiles stay out: {names:?}"
        );
        for (path, bytes) in &files {
            let (_, data) = got
                .iter()
                .find(|(n, _)| n == path)
                .unwrap_or_else(|| panic!("{path} missing"));
            assert!(data == bytes, "{path} differs ({query})");
        }
        let sorted = {
            let mut v = names.clone();
            v.sort();
            v
        };
        assert_eq!(names, sorted, "entries are sorted");
    }
}

#[test]
fn sized_archives_are_deterministic_resumable_and_sent_by_sendfile() {
    let (t, _) = mixed_tree();
    let s = Server::start(&t.root(), "[zip]\ncrc_ahead_max = \"100KiB\"\n");
    let url = s.url("/docs/?download=zip&compress=store");
    let full_path = t.dir.path().join("full.zip");
    let h1 = download(&url, &full_path);
    let full = std::fs::read(&full_path).unwrap();
    let h2 = download(&url, &t.dir.path().join("again.zip"));
    assert_eq!(
        std::fs::read(t.dir.path().join("again.zip")).unwrap(),
        full,
        "same bytes every time"
    );
    let etag = |h: &str| {
        h.lines()
            .find(|l| l.starts_with("etag:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(etag(&h1), etag(&h2));
    assert!(h1.contains(&format!("content-length: {}", full.len())));
    assert!(h1.contains("accept-ranges: bytes"));
    assert_eq!(
        s.settled_stats().copied_bytes,
        0,
        "stored entries leave by sendfile"
    );

    // Cut points at a local header, inside data, inside a block header, inside a descriptor, and
    // inside the central directory, read off the archive itself.
    let script = "import zipfile,sys,struct\nz=zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist():\n  print(i.header_offset, len(i.filename.encode())+30+9, i.compress_size, i.compress_type, i.file_size)\nd=open(sys.argv[1],'rb').read()\nprint(struct.unpack('<I', d[d.rfind(b'PK\\x05\\x06')+16:][:4])[0])";
    let out = Command::new("python3")
        .args(["-c", script, full_path.to_str().unwrap()])
        .output()
        .unwrap();
    let lines: Vec<Vec<u64>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
        .collect();
    let cd = lines.last().unwrap()[0];
    let blocks_entry = lines
        .iter()
        .find(|l| l.len() == 5 && l[3] == 8 && l[4] > 65535)
        .expect("a StoredBlocks entry");
    let stored_entry = lines
        .iter()
        .find(|l| l.len() == 5 && l[3] == 0 && l[4] > 1000)
        .expect("a Stored entry");
    let cuts = [
        stored_entry[0] + 7,                                     // inside a local header
        stored_entry[0] + stored_entry[1] + 500,                 // inside stored data
        blocks_entry[0] + blocks_entry[1] + 65540 + 2,           // inside the second block header
        blocks_entry[0] + blocks_entry[1] + blocks_entry[2] + 5, // inside the data descriptor
        cd + 60,                                                 // inside the central directory
        full.len() as u64 - 10,                                  // inside the end record
    ];
    for cut in cuts {
        // With Range...
        let r = s.get(
            "/docs/?download=zip&compress=store",
            &[&format!("Range: bytes={cut}-")],
        );
        assert_eq!(r.status, 206, "cut {cut}");
        assert_eq!(
            r.header("content-range").unwrap(),
            format!("bytes {cut}-{}/{}", full.len() - 1, full.len())
        );
        assert!(r.body == full[cut as usize..], "range from {cut} differs");
        // ...and with curl -C - on a partial file.
        let part = t.dir.path().join(format!("part-{cut}.zip"));
        std::fs::write(&part, &full[..cut as usize]).unwrap();
        let (ok, _, err) = curl(&["-C", "-", "-o", part.to_str().unwrap(), &url]);
        assert!(ok, "{err}");
        assert!(
            std::fs::read(&part).unwrap() == full,
            "resume at {cut} differs"
        );
    }
    let r = s.get(
        "/docs/?download=zip&compress=store",
        &[&format!("Range: bytes={}-", full.len())],
    );
    assert_eq!(r.status, 416);
}

#[test]
fn head_conditionals_and_if_range() {
    let (t, _) = mixed_tree();
    let s = Server::start(&t.root(), "");
    let path = "/docs/?download=zip&compress=store";
    let get = s.get(path, &[]);
    let head = s.raw(&format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length").unwrap(),
        get.body.len().to_string()
    );
    assert_eq!(head.header("etag"), get.header("etag"));
    let etag = get.header("etag").unwrap();
    assert_eq!(
        s.get(path, &[&format!("If-None-Match: {etag}")]).status,
        304
    );
    let r = s.get(
        path,
        &["Range: bytes=100-199", &format!("If-Range: {etag}")],
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &get.body[100..200]));
    let r = s.get(path, &["Range: bytes=100-199", "If-Range: \"stale\""]);
    assert_eq!((r.status, r.body.len()), (200, get.body.len()));
    // Several ranges: the whole archive.
    let r = s.get(path, &["Range: bytes=0-1,10-11"]);
    assert_eq!(r.status, 200);
    // A different selection or mode is a different representation.
    let other = s.get("/docs/?download=zip&compress=store&path=readme.txt", &[]);
    assert_ne!(other.header("etag"), Some(etag));
}

#[test]
fn selections_by_query_and_post() {
    let (t, _) = mixed_tree();
    let s = Server::start(&t.root(), "");
    let dest = t.dir.path().join("sel.zip");
    download(
        &s.url(
            "/docs/?download=zip&path=readme.txt&path=photos/cat.jpg&path=readme.txt&name=pick.zip",
        ),
        &dest,
    );
    check_readers(&dest);
    let names: Vec<String> = contents(&dest).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "docs/",
            "docs/photos/",
            "docs/photos/cat.jpg",
            "docs/readme.txt"
        ]
    );

    // POST with a JSON body, a Chinese name, and a directory in the selection.
    let body = r#"{"paths": ["中文", "zero.txt"], "name": "选择.zip"}"#;
    let mut c = s.connect();
    write!(c, "POST /docs/?download=zip HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 200);
    let cd = r.header("content-disposition").unwrap();
    assert!(
        cd.contains("filename*=UTF-8''%E9%80%89%E6%8B%A9.zip"),
        "{cd}"
    );
    std::fs::write(&dest, &r.body).unwrap();
    check_readers(&dest);
    let names: Vec<String> = contents(&dest).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "docs/",
            "docs/zero.txt",
            "docs/中文/",
            "docs/中文/报告 2026.txt"
        ]
    );
}

#[test]
fn bad_selections_are_refused_before_any_byte() {
    let (t, _) = mixed_tree();
    std::os::unix::fs::symlink(t.dir.path(), t.root().join("docs/escape")).unwrap();
    let s = Server::start(&t.root(), "");
    let cases: &[(&str, u16, &str)] = &[
        ("path=../x", 400, "\"../x\""),
        ("path=%2Fetc%2Fpasswd", 400, "\"/etc/passwd\""),
        ("path=text%2F..%2F..%2F..%2Fetc", 400, "climbs above"),
        ("path=missing.txt", 404, "\"missing.txt\""),
        ("path=.secret", 404, "\".secret\""),
        ("path=escape%2Froot%2Fdocs%2Freadme.txt", 404, "escape"),
        ("compress=brotli", 400, "compress"),
        ("level=12", 400, "level"),
    ];
    for (q, status, names) in cases {
        let r = s.get(&format!("/docs/?download=zip&{q}"), &[]);
        assert_eq!(r.status, *status, "{q}: {}", r.text());
        assert!(r.text().contains(names), "{q}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    // A whole-tree archive leaves the escaping symlink out.
    let dest = t.dir.path().join("all.zip");
    download(&s.url("/docs/?download=zip"), &dest);
    assert!(!contents(&dest).iter().any(|(n, _)| n.contains("escape")));
    // 10 000 path parameters: too long for a request target or head (414 or 431) ...
    let many: String = (0..10_000).map(|i| format!("&path=f{i}")).collect();
    let status = s.get(&format!("/docs/?download=zip{many}"), &[]).status;
    assert!(status == 414 || status == 431, "{status}");
    // ... and as a POST body they are read, deduplicated, and answered.
    let paths: Vec<String> = (0..10_000).map(|_| "\"readme.txt\"".to_string()).collect();
    let body = format!("{{\"paths\": [{}]}}", paths.join(","));
    let mut c = s.connect();
    write!(c, "POST /docs/?download=zip HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 200);
    std::fs::write(&dest, &r.body).unwrap();
    assert_eq!(contents(&dest).len(), 2);
    // POST without download=zip, or to a file, is not allowed.
    assert_eq!(
        s.request("POST", "/docs/", &["Content-Length: 0"]).status,
        405
    );
    assert_eq!(
        s.request(
            "POST",
            "/docs/readme.txt?download=zip",
            &["Content-Length: 0"]
        )
        .status,
        405
    );
}

#[test]
fn limits_on_entries_and_concurrent_archives() {
    let t = Tree::new();
    for i in 0..20 {
        t.file(&format!("d/f{i:02}.txt"), b"x");
    }
    t.file("big/huge.bin", &Tree::noise(64 << 20, 4));
    let s = Server::start(&t.root(), "[zip]\nmax_entries = 10\nmax_concurrent = 1\n");
    let r = s.get("/d/?download=zip", &[]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("more than 10 entries"), "{}", r.text());
    // One archive streaming to a client that does not read: the next one gets 503.
    let mut slow = s.connect();
    slow.write_all(b"GET /big/?download=zip&compress=store HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    slow.read_exact(&mut first).unwrap();
    let r = s.get("/big/?download=zip", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("5"));
    drop(slow);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.raw("HEAD /big/?download=zip HTTP/1.1\r\nHost: t\r\n\r\n");
        if r.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_file_changing_mid_archive_aborts_the_response() {
    let t = Tree::new();
    let victim = t.file("d/a-victim.bin", &Tree::noise(32 << 20, 8));
    t.file("d/b-after.txt", b"after");
    let s = Server::start(&t.root(), "");
    let mut c = s.connect();
    c.write_all(
        b"GET /d/?download=zip&compress=store HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut head = vec![0u8; 1 << 20];
    c.read_exact(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head[..400]).to_ascii_lowercase();
    let len: usize = text
        .split("content-length: ")
        .nth(1)
        .unwrap()
        .split("\r\n")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let body_len = head.len() + rest.len() - (text.find("\r\n\r\n").unwrap() + 4);
    assert!(
        body_len < len,
        "the response must stop short, not pad ({body_len} of {len})"
    );
    assert_eq!(s.get("/d/b-after.txt", &[]).body, b"after");
}

/// Exactly 65 535 entries (the count needs the zip64 end record) and 70 000.
#[test]
fn archives_with_65535_and_70000_entries() {
    let t = Tree::new();
    for (dir, files) in [("n65535", 65_534), ("n70000", 69_999)] {
        let d = t.root().join(dir);
        std::fs::create_dir(&d).unwrap();
        for i in 0..files {
            std::fs::write(d.join(format!("{i:06}")), i.to_string()).unwrap();
        }
    }
    let s = Server::start(&t.root(), "");
    for dir in ["n65535", "n70000"] {
        let dest = t.dir.path().join(format!("{dir}.zip"));
        download(&s.url(&format!("/{dir}/?download=zip")), &dest);
        check_readers(&dest);
        let count = Command::new("python3")
            .args([
                "-c",
                "import zipfile,sys; print(len(zipfile.ZipFile(sys.argv[1]).infolist()))",
                dest.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let want = if dir == "n65535" { "65535" } else { "70000" };
        assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), want);
    }
}

/// A sparse 4.5 GiB file plus a file after it (offset over 4 GiB): zip64 sizes and offsets.
#[test]
fn archives_over_4_gib() {
    let t = Tree::new();
    let big = t.file("z/a-big.bin", b"");
    let f = std::fs::File::options().write(true).open(&big).unwrap();
    f.set_len((9u64 << 30) / 2).unwrap();
    drop(f);
    t.file("z/b-after.txt", b"after the big one");
    let s = Server::start(&t.root(), "");
    let dest = t.dir.path().join("big.zip");
    let headers = download(&s.url("/z/?download=zip&compress=store"), &dest);
    let len = std::fs::metadata(&dest).unwrap().len();
    assert!(len > (9u64 << 30) / 2);
    assert!(
        headers.contains(&format!("content-length: {len}")),
        "{headers}"
    );
    check_readers(&dest);
    std::fs::remove_file(&dest).unwrap();
}

/// 16 slow clients download a 2 GiB archive at once; the server's RSS stays within the budget.
#[test]
fn memory_stays_bounded_with_slow_clients() {
    let t = Tree::new();
    let big = t.file("m/a.bin", b"");
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    t.file("m/b.txt", b"small");
    let root = t.root();
    let s = Spawned::serve(&["--root", root.to_str().unwrap(), "--workers", "2"]);
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = rss(s.pid());
    let addr = s.addr;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(b"GET /m/?download=zip&compress=store HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0;
                while got < (48 << 20) {
                    let n = c.read(&mut buf).unwrap();
                    assert!(n > 0);
                    got += n;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let mut peak = before;
    while clients.iter().any(|c| !c.is_finished()) {
        peak = peak.max(rss(s.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in clients {
        c.join().unwrap();
    }
    // Budget: about 1 MiB per archive (buffers, CRC reads, manifest) plus slack for the
    // allocator and thread stacks of the blocking pool.
    let grown = peak.saturating_sub(before);
    assert!(grown < 16 * 1024 + 32 * 1024, "RSS grew by {grown} KiB");
}

/// `auto` (the default, and the listing's "download this folder" link) deflates only types
/// known to compress: a folder of opaque `.bin` data is a sized, resumable archive, while a
/// folder of text is deflated (and so streamed without a length).
#[test]
fn opaque_data_gives_a_sized_archive_by_default_and_text_is_deflated() {
    let t = Tree::new();
    for i in 0..3 {
        t.file(&format!("data/{i}.bin"), &Tree::noise(4 << 20, 60 + i));
    }
    let words = b"origin cache range bytes header archive deflate ".repeat(220_000);
    t.file("text/words.txt", &words);
    let s = Server::start(&t.root(), "");
    let data = s.request("HEAD", "/data/?download=zip", &[]);
    assert_eq!(data.status, 200);
    assert!(
        data.header("content-length").is_some(),
        "{:?}",
        data.headers
    );
    assert_eq!(data.header("accept-ranges"), Some("bytes"));
    let resumed = s.get("/data/?download=zip", &["Range: bytes=100-199"]);
    assert_eq!(resumed.status, 206, "a resumable archive");
    let text = s.request("HEAD", "/text/?download=zip", &[]);
    assert_eq!(text.status, 200);
    assert!(
        text.header("content-length").is_none(),
        "10 MiB of text is deflated, so its length is not known ahead: {:?}",
        text.headers
    );
}
