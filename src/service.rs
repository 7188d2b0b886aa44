//! The hand-written hyper `Service`: one request in, one response out. It gates the method and
//! Host, makes the path safe, finds the file through the worker's open-file cache, evaluates the
//! preconditions and Range, and picks the body. The only place where errors become HTTP statuses.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::body::Body;
use crate::config::DotfileRule;
use crate::fs::path::{has_dotfile, normalize};
use crate::fs::{OpenError, OpenFile};
use crate::http::conditional::{self, Precondition, Validators};
use crate::http::disposition;
use crate::http::range::{self, ByteRange, RangeOutcome};
use crate::io::ConnShared;
use crate::stats::WorkerStats;

const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// Characters escaped when a normalised path goes back into a Location header.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

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

impl<B> hyper::service::Service<Request<B>> for FileService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        self.conn.set_busy();
        WorkerStats::add(&self.conn.worker.stats().requests, 1);
        let (mut parts, _body) = req.into_parts();
        let resp = respond(&self.conn, &parts);
        // The request's header map becomes a later response's: with hyper recycling each sent
        // response's map for the next request, header maps are never allocated in steady state.
        self.conn
            .worker
            .recycle_header_map(std::mem::take(&mut parts.headers));
        ready(Ok(resp))
    }
}

/// Answer one request.
fn respond(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Response<Body> {
    let worker = &conn.worker;
    let config = &worker.config;

    let hosts = req.headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version == Version::HTTP_11) {
        return error(
            conn,
            StatusCode::BAD_REQUEST,
            "a request needs exactly one Host header\n",
        );
    }
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

    let validators = Validators {
        etag: file.etag.to_str().unwrap_or(""),
        last_modified: file.last_modified_secs,
    };
    match conditional::evaluate(&req.headers, validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut resp = new_response(conn, Body::empty(conn));
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            validator_headers(resp.headers_mut(), &file);
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
        range_outcome(&req.headers, &file, validators, config.max_ranges)
    };

    let download = req.uri.query().and_then(|q| download_name(q, &rel));
    drop(rel);

    let (status, body) = match outcome {
        RangeOutcome::Full if is_head => (StatusCode::OK, Body::head(file.len, conn)),
        RangeOutcome::Full if file.len == 0 => (StatusCode::OK, Body::empty(conn)),
        RangeOutcome::Full => (
            StatusCode::OK,
            Body::file(
                &file,
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
            let mut resp = new_response(conn, Body::file(&file, r, conn));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            representation_headers(h, &file, download.as_deref());
            h.insert(
                header::CONTENT_RANGE,
                content_range(format_args!("bytes {}-{}/{}", r.first, r.last, file.len)),
            );
            return resp;
        }
        RangeOutcome::Partial(ranges) => {
            let boundary = worker.next_boundary();
            let mut resp = new_response(conn, Body::multipart(&file, &ranges, &boundary, conn));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            representation_headers(h, &file, download.as_deref());
            h.insert(
                header::CONTENT_TYPE,
                header_value(format!("multipart/byteranges; boundary={boundary}")),
            );
            return resp;
        }
    };
    let mut resp = new_response(conn, body);
    *resp.status_mut() = status;
    representation_headers(resp.headers_mut(), &file, download.as_deref());
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
    file: &OpenFile,
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
    range::evaluate(range.as_bytes(), file.len, max_ranges)
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

fn not_found(conn: &Rc<ConnShared>) -> Response<Body> {
    error(conn, StatusCode::NOT_FOUND, "not found\n")
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
