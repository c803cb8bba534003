//! Which hosts of ordinary requests to report to the sidecar for on-demand
//! issuance: each host once (until the memory of reported hosts is full and
//! starts over), and at most `per_second` reports per second (a token
//! bucket), so a flood of random `Host` headers costs the sidecar little.
//! Pure: time comes in as milliseconds.

use std::collections::HashSet;

/// Hosts remembered before the memory starts over.
pub const MEMORY: usize = 4096;

/// Per-worker reporting state.
#[derive(Debug)]
pub struct Reporter {
    reported: HashSet<String>,
    per_second: u64,
    tokens: f64,
    last_ms: u64,
}

impl Reporter {
    pub fn new(per_second: u64) -> Self {
        Self { reported: HashSet::new(), per_second, tokens: per_second as f64, last_ms: 0 }
    }

    /// Whether to report `host` now (and remember that it was).
    pub fn should_report(&mut self, host: &str, now_ms: u64) -> bool {
        if self.reported.contains(host) {
            return false;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        let cap = self.per_second as f64;
        self.tokens = (self.tokens + elapsed * cap).min(cap);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        if self.reported.len() >= MEMORY {
            self.reported.clear();
        }
        self.reported.insert(host.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_host_once_and_no_more_than_the_rate() {
        let mut r = Reporter::new(2);
        assert!(r.should_report("a.test", 1_000));
        assert!(!r.should_report("a.test", 1_000), "a host is reported once");
        assert!(r.should_report("b.test", 1_000));
        assert!(!r.should_report("c.test", 1_000), "two per second");
        assert!(!r.should_report("c.test", 1_400));
        assert!(r.should_report("c.test", 1_600), "a token is back after half a second");
        assert!(!r.should_report("a.test", 60_000));
    }

    #[test]
    fn a_flood_of_random_hosts_is_held_to_the_rate() {
        let mut r = Reporter::new(10);
        let reported = (0..10_000u64).filter(|i| r.should_report(&format!("h{i}.test"), 5_000 + i / 10)).count();
        // 1 000 ms of requests: the initial burst of 10 plus 10 per second.
        assert!((10..=21).contains(&reported), "{reported}");
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut r = Reporter::new(1000);
        for i in 0..(MEMORY as u64 + 10) {
            r.should_report(&format!("h{i}.test"), i * 10);
        }
        assert!(r.reported.len() <= MEMORY);
    }
}
