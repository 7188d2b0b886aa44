use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::support::{curl, Server, Tree};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn set_mtime(path: &std::path::Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

struct Variants {
    tree: Tree,
    js: Vec<u8>,
    gz: Vec<u8>,
    br: Vec<u8>,
}

fn variant_tree() -> Variants {
    let t = Tree::new();
    let js: Vec<u8> = "function hello() { return 'hello, world'; }\n"
        .repeat(2000)
        .into_bytes();
    let gz = gzip(&js);
    // Not real brotli: the server never decodes, it only picks a file.
    let br = [b"BROTLI".as_slice(), &Tree::noise(3000, 4)].concat();
    for (rel, bytes, mtime) in [
        ("app.js", &js, 1_700_000_000),
        ("app.js.gz", &gz, 1_700_000_100),
        ("app.js.br", &br, 1_700_000_100),
        ("lib.js", &js, 1_700_000_000),
        ("lib.js.gz", &gz, 1_700_000_100),
        ("stale.js", &js, 1_700_000_500),
        ("stale.js.gz", &gz, 1_700_000_100),
        ("plain.css", &js, 1_700_000_000),
    ] {
        let p = t.file(rel, bytes);
        set_mtime(&p, mtime);
    }
    Variants {
        tree: t,
        js,
        gz,
        br,
    }
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    let v = variant_tree();
    let s = Server::start(&v.tree.root(), "[precompressed]\nenabled = true\n");

    let plain = s.get("/app.js", &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, v.js, "no Accept-Encoding: the file itself");
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    assert_eq!(plain.header("content-encoding"), None);

    let gz = s.get("/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(gz.status, 200);
    assert_eq!(gz.body, v.gz);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("content-type"), plain.header("content-type"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_ne!(
        gz.header("etag"),
        plain.header("etag"),
        "each variant has its own ETag"
    );
    assert_eq!(gz.header("content-length").unwrap(), v.gz.len().to_string());

    let br = s.get("/app.js", &["Accept-Encoding: gzip, deflate, br"]);
    assert_eq!(
        (br.header("content-encoding"), br.body == v.br),
        (Some("br"), true)
    );
    let q = s.get("/app.js", &["Accept-Encoding: br;q=0.5, gzip"]);
    assert_eq!(q.header("content-encoding"), Some("gzip"));
    let star = s.get("/app.js", &["Accept-Encoding: *;q=0.2, br;q=0"]);
    assert_eq!(star.header("content-encoding"), Some("gzip"));
    let refused = s.get("/app.js", &["Accept-Encoding: identity;q=0, deflate"]);
    assert_eq!(refused.status, 406);
    assert_eq!(refused.header("vary"), Some("Accept-Encoding"));

    // Ranges and conditionals apply to the chosen representation.
    let r = s.get("/app.js", &["Accept-Encoding: gzip", "Range: bytes=0-9"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &v.gz[..10]);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 0-9/{}", v.gz.len())
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let etag = gz.header("etag").unwrap();
    let nm = s.get(
        "/app.js",
        &["Accept-Encoding: gzip", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("vary"), Some("Accept-Encoding"));
    assert_eq!(nm.header("etag"), Some(etag));
    let other = s.get("/app.js", &[&format!("If-None-Match: {etag}")]);
    assert_eq!(
        other.status, 200,
        "the gzip ETag does not match the identity file"
    );
    let head = s.request("HEAD", "/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(
        head.header("content-length").unwrap(),
        v.gz.len().to_string()
    );
    assert_eq!(head.header("content-encoding"), Some("gzip"));

    // A variant older than its file is never served; a file without variants has no Vary.
    let stale = s.get("/stale.js", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (stale.header("content-encoding"), stale.body == v.js),
        (None, true)
    );
    let css = s.get("/plain.css", &["Accept-Encoding: gzip"]);
    assert_eq!(
        (css.header("vary"), css.header("content-encoding")),
        (None, None)
    );
    let st = s.settled_stats();
    assert_eq!(st.copied_bytes, 0, "variants leave by sendfile too");
}

#[test]
fn curl_decodes_a_precompressed_variant() {
    let v = variant_tree();
    let s = Server::start(&v.tree.root(), "[precompressed]\nenabled = true\n");
    let (ok, body, err) = curl(&["--compressed", &s.url("/lib.js")]);
    assert!(ok, "{err}");
    assert_eq!(body, v.js);
    let (_, headers, _) = curl(&[
        "--compressed",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &s.url("/lib.js"),
    ]);
    let headers = String::from_utf8(headers).unwrap().to_ascii_lowercase();
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
}

#[test]
fn variants_are_off_by_default() {
    let v = variant_tree();
    let s = Server::start(&v.tree.root(), "");
    let r = s.get("/app.js", &["Accept-Encoding: gzip, br"]);
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    assert_eq!(r.body, v.js);
}

fn listing_tree() -> Tree {
    let t = Tree::new();
    t.file("pub/b.txt", b"bravo!");
    t.file("pub/a <&>.txt", b"alpha");
    t.file("pub/c/inner.txt", b"charlie");
    t.file("pub/.secret", b"hidden");
    t.file("pub/private/x.txt", b"protected");
    t.file("with-index/index.html", b"<p>index</p>");
    std::fs::write(t.dir.path().join("outside.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink("../../outside.txt", t.root().join("pub/escape.txt")).unwrap();
    std::os::unix::fs::symlink("b.txt", t.root().join("pub/link-to-b.txt")).unwrap();
    let key = t.dir.path().join("k.key");
    std::fs::write(&key, "listing-key-0123456789abcdef").unwrap();
    t
}

fn listing_config(t: &Tree, extra: &str) -> String {
    format!(
        "[listing]\nenabled = true\n{extra}\n[signing]\nprotected = [\"/pub/private/\"]\n[[signing.keys]]\nid = \"k\"\nfile = {:?}\n",
        t.dir.path().join("k.key").display().to_string()
    )
}

#[test]
fn directory_listings_in_html_and_json() {
    let t = listing_tree();
    // Off by default.
    let off = Server::start(&t.root(), "");
    assert_eq!(off.get("/pub/", &[]).status, 404);
    drop(off);

    let s = Server::start(&t.root(), &listing_config(&t, ""));
    let r = s.get("/pub/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(html.contains("a &lt;&amp;&gt;.txt"), "{html}");
    assert!(html.contains("href=\"./a%20%3C%26%3E.txt\""), "{html}");
    assert!(html.contains("href=\"?download=zip\""));
    assert!(!html.contains(".secret"), "dotfiles hidden");
    assert!(
        !html.contains("escape.txt"),
        "symlinks out of the root hidden"
    );
    assert!(
        html.contains("link-to-b.txt"),
        "symlinks inside the root listed"
    );
    assert!(
        !html.contains("private"),
        "protected folders hidden without a signature"
    );
    let order: Vec<usize> = ["c/", "a &lt;", "b.txt", "link-to-b.txt"]
        .iter()
        .map(|n| html.find(n).unwrap_or_else(|| panic!("{n} in {html}")))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "folders first, then by name"
    );
    // A directory with an index serves the index, not a listing.
    assert_eq!(s.get("/with-index/", &[]).body, b"<p>index</p>");

    let j = s.get("/pub/?format=json", &[]);
    assert_eq!(j.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    let names: Vec<&str> = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "a <&>.txt", "b.txt", "link-to-b.txt"]);
    assert_eq!(doc["entries"][2]["size"], 6);
    assert_eq!(doc["entries"][0]["type"], "directory");
    assert_eq!(doc["total"], 4);
    let by_accept = s.get("/pub/", &["Accept: application/json"]);
    assert_eq!(by_accept.body, j.body);
    // HEAD matches GET.
    let head = s.request("HEAD", "/pub/", &[]);
    assert_eq!(
        head.header("content-length").unwrap(),
        r.body.len().to_string()
    );
}

#[test]
fn large_directories_are_paged() {
    let t = listing_tree();
    for i in 0..5 {
        t.file(&format!("many/f{i}.txt"), b"x");
    }
    let s = Server::start(&t.root(), &listing_config(&t, "max_entries = 2"));
    let page = |n: usize| -> serde_json::Value {
        let r = s.get(&format!("/many/?format=json&page={n}"), &[]);
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    };
    let first = s.get("/many/?format=json", &[]);
    let first: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        (first["pages"].as_u64(), first["total"].as_u64()),
        (Some(3), Some(5))
    );
    let mut all = Vec::new();
    for n in 1..=3 {
        for e in page(n)["entries"].as_array().unwrap() {
            all.push(e["name"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(all, ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]);
    assert_eq!(s.get("/many/?page=4", &[]).status, 404);
    assert_eq!(s.get("/many/?page=zero", &[]).status, 400);
    let html = s.get("/many/?page=2", &[]).text();
    assert!(
        html.contains("Page 2 of 3") && html.contains("?page=3"),
        "{html}"
    );
}

/// `brotli -k` keeps the source's mtime only to the second, so a variant made from the current
/// file is older than it in nanoseconds. It is served; a variant older by whole seconds is not,
/// and is counted.
#[test]
fn a_variant_made_by_brotli_keep_is_served() {
    let t = Tree::new();
    let js = b"console.log('precompressed');\n".repeat(200);
    let path = t.file("app.js", &js);
    let fraction = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_700_000_000);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(fraction)
        .unwrap();
    crate::support::run_ok(
        std::process::Command::new("brotli").arg("-k").arg(&path),
        "brotli -k (Debian package brotli)",
    );
    let br = std::fs::read(t.root().join("app.js.br")).unwrap();
    let mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert!(
        mtime(&t.root().join("app.js.br")) < mtime(&path),
        "brotli kept the mtime to the nanosecond: this test would not test anything"
    );
    let old = t.file("old.js", &js);
    t.file("old.js.br", &br);
    let set = |p: &std::path::Path, secs: u64| {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    set(&old, 1_700_000_010);
    set(&t.root().join("old.js.br"), 1_700_000_000);
    let s = Server::start(&t.root(), "[precompressed]\nenabled = true\n");
    let r = s.get("/app.js", &["Accept-Encoding: br"]);
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(r.body == br, "the brotli variant's bytes");
    let before = s.stats().stale_variants;
    let r = s.get("/old.js", &["Accept-Encoding: br"]);
    assert_eq!(
        r.header("content-encoding"),
        None,
        "a stale variant is never served"
    );
    assert!(r.body == js);
    assert_eq!(s.stats().stale_variants - before, 1, "and it is counted");
}

/// The listing as a person sees it, in headless Chromium: its DOM after rendering has folders
/// first, then the order asked for, human sizes with exact bytes in a title, ISO dates and a
/// breadcrumb; a phone-sized screenshot renders.
#[test]
fn listings_render_in_a_real_browser() {
    let t = Tree::new();
    t.mkdir("docs/sub");
    t.file("docs/small.txt", &[b'x'; 10]);
    t.file("docs/mid.txt", &[b'y'; 2000]);
    t.file("docs/big.bin", &Tree::noise(3 << 20, 9));
    let s = Server::start(&t.root(), "[listing]\nenabled = true\n");
    let profile = t.dir.path().join("chromium-profile");
    let chromium = |extra: &[&str], url: &str| {
        crate::support::run_ok(
            std::process::Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(extra)
                .arg(url),
            "chromium (Debian package chromium)",
        )
    };
    let dom = String::from_utf8(chromium(
        &["--dump-dom"],
        &s.url("/docs/?sort=size&order=desc"),
    ))
    .unwrap();
    let rows: Vec<&str> = dom
        .split("<td class=\"name\">")
        .skip(1)
        .map(|row| {
            row.split("</a>")
                .next()
                .unwrap()
                .rsplit('>')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(rows, ["sub/", "big.bin", "mid.txt", "small.txt"], "{dom}");
    assert!(dom.contains("title=\"3145728 bytes\""), "{dom}");
    assert!(
        dom.contains(">3.0 MiB<") && dom.contains(">2.0 KiB<") && dom.contains(">10 B<"),
        "{dom}"
    );
    let year = dom.split("<td class=\"time\">").nth(1).unwrap();
    let date = &year[..16];
    assert!(
        date.as_bytes()[4] == b'-' && date.as_bytes()[10] == b' ' && date.as_bytes()[13] == b':',
        "an ISO date, not {date:?}"
    );
    assert!(
        dom.contains("<a href=\"/docs/\">docs/</a>"),
        "breadcrumb: {dom}"
    );
    let shot = t.dir.path().join("listing.png");
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=412,900",
        ],
        &s.url("/docs/"),
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 2000,
        "{} bytes",
        png.len()
    );
}
