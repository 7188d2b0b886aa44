//! File requests: the path resolved through the open-file cache (directories, index files,
//! redirects), the representation chosen (precompressed variants), and its 200, 206, 304, 412
//! or 416 with the body that sends it.

use std::rc::Rc;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use percent_encoding::utf8_percent_encode;

use crate::body::Body;
use crate::config::DotfileRule;
use crate::conn::ConnShared;
use crate::fs::path::{has_dotfile, normalize, PATH_ESCAPES};
use crate::fs::{OpenError, OpenFile};
use crate::http::conditional::{self, Precondition, Validators};
use crate::http::disposition;
use crate::http::encoding::{self, Choice, Coding};
use crate::http::range::{self, ByteRange, RangeOutcome};

use super::admit;
use super::reply::*;

pub(super) const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");

pub(super) const ACCEPT_ENCODING_VARY: HeaderValue = HeaderValue::from_static("Accept-Encoding");

/// Answer a request for a file (or a directory's index).
pub(super) fn answer(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Response<Body> {
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
pub(super) fn negotiate(
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
pub(super) fn represent(
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
pub(super) fn range_outcome(
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
pub(super) fn representation_headers(h: &mut HeaderMap, file: &OpenFile, download: Option<&str>) {
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
pub(super) fn validator_headers(h: &mut HeaderMap, file: &OpenFile) {
    h.insert(header::ETAG, file.etag.clone());
    h.insert(header::LAST_MODIFIED, file.last_modified.clone());
    if let Some(cc) = &file.cache_control {
        h.insert(header::CACHE_CONTROL, cc.clone());
    }
}

/// `?download` names the file after itself; `?download=NAME` after NAME.
pub(super) fn download_name(query: &str, rel: &str) -> Option<String> {
    let (_, value) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "download")?;
    let name = if value.is_empty() {
        rel.rsplit('/').next().unwrap_or(rel)
    } else {
        &value
    };
    Some(disposition::sanitize_name(name))
}

pub(super) fn redirect_to_dir(
    conn: &Rc<ConnShared>,
    rel: &str,
    query: Option<&str>,
) -> Response<Body> {
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

pub(super) fn open_error(conn: &Rc<ConnShared>, e: OpenError) -> Response<Body> {
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
