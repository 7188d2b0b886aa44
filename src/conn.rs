//! A connection's shared state: what its IO object, its service and its response bodies all see
//! (the read phase, the mappings its queued bodies stand for, the pace of the response, and the
//! record of the exchange being answered, for the access log and the metrics).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use smallvec::SmallVec;
use tokio::time::Instant;

use crate::access_log::{BodyPath, Exchange, Transport};
use crate::framing::{Framing, Spoil};
use crate::fs::OpenFile;
use crate::protect::Pacer;
use crate::stats::WorkerStats;
use crate::worker::Worker;

/// Where a connection is in its request cycle, which decides the read deadline.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Waiting for the first byte of a request; closed at `deadline` (keep-alive idle timeout,
    /// or the header timeout for a fresh connection). `None` until the exchange before it is
    /// logged (which reads the clock anyway) or a read first goes pending: deadlines are
    /// computed lazily, so a busy keep-alive connection reads the clock for them at most once
    /// per request, not once per phase change.
    Idle { deadline: Option<Instant> },
    /// Part of a request head has arrived; the whole head must arrive by `deadline` (computed,
    /// like Idle's, when a read first goes pending).
    Head { deadline: Option<Instant> },
    /// A request is being answered: no read deadline.
    Busy,
}

/// Mappings of the files whose bodies are queued on this connection, so the IO layer can tell
/// which file and offset a slice stands for. Usually zero or one entry.
#[derive(Default)]
pub struct Registry {
    entries: SmallVec<[(Arc<OpenFile>, u32); 2]>,
}

impl Registry {
    /// A body chunk of `file` was created.
    pub fn register(&mut self, file: &Arc<OpenFile>) {
        if let Some(e) = self.entries.iter_mut().find(|(f, _)| Arc::ptr_eq(f, file)) {
            e.1 += 1;
        } else {
            self.entries.push((file.clone(), 1));
        }
    }

    /// A body chunk of `file` was dropped.
    pub fn unregister(&mut self, file: &Arc<OpenFile>) {
        if let Some(i) = self.entries.iter().position(|(f, _)| Arc::ptr_eq(f, file)) {
            self.entries[i].1 -= 1;
            if self.entries[i].1 == 0 {
                self.entries.swap_remove(i);
            }
        }
    }

    /// The file and offset a slice stands for, if it lies wholly inside a registered mapping.
    pub fn lookup(&self, slice: &[u8]) -> Option<(&Arc<OpenFile>, usize)> {
        let start = slice.as_ptr() as usize;
        let end = start + slice.len();
        self.entries.iter().find_map(|(file, _)| {
            let map = file.map.as_ref()?;
            let base = map.base();
            (start >= base && end <= base + map.len()).then(|| (file, start - base))
        })
    }
}

/// State shared by a connection's IO wrapper, its service and its response bodies. Single-threaded
/// (the connection lives on one worker), hence `Cell`/`RefCell`.
pub struct ConnShared {
    pub registry: RefCell<Registry>,
    pub phase: Cell<Phase>,
    pub worker: Rc<Worker>,
    /// The waker of a read that went pending while the connection was busy. hyper does not poll
    /// reads again on its own once a response ends, so going idle wakes it to arm the deadline.
    pub read_waker: RefCell<Option<Waker>>,
    /// The client's address (the one a trusted balancer's PROXY header names, if any).
    pub peer: std::net::SocketAddr,
    /// The balancer the connection came through, when a PROXY header named the client.
    pub via: Option<std::net::SocketAddr>,
    /// Set when the connection was accepted past its address's cap: every request on it gets
    /// 429 and the connection closes.
    pub refused: Option<crate::protect::clients::Rejection>,
    /// The bandwidth limit of the response being sent, if any.
    pub pace: Cell<Option<Pacer>>,
    /// Bytes written to the client so far (heads and bodies).
    pub bytes_sent: Cell<u64>,
    /// Requests that reached the service on this connection.
    pub requests: Cell<u64>,
    /// The exchange being answered, for the access log and the request metrics.
    pub exchange: RefCell<Exchange>,
    /// Whether every byte read so far was well framed (the stream guard's verdict).
    pub framing: Cell<Framing>,
    /// Why the stream guard last made a head invalid, if it did.
    pub spoiled: Cell<Option<Spoil>>,
    /// Plain HTTP, or how HTTPS records are encrypted.
    pub transport: Transport,
}

