//! `Want-Repr-Digest` (RFC 9530 §4): a dictionary of algorithms with preferences from 0 (not
//! acceptable) to 10. Picks which digest we hold goes out, honouring zeros and ignoring
//! algorithms we do not have; a field that does not parse is ignored as a whole (RFC 9651).

use super::Algorithm;

/// The algorithm to send, given the request's `Want-Repr-Digest` fields and which digests are
/// held. No field (or only unknown algorithms): SHA-256, else SHA-512. A field that names what
/// we hold only with preference 0: none.
pub fn choose<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
    held: impl Fn(Algorithm) -> bool,
) -> Option<Algorithm> {
    let default = || {
        [Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .find(|a| held(*a))
    };
    let mut best: Option<(u8, Algorithm)> = None;
    let mut refused_any = false;
    for field in fields {
        let Some(members) = parse(field) else {
            return default();
        };
        for (token, weight) in members {
            let Some(alg) = Algorithm::from_token(token).filter(|a| held(*a)) else {
                continue;
            };
            if weight == 0 {
                refused_any = true;
            } else if best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, alg));
            }
        }
    }
    match best {
        Some((_, alg)) => Some(alg),
        None if refused_any => None,
        None => default(),
    }
}

/// `key=int, key=int;param`: the members, or `None` if the field is not such a dictionary.
fn parse(field: &[u8]) -> Option<Vec<(&str, u8)>> {
    let text = std::str::from_utf8(field).ok()?;
    let mut out = Vec::new();
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        let member = member.split(';').next()?;
        let (key, value) = member.split_once('=')?;
        let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase() || c == '*')
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        let weight: u8 = value.parse().ok().filter(|w| *w <= 10)?;
        if !key_ok {
            return None;
        }
        out.push((key, weight));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(field: Option<&str>, both: bool) -> Option<Algorithm> {
        choose(field.map(str::as_bytes).into_iter(), |a| {
            both || a == Algorithm::Sha256
        })
    }

    #[test]
    fn preferences_are_honoured() {
        use Algorithm::*;
        assert_eq!(pick(None, true), Some(Sha256));
        assert_eq!(pick(Some("sha-512=10, sha-256=1"), true), Some(Sha512));
        assert_eq!(pick(Some("sha-512=3, sha-256=9"), true), Some(Sha256));
        // Not held: the next preference; only unknown ones: the default.
        assert_eq!(pick(Some("sha-512=10, sha-256=1"), false), Some(Sha256));
        assert_eq!(pick(Some("md5=10, unixsum=2"), true), Some(Sha256));
        // Zero is "not acceptable".
        assert_eq!(pick(Some("sha-256=0"), false), None);
        assert_eq!(pick(Some("sha-256=0, sha-512=0"), true), None);
        // Not a dictionary of integers 0-10: ignored.
        assert_eq!(pick(Some("sha-256=11"), true), Some(Sha256));
        assert_eq!(pick(Some("sha-512"), true), Some(Sha256));
        assert_eq!(pick(Some("sha-512=5;q=1"), true), Some(Sha512));
    }
}
