//! HTTP semantics that do not depend on sockets or files: Range ([`range`]), preconditions
//! ([`conditional`]) and download names ([`disposition`]). All pure functions with table tests.

pub mod conditional;
pub mod disposition;
pub mod range;
