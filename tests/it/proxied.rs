use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, read_response, Group, Nginx, Response, Server, Spawned, Tree};

/// The access log's JSON lines, once there are at least `n` (or panic after 10 s).
fn log_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{n} log lines: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET /a.txt over `c`; the status, or `None` if the server closed without an answer.
fn get_on(c: TcpStream) -> Option<u16> {
    crate::support::status_of_get(c, "/a.txt")
}

/// A TCP connection to `to` from the local address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// HAProxy's `send-proxy` and `send-proxy-v2` name the client; the access log prints it, with
/// the balancer as `peer`. Connections without a header, or from a peer that is not trusted,
/// are closed unanswered.
#[test]
fn proxy_protocol_v1_and_v2_from_haproxy_name_the_client() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    let (node, log) = logged_node(&t, "trusted = [\"127.0.0.2/32\"]\nprotocol = true", "");
    let (v1, v2) = (free_port(), free_port());
    let haproxy_cfg = format!(
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n\
frontend one\n  bind 127.0.0.1:{v1}\n  default_backend one\n\
backend one\n  server n {0} send-proxy source 127.0.0.2\n\
frontend two\n  bind 127.0.0.1:{v2}\n  default_backend two\n\
backend two\n  server n {0} send-proxy-v2 source 127.0.0.2\n",
        node.addr
    );
    let cfg = t.dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_cfg).unwrap();
    let haproxy = Group::spawn(
        Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        Duration::ZERO,
        "haproxy (Debian package haproxy)",
    );
    let mut ports = Vec::new();
    for port in [v1, v2] {
        let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = Instant::now();
        let c = loop {
            match TcpStream::connect(front) {
                Ok(c) => break c,
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("haproxy did not start: {e}"),
            }
        };
        ports.push(c.local_addr().unwrap().port());
        assert_eq!(get_on(c), Some(200), "through send-proxy on port {port}");
    }
    // Straight to the node: a trusted address without a header, an untrusted one with one.
    assert_eq!(
        get_on(connect_from("127.0.0.2", node.addr)),
        None,
        "no PROXY header"
    );
    let mut spoof = connect_from("127.0.0.1", node.addr);
    spoof
        .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n")
        .unwrap();
    assert_eq!(get_on(spoof), None, "a PROXY header from an untrusted peer");

    let lines = log_lines(&log, 2);
    drop(haproxy);
    assert_eq!(
        lines.len(),
        2,
        "only the two proxied requests were answered: {lines:?}"
    );
    // Each worker writes its own lines, so their order is not the requests'.
    let mut clients: Vec<String> = lines
        .iter()
        .map(|line| {
            let peer = line["peer"].as_str().unwrap();
            assert!(peer.starts_with("127.0.0.2:"), "{line}");
            line["client"].as_str().unwrap().to_string()
        })
        .collect();
    clients.sort();
    let mut want: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    want.sort();
    assert_eq!(clients, want);
}

