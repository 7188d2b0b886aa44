//! One integration-test binary (one link step). Every test talks to a real server over real
//! sockets on 127.0.0.1: raw bytes over TcpStream for wire checks, curl where a real client's
//! behaviour is the point.

mod support;

/// The module graph read from the source: its arrows run one way.
mod architecture;
/// CDN features: precompressed variants and directory listings.
mod cdn;
/// Start-up, config errors and `check-config`, through the real binary.
mod cli;
/// Conditional requests: 304, 412, their headers and their precedence.
mod conditional;
/// RFC 9530 Repr-Digest, content ETags across nodes, `sendfiled digest` and attributes.
mod digests;
/// Faults: 10 000 dropped connections, files deleted or replaced mid-transfer and mid-archive.
mod faults;
/// Directories, index files, redirects, dotfiles, downloads, Cache-Control.
mod files;
/// Several nodes with copies of one tree: identical answers, resume across nodes behind nginx,
/// a node stopping behind HAProxy without a failed request.
mod fleet;
/// Conformance and hostile input, round two: framing, bodies, Host, what a probe found.
mod hostile;
/// Request and connection limits: 414, 431, slowloris, idle keep-alive, clients that leave.
mod limits;
/// systemd (socket activation, sd_notify, watchdog), drain, reload, metrics, access log.
mod operations;
/// The Debian package, man pages, completions, alert rules and dashboard.
mod packaging;
/// Signed links, bandwidth pacing, per-client and global limits, fd exhaustion, slow drips.
mod protection;
/// Methods, Host, HEAD parity, pipelining, error bodies.
mod protocol;
/// Behind a balancer: the PROXY protocol from a real HAProxy, forwarding headers, spoofing.
mod proxied;
/// Range requests: single, multipart, 416, If-Range, curl resume.
mod ranges;
/// The small-body path: small files sent from memory with their head, exact and never stale.
mod small;
/// HTTPS: curl, Python, openssl s_client and testssl.sh against the TLS listeners.
mod tls;
/// Traversal spellings and symlinks: nothing outside the root is served.
mod traversal;
/// The zero-copy engine: sendfile counters, big and sparse files, truncation, slow readers.
mod zero_copy;
/// ZIP archives: every reader, resume, selections, limits, zip64, memory.
mod zip;
