use std::io::Write;
use std::os::unix::fs::symlink;

use crate::support::{read_response, Server, Tree};

const SECRET: &[u8] = b"TOPSECRET-outside-the-root";

fn tree() -> Tree {
    let t = Tree::new();
    t.file("hello.txt", b"hello");
    t.mkdir("a");
    let outside = t.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    let root = t.root();
    symlink("../outside", root.join("link-out")).unwrap();
    symlink(outside.join("secret.txt"), root.join("abs-link")).unwrap();
    symlink("../outside/secret.txt", root.join("rel-link")).unwrap();
    symlink("hello.txt", root.join("in-link")).unwrap();
    symlink("a/../../outside/secret.txt", root.join("sneaky-link")).unwrap();
    t
}

/// Send a raw request target and return (status or None if the connection was closed, body).
fn fetch(s: &Server, target: &str) -> (Option<u16>, Vec<u8>) {
    let mut c = s.connect();
    c.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    match read_response(&mut c, false) {
        Some(r) => (Some(r.status), r.body),
        None => (None, Vec::new()),
    }
}

#[test]
fn no_spelling_of_dot_dot_leaves_the_root() {
    let t = tree();
    let s = Server::start(&t.root(), "");
    let spellings = [
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/%252e%252e/outside/secret.txt",
        "/..%5coutside%5csecret.txt",
        "/..\\outside\\secret.txt",
        "/%c0%ae%c0%ae/outside/secret.txt",
        "/%c0%ae%c0%ae%c0%afoutside%c0%afsecret.txt",
        "//../outside/secret.txt",
        "/%2f../outside/secret.txt",
        "/./../outside/secret.txt",
        "/a/../../outside/secret.txt",
        "/a/%2e%2e/%2e%2e/outside/secret.txt",
        "/..;/outside/secret.txt",
        "/%00../outside/secret.txt",
        "/hello.txt%00.html",
        "/....//outside/secret.txt",
        "/..././outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/%2e./outside/secret.txt",
        "/..%252f..%252foutside%252fsecret.txt",
        "/%uff0e%uff0e/outside/secret.txt",
        "/..%c0%afoutside/secret.txt",
        "/..%ef%bc%8foutside/secret.txt",
        "../outside/secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e%5c%2e%2e%5cetc%5cpasswd",
        "http://t/../outside/secret.txt",
        "/..",
        "/%2e%2e",
        "/..%00/",
        "/a/..%2f..%2foutside/secret.txt",
        "/%5c..%5coutside%5csecret.txt",
    ];
    assert!(spellings.len() >= 30);
    for target in spellings {
        let (status, body) = fetch(&s, target);
        assert!(
            matches!(status, None | Some(400) | Some(404)),
            "{target}: status {status:?}"
        );
        assert!(
            !body.windows(SECRET.len()).any(|w| w == SECRET),
            "{target} leaked the secret"
        );
        assert!(
            !body.windows(5).any(|w| w == b"root:"),
            "{target} leaked /etc/passwd"
        );
    }
    // The server is still fine.
    assert_eq!(fetch(&s, "/hello.txt"), (Some(200), b"hello".to_vec()));
}

#[test]
fn symlinks_inside_root_by_default() {
    let t = tree();
    let s = Server::start(&t.root(), "");
    for p in [
        "/link-out/secret.txt",
        "/abs-link",
        "/rel-link",
        "/sneaky-link",
        "/link-out/",
    ] {
        let (status, body) = fetch(&s, p);
        assert_eq!(status, Some(404), "{p}");
        assert!(!body.windows(SECRET.len()).any(|w| w == SECRET));
    }
    assert_eq!(fetch(&s, "/in-link"), (Some(200), b"hello".to_vec()));
}

#[test]
fn symlinks_denied_and_followed() {
    let t = tree();
    let deny = Server::start(&t.root(), "symlinks = \"deny\"\n");
    assert_eq!(fetch(&deny, "/in-link").0, Some(404));
    assert_eq!(fetch(&deny, "/hello.txt").0, Some(200));
    let follow = Server::start(&t.root(), "symlinks = \"follow\"\n");
    assert_eq!(
        fetch(&follow, "/link-out/secret.txt"),
        (Some(200), SECRET.to_vec())
    );
    // Even when following links, `..` in the request itself never climbs.
    assert_eq!(fetch(&follow, "/../outside/secret.txt").0, Some(400));
}
