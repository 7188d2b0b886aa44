//! Thread-per-core workers. Each worker is an OS thread running a current-thread tokio runtime
//! with its own SO_REUSEPORT listeners, its own open-file cache and its own counters block, so the
//! request path takes no lock and shares no cache line with other workers.
//!
//! Shutdown: [`RunningServer::shutdown`] stops every accept loop, asks each open connection to
//! finish its in-flight response (hyper's graceful shutdown), and waits up to the configured
//! drain deadline before the worker threads return.

use std::cell::{Cell, Ref, RefCell};
use std::fs::File;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::LocalSet;

use crate::config::Config;
use crate::framing::Spoil;
use crate::fs::cache::{Cached, FileCache};
use crate::fs::{self, OpenError, OpenFile};
use crate::io::{ConnShared, SendfileIo};
use crate::protect::clients::ConnectionCount;
use crate::protect::Protection;
use crate::request_body::BodyBudget;
use crate::service::FileService;
use crate::settings::{Live, Settings};
use crate::stats::{Snapshot, Stats, WorkerStats};

/// Recycled header maps kept per worker.
const SPARE_HEADER_MAPS: usize = 64;

/// Everything one worker thread owns.
pub struct Worker {
    pub id: usize,
    /// The shared, reloadable settings and this worker's reference to the current generation.
    live: Arc<Live>,
    settings: RefCell<Arc<Settings>>,
    generation: Cell<u64>,
    root: Arc<File>,
    root_path: std::path::PathBuf,
    stats: Stats,
    cache: RefCell<FileCache>,
    /// Reused for every request's normalised path, so path handling does not allocate.
    pub scratch_path: RefCell<String>,
    boundary_seed: u64,
    boundary_counter: Cell<u64>,
    http: RefCell<http1::Builder>,
    open_connections: Cell<usize>,
    /// Archive streams running on all workers (the limit is global).
    pub archives: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections open on all workers (the cap is global).
    pub connections: Arc<ConnectionCount>,
    /// Request-body memory held by all workers (the budget is global).
    pub bodies: Arc<BodyBudget>,
    /// Set when the server starts draining.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    spare_header_maps: RefCell<Vec<HeaderMap>>,
    /// Access-log lines waiting to be written (flushed by size and by the heartbeat).
    log_buf: RefCell<Vec<u8>>,
    last_drop_warning: Cell<Option<Instant>>,
    /// Most open-file cache entries this worker may keep: its share of the descriptors the
    /// caches may hold (see [`cache_fd_share`]).
    cache_fd_share: usize,
    /// When "out of descriptors" was last logged (once per [`LOG_DROP_WARNING`]).
    pub last_emfile_warning: Cell<Option<Instant>>,
    /// When an early refusal was last logged, and how many went unlogged since.
    early_refusal_log: Cell<(Option<Instant>, u64)>,
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
    pub const LABELS: [&'static str; 5] = [
        "bare_lf",
        "duplicate_framing",
        "bad_content_length",
        "head_too_large",
        "malformed",
    ];

    fn index(self) -> usize {
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

/// Access-log bytes a worker buffers before writing them out.
const LOG_BATCH: usize = 32 * 1024;

/// Shortest time between two warnings about dropped access-log lines.
const LOG_DROP_WARNING: Duration = Duration::from_secs(10);

/// What every worker shares, handed to each at start.
#[derive(Clone)]
struct Shared {
    live: Arc<Live>,
    root: Arc<File>,
    stats: Stats,
    archives: Arc<std::sync::atomic::AtomicUsize>,
    connections: Arc<ConnectionCount>,
    bodies: Arc<BodyBudget>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    cache_fd_share: usize,
}

impl Worker {
    /// Switch to the newest settings if they were replaced (a reload). Called at each request
    /// and accept; one atomic load when nothing changed.
    pub fn refresh(&self) {
        let generation = self.live.generation();
        if generation == self.generation.get() {
            return;
        }
        let settings = self.live.current();
        *self.http.borrow_mut() = http_builder(&settings.config);
        // Cached entries carry Cache-Control values of the old rules; the bounds may change too.
        let c = &settings.config.open_file_cache;
        let entries = c.entries.min(self.cache_fd_share);
        *self.cache.borrow_mut() = FileCache::new(entries, c.mapped_bytes, c.valid);
        *self.settings.borrow_mut() = settings;
        self.generation.set(generation);
    }

    /// The configuration in force (do not hold across an await: a reload replaces it).
    pub fn config(&self) -> Ref<'_, Config> {
        Ref::map(self.settings.borrow(), |s| &s.config)
    }

    /// The protections in force (do not hold across an await).
    pub fn protect(&self) -> Ref<'_, Protection> {
        Ref::map(self.settings.borrow(), |s| &s.protect)
    }

