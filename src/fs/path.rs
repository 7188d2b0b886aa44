//! Request path → safe relative path. Percent-decodes exactly once, refuses what no file name
//! should contain (NUL, control characters, backslashes, invalid UTF-8), resolves `.` and `..`
//! lexically and refuses any `..` that would climb above the root. Pure; no I/O.

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS};

/// Characters escaped when a normalised path goes back into a URL (a Location header, a signed
/// link).
pub const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Why a request path was refused (all become 400 Bad Request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path starting with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// The decoded bytes are not UTF-8 (this includes overlong forms such as `%c0%ae`).
    NotUtf8,
    /// NUL or another control character.
    ControlCharacter,
    /// A backslash, raw or encoded.
    Backslash,
    /// A `..` that would leave the root.
    EscapesRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with /",
            PathError::BadPercentEncoding => "the path has a malformed percent-encoding",
            PathError::NotUtf8 => "the path is not valid UTF-8",
            PathError::ControlCharacter => "the path contains a control character",
            PathError::Backslash => "the path contains a backslash",
            PathError::EscapesRoot => "the path climbs above the root",
        })
    }
}

/// The result of [`normalize`]: the relative path is written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The request path ended with `/` (a directory was asked for explicitly).
    pub trailing_slash: bool,
}

/// Decode and normalise `raw` (the path part of the request target) into `out` as a relative path
/// with single `/` separators and no `.`/`..` components; empty for the root. `out` is cleared
/// first, so one buffer per worker serves every request without allocating.
pub fn normalize(raw: &str, out: &mut String) -> Result<Normalized, PathError> {
    out.clear();
    if let Some((rel, trailing_slash)) = plain(raw) {
        out.push_str(rel);
        return Ok(Normalized { trailing_slash });
    }
    normalize_any(raw, out)
}

/// The common case in one pass over the bytes: a path of letters, digits and `-_~+.` between
/// single slashes, no segment starting with a dot, nothing to decode. Such a path is already
/// normal; the relative part is it without its slashes at either end. `None` sends every other
/// path to [`normalize_any`] (the test below checks the two agree wherever this answers).
fn plain(raw: &str) -> Option<(&str, bool)> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut prev = b'/';
    for &b in &bytes[1..] {
        let ok = match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'~' | b'+' => true,
            b'.' | b'/' => prev != b'/',
            _ => false,
        };
        if !ok {
            return None;
        }
        prev = b;
    }
    let trailing_slash = prev == b'/';
    let end = if trailing_slash && raw.len() > 1 {
        raw.len() - 1
    } else {
        raw.len()
    };
    Some((&raw[1..end], trailing_slash))
}

/// Every path: percent-decoding, `.` and `..`, repeated slashes, and the refusals.
fn normalize_any(raw: &str, out: &mut String) -> Result<Normalized, PathError> {
    let raw = raw.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Decode into a small stack buffer (only when there is something to decode).
    let mut decoded: smallvec::SmallVec<[u8; 256]> = smallvec::SmallVec::new();
    let text = if raw.contains(&b'%') {
        decoded.reserve(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'%' {
                let hi = raw.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = raw.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => decoded.push((h * 16 + l) as u8),
                    _ => return Err(PathError::BadPercentEncoding),
                }
                i += 3;
            } else {
                decoded.push(b);
                i += 1;
            }
        }
        std::str::from_utf8(&decoded).map_err(|_| PathError::NotUtf8)?
    } else {
        std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?
    };
    let bytes = text.as_bytes();
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f)
        || (!text.is_ascii() && text.chars().any(char::is_control))
    {
        return Err(PathError::ControlCharacter);
    }
    if bytes.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    for segment in text.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if out.is_empty() {
                    return Err(PathError::EscapesRoot);
                }
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
            }
            name => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(name);
            }
        }
    }
    Ok(Normalized {
        trailing_slash: text.ends_with('/'),
    })
}

