//! Content digests of served files, for RFC 9530 `Repr-Digest` and content-based ETags: which
//! algorithms there are, the digests of one file with their header values ready, the hashing
//! itself ([`hash`]), the copies kept in extended attributes ([`attribute`]), the background
//! store that finds them without a request ever waiting ([`store`]), and the `sendfiled digest`
//! command for deploy pipelines ([`tree`]).

pub(crate) mod attribute;
pub(crate) mod hash;
pub(crate) mod store;
pub mod tree;
pub(crate) mod want;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::HeaderValue;
use serde::{Deserialize, Serialize};

/// RFC 9530's `Repr-Digest` field.
pub const REPR_DIGEST: http::HeaderName = http::HeaderName::from_static("repr-digest");

/// `Want-Repr-Digest` (RFC 9530 §4), as a name made once: looked up by a `&str`, every request
/// paid to parse and lower-case it (about 150 instructions).
pub const WANT_REPR_DIGEST: http::HeaderName = http::HeaderName::from_static("want-repr-digest");

/// A digest algorithm `Repr-Digest` can name (RFC 9530's registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Algorithm {
    #[serde(rename = "sha-256")]
    Sha256,
    #[serde(rename = "sha-512")]
    Sha512,
}

impl Algorithm {
    /// The key in `Repr-Digest` and `Want-Repr-Digest`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha-256",
            Algorithm::Sha512 => "sha-512",
        }
    }

    /// The algorithm a `Want-Repr-Digest` key names, if we have it.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        match token {
            "sha-256" => Some(Algorithm::Sha256),
            "sha-512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Whether and how the server learns files' digests (`[digests] mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// No digests, no hashing.
    Off,
    /// Files are hashed in the background once requested (or their digests read from their
    /// extended attributes); responses carry `Repr-Digest` once the digest is known.
    #[default]
    Background,
    /// Only digests already in the files' extended attributes (from `sendfiled digest`) are
    /// used; the server never hashes.
    PrecomputedOnly,
}

/// Where a file's ETag comes from (`[digests] etag`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtagSource {
    /// `"<mtime ns>-<size>"`: free, but differs between nodes whose copies differ in time.
    #[default]
    MtimeSize,
    /// From the SHA-256 and the size: equal on every node with the same bytes. No ETag until
    /// the digest is known.
    Content,
}

/// What `[digests]` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Background or precomputed-only (off is no plan at all).
    pub mode: Mode,
    pub algorithms: Vec<Algorithm>,
    /// How fast the digest thread may read while hashing.
    pub read_rate: crate::units::Rate,
    pub etag: EtagSource,
    /// Whether the digest thread writes what it hashed to the files' attributes (off by
    /// default: writing changes a file's ctime, which the open-file cache and archives in
    /// flight take for a changed file; `sendfiled digest` at deploy time is the usual way).
    pub write_attributes: bool,
}

/// The raw digests of one file's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raw {
    pub sha256: Option<[u8; 32]>,
    pub sha512: Option<[u8; 64]>,
}

impl Raw {
    /// The digest for `alg`, if computed.
    pub fn get(&self, alg: Algorithm) -> Option<&[u8]> {
        match alg {
            Algorithm::Sha256 => self.sha256.as_ref().map(|d| &d[..]),
            Algorithm::Sha512 => self.sha512.as_ref().map(|d| &d[..]),
        }
    }

    /// Whether every algorithm in `algorithms` was computed.
    pub fn has_all(&self, algorithms: &[Algorithm]) -> bool {
        algorithms.iter().all(|&a| self.get(a).is_some())
    }
}

/// The digests of one file's bytes, with the `Repr-Digest` values ready to send.
#[derive(Debug)]
pub struct Digests {
    pub raw: Raw,
    sha256: Option<HeaderValue>,
    sha512: Option<HeaderValue>,
}

impl Digests {
    /// From the raw digests of the bytes.
    pub fn new(raw: Raw) -> Digests {
        let value = |alg: Algorithm, d: &[u8]| {
            let text = format!("{}=:{}:", alg.token(), STANDARD.encode(d));
            HeaderValue::from_str(&text).expect("base64 is a valid header value")
        };
        Digests {
            sha256: raw.sha256.map(|d| value(Algorithm::Sha256, &d)),
            sha512: raw.sha512.map(|d| value(Algorithm::Sha512, &d)),
            raw,
        }
    }

    /// The `Repr-Digest` value for `alg`, if this digest was computed.
    pub fn repr(&self, alg: Algorithm) -> Option<&HeaderValue> {
        match alg {
            Algorithm::Sha256 => self.sha256.as_ref(),
            Algorithm::Sha512 => self.sha512.as_ref(),
        }
    }

    /// The SHA-256, if computed.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.raw.sha256
    }

    /// The content ETag of a representation of `size` bytes with these digests,
    /// `"<size hex>-<base64url SHA-256>"` (a coding's token appended for a precompressed
    /// variant); `None` without a SHA-256.
    pub fn content_etag(&self, size: u64, coding: Option<&str>) -> Option<HeaderValue> {
        let d = self.raw.sha256?;
        let b64 = URL_SAFE_NO_PAD.encode(d);
        let text = match coding {
            Some(c) => format!("\"{size:x}-{b64}-{c}\""),
            None => format!("\"{size:x}-{b64}\""),
        };
        HeaderValue::from_str(&text).ok()
    }
}

/// What a cached open file knows about its content once its digests are known: the digests and,
/// with `etag = "content"`, the ETag they give.
#[derive(Debug)]
pub struct Known {
    pub digests: std::sync::Arc<Digests>,
    pub content_etag: Option<HeaderValue>,
}
