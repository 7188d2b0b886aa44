//! criterion benches of the request path: the pure parsers and evaluators, then one whole
//! keep-alive request over loopback. Run: `cargo bench --bench request_path`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use sendfiled::fs::path::normalize;
use sendfiled::http::conditional::{self, Validators};
use sendfiled::http::range;

#[path = "support.rs"]
#[allow(dead_code)]
mod support;

fn pure(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.bench_function("range: single", |b| {
        b.iter(|| range::evaluate(black_box(b"bytes=1000-70000"), 1 << 30, 16))
    });
    g.bench_function("range: three parts", |b| {
        b.iter(|| range::evaluate(black_box(b"bytes=0-99, 5000-5099, -100"), 1 << 30, 16))
    });
    g.bench_function("range: 16 overlapping parts", |b| {
        let h = (0..16)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 50))
            .collect::<Vec<_>>()
            .join(",");
        let h = format!("bytes={h}");
        b.iter(|| range::evaluate(black_box(h.as_bytes()), 1 << 30, 16))
    });
    let v = Validators {
        etag: "\"18ea37e5a3064e53-c\"",
        last_modified: 1_700_000_000,
    };
    let mut inm = HeaderMap::new();
    inm.insert(
        "if-none-match",
        HeaderValue::from_static("\"a\", \"b\", \"18ea37e5a3064e53-c\""),
    );
    g.bench_function("conditional: If-None-Match list", |b| {
        b.iter(|| conditional::evaluate(black_box(&inm), v))
    });
    let mut ims = HeaderMap::new();
    ims.insert(
        "if-modified-since",
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    g.bench_function("conditional: If-Modified-Since", |b| {
        b.iter(|| conditional::evaluate(black_box(&ims), v))
    });
    let mut out = String::with_capacity(256);
    g.bench_function("path: plain", |b| {
        b.iter(|| normalize(black_box("/assets/app.3f9a.js"), &mut out))
    });
    g.bench_function("path: encoded with dot segments", |b| {
        b.iter(|| {
            normalize(
                black_box("/a/./b/../%E6%8A%A5%E5%91%8A/%2e%2e/c%20d.txt"),
                &mut out,
            )
        })
    });
    g.finish();
}

fn whole_request(c: &mut Criterion) {
    let dir = support::tree();
    let server = support::server(dir.path());
    let addr = server.local_addrs()[0];
    let mut g = c.benchmark_group("loopback keep-alive");
    for (name, req, bytes) in [
        (
            "GET 1 KiB",
            &b"GET /small.txt HTTP/1.1\r\nHost: b\r\n\r\n"[..],
            1024u64,
        ),
        (
            "GET 16 KiB",
            &b"GET /mid.bin HTTP/1.1\r\nHost: b\r\n\r\n"[..],
            16 * 1024,
        ),
        (
            "GET 64 KiB range",
            &b"GET /big.bin HTTP/1.1\r\nHost: b\r\nRange: bytes=65536-131071\r\n\r\n"[..],
            65536,
        ),
        (
            "304",
            &b"GET /small.txt HTTP/1.1\r\nHost: b\r\nIf-None-Match: *\r\n\r\n"[..],
            0,
        ),
    ] {
        let mut client = support::Client::new(addr);
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(name, |b| b.iter(|| client.roundtrip(req)));
    }
    g.finish();
    server.shutdown();
}

criterion_group!(benches, pure, whole_request);
criterion_main!(benches);