/// Whether any component of the normalised `rel` is a dotfile, not counting a leading
/// `.well-known` directory (RFC 8615).
pub fn has_dotfile(rel: &str) -> bool {
    let mut parts = rel.split('/');
    match parts.next() {
        Some(".well-known") => {}
        Some(first) if first.starts_with('.') => return true,
        _ => {}
    }
    parts.any(|p| p.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of up to seven characters over an alphabet that has each kind of trouble (dots,
    /// slashes, escapes, backslashes, a control character, non-ASCII): wherever the fast path
    /// answers, the general one gives the same answer.
    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let alphabet = ["a", ".", "/", "%", "2e", "\\", "\u{1}", "é", "-"];
        let mut paths = vec![String::from("/")];
        let mut fast = 0;
        for _ in 0..6 {
            let mut next = Vec::new();
            for p in &paths {
                for c in alphabet {
                    next.push(format!("{p}{c}"));
                }
            }
            for p in &next {
                let mut general = String::new();
                let want = normalize_any(p, &mut general);
                if let Some((rel, trailing_slash)) = plain(p) {
                    fast += 1;
                    assert_eq!(want, Ok(Normalized { trailing_slash }), "{p:?}");
                    assert_eq!(rel, general, "{p:?}");
                }
            }
            paths = next;
        }
        assert!(fast > 1000, "the fast path answered {fast} times");
        assert_eq!(plain("/a/b.txt"), Some(("a/b.txt", false)));
        assert_eq!(plain("/"), Some(("", true)));
        assert_eq!(plain("/dir/"), Some(("dir", true)));
        for other in [
            "a", "//a", "/a//b", "/.git", "/a/..", "/a/./b", "/%61", "/a b", "/a\\b",
        ] {
            assert_eq!(plain(other), None, "{other:?}");
        }
    }

    fn norm(raw: &str) -> Result<(String, bool), PathError> {
        let mut out = String::new();
        normalize(raw, &mut out).map(|n| (out, n.trailing_slash))
    }

    #[test]
    fn table() {
        let ok: &[(&str, &str, bool)] = &[
            ("/", "", true),
            ("/a.txt", "a.txt", false),
            ("/dir/", "dir", true),
            ("//a//b", "a/b", false),
            ("/%2fa", "a", false),
            ("/a/./b", "a/b", false),
            ("/a/../b", "b", false),
            ("/a/%2e%2e/b", "b", false),
            ("/%E6%8A%A5%E5%91%8A.pdf", "报告.pdf", false),
            ("/%252e%252e/x", "%2e%2e/x", false), // decoded once: a literal name
            ("/a%20b", "a b", false),
        ];
        for (raw, want, slash) in ok {
            assert_eq!(norm(raw), Ok((want.to_string(), *slash)), "{raw}");
        }
        let bad: &[(&str, PathError)] = &[
            ("a", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/..", PathError::EscapesRoot),
            ("/../etc/passwd", PathError::EscapesRoot),
            ("/%2e%2e/etc/passwd", PathError::EscapesRoot),
            ("/%2E%2E%2Fetc", PathError::EscapesRoot),
            ("/a/../../b", PathError::EscapesRoot),
            ("/..%2f..%2fetc", PathError::EscapesRoot),
            ("/%00", PathError::ControlCharacter),
            ("/a%0ab", PathError::ControlCharacter),
            ("/%c0%ae%c0%ae/", PathError::NotUtf8),
            ("/%ff", PathError::NotUtf8),
            ("/a\\b", PathError::Backslash),
            ("/..%5c..%5cetc", PathError::Backslash),
            ("/%", PathError::BadPercentEncoding),
            ("/%zz", PathError::BadPercentEncoding),
            ("/%2", PathError::BadPercentEncoding),
        ];
        for (raw, want) in bad {
            assert_eq!(norm(raw), Err(*want), "{raw}");
        }
    }

    #[test]
    fn dotfiles() {
        assert!(has_dotfile(".env"));
        assert!(has_dotfile("a/.git/config"));
        assert!(!has_dotfile(".well-known/acme-challenge/x"));
        assert!(has_dotfile(".well-known/.secret"));
        assert!(!has_dotfile("a/b.c"));
        assert!(!has_dotfile(""));
    }
}
