//! The building blocks of every answer: responses on recycled header maps, the short fixed
//! error texts, and header values formatted without allocating more than the value.

use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

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
    let mut resp = new_response(conn, Body::bytes(Bytes::from(text), conn));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, TEXT_PLAIN);
    resp.headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    resp
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
    let mut resp = new_response(conn, Body::bytes(Bytes::from_static(text.as_bytes()), conn));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, TEXT_PLAIN);
    resp.headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
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
