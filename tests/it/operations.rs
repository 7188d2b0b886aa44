use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    binary, free_port, read_response, request_at, run_ok, sign_cli, signal, wait_for_log, Server,
    Spawned, Tree,
};

/// Read sd_notify datagrams until one contains `want` (or panic after `secs`).
fn expect_notify(sock: &UnixDatagram, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
            seen.push(msg);
        }
    }
    panic!("no {want:?} within {secs}s; got {seen:?}");
}

fn get(addr: SocketAddr, path: &str) -> crate::support::Response {
    request_at(addr, "GET", path, &[])
}

#[test]
fn socket_activation_and_sd_notify() {
    let t = Tree::new();
    t.file("a.txt", b"activated");
    let notify_path = t.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .args([
            "-l",
            &addr.to_string(),
            "-E",
            "NOTIFY_SOCKET",
            "-E",
            "WATCHDOG_USEC",
        ])
        .arg(binary())
        .args([
            "serve",
            "--root",
            t.root().to_str().unwrap(),
            "--admin-listen",
            "off",
        ])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd) is installed");
    // systemd-socket-activate listens, then execs the server on the first connection.
    let start = Instant::now();
    let mut first = loop {
        match TcpStream::connect(addr) {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("the activation socket never listened: {e}"),
        }
    };
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(first, "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let ready = expect_notify(&notify, "READY=1", 10);
    assert!(
        ready.contains(&format!("STATUS=serving on {addr}")),
        "{ready}"
    );
    // The connection that triggered the activation is answered on the passed socket.
    let r = read_response(&mut first, false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"activated"[..]));
    assert_eq!(get(addr, "/a.txt").status, 200);

    // Watchdog pings at half of WATCHDOG_USEC.
    expect_notify(&notify, "WATCHDOG=1", 3);
    expect_notify(&notify, "WATCHDOG=1", 3);

    // A reload is bracketed by RELOADING=1 and READY=1.
    signal(child.id(), "HUP");
    let reloading = expect_notify(&notify, "RELOADING=1", 5);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    expect_notify(&notify, "READY=1", 5);

    signal(child.id(), "TERM");
    expect_notify(&notify, "STOPPING=1", 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// A spawned server on `t` with its admin listener on a free port, and that listener's address.
fn serve_with_admin(t: &Tree, extra: &[&str]) -> (Spawned, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin_arg = admin.to_string();
    let root = t.root();
    let mut args = vec![
        "--root",
        root.to_str().unwrap(),
        "--admin-listen",
        &admin_arg,
    ];
    args.extend_from_slice(extra);
    (Spawned::serve(&args), admin)
}

/// SIGTERM with a drain delay: /readyz fails at once, while the node goes on accepting and
/// serving new connections until the delay ends; then it stops as without one.
#[test]
fn sigterm_fails_readyz_first_and_serves_through_the_drain_delay() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    let (server, admin) = serve_with_admin(&t, &["--drain-delay", "1500ms"]);
    assert_eq!(get(admin, "/readyz").status, 200);
    signal(server.pid(), "TERM");
    let sent = Instant::now();
    while get(admin, "/readyz").status != 503 {
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "/readyz did not fail at once"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut served = 0;
    while sent.elapsed() < Duration::from_millis(1200) {
        // A connection refused counts against the server only inside the delay: on a loaded
        // machine this thread can be held past its end between the check above and the connect.
        let mut c = match TcpStream::connect(server.addr) {
            Ok(c) => c,
            Err(e) => {
                let at = sent.elapsed();
                assert!(
                    at >= Duration::from_millis(1500),
                    "refused {at:?} after SIGTERM: {e}"
                );
                break;
            }
        };
        write!(
            c,
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let r = read_response(&mut c, false).expect("a response");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"alpha"[..]),
            "during the delay"
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served > 10);
    let mut child = server;
    let status = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "did not stop after the delay"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "stopped before the delay ended"
    );
    assert!(
        TcpStream::connect(child.addr).is_err(),
        "the port is closed once it has stopped"
    );
}

