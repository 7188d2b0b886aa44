//! The access log: one line per exchange, as JSON lines or nginx's combined format, to stdout (for
//! journald) or to a file reopened on SIGUSR1 (for logrotate). A line is written when the
//! response's last byte is in the kernel (or the connection ended), so it carries the bytes
//! actually sent and the whole duration. Workers buffer lines and write them out in batches.
//!
//! Everything from the request is escaped (JSON string rules, or `\xHH` in combined format), so
//! a hostile header cannot forge lines; a link's signature is replaced by `REDACTED`.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::LocalKey;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// nginx's `combined`, plus the duration, body path and key id.
    Combined,
}

/// Where lines go. Workers hand whole batches to a writer thread through a bounded queue and
/// never wait on the log: a stalled pipe or disk (journald stuck, a full pipe) fills the queue,
/// and the batches that do not fit are dropped and counted, so serving goes on.
pub struct AccessLog {
    format: Format,
    /// `None` = stdout.
    path: Option<PathBuf>,
    file: Arc<Mutex<Option<File>>>,
    queue: SyncSender<Vec<u8>>,
    /// Batches queued or being written.
    pending: Arc<AtomicUsize>,
    /// Written batches, emptied, for workers to fill again: the log allocates no buffer in
    /// steady state.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Emptied batch buffers kept for reuse.
const SPARE_BATCHES: usize = 8;

/// Batches the queue holds (each up to a worker's batch size, 32 KiB).
const QUEUE_BATCHES: usize = 64;

impl AccessLog {
    /// Open the log (creating the file if needed) and start its writer thread.
    pub fn open(format: Format, path: Option<PathBuf>) -> io::Result<AccessLog> {
        let file = match &path {
            Some(p) => Some(open_append(p)?),
            None => None,
        };
        let file = Arc::new(Mutex::new(file));
        let pending = Arc::new(AtomicUsize::new(0));
        let (queue, batches) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE_BATCHES);
        let spare = Arc::new(Mutex::new(Vec::new()));
        let (out, done, give_back) = (file.clone(), pending.clone(), spare.clone());
        std::thread::Builder::new()
            .name("sendfiled-log".into())
            .spawn(move || {
                for mut batch in batches {
                    write_out(&out, &batch);
                    batch.clear();
                    let mut spare = give_back.lock().unwrap_or_else(|e| e.into_inner());
                    if spare.len() < SPARE_BATCHES {
                        spare.push(batch);
                    }
                    drop(spare);
                    done.fetch_sub(1, Ordering::Release);
                }
            })?;
        Ok(AccessLog {
            format,
            path,
            file,
            queue,
            pending,
            spare,
        })
    }

    /// The line format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reopen the file by name (after logrotate moved it). A failure keeps the old file.
    pub fn reopen(&self) -> io::Result<()> {
        let Some(p) = &self.path else {
            return Ok(());
        };
        let new = open_append(p)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(new);
        Ok(())
    }

    /// An empty buffer for the next batch (a written one when there is one), with room for
    /// `capacity` bytes.
    pub fn empty_batch(&self, capacity: usize) -> Vec<u8> {
        let reused = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Queue a batch of whole lines for the writer. Never blocks: when the queue is full the
    /// batch is dropped, and the number of lines in it is returned.
    pub fn write_batch(&self, lines: Vec<u8>) -> Result<(), u64> {
        if lines.is_empty() {
            return Ok(());
        }
        self.pending.fetch_add(1, Ordering::Acquire);
        match self.queue.try_send(lines) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(lines) | TrySendError::Disconnected(lines)) => {
                self.pending.fetch_sub(1, Ordering::Release);
                Err(lines.iter().filter(|b| **b == b'\n').count() as u64)
            }
        }
    }

    /// Wait (at most `limit`) until every queued batch is written: for a clean stop.
    pub fn wait_written(&self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.pending.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The writer thread's one job: put a batch where the log goes (blocking is fine here).
fn write_out(file: &Mutex<Option<File>>, lines: &[u8]) {
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    let result = match file.as_mut() {
        Some(f) => f.write_all(lines),
        None => io::stdout().lock().write_all(lines),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot write the access log");
    }
}

fn open_append(p: &std::path::Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

/// How a connection's bytes are carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP.
    #[default]
    Plain,
    /// HTTPS, records encrypted by rustls in our process.
    Tls,
    /// HTTPS, records encrypted by the kernel (kTLS).
    Ktls,
}

impl Transport {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Plain => "http",
            Transport::Tls => "tls",
            Transport::Ktls => "ktls",
        }
    }
}

