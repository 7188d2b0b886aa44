//! What a request's header block holds of the fields read on every request, found in one pass
//! over its names: almost every request carries Host and little else, and a hashed lookup
//! costs more than comparing a name (an enum compare for the standard ones), above all a lookup
//! that finds nothing.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The fields every request is checked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderScan<'h> {
    /// The first Host value.
    pub host: Option<&'h HeaderValue>,
    /// How many Host fields there are (more than one is a 400).
    pub hosts: usize,
    /// Whether any Transfer-Encoding field is present.
    pub transfer_encoding: bool,
    /// Whether any field named like `digest_preference` (`Want-Repr-Digest`) is present.
    pub digest_preference: bool,
}

impl<'h> HeaderScan<'h> {
    /// One pass over `headers`; `digest_preference` is the name of the digest-preference field.
    pub fn of(headers: &'h HeaderMap, digest_preference: &HeaderName) -> HeaderScan<'h> {
        let mut scan = HeaderScan::default();
        for (name, value) in headers {
            if name == header::HOST {
                scan.hosts += 1;
                scan.host.get_or_insert(value);
            } else if name == header::TRANSFER_ENCODING {
                scan.transfer_encoding = true;
            } else if name == digest_preference {
                scan.digest_preference = true;
            }
        }
        scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_what_the_lookups_would() {
        let want = HeaderName::from_static("want-repr-digest");
        let mut h = HeaderMap::new();
        let none = HeaderScan::of(&h, &want);
        assert_eq!((none.hosts, none.host), (0, None));
        assert!(!none.transfer_encoding && !none.digest_preference);

        h.append(header::HOST, HeaderValue::from_static("a"));
        h.append(header::USER_AGENT, HeaderValue::from_static("x"));
        h.append(header::HOST, HeaderValue::from_static("b"));
        h.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.append(want.clone(), HeaderValue::from_static("sha-256=1"));
        let all = HeaderScan::of(&h, &want);
        assert_eq!(all.hosts, 2);
        assert_eq!(
            all.host,
            h.get(header::HOST),
            "the first Host, as get() finds it"
        );
        assert!(all.transfer_encoding && all.digest_preference);

        let mut other = HeaderMap::new();
        other.append(
            HeaderName::from_static("want-content-digest"),
            HeaderValue::from_static("x"),
        );
        assert!(
            !HeaderScan::of(&other, &want).digest_preference,
            "another custom name"
        );
    }
}
