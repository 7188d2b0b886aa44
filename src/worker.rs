//! One worker's state: the settings generation it serves with, its open-file cache (with the
//! precompressed-variant probe), its recycled header maps, multipart boundaries, access-log batch
//! and counters. A worker thread owns exactly one; everything here is single-threaded.

use std::cell::{Cell, Ref, RefCell};
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use hyper::server::conn::http1;

use crate::body_budget::BodyBudget;
use crate::config::Config;
use crate::framing::EarlyRefusal;
use crate::fs::cache::{Cached, FileCache};
use crate::fs::{self, OpenError, OpenFile};
use crate::protect::clients::ConnectionCount;
use crate::protect::Protection;
use crate::settings::{Live, Settings};
use crate::stats::{Stats, WorkerStats};

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
    /// hyper's connection settings for the settings in force.
    pub http: RefCell<http1::Builder>,
    /// Connections this worker serves now (the drain waits for them).
    pub open_connections: Cell<usize>,
    /// Archive streams running on all workers (the limit is global).
    pub archives: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections open on all workers (the cap is global).
    pub connections: Arc<ConnectionCount>,
    /// Request-body memory held by all workers (the budget is global).
    pub bodies: Arc<BodyBudget>,
    /// Set when the server starts draining.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the worker stops: its connections finish their exchange and close.
    pub stop: crate::stop::Stop,
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
    /// Paths whose stale precompressed variant was logged already (bounded).
    stale_variants_logged: RefCell<std::collections::HashSet<Box<str>>>,
    /// The inotify watches that vouch for known digests, made on first use (on the runtime).
    watches: std::cell::OnceCell<Option<fs::watch::Watches>>,
}

/// Access-log bytes a worker buffers before writing them out.
const LOG_BATCH: usize = 64 * 1024;

/// Shortest time between two warnings about dropped access-log lines.
const LOG_DROP_WARNING: Duration = Duration::from_secs(10);

/// What every worker shares, handed to each at start.
#[derive(Clone)]
pub struct Shared {
    pub live: Arc<Live>,
    pub root: Arc<File>,
    pub stats: Stats,
    pub archives: Arc<std::sync::atomic::AtomicUsize>,
    pub connections: Arc<ConnectionCount>,
    pub bodies: Arc<BodyBudget>,
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    pub cache_fd_share: usize,
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
        *self.cache.borrow_mut() =
            file_cache(&settings.config.open_file_cache, self.cache_fd_share);
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
        x: &mut crate::access_log::Exchange,
        (client, peer): (SocketAddr, SocketAddr),
        bytes: u64,
        seconds: f64,
        aborted: bool,
    ) {
        let settings = self.settings.borrow();
        let Some(log) = &settings.access_log else {
            return;
        };
        let mut buf = self.log_buf.borrow_mut();
        x.write_line(
            &mut buf,
            log.format(),
            (client, peer),
            bytes,
            seconds,
            aborted,
        );
        if buf.len() >= LOG_BATCH {
            let batch = std::mem::replace(&mut *buf, log.empty_batch(LOG_BATCH + 1024));
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
        let mut buf = self.log_buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let settings = self.settings.borrow();
        let Some(log) = &settings.access_log else {
            buf.clear(); // the log was turned off by a reload: its lines go nowhere
            return;
        };
        let batch = std::mem::replace(&mut *buf, log.empty_batch(LOG_BATCH + 1024));
        drop(buf);
        self.hand_to_log(log, batch);
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

    /// This worker's change watches, with the events its reactor has seen applied; `None` where
    /// inotify is unavailable (or off the runtime).
    pub fn watches(&self) -> Option<&fs::watch::Watches> {
        let watches = self
            .watches
            .get_or_init(|| {
                tokio::runtime::Handle::try_current().ok()?;
                fs::watch::Watches::new()
            })
            .as_ref()?;
        watches.settle();
        Some(watches)
    }

    /// This worker's counters.
    pub fn stats(&self) -> &WorkerStats {
        self.stats.worker(self.id)
    }

    /// Open `rel` (normalised) through the open-file cache.
    pub fn open(&self, rel: &str) -> Result<Arc<OpenFile>, OpenError> {
        self.open_cached(rel, rel, |file, meta, settings| {
            fs::describe(
                file,
                meta,
                rel,
                settings.config.cache_control.value_for(rel),
            )
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
                if fs::as_new_as(&v.key, &base.key) {
                    mask |= 1 << i;
                } else {
                    self.stale_variant(rel, *coding);
                }
            }
        }
        base.variant_probe
            .store((now_ms << 8) | u64::from(mask), Relaxed);
        mask
    }

    /// Count a variant skipped as older than its file, and log it once per path (per worker,
    /// for the first 4096 paths), so that a variant that is never served does not go unseen.
    fn stale_variant(&self, rel: &str, coding: crate::http::encoding::Coding) {
        WorkerStats::add(&self.stats().stale_variants, 1);
        let mut logged = self.stale_variants_logged.borrow_mut();
        if logged.len() >= 4096 || logged.contains(rel) {
            return;
        }
        logged.insert(rel.into());
        tracing::warn!(
            path = rel,
            variant = coding.suffix(),
            "precompressed variant is older than its file and is not served (regenerate it)"
        );
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
                let s = self.stats();
                WorkerStats::add(&s.open_file_cache_hits, 1);
                s.small_cache_bytes
                    .store(cache.small_bytes(), std::sync::atomic::Ordering::Relaxed);
                return Ok(f);
            }
            Cached::Stale => {
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

impl Worker {
    /// Worker `id`'s state, from what all workers share; `seed` makes its multipart boundaries
    /// its own.
    pub fn new(id: usize, shared: Shared, seed: u64) -> Worker {
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
        Worker {
            id,
            cache: RefCell::new(file_cache(&settings.config.open_file_cache, cache_fd_share)),
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
            stop: crate::stop::Stop::default(),
            spare_header_maps: RefCell::new(Vec::with_capacity(SPARE_HEADER_MAPS)),
            log_buf: RefCell::new(Vec::new()),
            last_drop_warning: Cell::new(None),
            cache_fd_share,
            last_emfile_warning: Cell::new(None),
            early_refusal_log: Cell::new((None, 0)),
            stale_variants_logged: RefCell::default(),
            watches: std::cell::OnceCell::new(),
            archives,
            connections,
            bodies,
            draining,
        }
    }
}

/// hyper's connection settings for `config`.
/// An empty open-file cache under `c`, holding at most `fd_share` descriptors.
fn file_cache(c: &crate::config::OpenFileCacheSettings, fd_share: usize) -> FileCache {
    FileCache::new(c.entries.min(fd_share), c.mapped_bytes, c.valid)
        .with_small_bodies(c.small_body_max, c.small_body_bytes)
}

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
