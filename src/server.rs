//! Thread-per-core workers. Each worker is an OS thread running a current-thread tokio runtime
//! with its own SO_REUSEPORT listeners, its own open-file cache and its own counters block, so the
//! request path takes no lock and shares no cache line with other workers.
//!
//! Shutdown: [`RunningServer::shutdown`] stops every accept loop, asks each open connection to
//! finish its in-flight response (hyper's graceful shutdown), and waits up to the configured
//! drain deadline before the worker threads return.

use std::fs::File;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::LocalSet;

use crate::body_budget::BodyBudget;
use crate::config::Config;
use crate::conn::ConnShared;
use crate::framing::{EarlyRefusal, Spoil};
use crate::io::SendfileIo;
use crate::protect::clients::ConnectionCount;
use crate::service::FileService;
use crate::settings::{Live, Settings};
use crate::stats::{Snapshot, Stats, WorkerStats};
use crate::worker::{Shared, Worker};

/// A started server: its bound addresses, counters, and the handle to stop it.
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    stats: Stats,
    shutdown: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Shared,
    admin: Option<(SocketAddr, std::thread::JoinHandle<()>)>,
    admin_stop: watch::Sender<bool>,
}

impl RunningServer {
    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The sum of all workers' counters now.
    pub fn stats(&self) -> Snapshot {
        self.stats.snapshot()
    }

    /// Stop accepting, let in-flight responses finish (up to the drain deadline), and wait for
    /// every worker to exit.
    pub fn shutdown(self) {
        self.begin_shutdown();
        for t in self.threads {
            let _ = t.join();
        }
        if let Some(log) = &self.shared.live.current().access_log {
            log.wait_written(Duration::from_secs(2));
        }
        // The admin endpoints stay up through the drain (/readyz says 503 meanwhile).
        let _ = self.admin_stop.send(true);
        if let Some((_, t)) = self.admin {
            let _ = t.join();
        }
    }

    /// The admin listener's address, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// Stop accepting and start draining, without waiting.
    pub fn begin_shutdown(&self) {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shutdown.send(true);
    }

    /// Whether the server is draining (stopping).
    pub fn draining(&self) -> bool {
        self.shared
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.shared.live.current()
    }

