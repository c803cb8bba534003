//! [`Pace`]: one CA's [`Controller`] shared by the tasks that use the CA,
//! handing out [`Permit`]s; [`Paces`]: every CA's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::{Admission, Controller, Kind, Outcome, MAX_GATE_WAIT};
use crate::acme::{AcmeError, FirstLooks};
use crate::schedule::Clock;

/// One CA's [`Controller`] behind a lock, handing out [`Permit`]s.
///
/// Waiters park on `turn` and are woken one at a time (FIFO): when a
/// permit is released, or when one was admitted with room left. While the
/// gate or the spacing holds everyone back, only one waiter (the sleeper)
/// sleeps until it opens; the others stay parked, so ten thousand waiting
/// certificates cost one timer, not ten thousand wake-ups per admission.
#[derive(Debug)]
pub(in crate::daemon) struct Pace {
    /// The CA's directory URL: the metrics' `ca` label.
    ca: String,
    inner: Mutex<Inner>,
    turn: Notify,
    clock: Arc<dyn Clock>,
    /// When the CA is first looked at again after being told to validate
    /// or to issue, learned by its orders.
    looks: Arc<FirstLooks>,
}

#[derive(Debug, Default)]
struct Inner {
    controller: Controller,
    /// A waiter sleeps until the gate or the spacing lets the next one go.
    sleeper: bool,
}

/// Why no permit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the CA asked not to be called before {}", crate::schedule::rfc3339(*.0))]
pub(in crate::daemon) struct Gated(pub(in crate::daemon) SystemTime);

impl Pace {
    pub(in crate::daemon) fn new(ca: &str, clock: Arc<dyn Clock>) -> Self {
        Self { ca: ca.to_owned(), inner: Mutex::default(), turn: Notify::new(), clock, looks: Arc::default() }
    }

    /// The CA's learned first looks, shared by its orders.
    pub(in crate::daemon) fn looks(&self) -> Arc<FirstLooks> {
        Arc::clone(&self.looks)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the controller.
    #[cfg(test)]
    pub(in crate::daemon) fn controller(&self) -> Controller {
        self.inner().controller.clone()
    }

    /// Waits for a place among the CA's exchanges. A gate that opens later
    /// than `max_wait` from now is not waited for: `Err` says until when.
    pub(in crate::daemon) async fn acquire(self: &Arc<Self>, max_wait: Duration, kind: Kind) -> Result<Permit, Gated> {
        let latest = self.clock.now() + max_wait;
        // Whether this waiter is the sleeper; if it goes away while it is,
        // another waiter is woken to take its place.
        let mut sleeper = Sleeper { pace: self, on: false };
        loop {
            let now = self.clock.now();
            let admission = {
                let mut inner = self.inner();
                inner.sleeper &= !std::mem::take(&mut sleeper.on);
                let admission = inner.controller.admit(now, kind);
                let held_back = matches!(admission, Admission::Gated(until) if until <= latest)
                    || matches!(admission, Admission::Spaced(_));
                if held_back && !inner.sleeper {
                    inner.sleeper = true;
                    sleeper.on = true;
                }
                admission
            };
            self.export();
            match admission {
                Admission::Go => {
                    if self.has_room() {
                        self.turn.notify_one();
                    }
                    // Only a new order waits for an answer.
                    let answered = Arc::new(AtomicBool::new(kind != Kind::Order));
                    return Ok(Permit { pace: Arc::clone(self), admitted: now, kind, outcome: None, answered });
                }
                Admission::Gated(until) if until > latest => {
                    // Another waiter may be willing to wait that long.
                    self.turn.notify_one();
                    return Err(Gated(until));
                }
                Admission::Gated(at) | Admission::Spaced(at) if sleeper.on => {
                    tokio::time::sleep(at.duration_since(now).unwrap_or_default()).await;
                }
                Admission::Gated(_) | Admission::Spaced(_) | Admission::Full | Admission::Unanswered => {
                    self.turn.notified().await;
                }
            }
        }
    }

    /// Waits until the gate is open: for an exchange admitted before the
    /// CA said `Retry-After` that has not yet sent its new order (it waited
    /// for the account's registration, say). A gate that opens later than
    /// [`MAX_GATE_WAIT`] from now is not waited for: `Err` says until when.
    pub(in crate::daemon) async fn until_open(&self) -> Result<(), Gated> {
        let latest = self.clock.now() + MAX_GATE_WAIT;
        loop {
            let now = self.clock.now();
            let Some(at) = self.inner().controller.gated_until(now) else { return Ok(()) };
            if at > latest {
                return Err(Gated(at));
            }
            tokio::time::sleep(at.duration_since(now).unwrap_or_default()).await;
        }
    }

    pub(in crate::daemon) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Whether another exchange may be in flight besides those that are.
    fn has_room(&self) -> bool {
        let inner = self.inner();
        inner.controller.in_flight < inner.controller.limit
    }

    /// A new order's request was answered: the next may be sent.
    fn answered(&self) {
        self.inner().controller.answered();
        self.turn.notify_one();
    }

    /// `unanswered`: a new order that ends without its answer having been
    /// reported (refused, or stopped before it was sent).
    fn release(&self, admitted: SystemTime, kind: Kind, outcome: Outcome, unanswered: bool) {
        let now = self.clock.now();
        let (released, limit) = {
            let mut inner = self.inner();
            if unanswered {
                inner.controller.answered();
            }
            (inner.controller.release(admitted, kind, outcome, now), inner.controller.limit)
        };
        let metrics = crate::serve::metrics::metrics();
        if released.backed_off {
            metrics.ca_backoff(&self.ca);
            tracing::info!(ca = %self.ca, limit, ?outcome, "the CA is slowing us down: fewer exchanges at once");
        }
        if !released.gated_for.is_zero() {
            metrics.ca_gated(&self.ca, released.gated_for);
            tracing::info!(
                ca = %self.ca,
                wait_ms = released.gated_for.as_millis(),
                "the CA asked to wait: no new exchange with it until then"
            );
        }
        self.export();
        self.export_looks();
        self.turn.notify_one();
    }

    fn export(&self) {
        let now = self.clock.now();
        let (limit, in_flight, spacing) = {
            let inner = self.inner();
            (inner.controller.limit, inner.controller.in_flight, inner.controller.spacing(now).unwrap_or_default())
        };
        crate::serve::metrics::metrics().ca_pace(&self.ca, limit, in_flight, spacing);
    }

    /// The first looks change only within an exchange: exported when one
    /// ends (and at creation), not at every admission.
    fn export_looks(&self) {
        let metrics = crate::serve::metrics::metrics();
        metrics.ca_first_looks(&self.ca, self.looks.validation.wait(), self.looks.issuance.wait());
    }
}

/// The sleeper's place: given up (and another waiter woken to take it)
/// when its waiter goes away while sleeping.
struct Sleeper<'a> {
    pace: &'a Pace,
    on: bool,
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        if self.on {
            self.pace.inner().sleeper = false;
            self.pace.turn.notify_one();
        }
    }
}

