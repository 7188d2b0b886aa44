//! Conformance and hostile input, round two: request-body framing and deadlines, pipelining
//! across read boundaries, HTTP versions, Host syntax, and what an outside probe found. Each test
//! speaks raw bytes over TcpStream where wire bytes matter.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::{closed_within, converse, read_response, Server, Tree};

fn small_tree() -> Tree {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    t.file("d/x.txt", b"x");
    t
}

#[test]
fn invalid_chunked_framing_on_a_get_is_a_400_and_a_close() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    for size in ["fffffffffffffffff1", "zz", "-1", "0x13"] {
        let raw = format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
        );
        let (statuses, closed) = converse(&s, raw.as_bytes());
        assert_eq!(statuses, [400], "chunk size {size:?}: never a success");
        assert!(closed, "chunk size {size:?}: the connection closes");
    }
}

#[test]
fn a_valid_body_on_a_get_is_read_and_the_next_request_answered() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let raw =
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
               GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxy\
               HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (statuses, _) = converse(&s, raw.as_bytes());
    assert_eq!(statuses, [200, 200, 200]);
    // A body too large to be worth reading on a GET: 413 before a byte is read.
    let raw = "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n";
    let (statuses, closed) = converse(&s, raw.as_bytes());
    assert_eq!((statuses, closed), (vec![413], true));
}

#[test]
fn malformed_chunked_selections_are_400_not_413() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let long_ext = format!("3;{}\r\nabc\r\n0\r\n\r\n", "e".repeat(100_000));
    for body in [
        "zz\r\n",
        "-1\r\n",
        "0x13\r\n",
        "3\r\nabcXY0\r\n\r\n",
        &long_ext,
    ] {
        let raw = format!(
            "POST /d/?download=zip HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let (statuses, closed) = converse(&s, raw.as_bytes());
        assert_eq!(statuses, [400], "body {:?}", &body[..body.len().min(20)]);
        assert!(closed);
    }
}

fn post_head(len: usize, extra: &str) -> String {
    format!("POST /d/?download=zip HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{extra}\r\n")
}

