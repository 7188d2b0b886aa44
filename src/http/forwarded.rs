//! The client a request names through its proxies: `X-Forwarded-For`, `Forwarded` (RFC 7239)
//! or a one-address header such as `CF-Connecting-IP`. Believed only as far as trusted proxies
//! reach: read right to left, each trusted hop is skipped and the first untrusted address is
//! the client (nginx's `real_ip_recursive on`), so a client cannot forge its address by sending
//! the header itself.

use std::net::IpAddr;

use http::HeaderMap;

/// A request header naming the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHeader {
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `Forwarded`, its `for=` parameters.
    Forwarded,
    /// A header that holds one address.
    Single(http::HeaderName),
}

/// The client `headers` name, given which addresses are trusted proxies; `None` when the header
/// is absent or what it says cannot be read (the peer stays the client).
pub fn client(
    headers: &HeaderMap,
    rule: &ClientHeader,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    match rule {
        ClientHeader::Single(name) => parse_ip(headers.get(name)?.to_str().ok()?.trim()),
        ClientHeader::XForwardedFor => {
            let hops = list(headers, "x-forwarded-for").map(|h| parse_ip(h.trim()));
            rightmost_untrusted(hops.collect(), trusted)
        }
        ClientHeader::Forwarded => {
            let hops = list(headers, "forwarded").map(forwarded_for);
            rightmost_untrusted(hops.collect(), trusted)
        }
    }
}

/// Every comma-separated element of every field `name`, in order.
fn list<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
}

/// Right to left: skip trusted hops; an unreadable hop ends the search (nothing left of it can
/// be believed). All hops trusted: the leftmost.
fn rightmost_untrusted(
    hops: Vec<Option<IpAddr>>,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let mut last = None;
    for hop in hops.into_iter().rev() {
        let ip = hop?;
        if !trusted(ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// The `for=` node of one `Forwarded` element: `for=192.0.2.1`, `for="[2001:db8::1]:80"`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let pair = element
        .split(';')
        .map(str::trim)
        .find(|p| p.len() > 4 && p[..4].eq_ignore_ascii_case("for="))?;
    let node = pair[4..].trim_matches('"');
    let host = match node.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => node.split(':').next()?,
    };
    host.parse().ok()
}

/// An address as proxies write it: bare, `[v6]`, or with a port (`v4:port`, `[v6]:port`).
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn trusted(ip: IpAddr) -> bool {
        ip.to_string().starts_with("10.")
    }

    #[test]
    fn x_forwarded_for_is_read_right_to_left_past_trusted_hops() {
        let rule = ClientHeader::XForwardedFor;
        let pick = |v: &[(&'static str, &str)]| client(&headers(v), &rule, trusted);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            pick(&[("x-forwarded-for", "203.0.113.9")]),
            ip("203.0.113.9")
        );
        // A client that sends its own header cannot pick its address: the hop our trusted
        // proxy appended is the one believed.
        assert_eq!(
            pick(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]),
            ip("203.0.113.9")
        );
        assert_eq!(
            pick(&[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "198.51.100.4, 10.0.0.3")
            ]),
            ip("198.51.100.4")
        );
        assert_eq!(
            pick(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]),
            ip("10.0.0.1")
        );
        assert_eq!(pick(&[("x-forwarded-for", "junk, 10.0.0.2")]), None);
        assert_eq!(
            pick(&[("x-forwarded-for", "[2001:db8::5]:443")]),
            ip("2001:db8::5")
        );
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn forwarded_and_single_headers() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let f = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, For=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            client(&f, &ClientHeader::Forwarded, trusted),
            ip("2001:db8:cafe::17")
        );
        let hidden = headers(&[("forwarded", "for=192.0.2.60, for=_hidden, for=10.0.0.1")]);
        assert_eq!(client(&hidden, &ClientHeader::Forwarded, trusted), None);
        let name = http::HeaderName::from_static("cf-connecting-ip");
        let cf = headers(&[("cf-connecting-ip", " 198.51.100.77 ")]);
        assert_eq!(
            client(&cf, &ClientHeader::Single(name), trusted),
            ip("198.51.100.77")
        );
    }
}
