use std::io::Write;

use crate::support::{read_response, Server, Tree};

fn served() -> (Tree, Server, String, String) {
    let t = Tree::new();
    t.file("a/page.html", b"<p>hi</p>");
    let s = Server::start(
        &t.root(),
        "[[cache_control]]\npath = \"/a/**\"\nvalue = \"public, max-age=60\"\n",
    );
    let r = s.get("/a/page.html", &[]);
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();
    (t, s, etag, lm)
}

#[test]
fn if_none_match_gives_304_with_validators_and_no_body() {
    let (_t, s, etag, lm) = served();
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".to_string(),
    ] {
        let mut c = s.connect();
        // A second request right behind: a 304 with a body would corrupt it.
        write!(c, "GET /a/page.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: {inm}\r\n\r\nGET /a/page.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.status, 304, "{inm}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("last-modified"), Some(lm.as_str()));
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
        assert!(r.header("content-length").is_none());
        let next = read_response(&mut c, false).unwrap();
        assert_eq!(
            (next.status, next.body.as_slice()),
            (200, &b"<p>hi</p>"[..])
        );
    }
    assert_eq!(
        s.get("/a/page.html", &["If-None-Match: \"nope\""]).status,
        200
    );
    let h = s.raw(&format!(
        "HEAD /a/page.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(h.status, 304);
}

#[test]
fn if_modified_since_only_without_if_none_match() {
    let (_t, s, _etag, lm) = served();
    assert_eq!(
        s.get("/a/page.html", &[&format!("If-Modified-Since: {lm}")])
            .status,
        304
    );
    assert_eq!(
        s.get(
            "/a/page.html",
            &["If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT"]
        )
        .status,
        200
    );
    assert_eq!(
        s.get("/a/page.html", &["If-Modified-Since: not a date"])
            .status,
        200
    );
    let both = s.get(
        "/a/page.html",
        &[
            &format!("If-Modified-Since: {lm}"),
            "If-None-Match: \"other\"",
        ],
    );
    assert_eq!(both.status, 200, "If-None-Match takes precedence");
}

#[test]
fn if_match_and_if_unmodified_since_give_412() {
    let (_t, s, etag, lm) = served();
    assert_eq!(s.get("/a/page.html", &["If-Match: \"other\""]).status, 412);
    assert_eq!(
        s.get("/a/page.html", &[&format!("If-Match: W/{etag}")])
            .status,
        412
    );
    assert_eq!(
        s.get("/a/page.html", &[&format!("If-Match: {etag}")])
            .status,
        200
    );
    assert_eq!(s.get("/a/page.html", &["If-Match: *"]).status, 200);
    assert_eq!(
        s.get(
            "/a/page.html",
            &["If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT"]
        )
        .status,
        412
    );
    assert_eq!(
        s.get("/a/page.html", &[&format!("If-Unmodified-Since: {lm}")])
            .status,
        200
    );
    // 412 is decided before 304
    let r = s.get(
        "/a/page.html",
        &["If-Match: \"other\"", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(r.status, 412);
}

#[test]
fn a_changed_file_gets_a_new_etag() {
    let t = Tree::new();
    let p = t.file("f.txt", b"one");
    let s = Server::start(&t.root(), "[open_file_cache]\nvalid = \"0s\"\n");
    let e1 = s.get("/f.txt", &[]).header("etag").unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Atomic replace, as deploys do.
    let tmp = t.root().join("f.txt.tmp");
    std::fs::write(&tmp, b"two!").unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    let r = s.get("/f.txt", &[&format!("If-None-Match: {e1}")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"two!");
    assert_ne!(r.header("etag").unwrap(), e1);
}
