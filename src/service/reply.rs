//! The building blocks of every answer: responses on recycled header maps, the short fixed
//! error texts, and header values formatted without allocating more than the value.

use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::body::Body;
use crate::conn::ConnShared;

pub(super) const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

pub(super) const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// The one answer to a refused signature, whatever the reason.
pub(super) fn forbidden(conn: &Rc<ConnShared>) -> Response<Body> {
    error(conn, StatusCode::FORBIDDEN, "forbidden\n")
}

pub(super) fn not_found(conn: &Rc<ConnShared>) -> Response<Body> {
    error(conn, StatusCode::NOT_FOUND, "not found\n")
}

/// A plain-text error whose text is built here (it may name a selected path, always quoted and
/// escaped with `{:?}`).
pub(super) fn text_error(
    conn: &Rc<ConnShared>,
    status: StatusCode,
    text: String,
) -> Response<Body> {
    plain_text(conn, status, Bytes::from(text))
}

/// A response whose header map comes from the worker's recycled maps.
pub(super) fn new_response(conn: &Rc<ConnShared>, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.headers_mut() = conn.worker.take_header_map();
    resp
}

/// A short plain-text error. The text is fixed: nothing from the request is echoed.
pub(super) fn error(
    conn: &Rc<ConnShared>,
    status: StatusCode,
    text: &'static str,
) -> Response<Body> {
    plain_text(conn, status, Bytes::from_static(text.as_bytes()))
}

/// A plain-text answer with `status`.
fn plain_text(conn: &Rc<ConnShared>, status: StatusCode, text: Bytes) -> Response<Body> {
    let mut resp = new_response(conn, Body::bytes(text, conn));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, TEXT_PLAIN);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    resp
}

/// A Content-Range value formatted on the stack (one allocation: the header value itself).
pub(super) fn content_range(args: std::fmt::Arguments<'_>) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 80]; // "bytes " + 3 numbers of at most 20 digits + "-/"
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let n = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..n]).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

pub(super) fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(super) const BYTES: HeaderValue = HeaderValue::from_static("bytes");

/// 304 with the headers `validators` adds (RFC 9110 §15.4.5: those a 200 would carry).
pub(super) fn not_modified(
    conn: &Rc<ConnShared>,
    validators: impl FnOnce(&mut HeaderMap),
) -> Response<Body> {
    let mut resp = new_response(conn, Body::empty(conn));
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    validators(resp.headers_mut());
    resp
}

/// 412.
pub(super) fn precondition_failed(conn: &Rc<ConnShared>) -> Response<Body> {
    error(
        conn,
        StatusCode::PRECONDITION_FAILED,
        "precondition failed\n",
    )
}

/// 416 for a representation of `len` bytes.
pub(super) fn range_not_satisfiable(conn: &Rc<ConnShared>, len: u64) -> Response<Body> {
    let mut resp = error(
        conn,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range not satisfiable\n",
    );
    resp.headers_mut().insert(
        header::CONTENT_RANGE,
        content_range(format_args!("bytes */{len}")),
    );
    resp
}

/// 500, with nothing about the cause (that goes to the log).
pub(super) fn internal_error(conn: &Rc<ConnShared>) -> Response<Body> {
    error(
        conn,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error\n",
    )
}
