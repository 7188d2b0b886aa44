//! The Host header and an absolute-form target's authority (RFC 9110 §7.2, RFC 9112 §3.2): a
//! value that is not `uri-host [ ":" port ]` is a 400. A reg-name is RFC 3986's (unreserved,
//! percent-encoded and sub-delims characters), and, as nginx does, never holds two dots in a row;
//! an IP literal is a bracketed IPv6 address (or IPvFuture); a port is digits. No userinfo, no
//! path, no whitespace.

/// Whether `value` is a valid Host field value. An empty value is valid (RFC 9112 §3.2: sent
/// when the target has no authority).
pub fn valid(value: &[u8]) -> bool {
    let (host, port) = split_port(value);
    port.iter().all(u8::is_ascii_digit) && valid_host(host)
}

/// Whether two authorities name the same host and port (hosts compare case-insensitively).
pub fn same_authority(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `host` and the digits after its last `:`, if that colon is outside an IP literal.
fn split_port(value: &[u8]) -> (&[u8], &[u8]) {
    let after_literal = if value.first() == Some(&b'[') {
        value
            .iter()
            .position(|b| *b == b']')
            .map_or(value.len(), |i| i + 1)
    } else {
        0
    };
    match value[after_literal..].iter().rposition(|b| *b == b':') {
        Some(i) => (&value[..after_literal + i], &value[after_literal + i + 1..]),
        None => (value, &[]),
    }
}

fn valid_host(host: &[u8]) -> bool {
    match host {
        [b'[', inner @ .., b']'] => valid_ip_literal(inner),
        _ => valid_reg_name(host),
    }
}

fn valid_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let Some(dot) = rest.iter().position(|b| *b == b'.') else {
            return false;
        };
        let (version, text) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !text.is_empty()
            && text
                .iter()
                .all(|c| is_unreserved(*c) || is_sub_delim(*c) || *c == b':');
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A reg-name (an IPv4 address is one too), without consecutive dots.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let c = name[i];
        if c == b'%' {
            let hex = name.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(c) || is_sub_delim(c)) || (c == b'.' && name.get(i + 1) == Some(&b'.')) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn hosts() {
        let good = [
            "",
            "hs.example",
            "hs.example:8080",
            "hs.example:",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::7]",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%41b.example",
            "HS.Example",
            "under_score.example",
        ];
        for h in good {
            assert!(valid(h.as_bytes()), "{h:?} is valid");
        }
        let bad = [
            "a b",
            "hs.example/x",
            "user@hs.example",
            "hs.example:8a",
            "..",
            "a..b",
            "hs.example:80:80",
            "[::1",
            "[::g]",
            "[::1]x",
            "[::1]:8a",
            "a%4",
            "a%zz",
            "tab\there",
            "hs.example\\x",
            "hs.example?q",
            "hs.example#f",
            "ünicode.example",
            "[]",
            "[v1.]",
        ];
        for h in bad {
            assert!(!valid(h.as_bytes()), "{h:?} is invalid");
        }
    }
}
