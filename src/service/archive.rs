//! Archive requests: the selection (query or POST body), the slot, the manifest built on the
//! blocking pool, and the archive answered as one representation (preconditions, one range).

use std::rc::Rc;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::body::Body;
use crate::config::SymlinkRule;
use crate::conn::ConnShared;
use crate::digest::store;
use crate::digest::EtagSource;
use crate::digest::Plan;
use crate::http::conditional::Validators;
use crate::http::disposition;
use crate::http::gate::{self, Decision};
use crate::protect::Admission;
use crate::settings::Settings;
use crate::stats::WorkerStats;
use crate::zip::manifest::{self, BuildInput, Manifest, ManifestError, Selection};
use crate::zip::stream::{ArchivePermit, ZipStream};
use crate::zip::{PinError, ZipRequest};
use hyper::body::Incoming;

use super::bodies::read_body;
use super::reply::*;
use super::target::Target;

pub(super) const APPLICATION_ZIP: HeaderValue = HeaderValue::from_static("application/zip");

pub(super) const NO_RANGES: HeaderValue = HeaderValue::from_static("none");

/// The directory (relative to the root) an archive request names, if it is a well-formed
/// GET, HEAD or POST of an existing directory; anything else is answered as a file request.
pub(super) fn archive_dir(
    conn: &Rc<ConnShared>,
    req: &http::request::Parts,
    target: &Target,
) -> Option<String> {
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return None;
    }
    target.existing_dir(conn)
}

/// Answer an archive request for the directory `dir` (relative to the root): read the
/// selection, take a slot, build the manifest on the blocking pool, then pass the archive
/// through the gate as one representation.
pub(super) async fn answer(
    conn: Rc<ConnShared>,
    parts: http::request::Parts,
    body: Option<Incoming>,
    dir: String,
    admission: Admission,
) -> Response<Body> {
    // Held across awaits: this request keeps the settings it started with through a reload.
    let settings = conn.worker.settings();
    let zc = &settings.config.zip;
    let request = match selection(&conn, &parts, body, &admission, zc).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    WorkerStats::add(&conn.worker.stats().archives_total, 1);
    let Some(permit) = ArchivePermit::try_acquire(&conn.worker.archives, zc.max_concurrent) else {
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
    let filename = download_name(request.name.as_deref(), &top);
    let built = build_manifest(&conn, &settings, &admission, dir, top, request, permit).await;
    let (m, permit) = match built {
        Ok(done) => done,
        Err(refusal) => return refusal,
    };
    respond(&conn, &parts, &settings, m, permit, &filename)
}

/// The archive request: its query, merged with a POST body's selection. A signed path link
/// fixed the query, so its body may narrow the selection, never widen it (403).
async fn selection(
    conn: &Rc<ConnShared>,
    parts: &http::request::Parts,
    body: Option<Incoming>,
    admission: &Admission,
    zc: &crate::config::ZipSettings,
) -> Result<ZipRequest, Response<Body>> {
    let query = parts.uri.query().unwrap_or("");
    let mut request = match ZipRequest::from_query(query, zc.compress, zc.level) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(error(
                conn,
                StatusCode::BAD_REQUEST,
                "not an archive request\n",
            ))
        }
        Err(msg) => return Err(text_error(conn, StatusCode::BAD_REQUEST, msg)),
    };
    let (true, Some(body)) = (parts.method == Method::POST, body) else {
        return Ok(request);
    };
    let selection = read_body(conn, body, zc.max_request_body).await?;
    let pinned = admission.grant.as_ref().is_some_and(|g| g.prefix.is_none());
    let merged = if pinned {
        request.merge_json_pinned(&selection)
    } else {
        request.merge_json(&selection).map_err(PinError::Malformed)
    };
    match merged {
        Ok(()) => Ok(request),
        Err(PinError::Malformed(msg)) => Err(text_error(conn, StatusCode::BAD_REQUEST, msg)),
        Err(PinError::Widened) => {
            tracing::info!(client = %conn.peer, "a signed selection's body tried to widen it");
            Err(forbidden(conn))
        }
    }
}

