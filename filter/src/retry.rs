//! Challenge requests waiting for a sidecar that does not answer: a CA's
//! validator that arrives while the sidecar restarts (a crash, an upgrade)
//! is held and the sidecar asked again every [`RETRY_EVERY_MS`], until
//! `sidecar_retry_ms` after the first call, instead of getting a 503 that
//! fails the order. Kept per worker by the root context, which dispatches
//! the calls on its tick and answers the waiting stream by its context id.
//!
//! Pure bookkeeping, unit-tested natively; `lib.rs` does the host calls.

use std::collections::BTreeMap;

/// Between two calls to a sidecar that did not answer.
pub const RETRY_EVERY_MS: u64 = 100;
/// The root context's tick while requests wait.
pub const TICK_MS: u64 = 50;
/// Most requests waiting per worker; beyond it a request gets its 503 at
/// once (a flood of validators while the sidecar is down holds no more).
pub const MAX_WAITING: usize = 256;

/// One challenge request waiting for the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The stream's context id (to answer it from the root context).
    pub context_id: u32,
    pub token: String,
    pub host: String,
    /// Given up (and answered 503) after this time, in ms since the epoch.
    pub deadline_ms: u64,
    /// Next call not before this time.
    pub next_ms: u64,
}

/// The waiting requests of one worker: those due for a call, and those
/// whose call is in flight (by the call's token id).
#[derive(Debug, Default)]
pub struct Retries {
    queued: Vec<Waiting>,
    calls: BTreeMap<u32, Waiting>,
}

impl Retries {
    /// How many requests wait (queued or with a call in flight).
    pub fn len(&self) -> usize {
        self.queued.len() + self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Holds a request whose call failed at `now_ms`; `false` (answer it
    /// now) when its deadline has passed or too many wait.
    pub fn hold(&mut self, mut waiting: Waiting, now_ms: u64) -> bool {
        if now_ms >= waiting.deadline_ms || self.len() >= MAX_WAITING {
            return false;
        }
        waiting.next_ms = now_ms + RETRY_EVERY_MS;
        self.queued.push(waiting);
        true
    }

    /// The requests due for another call at `now_ms`, taken out of the queue.
    pub fn due(&mut self, now_ms: u64) -> Vec<Waiting> {
        let (due, later): (Vec<Waiting>, Vec<Waiting>) = self.queued.drain(..).partition(|w| w.next_ms <= now_ms);
        self.queued = later;
        due
    }

    /// A call for `waiting` is in flight as `call`.
    pub fn called(&mut self, call: u32, waiting: Waiting) {
        self.calls.insert(call, waiting);
    }

    /// The request whose call `call` answered, if it is one of ours.
    pub fn answered(&mut self, call: u32) -> Option<Waiting> {
        self.calls.remove(&call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(context_id: u32, deadline_ms: u64) -> Waiting {
        Waiting { context_id, token: "t".into(), host: "h".into(), deadline_ms, next_ms: 0 }
    }

    #[test]
    fn a_request_is_asked_again_every_interval_until_its_deadline() {
        let mut retries = Retries::default();
        assert!(retries.hold(waiting(7, 1_000), 0));
        assert!(retries.due(RETRY_EVERY_MS - 1).is_empty(), "not before the interval");
        let due = retries.due(RETRY_EVERY_MS);
        assert_eq!(due.iter().map(|w| w.context_id).collect::<Vec<_>>(), [7]);
        retries.called(42, due[0].clone());
        assert_eq!(retries.len(), 1);
        assert_eq!(retries.answered(41), None, "another call is not ours");
        let Some(back) = retries.answered(42) else { panic!("call 42 is ours") };
        assert!(retries.is_empty());
        // Failed again before the deadline: held; after it: answered now.
        assert!(retries.hold(back.clone(), 500));
        assert_eq!(retries.due(10_000).len(), 1);
        assert!(!retries.hold(back, 1_000));
    }

    #[test]
    fn a_flood_of_waiting_requests_is_capped() {
        let mut retries = Retries::default();
        for id in (0_u32..).take(MAX_WAITING) {
            assert!(retries.hold(waiting(id, 1_000), 0));
        }
        assert!(!retries.hold(waiting(9_999, 1_000), 0), "beyond the cap: a 503 at once");
    }
}
