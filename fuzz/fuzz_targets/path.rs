//! The request path resolver: whatever the bytes, the result stays beneath the root.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendfiled::fs::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = String::new();
    if normalize(raw, &mut out).is_err() {
        return;
    }
    assert!(!out.starts_with('/'), "{raw:?} -> {out:?}");
    for part in out.split('/') {
        if out.is_empty() {
            break;
        }
        assert!(
            !part.is_empty() && part != "." && part != "..",
            "{raw:?} -> {out:?}"
        );
        assert!(!part.contains(['\0', '\\']), "{raw:?} -> {out:?}");
    }
    // Normalising the result again changes nothing (no second decoding).
    let again_input = format!("/{}", out.replace('%', "%25"));
    let mut again = String::new();
    normalize(&again_input, &mut again).expect("a normalised path is valid");
    assert_eq!(again, out);
});