/// X-Forwarded-For from a trusted proxy names the client (right-most untrusted hop); from an
/// untrusted peer it is ignored, so a client cannot choose its logged or rate-limited address.
#[test]
fn x_forwarded_for_is_believed_from_trusted_proxies_only() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    let run = |trusted: &str, name: &str| {
        let log = t.dir.path().join(name);
        let s = Server::start(
            &t.root(),
            &format!(
                "[proxy]\ntrusted = [\"{trusted}\"]\nclient_header = \"X-Forwarded-For\"\n\
                 [access_log]\nenabled = true\nformat = \"json\"\npath = \"{}\"\n",
                log.display()
            ),
        );
        let r = s.get(
            "/a.txt",
            &["X-Forwarded-For: 6.6.6.6, 203.0.113.9, 127.0.0.1"],
        );
        assert_eq!(r.status, 200);
        log_lines(&log, 1)[0]["client"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(run("127.0.0.1/32", "trusted.log"), "203.0.113.9");
    let untrusted = run("10.0.0.0/8", "untrusted.log");
    assert!(untrusted.starts_with("127.0.0.1:"), "{untrusted}");
}

/// `GET path` to `to` over a connection from the local address `from`, with `headers`.
fn get_from(from: &str, to: SocketAddr, path: &str, headers: &[&str]) -> Response {
    let mut c = connect_from(from, to);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    c.write_all(request.as_bytes()).unwrap();
    read_response(&mut c, false).expect("a response")
}

/// A node whose access log (JSON) is `access.log` in the tree's directory, with `proxy` as the
/// body of its `[proxy]` table and `extra` configuration after it.
fn logged_node(t: &Tree, proxy: &str, extra: &str) -> (Spawned, PathBuf) {
    let log = t.dir.path().join("access.log");
    let config = t.dir.path().join("sendfiled.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\n{proxy}\n[access_log]\nenabled = true\nformat = \"json\"\npath = \"{}\"\n{extra}",
            log.display()
        ),
    )
    .unwrap();
    let node = Spawned::serve(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    (node, log)
}

/// A node trusting `proxy` to name the client in `header`.
fn node_behind(t: &Tree, proxy: &str, header: &str, extra: &str) -> (Spawned, PathBuf) {
    let rule = format!("trusted = [\"{proxy}/32\"]\nclient_header = \"{header}\"");
    logged_node(t, &rule, extra)
}

/// docs/deploy.md's nginx set-up with X-Forwarded-For: nginx (connecting from 127.0.0.2)
/// appends the client (127.0.0.3) to whatever the client sent; the node believes the hop nginx
/// added, not the forged one before it.
#[test]
fn nginx_in_front_names_the_client_in_x_forwarded_for() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    let (node, log) = node_behind(&t, "127.0.0.2", "X-Forwarded-For", "");
    let nginx = Nginx::start(
        t.dir.path(),
        &format!(
            "  upstream sendfiled {{ server {}; keepalive 8; }}\n\
  server {{\n    listen 127.0.0.1:{{port}};\n    location / {{\n      proxy_pass http://sendfiled;\n\
      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
      proxy_bind 127.0.0.2;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}",
            node.addr
        ),
    );
    let r = get_from(
        "127.0.0.3",
        nginx.addr,
        "/a.txt",
        &["X-Forwarded-For: 6.6.6.6"],
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"alpha"[..]));
    let line = &log_lines(&log, 1)[0];
    assert_eq!(line["client"], "127.0.0.3", "{line}");
    assert!(
        line["peer"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{line}"
    );
}

/// docs/deploy.md's CDN set-up, with nginx as the CDN's edge cache: the edge names the viewer
/// in a one-address header (CF-Connecting-IP, overwriting what the viewer sent), caches the
/// response for its max-age, revalidates with a conditional request the node answers 304,
/// and serves ranges of what it holds.
#[test]
fn a_cdn_edge_names_the_viewer_caches_and_revalidates_with_304() {
    let t = Tree::new();
    let body = Tree::noise(100_000, 7);
    t.file("big.bin", &body);
    let (node, log) = node_behind(
        &t,
        "127.0.0.2",
        "CF-Connecting-IP",
        "[[cache_control]]\npath = \"/**\"\nvalue = \"public, max-age=1\"\n",
    );
    let d = t.dir.path().display();
    let edge = Nginx::start(
        t.dir.path(),
        &format!(
            "  proxy_cache_path {d}/edge-cache keys_zone=edge:1m;\n\
  server {{\n    listen 127.0.0.1:{{port}};\n    location / {{\n      proxy_pass http://{};\n\
      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_bind 127.0.0.2;\n\
      proxy_set_header CF-Connecting-IP $remote_addr;\n      proxy_cache edge;\n\
      proxy_cache_key $scheme$host$request_uri;\n      proxy_cache_revalidate on;\n\
      add_header X-Cache $upstream_cache_status;\n    }}\n  }}",
            node.addr
        ),
    );
    let fetch = |headers: &[&str]| get_from("127.0.0.3", edge.addr, "/big.bin", headers);
    let first = fetch(&["CF-Connecting-IP: 6.6.6.6"]);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    assert!(first.body == body, "the edge passes the bytes on");
    let second = fetch(&[]);
    assert_eq!(
        (second.status, second.header("x-cache")),
        (200, Some("HIT"))
    );
    let part = fetch(&["Range: bytes=1000-1999"]);
    assert_eq!(part.status, 206);
    assert!(part.body == body[1000..2000], "a range of the cached copy");
    std::thread::sleep(Duration::from_millis(2100));
    let third = fetch(&[]);
    assert_eq!(
        (third.status, third.header("x-cache")),
        (200, Some("REVALIDATED"))
    );
    assert!(third.body == body);

    let lines = log_lines(&log, 2);
    assert_eq!(
        lines.len(),
        2,
        "the node saw the miss and the revalidation: {lines:?}"
    );
    for line in &lines {
        assert_eq!(
            line["client"], "127.0.0.3",
            "the viewer, not the header it forged: {line}"
        );
        assert!(
            line["peer"].as_str().unwrap().starts_with("127.0.0.2:"),
            "{line}"
        );
    }
    let mut statuses: Vec<u64> = lines
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 304], "{lines:?}");
}
