//! Connections: the accept loop of each listener (connection cap, descriptor exhaustion, the
//! stop), and one connection's life under hyper (its shared state, the IO object, the service,
//! the drain, and a request refused before the service, counted).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::access_log::Transport;
use crate::conn::ConnShared;
use crate::framing::{EarlyRefusal, Spoil};
use crate::io::{Security, SendfileIo};
use crate::service::FileService;
use crate::settings::Settings;
use crate::stats::WorkerStats;
use crate::worker::Worker;

/// Accept connections on `listener` until the stop, spawning each on this worker. `tls`: the
/// listener's `[[tls]]` block, for an HTTPS listener.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    worker: Rc<Worker>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<usize>,
) {
    let mut fd_exhaustion_logged = false;
    loop {
        worker.refresh();
        if !below_connection_cap(&worker, &mut shutdown).await {
            return;
        }
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                fd_exhaustion_logged = false;
                // Counted here, not in the task, so that the cap holds for a burst of accepts.
                worker.connections.opened();
                let conn = serve_connection(tcp, peer, worker.clone(), tls);
                tokio::task::spawn_local(conn);
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                // Out of descriptors or memory: the pending connection stays queued. Back off
                // instead of spinning on a listener that stays readable; log once per episode.
                if !fd_exhaustion_logged {
                    tracing::warn!(error = %e, "accept failed, backing off");
                    fd_exhaustion_logged = true;
                }
                WorkerStats::add(&worker.stats().accept_backoffs, 1);
                if !pause(&mut shutdown, Duration::from_millis(100)).await {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
}

/// The global connection cap: stop accepting (the kernel keeps queueing in the backlog) until
/// connections close, rather than accepting and failing them. False when the server stops.
async fn below_connection_cap(worker: &Worker, shutdown: &mut watch::Receiver<bool>) -> bool {
    let cap = worker.protect().max_connections;
    if worker.connections.open() < cap {
        return true;
    }
    tracing::warn!(
        max_connections = cap,
        "connection cap reached, pausing accept"
    );
    while worker.connections.open() >= cap {
        WorkerStats::add(&worker.stats().accept_pauses, 1);
        if !pause(shutdown, Duration::from_millis(5)).await {
            return false;
        }
    }
    true
}

/// Sleep for `d` unless the server stops first; false when it stops.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Counts a connection as open for as long as it lives (and against its address's cap).
struct OpenGuard {
    worker: Rc<Worker>,
    /// The address and the settings generation whose per-IP table counted it.
    counted: Option<(std::net::IpAddr, Arc<Settings>)>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.worker.connections.closed();
        if let Some((ip, settings)) = &self.counted {
            settings.protect.clients.disconnect(*ip);
        }
        let w = &self.worker;
        w.open_connections.set(w.open_connections.get() - 1);
        w.stats()
            .open_connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The connection's client: the peer itself, or, on a PROXY-protocol listener, the address
/// the trusted balancer's header names (with the balancer as `via`). `None`: close it (a peer
/// that is not trusted, or a header that is missing, malformed or late).
async fn proxied_client(
    tcp: &TcpStream,
    peer: SocketAddr,
    worker: &Worker,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let (trusted, limit) = {
        let c = worker.config();
        if !c.proxy.protocol {
            return Some((peer, None));
        }
        (c.proxy.trusts(peer.ip()), c.limits.header_timeout)
    };
    if !trusted {
        WorkerStats::add(&worker.stats().proxy_refusals, 1);
        tracing::debug!(peer = %peer, "PROXY-protocol connection from an untrusted peer closed");
        return None;
    }
    match crate::proxy_protocol::read(tcp, limit).await {
        Ok(source) => Some((source.unwrap_or(peer), Some(peer))),
        Err(e) => {
            WorkerStats::add(&worker.stats().proxy_refusals, 1);
            tracing::debug!(peer = %peer, error = %e, "connection without a valid PROXY header closed");
            None
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    worker: Rc<Worker>,
    tls: Option<usize>,
) {
    worker
        .open_connections
        .set(worker.open_connections.get() + 1);
    WorkerStats::add(&worker.stats().connections, 1);
    WorkerStats::add(&worker.stats().open_connections, 1);
    let mut open = OpenGuard {
        worker: worker.clone(),
        counted: None,
    };
    let Some((peer, via)) = proxied_client(&tcp, peer, &worker).await else {
        return;
    };
    let accepted = worker.protect().clients.connect(peer.ip());
    let refused = match accepted {
        Ok(true) => {
            open.counted = Some((peer.ip(), worker.settings()));
            None
        }
        Ok(false) => None,
        Err(why) => Some(why),
    };
    // Small responses must not wait for Nagle; file data is already sent in large segments.
    let _ = tcp.set_nodelay(true);
    let send_buffer = worker.config().socket.send_buffer;
    if let Some(bytes) = send_buffer {
        let _ = crate::sys::set_send_buffer(&tcp, bytes);
    }
    let (tcp, security, transport) = match tls {
        None => (tcp, Security::Plain, Transport::Plain),
        // Boxed: the handshake's state (rustls's) would otherwise sit inline in every
        // connection's task, plain ones included, for its whole life: about 3 KiB each (15 770
        // -> 12 784 bytes per idle connection; docs/benchmarks.md "Memory per connection").
        Some(block) => match Box::pin(handshake(tcp, block, &worker, peer)).await {
            Some(secured) => secured,
            None => return,
        },
    };
    let conn = Rc::new(ConnShared::new(
        worker.clone(),
        peer,
        via,
        refused,
        transport,
    ));
    let io = TokioIo::new(SendfileIo::new(tcp, conn.clone(), security));
    let result = serve_http(io, &conn, &worker).await;
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
        if let Some(reason) = early_refusal(&e, conn.spoiled.get()) {
            worker.count_early_refusal(reason, peer);
        }
    }
    conn.finish_exchange(true);
}

/// Serve the connection's requests with hyper until the client leaves or, once the server
/// stops, until hyper's graceful shutdown has answered the request in flight.
async fn serve_http(
    io: TokioIo<SendfileIo>,
    conn: &Rc<ConnShared>,
    worker: &Worker,
) -> Result<(), hyper::Error> {
    let connection = worker
        .http
        .borrow()
        .serve_connection(io, FileService::new(conn.clone()));
    tokio::pin!(connection);
    tokio::select! {
        biased;
        r = connection.as_mut() => r,
        () = worker.stop.wait() => 'drain: {
            // A connection accepted just before the stop whose first request has not been read
            // yet would be closed unanswered by hyper's graceful shutdown (it counts as idle).
            // It was accepted, so it gets its answer: wait for its first request to start (the
            // header timeout still bounds a client that sends nothing).
            while conn.requests.get() == 0 {
                tokio::select! {
                    r = connection.as_mut() => break 'drain r,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    }
}

/// The TLS handshake of a connection on the listener of `[[tls]]` block `block`, counted by
/// outcome, and the session handed to the kernel when `ktls = "auto"` and it takes it; `None`
/// when it failed (the connection is closed).
async fn handshake(
    tcp: TcpStream,
    block: usize,
    worker: &Worker,
    peer: SocketAddr,
) -> Option<(TcpStream, Security, Transport)> {
    let settings = worker.settings();
    let endpoint = settings.tls.get(block)?;
    let stats = worker.stats();
    match crate::tls::handshake::accept(tcp, endpoint).await {
        Ok((tcp, session)) => {
            WorkerStats::add(&stats.tls_handshakes, 1);
            if endpoint.ktls == crate::config::Ktls::Off {
                WorkerStats::add(&stats.tls_userspace_connections, 1);
                return Some((tcp, Security::Rustls(Box::new(session)), Transport::Tls));
            }
            offload(tcp, session, worker, peer)
        }
        Err(why) => {
            WorkerStats::add(&stats.tls_handshake_failures[why.index()], 1);
            tracing::debug!(client = %peer, reason = ?why, "TLS handshake failed");
            None
        }
    }
}

/// Hand a session to the kernel, or keep it in userspace when the kernel cannot take it.
fn offload(
    tcp: TcpStream,
    session: rustls::ServerConnection,
    worker: &Worker,
    peer: SocketAddr,
) -> Option<(TcpStream, Security, Transport)> {
    use crate::tls::kernel::Offload;
    let stats = worker.stats();
    match crate::tls::kernel::offload(tcp, session) {
        Offload::Kernel { tcp, prefix } => {
            WorkerStats::add(&stats.tls_kernel_connections, 1);
            Some((tcp, Security::Kernel(prefix), Transport::Ktls))
        }
        Offload::Userspace { tcp, session, why } => {
            WorkerStats::add(&stats.tls_userspace_connections, 1);
            tracing::trace!(client = %peer, why, "TLS stays in userspace");
            Some((tcp, Security::Rustls(session), Transport::Tls))
        }
        Offload::Failed(e) => {
            WorkerStats::add(&stats.tls_kernel_failures, 1);
            tracing::warn!(client = %peer, error = %e, "kernel TLS took the session but not its keys; connection closed");
            None
        }
    }
}

/// Why hyper refused a request before the service saw it (it answered 400 or 431 itself), if
/// it did: the stream guard's reason when it spoiled the head, else hyper's parse error.
fn early_refusal(e: &hyper::Error, spoiled: Option<Spoil>) -> Option<EarlyRefusal> {
    if e.is_parse_too_large() {
        return Some(EarlyRefusal::HeadTooLarge);
    }
    if !e.is_parse() {
        return None;
    }
    Some(match spoiled {
        Some(why) => EarlyRefusal::Guard(why),
        None => EarlyRefusal::Malformed,
    })
}
