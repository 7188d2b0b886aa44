//! sendfiled: a Linux static-file origin server. hyper 1.x HTTP/1.1 on thread-per-core workers,
//! with every file byte sent by sendfile(2).
//!
//! The path of one request (docs/architecture.md has the long version):
//! 1. [`listen`] binds one SO_REUSEPORT listener per worker; the kernel picks the worker.
//! 2. [`server`] accepts, wraps the socket in [`io::SendfileIo`] and hands it to hyper's http1
//!    connection with the per-connection [`service::FileService`].
//! 3. [`service`] checks method and Host, normalises the path ([`fs::path`]), finds the file in
//!    the worker's open-file cache ([`fs::cache`]) or opens it beneath the root ([`sys`]).
//! 4. [`http::conditional`] and [`http::range`] decide 200, 206, 304, 412 or 416.
//! 5. [`body`] turns the chosen ranges into `FileBuf` chunks (token slices of the file's mapping).
//! 6. hyper writes head and chunks as `IoSlice`s; [`io::SendfileIo`] sends the head with
//!    sendmsg(MSG_MORE) and the file bytes with sendfile(2).
//!
//! `?download=zip` on a directory takes a side road at step 3: [`zip`] builds a manifest on the
//! blocking pool and streams the archive, whose stored file data are `FileBuf`s too.

mod accept;
mod access_log;
mod admin;
mod body;
mod body_budget;
mod bounded_read;
mod chunk;
mod cidr;
mod civil;
pub mod cli;
pub mod config;
mod conn;
mod copy;
pub mod digest;
mod framing;
pub mod fs;
pub mod http;
mod io;
mod listen;
mod listing;
pub mod manual;
mod metrics;
mod pool;
pub mod protect;
mod proxy_protocol;
mod request_body;
mod server;
mod service;
pub mod settings;
pub mod stats;
mod stop;
pub mod sys;
mod systemd;
pub mod tls;
pub mod units;
pub mod url_prefix;
mod worker;
mod zip;

pub use server::{start, RunningServer};

/// Run a server until SIGTERM or SIGINT, then drain and return. Raises RLIMIT_NOFILE first,
/// serves on the sockets systemd passed if any, and speaks sd_notify. SIGHUP reloads the
/// configuration file with `overrides` applied again; an invalid file is logged and ignored.
pub fn run(config: config::Config, overrides: config::Overrides) -> anyhow::Result<()> {
    match sys::raise_nofile_limit() {
        Ok(n) => tracing::debug!(nofile = n, "raised the open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let inherited = systemd::listen_fds()?;
    if !inherited.is_empty() {
        tracing::info!(sockets = inherited.len(), "using sockets passed by systemd");
    }
    let source = config.source.clone();
    let server = server::start_with(config, inherited)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    first_words(&server);
    systemd::notify(&format!("READY=1\nSTATUS=serving on {}", addrs.join(", ")));
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let watchdog = systemd::watchdog_interval();
        let period = watchdog.unwrap_or(std::time::Duration::from_secs(3600));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut last_beats = server.heartbeats();
        loop {
            tokio::select! {
                _ = term.recv() => {
                    drain_delay(&server, &mut term, &mut int).await;
                    tracing::info!("SIGTERM: draining");
                    break;
                }
                _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
                _ = hup.recv() => {
                    systemd::notify_reloading();
                    reload(&server, source.as_deref(), &overrides);
                    systemd::notify(&format!("READY=1\nSTATUS=serving on {}", addrs.join(", ")));
                }
                _ = usr1.recv() => {
                    if let Some(log) = &server.settings().access_log {
                        match log.reopen() {
                            Ok(()) => tracing::info!("SIGUSR1: access log reopened"),
                            Err(e) => tracing::error!(error = %e, "SIGUSR1: cannot reopen the access log; writing to the old file"),
                        }
                    }
                }
                _ = ping.tick(), if watchdog.is_some() => {
                    let beats = server.heartbeats();
                    if beats.iter().zip(&last_beats).all(|(now, then)| now > then) {
                        systemd::notify("WATCHDOG=1");
                    } else {
                        tracing::error!("a worker stopped its heartbeat; withholding the watchdog ping");
                    }
                    last_beats = beats;
                }
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
    systemd::notify("STOPPING=1\nSTATUS=draining in-flight responses");
    server.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// One line for whoever just started the server: which folder, at which URL, and what the
/// defaults keep out of sight (so that a 404 at `/` does not look like a broken server).
fn first_words(server: &RunningServer) {
    let settings = server.settings();
    let c = &settings.config;
    let Some(addr) = server.local_addrs().first() else {
        return;
    };
    let listings = if c.listing.is_some() {
        "directory listings on".to_string()
    } else {
        format!(
            "directory listings off (a folder without {} answers 404; --listing turns them on)",
            c.index
        )
    };
    tracing::info!(
        "serving {} at http://{addr}/: {listings}; dotfiles and symlinks leaving the root are not served",
        c.root.display()
    );
}

/// SIGTERM's first step: /readyz fails for `drain.delay` while the node still accepts and
/// serves, so that the load balancer's health checks take it out before its port closes. A
/// second SIGTERM, or a SIGINT, ends the wait at once.
async fn drain_delay(
    server: &RunningServer,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    let delay = server.settings().config.drain_delay;
    if delay.is_zero() {
        return;
    }
    server.announce_stop();
    tracing::info!(delay = ?delay, "SIGTERM: /readyz fails now; still serving until the drain delay ends");
    systemd::notify(&format!(
        "STATUS=stopping: /readyz fails, serving for {delay:?} more"
    ));
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = term.recv() => tracing::info!("second SIGTERM: ending the drain delay"),
        _ = int.recv() => tracing::info!("SIGINT: ending the drain delay"),
    }
}

/// SIGHUP: read the file again; keep the running configuration if anything is wrong with it
/// (an empty file included: it is what `cmd > sendfiled.toml` leaves when `cmd` fails). A new
/// configuration that drops a protection is applied with one warning per protection dropped.
fn reload(server: &RunningServer, source: Option<&std::path::Path>, overrides: &config::Overrides) {
    let loaded = config::Config::load_for_reload(source, overrides).map_err(anyhow::Error::from);
    let checked = loaded.inspect(|c| {
        for dropped in config::dropped_protections(&server.settings().config, c) {
            tracing::warn!(protection = %dropped, "the reloaded configuration drops a protection");
        }
    });
    match checked.and_then(|c| server.reload(c)) {
        Ok(()) => tracing::info!("configuration reloaded"),
        Err(e) => tracing::error!(error = %e, "reload rejected; the running configuration stays"),
    }
}