#[test]
fn sigterm_drains_in_flight_downloads_and_refuses_new_connections() {
    let t = Tree::new();
    let data = Tree::noise(100 << 20, 77);
    t.file("big.bin", &data);
    let (server, admin) = serve_with_admin(&t, &[]);
    assert_eq!(get(admin, "/readyz").status, 200);

    // A slow download: about 25 MiB/s, so it is mid-body when SIGTERM arrives.
    let mut c = server.connect();
    write!(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let addr = server.addr;
    let pid = server.pid();
    let reader = std::thread::spawn(move || {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let mut body = Vec::with_capacity(100 << 20);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
                Err(e) => panic!("download broke: {e}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        body
    });
    std::thread::sleep(Duration::from_millis(800));
    signal(pid, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Draining: not ready, and the public port refuses new connections.
    assert_eq!(get(admin, "/readyz").status, 503);
    assert_eq!(get(admin, "/healthz").status, 200);
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );

    let body = reader.join().unwrap();
    assert_eq!(body.len(), data.len());
    assert!(body == data, "the drained download is byte-exact");
    let status = server.terminate(30);
    assert!(status.success(), "{status}");
}

#[test]
fn sighup_reloads_keys_and_limits_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let t = Tree::new();
    t.file("private/doc.pdf", b"%PDF secret");
    t.file("public/a.txt", b"public");
    let data = Tree::noise(64 << 20, 3);
    t.file("public/big.bin", &data);
    let k1 = t.dir.path().join("k1.key");
    let k2 = t.dir.path().join("k2.key");
    std::fs::write(&k1, "first-key-0123456789abcdef").unwrap();
    std::fs::write(&k2, "second-key-0123456789abcdef").unwrap();
    let config = t.dir.path().join("sendfiled.toml");
    let base = "[signing]\nprotected = [\"/private/\"]\n[[signing.keys]]\nid = \"k1\"\nfile = \"k1.key\"\n";
    std::fs::write(&config, base).unwrap();
    let server = Spawned::serve(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let sign = |key: &std::path::Path, kid: &str| sign_cli(key, kid, &[], "/private/doc.pdf");
    let by_k2 = sign(&k2, "k2");
    assert_eq!(get(server.addr, &sign(&k1, "k1")).status, 200);
    assert_eq!(
        get(server.addr, &by_k2).status,
        403,
        "k2 is not configured yet"
    );

    // An in-flight download, read slowly across both reloads.
    let mut c = server.connect();
    write!(c, "GET /public/big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let reader = std::thread::spawn(move || {
        let r = read_response(&mut SlowReader(c), false).unwrap();
        r.body
    });

    // Reload 1: a second key and a request-rate limit.
    std::fs::write(
        &config,
        format!("{base}[[signing.keys]]\nid = \"k2\"\nfile = \"k2.key\"\n[clients]\nrequests_per_second = 0.5\nrequest_burst = 2\n"),
    )
    .unwrap();
    let before = server
        .log
        .lock()
        .unwrap()
        .matches("configuration reloaded")
        .count();
    signal(server.pid(), "HUP");
    wait_for_log(&server, "configuration reloaded", before + 1);
    assert_eq!(get(server.addr, &by_k2).status, 200, "the new key works");
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(server.addr, "/public/a.txt").status)
        .collect();
    assert!(
        statuses.contains(&429),
        "the new rate limit applies: {statuses:?}"
    );

    // Reload 2: an invalid file is rejected and the running configuration stays.
    std::fs::write(&config, "[clients]\nrequests_per_secnod = 5\n").unwrap();
    signal(server.pid(), "HUP");
    wait_for_log(&server, "reload rejected", 1);
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("requests_per_secnod"),
        "the error names the key: {log}"
    );
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        get(server.addr, &by_k2).status,
        200,
        "the old configuration is kept"
    );

    let body = reader.join().unwrap();
    assert!(body == data, "the in-flight download survived both reloads");
    assert!(server.terminate(10).success());
}

