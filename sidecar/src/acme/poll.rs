//! How an order is looked at again while the CA works on it (validating
//! its authorizations, or issuing its certificate): when the CA's
//! `Retry-After` says, never sooner; without one, after a short wait that
//! doubles up to a cap. The order's deadline (`bounds::within`) bounds it
//! all; each caller adds its own limit on the looks where it had one.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_retry_after_the_wait_doubles_up_to_its_cap() {
        let mut looks = Looks::new(Duration::from_millis(250), Duration::from_secs(5));
        let waits: Vec<u128> = (0..8).map(|_| looks.next(SystemTime::now()).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }
}
