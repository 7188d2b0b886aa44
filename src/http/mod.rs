//! HTTP semantics that do not depend on sockets or files: Range ([`range`]), preconditions
//! ([`conditional`]), download names ([`disposition`]) and content-coding negotiation
//! ([`encoding`]). All pure functions with table tests.

pub mod conditional;
pub mod disposition;
pub mod encoding;
pub mod range;
