//! The signed-link verifier: arbitrary paths and queries never panic and never verify without the
//! key; a link signed with the key always verifies, and any change to its query is refused.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sendfiled::protect::signing::{signed_target, KeyRing, KeySource, MethodClass, SignRequest};

const KEY: &[u8] = b"fuzzing-key-0123456789abcdef";

fn ring() -> &'static KeyRing {
    static RING: OnceLock<(tempfile::TempDir, KeyRing)> = OnceLock::new();
    &RING
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("k");
            std::fs::write(&file, KEY).unwrap();
            let ring = KeyRing::load(vec![KeySource {
                id: "k".into(),
                file,
            }])
            .unwrap();
            (dir, ring)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    // Arbitrary input: never a panic, and never accepted (no one without the key can sign).
    let forged = ring().verify(MethodClass::Read, path, Some(query), 0);
    assert!(
        forged.is_err() || query.contains("sig="),
        "accepted without a signature"
    );

    // A real link for a real path verifies; a changed byte in its query does not.
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return;
    }
    let Ok(link) = signed_target(SignRequest {
        key: KEY,
        kid: "k",
        method: MethodClass::Read,
        target: path,
        prefix: false,
        expires: 2_000_000_000,
        extra: vec![],
    }) else {
        return;
    };
    let mut normal = String::new();
    if sendfiled::fs::path::normalize(path, &mut normal).is_err() {
        return;
    }
    let canonical = format!("/{normal}");
    let (_, q) = link.split_once('?').unwrap();
    assert!(
        ring()
            .verify(MethodClass::Read, &canonical, Some(q), 1)
            .is_ok(),
        "{link}"
    );
    if let Some(&b) = data.first() {
        let i = usize::from(b) % q.len();
        let mut bytes = q.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        if changed != q {
            assert!(
                ring()
                    .verify(MethodClass::Read, &canonical, Some(&changed), 1)
                    .is_err(),
                "{q} -> {changed}"
            );
        }
    }
});
