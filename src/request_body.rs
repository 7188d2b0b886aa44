//! Reading request bodies without letting a client hold the server: a declared length over the
//! limit is refused before a byte is read (so no `100 Continue` is ever sent for it), the body
//! must keep arriving (`limits.body_timeout` between reads and `limits.min_body_rate` on
//! average), all bodies in memory at once share one global budget (`limits.body_memory`), a
//! drain ends the read, and any framing error (hyper's decoder or the stream guard's) is a 400.
//!
//! A static origin has no use for a body on GET or HEAD: it reads and drops one of at most
//! [`DISCARD_LIMIT`] bytes under the same rules, so that the framing is checked before anything
//! is answered, and refuses a larger one with 413.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body_budget::BodyBudget;
use crate::conn::ConnShared;
use crate::framing::Framing;
use crate::units::Rate;

/// The largest body read (and dropped) on a request that has no use for one.
pub const DISCARD_LIMIT: usize = 64 * 1024;

/// How often a waiting read looks at the drain flag.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// Why a body was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Declared or sent longer than the limit: 413.
    TooLarge,
    /// The client stopped sending, or sends too slowly: 408.
    TooSlow,
    /// Invalid framing (chunk sizes, missing CRLFs, oversized extensions): 400.
    Malformed,
    /// The global body budget is spent: 503.
    NoMemory,
    /// The server is draining: 503.
    Draining,
}

impl BodyError {
    /// The status and the fixed text of the refusal.
    pub fn answer(self) -> (http::StatusCode, &'static str) {
        use http::StatusCode as S;
        match self {
            BodyError::TooLarge => (S::PAYLOAD_TOO_LARGE, "request body too large\n"),
            BodyError::TooSlow => (S::REQUEST_TIMEOUT, "request body timed out\n"),
            BodyError::Malformed => (S::BAD_REQUEST, "malformed request body\n"),
            BodyError::NoMemory => (S::SERVICE_UNAVAILABLE, "server busy, retry soon\n"),
            BodyError::Draining => (S::SERVICE_UNAVAILABLE, "server shutting down\n"),
        }
    }

    /// The label counted in /metrics.
    pub fn label(self) -> &'static str {
        crate::stats::BODY_REFUSAL_LABELS[self as usize]
    }
}

/// The rules one read follows.
pub struct BodyRules<'a> {
    pub limit: usize,
    pub timeout: Duration,
    /// Bytes per second on average after the first `timeout` (0 = no rule).
    pub min_rate: Option<Rate>,
    pub budget: &'a Arc<BodyBudget>,
    pub draining: &'a AtomicBool,
}

/// Memory of the budget held by one read, handed back when it ends.
struct Held<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Read the whole body under `rules`.
pub async fn read(
    conn: &Rc<ConnShared>,
    mut body: Incoming,
    rules: &BodyRules<'_>,
) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > rules.limit as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut held = Held {
        budget: rules.budget,
        bytes: 0,
    };
    let mut buf = BytesMut::new();
    let start = Instant::now();
    let mut last = start;
    loop {
        let deadline = next_deadline(rules, start, last, buf.len());
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = tokio::time::sleep_until(deadline.min(Instant::now() + DRAIN_CHECK)) => {
                if rules.draining.load(Ordering::Relaxed) {
                    return Err(BodyError::Draining);
                }
                if Instant::now() >= deadline {
                    return Err(BodyError::TooSlow);
                }
                continue;
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => return Err(BodyError::Malformed),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers
            },
        };
        if buf.len() + data.len() > rules.limit {
            return Err(BodyError::TooLarge);
        }
        if !rules.budget.take(data.len()) {
            return Err(BodyError::NoMemory);
        }
        held.bytes += data.len();
        buf.extend_from_slice(&data);
        last = Instant::now();
    }
    if conn.framing.get() == Framing::Broken {
        return Err(BodyError::Malformed);
    }
    Ok(buf.freeze())
}

/// When the next body bytes must have arrived: within `timeout` of the last ones, and no later
/// than the minimum rate allows for what came so far.
fn next_deadline(rules: &BodyRules<'_>, start: Instant, last: Instant, got: usize) -> Instant {
    let gap = last + rules.timeout;
    let Some(min_rate) = rules.min_rate else {
        return gap;
    };
    gap.min(start + rules.timeout + min_rate.time_for(got as u64))
}
