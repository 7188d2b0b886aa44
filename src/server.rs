//! Thread-per-core workers. Each worker is an OS thread running a current-thread tokio runtime
//! with its own SO_REUSEPORT listeners, its own open-file cache and its own counters block, so the
//! request path takes no lock and shares no cache line with other workers.
//!
//! Shutdown: [`RunningServer::shutdown`] stops every accept loop, asks each open connection to
//! finish its in-flight response (hyper's graceful shutdown), and waits up to the configured
//! drain deadline before the worker threads return.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use http::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::LocalSet;

use crate::config::Config;
use crate::fs::cache::{Cached, FileCache};
use crate::fs::{self, OpenError, OpenFile};
use crate::io::{ConnShared, SendfileIo};
use crate::protect::Protection;
use crate::service::FileService;
use crate::stats::{Snapshot, Stats, WorkerStats};

/// Recycled header maps kept per worker.
const SPARE_HEADER_MAPS: usize = 64;

/// Everything one worker thread owns.
pub struct Worker {
    pub id: usize,
    pub config: Arc<Config>,
    root: Arc<File>,
    stats: Stats,
    cache: RefCell<FileCache>,
    /// Reused for every request's normalised path, so path handling does not allocate.
    pub scratch_path: RefCell<String>,
    cache_rules: Arc<CacheRules>,
    boundary_seed: u64,
    boundary_counter: Cell<u64>,
    http: http1::Builder,
    open_connections: Cell<usize>,
    /// Archive streams running on all workers (the limit is global).
    pub archives: Arc<std::sync::atomic::AtomicUsize>,
    /// Signed links, client limits and bandwidth rules (shared by all workers).
    pub protect: Arc<Protection>,
    spare_header_maps: RefCell<Vec<HeaderMap>>,
}

/// What every worker shares, handed to each at start.
struct Shared {
    config: Arc<Config>,
    root: Arc<File>,
    stats: Stats,
    cache_rules: Arc<CacheRules>,
    archives: Arc<std::sync::atomic::AtomicUsize>,
    protect: Arc<Protection>,
}

/// Cache-Control rules compiled once.
struct CacheRules {
    globs: GlobSet,
    values: Vec<HeaderValue>,
}

impl Worker {
    /// The served root directory.
    pub fn root(&self) -> &Arc<File> {
        &self.root
    }

    /// This worker's counters.
    pub fn stats(&self) -> &WorkerStats {
        self.stats.worker(self.id)
    }

    /// Open `rel` (normalised) through the open-file cache.
    pub fn open(&self, rel: &str) -> Result<Arc<OpenFile>, OpenError> {
        let now = Instant::now();
        let mut cache = self.cache.borrow_mut();
        match cache.get(rel, now) {
            Cached::Hit(f) => return Ok(f),
            Cached::Stale(_) => {
                // One stat(2) decides whether the path still names the cached file. A changed
                // identity (replaced, or now a symlink elsewhere) falls through to a full open
                // under the symlink rule.
                let same = std::fs::metadata(self.config.root.join(rel))
                    .ok()
                    .and_then(|meta| cache.revalidate(rel, &meta, now));
                match same {
                    Some(entry) => return Ok(entry),
                    None => cache.remove(rel),
                }
            }
            Cached::Miss => {}
        }
        let (file, meta) = fs::open(&self.root, rel, self.config.symlinks)?;
        let entry = Arc::new(fs::describe(file, &meta, rel, self.cache_control_for(rel)));
        cache.insert(rel, entry.clone(), now);
        Ok(entry)
    }

    fn cache_control_for(&self, rel: &str) -> Option<HeaderValue> {
        if self.cache_rules.values.is_empty() {
            return None;
        }
        let path = format!("/{rel}");
        let first = self.cache_rules.globs.matches(&path).into_iter().min()?;
        Some(self.cache_rules.values[first].clone())
    }

    /// A multipart boundary that will not repeat on this server: a per-worker random seed and a
    /// counter.
    pub fn next_boundary(&self) -> String {
        let n = self.boundary_counter.get().wrapping_add(1);
        self.boundary_counter.set(n);
        format!("sendfiled-{:016x}{:08x}", self.boundary_seed, n)
    }

    /// An empty header map, reusing a recycled one when there is one.
    pub fn take_header_map(&self) -> HeaderMap {
        self.spare_header_maps
            .borrow_mut()
            .pop()
            .unwrap_or_default()
    }

    /// Keep a request's header map (emptied) for a later response.
    pub fn recycle_header_map(&self, mut map: HeaderMap) {
        if map.capacity() == 0 {
            return;
        }
        map.clear();
        let mut spare = self.spare_header_maps.borrow_mut();
        if spare.len() < SPARE_HEADER_MAPS {
            spare.push(map);
        }
    }
}

