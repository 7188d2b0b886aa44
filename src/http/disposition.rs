//! `Content-Disposition: attachment` with `filename` and, for non-ASCII names, a UTF-8
//! `filename*` (RFC 6266, RFC 8187), so `curl -OJ` and browsers save non-ASCII names intact.
//!
//! Browsers prefer `filename*` when it is present. curl (`-J`) and wget ignore `filename*` and
//! take the bytes of `filename` as they are, so `filename` carries the UTF-8 name itself (only
//! quotes, backslashes and `%` are replaced) rather than a lossy ASCII rendering: an ASCII-only
//! fallback would make `curl -OJ` save `报告.pdf` as `__.pdf`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 8187 `attr-char`: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" /
/// "`" / "|" / "~". Everything else is percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Longest suggested name, in characters (file systems stop at 255 bytes; a header of a name a
/// client sent should stay short).
pub const MAX_NAME_CHARS: usize = 200;

/// Make a name safe to suggest: no path separators, no control characters, no invisible
/// formatting characters (bidi overrides and isolates, zero-width characters: U+202E turns
/// `\u{202e}fdp.zip` into what displays as "piz.pdf"), at most [`MAX_NAME_CHARS`], not empty.
/// Both `filename` and `filename*` carry this name, so no client displays a spoofed one.
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !is_invisible_format(*c))
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.');
    if trimmed.is_empty() {
        "download".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Unicode format characters that change how a name is displayed without being seen: bidi
/// marks, embeddings, overrides and isolates, zero-width characters and the BOM.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
    )
}

/// The header value for an attachment named `name` (already sanitised).
pub fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c == '%' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if fallback == name && name.is_ascii() {
        format!("attachment; filename=\"{name}\"")
    } else {
        format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
            utf8_percent_encode(name, ATTR_CHAR_ESCAPES)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_and_utf8_names() {
        assert_eq!(
            attachment("report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            attachment("报告 2026.pdf"),
            "attachment; filename=\"报告 2026.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%202026.pdf"
        );
        assert_eq!(
            attachment("a\"b.txt"),
            "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"
        );
        assert_eq!(sanitize_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitize_name("  "), "download");
        assert_eq!(sanitize_name("a\r\nb"), "a__b");
        assert_eq!(sanitize_name("\u{202e}fdp.zip"), "fdp.zip");
        assert_eq!(sanitize_name("a\u{2066}b\u{200b}c\u{feff}"), "abc");
        assert_eq!(sanitize_name(&"n".repeat(900_000)).len(), MAX_NAME_CHARS);
    }
}
