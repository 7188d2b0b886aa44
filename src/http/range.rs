//! The `Range` header (RFC 9110 §14): parse a byte-range set and decide, for a representation of a
//! known length, between the full body, one or more parts, and 416. Pure; no I/O.
//!
//! Decisions beyond the RFC's musts, each against amplification:
//! - overlapping and adjacent ranges are coalesced (sorted by start);
//! - more than `max_ranges` specs, or specs whose lengths add up to more than the
//!   representation (nginx's rule), get the full 200 instead.

use super::trim_ows;
use smallvec::SmallVec;

/// An inclusive byte range `[first, last]` of a representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Number of bytes in the range (never zero).
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a `ByteRange` holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The ranges to send, in order. One range is the common case and needs no allocation.
pub type Ranges = SmallVec<[ByteRange; 1]>;

/// What a `Range` header asks of a representation of a given length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Send the whole representation with 200 (no usable Range, or one we choose to ignore).
    Full,
    /// Send these ranges with 206: one range as a single part, several as multipart/byteranges.
    Partial(Ranges),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// One `range-spec` before it is resolved against a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    FromTo(u64, Option<u64>),
    /// `-suffix`.
    Suffix(u64),
}

/// Decide what to send for `header` against a representation of `len` bytes.
pub fn evaluate(header: &[u8], len: u64, max_ranges: usize) -> RangeOutcome {
    let mut specs: SmallVec<[Spec; 4]> = SmallVec::new();
    if parse(header, &mut specs, max_ranges).is_none() {
        // Invalid syntax, another unit, or too many ranges: ignore the header (RFC 9110 §14.2).
        return RangeOutcome::Full;
    }

    if len == 0 {
        // Only a non-zero suffix range is satisfiable on an empty representation, and there is
        // nothing to send for it, so the (empty) full response is the honest answer.
        return if specs.iter().any(|s| matches!(s, Spec::Suffix(n) if *n > 0)) {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    }

    let mut ranges = Ranges::new();
    let mut requested: u64 = 0;
    for spec in &specs {
        let r = match *spec {
            Spec::FromTo(first, _) if first >= len => continue,
            Spec::FromTo(first, last) => ByteRange {
                first,
                last: last.map_or(len - 1, |l| l.min(len - 1)),
            },
            Spec::Suffix(0) => continue,
            Spec::Suffix(n) => ByteRange {
                first: len.saturating_sub(n),
                last: len - 1,
            },
        };
        requested = requested.saturating_add(r.len());
        ranges.push(r);
    }
    if ranges.is_empty() {
        return RangeOutcome::Unsatisfiable;
    }
    if ranges.len() > 1 && requested > len {
        return RangeOutcome::Full;
    }
    coalesce(&mut ranges);
    RangeOutcome::Partial(ranges)
}

/// Sort by start and merge ranges that overlap or touch.
fn coalesce(ranges: &mut Ranges) {
    if ranges.len() < 2 {
        return;
    }
    ranges.sort_unstable_by_key(|r| r.first);
    let mut out = 0;
    for i in 1..ranges.len() {
        let r = ranges[i];
        let cur = &mut ranges[out];
        if r.first <= cur.last.saturating_add(1) {
            cur.last = cur.last.max(r.last);
        } else {
            out += 1;
            ranges[out] = r;
        }
    }
    ranges.truncate(out + 1);
}

/// Parse `bytes=spec, spec, ...` into `out`. `None` for anything not valid ranges-specifier syntax
/// or for more than `max` specs. Numbers saturate at u64::MAX (a 20-digit position is valid syntax).
fn parse(header: &[u8], out: &mut SmallVec<[Spec; 4]>, max: usize) -> Option<()> {
    let s = trim_ows(header);
    let eq = s.iter().position(|&b| b == b'=')?;
    if !trim_ows(&s[..eq]).eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut any = false;
    for item in s[eq + 1..].split(|&b| b == b',') {
        let item = trim_ows(item);
        if item.is_empty() {
            // RFC 9110 list syntax allows empty elements; they carry no range.
            continue;
        }
        let dash = item.iter().position(|&b| b == b'-')?;
        let (a, b) = (trim_ows(&item[..dash]), trim_ows(&item[dash + 1..]));
        let spec = if a.is_empty() {
            Spec::Suffix(number(b)?)
        } else {
            let first = number(a)?;
            let last = if b.is_empty() { None } else { Some(number(b)?) };
            if let Some(last) = last {
                if last < first {
                    return None;
                }
            }
            Spec::FromTo(first, last)
        };
        if out.len() == max {
            return None;
        }
        out.push(spec);
        any = true;
    }
    any.then_some(())
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(v: &[(u64, u64)]) -> RangeOutcome {
        RangeOutcome::Partial(
            v.iter()
                .map(|&(first, last)| ByteRange { first, last })
                .collect(),
        )
    }

    /// RFC 9110 §14.1.2 examples on a 10000-byte representation, then edge cases.
    #[test]
    fn table() {
        let cases: &[(&str, u64, RangeOutcome)] = &[
            ("bytes=0-499", 10000, partial(&[(0, 499)])),
            ("bytes=500-999", 10000, partial(&[(500, 999)])),
            ("bytes=-500", 10000, partial(&[(9500, 9999)])),
            ("bytes=9500-", 10000, partial(&[(9500, 9999)])),
            ("bytes=0-0,-1", 10000, partial(&[(0, 0), (9999, 9999)])),
            (
                "bytes= 0-999, 4500-5499, -1000",
                10000,
                partial(&[(0, 999), (4500, 5499), (9000, 9999)]),
            ),
            ("bytes=500-600,601-999", 10000, partial(&[(500, 999)])),
            ("bytes=500-700,601-999", 10000, partial(&[(500, 999)])),
            // clamped at EOF, suffix longer than the file
            ("bytes=9000-20000", 10000, partial(&[(9000, 9999)])),
            ("bytes=-20000", 10000, partial(&[(0, 9999)])),
            // unsatisfiable
            ("bytes=10000-", 10000, RangeOutcome::Unsatisfiable),
            ("bytes=-0", 10000, RangeOutcome::Unsatisfiable),
            ("bytes=20000-30000,-0", 10000, RangeOutcome::Unsatisfiable),
            // invalid syntax or unit: ignored
            ("bytes=500-100", 10000, RangeOutcome::Full),
            ("bytes=abc", 10000, RangeOutcome::Full),
            ("bytes=", 10000, RangeOutcome::Full),
            ("bytes=1-2-3", 10000, RangeOutcome::Full),
            ("bytes=--5", 10000, RangeOutcome::Full),
            ("items=0-5", 10000, RangeOutcome::Full),
            ("0-5", 10000, RangeOutcome::Full),
            ("bytes=+5-6", 10000, RangeOutcome::Full),
            ("BYTES=0-0", 10000, partial(&[(0, 0)])),
            // 20-digit positions saturate instead of failing
            ("bytes=0-99999999999999999999", 10000, partial(&[(0, 9999)])),
            (
                "bytes=99999999999999999999-",
                10000,
                RangeOutcome::Unsatisfiable,
            ),
            ("bytes=-99999999999999999999", 10000, partial(&[(0, 9999)])),
            // empty representation
            ("bytes=0-0", 0, RangeOutcome::Unsatisfiable),
            ("bytes=-5", 0, RangeOutcome::Full),
            // overlapping parts adding up to more than the file: full body
            ("bytes=0-9999,0-9999", 10000, RangeOutcome::Full),
            // empty list elements are allowed
            ("bytes=0-1,,2-3", 10000, partial(&[(0, 3)])),
        ];
        for (header, len, want) in cases {
            assert_eq!(
                &evaluate(header.as_bytes(), *len, 16),
                want,
                "{header} on {len}"
            );
        }
    }

    #[test]
    fn too_many_ranges_get_the_full_body() {
        let h: String = format!(
            "bytes={}",
            (0..17)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(evaluate(h.as_bytes(), 10000, 16), RangeOutcome::Full);
        let h: String = format!(
            "bytes={}",
            (0..16)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            matches!(evaluate(h.as_bytes(), 10000, 16), RangeOutcome::Partial(r) if r.len() == 16)
        );
    }

    proptest::proptest! {
        /// Any header yields either valid, sorted, disjoint slices inside the file whose total is at
        /// most the file, or the full body, or 416; never a panic.
        #[test]
        fn never_panics_or_amplifies(header in "(bytes|BYTES|x)?=?[-0-9, ]{0,40}", len in 0u64..5000) {
            match evaluate(header.as_bytes(), len, 16) {
                RangeOutcome::Full | RangeOutcome::Unsatisfiable => {}
                RangeOutcome::Partial(ranges) => {
                    let mut total = 0;
                    let mut prev_end: Option<u64> = None;
                    for r in &ranges {
                        proptest::prop_assert!(r.first <= r.last && r.last < len);
                        if let Some(p) = prev_end { proptest::prop_assert!(r.first > p + 1); }
                        prev_end = Some(r.last);
                        total += r.len();
                    }
                    proptest::prop_assert!(total <= len);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(header in proptest::collection::vec(proptest::num::u8::ANY, 0..64), len in 0u64..u64::MAX) {
            let _ = evaluate(&header, len, 16);
        }
    }
}
