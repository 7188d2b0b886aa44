use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sendfiled::protect::signing::{self, MethodClass, SignRequest};

use crate::support::{closed_within, read_response, run_ok, sign_cli, Server, Spawned, Tree};

const SECRET: &str = "k1-secret-0123456789abcdef";

/// A link signed in this process (for expiries in the past).
fn sign_lib(key: &str, kid: &str, target: &str, expires: u64) -> String {
    signing::signed_target(SignRequest {
        key: key.as_bytes(),
        kid,
        method: MethodClass::Read,
        target,
        prefix: false,
        expires,
        extra: vec![],
    })
    .unwrap()
}

fn signed_tree() -> (Tree, std::path::PathBuf) {
    let t = Tree::new();
    t.file("private/report.pdf", b"%PDF-1.7 quarterly");
    t.file("private/other.pdf", b"%PDF-1.7 other");
    t.file("private/media/seg-1.ts", b"segment one");
    t.file("private/media/seg-2.ts", b"segment two");
    t.file("private/dir/a.txt", b"alpha");
    t.file("private/dir/b.txt", b"bravo");
    t.file("public/a.txt", b"public");
    let key = t.dir.path().join("k1.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    (t, key)
}

fn signing_config(key: &Path) -> String {
    format!(
        "[signing]\nprotected = [\"/private/\"]\n[[signing.keys]]\nid = \"k1\"\nfile = {:?}\n",
        key.display().to_string()
    )
}

#[test]
fn signed_links_open_protected_paths_and_nothing_else() {
    let (t, key) = signed_tree();
    let s = Server::start(&t.root(), &signing_config(&key));

    // Unprotected paths need nothing; protected ones need a signature.
    assert_eq!(s.get("/public/a.txt", &[]).status, 200);
    let r = s.get("/private/report.pdf", &[]);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.text(),
        "forbidden\n",
        "the reason never reaches the client"
    );

    let link = sign_cli(&key, "k1", &[], "/private/report.pdf");
    let r = s.get(&link, &[]);
    assert_eq!(r.status, 200, "{link}");
    assert_eq!(r.body, b"%PDF-1.7 quarterly");
    // HEAD belongs to the same method class.
    assert_eq!(s.request("HEAD", &link, &[]).status, 200);

    let now = signing::unix_now();
    let expired = sign_lib(SECRET, "k1", "/private/report.pdf", now - 5);
    let other_key = sign_lib(
        "a-different-secret-key-123",
        "k1",
        "/private/report.pdf",
        now + 60,
    );
    let (_, query) = link.split_once('?').unwrap();
    let expires = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("expires="))
        .unwrap();
    let refused = [
        ("expired", expired),
        ("tampered path", format!("/private/other.pdf?{query}")),
        (
            "tampered expiry",
            link.replace(
                &format!("expires={expires}"),
                &format!("expires={}", expires.parse::<u64>().unwrap() + 3600),
            ),
        ),
        ("tampered query", format!("{link}&download=evil.exe")),
        ("wrong key id", link.replace("kid=k1", "kid=k2")),
        ("wrong key", other_key),
        ("signature not base64url", link.replace("sig=", "sig=*")),
    ];
    for (what, bad) in refused {
        let r = s.get(&bad, &[]);
        assert_eq!(r.status, 403, "{what}: {bad}");
        assert_eq!(r.text(), "forbidden\n", "{what}");
    }
    let st = s.settled_stats();
    assert_eq!(st.signature_missing, 1);
    assert_eq!(st.signature_expired, 1);
    assert_eq!(st.signature_unknown_key, 1);
    assert_eq!(st.signature_bad, 4);
    assert_eq!(
        st.signature_malformed, 1,
        "the signature that is not base64url"
    );

    // A prefix link opens everything under its folder and nothing beside it.
    let prefix = sign_cli(&key, "k1", &["--prefix"], "/private/media/");
    let (_, pq) = prefix.split_once('?').unwrap();
    for seg in ["/private/media/seg-1.ts", "/private/media/seg-2.ts"] {
        let r = s.get(&format!("{seg}?{pq}"), &[]);
        assert_eq!(r.status, 200, "{seg}");
    }
    assert_eq!(s.get(&format!("/private/report.pdf?{pq}"), &[]).status, 403);
    assert_eq!(s.get(&format!("/private/?{pq}"), &[]).status, 403);
    assert_eq!(s.settled_stats().signature_out_of_scope, 2);
}

