//! The hand-written hyper `Service`: one request in, one response out. It gates the method and
//! Host, makes the path safe, finds the file through the worker's open-file cache, evaluates the
//! preconditions and Range, and picks the body. The only place where errors become HTTP statuses.

// A refusal is the response itself, built once and returned up a call or two; boxing it would
// cost an allocation per refused request for nothing.
#![allow(clippy::result_large_err)]

mod archive;
mod bodies;
mod file;
mod listing;
mod reply;
mod target;

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};

use crate::body::Body;
use crate::conn::ConnShared;
use crate::digest::WANT_REPR_DIGEST;
use crate::http::scan::HeaderScan;
use crate::protect::signing::unix_now;
use crate::protect::{Admission, Pacer};
use crate::stats::WorkerStats;
use http_body::Body as _;
use hyper::body::Incoming;

use bodies::{discard_body, record};
use reply::*;
use target::Target;

/// The per-connection service; cheap to create at accept time.
pub struct FileService {
    conn: Rc<ConnShared>,
}

impl FileService {
    /// The service for one connection.
    pub fn new(conn: Rc<ConnShared>) -> Self {
        FileService { conn }
    }
}

impl hyper::service::Service<Request<Incoming>> for FileService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.conn.worker.refresh();
        self.conn.set_busy();
        self.conn.pace.set(None);
        WorkerStats::add(&self.conn.worker.stats().requests, 1);
        let (mut parts, body) = req.into_parts();
        self.conn.begin_exchange(&parts);
        let scan = HeaderScan::of(&parts.headers, &WANT_REPR_DIGEST);
        let reply = if let Some(refusal) = framing_error(&self.conn, &parts.headers, &scan) {
            Reply::Now(refusal)
        } else if let Some(refusal) = client_limits(&self.conn) {
            Reply::Now(refusal)
        } else {
            respond(&self.conn, &parts, &scan)
        };
        let is_head = parts.method == Method::HEAD;
        let conn = self.conn.clone();
        // A body on a request that has no use for one is read and dropped before the answer, so
        // that its framing is checked first (a response that closes the connection needs not).
        // (Checked in this order: almost every request has no body, and the header lookup would
        // cost each of them a hash.)
        let discard =
            !body.is_end_stream() && !reads_own_body(&reply, &parts.method) && !closes(&reply);
        match reply {
            Reply::Now(resp) if !discard => {
                record(&conn, &resp, is_head);
                // The request's header map becomes a later response's: with hyper recycling each
                // sent response's map for the next request, header maps are never allocated in
                // steady state.
                conn.worker
                    .recycle_header_map(std::mem::take(&mut parts.headers));
                ServiceFuture::Ready(ready(Ok(resp)))
            }
            Reply::Now(resp) => ServiceFuture::Later(Box::pin(async move {
                let resp = match discard_body(&conn, body).await {
                    Ok(()) => resp,
                    Err(refusal) => refusal,
                };
                record(&conn, &resp, is_head);
                Ok(resp)
            })),
            Reply::Listing(dir, admission) => ServiceFuture::Later(Box::pin(async move {
                let resp = match discard_body(&conn, body).await {
                    Ok(()) => listing::answer(conn.clone(), parts, dir, admission).await,
                    Err(refusal) => refusal,
                };
                record(&conn, &resp, is_head);
                Ok(resp)
            })),
            Reply::Archive(dir, admission) => ServiceFuture::Later(Box::pin(async move {
                let resp = if discard {
                    match discard_body(&conn, body).await {
                        Ok(()) => archive::answer(conn.clone(), parts, None, dir, admission).await,
                        Err(refusal) => refusal,
                    }
                } else {
                    archive::answer(conn.clone(), parts, Some(body), dir, admission).await
                };
                record(&conn, &resp, is_head);
                Ok(resp)
            })),
        }
    }
}

/// The service's future: ready at once for files; an archive (its manifest) or a listing (its
/// directory read) comes later, from the blocking pool.
pub enum ServiceFuture {
    Ready(Ready<Result<Response<Body>, Infallible>>),
    Later(Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>>>>),
}

impl Future for ServiceFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ServiceFuture::Ready(r) => Pin::new(r).poll(cx),
            ServiceFuture::Later(f) => f.as_mut().poll(cx),
        }
    }
}

/// What `respond` decided.
enum Reply {
    /// The response, ready now.
    Now(Response<Body>),
    /// An archive of this directory (relative to the root) was asked for, and admitted.
    Archive(String, Admission),
    /// A listing of this directory (relative to the root), admitted.
    Listing(String, Admission),
}

impl From<Response<Body>> for Reply {
    fn from(r: Response<Body>) -> Reply {
        Reply::Now(r)
    }
}

/// Whether the query asks for an archive (`download=zip`).
fn wants_archive(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.contains("download=zip")
            && form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "download" && v == "zip")
    })
}

