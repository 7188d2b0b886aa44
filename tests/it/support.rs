//! Test fixtures: a temporary tree to serve, a server started in-process on 127.0.0.1:0, a raw
//! HTTP/1.1 client over `TcpStream` that parses exactly what came over the wire, and helpers to
//! run the real binary and curl.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sendfiled::config::{Config, Overrides, RawConfig};
use sendfiled::RunningServer;

/// A temporary directory with a `root/` to serve and room beside it for things outside the root.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("root")).unwrap();
        Tree { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Write `bytes` at `rel` under the root, creating directories.
    pub fn file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.root().join(rel)).unwrap();
    }

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    pub fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }
}

/// Sets the modification time of the file or folder at `path`.
pub fn set_mtime(path: &Path, when: std::time::SystemTime) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// A server running in this process; stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    inner: Option<RunningServer>,
}

impl Server {
    /// Serve `root` with the extra TOML `config` (root and listen are set here).
    pub fn start(root: &Path, config: &str) -> Server {
        let raw: RawConfig = toml::from_str(config).expect("test config parses");
        let overrides = Overrides {
            root: Some(root.to_path_buf()),
            listen: vec!["127.0.0.1:0".into()],
            workers: Some(raw.workers.unwrap_or(1)),
            // Parallel tests cannot share the default admin port; a test that wants the
            // listener sets [admin] itself.
            admin_listen: if raw.admin.is_some() {
                None
            } else {
                Some("off".into())
            },
            drain_delay: None,
            listing: false,
        };
        let mut raw = raw;
        if raw.access_log.is_none() {
            raw.access_log = Some(sendfiled::config::RawAccessLog {
                enabled: Some(false),
                ..Default::default()
            });
        }
        let config = Config::from_raw(raw, None, &overrides).expect("test config is valid");
        let inner = sendfiled::start(config).expect("server starts");
        Server {
            addr: inner.local_addrs()[0],
            inner: Some(inner),
        }
    }

    /// The admin listener's address (the test config must set `[admin] listen`).
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.inner
            .as_ref()
            .unwrap()
            .admin_addr()
            .expect("admin listener on")
    }

    /// Every bound address: the plain listener first, then the HTTPS ones.
    #[allow(dead_code)]
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.as_ref().unwrap().local_addrs().to_vec()
    }

    pub fn stats(&self) -> sendfiled::stats::Snapshot {
        self.inner.as_ref().unwrap().stats()
    }

    /// The counters once they stop moving: a client can read a response before the worker has
    /// returned from the syscall that sent it and counted the bytes.
    pub fn settled_stats(&self) -> sendfiled::stats::Snapshot {
        let mut last = self.stats();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.stats();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Send `raw` on a new connection and read one response.
    pub fn raw(&self, raw: &str) -> Response {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).unwrap();
        read_response(&mut s, raw.starts_with("HEAD ")).expect("a response")
    }

    /// GET `path` with extra header lines (each "Name: value").
    pub fn get(&self, path: &str, headers: &[&str]) -> Response {
        self.request("GET", path, headers)
    }

    pub fn request(&self, method: &str, path: &str, headers: &[&str]) -> Response {
        request_at(self.addr, method, path, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            s.shutdown();
        }
    }
}

/// `method path` with extra header lines (each "Name: value") on a new connection to `addr`
/// (any server: in-process, spawned, or a balancer), and its response.
pub fn request_at(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s, method == "HEAD").expect("a response")
}

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|v| v[0].as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response from `s`: the head, then exactly Content-Length bytes (none for HEAD, 204
/// and 304). `None` if the connection closed before a head arrived.
pub fn read_response(s: &mut impl Read, head_only: bool) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) | Err(_) if head.is_empty() => return None,
            Ok(0) => panic!(
                "connection closed inside a response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("read error inside a head: {e}"),
        }
    }
    let text = String::from_utf8(head).expect("head is UTF-8 in tests");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').unwrap();
        headers
            .entry(k.trim().to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_string());
    }
    let len = if head_only || status == 304 || status == 204 {
        0
    } else {
        headers
            .get("content-length")
            .map_or(0, |v| v[0].parse::<usize>().unwrap())
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the whole body");
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Whether the peer has closed `s` (reads EOF or reset within `secs`).
pub fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// The path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sendfiled")
}

