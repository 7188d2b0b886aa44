//! Protection: who may fetch what, and how fast. Signed expiring links for protected prefixes
//! ([`signing`]), per-client connection and request-rate limits and the global connection cap
//! ([`clients`]), and bandwidth pacing per path prefix or per signed link ([`Pacer`], applied by
//! the IO layer to sendfile chunks). One [`Protection`] is shared by every worker.

pub(crate) mod clients;
pub mod signing;

use tokio::time::Instant;

use crate::config::Config;
use crate::units::Rate;
use crate::url_prefix::UrlPrefix;
use clients::ClientTable;
use signing::{Denial, Grant, KeyRing, MethodClass};

pub use crate::config::BandwidthRule;

/// Everything the protections need, shared by the workers.
pub struct Protection {
    pub keys: KeyRing,
    /// Prefixes whose paths need a valid signature.
    pub protected: Vec<UrlPrefix>,
    /// Longest prefix first.
    pub bandwidth: Vec<BandwidthRule>,
    /// Burst for links that carry `rate=` without a rule of their own.
    pub default_burst: u64,
    pub clients: ClientTable,
    /// Accepting pauses while this many connections are open.
    pub max_connections: usize,
}

/// What the gate decided for one request that may proceed.
#[derive(Debug, Default)]
pub struct Admission {
    /// The signature that admitted it, if the path is protected.
    pub grant: Option<Grant>,
    /// Pace the response at (rate, burst).
    pub pace: Option<(Rate, u64)>,
}

impl Protection {
    /// Build from a validated configuration (key files were checked when it was loaded).
    pub fn new(config: &Config) -> anyhow::Result<Protection> {
        let keys = KeyRing::load(config.signing.keys.clone())
            .map_err(|(i, m)| anyhow::anyhow!("signing.keys[{i}].file: {m}"))?;
        let mut bandwidth = config.bandwidth.clone();
        bandwidth.sort_by_key(|r| std::cmp::Reverse(r.prefix.as_str().len()));
        Ok(Protection {
            keys,
            protected: config.signing.protected.clone(),
            bandwidth,
            default_burst: config.clients.link_rate_burst,
            clients: ClientTable::new(config.clients.limits.clone()),
            max_connections: config.clients.max_connections,
        })
    }

    /// Whether anything is configured that looks at request paths (so that the common case of
    /// an unprotected, unthrottled server skips the gate entirely).
    pub fn inspects_paths(&self) -> bool {
        !self.protected.is_empty() || !self.bandwidth.is_empty() || !self.keys.is_empty()
    }

    /// Whether `path` (leading `/`) needs a signature.
    pub fn is_protected(&self, path: &str) -> bool {
        self.protected.iter().any(|p| p.covers(path))
    }

    /// The protected prefixes strictly inside `dir` (leading `/`, no trailing slash), as paths
    /// relative to the root without slashes at either end: what an unsigned archive of `dir`
    /// must leave out.
    pub fn protected_below(&self, dir: &str) -> Vec<String> {
        self.protected
            .iter()
            .filter(|p| p.is_strictly_inside(dir))
            .map(|p| p.relative().to_string())
            .collect()
    }

    /// Decide whether a request for `path` (decoded, normalised, leading `/`) may proceed, and
    /// at what pace. `now` is Unix seconds.
    pub fn admit(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<Admission, Denial> {
        let mut admission = Admission::default();
        let method = MethodClass::of(method);
        if self.is_protected(path) {
            admission.grant = Some(self.keys.verify(method, path, query, now)?);
        } else if !self.keys.is_empty() && query.is_some_and(|q| q.contains("sig=")) {
            // A signature on an open path is optional: when valid it still grants (a signed
            // archive of a parent folder includes the protected folders inside it); when not,
            // the request is simply unsigned.
            admission.grant = self.keys.verify(method, path, query, now).ok();
        }
        let rule = self.bandwidth.iter().find(|r| r.prefix.covers(path));
        admission.pace = match (admission.grant.as_ref().and_then(|g| g.rate), rule) {
            // A link's `rate=0` lifts pacing.
            (Some(0), _) => None,
            (Some(rate), Some(r)) => Rate::new(rate).map(|rate| (rate, r.burst)),
            (Some(rate), None) => Rate::new(rate).map(|rate| (rate, self.default_burst)),
            (None, Some(r)) => Some((r.rate, r.burst)),
            (None, None) => None,
        };
        Ok(admission)
    }
}

/// Paces one response: at most `burst + rate × elapsed` bytes by any moment. The IO layer asks
/// before each write how much it may send, so sendfile chunks are cut to the allowance and
/// nothing is ever copied to pace it.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    rate: Rate,
    burst: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    /// A pacer whose clock starts now.
    pub fn new(rate: Rate, burst: u64, now: Instant) -> Pacer {
        Pacer {
            rate,
            burst,
            start: now,
            sent: 0,
        }
    }

    /// The smallest write worth waking up for: an eighth of a second's worth, 1 KiB..256 KiB.
    fn quantum(&self) -> u64 {
        (self.rate.get() / 8).clamp(1024, 256 * 1024)
    }

    /// How many of `want` bytes may be written at `now`, or when enough will be.
    pub fn allowance(&self, now: Instant, want: usize) -> Result<usize, Instant> {
        let elapsed = now.saturating_duration_since(self.start);
        let allowed = self.burst as f64 + self.rate.bytes_in(elapsed);
        let available = (allowed - self.sent as f64).max(0.0) as u64;
        let need = self.quantum().min(want as u64);
        if available >= need {
            return Ok(usize::try_from(available).unwrap_or(usize::MAX).min(want));
        }
        let wait = self
            .rate
            .time_for((self.sent + need).saturating_sub(self.burst));
        Err(self.start + wait)
    }

    /// The paced rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// `n` bytes were written.
    pub fn sent(&mut self, n: usize) {
        self.sent += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pacer_gives_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Rate::new(1 << 20).unwrap(), 1 << 20, t0);
        assert_eq!(p.allowance(t0, 4 << 20), Ok(1 << 20));
        p.sent(1 << 20);
        let wake = p.allowance(t0, 4 << 20).unwrap_err();
        assert!(
            wake > t0 && wake <= t0 + Duration::from_millis(130),
            "{wake:?}"
        );
        let half = p
            .allowance(t0 + Duration::from_millis(500), 4 << 20)
            .unwrap();
        assert!((500_000..=530_000).contains(&half), "{half}");
        // A small tail is not held back for a whole quantum.
        p.sent(half);
        let t1 = t0 + Duration::from_millis(501);
        assert!(p.allowance(t1, 10).is_err() || p.allowance(t1, 10) == Ok(10));
    }
}
