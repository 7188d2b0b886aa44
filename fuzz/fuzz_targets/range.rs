//! The Range parser: any header and length gives ranges inside the file, sorted, disjoint, and
//! never more bytes than the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendfiled::http::range::{evaluate, RangeOutcome};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[8] % 64);
    let header = &data[9..];
    match evaluate(header, len, 16) {
        RangeOutcome::Partial(ranges) => {
            assert!(!ranges.is_empty());
            let mut total = 0u64;
            for w in ranges.windows(2) {
                assert!(w[0].last < w[1].first, "sorted and disjoint: {ranges:?}");
            }
            for r in &ranges {
                assert!(r.first <= r.last && r.last < len, "{r:?} of {len}");
                total += r.len();
            }
            assert!(total <= len);
        }
        RangeOutcome::Full | RangeOutcome::Unsatisfiable => {}
    }
});
