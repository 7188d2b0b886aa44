//! The admin listener, on its own address (default 127.0.0.1:9090, never the public port):
//! `/metrics` (Prometheus text), `/healthz` (every worker's heartbeat is moving) and `/readyz` (503 while
//! draining, so a load balancer stops sending before the listeners close). One thread with its
//! own small runtime, so a saturated worker never delays a health check.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::metrics::{self, Gauges};
use crate::stats::Stats;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub stats: Stats,
    pub archives: Arc<std::sync::atomic::AtomicUsize>,
    pub draining: Arc<AtomicBool>,
    /// A stop is announced (the drain delay runs): not ready, still serving.
    pub unready: Arc<AtomicBool>,
    pub workers: usize,
    /// The running settings (for what /metrics reports about them: certificate expiry).
    pub live: Arc<crate::settings::Live>,
    /// Each worker's last heartbeat count and when it last moved.
    pub seen: Arc<Mutex<Vec<(u64, Instant)>>>,
}

/// A worker whose heartbeat has not moved for this long is stalled, and /healthz says so.
const STALL: Duration = Duration::from_secs(2);

impl AdminState {
    /// The workers whose heartbeat has not moved for [`STALL`].
    fn stalled_workers(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.resize(self.workers, (0, now));
        let mut stalled = Vec::new();
        for (i, (count, moved)) in seen.iter_mut().enumerate() {
            let beats = self.stats.worker(i).heartbeats.load(Ordering::Relaxed);
            if beats != *count {
                *count = beats;
                *moved = now;
            } else if now.duration_since(*moved) >= STALL {
                stalled.push(i);
            }
        }
        stalled
    }
}

/// Bind `addr` and serve the admin endpoints on a thread until `stop` turns true. Returns the
/// bound address.
pub fn start(
    addr: SocketAddr,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("admin.listen {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let thread = std::thread::Builder::new()
        .name("sendfiled-admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "admin listener cannot start");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let accepted = tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        r = listener.accept() => r,
                    };
                    let Ok((tcp, _)) = accepted else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(answer(&req, &state)) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .header_read_timeout(std::time::Duration::from_secs(10))
                            .timer(hyper_util::rt::TokioTimer::new())
                            .serve_connection(TokioIo::new(tcp), service);
                        let _ = conn.await;
                    });
                }
            });
        })?;
    Ok((bound, thread))
}

fn answer(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), PLAIN);
    }
    let draining = state.draining.load(Ordering::Relaxed);
    match req.uri().path() {
        "/metrics" => {
            let gauges = Gauges {
                archives_active: state.archives.load(Ordering::Relaxed),
                draining,
                workers: state.workers,
                certificates: certificate_expiry(&state.live),
            };
            text(
                StatusCode::OK,
                metrics::render(&state.stats.snapshot(), &gauges),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        "/healthz" => match state.stalled_workers().as_slice() {
            [] => text(StatusCode::OK, "ok\n".into(), PLAIN),
            stalled => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("workers not making progress: {stalled:?}\n"),
                PLAIN,
            ),
        },
        "/readyz" if draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into(), PLAIN),
        "/readyz" if state.unready.load(Ordering::Relaxed) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping soon\n".into(),
            PLAIN,
        ),
        "/readyz" => text(StatusCode::OK, "ready\n".into(), PLAIN),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), PLAIN),
    }
}

/// Every loaded certificate's file and notAfter (Unix seconds), in configuration order.
fn certificate_expiry(live: &crate::settings::Live) -> Vec<(String, i64)> {
    let settings = live.current();
    let certificates = settings.tls.iter().flat_map(|e| &e.certificates);
    certificates
        .map(|c| (c.file.display().to_string(), c.not_after))
        .collect()
}
