//! The hand-written hyper `Service`: one request in, one response out. It gates the method and
//! Host, makes the path safe, finds the file through the worker's open-file cache, evaluates the
//! preconditions and Range, and picks the body. The only place where errors become HTTP statuses.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use percent_encoding::utf8_percent_encode;

use crate::body::Body;
use crate::config::DotfileRule;
use crate::fs::path::{has_dotfile, normalize, PATH_ESCAPES};
use crate::fs::{OpenError, OpenFile};
use crate::http::conditional::{self, Precondition, Validators};
use crate::http::disposition;
use crate::http::encoding::{self, Choice, Coding};
use crate::http::range::{self, ByteRange, RangeOutcome};
use crate::io::ConnShared;
use crate::protect::signing::unix_now;
use crate::protect::{Admission, Pacer};
use crate::request_body::{self, BodyError, BodyRules};
use crate::stats::WorkerStats;
use crate::zip::manifest::{self, BuildInput, Manifest, ManifestError, Selection};
use crate::zip::stream::{ArchivePermit, ZipStream};
use crate::zip::{PinError, ZipRequest};
use http_body::Body as _;
use hyper::body::Incoming;

const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
const APPLICATION_ZIP: HeaderValue = HeaderValue::from_static("application/zip");
const NO_RANGES: HeaderValue = HeaderValue::from_static("none");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const ACCEPT_ENCODING_VARY: HeaderValue = HeaderValue::from_static("Accept-Encoding");

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
        let reply = if let Some(refusal) = framing_error(&self.conn, &parts.headers) {
            Reply::Now(refusal)
        } else if let Some(refusal) = client_limits(&self.conn) {
            Reply::Now(refusal)
        } else {
            respond(&self.conn, &parts)
        };
        let is_head = parts.method == Method::HEAD;
        let conn = self.conn.clone();
        // A body on a request that has no use for one is read and dropped before the answer, so
        // that its framing is checked first (a response that closes the connection needs not).
        let closing =
            matches!(&reply, Reply::Now(r) if r.headers().contains_key(header::CONNECTION));
        let reads_own_body = matches!(reply, Reply::Archive(..)) && parts.method == Method::POST;
        let discard = !(body.is_end_stream() || closing || reads_own_body);
        match reply {
            Reply::Now(resp) if !discard => {
                conn.responded(&resp, is_head);
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
                conn.responded(&resp, is_head);
                Ok(resp)
            })),
            Reply::Listing(dir, admission) => ServiceFuture::Later(Box::pin(async move {
                let resp = match discard_body(&conn, body).await {
                    Ok(()) => listing(conn.clone(), parts, dir, admission).await,
                    Err(refusal) => refusal,
                };
                conn.responded(&resp, is_head);
                Ok(resp)
            })),
            Reply::Archive(dir, admission) => ServiceFuture::Later(Box::pin(async move {
                let resp = if discard {
                    match discard_body(&conn, body).await {
                        Ok(()) => archive(conn.clone(), parts, None, dir, admission).await,
                        Err(refusal) => refusal,
                    }
                } else {
                    archive(conn.clone(), parts, Some(body), dir, admission).await
                };
                conn.responded(&resp, is_head);
                Ok(resp)
            })),
        }
    }
}

/// The rules a request body is read under, with `limit` bytes at most.
fn body_rules(conn: &Rc<ConnShared>, limit: usize) -> BodyRules<'_> {
    let limits = &conn.worker.config().limits;
    BodyRules {
        limit,
        timeout: limits.body_timeout,
        min_rate: limits.min_body_rate,
        budget: &conn.worker.bodies,
        draining: &conn.worker.draining,
    }
}