/// Run curl with `args`; returns (exit status success, stdout, stderr).
pub fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real binary running as its own process (for exit codes, signals and /proc checks).
pub struct Spawned {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Spawned {
    /// The first HTTPS listener's address, from the start-up log.
    #[allow(dead_code)]
    pub fn tls_addr(&self) -> SocketAddr {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some(a) = log.split("listening for HTTPS on ").nth(1) {
                let addr = a.split_whitespace().next().unwrap_or("");
                return addr.parse().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no HTTPS listener: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Spawned {
    /// Start `sendfiled serve` with `args` plus `--listen 127.0.0.1:0` and wait for its address.
    pub fn serve(args: &[&str]) -> Spawned {
        Spawned::serve_with_prefix(&[], args)
    }

    /// Like [`Spawned::serve`], run under a wrapper command such as `prlimit ... --`.
    pub fn serve_with_prefix(prefix: &[&str], args: &[&str]) -> Spawned {
        Spawned::serve_with(prefix, &[], args)
    }

    /// Like [`Spawned::serve`], with extra environment variables.
    #[allow(dead_code)]
    pub fn serve_env(env: &[(&str, String)], args: &[&str]) -> Spawned {
        Spawned::serve_with(&[], env, args)
    }

    /// Like [`Spawned::serve`], with stdout a pipe that nobody reads (a stalled journald).
    pub fn serve_stalled_stdout(args: &[&str]) -> Spawned {
        Spawned::serve_full(&[], &[], args, std::process::Stdio::piped())
    }

    fn serve_with(prefix: &[&str], env: &[(&str, String)], args: &[&str]) -> Spawned {
        Spawned::serve_full(prefix, env, args, std::process::Stdio::null())
    }

    fn serve_full(
        prefix: &[&str],
        env: &[(&str, String)],
        args: &[&str],
        stdout: std::process::Stdio,
    ) -> Spawned {
        use std::io::BufRead;
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = std::process::Command::new(program);
                c.args(rest).arg(binary());
                c
            }
            None => std::process::Command::new(binary()),
        };
        let admin_default: &[&str] = if args.contains(&"--admin-listen") {
            &[]
        } else {
            &["--admin-listen", "off"]
        };
        // Tests stop their servers with SIGTERM; a test of the drain delay sets its own.
        let drain_default: &[&str] = if args.contains(&"--drain-delay") {
            &[]
        } else {
            &["--drain-delay", "0"]
        };
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .arg("serve")
            .args(args)
            .args(admin_default)
            .args(drain_default)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .stdout(stdout)
            .spawn()
            .expect("binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.split("listening on ").nth(1) {
                    let _ = tx.send(a.trim().parse::<SocketAddr>().unwrap());
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("server did not report its address: {}", log.lock().unwrap())
            });
        Spawned { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Send SIGTERM and wait for the exit status (at most `secs`).
    pub fn terminate(mut self, secs: u64) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "server did not exit within {secs}s after SIGTERM: {}",
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sendfiled sign` through the real binary.
pub fn sign_cli(key_file: &Path, kid: &str, extra: &[&str], target: &str) -> String {
    let out = run_ok(
        std::process::Command::new(binary())
            .args(["sign", "--key-file"])
            .arg(key_file)
            .args(["--key-id", kid, "--expires-in", "10m"])
            .args(extra)
            .arg(target),
        "sendfiled sign",
    );
    String::from_utf8(out).unwrap().trim().to_string()
}

/// Everything the server sends on one connection for `raw`, until it closes (or 3 s pass).
pub fn converse(s: &Server, raw: &[u8]) -> (Vec<u16>, bool) {
    use std::io::Write;
    let mut c = s.connect();
    c.write_all(raw).unwrap();
    statuses_until_close(&mut c)
}

/// The statuses of every response `c` reads until the peer closes it (or 3 s pass), and
/// whether it closed.
pub fn statuses_until_close(c: &mut TcpStream) -> (Vec<u16>, bool) {
    c.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&data);
    // Bodies here never contain "HTTP/1.1 ", and a status line may follow a body directly.
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| text[i + 9..i + 12].parse().unwrap())
        .collect();
    (statuses, closed)
}

/// A port that was free a moment ago, for a listener the test names itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Send `sig` (a name such as HUP) to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Wait until the server's log holds `needle` at least `count` times (or panic after 10 s).
pub fn wait_for_log(server: &Spawned, needle: &str, count: usize) {
    let start = std::time::Instant::now();
    while server.log.lock().unwrap().matches(needle).count() < count {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "log never said {needle:?}: {}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `cmd`, assert it succeeded (the failure names `what` and shows stdout and stderr), and
/// return its stdout.
pub fn run_ok(cmd: &mut std::process::Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A program a test started in a process group of its own (`process_group(0)`): nginx's master
/// and worker, HAProxy. Dropping it ends the whole group, so nothing the suite started keeps
/// listening: SIGTERM, up to `grace` for it to exit, then SIGKILL to whatever is left.
pub struct Group {
    pub child: std::process::Child,
    pub grace: Duration,
}

impl Group {
    /// Spawn `command` in its own process group; `what` names what must be installed.
    pub fn spawn(command: &mut std::process::Command, grace: Duration, what: &str) -> Group {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} is installed: {e}"));
        Group { child, grace }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let kill = |sig: &str| {
            let _ = std::process::Command::new("kill")
                .args([sig, "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
        };
        if !self.grace.is_zero() {
            kill("-TERM");
            let deadline = std::time::Instant::now() + self.grace;
            while std::time::Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        kill("-KILL");
        let _ = self.child.wait();
    }
}

/// `GET path` with `Connection: close` over `c`: the status, or `None` when the connection
/// failed or closed without an answer.
pub fn status_of_get(mut c: TcpStream, path: &str) -> Option<u16> {
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // One write: `write!` on the socket would send each piece apart, and Nagle would hold the
    // later ones for the server's delayed ACK.
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    c.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    std::str::from_utf8(out.get(..12)?)
        .ok()?
        .strip_prefix("HTTP/1.1 ")?
        .parse()
        .ok()
}

/// A real nginx (Debian package nginx-light) in front of nodes, on a port of its own, in its own
/// process group: the load balancer, HTTP proxy or CDN-like cache a deploy.md set-up describes.
pub struct Nginx {
    _group: Group,
    pub addr: SocketAddr,
}

impl Nginx {
    /// Start nginx with `http` as the body of its `http {}` block; `{port}` in it is replaced by
    /// the port nginx must listen on (127.0.0.1).
    pub fn start(dir: &Path, http: &str) -> Nginx {
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
events {{ worker_connections 256; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/nginx-body;\n  proxy_temp_path {d}/nginx-proxy;\n\
  fastcgi_temp_path {d}/nginx-fcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n\
{}\n}}\n",
            http.replace("{port}", &port.to_string())
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let binary = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        // Its own process group, so that the master and its worker (which runs as `nobody`
        // when the suite runs as root) end together: SIGTERM is nginx's fast shutdown, in which
        // the master waits for its worker.
        let group = Group::spawn(
            std::process::Command::new(binary)
                .arg("-c")
                .arg(&path)
                .arg("-e")
                .arg(dir.join("nginx-error.log"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
            Duration::from_secs(5),
            "nginx (Debian package nginx-light)",
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = std::time::Instant::now();
        while TcpStream::connect(addr).is_err() {
            let log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start: {log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            _group: group,
            addr,
        }
    }
}

/// Whether `tool` is on PATH; says so in the test output when it is not.
pub fn have(tool: &str, package: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("SKIPPED: {tool} is not installed (Debian package {package}; scripts/test.sh installs it as root)");
    }
    found
}
