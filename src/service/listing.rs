//! Directory listings: which requests get one, and the page read on the blocking pool and
//! rendered as HTML or JSON.

use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::Body;
use crate::conn::ConnShared;
use crate::fs::OpenError;
use crate::protect::Admission;

use super::existing_dir;
use super::reply::*;

/// The directory (relative to the root) a request should get a listing of: a well-formed GET or
/// HEAD of an existing directory, with the trailing slash, that has no index file.
pub(super) fn listing_dir(conn: &Rc<ConnShared>, req: &http::request::Parts) -> Option<String> {
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
pub(super) async fn answer(
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
