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

pub mod body;
pub mod cli;
pub mod config;
pub mod fs;
pub mod http;
pub mod io;
pub mod listen;
pub mod pool;
pub mod protect;
pub mod server;
pub mod service;
pub mod stats;
pub mod sys;
pub mod zip;

pub use server::{start, RunningServer};

/// Run a server until SIGTERM or SIGINT, then drain and return. Raises RLIMIT_NOFILE first.
pub fn run(config: config::Config) -> anyhow::Result<()> {
    match sys::raise_nofile_limit() {
        Ok(n) => tracing::debug!(nofile = n, "raised the open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let server = start(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        Ok::<_, std::io::Error>(())
    })?;
    server.shutdown();
    tracing::info!("stopped");
    Ok(())
}
