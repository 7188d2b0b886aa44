//! HTTP semantics that do not depend on sockets or files: Range ([`range`]), preconditions
//! ([`conditional`]), download names ([`disposition`]), content-coding negotiation
//! ([`encoding`]) and Host syntax ([`host`]). All pure functions with table tests.

pub mod conditional;
pub mod disposition;
pub mod encoding;
pub mod host;
pub mod range;