#[test]
fn a_silent_or_dripping_body_gets_408_and_a_close() {
    let t = small_tree();
    let s = Server::start(
        &t.root(),
        "[limits]\nbody_timeout = \"1s\"\nmin_body_rate = 1024\n",
    );
    let mut silent = s.connect();
    silent.write_all(post_head(100, "").as_bytes()).unwrap();
    let started = Instant::now();
    let resp = read_response(&mut silent, false).expect("an answer");
    assert_eq!(resp.status, 408);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(closed_within(&mut silent, 2));
    // One byte every 300 ms keeps the gap short but not the average rate.
    let mut drip = s.connect();
    drip.write_all(post_head(100_000, "").as_bytes()).unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_secs(10) && !got.ends_with(b"\r\n\r\n") {
        let _ = drip.write_all(b" ");
        let mut buf = [0u8; 512];
        if let Ok(n) = drip.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                break;
            }
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_100_continue() {
    let t = small_tree();
    let s = Server::start(&t.root(), "[zip]\nmax_request_body = \"64KiB\"\n");
    let mut c = s.connect();
    c.write_all(post_head(100_000, "Expect: 100-continue\r\n").as_bytes())
        .unwrap();
    let resp = read_response(&mut c, false).expect("an answer");
    assert_eq!(resp.status, 413, "no 100 Continue first");
    assert_eq!(resp.header("connection"), Some("close"));
}

#[test]
fn bodies_share_one_memory_budget() {
    let t = small_tree();
    let s = Server::start(
        &t.root(),
        "[limits]\nbody_memory = \"64KiB\"\nbody_timeout = \"5s\"\n[zip]\nmax_request_body = \"1MiB\"\n",
    );
    let mut first = s.connect();
    first.write_all(post_head(200_000, "").as_bytes()).unwrap();
    first.write_all(&[b' '; 50_000]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut second = s.connect();
    second.write_all(post_head(200_000, "").as_bytes()).unwrap();
    second.write_all(&[b' '; 50_000]).unwrap();
    let resp = read_response(&mut second, false).expect("an answer");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
}

#[test]
fn an_unread_body_does_not_hold_the_drain() {
    let t = small_tree();
    let s = Server::start(&t.root(), "[limits]\nbody_timeout = \"60s\"\n");
    let mut c = s.connect();
    c.write_all(post_head(100, "").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    drop(s);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        started.elapsed()
    );
    let resp = read_response(&mut c, false).expect("an answer");
    assert_eq!(resp.status, 503);
}

/// A batch of pipelined requests written in two parts, split at `at`.
fn split_conversation(s: &Server, batch: &[u8], at: usize) -> (Vec<u16>, bool) {
    let mut c = s.connect();
    c.set_nodelay(true).unwrap();
    c.write_all(&batch[..at]).unwrap();
    std::thread::sleep(Duration::from_millis(15));
    c.write_all(&batch[at..]).unwrap();
    crate::support::statuses_until_close(&mut c)
}

#[test]
fn pipelined_requests_get_the_same_answers_at_every_read_split() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let good = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    for at in 1..good.len() {
        assert_eq!(
            split_conversation(&s, good, at),
            (vec![200, 200, 200], true),
            "split at {at}"
        );
    }
    // The second request of a batch is checked like the first: bare LF and a second
    // Content-Length make it a 400 and close the connection; the third is never read.
    let bad = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    for at in (1..bad.len()).step_by(3) {
        assert_eq!(
            split_conversation(&s, bad, at),
            (vec![200, 400], true),
            "split at {at}"
        );
    }
    let (statuses, closed) = converse(&s, bad);
    assert_eq!((statuses, closed), (vec![200, 400], true));
    // 1000 identical pipelined GETs in one write: every one answered.
    let mut many = Vec::new();
    for _ in 0..999 {
        many.extend_from_slice(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    many.extend_from_slice(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut c = s.connect();
    c.write_all(&many).unwrap();
    let (statuses, _) = crate::support::statuses_until_close(&mut c);
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|st| *st == 200));
}

#[test]
fn a_higher_minor_version_is_answered_as_http_1_1() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let resp = s.raw("GET /a.txt HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"alpha");
    let mut c = s.connect();
    c.write_all(b"GET /a.txt HTTP/1.9\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}

#[test]
fn a_stalled_log_pipe_never_stops_serving() {
    let t = small_tree();
    let config = t.dir.path().join("log.toml");
    std::fs::write(&config, "[access_log]\nformat = \"json\"\n").unwrap();
    let admin = crate::support::free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let server = crate::support::Spawned::serve_stalled_stdout(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--admin-listen",
        &admin_addr,
        "--workers",
        "2",
    ]);
    let mut c = server.connect();
    // 8000 lines of about 800 bytes: 6 MB, three times what the pipe and the queue hold.
    for i in 0..8_000 {
        let req = format!(
            "GET /a.txt?{} HTTP/1.1\r\nHost: t\r\nUser-Agent: {}\r\n\r\n",
            i,
            "x".repeat(600)
        );
        c.write_all(req.as_bytes()).unwrap();
        let resp = read_response(&mut c, false).unwrap_or_else(|| {
            let log = server.log.lock().unwrap().clone();
            panic!(
                "request {i} unanswered; server log:\n{}",
                &log[log.len().saturating_sub(3000)..]
            )
        });
        assert_eq!(resp.status, 200);
    }
    let admin: std::net::SocketAddr = admin_addr.parse().unwrap();
    let health = crate::support::request_at(admin, "GET", "/healthz", &[]);
    assert_eq!(health.status, 200, "workers still make progress");
    let metrics = crate::support::request_at(admin, "GET", "/metrics", &[]).text();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sendfiled_access_log_dropped_lines_total "))
        .expect("the drop counter is exported")
        .parse()
        .unwrap();
    assert!(dropped > 0, "lines were dropped and counted");
    assert!(server
        .log
        .lock()
        .unwrap()
        .contains("lines are being dropped"));
}

/// The entry names of a ZIP archive, as Python's zipfile reads them (it also checks every CRC).
fn archive_names(zip: &[u8]) -> Vec<String> {
    let script = "import zipfile,sys,io\nz=zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read()))\nassert z.testzip() is None\nprint('\\n'.join(z.namelist()))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(zip).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "zipfile could not read the archive");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_tree_deeper_than_the_limit_is_refused_and_the_server_lives() {
    let t = small_tree();
    // 2000 levels: built one relative step at a time (the whole path is longer than PATH_MAX).
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && mkdir deep && cd deep && i=0; while [ $i -lt 2000 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done")
        .args(["sh", t.root().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(made.success());
    let mut shallow = String::from("shallow");
    for _ in 0..100 {
        shallow.push_str("/d");
    }
    t.file(&format!("{shallow}/leaf.txt"), b"leaf");
    let s = Server::start(&t.root(), "");
    for method in ["GET", "HEAD"] {
        let resp = s.request(method, "/?download=zip", &[]);
        assert_eq!(resp.status, 403, "{method}");
        let resp = s.request(method, "/deep/?download=zip", &[]);
        assert_eq!(resp.status, 403, "{method}");
    }
    assert!(s
        .get("/deep/?download=zip", &[])
        .text()
        .contains("deeper than 128 levels"));
    // 100 levels are within the default limit of 128.
    let resp = s.get("/shallow/?download=zip", &[]);
    assert_eq!(resp.status, 200);
    assert!(archive_names(&resp.body)
        .iter()
        .any(|n| n.ends_with("/leaf.txt")));
    assert_eq!(
        s.get("/a.txt", &[]).body,
        b"alpha",
        "the server still serves"
    );
}

#[test]
fn repeated_and_nested_selections_cost_one_walk() {
    let t = small_tree();
    for i in 0..20_000 {
        t.file(&format!("many/f{i}"), b"");
    }
    let s = Server::start(&t.root(), "");
    let mut query = String::from("/?download=zip&compress=store");
    while query.len() < 8000 {
        query.push_str("&path=many");
    }
    let started = Instant::now();
    let resp = s.request("HEAD", &query, &[]);
    assert_eq!(resp.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "800 copies of one folder took {:?}",
        started.elapsed()
    );
    let nested = "/?download=zip&path=many&path=many/f1&path=./many/&path=many/../many&path=a.txt";
    let resp = s.get(nested, &[]);
    assert_eq!(resp.status, 200);
    let names = archive_names(&resp.body);
    assert_eq!(
        names.len(),
        1 + 1 + 20_000 + 1,
        "the top folder, many/, its files, a.txt"
    );
}

#[test]
fn names_no_archive_may_hold_are_left_out() {
    let t = small_tree();
    t.file("inj/x\\..\\..\\..\\evil.txt", b"evil");
    t.file("inj/tab\there", b"tab");
    t.file("inj/lf\nthere", b"lf");
    t.file("inj/fine.txt", b"fine");
    let s = Server::start(&t.root(), "");
    let resp = s.get("/inj/?download=zip", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(archive_names(&resp.body), ["inj/", "inj/fine.txt"]);
    assert!(s.stats().archive_entries_skipped >= 3);
}

#[test]
fn sockets_under_the_root_are_404_everywhere() {
    let t = small_tree();
    let _sock = std::os::unix::net::UnixListener::bind(t.root().join("d/sock")).unwrap();
    let s = Server::start(&t.root(), "[listing]\nenabled = true\n");
    assert_eq!(s.get("/d/sock", &[]).status, 404);
    assert_eq!(s.request("HEAD", "/d/sock", &[]).status, 404);
    let listing = s.get("/d/?format=json", &[]).text();
    assert!(!listing.contains("sock"), "{listing}");
    let resp = s.get("/d/?download=zip", &[]);
    assert_eq!(archive_names(&resp.body), ["d/", "d/x.txt"]);
}

#[test]
fn unreadable_files_are_left_out_of_archives() {
    let t = small_tree();
    t.file("mixed/ok.txt", b"ok");
    let secret = t.file("mixed/secret.txt", b"secret");
    t.mkdir("mixed/closed");
    t.file("mixed/closed/inner.txt", b"inner");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(
        t.root().join("mixed/closed"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(t.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // As root every file is readable: the server runs as nobody, as in production.
    let server = crate::support::Spawned::serve_with_prefix(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ],
        &["--root", t.root().to_str().unwrap()],
    );
    let get = |path: &str| crate::support::request_at(server.addr, "GET", path, &[]);
    assert_eq!(get("/mixed/secret.txt").status, 403);
    let resp = get("/mixed/?download=zip");
    assert_eq!(resp.status, 200);
    assert_eq!(archive_names(&resp.body), ["mixed/", "mixed/ok.txt"]);
}

#[test]
fn host_must_be_a_valid_authority_that_agrees_with_the_target() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let ask = |target: &str, host: &str| {
        s.raw(&format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .status
    };
    for host in [
        "a b",
        "hs.example/x",
        "user@hs.example",
        "hs.example:8a",
        "..",
        "a..b",
        "[::1",
    ] {
        assert_eq!(ask("/a.txt", host), 400, "Host: {host:?}");
        assert_eq!(
            ask("/d/?download=zip", host),
            400,
            "archive, Host: {host:?}"
        );
    }
    for host in ["hs.example", "hs.example:8080", "127.0.0.1", "[::1]:80", ""] {
        assert_eq!(ask("/a.txt", host), 200, "Host: {host:?}");
    }
    assert_eq!(ask("http://hs.example/a.txt", "hs.example"), 200);
    assert_eq!(ask("http://HS.example/a.txt", "hs.example"), 200);
    assert_eq!(ask("http://other.example/a.txt", "hs.example"), 400);
    assert_eq!(ask("http://hs.example:81/a.txt", "hs.example"), 400);
}

#[test]
fn open_file_caches_never_take_every_descriptor() {
    let t = small_tree();
    for i in 0..1500 {
        t.file(&format!("files/f{i}.txt"), b"x");
    }
    let server = crate::support::Spawned::serve_with_prefix(
        &["prlimit", "--nofile=512:512", "--"],
        &["--root", t.root().to_str().unwrap(), "--workers", "2"],
    );
    let mut c = server.connect();
    for i in 0..1500 {
        let req = format!("GET /files/f{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let resp = read_response(&mut c, false).expect("an answer");
        assert_eq!(resp.status, 200, "file {i}");
    }
    assert!(server.fds() < 400, "{} descriptors open", server.fds());
    let mut clients: Vec<_> = (0..50).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let req = format!("GET /files/f{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        client.write_all(req.as_bytes()).unwrap();
        assert_eq!(read_response(client, false).expect("an answer").status, 200);
    }
    assert!(server
        .log
        .lock()
        .unwrap()
        .contains("open_file_cache.entries lowered"));
}

#[test]
fn download_names_cannot_spoof_or_swell_the_header() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let resp = s.get("/d/?download=zip&name=%E2%80%AEfdp.zip", &[]);
    assert_eq!(resp.status, 200);
    let cd = resp.header("content-disposition").unwrap().to_string();
    assert!(
        !cd.contains('\u{202e}') && !cd.to_ascii_uppercase().contains("%E2%80%AE"),
        "{cd}"
    );
    assert!(cd.contains("fdp.zip"), "{cd}");
    let huge = format!("/d/?download=zip&name={}", "n".repeat(7000));
    let resp = s.get(&huge, &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-disposition").unwrap().len() < 300);
    let resp = s.get("/a.txt?download=%E2%80%AEtxt.exe", &[]);
    let cd = resp.header("content-disposition").unwrap_or("").to_string();
    assert!(
        !cd.contains('\u{202e}') && !cd.to_ascii_uppercase().contains("%E2%80%AE"),
        "{cd}"
    );
}

/// `sendfiled check-config` on `text`: (exit code, stderr).
fn check_config(t: &Tree, text: &str) -> (i32, String) {
    let path = t.dir.path().join("check.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(crate::support::binary())
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_refuses_what_serve_would_refuse_and_names_the_key() {
    let t = small_tree();
    let root = format!("root = {:?}\n", t.root().to_str().unwrap());
    std::fs::create_dir(t.dir.path().join("logs")).unwrap();
    let cases = [
        ("listen = [\"127.0.0.1:7001\", \"127.0.0.1:7001\"]\n", "key `listen`"),
        ("[access_log]\npath = \"root\"\n", "key `access_log.path`"),
        ("[access_log]\npath = \"missing/access.log\"\n", "key `access_log.path`"),
        ("[clients]\nrequests_per_second = 1e-300\n", "key `clients.requests_per_second`"),
        ("[clients]\nrequests_per_second = 1e300\n", "key `clients.requests_per_second`"),
        (
            "[signing]\nprotected = [\"/p/\"]\n[[signing.keys]]\nid = \"k\"\nfile = \"/dev/zero\"\n",
            "not a regular file",
        ),
    ];
    for (text, want) in cases {
        let started = Instant::now();
        let (code, err) = check_config(&t, &format!("{root}{text}"));
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{text}");
    }
    std::fs::write(t.dir.path().join("big.key"), vec![b'k'; 1 << 20]).unwrap();
    let (code, err) = check_config(
        &t,
        &format!("{root}[signing]\nprotected = [\"/p/\"]\n[[signing.keys]]\nid = \"k\"\nfile = \"big.key\"\n"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("more than"), "{err}");
    // The configuration file itself is read the same way.
    let out = std::process::Command::new(crate::support::binary())
        .args(["check-config", "--config", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    let (code, err) = check_config(&t, &format!("{root}[access_log]\npath = \"logs/a.log\"\n"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_slowest_request_rate_gives_429_not_a_panic() {
    let t = small_tree();
    let s = Server::start(
        &t.root(),
        "[clients]\nrequests_per_second = 0.001\nrequest_burst = 1\n",
    );
    assert_eq!(s.get("/a.txt", &[]).status, 200);
    let limited = s.get("/a.txt", &[]);
    assert_eq!(limited.status, 429);
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 900
    );
    assert_eq!(s.get("/a.txt", &[]).status, 429, "the connection survived");
}

#[test]
fn a_reload_refuses_an_empty_file_and_warns_about_dropped_protections() {
    let t = small_tree();
    t.file("private/doc.txt", b"secret");
    std::fs::write(t.dir.path().join("k1.key"), "first-key-0123456789abcdef").unwrap();
    let config = t.dir.path().join("sendfiled.toml");
    let protected = "[signing]\nprotected = [\"/private/\"]\n[[signing.keys]]\nid = \"k1\"\nfile = \"k1.key\"\n";
    std::fs::write(&config, protected).unwrap();
    let server = crate::support::Spawned::serve(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let get = |path: &str| crate::support::request_at(server.addr, "GET", path, &[]).status;
    assert_eq!(get("/private/doc.txt"), 403);
    // What `head -3 f > f` leaves: an empty file.
    std::fs::write(&config, "").unwrap();
    crate::support::signal(server.pid(), "HUP");
    crate::support::wait_for_log(&server, "reload rejected", 1);
    assert!(server.log.lock().unwrap().contains("sets nothing"));
    assert_eq!(get("/private/doc.txt"), 403, "still protected");
    // A file that parses but has lost [signing]: applied, with a warning naming the loss.
    std::fs::write(&config, "# signing removed\nindex = \"index.html\"\n").unwrap();
    crate::support::signal(server.pid(), "HUP");
    crate::support::wait_for_log(&server, "configuration reloaded", 1);
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("drops a protection") && log.contains("/private/"),
        "{log}"
    );
}

#[test]
fn requests_refused_before_the_service_are_counted_by_reason() {
    let t = small_tree();
    let s = Server::start(&t.root(), "");
    let cases: [(&[u8], usize); 5] = [
        (b"GET /a.txt HTTP/1.1\nHost: t\r\n\r\n", 0),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            1,
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n",
            2,
        ),
        (b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Big: %\r\n\r\n", 3),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
            4,
        ),
    ];
    for (raw, reason) in cases {
        let big;
        let raw = if reason == 3 {
            big = String::from_utf8_lossy(raw).replace('%', &"x".repeat(40_000));
            big.as_bytes()
        } else {
            raw
        };
        let (statuses, closed) = converse(&s, raw);
        assert!(matches!(statuses.as_slice(), [400] | [431]), "{statuses:?}");
        assert!(closed);
        let counts = s.settled_stats().early_refusals;
        assert_eq!(counts[reason], 1, "reason {reason}: {counts:?}");
    }
}