#[test]
fn signed_zip_selections_and_unsigned_archives_of_parents() {
    let (t, key) = signed_tree();
    let s = Server::start(&t.root(), &signing_config(&key));
    let dir = t.dir.path();

    // A signed selection: the signature covers the selection, so it cannot be widened.
    let link = sign_cli(&key, "k1", &[], "/private/dir/?download=zip&path=a.txt");
    let r = s.get(&link, &[]);
    assert_eq!(r.status, 200, "{link}");
    std::fs::write(dir.join("sel.zip"), &r.body).unwrap();
    let names = zip_names(&dir.join("sel.zip"));
    assert_eq!(names, ["dir/", "dir/a.txt"]);
    let widened = format!("{link}&path=b.txt");
    assert_eq!(s.get(&widened, &[]).status, 403);
    assert_eq!(s.get("/private/dir/?download=zip", &[]).status, 403);

    // An unsigned archive of the root leaves the protected folder out, and a selection cannot
    // reach into it.
    let r = s.get("/?download=zip", &[]);
    assert_eq!(r.status, 200);
    std::fs::write(dir.join("root.zip"), &r.body).unwrap();
    let names = zip_names(&dir.join("root.zip"));
    assert!(
        names.contains(&"archive/public/a.txt".to_string()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("private")), "{names:?}");
    assert_eq!(
        s.get("/?download=zip&path=private/report.pdf", &[]).status,
        404
    );
    // A link signed for the whole tree includes it.
    let all = sign_cli(&key, "k1", &["--prefix"], "/");
    let (_, q) = all.split_once('?').unwrap();
    let r = s.get(&format!("/?download=zip&{q}"), &[]);
    assert_eq!(r.status, 200);
    std::fs::write(dir.join("all.zip"), &r.body).unwrap();
    assert!(zip_names(&dir.join("all.zip")).contains(&"archive/private/report.pdf".to_string()));
}

fn zip_names(zip: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new("python3")
            .args([
                "-c",
                "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print('\\n'.join(z.namelist()))",
            ])
            .arg(zip),
        "python3 zipfile",
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rotated_keys_take_effect_without_a_restart() {
    let (t, key) = signed_tree();
    let key2 = t.dir.path().join("k2.key");
    std::fs::write(&key2, "second-key-abcdefghijklmnop").unwrap();
    let config = format!(
        "{}[[signing.keys]]\nid = \"k2\"\nfile = {:?}\n",
        signing_config(&key),
        key2.display().to_string()
    );
    let s = Server::start(&t.root(), &config);
    let old = sign_cli(&key, "k1", &[], "/private/report.pdf");
    let by_k2 = sign_cli(&key2, "k2", &[], "/private/report.pdf");
    assert_eq!(s.get(&old, &[]).status, 200);
    assert_eq!(s.get(&by_k2, &[]).status, 200, "two keys at once");

    // Rotate k1: links signed with the old secret stop working, new ones work.
    std::fs::write(&key, "the-rotated-k1-secret-0987654321").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let new = sign_cli(&key, "k1", &[], "/private/report.pdf");
    assert_eq!(s.get(&old, &[]).status, 403);
    assert_eq!(s.get(&new, &[]).status, 200);
    assert_eq!(s.get(&by_k2, &[]).status, 200);
}

#[test]
fn a_bandwidth_limit_paces_sendfile() {
    let t = Tree::new();
    let data = Tree::noise(20 << 20, 21);
    t.file("slow/big.bin", &data);
    t.file("fast/big.bin", &data);
    let s = Server::start(
        &t.root(),
        "[[bandwidth]]\nprefix = \"/slow/\"\nrate = \"1MiB\"\nburst = \"1MiB\"\n",
    );
    // Unlimited paths are not held back.
    let start = Instant::now();
    assert_eq!(s.get("/fast/big.bin", &[]).body.len(), data.len());
    assert!(start.elapsed() < Duration::from_secs(10));

    let start = Instant::now();
    let r = s.get("/slow/big.bin", &[]);
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the paced bytes are exact");
    assert!(
        (Duration::from_secs(19)..=Duration::from_secs(23)).contains(&took),
        "20 MiB at 1 MiB/s after a 1 MiB burst took {took:?}"
    );
    let st = s.settled_stats();
    assert_eq!(st.copied_bytes, 0, "pacing never copies");
    assert_eq!(st.sendfile_bytes, 2 * data.len() as u64);
    assert_eq!(st.paced_responses, 1);
}

#[test]
fn a_signed_link_can_carry_its_own_rate() {
    let (t, key) = signed_tree();
    let data = Tree::noise(3 << 20, 5);
    t.file("private/video.mp4", &data);
    let config = format!(
        "{}[[bandwidth]]\nprefix = \"/private/\"\nrate = \"1GiB\"\nburst = \"0\"\n",
        signing_config(&key)
    );
    let s = Server::start(&t.root(), &config);
    let link = sign_cli(&key, "k1", &["--rate", "1MiB"], "/private/video.mp4");
    assert!(link.contains("rate=1048576"), "{link}");
    let start = Instant::now();
    let r = s.get(&link, &[]);
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.body == data);
    assert!(
        (Duration::from_millis(2700)..=Duration::from_secs(5)).contains(&took),
        "3 MiB at the link's 1 MiB/s took {took:?}"
    );
    // The rate is covered by the signature.
    let faster = link.replace("rate=1048576", "rate=0");
    assert_eq!(s.get(&faster, &[]).status, 403);
}