impl ConnShared {
    /// A request is being served.
    pub fn set_busy(&self) {
        self.phase.set(Phase::Busy);
    }

    /// The response finished: the next request must begin within the keep-alive timeout.
    pub fn set_idle(&self) {
        self.phase.set(Phase::Idle { deadline: None });
        if let Some(w) = self.read_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Arm the idle connection's keep-alive deadline to run from `since`; returns it.
    pub fn arm_keepalive(&self, since: Instant) -> Instant {
        let deadline = since + self.worker.config().limits.keepalive_timeout;
        self.phase.set(Phase::Idle {
            deadline: Some(deadline),
        });
        deadline
    }

    /// A fresh connection's shared state.
    pub fn new(
        worker: Rc<Worker>,
        peer: std::net::SocketAddr,
        via: Option<std::net::SocketAddr>,
        refused: Option<crate::protect::clients::Rejection>,
        transport: Transport,
    ) -> Self {
        ConnShared {
            registry: RefCell::new(Registry::default()),
            phase: Cell::new(Phase::Busy),
            worker,
            read_waker: RefCell::new(None),
            peer,
            via,
            refused,
            pace: Cell::new(None),
            bytes_sent: Cell::new(0),
            requests: Cell::new(0),
            exchange: RefCell::new(Exchange::default()),
            framing: Cell::new(Framing::Sound),
            spoiled: Cell::new(None),
            transport,
        }
    }

    /// A request arrived: start its record (finishing a previous one still open).
    pub fn begin_exchange(&self, parts: &http::request::Parts) {
        self.requests.set(self.requests.get() + 1);
        self.finish_exchange(false);
        let capture = self.worker.logging();
        let client = self.forwarded_client(&parts.headers);
        let mut x = self.exchange.borrow_mut();
        x.begin(parts, self.bytes_sent.get(), capture);
        x.transport = self.transport;
        x.client = client;
    }

    /// The client a trusted proxy's forwarding header names for this request, if the
    /// configuration asks for one and the connection comes from a trusted proxy.
    fn forwarded_client(&self, headers: &http::HeaderMap) -> Option<std::net::IpAddr> {
        let config = self.worker.config();
        let proxy = &config.proxy;
        let rule = proxy.client_header.as_ref()?;
        let sender = self.via.unwrap_or(self.peer);
        if !proxy.trusts(sender.ip()) {
            return None;
        }
        crate::http::forwarded::client(headers, rule, |ip| proxy.trusts(ip))
    }

    /// The client of the request being answered: the one a forwarding header named, else the
    /// connection's.
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.exchange.borrow().client.unwrap_or(self.peer.ip())
    }

    /// The response being built carries `Repr-Digest` (for the access log).
    pub fn sent_digest(&self) {
        self.exchange.borrow_mut().digest = true;
    }

    /// The response is known: its status, and how its body leaves.
    pub fn responded(&self, status: http::StatusCode, body: BodyPath) {
        // Over userspace TLS, file bytes are read and encrypted, not spliced.
        let body = match (body, self.transport) {
            (BodyPath::Sendfile, Transport::Tls) => BodyPath::Pread,
            _ => body,
        };
        let mut x = self.exchange.borrow_mut();
        x.status = status.as_u16();
        x.body = body;
    }

    /// The exchange is over (its last byte is in the kernel, or the connection ended): count it
    /// and log it.
    pub fn finish_exchange(&self, aborted: bool) {
        let mut x = self.exchange.borrow_mut();
        if !x.active {
            return;
        }
        x.active = false;
        let end = Instant::now();
        let seconds = x.started.map_or(0.0, |s| (end - s).as_secs_f64());
        // Idle with no deadline yet: it runs from this clock read, so the read that next goes
        // pending need not read the clock again.
        if let Phase::Idle { deadline: None } = self.phase.get() {
            self.arm_keepalive(end);
        }
        let bytes = self.bytes_sent.get() - x.bytes_before;
        let status = if x.status == 0 { 499 } else { x.status };
        x.status = status;
        let stats = self.worker.stats();
        stats.exchange(x.method_index, status, seconds);
        WorkerStats::add(&stats.bytes_sent, bytes);
        let client = x
            .client
            .map_or(self.peer, |ip| std::net::SocketAddr::new(ip, 0));
        let peer = self.via.unwrap_or(self.peer);
        self.worker
            .log_exchange(&mut x, (client, peer), bytes, seconds, aborted);
    }
}