/// Reads at most 1 MiB per 50 ms (about 20 MiB/s).
struct SlowReader(TcpStream);

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(1));
        let n = buf.len().min(1 << 20);
        let got = self.0.read(&mut buf[..n])?;
        if got > 64 * 1024 {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(got)
    }
}

#[test]
fn metrics_parse_with_prometheus_client_and_count_what_was_done() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    t.file("d/b.txt", b"bravo");
    let s = Server::start(&t.root(), "[admin]\nlisten = \"127.0.0.1:0\"\n");
    for _ in 0..3 {
        assert_eq!(s.get("/a.txt", &[]).status, 200);
    }
    assert_eq!(s.request("HEAD", "/a.txt", &[]).status, 200);
    assert_eq!(s.get("/missing", &[]).status, 404);
    assert_eq!(s.get("/missing", &[]).status, 404);
    assert_eq!(s.get("/a.txt", &["Range: bytes=0-1"]).status, 206);
    assert_eq!(s.get("/d/?download=zip", &[]).status, 200);
    std::thread::sleep(Duration::from_millis(300));

    let r = get(s.admin_addr(), "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let dir = t.dir.path();
    std::fs::write(dir.join("metrics.txt"), &r.body).unwrap();
    // The distribution's Python, where python3-prometheus-client is installed (a pyenv or venv
    // python3 earlier in PATH would not have it).
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = run_ok(
        Command::new(python)
            .args([
                "-c",
                r#"import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        key = s.name + ''.join(f'|{k}={v}' for k, v in sorted(s.labels.items()))
        out[key] = s.value
print(json.dumps(out))"#,
            ])
            .arg(dir.join("metrics.txt")),
        "prometheus_client (python3-prometheus-client) parsing /metrics",
    );
    let m: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let v = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("no {k} in {m}"));
    // GET 2xx: three 200s, one 206, one archive.
    assert_eq!(v("sendfiled_requests_total|method=GET|status=2xx"), 5.0);
    assert_eq!(v("sendfiled_requests_total|method=GET|status=4xx"), 2.0);
    assert_eq!(v("sendfiled_requests_total|method=HEAD|status=2xx"), 1.0);
    assert_eq!(v("sendfiled_request_duration_seconds_count"), 8.0);
    assert_eq!(v("sendfiled_request_duration_seconds_bucket|le=+Inf"), 8.0);
    assert_eq!(v("sendfiled_archives_total"), 1.0);
    assert!(v("sendfiled_body_bytes_total|path=zip") > 0.0);
    // The first whole body and the archive's stored file by sendfile; a.txt is small, so from
    // its second request on (two whole bodies and a two-byte range) it is sent from memory.
    assert_eq!(v("sendfiled_body_bytes_total|path=sendfile"), 5.0 + 5.0);
    assert_eq!(v("sendfiled_body_bytes_total|path=small"), 2.0 * 5.0 + 2.0);
    assert_eq!(v("sendfiled_small_body_cache_bytes"), 5.0);
    assert_eq!(v("sendfiled_body_bytes_total|path=copy"), 0.0);
    assert_eq!(v("sendfiled_connections_total"), 8.0);
    assert!(v("sendfiled_open_file_cache_total|result=hit") >= 4.0);
    assert_eq!(
        v("sendfiled_signature_failures_total|reason=bad_signature"),
        0.0
    );
    assert_eq!(v("sendfiled_draining"), 0.0);
    assert_eq!(get(s.admin_addr(), "/healthz").status, 200);
    assert_eq!(get(s.admin_addr(), "/readyz").status, 200);
    assert_eq!(get(s.admin_addr(), "/nope").status, 404);
    // The admin endpoints are not on the public port.
    assert_eq!(s.get("/metrics", &[]).status, 404);
}

