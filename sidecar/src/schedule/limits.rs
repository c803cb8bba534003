//! Self-imposed rate limits, so the daemon stops before the CA stops it
//! (Let's Encrypt's defaults: 300 new orders per account per 3 hours, 5
//! failed authorizations per identifier per hour). Sliding windows over
//! recorded times; pure.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use super::{add, HOUR};

/// New orders per account in a sliding window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBudget {
    max: u32,
    window: Duration,
    /// When each order still inside the window was taken.
    taken: VecDeque<SystemTime>,
}

impl OrderBudget {
    /// At most `max` orders in any `window`. With `max == 0` nothing is ever
    /// allowed.
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max, window, taken: VecDeque::new() }
    }

    /// Records an order at `now`, or returns when the next slot frees.
    pub fn try_take(&mut self, now: SystemTime) -> Result<(), SystemTime> {
        prune(&mut self.taken, self.window, now);
        if self.taken.len() < self.max as usize {
            self.taken.push_back(now);
            return Ok(());
        }
        Err(free_at(&self.taken, self.max, self.window, now))
    }

    /// Orders still allowed at `now`.
    pub fn remaining(&self, now: SystemTime) -> u32 {
        let used = self.taken.iter().filter(|t| inside(**t, self.window, now)).count();
        self.max.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }
}

impl Default for OrderBudget {
    /// Let's Encrypt's new-orders limit: 300 per 3 hours.
    fn default() -> Self {
        Self::new(300, 3 * HOUR)
    }
}

/// Failed authorizations per identifier in a sliding window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzFailures {
    max: u32,
    window: Duration,
    /// Keyed by lower-cased identifier (`*.example.com` and `example.com`
    /// are separate identifiers, as the CA counts them).
    failures: BTreeMap<String, VecDeque<SystemTime>>,
}

impl AuthzFailures {
    /// At most `max` failures per identifier in any `window`; at the limit,
    /// [`AuthzFailures::check`] refuses that identifier until one expires.
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max, window, failures: BTreeMap::new() }
    }

    /// Records a failed authorization for `identifier` at `now` (and forgets
    /// every failure that has left the window).
    pub fn record(&mut self, identifier: &str, now: SystemTime) {
        let window = self.window;
        self.failures.retain(|_, times| {
            prune(times, window, now);
            !times.is_empty()
        });
        self.failures.entry(identifier.to_ascii_lowercase()).or_default().push_back(now);
    }

    /// `Ok` when `identifier` may be tried at `now`, else when it may again.
    pub fn check(&self, identifier: &str, now: SystemTime) -> Result<(), SystemTime> {
        let Some(times) = self.failures.get(&identifier.to_ascii_lowercase()) else {
            return if self.max == 0 { Err(add(now, self.window)) } else { Ok(()) };
        };
        let recent: VecDeque<SystemTime> = times.iter().copied().filter(|t| inside(*t, self.window, now)).collect();
        if recent.len() < self.max as usize {
            Ok(())
        } else {
            Err(free_at(&recent, self.max, self.window, now))
        }
    }
}

impl Default for AuthzFailures {
    /// Let's Encrypt's failed-validation limit: 5 per identifier per hour.
    fn default() -> Self {
        Self::new(5, HOUR)
    }
}

/// Whether an event at `t` still counts at `now`. A time after `now` (the
/// clock went back) counts.
fn inside(t: SystemTime, window: Duration, now: SystemTime) -> bool {
    add(t, window) > now
}

fn prune(times: &mut VecDeque<SystemTime>, window: Duration, now: SystemTime) {
    times.retain(|t| inside(*t, window, now));
}

/// When enough of `times` (all inside the window, `len >= max`) have left it
/// for fewer than `max` to remain.
fn free_at(times: &VecDeque<SystemTime>, max: u32, window: Duration, now: SystemTime) -> SystemTime {
    let mut sorted: Vec<SystemTime> = times.iter().copied().collect();
    sorted.sort_unstable();
    // Dropping below `max` takes `len - max + 1` expiries: the one at this index.
    let index = sorted.len().saturating_sub(max as usize);
    sorted.get(index).map_or_else(|| add(now, window), |t| add(*t, window))
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
