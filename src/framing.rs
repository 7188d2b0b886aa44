//! The request-stream guard: it follows every byte a connection reads (heads, Content-Length
//! bodies, chunked bodies and their trailers) so that each request on the connection, pipelined
//! or not, gets the same checks whatever the read boundaries, before hyper parses it.
//!
//! Heads that two parsers could split differently are how requests get smuggled (RFC 9112 §6.3,
//! §2.2). httparse accepts a bare LF as a line end, and hyper quietly settles a Content-Length
//! given with Transfer-Encoding, or given twice. A proxy in front might read either differently.
//! So a bare LF, the line end of a second framing header, and a Content-Length that is not one
//! plain decimal number are turned into a NUL: hyper answers 400 and closes the connection, so
//! no byte after it is ever read as a request. A request line ending in `HTTP/1.x` with x above 1
//! is rewritten to `HTTP/1.1` (RFC 9112 §2.3: a higher minor version is answered as 1.1).
//!
//! The guard skips bodies by their framing, so it knows where the next head begins; chunked
//! framing it cannot follow (a size that is not hex or overflows, a missing CRLF, an oversized
//! extension) marks the stream [`Framing::Broken`]: the service then answers 400 and closes, and
//! the guard reads nothing more. Work per read is one search per line plus at most `LINE` bytes
//! of each line's start; body bytes are skipped, not scanned.

/// Bytes of a head line's start kept (lowercased) to recognise framing headers and their values:
/// a Content-Length line keeps up to `LINE`, any other line only its first `NAME` bytes.
const LINE: usize = 48;
const NAME: usize = 18;
/// Longest chunk extension accepted (hyper's own limit is larger and per body).
const MAX_CHUNK_EXTENSION: usize = 4096;
/// Hex digits in a chunk size: 15 keep the size below 2^60.
const MAX_SIZE_DIGITS: u8 = 15;

/// Where in the request stream the next byte falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A head (request line and fields), or the empty lines allowed before one.
    Head,
    /// A Content-Length body: this many bytes are left.
    Body(u64),
    /// A chunk-size line: digits so far and the size.
    ChunkSize {
        digits: u8,
        size: u64,
    },
    /// A chunk extension (after `;`), this many bytes long so far.
    ChunkExt {
        len: usize,
        size: u64,
    },
    /// The LF that ends a chunk-size line.
    ChunkSizeLf {
        size: u64,
    },
    /// Chunk data: this many bytes are left.
    ChunkData(u64),
    /// The CR, then the LF, after chunk data.
    ChunkDataCr,
    ChunkDataLf,
    /// The trailer section after the last chunk (lines like a head's, ended by an empty line).
    Trailers,
    /// The framing could not be followed: nothing more is checked or trusted.
    Broken,
}

/// What the guard knows about the stream (the service asks before it answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Every byte so far is well framed.
    Sound,
    /// A request body's framing was invalid: the request gets 400 and the connection closes.
    Broken,
}

/// A request that hyper refused before the service saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyRefusal {
    /// The stream guard made the head invalid.
    Guard(Spoil),
    /// The head was larger than `limits.header_bytes` or had too many fields (431).
    HeadTooLarge,
    /// Any other head hyper could not parse (400).
    Malformed,
}

impl EarlyRefusal {
    /// Every reason's label, in the order of their counters.
    pub const LABELS: [&'static str; 5] = crate::stats::EARLY_REFUSAL_LABELS;

    /// Its counter's index in `early_refusals`.
    pub fn index(self) -> usize {
        match self {
            EarlyRefusal::Guard(Spoil::BareLf) => 0,
            EarlyRefusal::Guard(Spoil::DuplicateFraming) => 1,
            EarlyRefusal::Guard(Spoil::BadContentLength) => 2,
            EarlyRefusal::HeadTooLarge => 3,
            EarlyRefusal::Malformed => 4,
        }
    }

    /// The label counted in /metrics.
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

/// The per-connection guard.
#[derive(Debug)]
pub struct StreamGuard {
    state: State,
    /// The current line so far: did its last byte read end in CR, is it still empty, its start.
    prev_cr: bool,
    line_empty: bool,
    line: [u8; LINE],
    line_len: usize,
    /// The line being read is the head's first (the request line).
    request_line: bool,
    /// Framing headers seen in the current head: the Content-Length value, and whether a
    /// Transfer-Encoding was given.
    content_length: Option<u64>,
    chunked: bool,
    /// Why the guard last spoiled a head, if it did.
    spoiled: Option<Spoil>,
}

/// Why a head was made invalid (counted and logged when hyper then refuses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoil {
    /// A line ended in a bare LF.
    BareLf,
    /// A second Content-Length or Transfer-Encoding.
    DuplicateFraming,
    /// A Content-Length that is not one decimal number.
    BadContentLength,
}

impl Default for StreamGuard {
    fn default() -> Self {
        StreamGuard {
            state: State::Head,
            prev_cr: false,
            line_empty: true,
            line: [0; LINE],
            line_len: 0,
            request_line: true,
            content_length: None,
            chunked: false,
            spoiled: None,
        }
    }
}

impl StreamGuard {
    /// Whether the stream's framing is still trusted.
    pub fn framing(&self) -> Framing {
        if self.state == State::Broken {
            Framing::Broken
        } else {
            Framing::Sound
        }
    }

