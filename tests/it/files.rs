use crate::support::{curl, Server, Tree};

#[test]
fn directories_index_and_redirects() {
    let t = Tree::new();
    t.file("docs/index.html", b"<h1>docs</h1>");
    t.mkdir("bare");
    t.file("index.html", b"root index");
    t.file("evil.com/index.html", b"x");
    t.file("plain.txt", b"plain");
    let s = Server::start(&t.root(), "");
    let r = s.get("/docs/", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"<h1>docs</h1>"[..]));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(s.get("/", &[]).body, b"root index");
    let r = s.get("/docs", &[]);
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/")));
    let r = s.get("/docs?x=1", &[]);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    // `//evil.com` must never come back as a protocol-relative Location.
    for p in ["//evil.com", "///evil.com", "/%2fevil.com", "/./evil.com"] {
        let r = s.get(p, &[]);
        assert_eq!(
            (r.status, r.header("location")),
            (301, Some("/evil.com/")),
            "{p}"
        );
    }
    assert_eq!(
        s.get("/bare/", &[]).status,
        404,
        "no listing without an index"
    );
    assert_eq!(s.get("/bare", &[]).status, 301);
    assert_eq!(s.get("/plain.txt/", &[]).status, 404);
    assert_eq!(s.get("/nope.txt", &[]).status, 404);
}

#[test]
fn dotfiles_are_hidden_except_well_known() {
    let t = Tree::new();
    t.file(".env", b"SECRET=1");
    t.file(".git/config", b"[core]");
    t.file("a/.htpasswd", b"x");
    t.file(".well-known/acme-challenge/tok", b"token");
    t.file(".well-known/.hidden", b"no");
    let s = Server::start(&t.root(), "");
    for p in [
        "/.env",
        "/.git/config",
        "/a/.htpasswd",
        "/%2eenv",
        "/.well-known/.hidden",
        "/.git/",
    ] {
        assert_eq!(s.get(p, &[]).status, 404, "{p}");
    }
    assert_eq!(s.get("/.well-known/acme-challenge/tok", &[]).body, b"token");
    let open = Server::start(&t.root(), "dotfiles = \"allow\"\n");
    assert_eq!(open.get("/.env", &[]).body, b"SECRET=1");
}

#[test]
fn download_names() {
    let t = Tree::new();
    t.file("docs/报告 2026.pdf", b"%PDF-1.4 fake");
    t.file("a.txt", b"a");
    let s = Server::start(&t.root(), "");
    let r = s.get("/a.txt?download", &[]);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"a.txt\"")
    );
    let r = s.get("/a.txt?download=report%20final.txt", &[]);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"report final.txt\"")
    );
    let r = s.get("/a.txt?download=..%2F..%2Fetc%2Fpasswd", &[]);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"_.._etc_passwd\"")
    );
    assert!(s.get("/a.txt", &[]).header("content-disposition").is_none());

    // curl -OJ saves it under its own name.
    let out = t.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let url = s.url("/docs/%E6%8A%A5%E5%91%8A%202026.pdf?download");
    let (ok, _, err) = curl(&["-O", "-J", "--output-dir", out.to_str().unwrap(), &url]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(out.join("报告 2026.pdf")).unwrap(),
        b"%PDF-1.4 fake"
    );
    let r = s.get("/docs/%E6%8A%A5%E5%91%8A%202026.pdf?download", &[]);
    let cd = r.header("content-disposition").unwrap();
    assert!(
        cd.ends_with("filename*=UTF-8''%E6%8A%A5%E5%91%8A%202026.pdf"),
        "{cd}"
    );
}

#[test]
fn cache_control_rules_first_match_wins() {
    let t = Tree::new();
    t.file("assets/app.3f9a.js", b"js");
    t.file("assets/deep/x.css", b"css");
    t.file("index.html", b"home");
    let s = Server::start(
        &t.root(),
        r#"
[[cache_control]]
path = "/assets/*.js"
value = "public, max-age=31536000, immutable"
[[cache_control]]
path = "/assets/**"
value = "public, max-age=3600"
[[cache_control]]
path = "/*.html"
value = "no-cache"
"#,
    );
    let js = s.get("/assets/app.3f9a.js", &[]);
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        s.get("/assets/deep/x.css", &[]).header("cache-control"),
        Some("public, max-age=3600")
    );
    assert_eq!(s.get("/", &[]).header("cache-control"), Some("no-cache"));
}
