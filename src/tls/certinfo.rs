//! What operators need to know about a certificate, read from its DER: the serial number and the
//! end of its validity (for `check-config`, /metrics and the expiry alert). Only the first fields
//! of `tbsCertificate` are walked (RFC 5280 §4.1), so a small reader serves; rustls and webpki
//! verify the rest.

/// A loaded certificate's identity and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The chain's file.
    pub file: std::path::PathBuf,
    /// The serial number, in lower-case hex.
    pub serial: String,
    /// notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// The serial (hex) and notAfter (Unix seconds) of a DER certificate.
pub fn read(der: &[u8]) -> Option<(String, i64)> {
    let (_, cert, _) = element(der)?;
    let (_, tbs, _) = element(cert)?;
    // An [0] EXPLICIT version comes first, except in v1 certificates.
    let (tag, _, after_version) = element(tbs)?;
    let rest = if tag == 0xa0 { after_version } else { tbs };
    let (tag, serial, rest) = element(rest)?;
    if tag != 0x02 {
        return None;
    }
    let (_, _signature, rest) = element(rest)?;
    let (_, _issuer, rest) = element(rest)?;
    let (tag, validity, _) = element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _not_before, after) = element(validity)?;
    let (tag, not_after, _) = element(after)?;
    let hex: String = serial
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((hex, time(tag, not_after)?))
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| a << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as Unix
/// seconds.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (h, m, s) = (field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_encodings() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(time(0x18, b"2038011903140Z"), None);
        assert_eq!(time(0x17, b"700101000000"), None);
    }

    #[test]
    fn truncated_input_is_refused_without_panicking() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[0x30, 0x82, 0xff]), None);
        assert_eq!(read(&[0x30, 0x03, 0x30, 0x01]), None);
    }
}