    /// Why the guard last spoiled a head, if it did.
    pub fn spoiled(&self) -> Option<Spoil> {
        self.spoiled
    }

    /// Check (and, where needed, spoil or rewrite) the next bytes read from the connection.
    pub fn scan(&mut self, bytes: &mut [u8]) {
        let mut at = 0;
        while at < bytes.len() {
            at = match self.state {
                State::Head | State::Trailers => self.scan_line(bytes, at),
                State::Broken => return,
                _ => self.scan_body(bytes, at),
            };
        }
    }

    /// Read head (or trailer) bytes from `at` up to the next line end, and judge the line there.
    fn scan_line(&mut self, bytes: &mut [u8], at: usize) -> usize {
        let rest = &bytes[at..];
        let line_end = memchr::memchr(b'\n', rest);
        let segment = &rest[..line_end.unwrap_or(rest.len())];
        if let Some(&last) = segment.last() {
            self.prev_cr = last == b'\r';
        }
        let content = segment.strip_suffix(b"\r").unwrap_or(segment);
        if !content.is_empty() {
            self.line_empty = false;
            if self.state == State::Head && !self.request_line {
                self.capture(content);
            }
        }
        let Some(offset) = line_end else {
            return bytes.len();
        };
        let newline = at + offset;
        if !self.prev_cr {
            bytes[newline] = 0; // a bare LF
            self.spoiled = Some(Spoil::BareLf);
        } else if self.line_empty {
            self.end_of_section();
        } else if self.state == State::Head {
            self.judge_field(bytes, at, newline);
        }
        self.line_empty = true;
        self.prev_cr = false;
        self.line_len = 0;
        newline + 1
    }

    /// Keep the start of a field line, lowercased: its first `NAME` bytes, or up to `LINE` for a
    /// Content-Length line (whose value the guard reads).
    fn capture(&mut self, mut content: &[u8]) {
        loop {
            let cap = if self.line_len >= 15 && self.line.starts_with(b"content-length:") {
                LINE
            } else {
                NAME
            };
            if self.line_len >= cap || content.is_empty() {
                return;
            }
            let take = content.len().min(cap - self.line_len);
            let kept = &mut self.line[self.line_len..self.line_len + take];
            kept.copy_from_slice(&content[..take]);
            kept.make_ascii_lowercase();
            self.line_len += take;
            content = &content[take..];
        }
    }

    /// An empty line: before a request line it is ignored (RFC 9112 §2.2); after a head it
    /// starts the body its framing headers announced; after trailers, the next head.
    fn end_of_section(&mut self) {
        if self.state == State::Trailers {
            self.state = State::Head;
            return;
        }
        if self.request_line {
            return;
        }
        self.state = if self.chunked {
            State::ChunkSize { digits: 0, size: 0 }
        } else {
            match self.content_length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head,
            }
        };
        self.request_line = true;
        self.content_length = None;
        self.chunked = false;
    }

    /// A complete head line whose line end is at `newline` (its part in this read starts at
    /// `at`): the request line's version, or a framing header field.
    fn judge_field(&mut self, bytes: &mut [u8], at: usize, newline: usize) {
        if self.request_line {
            self.request_line = false;
            // "HTTP/1.x\r\n": the minor digit sits 2 bytes before the LF (if this read has it).
            if newline >= at + 9 {
                let version = &mut bytes[newline - 9..newline - 1];
                if version.starts_with(b"HTTP/1.") && matches!(version[7], b'2'..=b'9') {
                    version[7] = b'1';
                }
            }
            return;
        }
        let line = &self.line[..self.line_len];
        if let Some(value) = line.strip_prefix(b"content-length:") {
            let parsed = parse_length(value, self.line_len == LINE);
            match (parsed, self.content_length.is_some() || self.chunked) {
                (Some(n), false) => self.content_length = Some(n),
                (None, _) => self.spoil(bytes, newline, Spoil::BadContentLength),
                (Some(_), true) => self.spoil(bytes, newline, Spoil::DuplicateFraming),
            }
        } else if line.starts_with(b"transfer-encoding:") {
            if self.content_length.is_some() || self.chunked {
                self.spoil(bytes, newline, Spoil::DuplicateFraming);
            }
            self.chunked = true;
        }
    }

    /// Make the head invalid at its line end `newline`, for `why`.
    fn spoil(&mut self, bytes: &mut [u8], newline: usize, why: Spoil) {
        bytes[newline] = 0;
        self.spoiled = Some(why);
    }