/// The name the archive is saved under: the client's (cleaned), or the folder's, with `.zip`.
fn download_name(asked: Option<&str>, top: &str) -> String {
    let mut filename = asked
        .map(disposition::sanitize_name)
        .unwrap_or_else(|| top.to_string());
    if !filename.to_ascii_lowercase().ends_with(".zip") {
        filename.push_str(".zip");
    }
    filename
}

/// Build the manifest on the blocking pool. The walk stops when the client leaves (this future
/// is dropped), and the archive slot is held by the walk itself until it has really ended; it
/// comes back with the manifest.
async fn build_manifest(
    conn: &Rc<ConnShared>,
    settings: &Settings,
    admission: &Admission,
    dir: String,
    top: String,
    mut request: ZipRequest,
    permit: ArchivePermit,
) -> Result<(Arc<Manifest>, ArchivePermit), Response<Body>> {
    let zc = &settings.config.zip;
    let limits = manifest::Limits {
        max_entries: zc.max_entries,
        max_bytes: zc.max_bytes,
        crc_ahead_max: zc.crc_ahead_max,
        max_depth: zc.max_depth,
    };
    let (root, symlinks, dotfiles) = (
        conn.worker.root().clone(),
        settings.config.symlinks,
        settings.config.dotfiles,
    );
    let (compress, level) = (request.compress, request.level);
    let paths = std::mem::take(&mut request.paths);
    // An unsigned archive of a folder leaves out the protected folders inside it; a signed one
    // (its signature covers the folder, or a prefix above it) holds everything.
    let exclude = if admission.grant.is_some() {
        Vec::new()
    } else {
        settings.protect.protected_below(&format!("/{dir}"))
    };
    let shown_dir = format!("/{dir}");
    let digests = settings.config.digests.clone();
    let cancel = CancelOnDrop(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let cancelled = cancel.0.clone();
    let built = tokio::task::spawn_blocking(move || {
        let selection = if paths.is_empty() {
            Selection::Everything
        } else {
            Selection::Paths(&paths)
        };
        let built = manifest::build(&BuildInput {
            root: &root,
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
        let built = built.map(|mut m| {
            if let Some(plan) = digests.filter(|p| p.etag == EtagSource::Content && m.sized) {
                m.etag = content_etag(&m, &root, symlinks, &plan).unwrap_or_default();
            }
            m
        });
        (built, permit)
    })
    .await;
    drop(cancel);
    let (built, permit) = built.map_err(|_| internal_error(conn))?;
    let m = built.map_err(|e| manifest_refusal(conn, e))?;
    if m.skipped > 0 {
        WorkerStats::add(
            &conn.worker.stats().archive_entries_skipped,
            m.skipped as u64,
        );
        tracing::info!(
            dir = %shown_dir,
            skipped = m.skipped,
            "files left out of an archive (unreadable, or a name with a backslash or control character)"
        );
    }
    Ok((Arc::new(m), permit))
}

/// The answer to a manifest that could not be built: each reason names its culprit.
fn manifest_refusal(conn: &Rc<ConnShared>, e: ManifestError) -> Response<Body> {
    match e {
        ManifestError::BadPath(msg) => text_error(conn, StatusCode::BAD_REQUEST, msg + "\n"),
        ManifestError::NotFound(msg) => text_error(conn, StatusCode::NOT_FOUND, msg + "\n"),
        ManifestError::TooLarge(msg) => text_error(conn, StatusCode::FORBIDDEN, msg + "\n"),
        ManifestError::Cancelled => error(conn, StatusCode::BAD_REQUEST, "client went away\n"),
        ManifestError::Io(e) => {
            tracing::error!(error = %e, "cannot list a directory for an archive");
            internal_error(conn)
        }
    }
}

/// The archive through the gate (a sized archive is one representation with validators; only
/// GET gets a range, and only one: a multipart archive would help no client), then its body.
fn respond(
    conn: &Rc<ConnShared>,
    parts: &http::request::Parts,
    settings: &Settings,
    m: Arc<Manifest>,
    permit: ArchivePermit,
    filename: &str,
) -> Response<Body> {
    let is_head = parts.method == Method::HEAD;
    let mut span = None;
    if m.sized {
        let validators = Validators {
            etag: &m.etag,
            last_modified: m.last_modified.max(0) as u64,
        };
        let ranges = usize::from(parts.method == Method::GET);
        match gate::decide(&parts.headers, validators, m.total_len, ranges) {
            Decision::NotModified => return not_modified(conn, |h| archive_validators(h, &m)),
            Decision::PreconditionFailed => return precondition_failed(conn),
            Decision::RangeNotSatisfiable => return range_not_satisfiable(conn, m.total_len),
            Decision::Partial(r) if r.len() == 1 => span = Some((r[0].first, r[0].len())),
            Decision::Partial(_) | Decision::Full => {}
        }
    }
    let body = if is_head {
        if m.sized {
            Body::head(m.total_len, conn)
        } else {
            Body::empty(conn)
        }
    } else {
        let (start, len) = span.unwrap_or((0, if m.sized { m.total_len } else { u64::MAX }));
        let (root, symlinks) = (conn.worker.root().clone(), settings.config.symlinks);
        let stream = ZipStream::new(m.clone(), conn.clone(), root, symlinks, start, len, permit);
        Body::zip(stream, m.sized, conn)
    };
    let mut resp = new_response(conn, body);
    archive_headers(&mut resp, &m, span, filename);
    resp
}

/// The headers of an archive's 200 or 206.
fn archive_headers(
    resp: &mut Response<Body>,
    m: &Manifest,
    span: Option<(u64, u64)>,
    filename: &str,
) {
    if span.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, APPLICATION_ZIP);
    h.insert(
        header::CONTENT_DISPOSITION,
        header_value(disposition::attachment(filename)),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    if !m.sized {
        h.insert(header::ACCEPT_RANGES, NO_RANGES);
        return;
    }
    h.insert(header::ACCEPT_RANGES, BYTES);
    archive_validators(h, m);
    if let Some((first, len)) = span {
        let last = first + len - 1;
        h.insert(
            header::CONTENT_RANGE,
            content_range(format_args!("bytes {first}-{last}/{}", m.total_len)),
        );
    }
}

/// With `etag = "content"`: the archive's ETag from its members' digests, `None` (no ETag) while
/// any is unknown; the unknown ones are queued for the digest thread, so a later request finds
/// them. On the blocking pool (it may open files).
fn content_etag(
    m: &Manifest,
    root: &std::fs::File,
    rule: SymlinkRule,
    plan: &Arc<Plan>,
) -> Option<String> {
    let mut complete = true;
    let tag = m.content_etag(|e| {
        if let Some(d) = store::known(e.key) {
            return d.sha256();
        }
        if let Ok((file, meta)) = crate::fs::open(root, m.disk_path(e), rule) {
            if crate::fs::file_key(&meta) == e.key {
                let _ = store::lookup(&file, e.key, plan);
            }
        }
        complete = false;
        // Keep going, so that every unknown member is queued now.
        Some([0; 32])
    });
    tag.filter(|_| complete)
}

/// Sets its flag when dropped: tells a walk on the blocking pool that nobody waits for it.
pub(super) struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) fn archive_validators(h: &mut HeaderMap, m: &Manifest) {
    if !m.etag.is_empty() {
        h.insert(header::ETAG, header_value(m.etag.clone()));
    }
    let lm = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.last_modified.max(0) as u64);
    h.insert(
        header::LAST_MODIFIED,
        header_value(httpdate::fmt_http_date(lm)),
    );
}