/// Read `body` under the request-body rules; `limit` bytes at most.
async fn read_body(
    conn: &Rc<ConnShared>,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, Response<Body>> {
    let rules = body_rules(conn, limit);
    request_body::read(conn, body, &rules)
        .await
        .map_err(|why| body_refusal(conn, why))
}

/// Read and drop the body of a request that has no use for one.
async fn discard_body(conn: &Rc<ConnShared>, body: Incoming) -> Result<(), Response<Body>> {
    read_body(conn, body, request_body::DISCARD_LIMIT)
        .await
        .map(drop)
}

/// The answer to a body that could not be read; the connection closes after it, since what
/// follows on it cannot be trusted to be the next request.
fn body_refusal(conn: &Rc<ConnShared>, why: BodyError) -> Response<Body> {
    WorkerStats::add(&conn.worker.stats().body_refusals[why as usize], 1);
    tracing::debug!(client = %conn.peer, reason = why.label(), "request body refused");
    let (status, text) = why.answer();
    let mut resp = error(conn, status, text);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
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
fn framing_error(conn: &Rc<ConnShared>, headers: &HeaderMap) -> Option<Response<Body>> {
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
    let limited = worker.protect().clients.request(conn.peer.ip());
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
fn host_error(req: &http::request::Parts) -> Option<&'static str> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() || (host.is_none() && req.version == Version::HTTP_11) {
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

/// Answer one request.
fn respond(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Reply {
    if let Some(text) = host_error(req) {
        return Reply::Now(error(conn, StatusCode::BAD_REQUEST, text));
    }
    let zip_enabled = conn.worker.config().zip.enabled;
    if zip_enabled && wants_archive(req.uri.query()) {
        if let Some(dir) = archive_dir(conn, req) {
            return match admit(conn, req, &dir) {
                Ok(admission) => Reply::Archive(dir, admission),
                Err(()) => Reply::Now(forbidden(conn)),
            };
        }
    }
    if conn.worker.config().listing.is_some() {
        if let Some(dir) = listing_dir(conn, req) {
            return match admit(conn, req, &dir) {
                Ok(admission) => Reply::Listing(dir, admission),
                Err(()) => Reply::Now(forbidden(conn)),
            };
        }
    }
    Reply::Now(respond_file(conn, req))
}

/// The directory (relative to the root) a request should get a listing of: a well-formed GET or
/// HEAD of an existing directory, with the trailing slash, that has no index file.
fn listing_dir(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Option<String> {
    if !req.uri.path().ends_with('/') || !matches!(req.method, Method::GET | Method::HEAD) {
        return None;
    }
    let rel = existing_dir(conn, req)?;
    let config = conn.worker.config();
    let index = if rel.is_empty() {
        config.index.clone()
    } else {
        format!("{rel}/{}", config.index)
    };
    match conn.worker.open(&index) {
        Err(OpenError::NotFound) => Some(rel),
        _ => None,
    }
}

/// Answer with a listing of `dir`: read on the blocking pool, one page, HTML or JSON.
async fn listing(
    conn: Rc<ConnShared>,
    parts: http::request::Parts,
    dir: String,
    admission: Admission,
) -> Response<Body> {
    let settings = conn.worker.settings();
    let per_page = settings.config.listing.unwrap_or(1);
    let hidden = if admission.grant.is_some() {
        Vec::new()
    } else {
        settings.protect.protected_below(&format!("/{dir}"))
    };
    let input = crate::listing::ListInput {
        root: conn.worker.root().clone(),
        dir: dir.clone(),
        symlinks: settings.config.symlinks,
        dotfiles: settings.config.dotfiles,
        hidden,
    };
    let entries = match tokio::task::spawn_blocking(move || crate::listing::read(&input)).await {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return not_found(&conn),
        _ => {
            return error(
                &conn,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n",
            )
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let mut page = 1usize;
    let mut as_json = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "page" => match v.parse::<usize>() {
                Ok(n) if n >= 1 => page = n,
                _ => return error(&conn, StatusCode::BAD_REQUEST, "bad page number\n"),
            },
            "format" if v == "json" => as_json = true,
            _ => {}
        }
    }
    if !as_json {
        as_json = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    }
    let total = entries.len();
    let pages = total.div_ceil(per_page).max(1);
    if page > pages {
        return not_found(&conn);
    }
    let start = (page - 1) * per_page;
    let shown = &entries[start..(start + per_page).min(total)];
    let path = if dir.is_empty() {
        "/".to_string()
    } else {
        format!("/{dir}/")
    };
    let view = crate::listing::Page {
        path: &path,
        entries: shown,
        page,
        pages,
        total,
        zip: settings.config.zip.enabled,
    };
    let (text, ctype) = if as_json {
        (crate::listing::json(&view), "application/json")
    } else {
        (crate::listing::html(&view), "text/html; charset=utf-8")
    };
    let body = if parts.method == Method::HEAD {
        Body::head(text.len() as u64, &conn)
    } else {
        Body::bytes(Bytes::from(text), &conn)
    };
    let mut resp = new_response(&conn, body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    resp
}

/// The directory (relative to the root) an archive request names, if it is a well-formed
/// GET, HEAD or POST of an existing directory; anything else is answered as a file request.
fn archive_dir(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Option<String> {
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return None;
    }
    existing_dir(conn, req)
}

/// The normalised path of the existing, servable directory a well-formed request names (one
/// Host, a target within the limit, no refused dotfile); `None` sends the request down the file
/// path, which gives the right error.
fn existing_dir(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Option<String> {
    let config = conn.worker.config();
    if req.uri.path_and_query().map_or(1, |pq| pq.as_str().len()) > config.limits.target_bytes {
        return None;
    }
    let mut rel = String::new();
    normalize(req.uri.path(), &mut rel).ok()?;
    if config.dotfiles == DotfileRule::Deny && has_dotfile(&rel) {
        return None;
    }
    match conn.worker.open(&rel) {
        Ok(f) if f.is_dir => Some(rel),
        _ => None,
    }
}

/// Answer a request for a file (or a directory's index).
fn respond_file(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Response<Body> {
    let worker = &conn.worker;
    let config = worker.config();

    let is_head = req.method == Method::HEAD;
    if req.method != Method::GET && !is_head {
        if req.method == Method::OPTIONS {
            let mut resp = new_response(conn, Body::empty(conn));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp.headers_mut().insert(header::ALLOW, ALLOW);
            return resp;
        }
        let mut resp = error(conn, StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut().insert(header::ALLOW, ALLOW);
        return resp;
    }
    let target_len = req.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if target_len > config.limits.target_bytes {
        return error(conn, StatusCode::URI_TOO_LONG, "request target too long\n");
    }

    let mut rel = worker.scratch_path.borrow_mut();
    let norm = match normalize(req.uri.path(), &mut rel) {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(reason = %e, "bad request path");
            return error(conn, StatusCode::BAD_REQUEST, "bad request path\n");
        }
    };
    if config.dotfiles == DotfileRule::Deny && has_dotfile(&rel) {
        return not_found(conn);
    }
    if admit(conn, req, &rel).is_err() {
        return forbidden(conn);
    }

    let mut file = match worker.open(&rel) {
        Ok(f) => f,
        Err(e) => return open_error(conn, e),
    };
    if file.is_dir {
        if !norm.trailing_slash {
            return redirect_to_dir(conn, &rel, req.uri.query());
        }
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&config.index);
        file = match worker.open(&rel) {
            Ok(f) if !f.is_dir => f,
            Ok(_) => return not_found(conn),
            Err(e) => return open_error(conn, e),
        };
    } else if norm.trailing_slash {
        return not_found(conn);
    }

    let Some((file, vary)) = negotiate(conn, req, &rel, file, &config.precompressed) else {
        let mut resp = error(
            conn,
            StatusCode::NOT_ACCEPTABLE,
            "no acceptable content coding\n",
        );
        resp.headers_mut()
            .insert(header::VARY, ACCEPT_ENCODING_VARY);
        return resp;
    };
    let mut resp = represent(conn, req, &file, &rel, is_head, config.max_ranges);
    let h = resp.headers_mut();
    if vary {
        h.insert(header::VARY, ACCEPT_ENCODING_VARY);
    }
    if let Some(coding) = file.encoding {
        if matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
            resp.headers_mut().insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
        }
    }
    resp
}

/// Precompressed variants: when the path has any (and they are at least as new as it), pick
/// the representation the client's Accept-Encoding prefers. Returns the file to send and whether
/// the response varies on Accept-Encoding; `None` when the client refuses every one (406).
fn negotiate(
    conn: &Rc<ConnShared>,
    req: &http::request::Parts,
    rel: &str,
    file: Arc<OpenFile>,
    order: &[Coding],
) -> Option<(Arc<OpenFile>, bool)> {
    if order.is_empty() || file.len == 0 {
        return Some((file, false));
    }
    let worker = &conn.worker;
    let mask = worker.variants(rel, &file, order);
    if mask == 0 {
        return Some((file, false));
    }
    let available: smallvec::SmallVec<[bool; 3]> =
        (0..order.len()).map(|i| mask & (1 << i) != 0).collect();
    let fields = req
        .headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .map(|v| v.as_bytes());
    match encoding::choose(fields, order, &available) {
        Choice::Identity => Some((file, true)),
        Choice::Variant(i) => match worker.open_variant(rel, &file, order[i]) {
            Ok(variant) => Some((variant, true)),
            // Gone since the probe: the file itself is always a correct answer.
            Err(_) => Some((file, true)),
        },
        Choice::NotAcceptable => None,
    }
}

/// The response for one representation (a file or a precompressed variant): preconditions,
/// Range, and the body.
fn represent(
    conn: &Rc<ConnShared>,
    req: &http::request::Parts,
    file: &Arc<OpenFile>,
    rel: &str,
    is_head: bool,
    max_ranges: usize,
) -> Response<Body> {
    let worker = &conn.worker;
    let validators = Validators {
        etag: file.etag.to_str().unwrap_or(""),
        last_modified: file.last_modified_secs,
    };
    match conditional::evaluate(&req.headers, validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut resp = new_response(conn, Body::empty(conn));
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            validator_headers(resp.headers_mut(), file);
            return resp;
        }
        Precondition::Failed => {
            return error(
                conn,
                StatusCode::PRECONDITION_FAILED,
                "precondition failed\n",
            );
        }
    }

    let outcome = if is_head {
        RangeOutcome::Full
    } else {
        range_outcome(&req.headers, file.len, validators, max_ranges)
    };

    let download = req.uri.query().and_then(|q| download_name(q, rel));

    let (status, body) = match outcome {
        RangeOutcome::Full if is_head => (StatusCode::OK, Body::head(file.len, conn)),
        RangeOutcome::Full if file.len == 0 => (StatusCode::OK, Body::empty(conn)),
        RangeOutcome::Full => (
            StatusCode::OK,
            Body::file(
                file,
                ByteRange {
                    first: 0,
                    last: file.len - 1,
                },
                conn,
            ),
        ),
        RangeOutcome::Unsatisfiable => {
            let mut resp = error(
                conn,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable\n",
            );
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_RANGE,
                content_range(format_args!("bytes */{}", file.len)),
            );
            h.insert(header::ACCEPT_RANGES, BYTES);
            return resp;
        }
        RangeOutcome::Partial(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            let mut resp = new_response(conn, Body::file(file, r, conn));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            representation_headers(h, file, download.as_deref());
            h.insert(
                header::CONTENT_RANGE,
                content_range(format_args!("bytes {}-{}/{}", r.first, r.last, file.len)),
            );
            return resp;
        }
        RangeOutcome::Partial(_) if file.map.is_none() => {
            // Multipart needs a mapping for each part; an unmappable file gets the (copied,
            // chunked) full body instead, as RFC 9110 allows.
            let whole = ByteRange {
                first: 0,
                last: file.len - 1,
            };
            (StatusCode::OK, Body::file(file, whole, conn))
        }
        RangeOutcome::Partial(ranges) => {
            let boundary = worker.next_boundary();
            let mut resp = new_response(conn, Body::multipart(file, &ranges, &boundary, conn));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            representation_headers(h, file, download.as_deref());
            h.insert(
                header::CONTENT_TYPE,
                header_value(format!("multipart/byteranges; boundary={boundary}")),
            );
            return resp;
        }
    };
    let mut resp = new_response(conn, body);
    *resp.status_mut() = status;
    representation_headers(resp.headers_mut(), file, download.as_deref());
    if is_head && file.len == 0 {
        // hyper only writes an implicit `content-length: 0` for GET; HEAD must match GET.
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    resp
}

/// Range applies only to GET, only with a single Range field, and only when If-Range (if any)
/// still matches the representation.
fn range_outcome(
    headers: &HeaderMap,
    len: u64,
    v: Validators<'_>,
    max_ranges: usize,
) -> RangeOutcome {
    let mut all = headers.get_all(header::RANGE).iter();
    let Some(range) = all.next() else {
        return RangeOutcome::Full;
    };
    if all.next().is_some() {
        return RangeOutcome::Full;
    }
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        if !conditional::if_range_allows(if_range.as_bytes(), v) {
            return RangeOutcome::Full;
        }
    }
    range::evaluate(range.as_bytes(), len, max_ranges)
}

/// Headers every 200/206 of a file carries.
fn representation_headers(h: &mut HeaderMap, file: &OpenFile, download: Option<&str>) {
    h.insert(header::CONTENT_TYPE, file.content_type.clone());
    h.insert(header::ACCEPT_RANGES, BYTES);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    validator_headers(h, file);
    if let Some(name) = download {
        h.insert(
            header::CONTENT_DISPOSITION,
            header_value(disposition::attachment(name)),
        );
    }
}

/// The headers a 304 must repeat (RFC 9110 §15.4.5).
fn validator_headers(h: &mut HeaderMap, file: &OpenFile) {
    h.insert(header::ETAG, file.etag.clone());
    h.insert(header::LAST_MODIFIED, file.last_modified.clone());
    if let Some(cc) = &file.cache_control {
        h.insert(header::CACHE_CONTROL, cc.clone());
    }
}

/// `?download` names the file after itself; `?download=NAME` after NAME.
fn download_name(query: &str, rel: &str) -> Option<String> {
    let (_, value) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "download")?;
    let name = if value.is_empty() {
        rel.rsplit('/').next().unwrap_or(rel)
    } else {
        &value
    };
    Some(disposition::sanitize_name(name))
}

fn redirect_to_dir(conn: &Rc<ConnShared>, rel: &str, query: Option<&str>) -> Response<Body> {
    // `rel` has no empty components, so the location starts with exactly one slash and can never
    // be read as `//host` (an open redirect).
    let mut location = String::with_capacity(rel.len() + 2);
    location.push('/');
    location.extend(utf8_percent_encode(rel, PATH_ESCAPES));
    location.push('/');
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = error(conn, StatusCode::MOVED_PERMANENTLY, "moved permanently\n");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => error(conn, StatusCode::BAD_REQUEST, "bad request path\n"),
    }
}

fn open_error(conn: &Rc<ConnShared>, e: OpenError) -> Response<Body> {
    match e {
        OpenError::NotFound | OpenError::NotRegular => not_found(conn),
        OpenError::Forbidden => error(conn, StatusCode::FORBIDDEN, "forbidden\n"),
        OpenError::Io(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            let now = std::time::Instant::now();
            let last = &conn.worker.last_emfile_warning;
            if last
                .get()
                .is_none_or(|t| now.duration_since(t).as_secs() >= 10)
            {
                last.set(Some(now));
                tracing::warn!(error = %e, "cannot open file: out of descriptors (logged at most every 10 s)");
            }
            let mut resp = error(
                conn,
                StatusCode::SERVICE_UNAVAILABLE,
                "server busy, retry soon\n",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        OpenError::Io(e) => {
            tracing::error!(error = %e, "cannot open file");
            error(
                conn,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n",
            )
        }
    }
}

/// The one answer to a refused signature, whatever the reason.
fn forbidden(conn: &Rc<ConnShared>) -> Response<Body> {
    error(conn, StatusCode::FORBIDDEN, "forbidden\n")
}

fn not_found(conn: &Rc<ConnShared>) -> Response<Body> {
    error(conn, StatusCode::NOT_FOUND, "not found\n")
}

/// Answer an archive request for the directory `dir` (relative to the root): read the
/// selection, take a slot, build the manifest on the blocking pool, then evaluate preconditions
/// and Range against the archive as one representation.
async fn archive(
    conn: Rc<ConnShared>,
    parts: http::request::Parts,
    body: Option<Incoming>,
    dir: String,
    admission: Admission,
) -> Response<Body> {
    let worker = conn.worker.clone();
    // Held across awaits: this request keeps the settings it started with through a reload.
    let settings = worker.settings();
    let zc = &settings.config.zip;
    let mut request =
        match ZipRequest::from_query(parts.uri.query().unwrap_or(""), zc.compress, zc.level) {
            Ok(Some(r)) => r,
            Ok(None) => return error(&conn, StatusCode::BAD_REQUEST, "not an archive request\n"),
            Err(msg) => return text_error(&conn, StatusCode::BAD_REQUEST, msg),
        };
    if let (true, Some(body)) = (parts.method == Method::POST, body) {
        let selection = match read_body(&conn, body, zc.max_request_body).await {
            Ok(bytes) => bytes,
            Err(refusal) => return refusal,
        };
        // A signed path link fixed the query: the body may narrow it, never widen it.
        let pinned = admission.grant.as_ref().is_some_and(|g| g.prefix.is_none());
        let merged = if pinned {
            request.merge_json_pinned(&selection)
        } else {
            request.merge_json(&selection).map_err(PinError::Malformed)
        };
        match merged {
            Ok(()) => {}
            Err(PinError::Malformed(msg)) => {
                return text_error(&conn, StatusCode::BAD_REQUEST, msg)
            }
            Err(PinError::Widened) => {
                tracing::info!(client = %conn.peer, "a signed selection's body tried to widen it");
                return forbidden(&conn);
            }
        }
    }
    WorkerStats::add(&worker.stats().archives_total, 1);
    let Some(permit) = ArchivePermit::try_acquire(&worker.archives, zc.max_concurrent).map(Some)
    else {
        let mut resp = error(
            &conn,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many archive downloads, retry soon\n",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    };
    let top = match dir.rsplit('/').next() {
        Some(last) if !last.is_empty() => last.to_string(),
        _ => zc.root_name.clone(),
    };
    let mut filename = request
        .name
        .as_deref()
        .map(disposition::sanitize_name)
        .unwrap_or_else(|| top.clone());
    if !filename.to_ascii_lowercase().ends_with(".zip") {
        filename.push_str(".zip");
    }

    let (root, symlinks, dotfiles) = (
        worker.root().clone(),
        settings.config.symlinks,
        settings.config.dotfiles,
    );
    let limits = manifest::Limits {
        max_entries: zc.max_entries,
        max_bytes: zc.max_bytes,
        crc_ahead_max: zc.crc_ahead_max,
        max_depth: zc.max_depth,
    };
    let (compress, level) = (request.compress, request.level);
    let paths = std::mem::take(&mut request.paths);
    let build_root = root.clone();
    // An unsigned archive of a folder leaves out the protected folders inside it; a signed one
    // (its signature covers the folder, or a prefix above it) holds everything.
    let exclude = if admission.grant.is_some() {
        Vec::new()
    } else {
        settings.protect.protected_below(&format!("/{dir}"))
    };
    // The walk stops when the client leaves (this future is dropped), and the archive slot is
    // held by the walk itself until it has really ended.
    let cancel = CancelOnDrop(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let shown_dir = format!("/{dir}");
    let cancelled = cancel.0.clone();
    let built = tokio::task::spawn_blocking(move || {
        let selection = if paths.is_empty() {
            Selection::Everything
        } else {
            Selection::Paths(&paths)
        };
        let built = manifest::build(&BuildInput {
            root: &build_root,
            dir_rel: &dir,
            top: &top,
            selection,
            symlinks,
            dotfiles,
            compress,
            level,
            limits,
            exclude: &exclude,
            cancel: &cancelled,
        });
        (built, permit)
    })
    .await;
    drop(cancel);
    let (built, permit) = match built {
        Ok((built, permit)) => (Ok(built), permit),
        Err(e) => (Err(e), None),
    };
    let Some(permit) = permit else {
        return error(
            &conn,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error\n",
        );
    };
    let m = match built {
        Ok(Ok(m)) => Arc::new(m),
        Ok(Err(ManifestError::BadPath(msg))) => {
            return text_error(&conn, StatusCode::BAD_REQUEST, msg + "\n")
        }
        Ok(Err(ManifestError::NotFound(msg))) => {
            return text_error(&conn, StatusCode::NOT_FOUND, msg + "\n")
        }
        Ok(Err(ManifestError::TooLarge(msg))) => {
            return text_error(&conn, StatusCode::FORBIDDEN, msg + "\n")
        }
        Ok(Err(ManifestError::Cancelled)) => {
            return error(&conn, StatusCode::BAD_REQUEST, "client went away\n")
        }
        Ok(Err(ManifestError::Io(e))) => {
            tracing::error!(error = %e, "cannot list a directory for an archive");
            return error(
                &conn,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n",
            );
        }
        Err(_) => {
            return error(
                &conn,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error\n",
            )
        }
    };

    if m.skipped > 0 {
        WorkerStats::add(&worker.stats().archive_entries_skipped, m.skipped as u64);
        tracing::info!(
            dir = %shown_dir,
            skipped = m.skipped,
            "files left out of an archive (unreadable, or a name with a backslash or control character)"
        );
    }
    let is_head = parts.method == Method::HEAD;
    let mut status = StatusCode::OK;
    let mut span = (0, m.total_len);
    if m.sized {
        let validators = Validators {
            etag: &m.etag,
            last_modified: m.last_modified.max(0) as u64,
        };
        match conditional::evaluate(&parts.headers, validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                let mut resp = new_response(&conn, Body::empty(&conn));
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                archive_validators(resp.headers_mut(), &m);
                return resp;
            }
            Precondition::Failed => {
                return error(
                    &conn,
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed\n",
                )
            }
        }
        if parts.method == Method::GET {
            // Only single ranges: a multipart archive would help no client, and RFC 9110 lets a
            // server send the whole representation instead.
            match range_outcome(&parts.headers, m.total_len, validators, 1) {
                RangeOutcome::Partial(r) if r.len() == 1 => {
                    status = StatusCode::PARTIAL_CONTENT;
                    span = (r[0].first, r[0].len());
                }
                RangeOutcome::Unsatisfiable => {
                    let mut resp = error(
                        &conn,
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "range not satisfiable\n",
                    );
                    resp.headers_mut().insert(
                        header::CONTENT_RANGE,
                        content_range(format_args!("bytes */{}", m.total_len)),
                    );
                    return resp;
                }
                _ => {}
            }
        }
    }

    let body = if is_head {
        if m.sized {
            Body::head(m.total_len, &conn)
        } else {
            Body::empty(&conn)
        }
    } else {
        let len = if m.sized { span.1 } else { u64::MAX };
        let stream = ZipStream::new(m.clone(), conn.clone(), root, symlinks, span.0, len, permit);
        Body::zip(stream, m.sized, &conn)
    };
    let mut resp = new_response(&conn, body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, APPLICATION_ZIP);
    h.insert(
        header::CONTENT_DISPOSITION,
        header_value(disposition::attachment(&filename)),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    if m.sized {
        h.insert(header::ACCEPT_RANGES, BYTES);
        archive_validators(h, &m);
        if status == StatusCode::PARTIAL_CONTENT {
            let last = span.0 + span.1 - 1;
            h.insert(
                header::CONTENT_RANGE,
                content_range(format_args!("bytes {}-{last}/{}", span.0, m.total_len)),
            );
        }
    } else {
        h.insert(header::ACCEPT_RANGES, NO_RANGES);
    }
    resp
}

/// Sets its flag when dropped: tells a walk on the blocking pool that nobody waits for it.
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn archive_validators(h: &mut HeaderMap, m: &Manifest) {
    h.insert(header::ETAG, header_value(m.etag.clone()));
    let lm = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.last_modified.max(0) as u64);
    h.insert(
        header::LAST_MODIFIED,
        header_value(httpdate::fmt_http_date(lm)),
    );
}

/// A plain-text error whose text is built here (it may name a selected path, always quoted and
/// escaped with `{:?}`).
fn text_error(conn: &Rc<ConnShared>, status: StatusCode, text: String) -> Response<Body> {
    let mut resp = new_response(conn, Body::bytes(Bytes::from(text), conn));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, TEXT_PLAIN);
    resp.headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    resp
}

/// A response whose header map comes from the worker's recycled maps.
fn new_response(conn: &Rc<ConnShared>, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.headers_mut() = conn.worker.take_header_map();
    resp
}

/// A short plain-text error. The text is fixed: nothing from the request is echoed.
fn error(conn: &Rc<ConnShared>, status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = new_response(conn, Body::bytes(Bytes::from_static(text.as_bytes()), conn));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, TEXT_PLAIN);
    resp.headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    resp
}

/// A Content-Range value formatted on the stack (one allocation: the header value itself).
fn content_range(args: std::fmt::Arguments<'_>) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 80]; // "bytes " + 3 numbers of at most 20 digits + "-/"
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let n = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..n]).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