/// A connection from `ip` (any 127.x address reaches the loopback listener).
fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{ip}:0").parse().unwrap();
    sock.bind(&from.into()).unwrap();
    sock.connect(&to.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn get_on(c: &mut TcpStream, path: &str) -> crate::support::Response {
    write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(c, false).expect("a response")
}

#[test]
fn per_ip_connection_cap_refuses_the_extra_connection_only() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let s = Server::start(
        &t.root(),
        "[clients]\nmax_connections_per_ip = 2\n[socket]\ndefer_accept = 0\n",
    );
    let mut first = connect_from("127.0.0.1", s.addr);
    let mut second = connect_from("127.0.0.1", s.addr);
    assert_eq!(get_on(&mut first, "/a.txt").status, 200);
    assert_eq!(get_on(&mut second, "/a.txt").status, 200);

    // The third from the same address gets 429 and is closed.
    let mut third = connect_from("127.0.0.1", s.addr);
    let r = get_on(&mut third, "/a.txt");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.header("retry-after").is_some());
    assert!(closed_within(&mut third, 5));

    // Another address is served meanwhile, and the two keep-alive connections still work.
    let mut other = connect_from("127.0.0.2", s.addr);
    assert_eq!(get_on(&mut other, "/a.txt").status, 200);
    assert_eq!(get_on(&mut first, "/a.txt").status, 200);

    // When one closes, a new connection from the address is accepted again.
    drop(second);
    std::thread::sleep(Duration::from_millis(200));
    let mut again = connect_from("127.0.0.1", s.addr);
    assert_eq!(get_on(&mut again, "/a.txt").status, 200);
    assert_eq!(s.settled_stats().rejected_per_ip_connections, 1);
}

#[test]
fn request_rate_limit_answers_429_with_retry_after() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let s = Server::start(
        &t.root(),
        "[clients]\nrequests_per_second = 2\nrequest_burst = 5\nexempt = [\"127.0.0.3\"]\n",
    );
    let mut c = connect_from("127.0.0.1", s.addr);
    let statuses: Vec<u16> = (0..8).map(|_| get_on(&mut c, "/a.txt").status).collect();
    assert_eq!(&statuses[..5], &[200; 5], "the burst is served");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let r = get_on(&mut c, "/a.txt");
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");

    // Other clients are served meanwhile; an exempt address is never limited.
    let mut other = connect_from("127.0.0.2", s.addr);
    assert_eq!(get_on(&mut other, "/a.txt").status, 200);
    let mut lb = connect_from("127.0.0.3", s.addr);
    for _ in 0..20 {
        assert_eq!(get_on(&mut lb, "/a.txt").status, 200);
    }
    // After waiting, the limited client is served again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get_on(&mut c, "/a.txt").status, 200);
    assert!(s.settled_stats().rejected_request_rate >= 2);
}

#[test]
fn the_global_connection_cap_pauses_accepting() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let s = Server::start(
        &t.root(),
        "[clients]\nmax_connections = 2\n[socket]\ndefer_accept = 0\n",
    );
    let mut first = s.connect();
    let second = s.connect();
    assert_eq!(get_on(&mut first, "/a.txt").status, 200);
    std::thread::sleep(Duration::from_millis(200));

    // The third connection is queued by the kernel, not refused: its request waits.
    let mut third = s.connect();
    write!(third, "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(third.read(&mut byte).is_err(), "served past the cap");
    assert!(s.stats().accept_pauses > 0);

    // A connection closes; the queued one is accepted and answered.
    drop(second);
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = read_response(&mut third, false).expect("served once a slot freed");
    assert_eq!(r.status, 200);
}

