//! Accept-Encoding negotiation for precompressed variants (`x.js.br`, `x.js.zst`, `x.js.gz`), per
//! RFC 9110 §12.5.3: q-values, `*`, and `identity;q=0`. Pure; the caller says which codings exist.

use serde::{Deserialize, Serialize};

/// A content coding sendfiled can serve from a precompressed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// The Content-Encoding token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The file-name suffix of the precompressed file.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    fn matches(self, token: &str) -> bool {
        token.eq_ignore_ascii_case(self.token())
            || (self == Coding::Gzip && token.eq_ignore_ascii_case("x-gzip"))
    }
}

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The file itself.
    Identity,
    /// The variant at this index of the preference order.
    Variant(usize),
    /// Nothing available is acceptable (identity was refused): 406.
    NotAcceptable,
}

/// Pick a representation. `order` is the server's preference; `available[i]` says whether the
/// variant for `order[i]` exists; `fields` are the request's Accept-Encoding values (none: the
/// client said nothing, and gets the file itself).
///
/// The highest q wins; among equal q, the server's order, and the file itself last (unless the
/// client ranks it higher).
pub fn choose<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
    order: &[Coding],
    available: &[bool],
) -> Choice {
    let mut any_field = false;
    // q of each variant (None = not mentioned), of identity, and of `*`.
    let mut q = [None::<u16>; 3];
    let mut identity_q = None::<u16>;
    let mut star_q = None::<u16>;
    for field in fields {
        any_field = true;
        let Ok(text) = std::str::from_utf8(field) else {
            continue;
        };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let mut weight = 1000;
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        weight = parse_q(v.trim()).unwrap_or(0);
                    }
                }
            }
            if token == "*" {
                star_q = Some(weight);
            } else if token.eq_ignore_ascii_case("identity") {
                identity_q = Some(weight);
            } else {
                for (i, c) in order.iter().enumerate().take(q.len()) {
                    if c.matches(token) {
                        q[i] = Some(weight);
                    }
                }
            }
        }
    }
    if !any_field {
        return Choice::Identity;
    }
    let mut best: Option<(u16, usize)> = None;
    for (i, _) in order.iter().enumerate().take(3) {
        if !available.get(i).copied().unwrap_or(false) {
            continue;
        }
        let w = q[i].or(star_q).unwrap_or(0);
        if w > 0 && best.is_none_or(|(bw, _)| w > bw) {
            best = Some((w, i));
        }
    }
    // Identity is acceptable unless refused explicitly, or by `*;q=0` without its own entry.
    let identity = identity_q.unwrap_or(match star_q {
        Some(0) => 0,
        _ => 1000,
    });
    match best {
        Some((w, i)) if w >= identity || identity_q.is_none() => Choice::Variant(i),
        _ if identity > 0 => Choice::Identity,
        Some((_, i)) => Choice::Variant(i),
        None => Choice::NotAcceptable,
    }
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    if whole == 1000 && thousandths > 0 {
        return None;
    }
    Some(whole + thousandths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    fn pick(header: Option<&str>, available: [bool; 3]) -> Choice {
        choose(header.map(str::as_bytes).into_iter(), &ORDER, &available)
    }

    #[test]
    fn negotiation_table() {
        use Choice::*;
        let all = [true, true, true];
        let gz = [false, false, true];
        let cases: &[(Option<&str>, [bool; 3], Choice)] = &[
            (None, all, Identity),
            (Some(""), all, Identity),
            (Some("gzip"), all, Variant(2)),
            (Some("x-gzip"), gz, Variant(2)),
            (Some("gzip, deflate, br, zstd"), all, Variant(0)),
            (Some("gzip, deflate, br"), [false, true, true], Variant(2)),
            (Some("br;q=0.5, gzip"), all, Variant(2)),
            (Some("br;q=0, gzip;q=0"), all, Identity),
            (Some("*"), all, Variant(0)),
            (Some("*;q=0.1, gzip;q=0"), gz, Identity),
            (Some("identity;q=0"), [false; 3], NotAcceptable),
            (Some("identity;q=0, gzip"), gz, Variant(2)),
            (Some("*;q=0"), [false; 3], NotAcceptable),
            (Some("*;q=0, identity"), [false; 3], Identity),
            (Some("gzip;q=0.4, identity;q=0.8"), gz, Identity),
            (Some("gzip;q=0.9, identity;q=0.8"), gz, Variant(2)),
            (Some("GZIP;Q=1.0"), gz, Variant(2)),
            (Some("gzip;q=2"), gz, Identity),
            (Some("deflate"), gz, Identity),
            (Some("br"), gz, Identity),
        ];
        for (header, available, want) in cases {
            assert_eq!(
                pick(*header, *available),
                *want,
                "{header:?} with {available:?}"
            );
        }
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("abc"), None);
    }
}
