//! Heap allocations per keep-alive request, counted by a global counting allocator.
//!
//! The client side allocates nothing per request (fixed buffers), so the count over N requests
//! divided by N is the server's: hyper's and ours. Run: `cargo bench --bench allocations`.

use sendfiled::sys::CountingAllocator;

#[path = "support.rs"]
mod support;

#[global_allocator]
static ALLOCATIONS: CountingAllocator = CountingAllocator::new();

fn main() {
    // `cargo test --benches` runs this with no work to do.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let dir = support::tree();
    let server = support::server(dir.path());
    let addr = server.local_addrs()[0];
    let cases: &[(&str, &[u8])] = &[
        (
            "GET 1 KiB, 200",
            b"GET /small.txt HTTP/1.1\r\nHost: b\r\n\r\n",
        ),
        (
            "GET 1 MiB, 200",
            b"GET /big.bin HTTP/1.1\r\nHost: b\r\n\r\n",
        ),
        (
            "GET range, 206",
            b"GET /big.bin HTTP/1.1\r\nHost: b\r\nRange: bytes=1000-70000\r\n\r\n",
        ),
        (
            "GET 2 ranges, 206 multipart",
            b"GET /big.bin HTTP/1.1\r\nHost: b\r\nRange: bytes=0-99,5000-5099\r\n\r\n",
        ),
        ("HEAD, 200", b"HEAD /small.txt HTTP/1.1\r\nHost: b\r\n\r\n"),
        ("GET missing, 404", b"GET /nope HTTP/1.1\r\nHost: b\r\n\r\n"),
    ];
    const N: u64 = 20_000;
    println!("| request (keep-alive, one connection) | heap allocations per request |");
    println!("|---|---|");
    for (name, req) in cases {
        let mut client = support::Client::new(addr);
        let head_only = req.starts_with(b"HEAD");
        let roundtrip = |c: &mut support::Client| {
            if head_only {
                c.roundtrip_head(req)
            } else {
                c.roundtrip(req)
            }
        };
        for _ in 0..2000 {
            roundtrip(&mut client);
        }
        let before = ALLOCATIONS.count();
        for _ in 0..N {
            roundtrip(&mut client);
        }
        let after = ALLOCATIONS.count();
        println!("| {name} | {:.2} |", (after - before) as f64 / N as f64);
    }
    server.shutdown();
}