#[test]
fn fd_exhaustion_backs_off_and_recovers() {
    let t = Tree::new();
    t.file("a.txt", b"alpha");
    let config = t.dir.path().join("c.toml");
    std::fs::write(&config, "workers = 1\n[socket]\ndefer_accept = 0\n").unwrap();
    let prlimit = Command::new("prlimit").arg("--version").output();
    if prlimit.is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let server = Spawned::serve_with_prefix(
        &["prlimit", "--nofile=48:48", "--"],
        &[
            "--root",
            t.root().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let mut c = server.connect();
    assert_eq!(get_on(&mut c, "/a.txt").status, 200);
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = server.fds();

    // Hold more connections than the process has descriptors for.
    let hogs: Vec<TcpStream> = (0..80).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_seconds(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    assert!(cpu < 0.5, "accept spun on EMFILE: {cpu:.2} CPU-s in 2 s");
    let log = server.log.lock().unwrap().clone();
    assert_eq!(
        log.matches("accept failed, backing off").count(),
        1,
        "logged once: {log}"
    );

    // The descriptors come back; the server serves again and the queued connections are let in.
    drop(hogs);
    let start = Instant::now();
    loop {
        let mut c = server.connect();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        if write!(c, "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").is_ok() {
            if let Some(r) = read_response(&mut c, false) {
                if r.status == 200 {
                    assert_eq!(r.body, b"alpha");
                    break;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never recovered from fd exhaustion"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    while server.fds() > baseline + 1 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "descriptors leaked: {} now, {baseline} before",
            server.fds()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.terminate(10).success());
}

/// User plus system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_slow_drip_reader_is_closed_by_the_minimum_rate() {
    let t = Tree::new();
    let data = Tree::noise(64 << 20, 9);
    t.file("big.bin", &data);
    let s = Server::start(
        &t.root(),
        "[limits]\nsend_timeout = \"30s\"\nmin_send_rate = \"256KiB\"\nmin_send_rate_window = \"2s\"\n",
    );
    // A client that keeps up is never judged.
    assert!(s.get("/big.bin", &[]).body == data);

    // A client that takes 4 KiB every 100 ms (40 KiB/s): never idle long enough for the send
    // timeout, far below the minimum rate.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut got = 0usize;
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the drip was never closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    assert!(got < data.len(), "the drip got everything");
    assert!(took < Duration::from_secs(15), "closed only after {took:?}");
    let st = s.settled_stats();
    assert_eq!(st.min_rate_closes, 1);
    assert_eq!(st.send_timeouts, 0);
}

#[test]
fn a_post_signed_selection_can_be_narrowed_never_widened() {
    let (t, key) = signed_tree();
    t.file("private/secret.txt", b"secret");
    t.file("private/sub/one.txt", b"one");
    t.file("private/sub/two.txt", b"two");
    let s = Server::start(&t.root(), &signing_config(&key));
    let dir = t.dir.path();
    let link = sign_cli(
        &key,
        "k1",
        &["--method", "POST"],
        "/private/?download=zip&path=sub",
    );
    let post = |body: &str| {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!(
            "POST {link} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        read_response(&mut c, false).expect("a response")
    };
    // Adding, replacing and widening paths, or changing the name or compression: refused.
    for body in [
        r#"{"paths":["secret.txt"]}"#,
        r#"{"paths":["sub/one.txt","secret.txt"]}"#,
        r#"{"paths":["."]}"#,
        r#"{"paths":["sub/.."]}"#,
        r#"{"paths":["sub/../secret.txt"]}"#,
        r#"{"paths":["sub"],"name":"other.zip"}"#,
        r#"{"paths":["sub"],"compress":"deflate"}"#,
    ] {
        let r = post(body);
        assert!(matches!(r.status, 400 | 403), "{body}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("secret"),
            "{body}"
        );
    }
    // Narrowing within the signed folder is allowed.
    let r = post(r#"{"paths":["sub/one.txt"]}"#);
    assert_eq!(r.status, 200);
    std::fs::write(dir.join("narrow.zip"), &r.body).unwrap();
    assert_eq!(
        zip_names(&dir.join("narrow.zip")),
        ["private/", "private/sub/", "private/sub/one.txt"]
    );
}
