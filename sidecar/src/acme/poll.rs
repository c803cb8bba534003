//! How an order is looked at again while the CA works on it (validating
//! its authorizations, or issuing its certificate): when the CA's
//! `Retry-After` says, never sooner; without one, after a short wait that
//! doubles up to a cap. The order's deadline (`bounds::within`) bounds it
//! all; each caller adds its own limit on the looks where it had one.
//!
//! The first look is learned per CA ([`FirstLooks`]): a CA that validates
//! or issues within milliseconds (Pebble; often Let's Encrypt's issuance)
//! is looked at again within milliseconds, one that takes a second is not
//! asked at 100 ms for nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::bounds::{last_retry_after, MAX_RETRY_AFTER};

/// The waits between looks at one order.
#[derive(Debug, Clone)]
pub(super) struct Looks {
    backoff: Duration,
    max: Duration,
}

impl Looks {
    /// Without `Retry-After`: `first`, then doubling up to `max`.
    pub(super) fn new(first: Duration, max: Duration) -> Self {
        Self { backoff: first, max }
    }

    /// The wait before the next look: what the last answer's `Retry-After`
    /// said (at most [`MAX_RETRY_AFTER`]), else the backoff, which then
    /// doubles. `now` is the wall clock the `Retry-After` was read on.
    pub(super) fn next(&mut self, now: SystemTime) -> Duration {
        match last_retry_after().and_then(|at| at.duration_since(now).ok()) {
            Some(said) => said.min(MAX_RETRY_AFTER),
            None => {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(self.max);
                wait
            }
        }
    }
}

/// The shortest and longest learned first look.
const MIN_FIRST_LOOK: Duration = Duration::from_millis(10);
const MAX_FIRST_LOOK: Duration = Duration::from_secs(2);
/// A first look that found the CA done makes the next one this much
/// shorter; one that did not, this much longer. In balance when about 93%
/// of first looks find the CA done (0.97^0.93 × 1.5^0.07 ≈ 1): a look too
/// early costs one request and a `Retry-After`, a look too late only the
/// difference.
const SOONER: f64 = 0.97;
const LATER: f64 = 1.5;

/// When to look first at an order the CA was told to go on with, learned
/// from whether the last first looks found it done. Shared by every order
/// at one CA; lock-free.
#[derive(Debug)]
pub(crate) struct FirstLook {
    micros: AtomicU64,
}

impl FirstLook {
    pub(crate) fn new(start: Duration) -> Self {
        Self { micros: AtomicU64::new(clamp(start).as_micros() as u64) }
    }

    /// The wait before the first look.
    pub(crate) fn wait(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    /// Learns from a first look: `done` when the CA had finished by then.
    pub(crate) fn learn(&self, done: bool) {
        let factor = if done { SOONER } else { LATER };
        let _ = self.micros.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |micros| {
            Some(clamp(Duration::from_micros(micros).mul_f64(factor)).as_micros() as u64)
        });
    }
}

fn clamp(wait: Duration) -> Duration {
    wait.clamp(MIN_FIRST_LOOK, MAX_FIRST_LOOK)
}

/// The first looks at one CA: after it was told to validate, and after it
/// was asked to finalize. Both start at 100 ms.
#[derive(Debug)]
pub(crate) struct FirstLooks {
    pub(crate) validation: FirstLook,
    pub(crate) issuance: FirstLook,
}

impl Default for FirstLooks {
    fn default() -> Self {
        let start = Duration::from_millis(100);
        Self { validation: FirstLook::new(start), issuance: FirstLook::new(start) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_look_settles_where_most_find_the_ca_done() {
        // A CA done after 30 ms: looks before that miss.
        let look = FirstLook::new(Duration::from_millis(100));
        let (mut hits, mut looks) = (0, 0);
        for i in 0..2000 {
            let done = look.wait() >= Duration::from_millis(30);
            look.learn(done);
            if i >= 1000 {
                looks += 1;
                hits += u32::from(done);
            }
        }
        let hit_rate = f64::from(hits) / f64::from(looks);
        assert!((0.85..0.97).contains(&hit_rate), "{hit_rate}");
        assert!(look.wait() < Duration::from_millis(50), "{:?}", look.wait());

        // A slower CA is followed up, a faster one down, within the bounds.
        for _ in 0..100 {
            look.learn(false);
        }
        assert_eq!(look.wait(), MAX_FIRST_LOOK);
        for _ in 0..1000 {
            look.learn(true);
        }
        assert_eq!(look.wait(), MIN_FIRST_LOOK);
    }

    #[test]
    fn without_retry_after_the_wait_doubles_up_to_its_cap() {
        let mut looks = Looks::new(Duration::from_millis(250), Duration::from_secs(5));
        let waits: Vec<u128> = (0..8).map(|_| looks.next(SystemTime::now()).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }
}