    /// Skip or follow body bytes from `at`; returns where the next unexamined byte is.
    fn scan_body(&mut self, bytes: &[u8], at: usize) -> usize {
        let left = (bytes.len() - at) as u64;
        match self.state {
            State::Body(n) | State::ChunkData(n) => {
                let take = n.min(left);
                let after = n - take;
                self.state = match (self.state, after) {
                    (State::Body(_), 0) => State::Head,
                    (State::Body(_), _) => State::Body(after),
                    (_, 0) => State::ChunkDataCr,
                    _ => State::ChunkData(after),
                };
                at + take as usize
            }
            _ => {
                self.state = self.chunk_byte(bytes[at]);
                at + 1
            }
        }
    }

    /// The next state after one byte of chunked framing (sizes, extensions and their CRLFs).
    fn chunk_byte(&self, c: u8) -> State {
        match self.state {
            State::ChunkSize { digits, size } => match (hex_value(c), c) {
                (Some(v), _) if digits < MAX_SIZE_DIGITS => State::ChunkSize {
                    digits: digits + 1,
                    size: size << 4 | u64::from(v),
                },
                (None, b';') if digits > 0 => State::ChunkExt { len: 0, size },
                (None, b'\r') if digits > 0 => State::ChunkSizeLf { size },
                _ => State::Broken,
            },
            State::ChunkExt { len, size } => match c {
                b'\r' => State::ChunkSizeLf { size },
                b'\n' => State::Broken,
                _ if len >= MAX_CHUNK_EXTENSION => State::Broken,
                _ => State::ChunkExt { len: len + 1, size },
            },
            State::ChunkSizeLf { size } => match (c, size) {
                (b'\n', 0) => State::Trailers,
                (b'\n', n) => State::ChunkData(n),
                _ => State::Broken,
            },
            State::ChunkDataCr if c == b'\r' => State::ChunkDataLf,
            State::ChunkDataLf if c == b'\n' => State::ChunkSize { digits: 0, size: 0 },
            _ => State::Broken,
        }
    }
}

/// A Content-Length value: one run of decimal digits between optional spaces and tabs. Lists,
/// signs and values that overflow are refused (RFC 9110 §8.6 lets a recipient reject them).
fn parse_length(value: &[u8], truncated: bool) -> Option<u64> {
    if truncated {
        return None;
    }
    let trimmed = value.trim_ascii();
    if trimmed.is_empty() || !trimmed.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(trimmed).ok()?.parse().ok()
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::{Framing, StreamGuard};

    /// The bytes as hyper would see them, fed in pieces of `piece` bytes.
    fn guarded(stream: &[u8], piece: usize) -> (Vec<u8>, Framing) {
        let mut bytes = stream.to_vec();
        let mut g = StreamGuard::default();
        for part in bytes.chunks_mut(piece) {
            g.scan(part);
        }
        (bytes, g.framing())
    }

    fn spoiled(stream: &[u8]) -> bool {
        guarded(stream, 3).0.contains(&0)
    }

    #[test]
    fn ambiguous_heads_are_made_invalid_and_bodies_left_alone() {
        let ok = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na\nb";
        assert_eq!(guarded(ok, 3).0, ok.to_vec());
        assert!(spoiled(b"GET / HTTP/1.1\nHost: t\r\n\r\n"));
        assert!(spoiled(
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n"
        ));
        assert!(spoiled(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"
        ));
        for bad in ["+5", "-1", "5, 5", "99999999999999999999999", "", "0x10"] {
            let head = format!("GET / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(spoiled(head.as_bytes()), "{bad:?}");
        }
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(guarded(chunked, 3).0, chunked.to_vec());
    }

    #[test]
    fn every_request_of_a_pipelined_batch_is_checked() {
        let second_bad = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\nHost: t\r\n\r\n";
        let after_body = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let after_chunks = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\na\nb\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\nHost: t\r\n\r\n";
        let leading_blank = b"\r\nGET / HTTP/1.1\nHost: t\r\n\r\n";
        for stream in [&second_bad[..], after_body, after_chunks, leading_blank] {
            for piece in 1..stream.len() {
                assert!(guarded(stream, piece).0.contains(&0), "piece {piece}");
            }
        }
    }

    #[test]
    fn read_splits_never_change_the_verdict() {
        let mut batch = Vec::new();
        for i in 0..20 {
            batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        batch.extend_from_slice(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        for piece in 1..batch.len() {
            assert_eq!(guarded(&batch, piece), (batch.clone(), Framing::Sound));
        }
    }

    #[test]
    fn invalid_chunked_framing_breaks_the_stream() {
        for body in [
            "zz\r\n",
            "-1\r\n",
            "0x13\r\n",
            "fffffffffffffffff1\r\n",
            "3\r\nabcX",
            "3\nabc",
            &format!("3;{}\r\nabc\r\n", "e".repeat(100_000)),
        ] {
            let stream = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            assert_eq!(guarded(stream.as_bytes(), 7).1, Framing::Broken, "{body:?}");
        }
    }

    #[test]
    fn higher_minor_versions_are_read_as_http_1_1() {
        let (bytes, _) = guarded(b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 64);
        assert_eq!(&bytes[..16], b"GET / HTTP/1.1\r\n");
        let (bytes, _) = guarded(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 64);
        assert_eq!(&bytes[..16], b"GET / HTTP/2.0\r\n");
    }
}