    /// Archive streams running now.
    pub fn archives_active(&self) -> usize {
        self.shared
            .archives
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replace the settings with `config` (SIGHUP). Keys, limits, rules and protections take
    /// effect at each worker's next request; the root, the listeners and the worker count are
    /// fixed for the life of the process, and a change to them is reported and ignored.
    pub fn reload(&self, config: Config) -> anyhow::Result<()> {
        let old = self.shared.live.current();
        let fixed = [
            ("root", old.config.root != config.root),
            ("listen", old.config.listen != config.listen),
            ("workers", old.config.workers != config.workers),
        ];
        for (key, changed) in fixed {
            if changed {
                tracing::warn!(
                    key,
                    "changed in the configuration; takes effect only on restart"
                );
            }
        }
        let settings = Settings::new(config)?;
        self.shared
            .bodies
            .set_cap(settings.config.limits.body_memory);
        self.shared.live.replace(settings);
        Ok(())
    }

    /// Every worker's heartbeat count (see [`HEARTBEAT`]).
    pub fn heartbeats(&self) -> Vec<u64> {
        (0..self.threads.len())
            .map(|i| {
                self.stats
                    .worker(i)
                    .heartbeats
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .collect()
    }
}

/// Bind the listeners and start the workers. Errors (root, listen addresses) come back before
/// any worker runs.
pub fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with(config, Vec::new())
}

/// Like [`start`], serving on `inherited` listeners (socket activation) instead of binding
/// `config.listen` when there are any; every worker accepts on every inherited socket.
pub fn start_with(
    config: Config,
    inherited: Vec<std::net::TcpListener>,
) -> anyhow::Result<RunningServer> {
    let root = Arc::new(
        File::open(&config.root)
            .map_err(|e| anyhow::anyhow!("root {}: {e}", config.root.display()))?,
    );
    let workers = config.workers;
    let (listeners, addrs) = if inherited.is_empty() {
        crate::listen::bind_all(&config.listen, workers, &config.socket)?
    } else {
        let mut addrs = Vec::new();
        for l in &inherited {
            l.set_nonblocking(true)?;
            addrs.push(l.local_addr()?);
        }
        let mut per_worker = Vec::with_capacity(workers);
        for _ in 0..workers {
            per_worker.push(
                inherited
                    .iter()
                    .map(|l| l.try_clone())
                    .collect::<std::io::Result<Vec<_>>>()?,
            );
        }
        (per_worker, addrs)
    };
    let stats = Stats::new(workers);
    let (tx, rx) = watch::channel(false);
    let seed = boundary_seed();
    let admin_listen = config.admin_listen;
    let body_memory = config.limits.body_memory;
    let cache_fd_share = cache_fd_share(&config);
    let shared = Shared {
        live: Arc::new(Live::new(Settings::new(config)?)),
        root,
        stats: stats.clone(),
        archives: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        connections: Arc::new(ConnectionCount::default()),
        bodies: Arc::new(BodyBudget::new(body_memory)),
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        cache_fd_share,
    };

    let mut threads = Vec::with_capacity(workers);
    for (id, listeners) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let rx = rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sendfiled-w{id}"))
            .spawn(move || {
                let worker = Worker::new(
                    id,
                    shared,
                    seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                if let Err(e) = run_worker(worker, listeners, rx) {
                    tracing::error!(worker = id, error = %e, "worker failed");
                }
            })?;
        threads.push(thread);
    }
    let (admin_stop, admin_rx) = watch::channel(false);
    let admin = match admin_listen {
        Some(addr) => {
            let state = crate::admin::AdminState {
                stats: stats.clone(),
                archives: shared.archives.clone(),
                draining: shared.draining.clone(),
                workers,
                seen: Default::default(),
            };
            match crate::admin::start(addr, state, admin_rx) {
                Ok((bound, thread)) => {
                    tracing::info!("admin endpoint on {bound}");
                    Some((bound, thread))
                }
                Err(e) => {
                    let _ = tx.send(true);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    for a in &addrs {
        tracing::info!("listening on {a}");
    }
    Ok(RunningServer {
        addrs,
        stats,
        shutdown: tx,
        threads,
        shared,
        admin,
        admin_stop,
    })
}

/// Each worker's share of the descriptors open-file caches may hold: half of RLIMIT_NOFILE, so
/// that the other half stays for connections, listeners, logs and archive reads. A configured
/// `open_file_cache.entries` above it is lowered, and the start-up log says so.
fn cache_fd_share(config: &Config) -> usize {
    let limit = crate::sys::nofile_limit().unwrap_or(1024);
    let share = usize::try_from(limit / 2).unwrap_or(usize::MAX) / config.workers.max(1);
    let configured = config.open_file_cache.entries;
    if configured > share {
        tracing::warn!(
            configured,
            lowered_to = share,
            nofile = limit,
            workers = config.workers,
            "open_file_cache.entries lowered: the caches may hold at most half of the open-files limit, the rest is left for connections"
        );
    }
    share
}

fn boundary_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

fn run_worker(
    worker: Worker,
    listeners: Vec<std::net::TcpListener>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(64)
        .thread_name(format!("sendfiled-w{}-blocking", worker.id))
        .build()?;
    let local = LocalSet::new();
    let worker = Rc::new(worker);
    local.block_on(&rt, async move {
        for l in listeners {
            let listener = TcpListener::from_std(l)?;
            tokio::task::spawn_local(accept_loop(listener, worker.clone(), shutdown.clone()));
        }
        tokio::task::spawn_local(heartbeat(worker.clone()));
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Accept loops have stopped (and dropped their listeners, so that new connections are
        // refused, or queued by systemd under socket activation); connections are finishing.
        worker.refresh();
        let drain = worker.config().limits.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        while worker.open_connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.flush_log();
        Ok(())
    })
}

/// Proof of life for the systemd watchdog: the main thread pings only while every worker's
/// counter keeps moving, so a wedged worker stops the pings and systemd restarts the service.
async fn heartbeat(worker: Rc<Worker>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        WorkerStats::add(&worker.stats().heartbeats, 1);
        worker.flush_log();
    }
}

/// How often each worker proves it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

async fn accept_loop(
    listener: TcpListener,
    worker: Rc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut fd_exhaustion_logged = false;
    let mut cap_logged = false;
    loop {
        // The global connection cap: stop accepting (the kernel keeps queueing in the backlog)
        // until connections close, rather than accepting and failing them.
        worker.refresh();
        let cap = worker.protect().max_connections;
        while worker.connections.open() >= cap {
            if !cap_logged {
                tracing::warn!(
                    max_connections = cap,
                    "connection cap reached, pausing accept"
                );
                cap_logged = true;
            }
            WorkerStats::add(&worker.stats().accept_pauses, 1);
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        cap_logged = false;
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
                tokio::task::spawn_local(serve_connection(
                    tcp,
                    peer,
                    worker.clone(),
                    shutdown.clone(),
                ));
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
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
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

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    worker: Rc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) {
    worker
        .open_connections
        .set(worker.open_connections.get() + 1);
    WorkerStats::add(&worker.stats().connections, 1);
    WorkerStats::add(&worker.stats().open_connections, 1);
    let accepted = worker.protect().clients.connect(peer.ip());
    let (counted, refused) = match accepted {
        Ok(true) => (Some((peer.ip(), worker.settings())), None),
        Ok(false) => (None, None),
        Err(why) => (None, Some(why)),
    };
    let _open = OpenGuard {
        worker: worker.clone(),
        counted,
    };
    // Small responses must not wait for Nagle; file data is already sent in large segments.
    let _ = tcp.set_nodelay(true);
    let send_buffer = worker.config().socket.send_buffer;
    if let Some(bytes) = send_buffer {
        let _ = crate::sys::set_send_buffer(&tcp, bytes);
    }
    let conn = Rc::new(ConnShared::new(worker.clone(), peer, refused));
    let io = TokioIo::new(SendfileIo::new(tcp, conn.clone()));
    let conn_for_log = conn.clone();
    let connection = worker
        .http
        .borrow()
        .serve_connection(io, FileService::new(conn));
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutdown.wait_for(|stop| *stop) => 'drain: {
            // A connection accepted just before the stop whose first request has not been read
            // yet would be closed unanswered by hyper's graceful shutdown (it counts as idle).
            // It was accepted, so it gets its answer: wait for its first request to start (the
            // header timeout still bounds a client that sends nothing).
            while conn_for_log.requests.get() == 0 {
                tokio::select! {
                    r = connection.as_mut() => break 'drain r,
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
            }
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
        if let Some(reason) = early_refusal(&e, conn_for_log.spoiled.get()) {
            worker.count_early_refusal(reason, peer);
        }
    }
    conn_for_log.finish_exchange(true);
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
