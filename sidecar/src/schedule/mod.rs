//! When to order, as pure decisions over injected time: nothing here calls
//! `SystemTime::now()`, sleeps, or does I/O. Randomness comes in as `jitter`
//! arguments in `[0, 1)` so every decision is reproducible in tests.
//!
//! - [`renew_time`] and [`RenewBefore`]: the renewal rule for one certificate.
//! - [`Machine`]: the per-certificate state machine (order, back off, follow
//!   the CA's ARI window, give up on permanent errors until forced).
//! - [`OrderBudget`] and [`AuthzFailures`]: self-imposed rate limits, so we
//!   stop before the CA stops us.
//! - [`renewal_jitter`]: spread, so certificates issued together do not all
//!   renew in the same second. (At start-up, the daemon bounds the first
//!   orders in flight instead.)
//! - [`Fallback`]: which of a certificate's resolvers the next order goes to.
//! - [`choose_served`]: what to serve while no good certificate exists.

use std::time::{Duration, SystemTime};

mod ari;
mod fallback;
mod limits;
mod machine;
mod rule;
mod spread;
#[cfg(test)]
mod test_time;

pub use ari::AriAnswer;
pub use fallback::{AfterFailure, Fallback, FallbackSettings, Renewals};
pub use limits::{AuthzFailures, OrderBudget};
pub use machine::{Action, Failure, Machine, Policy, State};
pub use rule::{renew_time, RenewBefore, RenewBeforeError, Why};
pub use spread::{choose_served, renewal_jitter, stable_jitter, Served};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Source of the current time; tests pass a fake.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Delay before retry `attempt` (1-based) after a failed order: about 1 min,
/// 10 min, 100 min, then daily, with up to 10% jitter from `jitter` in [0, 1).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = match attempt {
        0 | 1 => 60,
        2 => 600,
        3 => 6000,
        _ => 86_400,
    };
    Duration::from_secs(base).mul_f64(1.0 + 0.1 * unit(jitter))
}

/// `jitter` made safe to multiply with: NaN becomes 0, the rest is clamped to
/// `[0, 1)`.
fn unit(jitter: f64) -> f64 {
    if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

/// `at + d`; `at` itself in the (unreal) case the sum overflows, so no
/// clock value can make the daemon panic.
fn add(at: SystemTime, d: Duration) -> SystemTime {
    at.checked_add(d).unwrap_or(at)
}

/// RFC 3339 in UTC, e.g. `2027-02-26T12:00:00Z`: how every time is shown.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
