//! Conditional requests (RFC 9110 §13): evaluate If-Match, If-Unmodified-Since, If-None-Match and
//! If-Modified-Since in the order of §13.2.2, and If-Range for range requests. Pure; no I/O.

use super::trim_ows;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::HeaderMap;

/// What the preconditions say about a GET or HEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Go on and serve (Range may still apply).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The validators of the selected representation.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// The strong entity tag, quotes included, e.g. `"1a2b-400"`.
    pub etag: &'a str,
    /// Last modification time, whole seconds since the epoch.
    pub last_modified: u64,
}

/// Evaluate the preconditions of a GET/HEAD request (RFC 9110 §13.2.2 steps 1-4).
pub fn evaluate(headers: &HeaderMap, v: Validators<'_>) -> Precondition {
    // Step 1: If-Match, strong comparison; else step 2: If-Unmodified-Since.
    if headers.contains_key(IF_MATCH) {
        if !list_matches(headers.get_all(IF_MATCH).iter(), v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(date) = header_date(headers, IF_UNMODIFIED_SINCE) {
        if v.last_modified > date {
            return Precondition::Failed;
        }
    }
    // Step 3: If-None-Match, weak comparison; else step 4: If-Modified-Since.
    if headers.contains_key(IF_NONE_MATCH) {
        if list_matches(headers.get_all(IF_NONE_MATCH).iter(), v.etag, Compare::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(date) = header_date(headers, IF_MODIFIED_SINCE) {
        if v.last_modified <= date {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether an `If-Range` value lets a Range apply (RFC 9110 §13.1.5): an entity tag must match
/// strongly (a weak tag never does); a date must equal Last-Modified exactly. Anything else (bad
/// syntax included) means "send the full representation".
pub fn if_range_allows(value: &[u8], v: Validators<'_>) -> bool {
    let value = trim_ows(value);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return tag_equal(value, v.etag, Compare::Strong);
    }
    match std::str::from_utf8(value)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    {
        Some(date) => unix_secs(date) == Some(v.last_modified),
        None => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Strong,
    Weak,
}

/// Does any member of the comma-separated lists (or `*`) match `etag`?
fn list_matches<'a>(
    values: impl Iterator<Item = &'a http::HeaderValue>,
    etag: &str,
    how: Compare,
) -> bool {
    for value in values {
        let mut rest = trim_ows(value.as_bytes());
        if rest == b"*" {
            return true;
        }
        while !rest.is_empty() {
            let Some((tag, after)) = split_tag(rest) else {
                return false;
            };
            if tag_equal(tag, etag, how) {
                return true;
            }
            rest = trim_ows(after);
            match rest.first() {
                Some(b',') => rest = trim_ows(&rest[1..]),
                None => {}
                Some(_) => return false,
            }
        }
    }
    false
}

/// Split one `[W/]"opaque"` from the front of `s`.
fn split_tag(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = if s.starts_with(b"W/") { 2 } else { 0 };
    if s.get(start) != Some(&b'"') {
        return None;
    }
    let close = s[start + 1..].iter().position(|&b| b == b'"')? + start + 1;
    Some((&s[..=close], &s[close + 1..]))
}

fn tag_equal(candidate: &[u8], ours: &str, how: Compare) -> bool {
    let weak = candidate.starts_with(b"W/");
    if weak && how == Compare::Strong {
        return false;
    }
    let opaque = if weak { &candidate[2..] } else { candidate };
    opaque == ours.as_bytes()
}

fn header_date(headers: &HeaderMap, name: http::HeaderName) -> Option<u64> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None; // a repeated date header is invalid and ignored (§13.1.3, §13.1.4)
    }
    let date = httpdate::parse_http_date(first.to_str().ok()?).ok()?;
    unix_secs(date)
}

fn unix_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d: Duration| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ETAG: &str = "\"5f3a-2710\"";
    // Sun, 06 Nov 1994 08:49:37 GMT (the RFC's example date)
    const LM: u64 = 784111777;
    const V: Validators<'static> = Validators {
        etag: ETAG,
        last_modified: LM,
    };

    fn eval(pairs: &[(&str, &str)]) -> Precondition {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        evaluate(&h, V)
    }

    #[test]
    fn table() {
        use Precondition::*;
        let cases: &[(&[(&str, &str)], Precondition)] = &[
            (&[], Proceed),
            (&[("if-match", ETAG)], Proceed),
            (&[("if-match", "*")], Proceed),
            (&[("if-match", "\"other\"")], Failed),
            (&[("if-match", "W/\"5f3a-2710\"")], Failed), // If-Match compares strongly
            (&[("if-match", "\"a\", \"5f3a-2710\"")], Proceed),
            (&[("if-match", "\"a\""), ("if-match", ETAG)], Proceed),
            (
                &[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
                Proceed,
            ),
            (
                &[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT")],
                Failed,
            ),
            (&[("if-unmodified-since", "garbage")], Proceed),
            // If-Match present: If-Unmodified-Since is not evaluated
            (
                &[
                    ("if-match", ETAG),
                    ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT"),
                ],
                Proceed,
            ),
            (&[("if-none-match", ETAG)], NotModified),
            (&[("if-none-match", "W/\"5f3a-2710\"")], NotModified), // weak comparison
            (&[("if-none-match", "\"x\", W/\"5f3a-2710\"")], NotModified),
            (&[("if-none-match", "*")], NotModified),
            (&[("if-none-match", "\"x\"")], Proceed),
            (&[("if-none-match", "5f3a-2710")], Proceed), // unquoted: not a tag
            (
                &[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
                NotModified,
            ),
            (
                &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
                NotModified,
            ), // RFC 850
            (
                &[("if-modified-since", "Sun Nov  6 08:49:37 1994")],
                NotModified,
            ), // asctime
            (
                &[("if-modified-since", "Sun, 06 Nov 1994 08:49:36 GMT")],
                Proceed,
            ),
            (&[("if-modified-since", "not a date")], Proceed),
            // If-None-Match present: If-Modified-Since is ignored
            (
                &[
                    ("if-none-match", "\"x\""),
                    ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ],
                Proceed,
            ),
            // 412 wins over 304
            (&[("if-match", "\"x\""), ("if-none-match", ETAG)], Failed),
        ];
        for (headers, want) in cases {
            assert_eq!(eval(headers), *want, "{headers:?}");
        }
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(ETAG.as_bytes(), V));
        assert!(!if_range_allows(b"W/\"5f3a-2710\"", V));
        assert!(!if_range_allows(b"\"other\"", V));
        assert!(if_range_allows(b"Sun, 06 Nov 1994 08:49:37 GMT", V));
        assert!(!if_range_allows(b"Sun, 06 Nov 1994 08:49:38 GMT", V));
        assert!(!if_range_allows(b"yesterday", V));
    }
}
