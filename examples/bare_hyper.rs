//! The yardstick for sendfiled's request path: a bare hyper 1.x service on the same runtime set-up
//! (one current-thread tokio runtime, TCP_NODELAY, hyper's writev), answering every request with
//! one file's bytes from memory and the headers sendfiled sends for it. What it costs per request
//! is what hyper and the kernel cost; what sendfiled costs above it is our layer.
//!
//!     cargo run --release --example bare_hyper -- 127.0.0.1:18487 /tmp/sendfiled-bench/corpus/1k.bin

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18487".into());
    let path = args.next().expect("usage: bare_hyper ADDR FILE");
    let body = Bytes::from(std::fs::read(&path)?);
    let meta = std::fs::metadata(&path)?;
    let modified = httpdate::fmt_http_date(meta.modified()?);
    let etag = format!("\"{:x}-{:x}\"", 1_700_000_000_000_000_000u128, body.len());
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::ETAG, etag),
        (header::LAST_MODIFIED, modified),
    ]
    .map(|(k, v)| (k, HeaderValue::from_str(&v).expect("header value")));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr, body, headers))
}

async fn serve(
    addr: String,
    body: Bytes,
    headers: [(header::HeaderName, HeaderValue); 5],
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let (tcp, _) = listener.accept().await?;
                tcp.set_nodelay(true)?;
                let (body, headers) = (body.clone(), headers.clone());
                let service = service_fn(move |_req: Request<Incoming>| {
                    let mut resp = Response::new(Full::new(body.clone()));
                    for (k, v) in &headers {
                        resp.headers_mut().insert(k.clone(), v.clone());
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                tokio::task::spawn_local(async move {
                    let _ = http1::Builder::new()
                        .writev(true)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        })
        .await
}