/// A place among one CA's exchanges; [`Permit::finish`] reports how it
/// went. Dropped unfinished (the order was stopped), it counts as
/// [`Outcome::Failed`]: no signal either way.
#[derive(Debug)]
pub(in crate::daemon) struct Permit {
    pace: Arc<Pace>,
    admitted: SystemTime,
    kind: Kind,
    outcome: Option<Outcome>,
    /// Whether the CA answered its new order (always, for other kinds).
    answered: Arc<AtomicBool>,
}

impl Permit {
    /// What the exchange reports the answer to its new order with.
    pub(in crate::daemon) fn answer(&self) -> Answer {
        Answer { pace: Arc::clone(&self.pace), answered: Arc::clone(&self.answered) }
    }

    pub(in crate::daemon) fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// Reports the outcome of an exchange that ended with `result` after
    /// `refused` refused nonces, and returns it.
    pub(in crate::daemon) fn finish_with<T>(self, result: &Result<T, AcmeError>, refused: u32) -> Outcome {
        let outcome = Outcome::of(result, refused, self.pace.clock.now());
        self.finish(outcome);
        outcome
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let unanswered = !self.answered.swap(true, Ordering::AcqRel);
        self.pace.release(self.admitted, self.kind, self.outcome.unwrap_or(Outcome::Failed), unanswered);
    }
}

/// Reports that the CA answered the new order of a [`Permit`] (it created
/// the order), so that the next new order may go before this one's
/// validation ends. Only the first report counts; for an exchange that
/// is not a new order, none does.
#[derive(Debug, Clone)]
pub(in crate::daemon) struct Answer {
    pace: Arc<Pace>,
    answered: Arc<AtomicBool>,
}

impl Answer {
    pub(in crate::daemon) fn given(&self) {
        if !self.answered.swap(true, Ordering::AcqRel) {
            self.pace.answered();
        }
    }
}

/// Every CA's [`Pace`], by directory URL, made on first use (so resolvers
/// a reload adds get the pace of their CA, shared with the others using it).
#[derive(Debug)]
pub(in crate::daemon) struct Paces {
    by_ca: Mutex<BTreeMap<String, Arc<Pace>>>,
    clock: Arc<dyn Clock>,
}

impl Paces {
    pub(in crate::daemon) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { by_ca: Mutex::default(), clock }
    }

    /// The pace of the CA at `directory`.
    pub(in crate::daemon) fn of(&self, directory: &str) -> Arc<Pace> {
        let mut map = self.by_ca.lock().unwrap_or_else(|e| e.into_inner());
        let pace = map.entry(directory.to_owned()).or_insert_with(|| {
            let pace = Arc::new(Pace::new(directory, Arc::clone(&self.clock)));
            pace.export();
            pace.export_looks();
            pace
        });
        Arc::clone(pace)
    }
}

#[cfg(test)]
#[path = "permit_tests.rs"]
mod tests;