    /// Whether the access log is on (exchanges then capture their text).
    pub fn logging(&self) -> bool {
        self.settings.borrow().access_log.is_some()
    }

    /// Append an exchange's line to the log buffer.
    pub fn log_exchange(
        &self,
        x: &crate::access_log::Exchange,
        client: SocketAddr,
        bytes: u64,
        seconds: f64,
        aborted: bool,
    ) {
        let settings = self.settings.borrow();
        let Some(log) = &settings.access_log else {
            return;
        };
        let mut buf = self.log_buf.borrow_mut();
        x.write_line(&mut buf, log.format(), client, bytes, seconds, aborted);
        if buf.len() >= LOG_BATCH {
            let batch = std::mem::replace(&mut *buf, Vec::with_capacity(LOG_BATCH + 1024));
            self.hand_to_log(log, batch);
        }
    }

    /// Count (and log, at most once a second per worker) a request refused before the service.
    pub fn count_early_refusal(&self, reason: EarlyRefusal, client: SocketAddr) {
        WorkerStats::add(&self.stats().early_refusals[reason.index()], 1);
        let now = Instant::now();
        let (last, quiet) = self.early_refusal_log.get();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.early_refusal_log.set((last, quiet + 1));
            return;
        }
        self.early_refusal_log.set((Some(now), 0));
        tracing::info!(
            client = %client,
            reason = reason.label(),
            not_logged_since_last = quiet,
            "request refused before it reached the service"
        );
    }

    /// Write out buffered access-log lines.
    pub fn flush_log(&self) {
        let batch = std::mem::take(&mut *self.log_buf.borrow_mut());
        if batch.is_empty() {
            return;
        }
        if let Some(log) = &self.settings.borrow().access_log {
            self.hand_to_log(log, batch);
        }
    }

    /// Queue a batch for the log writer; a full queue drops it, counted, with a warning at most
    /// every [`LOG_DROP_WARNING`].
    fn hand_to_log(&self, log: &crate::access_log::AccessLog, batch: Vec<u8>) {
        let Err(lines) = log.write_batch(batch) else {
            return;
        };
        WorkerStats::add(&self.stats().log_lines_dropped, lines);
        let now = Instant::now();
        let due = self
            .last_drop_warning
            .get()
            .is_none_or(|then| now.duration_since(then) >= LOG_DROP_WARNING);
        if due {
            self.last_drop_warning.set(Some(now));
            tracing::warn!(
                worker = self.id,
                "the access log cannot keep up; lines are being dropped (see sendfiled_access_log_dropped_lines_total)"
            );
        }
    }

    /// The settings in force, to keep across an await.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

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
        self.open_cached(rel, rel, |file, meta, settings| {
            fs::describe(file, meta, rel, settings.cache_rules.value_for(rel))
        })
    }

    /// Open the precompressed variant of `base` (at `rel`) for `coding`, through the cache under
    /// a key no request path can spell.
    pub fn open_variant(
        &self,
        rel: &str,
        base: &OpenFile,
        coding: crate::http::encoding::Coding,
    ) -> Result<Arc<OpenFile>, OpenError> {
        // Built on the stack: this runs for every request that negotiates a variant.
        let mut buf = smallvec::SmallVec::<[u8; 512]>::new();
        buf.extend_from_slice(rel.as_bytes());
        buf.extend_from_slice(coding.suffix().as_bytes());
        let disk_end = buf.len();
        buf.extend_from_slice(rel.as_bytes());
        buf.push(0);
        buf.extend_from_slice(coding.token().as_bytes());
        let (disk, key) = buf.split_at(disk_end);
        let (Ok(disk), Ok(key)) = (std::str::from_utf8(disk), std::str::from_utf8(key)) else {
            return Err(OpenError::NotFound);
        };
        let found = self.open_cached(key, disk, |file, meta, _| {
            fs::describe_variant(file, meta, base, coding)
        })?;
        if found.is_dir {
            return Err(OpenError::NotRegular);
        }
        Ok(found)
    }

    /// Which variants in `order` exist beside `base` (at `rel`) and are at least as new as it,
    /// as a bitmask by index. A stale variant (older than the file) is never served. The answer
    /// is kept on the base entry and checked again after `open_file_cache.valid`.
    pub fn variants(
        &self,
        rel: &str,
        base: &OpenFile,
        order: &[crate::http::encoding::Coding],
    ) -> u8 {
        use std::sync::atomic::Ordering::Relaxed;
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(Instant::now);
        let now_ms = epoch.elapsed().as_millis() as u64 + 1;
        let valid_ms = self.config().open_file_cache.valid.as_millis() as u64;
        let probe = base.variant_probe.load(Relaxed);
        if probe != 0 && now_ms.saturating_sub(probe >> 8) <= valid_ms {
            return probe as u8;
        }
        let mut mask = 0u8;
        for (i, coding) in order.iter().enumerate().take(8) {
            if let Ok(v) = self.open_variant(rel, base, *coding) {
                if v.key.mtime_ns >= base.key.mtime_ns {
                    mask |= 1 << i;
                }
            }
        }
        base.variant_probe
            .store((now_ms << 8) | u64::from(mask), Relaxed);
        mask
    }

    /// The open-file cache around `describe`: a hit costs nothing, a stale entry one stat(2) of
    /// `disk_rel`, a miss an open beneath the root under the symlink rule.
    fn open_cached(
        &self,
        key: &str,
        disk_rel: &str,
        describe: impl FnOnce(File, &std::fs::Metadata, &Settings) -> OpenFile,
    ) -> Result<Arc<OpenFile>, OpenError> {
        let now = Instant::now();
        let mut cache = self.cache.borrow_mut();
        match cache.get(key, now) {
            Cached::Hit(f) => {
                WorkerStats::add(&self.stats().open_file_cache_hits, 1);
                return Ok(f);
            }
            Cached::Stale(_) => {
                // One stat(2) decides whether the path still names the cached file. A changed
                // identity (replaced, or now a symlink elsewhere) falls through to a full open
                // under the symlink rule.
                let same = std::fs::metadata(self.root_path.join(disk_rel))
                    .ok()
                    .and_then(|meta| cache.revalidate(key, &meta, now));
                match same {
                    Some(entry) => {
                        WorkerStats::add(&self.stats().open_file_cache_hits, 1);
                        return Ok(entry);
                    }
                    None => cache.remove(key),
                }
            }
            Cached::Miss => {}
        }
        WorkerStats::add(&self.stats().open_file_cache_misses, 1);
        let settings = self.settings.borrow();
        let (file, meta) = match fs::open(&self.root, disk_rel, settings.config.symlinks) {
            Err(OpenError::Io(e)) if e.raw_os_error() == Some(libc::EMFILE) => {
                // Out of descriptors: cached files hold some. Close a quarter of them and try
                // once more, so that the cache can never keep every descriptor.
                let quarter = cache.len().div_ceil(4);
                let closed = cache.shed(quarter);
                WorkerStats::add(&self.stats().open_file_cache_sheds, closed as u64);
                fs::open(&self.root, disk_rel, settings.config.symlinks)?
            }
            other => other?,
        };
        let entry = Arc::new(describe(file, &meta, &settings));
        drop(settings);
        cache.insert(key, entry.clone(), now);
        Ok(entry)
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

impl Worker {
    fn new(id: usize, shared: Shared, seed: u64) -> Worker {
        let Shared {
            live,
            root,
            stats,
            archives,
            connections,
            bodies,
            draining,
            cache_fd_share,
        } = shared;
        let settings = live.current();
        let generation = live.generation();
        let c = &settings.config.open_file_cache;
        let entries = c.entries.min(cache_fd_share);
        Worker {
            id,
            cache: RefCell::new(FileCache::new(entries, c.mapped_bytes, c.valid)),
            http: RefCell::new(http_builder(&settings.config)),
            root_path: settings.config.root.clone(),
            settings: RefCell::new(settings),
            generation: Cell::new(generation),
            live,
            root,
            stats,
            scratch_path: RefCell::new(String::with_capacity(256)),
            boundary_seed: seed,
            boundary_counter: Cell::new(0),
            open_connections: Cell::new(0),
            spare_header_maps: RefCell::new(Vec::with_capacity(SPARE_HEADER_MAPS)),
            log_buf: RefCell::new(Vec::new()),
            last_drop_warning: Cell::new(None),
            cache_fd_share,
            last_emfile_warning: Cell::new(None),
            early_refusal_log: Cell::new((None, 0)),
            archives,
            connections,
            bodies,
            draining,
        }
    }
}

/// hyper's connection settings for `config`.
fn http_builder(config: &Config) -> http1::Builder {
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
    http
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
