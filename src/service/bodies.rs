//! Request bodies as the service meets them: read under the body rules, dropped when a request
//! has no use for one, refused with the status their failure calls for.

use std::rc::Rc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::conn::ConnShared;
use crate::request_body::{self, BodyError, BodyRules};
use crate::stats::WorkerStats;
use hyper::body::Incoming;

use super::reply::*;

/// Tell the exchange record what is being answered (a HEAD response sends no body, whatever its
/// body type).
pub(super) fn record(conn: &Rc<ConnShared>, resp: &Response<Body>, is_head: bool) {
    let path = if is_head {
        crate::access_log::BodyPath::None
    } else {
        resp.body().path()
    };
    conn.responded(resp.status(), path);
}

/// The rules a request body is read under, with `limit` bytes at most.
pub(super) fn body_rules(conn: &Rc<ConnShared>, limit: usize) -> BodyRules<'_> {
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
pub(super) async fn read_body(
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
pub(super) async fn discard_body(
    conn: &Rc<ConnShared>,
    body: Incoming,
) -> Result<(), Response<Body>> {
    read_body(conn, body, request_body::DISCARD_LIMIT)
        .await
        .map(drop)
}

/// The answer to a body that could not be read; the connection closes after it, since what
/// follows on it cannot be trusted to be the next request.
pub(super) fn body_refusal(conn: &Rc<ConnShared>, why: BodyError) -> Response<Body> {
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
