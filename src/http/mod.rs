//! HTTP semantics that do not depend on sockets or files: Range ([`range`]), preconditions
//! ([`conditional`]), download names ([`disposition`]), content-coding negotiation
//! ([`encoding`]), Host syntax ([`host`]), the precondition-and-range gate every
//! representation passes ([`gate`]) and the one pass over a request's header names ([`scan`]). All pure functions with table tests.

pub mod conditional;
pub(crate) mod disposition;
pub mod encoding;
pub mod forwarded;
pub(crate) mod gate;
pub(crate) mod host;
pub mod range;
pub(crate) mod scan;

/// Optional whitespace (RFC 9110 §5.6.3: spaces and tabs) removed from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
