//! File requests: the path resolved through the open-file cache (directories, index files,
//! redirects), the representation chosen (precompressed variants), and its 200, 206, 304, 412
//! or 416 with the body that sends it.

use std::rc::Rc;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use percent_encoding::utf8_percent_encode;

use crate::body::Body;
use crate::conn::ConnShared;
use crate::digest::{EtagSource, Known, REPR_DIGEST, WANT_REPR_DIGEST};
use crate::fs::path::PATH_ESCAPES;
use crate::fs::{OpenError, OpenFile, PreparedHead};
use crate::http::conditional::Validators;
use crate::http::disposition;
use crate::http::encoding::{self, Choice, Coding};
use crate::http::gate::{self, Decision};
use crate::http::range::ByteRange;
use crate::http::scan::HeaderScan;

use super::admit;
use super::reply::*;
use super::target::{Target, TargetRefusal};

pub(super) const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");

pub(super) const ACCEPT_ENCODING_VARY: HeaderValue = HeaderValue::from_static("Accept-Encoding");

/// Answer a request for a file (or a directory's index).
pub(super) fn answer(
    conn: &Rc<ConnShared>,
    req: &http::request::Parts,
    scan: &HeaderScan<'_>,
    target: &mut Target,
) -> Response<Body> {
    let is_head = req.method == Method::HEAD;
    if req.method != Method::GET && !is_head {
        return not_get(conn, &req.method);
    }
    let config = conn.worker.config();
    let file = match resolve(conn, req, target) {
        Ok(file) => file,
        Err(refusal) => return refusal,
    };
    let rel = &target.rel;
    let Some((file, vary)) = negotiate(
        conn,
        req,
        rel,
        file,
        config.precompressed.as_deref().unwrap_or(&[]),
    ) else {
        let mut resp = error(
            conn,
            StatusCode::NOT_ACCEPTABLE,
            "no acceptable content coding\n",
        );
        resp.headers_mut()
            .insert(header::VARY, ACCEPT_ENCODING_VARY);
        return resp;
    };
    let mut resp = represent(conn, (req, scan), &file, rel, is_head, config.max_ranges);
    if vary {
        resp.headers_mut()
            .insert(header::VARY, ACCEPT_ENCODING_VARY);
    }
    resp
}

/// OPTIONS (204 with Allow) and every other method a file does not take (405).
fn not_get(conn: &Rc<ConnShared>, method: &Method) -> Response<Body> {
    let mut resp = if method == Method::OPTIONS {
        let mut resp = new_response(conn, Body::empty(conn));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp
    } else {
        error(conn, StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
    };
    resp.headers_mut().insert(header::ALLOW, ALLOW);
    resp
}

/// The file a GET or HEAD names, with the target's `rel` left as the file's path: the
/// protections applied, a directory redirected (no trailing slash) or replaced by its index
/// file.
fn resolve(
    conn: &Rc<ConnShared>,
    req: &http::request::Parts,
    target: &mut Target,
) -> Result<Arc<OpenFile>, Response<Body>> {
    let norm = target.path.map_err(|why| match why {
        TargetRefusal::TooLong => {
            error(conn, StatusCode::URI_TOO_LONG, "request target too long\n")
        }
        TargetRefusal::BadPath => error(conn, StatusCode::BAD_REQUEST, "bad request path\n"),
        TargetRefusal::Hidden => not_found(conn),
    })?;
    let rel = &mut *target.rel;
    let config = conn.worker.config();
    if admit(conn, req, rel).is_err() {
        return Err(forbidden(conn));
    }
    let file = conn.worker.open(rel).map_err(|e| open_error(conn, e))?;
    if !file.is_dir {
        return if norm.trailing_slash {
            Err(not_found(conn))
        } else {
            Ok(file)
        };
    }
    if !norm.trailing_slash {
        return Err(redirect_to_dir(conn, rel, req.uri.query()));
    }
    if !rel.is_empty() {
        rel.push('/');
    }
    rel.push_str(&config.index);
    match conn.worker.open(rel) {
        Ok(f) if !f.is_dir => Ok(f),
        Ok(_) => Err(not_found(conn)),
        Err(e) => Err(open_error(conn, e)),
    }
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

/// The response for one representation (a file or a precompressed variant): its identity (ETag
/// and digests), the gate (preconditions, then Range), and the body.
pub(super) fn represent(
    conn: &Rc<ConnShared>,
    (req, scan): (&http::request::Parts, &HeaderScan<'_>),
    file: &Arc<OpenFile>,
    rel: &str,
    is_head: bool,
    max_ranges: usize,
) -> Response<Body> {
    let id = identity(conn, file);
    let validators = Validators {
        etag: id.etag.and_then(|e| e.to_str().ok()).unwrap_or(""),
        last_modified: file.last_modified_secs,
    };
    let ranges_allowed = if is_head { 0 } else { max_ranges };
    let download = req.uri.query().and_then(|q| download_name(q, rel));
    let shown = Shown {
        download: download.as_deref(),
        etag: id.etag,
        repr_digest: id.known.and_then(|k| repr_digest(req, scan, k)),
        // The head a request without a digest preference gets, once nothing in it can change.
        settled: !scan.digest_preference
            && (id.known.is_some() || conn.worker.config().digests.is_none()),
    };
    let resp = match gate::decide(&req.headers, validators, file.len, ranges_allowed) {
        Decision::NotModified => not_modified(conn, |h| validator_headers(h, file, id.etag)),
        Decision::PreconditionFailed => precondition_failed(conn),
        Decision::RangeNotSatisfiable => {
            let mut resp = range_not_satisfiable(conn, file.len);
            resp.headers_mut().insert(header::ACCEPT_RANGES, BYTES);
            resp
        }
        Decision::Partial(ranges) if ranges.len() == 1 => {
            single_range(conn, file, ranges[0], shown)
        }
        // Multipart needs a mapping for each part; an unmappable file gets the (copied) full
        // body instead, as RFC 9110 allows.
        Decision::Partial(_) if file.map.is_none() => whole(conn, file, is_head, shown),
        Decision::Partial(ranges) => multipart(conn, file, &ranges, shown),
        Decision::Full => whole(conn, file, is_head, shown),
    };
    if shown.repr_digest.is_some()
        && matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT)
    {
        conn.sent_digest();
    }
    resp
}

/// What a 200 or 206 of a file names besides the file itself.
#[derive(Clone, Copy)]
struct Shown<'a> {
    /// The `?download` name.
    download: Option<&'a str>,
    etag: Option<&'a HeaderValue>,
    repr_digest: Option<&'a HeaderValue>,
    /// Whether this is the head every plain request for these bytes gets from now on, so that
    /// it can be prepared once (see [`representation_head`]).
    settled: bool,
}

/// What a response says identifies the representation's bytes.
struct Identity<'f> {
    /// `None` with `etag = "content"` while the digest is unknown: no ETag rather than one
    /// that would change later for the same bytes.
    etag: Option<&'f HeaderValue>,
    /// The digests, when known and the file is still the one they were computed for.
    known: Option<&'f Known>,
}