#[test]
fn access_log_lines_and_reopen_on_sigusr1() {
    let t = Tree::new();
    let (server, log) = logging_server(&t, "json");
    let mut c = server.connect();
    write!(
        c,
        "GET /a.txt?expires=1&kid=k&sig=SECRETSIG HTTP/1.1\r\nHost: t\r\nUser-Agent: evil\"\n\rinjected\r\nReferer: https://example.com/\r\nRange: bytes=1-2\r\n\r\n"
    )
    .unwrap();
    // A forged line break in a header is a malformed request (400), never a log line of its own.
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 400);
    let mut c = server.connect();
    write!(
        c,
        "GET /a.txt?expires=1&kid=k&sig=SECRETSIG HTTP/1.1\r\nHost: t\r\nUser-Agent: tester \"quoted\"\r\nReferer: https://example.com/\r\nRange: bytes=1-2\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 206);
    drop(c);
    let line = wait_for_line(&log, "tester");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "{text}"
    );
    assert!(!line.contains("SECRETSIG"), "signature redacted: {line}");
    let j: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(j["method"], "GET");
    assert_eq!(j["path"], "/a.txt");
    assert_eq!(j["query"], "expires=1&kid=k&sig=REDACTED");
    assert_eq!(j["status"], 206);
    assert_eq!(j["range"], "bytes=1-2");
    assert_eq!(j["body"], "sendfile");
    assert_eq!(j["user_agent"], "tester \"quoted\"");
    assert_eq!(j["referer"], "https://example.com/");
    assert!(j["bytes"].as_u64().unwrap() > 2);
    assert!(j["duration_ms"].as_f64().is_some());
    assert!(j["time"].as_str().unwrap().ends_with('Z'));
    assert!(j["client"].as_str().unwrap().starts_with("127.0.0.1:"));

    // logrotate: move the file away, SIGUSR1, and new lines go to a new file.
    let rotated = t.dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(server.pid(), "USR1");
    wait_for_log(&server, "access log reopened", 1);
    assert_eq!(get(server.addr, "/a.txt").status, 200);
    let line = wait_for_line(&log, "\"status\":200");
    assert!(line.contains("\"path\":\"/a.txt\""));
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("\"status\":200"));
    assert!(server.terminate(10).success());
}

