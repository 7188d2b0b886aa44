//! The request-stream guard is split-invariant: any split of the same bytes into reads gives the
//! same bytes to hyper and the same verdict, so pipelining and read boundaries never change what
//! a request is answered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sendfiled::framing::StreamGuard;

fn guarded(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, sendfiled::framing::Framing) {
    let mut bytes = stream.to_vec();
    let mut g = StreamGuard::default();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let end = cut.clamp(at, stream.len());
        g.scan(&mut bytes[at..end]);
        at = end;
    }
    (bytes, g.framing())
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many split points follow (each one byte); the rest is the stream.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (cut_bytes, stream) = rest.split_at(n);
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|c| usize::from(*c) * stream.len() / 256)
        .collect();
    cuts.sort_unstable();
    let whole = guarded(stream, &[]);
    let split = guarded(stream, &cuts);
    // The version rewrite needs the whole request-line ending in one read; apart from it, any
    // split must give exactly the same bytes.
    let differ: Vec<usize> = (0..stream.len()).filter(|&i| whole.0[i] != split.0[i]).collect();
    assert!(
        differ.iter().all(|&i| stream[i].is_ascii_digit() && whole.0[i] == b'1'),
        "split {cuts:?} changed bytes at {differ:?}"
    );
    assert_eq!(whole.1, split.1, "split {cuts:?} changed the verdict");
});