fn identity<'f>(conn: &Rc<ConnShared>, file: &'f OpenFile) -> Identity<'f> {
    let config = conn.worker.config();
    let Some(plan) = config.digests.as_ref() else {
        return Identity {
            etag: Some(&file.etag),
            known: None,
        };
    };
    let known = known(conn, file, plan);
    let etag = match plan.etag {
        EtagSource::MtimeSize => Some(&file.etag),
        EtagSource::Content => known.and_then(|k| k.content_etag.as_ref()),
    };
    Identity { etag, known }
}

/// The digests of `file` once known (unknown ones are queued, and this response goes without),
/// and only while the file is still the one they were computed for: a file rewritten in place
/// within the open-file cache's `valid` never sends the old digest with its new bytes.
fn known<'f>(
    conn: &ConnShared,
    file: &'f OpenFile,
    plan: &Arc<crate::digest::Plan>,
) -> Option<&'f Known> {
    if file.is_dir {
        return None;
    }
    let known = match file.digests.get() {
        Some(k) => k,
        None => {
            let digests = crate::digest::store::lookup(&file.file, file.key, plan)?;
            let coding = file.encoding.map(|c| c.token());
            let content_etag = digests.content_etag(file.len, coding);
            file.digests.get_or_init(|| Known {
                digests,
                content_etag,
            })
        }
    };
    if file.small.get().is_some() {
        // The body goes from bytes read at this identity (`fs::small`), not from the file.
        return Some(known);
    }
    unchanged(conn, file).then_some(known)
}

/// Whether `file` still has the identity it was opened with. An inotify watch that saw no write
/// answers for free (`fs::watch`); otherwise one fstat does (4–5% of a 16 KiB response here),
/// and the first one also sets up the watch, so that the fstat confirms what the watch then
/// keeps.
fn unchanged(conn: &ConnShared, file: &OpenFile) -> bool {
    let watches = conn.worker.watches();
    match file.watch.get() {
        Some(Some(watch)) if !watch.changed() => return true,
        Some(_) => {}
        None => {
            let _ = file.watch.set(watches.and_then(|w| w.watch(&file.file)));
        }
    }
    crate::stats::WorkerStats::add(&conn.worker.stats().digest_fstat_checks, 1);
    let now = file.file.metadata().ok().map(|m| crate::fs::file_key(&m));
    now == Some(file.key)
}

