//! Archive requests: the selection (query or POST body), the slot, the manifest built on the
//! blocking pool, and the archive answered as one representation (preconditions, one range).

use std::rc::Rc;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::body::Body;
use crate::conn::ConnShared;
use crate::http::conditional::{self, Precondition, Validators};
use crate::http::disposition;
use crate::http::range::RangeOutcome;
use crate::protect::Admission;
use crate::stats::WorkerStats;
use crate::zip::manifest::{self, BuildInput, Manifest, ManifestError, Selection};
use crate::zip::stream::{ArchivePermit, ZipStream};
use crate::zip::{PinError, ZipRequest};
use hyper::body::Incoming;

use super::bodies::read_body;
use super::existing_dir;
use super::file::range_outcome;
use super::reply::*;

pub(super) const APPLICATION_ZIP: HeaderValue = HeaderValue::from_static("application/zip");

pub(super) const NO_RANGES: HeaderValue = HeaderValue::from_static("none");

/// The directory (relative to the root) an archive request names, if it is a well-formed
/// GET, HEAD or POST of an existing directory; anything else is answered as a file request.
pub(super) fn archive_dir(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Option<String> {
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return None;
    }
    existing_dir(conn, req)
}

/// Answer an archive request for the directory `dir` (relative to the root): read the
/// selection, take a slot, build the manifest on the blocking pool, then evaluate preconditions
/// and Range against the archive as one representation.
pub(super) async fn answer(
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
pub(super) struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) fn archive_validators(h: &mut HeaderMap, m: &Manifest) {
    h.insert(header::ETAG, header_value(m.etag.clone()));
    let lm = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.last_modified.max(0) as u64);
    h.insert(
        header::LAST_MODIFIED,
        header_value(httpdate::fmt_http_date(lm)),
    );
}