/// How a response's body left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyPath {
    /// No body (HEAD, 304, 204, empty).
    #[default]
    None,
    /// A file by sendfile(2).
    Sendfile,
    /// A file through a buffer (unmappable files).
    Copy,
    /// A ZIP archive stream.
    Zip,
    /// Bytes from memory (errors, redirects).
    Memory,
    /// A small file's bytes from memory, in one write with the head.
    Small,
    /// A file read by pread and encrypted in userspace (HTTPS without kernel TLS).
    Pread,
}

impl BodyPath {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            BodyPath::None => "none",
            BodyPath::Sendfile => "sendfile",
            BodyPath::Copy => "copy",
            BodyPath::Zip => "zip",
            BodyPath::Memory => "memory",
            BodyPath::Small => "small",
            BodyPath::Pread => "pread",
        }
    }
}

/// What the log needs of one exchange; the text fields live in one reused buffer.
#[derive(Default)]
pub struct Exchange {
    pub active: bool,
    pub started: Option<tokio::time::Instant>,
    pub wall: Option<SystemTime>,
    pub method_index: usize,
    pub status: u16,
    pub body: BodyPath,
    pub bytes_before: u64,
    pub key_id: Option<String>,
    /// Whether the response carried `Repr-Digest`.
    pub digest: bool,
    /// How the connection's bytes are carried (plain, userspace TLS, kernel TLS).
    pub transport: Transport,
    /// The client a trusted proxy's forwarding header named, if any.
    pub client: Option<std::net::IpAddr>,
    text: String,
    /// End offsets in `text` of method, target, user agent, referer, range.
    ends: [usize; 5],
    /// The line's client and peer as written, kept for the connection's next lines.
    client_text: AddressText,
    peer_text: AddressText,
}

/// An address as a line writes it, formatted once and reused while it stays the same: a
/// keep-alive connection's peer never changes, nor does its client unless a forwarding header
/// names another.
#[derive(Default)]
struct AddressText {
    addr: Option<std::net::SocketAddr>,
    text: Vec<u8>,
}

impl AddressText {
    /// `addr` as [`socket_addr`] writes it.
    fn of(&mut self, addr: std::net::SocketAddr) -> &[u8] {
        if self.addr != Some(addr) {
            self.text.clear();
            socket_addr(addr, &mut self.text);
            self.addr = Some(addr);
        }
        &self.text
    }
}

/// Index of a method in the metrics (GET, HEAD, POST, OPTIONS, other).
pub fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::OPTIONS => 3,
        _ => 4,
    }
}

/// Method labels by [`method_index`].
pub const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "OPTIONS", "other"];

impl Exchange {
    /// Start recording a request; `capture` says whether the log wants its text.
    pub fn begin(&mut self, parts: &http::request::Parts, bytes_before: u64, capture: bool) {
        self.active = true;
        self.started = Some(tokio::time::Instant::now());
        self.method_index = method_index(&parts.method);
        self.status = 0;
        self.body = BodyPath::None;
        self.bytes_before = bytes_before;
        self.key_id = None;
        self.digest = false;
        self.text.clear();
        if !capture {
            self.wall = None;
            return;
        }
        self.wall = Some(SystemTime::now());
        self.text.push_str(parts.method.as_str());
        self.ends[0] = self.text.len();
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        redact_signature(pq, &mut self.text);
        self.ends[1] = self.text.len();
        let [agent, referer, range] = logged_headers(&parts.headers);
        for (i, value) in [(2, agent), (3, referer), (4, range)] {
            if !value.is_empty() {
                self.text.push_str(&String::from_utf8_lossy(value));
            }
            self.ends[i] = self.text.len();
        }
    }

