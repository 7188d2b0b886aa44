//! Sizes and durations as people write them in configuration files and on the command line
//! (`"16KiB"`, `"500ms"`), and the byte rate they describe: the leaf every layer that reads a
//! setting may use.

use std::num::NonZeroU64;
use std::time::Duration;

/// The longest wait a rate is asked to work out: a year stands for "never" without overflowing
/// an `Instant`.
const LONGEST_WAIT: Duration = Duration::from_secs(86_400 * 365);

/// A rate in bytes per second, never zero: a setting whose 0 means "no rule" is an
/// `Option<Rate>`, so no caller divides by it or mistakes "off" for "stopped".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(NonZeroU64);

impl Rate {
    /// `bytes_per_second` as a rate; `None` for 0 (no rule).
    pub fn new(bytes_per_second: u64) -> Option<Rate> {
        NonZeroU64::new(bytes_per_second).map(Rate)
    }

    /// Bytes per second.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// How long `bytes` take at this rate (a year at most).
    pub fn time_for(self, bytes: u64) -> Duration {
        Duration::try_from_secs_f64(bytes as f64 / self.get() as f64)
            .map_or(LONGEST_WAIT, |d| d.min(LONGEST_WAIT))
    }

    /// How many bytes this rate allows in `elapsed`.
    pub fn bytes_in(self, elapsed: Duration) -> f64 {
        self.get() as f64 * elapsed.as_secs_f64()
    }
}

/// Parse `"512"`, `"16KiB"`, `"2MiB"`, `"1GiB"` or `"1TiB"` (bytes).
pub fn parse_size_text(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512, 16KiB, 2MiB or 1GiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1 << 10,
        "M" | "MB" | "MiB" | "m" => 1 << 20,
        "G" | "GB" | "GiB" | "g" => 1 << 30,
        "T" | "TB" | "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parse `"10s"`, `"500ms"`, `"2m"`, `"1h"` or `"30"` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms, 2m or 1h"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{text:?} has an unknown unit (use ms, s, m or h)")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_never_zero_and_its_waits_are_bounded() {
        assert_eq!(Rate::new(0), None);
        let r = Rate::new(1024).unwrap();
        assert_eq!(r.get(), 1024);
        assert_eq!(r.time_for(512), Duration::from_millis(500));
        assert_eq!(r.time_for(0), Duration::ZERO);
        assert_eq!(r.bytes_in(Duration::from_secs(3)), 3072.0);
        let slowest = Rate::new(1).unwrap();
        assert_eq!(slowest.time_for(u64::MAX), LONGEST_WAIT);
    }
}