/// The `Repr-Digest` in the algorithm the request's `Want-Repr-Digest` prefers.
fn repr_digest<'k>(
    req: &http::request::Parts,
    scan: &HeaderScan<'_>,
    known: &'k Known,
) -> Option<&'k HeaderValue> {
    // Without the field, no lookup: the default choice from an empty preference list.
    let fields = scan
        .digest_preference
        .then(|| req.headers.get_all(WANT_REPR_DIGEST));
    let wants = fields.iter().flat_map(|f| f.iter()).map(|v| v.as_bytes());
    let digests = &known.digests;
    let alg = crate::digest::want::choose(wants, |a| digests.repr(a).is_some())?;
    digests.repr(alg)
}

/// 200 with the whole file (or, for HEAD, its length only).
fn whole(
    conn: &Rc<ConnShared>,
    file: &Arc<OpenFile>,
    is_head: bool,
    shown: Shown<'_>,
) -> Response<Body> {
    let body = if is_head {
        Body::head(file.len, conn)
    } else if file.len == 0 {
        Body::empty(conn)
    } else {
        let all = ByteRange {
            first: 0,
            last: file.len - 1,
        };
        Body::file(file, all, conn)
    };
    let mut resp = Response::new(body);
    *resp.headers_mut() = representation_head(conn, file, shown);
    if is_head && file.len == 0 {
        // hyper only writes an implicit `content-length: 0` for GET; HEAD must match GET.
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    resp
}

/// 206 with one range.
fn single_range(
    conn: &Rc<ConnShared>,
    file: &Arc<OpenFile>,
    r: ByteRange,
    shown: Shown<'_>,
) -> Response<Body> {
    let mut resp = Response::new(Body::file(file, r, conn));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    *h = representation_head(conn, file, shown);
    h.insert(
        header::CONTENT_RANGE,
        content_range(format_args!("bytes {}-{}/{}", r.first, r.last, file.len)),
    );
    resp
}

/// 206 with several ranges as multipart/byteranges.
fn multipart(
    conn: &Rc<ConnShared>,
    file: &Arc<OpenFile>,
    ranges: &[ByteRange],
    shown: Shown<'_>,
) -> Response<Body> {
    let boundary = conn.worker.next_boundary();
    let mut resp = new_response(conn, Body::multipart(file, ranges, &boundary, conn));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    *h = representation_head(conn, file, shown);
    h.insert(
        header::CONTENT_TYPE,
        header_value(format!("multipart/byteranges; boundary={boundary}")),
    );
    resp
}

/// The headers every 200/206 of `file` carries, in a map of their own. A settled head is
/// prepared once per file and cloned (two allocations instead of six or seven hashed inserts);
/// any other (a content ETag or digest still unknown, a digest preference, an ETag source
/// changed since) is inserted one by one.
fn representation_head(conn: &Rc<ConnShared>, file: &OpenFile, shown: Shown<'_>) -> HeaderMap {
    let prepared = shown.settled.then(|| {
        file.head.get_or_init(|| {
            let mut headers = HeaderMap::with_capacity(8);
            representation_headers(&mut headers, file, shown);
            PreparedHead {
                etag: shown.etag.cloned(),
                repr_digest: shown.repr_digest.cloned(),
                headers,
            }
        })
    });
    let mut h = match prepared {
        Some(p) if p.etag.as_ref() == shown.etag && p.repr_digest.as_ref() == shown.repr_digest => {
            p.headers.clone()
        }
        _ => {
            let mut h = conn.worker.take_header_map();
            representation_headers(&mut h, file, shown);
            h
        }
    };
    if let Some(name) = shown.download {
        h.insert(
            header::CONTENT_DISPOSITION,
            header_value(disposition::attachment(name)),
        );
    }
    h
}

/// The representation headers of `file` (but the `?download` name), inserted into `h`.
fn representation_headers(h: &mut HeaderMap, file: &OpenFile, shown: Shown<'_>) {
    h.insert(header::CONTENT_TYPE, file.content_type.clone());
    h.insert(header::ACCEPT_RANGES, BYTES);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    validator_headers(h, file, shown.etag);
    if let Some(digest) = shown.repr_digest {
        h.insert(REPR_DIGEST, digest.clone());
    }
    if let Some(coding) = file.encoding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
}

/// The headers a 304 must repeat (RFC 9110 §15.4.5), with the ETag `etag` (`None`: none).
pub(super) fn validator_headers(h: &mut HeaderMap, file: &OpenFile, etag: Option<&HeaderValue>) {
    if let Some(etag) = etag {
        h.insert(header::ETAG, etag.clone());
    }
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
            internal_error(conn)
        }
    }
}
