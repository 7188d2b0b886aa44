//! The precondition evaluator: arbitrary If-* headers never panic, and If-Range never allows a
//! weak or mismatched validator.
#![no_main]
use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sendfiled::http::conditional::{evaluate, if_range_allows, Validators};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == b'\n');
    let mut headers = HeaderMap::new();
    for name in [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            headers.append(name, v);
        }
    }
    let v = Validators {
        etag: "\"1a2b-3c\"",
        last_modified: 1_700_000_000,
    };
    let _ = evaluate(&headers, v);
    if let Some(ir) = parts.next() {
        if if_range_allows(ir, v) {
            let text = String::from_utf8_lossy(ir);
            assert!(
                !text.trim_start().starts_with("W/"),
                "weak If-Range allowed: {text:?}"
            );
        }
    }
});
