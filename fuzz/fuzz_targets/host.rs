//! The Host validator never panics, and everything it accepts is a plain authority: no
//! whitespace, no userinfo, no path, query or fragment, no two dots in a row, a numeric port.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendfiled::http::host;

fuzz_target!(|data: &[u8]| {
    if !host::valid(data) {
        return;
    }
    assert!(!data.iter().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()));
    assert!(!data.iter().any(|b| matches!(b, b'@' | b'/' | b'?' | b'#' | b'\\')));
    if !data.starts_with(b"[") {
        assert!(!data.windows(2).any(|w| w == b".."), "{data:?}");
        if let Some(colon) = data.iter().rposition(|b| *b == b':') {
            assert!(data[colon + 1..].iter().all(u8::is_ascii_digit), "{data:?}");
            assert!(!data[..colon].contains(&b':'), "{data:?}");
        }
    }
    // Accepted values compare equal to themselves in any case mix.
    assert!(host::same_authority(data, &data.to_ascii_uppercase()));
});
