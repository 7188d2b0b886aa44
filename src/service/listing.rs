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

use super::reply::*;
use super::target::Target;

/// The directory (relative to the root) a request should get a listing of: a well-formed GET or
/// HEAD of an existing directory, with the trailing slash, that has no index file.
pub(super) fn listing_dir(
    conn: &Rc<ConnShared>,
    req: &http::request::Parts,
    target: &Target,
) -> Option<String> {
    if !req.uri.path().ends_with('/') || !matches!(req.method, Method::GET | Method::HEAD) {
        return None;
    }
    let rel = target.existing_dir(conn)?;
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
    let Some(view) = ViewAsked::from(&parts) else {
        return error(
            &conn,
            StatusCode::BAD_REQUEST,
            "bad page number or sort order\n",
        );
    };
    let mut entries = match read_entries(&conn, &settings, &dir, &admission).await {
        Ok(entries) => entries,
        Err(refusal) => return refusal,
    };
    crate::listing::sort(&mut entries, view.sort);
    let total = entries.len();
    let pages = total.div_ceil(per_page).max(1);
    if view.page > pages {
        return not_found(&conn);
    }
    let start = (view.page - 1) * per_page;
    let path = if dir.is_empty() {
        "/".to_string()
    } else {
        format!("/{dir}/")
    };
    let page = crate::listing::Page {
        path: &path,
        entries: &entries[start..(start + per_page).min(total)],
        page: view.page,
        pages,
        total,
        zip: settings.config.zip.enabled,
        sort: view.sort,
    };
    let (text, ctype) = if view.json {
        (crate::listing::json(&page), "application/json")
    } else {
        (crate::listing::html(&page), "text/html; charset=utf-8")
    };
    page_response(&conn, parts.method == Method::HEAD, text, ctype)
}

/// What the request asks to see: a page number (`?page=N`, from 1) and JSON (`?format=json`, or
/// an Accept that prefers JSON to HTML). `None` for a bad page number.
struct ViewAsked {
    page: usize,
    json: bool,
    sort: crate::listing::Sort,
}

impl ViewAsked {
    fn from(parts: &http::request::Parts) -> Option<ViewAsked> {
        let query = parts.uri.query().unwrap_or("");
        let mut view = ViewAsked {
            page: 1,
            json: false,
            sort: crate::listing::Sort::default(),
        };
        let (mut sort, mut order) = (None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "page" => view.page = v.parse::<usize>().ok().filter(|n| *n >= 1)?,
                "format" if v == "json" => view.json = true,
                "sort" => sort = Some(v),
                "order" => order = Some(v),
                _ => {}
            }
        }
        view.sort = crate::listing::Sort::parse(sort.as_deref(), order.as_deref())?;
        view.json = view.json
            || parts
                .headers
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
        Some(view)
    }
}

/// The folder's entries, read on the blocking pool under the serving rules; protected folders
/// are hidden unless the request is signed.
async fn read_entries(
    conn: &Rc<ConnShared>,
    settings: &crate::settings::Settings,
    dir: &str,
    admission: &Admission,
) -> Result<Vec<crate::listing::Entry>, Response<Body>> {
    let hidden = if admission.grant.is_some() {
        Vec::new()
    } else {
        settings.protect.protected_below(&format!("/{dir}"))
    };
    let input = crate::listing::ListInput {
        root: conn.worker.root().clone(),
        dir: dir.to_string(),
        symlinks: settings.config.symlinks,
        dotfiles: settings.config.dotfiles,
        hidden,
    };
    match tokio::task::spawn_blocking(move || crate::listing::read(&input)).await {
        Ok(Ok(entries)) => Ok(entries),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(conn)),
        _ => Err(internal_error(conn)),
    }
}

/// A rendered page as the response (its length only, for HEAD).
fn page_response(
    conn: &Rc<ConnShared>,
    is_head: bool,
    text: String,
    ctype: &'static str,
) -> Response<Body> {
    let body = if is_head {
        Body::head(text.len() as u64, conn)
    } else {
        Body::bytes(Bytes::from(text), conn)
    };
    let mut resp = new_response(conn, body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    resp
}
