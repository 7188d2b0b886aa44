//! The one decision every representation (a file, a precompressed variant, an archive) goes
//! through before its body: the preconditions in RFC 9110 §13.2.2 order (412, 304), then Range
//! with If-Range (206 or 416), as a pure function of the representation's validators and length
//! and the request's headers.

use http::header;
use http::HeaderMap;

use super::conditional::{self, Precondition, Validators};
use super::range::{self, RangeOutcome, Ranges};

/// What to answer, before the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// 304 Not Modified (with the validators).
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */len`.
    RangeNotSatisfiable,
    /// 200 with the whole representation.
    Full,
    /// 206 with these ranges (one part, or multipart/byteranges).
    Partial(Ranges),
}

/// The request headers the decision reads. Almost every request has none of them, and one pass
/// over the request's header names (each comparison an enum compare) costs less than the five
/// hash lookups that would find nothing (510 instructions less for a GET with only a Host header,
/// callgrind; a browser's dozen headers pay up to six compares each, about what the lookups cost).
const GATE_HEADERS: [header::HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

/// Decide for a representation of `len` bytes with validators `v`. `max_ranges` is the most
/// parts a 206 may have; 0 means Range is not applied (HEAD, or a representation that is only
/// ever sent whole).
pub fn decide(headers: &HeaderMap, v: Validators<'_>, len: u64, max_ranges: usize) -> Decision {
    if !headers.keys().any(|name| GATE_HEADERS.contains(name)) {
        return Decision::Full;
    }
    match conditional::evaluate(headers, v) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Decision::NotModified,
        Precondition::Failed => return Decision::PreconditionFailed,
    }
    if max_ranges == 0 {
        return Decision::Full;
    }
    match range_outcome(headers, len, v, max_ranges) {
        RangeOutcome::Full => Decision::Full,
        RangeOutcome::Partial(ranges) => Decision::Partial(ranges),
        RangeOutcome::Unsatisfiable => Decision::RangeNotSatisfiable,
    }
}

/// Range applies only with a single Range field, and only when If-Range (if any) still matches
/// the representation.
fn range_outcome(
    headers: &HeaderMap,
    len: u64,
    v: Validators<'_>,
    max_ranges: usize,
) -> RangeOutcome {
    let mut all = headers.get_all(header::RANGE).iter();
    let Some(range) = all.next() else {
        return RangeOutcome::Full;
    };
    if all.next().is_some() {
        return RangeOutcome::Full;
    }
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        if !conditional::if_range_allows(if_range.as_bytes(), v) {
            return RangeOutcome::Full;
        }
    }
    range::evaluate(range.as_bytes(), len, max_ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::range::ByteRange;

    const V: Validators<'static> = Validators {
        etag: "\"abc\"",
        last_modified: 1_700_000_000,
    };
    const DATE: &str = "Tue, 14 Nov 2023 22:13:20 GMT"; // = 1_700_000_000

    fn decide_with(fields: &[(&str, &str)], max_ranges: usize) -> Decision {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        decide(&h, V, 100, max_ranges)
    }

    fn part(first: u64, last: u64) -> Decision {
        Decision::Partial([ByteRange { first, last }].into_iter().collect())
    }

    #[test]
    fn preconditions_then_ranges() {
        use Decision::*;
        type Case = (&'static [(&'static str, &'static str)], usize, Decision);
        let cases: &[Case] = &[
            (&[], 16, Full),
            (&[("if-none-match", "\"abc\"")], 16, NotModified),
            (
                &[("if-none-match", "\"abc\""), ("range", "bytes=0-9")],
                16,
                NotModified,
            ),
            (&[("if-match", "\"other\"")], 16, PreconditionFailed),
            (
                &[("if-match", "\"other\""), ("range", "bytes=0-9")],
                16,
                PreconditionFailed,
            ),
            (
                &[("if-unmodified-since", "Mon, 13 Nov 2023 00:00:00 GMT")],
                16,
                PreconditionFailed,
            ),
            (&[("if-modified-since", DATE)], 16, NotModified),
            (&[("range", "bytes=0-9")], 16, part(0, 9)),
            (&[("range", "bytes=0-9")], 0, Full),
            (
                &[("range", "bytes=0-9"), ("range", "bytes=10-19")],
                16,
                Full,
            ),
            (&[("range", "bytes=200-")], 16, RangeNotSatisfiable),
            (&[("range", "bytes=200-")], 0, Full),
            (
                &[("range", "bytes=90-"), ("if-range", "\"abc\"")],
                16,
                part(90, 99),
            ),
            (&[("range", "bytes=90-"), ("if-range", "\"old\"")], 16, Full),
            (
                &[("range", "bytes=90-"), ("if-range", DATE)],
                16,
                part(90, 99),
            ),
            (&[("range", "bytes=0-1,5-6")], 1, Full),
        ];
        for (fields, max, want) in cases {
            assert_eq!(&decide_with(fields, *max), want, "{fields:?} max {max}");
        }
    }
}
