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

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::LocalSet;

use crate::body_budget::BodyBudget;
use crate::config::Config;
use crate::protect::clients::ConnectionCount;
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
    /// Set when a stop is announced: /readyz fails while the node still serves.
    unready: Arc<std::sync::atomic::AtomicBool>,
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

    /// Tell the load balancer that this node is going away: /readyz fails from now on, while
    /// the node goes on accepting and serving (the drain delay).
    pub fn announce_stop(&self) {
        self.unready
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
        let listeners = |c: &Config| c.tls.iter().map(|t| t.listen.clone()).collect::<Vec<_>>();
        if listeners(&old.config) != listeners(&config) {
            anyhow::bail!(
                "the [[tls]] blocks or their listen addresses changed; that takes a restart (keeping the running configuration)"
            );
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
    let Bound {
        listeners,
        addrs,
        roles,
    } = bind_or_share(&config, inherited)?;
    let stats = Stats::new(workers);
    let (tx, rx) = watch::channel(false);
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
    let threads = spawn_workers(listeners, &roles, &shared, &rx)?;
    let (admin_stop, admin_rx) = watch::channel(false);
    let unready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin = match admin_listen {
        None => None,
        Some(addr) => match start_admin(addr, &shared, &unready, workers, admin_rx) {
            Ok(admin) => Some(admin),
            Err(e) => {
                let _ = tx.send(true);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        },
    };
    for (a, role) in addrs.iter().zip(&roles) {
        match role {
            None => tracing::info!("listening on {a}"),
            Some(_) => tracing::info!("listening for HTTPS on {a}"),
        }
    }
    Ok(RunningServer {
        addrs,
        stats,
        shutdown: tx,
        threads,
        shared,
        admin,
        admin_stop,
        unready,
    })
}

/// Every worker's listeners, their addresses, and each address's `[[tls]]` block (`None`: plain
/// HTTP), in one order.
struct Bound {
    listeners: Vec<Vec<std::net::TcpListener>>,
    addrs: Vec<SocketAddr>,
    roles: Vec<Option<usize>>,
}

/// Bind `config`'s plain and HTTPS addresses, or share the `inherited` sockets (socket
/// activation) among the workers when there are any.
fn bind_or_share(config: &Config, inherited: Vec<std::net::TcpListener>) -> anyhow::Result<Bound> {
    let tls_addrs: Vec<(SocketAddr, usize)> = config
        .tls
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.listen.iter().map(move |a| (*a, i)))
        .collect();
    // Each listener's `[[tls]]` block, if it is an HTTPS listener: the plain addresses are bound
    // first, then the HTTPS ones; an inherited socket is HTTPS when a block lists its address.
    let workers = config.workers;
    let (listeners, addrs, roles) = if inherited.is_empty() {
        let all: Vec<SocketAddr> = config
            .listen
            .iter()
            .copied()
            .chain(tls_addrs.iter().map(|(a, _)| *a))
            .collect();
        let (listeners, addrs) = crate::listen::bind_all(&all, workers, &config.socket)?;
        let plain = std::iter::repeat_n(None, config.listen.len());
        let roles = plain
            .chain(tls_addrs.iter().map(|(_, i)| Some(*i)))
            .collect();
        (listeners, addrs, roles)
    } else {
        let (listeners, addrs) = share_inherited(&inherited, workers)?;
        for (addr, block) in tls_addrs.iter().filter(|(a, _)| !addrs.contains(a)) {
            tracing::warn!(
                "tls[{block}].listen names {addr}, which the service manager did not pass in: no HTTPS there"
            );
        }
        let roles: Vec<Option<usize>> = addrs
            .iter()
            .map(|a| tls_addrs.iter().find(|(t, _)| t == a).map(|(_, i)| *i))
            .collect();
        (listeners, addrs, roles)
    };
    Ok(Bound {
        listeners,
        addrs,
        roles,
    })
}

/// The sockets systemd passed, one clone of each per worker, and their addresses.
#[allow(clippy::type_complexity)]
fn share_inherited(
    inherited: &[std::net::TcpListener],
    workers: usize,
) -> std::io::Result<(Vec<Vec<std::net::TcpListener>>, Vec<SocketAddr>)> {
    let mut addrs = Vec::new();
    for l in inherited {
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
    Ok((per_worker, addrs))
}

/// One OS thread per worker, each with its listeners.
fn spawn_workers(
    listeners: Vec<Vec<std::net::TcpListener>>,
    roles: &[Option<usize>],
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let seed = boundary_seed();
    let mut threads = Vec::with_capacity(listeners.len());
    for (id, listeners) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let rx = shutdown.clone();
        let listeners: Vec<_> = listeners.into_iter().zip(roles.iter().copied()).collect();
        let thread = std::thread::Builder::new()
            .name(format!("sendfiled-w{id}"))
            .spawn(move || {
                let worker_seed = seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let worker = Worker::new(id, shared, worker_seed);
                if let Err(e) = run_worker(worker, listeners, rx) {
                    tracing::error!(worker = id, error = %e, "worker failed");
                }
            })?;
        threads.push(thread);
    }
    Ok(threads)
}

/// The admin listener on its own thread.
fn start_admin(
    addr: SocketAddr,
    shared: &Shared,
    unready: &Arc<std::sync::atomic::AtomicBool>,
    workers: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let state = crate::admin::AdminState {
        stats: shared.stats.clone(),
        live: shared.live.clone(),
        archives: shared.archives.clone(),
        draining: shared.draining.clone(),
        unready: unready.clone(),
        workers,
        seen: Default::default(),
    };
    let (bound, thread) = crate::admin::start(addr, state, stop)?;
    tracing::info!("admin endpoint on {bound}");
    Ok((bound, thread))
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
    listeners: Vec<(std::net::TcpListener, Option<usize>)>,
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
        if worker.config().digests.is_some() {
            // The inotify instance now, not on the first response: its descriptor is the
            // worker's from the start, like its listeners.
            let _ = worker.watches();
        }
        for (l, tls) in listeners {
            let listener = TcpListener::from_std(l)?;
            tokio::task::spawn_local(crate::accept::accept_loop(
                listener,
                worker.clone(),
                shutdown.clone(),
                tls,
            ));
        }
        tokio::task::spawn_local(heartbeat(worker.clone()));
        let _ = shutdown.wait_for(|stop| *stop).await;
        worker.stop.stop();
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