/// The combined format, nginx's field order with ours after the duration, for every request of
/// a keep-alive connection (the client's text is formatted once per connection and reused).
#[test]
fn combined_access_log_lines() {
    let t = Tree::new();
    let (server, log) = logging_server(&t, "combined");
    let mut c = server.connect();
    for agent in ["first \"agent\"", "second"] {
        write!(
            c,
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: {agent}\r\nReferer: https://example.com/\r\n\r\n"
        )
        .unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    }
    drop(c);
    let second = wait_for_line(&log, "\"second\"");
    let first = wait_for_line(&log, "first");
    for (line, agent) in [
        (&first, r#""first \x22agent\x22""#),
        (&second, r#""second""#),
    ] {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains(" +0000] \"GET /a.txt HTTP/1.1\" 200 "),
            "{line}"
        );
        assert!(
            line.contains(&format!("\"https://example.com/\" {agent} ")),
            "{line}"
        );
        let tail: Vec<&str> = line
            .rsplit(&format!("{agent} "))
            .next()
            .unwrap()
            .split(' ')
            .collect();
        assert!(
            tail[0].parse::<f64>().is_ok(),
            "duration in seconds: {line}"
        );
        // The body path (sendfile until the small-body cache holds the file, then with its
        // head), no key id, and `digest` once the background digest is known.
        assert!(["sendfile", "small"].contains(&tail[1]), "{line}");
        assert_eq!(tail[2], "-", "{line}");
        assert!(tail[3..].iter().all(|w| *w == "digest"), "{line}");
    }
    assert!(server.terminate(10).success());
}

/// A server over a tree holding `a.txt`, logging in `format` to `access.log` beside its config.
fn logging_server(t: &Tree, format: &str) -> (Spawned, std::path::PathBuf) {
    t.file("a.txt", b"alpha");
    let config = t.dir.path().join("c.toml");
    let text = format!("[access_log]\nformat = \"{format}\"\npath = \"access.log\"\n");
    std::fs::write(&config, text).unwrap();
    let server = Spawned::serve(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    (server, t.dir.path().join("access.log"))
}

fn wait_for_line(path: &std::path::Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no line with {needle:?} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `install-systemd.sh --dest DIR --verify` stages the binary, units, configuration and docs,
/// and verifies the staged units (systemd-analyze) and configuration (check-config); the staged
/// docs keep the repository's layout, so every relative link in them resolves.
#[test]
fn staged_units_verify_and_the_staged_docs_links_resolve() {
    let t = Tree::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let stage = t.dir.path().join("stage");
    let out = run_ok(
        Command::new("bash")
            .arg(repo.join("scripts/install-systemd.sh"))
            .args(["--dest", stage.to_str().unwrap(), "--verify"])
            .env("SENDFILED_BIN", binary())
            .env("SYSTEMD_LOG_LEVEL", "warning"),
        "install-systemd.sh --dest --verify (systemd-analyze: Debian package systemd)",
    );
    assert!(String::from_utf8_lossy(&out).contains("staged units and configuration verify"));
    let unit = std::fs::read_to_string(stage.join("etc/systemd/system/sendfiled.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/sendfiled"),
        "installed paths in the staged unit"
    );
    let docs = stage.join("usr/local/share/doc/sendfiled");
    let mut checked = 0;
    for md in walk(&docs)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(&md).unwrap();
        for link in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            let target = link.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = md.parent().unwrap().join(target);
            assert!(
                path.exists(),
                "{} links to {link}, missing where installed",
                md.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} links checked");
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A stand-in for systemd's socket unit: it holds the listening socket, passes it to the server
/// as fd 3 with LISTEN_FDS/LISTEN_PID, and restarts the server while a client keeps connecting.
const SOCKET_MANAGER: &str = r#"
import json, os, signal, socket, subprocess, sys, threading, time
binary, root = sys.argv[1], sys.argv[2]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4096)
port = ls.getsockname()[1]

def launch():
    def to_fd3():
        os.dup2(ls.fileno(), 3)
        os.set_inheritable(3, True)
    return subprocess.Popen(
        ["sh", "-c", 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" serve --root "$1" --admin-listen off --drain-delay 0 --workers 2', binary, root],
        preexec_fn=to_fd3, pass_fds=(3,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def get():
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200") and data.endswith(b"restart-proof")

first = launch()
for _ in range(100):
    try:
        if get():
            break
    except OSError:
        pass
    time.sleep(0.05)
results = {"ok": 0, "failed": 0, "errors": []}
stop = threading.Event()
def client():
    while not stop.is_set():
        try:
            if get():
                results["ok"] += 1
            else:
                results["failed"] += 1
        except OSError as e:
            results["failed"] += 1
            results["errors"].append(str(e))
threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(1)
before = results["ok"]
first.send_signal(signal.SIGTERM)
first.wait(timeout=20)
gap_start = time.time()
time.sleep(0.5)  # connections queue in the backlog while no server runs
second = launch()
time.sleep(1.5)
stop.set()
for t in threads:
    t.join()
second.send_signal(signal.SIGTERM)
results["first_exit"] = first.returncode
results["second_exit"] = second.wait(timeout=20)
results["ok_before_restart"] = before
print(json.dumps(results))
"#;

#[test]
fn a_restart_behind_socket_activation_refuses_no_connection() {
    let t = Tree::new();
    t.file("a.txt", b"restart-proof");
    let script = t.dir.path().join("socket_manager.py");
    std::fs::write(&script, SOCKET_MANAGER).unwrap();
    let out = run_ok(
        Command::new("python3")
            .arg(&script)
            .arg(binary())
            .arg(t.root()),
        "the socket manager",
    );
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        r["failed"], 0,
        "connection attempts lost in the restart: {r}"
    );
    assert_eq!(r["first_exit"], 0, "{r}");
    assert_eq!(r["second_exit"], 0, "{r}");
    let before = r["ok_before_restart"].as_u64().unwrap();
    let total = r["ok"].as_u64().unwrap();
    assert!(
        before > 0 && total > before + 4,
        "served across the restart: {r}"
    );
}