    fn field(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Append the log line for this exchange to `out` (the worker's batch buffer, so a line
    /// costs no allocation of its own).
    pub fn write_line(
        &mut self,
        out: &mut Vec<u8>,
        format: Format,
        (client, peer): (std::net::SocketAddr, std::net::SocketAddr),
        bytes: u64,
        seconds: f64,
        aborted: bool,
    ) {
        let wall = self.wall.unwrap_or_else(SystemTime::now);
        match format {
            Format::Json => self.write_json(out, wall, (client, peer), bytes, seconds, aborted),
            Format::Combined => self.write_combined(out, wall, client, bytes, seconds, aborted),
        }
        out.push(b'\n');
    }

    /// The JSON form: one object, keys in a fixed order.
    fn write_json(
        &mut self,
        out: &mut Vec<u8>,
        wall: SystemTime,
        (client, peer): (std::net::SocketAddr, std::net::SocketAddr),
        bytes: u64,
        seconds: f64,
        aborted: bool,
    ) {
        // By hand, not write!: core::fmt cost 5% of a 1 KiB request here (the profile
        // is in docs/benchmarks.md).
        out.extend_from_slice(b"{\"time\":\"");
        rfc3339(wall, out);
        out.extend_from_slice(b"\",\"client\":\"");
        out.extend_from_slice(self.client_text.of(client));
        out.extend_from_slice(b"\",\"peer\":\"");
        out.extend_from_slice(self.peer_text.of(peer));
        out.extend_from_slice(b"\",\"method\":");
        json_str(self.field(0), out);
        let target = self.field(1);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        out.extend_from_slice(b",\"path\":");
        json_str(path, out);
        out.extend_from_slice(b",\"query\":");
        json_str(query, out);
        out.extend_from_slice(b",\"status\":");
        number(self.status, out);
        out.extend_from_slice(b",\"bytes\":");
        number(bytes, out);
        out.extend_from_slice(b",\"duration_ms\":");
        millis(seconds, out);
        out.extend_from_slice(b",\"range\":");
        json_str(self.field(4), out);
        out.extend_from_slice(b",\"body\":\"");
        out.extend_from_slice(self.body.label().as_bytes());
        out.extend_from_slice(b"\",\"user_agent\":");
        json_str(self.field(2), out);
        out.extend_from_slice(b",\"referer\":");
        json_str(self.field(3), out);
        out.extend_from_slice(b",\"key_id\":");
        match &self.key_id {
            Some(k) => json_str(k, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(if self.digest {
            b",\"digest\":true"
        } else {
            b",\"digest\":false"
        });
        out.extend_from_slice(b",\"transport\":\"");
        out.extend_from_slice(self.transport.label().as_bytes());
        out.extend_from_slice(b"\"");
        out.extend_from_slice(if aborted {
            b",\"aborted\":true}"
        } else {
            b",\"aborted\":false}"
        });
    }

    /// The combined form (nginx's), with our fields appended after the duration.
    fn write_combined(
        &mut self,
        out: &mut Vec<u8>,
        wall: SystemTime,
        client: std::net::SocketAddr,
        bytes: u64,
        seconds: f64,
        aborted: bool,
    ) {
        // Port 0 makes it the bare IP.
        let ip = std::net::SocketAddr::new(client.ip(), 0);
        out.extend_from_slice(self.client_text.of(ip));
        out.extend_from_slice(b" - - [");
        clf_time(wall, out);
        out.extend_from_slice(b"] \"");
        escaped(self.field(0), out);
        out.push(b' ');
        escaped(self.field(1), out);
        out.extend_from_slice(b" HTTP/1.1\" ");
        number(self.status, out);
        out.push(b' ');
        number(bytes, out);
        out.extend_from_slice(b" \"");
        escaped(self.field(3), out);
        out.extend_from_slice(b"\" \"");
        escaped(self.field(2), out);
        let _ = write!(
            out,
            "\" {:.3} {} {}{}{}{}",
            seconds,
            self.body.label(),
            self.key_id.as_deref().unwrap_or("-"),
            if self.digest { " digest" } else { "" },
            match self.transport {
                Transport::Plain => "",
                Transport::Tls => " tls",
                Transport::Ktls => " ktls",
            },
            if aborted { " aborted" } else { "" }
        );
    }
}

/// Copy `pq` (path and query) into `out` with the value of any `sig` parameter replaced.
fn redact_signature(pq: &str, out: &mut String) {
    let Some((path, query)) = pq.split_once('?') else {
        out.push_str(pq);
        return;
    };
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some(("sig", _)) => out.push_str("sig=REDACTED"),
            _ => out.push_str(pair),
        }
    }
}

fn number(n: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `seconds` as milliseconds with three decimals (whole microseconds).
fn millis(seconds: f64, out: &mut Vec<u8>) {
    let micros = (seconds * 1e6).round() as u64;
    number(micros / 1000, out);
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `addr` as Display writes it (`1.2.3.4:5`, `[::1]:5`), IPv4 without core::fmt; port 0 (an
/// address from a forwarding header, which has none) as the bare IP.
fn socket_addr(addr: std::net::SocketAddr, out: &mut Vec<u8>) {
    if addr.port() == 0 {
        let _ = write!(out, "{}", addr.ip());
        return;
    }
    match addr {
        std::net::SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(octet, out);
            }
            out.push(b':');
            number(v4.port(), out);
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `s` as a JSON string. The runs between bytes that need escaping are copied whole (almost
/// every field is one run).
fn json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Bytes of multi-byte UTF-8 characters are all >= 0x80 and pass through whole.
        if b != b'"' && b != b'\\' && b >= 0x20 && b != 0x7f {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// The first User-Agent, Referer and Range values (empty when absent), from one pass over the
/// request's header names instead of three hashed lookups.
fn logged_headers(headers: &http::HeaderMap) -> [&[u8]; 3] {
    use http::header::{RANGE, REFERER, USER_AGENT};
    let mut found: [Option<&[u8]>; 3] = [None; 3];
    for (name, value) in headers {
        let slot = if name == USER_AGENT {
            0
        } else if name == REFERER {
            1
        } else if name == RANGE {
            2
        } else {
            continue;
        };
        found[slot].get_or_insert(value.as_bytes());
    }
    found.map(|v| v.unwrap_or_default())
}

/// nginx's escaping for combined logs: `"`, `\`, control and non-ASCII bytes as `\xHH`.
fn escaped(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// `2026-12-02T07:10:05.123Z`. The part up to the second is formatted once a second per
/// thread; a line adds only its milliseconds.
fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }
    let ms = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_millis();
    out.extend_from_slice(&once_a_second(&SECOND, t, |text, (y, mo, d, h, mi, s)| {
        write!(text, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
    }));
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// `29/Feb/2000:00:00:00 +0000`, formatted once a second per thread like [`rfc3339`]'s.
fn clf_time(t: SystemTime, out: &mut Vec<u8>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    thread_local! {
        static SECOND: Cell<(u64, [u8; 26])> = const { Cell::new((u64::MAX, [0; 26])) };
    }
    out.extend_from_slice(&once_a_second(&SECOND, t, |text, (y, mo, d, h, mi, s)| {
        let month = MONTHS[mo as usize - 1];
        write!(text, "{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000")
    }));
}

/// The text of `t`'s second: `cache`'s when it holds that second, else `format`ted from the
/// civil date (year, month, day, hour, minute, second) and kept for the rest of the second.
fn once_a_second<const N: usize>(
    cache: &'static LocalKey<Cell<(u64, [u8; N])>>,
    t: SystemTime,
    format: impl FnOnce(&mut &mut [u8], (i64, u32, u32, u32, u32, u32)) -> io::Result<()>,
) -> [u8; N] {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    cache.with(|cell| {
        let (cached, text) = cell.get();
        if cached == secs {
            return text;
        }
        let (y, mo, d, h, mi, s, _) = crate::civil::civil(t);
        let mut text = [0u8; N];
        let _ = format(&mut &mut text[..], (y, mo, d, h, mi, s));
        cell.set((secs, text));
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_format_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_232_168_577);
        let mut s = Vec::new();
        rfc3339(t, &mut s);
        assert_eq!(s, b"2026-11-21T03:36:08.577Z");
        s.clear();
        clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut s);
        assert_eq!(s, b"29/Feb/2000:00:00:00 +0000");
        s.clear();
        clf_time(UNIX_EPOCH + Duration::from_millis(951_782_400_999), &mut s);
        clf_time(UNIX_EPOCH + Duration::from_secs(951_782_401), &mut s);
        assert_eq!(
            s, b"29/Feb/2000:00:00:00 +000029/Feb/2000:00:00:01 +0000",
            "the cached second is replaced when the second changes"
        );
    }

    #[test]
    fn hand_formatting_matches_core_fmt() {
        for seconds in [0.0, 0.000_4, 0.001_234_6, 1.5, 12.345_678_9] {
            let mut s = Vec::new();
            millis(seconds, &mut s);
            assert_eq!(
                String::from_utf8(s).unwrap(),
                format!("{:.3}", seconds * 1000.0)
            );
        }
        for addr in [
            "1.2.3.4:5",
            "255.0.10.100:65535",
            "[::1]:8080",
            "[2001:db8::7]:1",
        ] {
            let mut s = Vec::new();
            socket_addr(addr.parse().unwrap(), &mut s);
            assert_eq!(s, addr.as_bytes());
        }
        // The cached second is per thread and replaced when the second changes.
        let mut s = Vec::new();
        rfc3339(
            UNIX_EPOCH + Duration::from_millis(1_795_232_168_001),
            &mut s,
        );
        rfc3339(
            UNIX_EPOCH + Duration::from_millis(1_795_232_169_999),
            &mut s,
        );
        assert_eq!(s, b"2026-11-21T03:36:08.001Z2026-11-21T03:36:09.999Z");
    }

    #[test]
    fn an_address_is_formatted_again_only_when_it_changes() {
        let (a, b) = ("1.2.3.4:5".parse().unwrap(), "[::1]:8080".parse().unwrap());
        let mut memo = AddressText::default();
        assert_eq!(memo.of(a), b"1.2.3.4:5");
        assert_eq!(memo.of(a), b"1.2.3.4:5");
        assert_eq!(memo.of(b), b"[::1]:8080");
        assert_eq!(memo.of(a), b"1.2.3.4:5");
    }

    #[test]
    fn the_logged_headers_are_the_first_of_each_name() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::HOST, "h".parse().unwrap());
        h.append(http::header::RANGE, "bytes=0-1".parse().unwrap());
        h.append(http::header::USER_AGENT, "curl/8".parse().unwrap());
        h.append(http::header::USER_AGENT, "second".parse().unwrap());
        assert_eq!(
            logged_headers(&h),
            [&b"curl/8"[..], &b""[..], &b"bytes=0-1"[..]]
        );
        assert_eq!(logged_headers(&http::HeaderMap::new()), [&b""[..]; 3]);
    }

    #[test]
    fn signatures_are_redacted_and_text_escaped() {
        let mut s = String::new();
        redact_signature("/a?expires=1&kid=k&sig=SECRET&download", &mut s);
        assert_eq!(s, "/a?expires=1&kid=k&sig=REDACTED&download");
        let mut j = Vec::new();
        json_str("", &mut j);
        json_str("plain", &mut j);
        assert_eq!(j, b"\"\"\"plain\"");
        j.clear();
        json_str("a\"b\\c\nd\u{e9}", &mut j);
        assert_eq!(
            String::from_utf8(j).unwrap(),
            "\"a\\\"b\\\\c\\u000ad\u{e9}\""
        );
        let mut c = Vec::new();
        escaped("x\"\n\u{e9}", &mut c);
        assert_eq!(c, br"x\x22\x0A\xC3\xA9");
    }
}