/// A Transfer-Encoding other than one plain `chunked` (RFC 9112 §6.1): hyper would decode it as
/// chunked anyway, a proxy in front might not. The head guard in `io` already refuses a second
/// framing header; this is the part that needs the parsed value. 400, and the connection closes,
/// so nothing after the request is ever read as another.
fn framing_error(
    conn: &Rc<ConnShared>,
    headers: &HeaderMap,
    scan: &HeaderScan<'_>,
) -> Option<Response<Body>> {
    if !scan.transfer_encoding {
        return None;
    }
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let te = codings.next()?;
    if codings.next().is_none() && te.as_bytes().eq_ignore_ascii_case(b"chunked") {
        return None;
    }
    tracing::debug!(client = %conn.peer, "ambiguous request framing");
    let mut resp = error(conn, StatusCode::BAD_REQUEST, "ambiguous request framing\n");
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

/// The per-client limits: a connection past its address's cap, or a request past its address's
/// rate, gets 429 (the connection past the cap is closed after it).
fn client_limits(conn: &Rc<ConnShared>) -> Option<Response<Body>> {
    let worker = &conn.worker;
    if let Some(why) = conn.refused {
        WorkerStats::add(&worker.stats().rejected_per_ip_connections, 1);
        tracing::debug!(client = %conn.peer, reason = why.label(), "connection refused");
        let mut resp = error(
            conn,
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from your address\n",
        );
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(resp);
    }
    let limited = worker.protect().clients.request(conn.client_ip());
    let Err(wait) = limited else {
        return None;
    };
    WorkerStats::add(&worker.stats().rejected_request_rate, 1);
    let mut resp = error(
        conn,
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests, slow down\n",
    );
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    Some(resp)
}

/// The protections that look at the path: a protected path needs a valid signature (403 with a
/// generic body otherwise; the reason goes to the log and the counters), and a bandwidth rule or
/// a signed `rate=` paces the response. `rel` is the normalised path without its leading `/`.
fn admit(conn: &Rc<ConnShared>, req: &http::request::Parts, rel: &str) -> Result<Admission, ()> {
    let protect = conn.worker.protect();
    if !protect.inspects_paths() {
        return Ok(Admission::default());
    }
    // The path with its leading slash, on the stack: this runs for every request once any
    // protection is configured.
    let mut buf = smallvec::SmallVec::<[u8; 512]>::new();
    buf.push(b'/');
    buf.extend_from_slice(rel.as_bytes());
    let path = std::str::from_utf8(&buf).unwrap_or("/");
    match protect.admit(&req.method, path, req.uri.query(), unix_now()) {
        Ok(admission) => {
            if let Some(grant) = &admission.grant {
                conn.exchange.borrow_mut().key_id = Some(grant.kid.clone());
            }
            if let Some((rate, burst)) = admission.pace {
                WorkerStats::add(&conn.worker.stats().paced_responses, 1);
                conn.pace
                    .set(Some(Pacer::new(rate, burst, tokio::time::Instant::now())));
            }
            Ok(admission)
        }
        Err(why) => {
            WorkerStats::add(conn.worker.stats().signature_denial(why), 1);
            tracing::info!(client = %conn.peer, path = %path, reason = why.label(), "signature refused");
            Err(())
        }
    }
}

/// Exactly one Host in HTTP/1.1 (at most one in 1.0), a valid authority (RFC 9110 §7.2), and an
/// absolute-form target's authority that agrees with it; otherwise the 400 to send.
fn host_error(req: &http::request::Parts, scan: &HeaderScan<'_>) -> Option<&'static str> {
    let host = scan.host;
    if scan.hosts > 1 || (host.is_none() && req.version == Version::HTTP_11) {
        return Some("a request needs exactly one Host header\n");
    }
    if host.is_some_and(|h| !crate::http::host::valid(h.as_bytes())) {
        return Some("invalid Host header\n");
    }
    let authority = req.uri.authority()?;
    let agrees = host.is_none_or(|h| {
        crate::http::host::same_authority(h.as_bytes(), authority.as_str().as_bytes())
    });
    if !crate::http::host::valid(authority.as_str().as_bytes()) || !agrees {
        return Some("the request target's authority does not match Host\n");
    }
    None
}

/// Answer one request: its Host checked, its target parsed once, then an archive, a listing or
/// a file.
fn respond(conn: &Rc<ConnShared>, req: &http::request::Parts, scan: &HeaderScan<'_>) -> Reply {
    if let Some(text) = host_error(req, scan) {
        return Reply::Now(error(conn, StatusCode::BAD_REQUEST, text));
    }
    let mut target = Target::parse(conn, &req.uri);
    let config = conn.worker.config();
    if config.zip.enabled && wants_archive(req.uri.query()) {
        if let Some(dir) = archive::archive_dir(conn, req, &target) {
            return match admit(conn, req, &dir) {
                Ok(admission) => Reply::Archive(dir, admission),
                Err(()) => Reply::Now(forbidden(conn)),
            };
        }
    }
    if config.listing.is_some() {
        if let Some(dir) = listing::listing_dir(conn, req, &target) {
            return match admit(conn, req, &dir) {
                Ok(admission) => Reply::Listing(dir, admission),
                Err(()) => Reply::Now(forbidden(conn)),
            };
        }
    }
    Reply::Now(file::answer(conn, req, scan, &mut target))
}

/// An archive POST reads its own body (the selection).
fn reads_own_body(reply: &Reply, method: &Method) -> bool {
    matches!(reply, Reply::Archive(..)) && method == Method::POST
}

/// A response that closes the connection needs no body read before it.
fn closes(reply: &Reply) -> bool {
    matches!(reply, Reply::Now(r) if r.headers().contains_key(header::CONNECTION))
}