/// A started server: its bound addresses, counters, and the handle to stop it.
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    stats: Stats,
    shutdown: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
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
        let _ = self.shutdown.send(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Bind the listeners and start the workers. Errors (root, listen addresses) come back before
/// any worker runs.
pub fn start(config: Config) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let root = Arc::new(
        File::open(&config.root)
            .map_err(|e| anyhow::anyhow!("root {}: {e}", config.root.display()))?,
    );
    let rules = compile_rules(&config)?;
    let (listeners, addrs) =
        crate::listen::bind_all(&config.listen, config.workers, &config.socket)?;
    let stats = Stats::new(config.workers);
    let (tx, rx) = watch::channel(false);
    let seed = boundary_seed();
    let archives = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let protect = Arc::new(Protection::new(&config)?);

    let mut threads = Vec::with_capacity(config.workers);
    for (id, listeners) in listeners.into_iter().enumerate() {
        let shared = Shared {
            config: config.clone(),
            root: root.clone(),
            stats: stats.clone(),
            cache_rules: rules.clone(),
            archives: archives.clone(),
            protect: protect.clone(),
        };
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
    for a in &addrs {
        tracing::info!("listening on {a}");
    }
    Ok(RunningServer {
        addrs,
        stats,
        shutdown: tx,
        threads,
    })
}

impl Worker {
    fn new(id: usize, shared: Shared, seed: u64) -> Worker {
        let Shared {
            config,
            root,
            stats,
            cache_rules,
            archives,
            protect,
        } = shared;
        let mut http = http1::Builder::new();
        // Queue strategy: hyper hands us body Bufs as IoSlices without copying (sendfile needs it).
        // Never pipeline_flush: it would force the flattening strategy that copies bodies.
        http.writev(true)
            .keep_alive(true)
            .half_close(false)
            .max_header_size(config.limits.header_bytes)
            // Our IO layer enforces head and idle timeouts with keep-alive awareness.
            .header_read_timeout(None);
        if config.limits.max_headers != crate::config::defaults::MAX_HEADERS {
            http.max_headers(config.limits.max_headers);
        }
        let c = &config.open_file_cache;
        Worker {
            id,
            cache: RefCell::new(FileCache::new(c.entries, c.mapped_bytes, c.valid)),
            config,
            root,
            stats,
            scratch_path: RefCell::new(String::with_capacity(256)),
            cache_rules,
            boundary_seed: seed,
            boundary_counter: Cell::new(0),
            http,
            open_connections: Cell::new(0),
            spare_header_maps: RefCell::new(Vec::with_capacity(SPARE_HEADER_MAPS)),
            archives,
            protect,
        }
    }
}

fn compile_rules(config: &Config) -> anyhow::Result<Arc<CacheRules>> {
    let mut set = GlobSetBuilder::new();
    let mut values = Vec::new();
    for rule in &config.cache_control {
        set.add(
            GlobBuilder::new(&rule.path)
                .literal_separator(true)
                .build()?,
        );
        values.push(HeaderValue::from_str(&rule.value)?);
    }
    Ok(Arc::new(CacheRules {
        globs: set.build()?,
        values,
    }))
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
    let drain = worker.config.limits.shutdown_timeout;
    let worker = Rc::new(worker);
    local.block_on(&rt, async move {
        for l in listeners {
            let listener = TcpListener::from_std(l)?;
            tokio::task::spawn_local(accept_loop(listener, worker.clone(), shutdown.clone()));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Accept loops have stopped; connections are finishing their responses.
        let deadline = tokio::time::Instant::now() + drain;
        while worker.open_connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

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
        let cap = worker.protect.max_connections;
        while worker.protect.connections.open() >= cap {
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
                worker.protect.connections.opened();
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
    counted_ip: Option<std::net::IpAddr>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.worker.protect.connections.closed();
        if let Some(ip) = self.counted_ip {
            self.worker.protect.clients.disconnect(ip);
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
    let (counted_ip, refused) = match worker.protect.clients.connect(peer.ip()) {
        Ok(counted) => (counted.then_some(peer.ip()), None),
        Err(why) => (None, Some(why)),
    };
    let _open = OpenGuard {
        worker: worker.clone(),
        counted_ip,
    };
    // Small responses must not wait for Nagle; file data is already sent in large segments.
    let _ = tcp.set_nodelay(true);
    if let Some(bytes) = worker.config.socket.send_buffer {
        let _ = crate::sys::set_send_buffer(&tcp, bytes);
    }
    let conn = Rc::new(ConnShared::new(worker.clone(), peer, refused));
    let io = TokioIo::new(SendfileIo::new(tcp, conn.clone()));
    let connection = worker.http.serve_connection(io, FileService::new(conn));
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutdown.wait_for(|stop| *stop) => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}
