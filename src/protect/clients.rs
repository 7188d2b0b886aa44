//! Per-client limits shared by every worker: concurrent connections per IP address, a request-rate
//! token bucket per IP address, and the global connection count the accept loops pause on.
//! SO_REUSEPORT spreads one client's connections over all workers, so the table is shared: a
//! sharded mutex map, touched once per connection and (when a rate is set) once per request.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Number of independently locked shards.
const SHARDS: usize = 64;
/// A shard is swept of idle entries when it grows past this.
const SWEEP_AT: usize = 4096;

pub use crate::cidr::canonical;

pub use crate::config::ClientLimits;

#[derive(Clone, Copy)]
struct Entry {
    connections: usize,
    tokens: f64,
    refilled: Instant,
}

/// Why a client was turned away (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Too many concurrent connections from the address.
    PerIpConnections,
    /// Too many requests per second from the address.
    RequestRate,
}

impl Rejection {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::PerIpConnections => "per_ip_connections",
            Rejection::RequestRate => "request_rate",
        }
    }
}

/// The shared per-client table.
pub struct ClientTable {
    limits: ClientLimits,
    shards: Box<[Mutex<HashMap<IpAddr, Entry>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl ClientTable {
    /// An empty table enforcing `limits`.
    pub fn new(limits: ClientLimits) -> ClientTable {
        ClientTable {
            limits,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The policy in force.
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    fn tracked(&self, ip: IpAddr) -> bool {
        (self.limits.max_connections_per_ip > 0 || self.limits.requests_per_second > 0.0)
            && !self.limits.exempt.iter().any(|c| c.contains(ip))
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, Entry>> {
        &self.shards[self.hasher.hash_one(ip) as usize % SHARDS]
    }

    fn with_entry<R>(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT && !map.contains_key(&ip) {
            let full = self.limits.request_burst;
            let rate = self.limits.requests_per_second;
            map.retain(|_, e| {
                let refilled = e.tokens + rate * now.duration_since(e.refilled).as_secs_f64();
                e.connections > 0 || refilled < full
            });
        }
        let burst = self.limits.request_burst;
        let e = map.entry(ip).or_insert(Entry {
            connections: 0,
            tokens: burst,
            refilled: now,
        });
        f(e)
    }

    /// A connection from `ip` was accepted: count it, or refuse it past the per-IP cap. On
    /// success the connection must call [`ClientTable::disconnect`] when it closes.
    pub fn connect(&self, ip: IpAddr) -> Result<bool, Rejection> {
        let ip = canonical(ip);
        if !self.tracked(ip) || self.limits.max_connections_per_ip == 0 {
            return Ok(false);
        }
        let cap = self.limits.max_connections_per_ip;
        self.with_entry(ip, Instant::now(), |e| {
            if e.connections >= cap {
                Err(Rejection::PerIpConnections)
            } else {
                e.connections += 1;
                Ok(true)
            }
        })
    }

    /// A counted connection from `ip` closed.
    pub fn disconnect(&self, ip: IpAddr) {
        let ip = canonical(ip);
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&ip) {
            e.connections = e.connections.saturating_sub(1);
        }
    }

    /// A request from `ip`: take a token, or say how long until one is available.
    pub fn request(&self, ip: IpAddr) -> Result<(), Duration> {
        let rate = self.limits.requests_per_second;
        if rate <= 0.0 {
            return Ok(());
        }
        let ip = canonical(ip);
        if !self.tracked(ip) {
            return Ok(());
        }
        let burst = self.limits.request_burst;
        let now = Instant::now();
        self.with_entry(ip, now, |e| {
            let elapsed = now.duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * rate).min(burst);
            e.refilled = now;
            if e.tokens >= 1.0 {
                e.tokens -= 1.0;
                Ok(())
            } else {
                Err(Duration::try_from_secs_f64((1.0 - e.tokens) / rate).unwrap_or(Duration::MAX))
            }
        })
    }
}

/// The global connection count, shared by every worker's accept loop.
#[derive(Default)]
pub struct ConnectionCount {
    open: AtomicUsize,
}

impl ConnectionCount {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// One more connection.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer connection.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::Cidr;

    fn table(per_ip: usize, rps: f64, burst: f64, exempt: &[&str]) -> ClientTable {
        ClientTable::new(ClientLimits {
            max_connections_per_ip: per_ip,
            requests_per_second: rps,
            request_burst: burst,
            exempt: exempt.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        })
    }

    #[test]
    fn cidr_blocks_match_their_addresses() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn connection_cap_counts_per_address() {
        let t = table(2, 0.0, 1.0, &["192.168.0.0/24"]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(t.connect(a), Ok(true));
        assert_eq!(t.connect(a), Ok(true));
        assert_eq!(t.connect(a), Err(Rejection::PerIpConnections));
        assert_eq!(t.connect(b), Ok(true));
        t.disconnect(a);
        assert_eq!(t.connect(a), Ok(true));
        let lb: IpAddr = "192.168.0.7".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(t.connect(lb), Ok(false));
        }
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t = table(0, 10.0, 5.0, &[]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert!(t.request(a).is_ok());
        }
        let wait = t.request(a).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(t.request(a).is_ok());
    }
}
