//! The per-certificate state machine. Every transition takes the time (and
//! any randomness) as arguments; the daemon asks [`Machine::next_action`],
//! does it, and reports the outcome back.

use std::time::{Duration, SystemTime};

use super::{add, backoff, renew_time, renewal_jitter, rfc3339, RenewBefore, Why, HOUR};

/// Where one certificate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// An order should start now.
    Due { why: Why },
    /// An order is in flight.
    Ordering { started: SystemTime },
    /// A certificate is deployed; renew at `renew_at`, ask the CA's ARI
    /// endpoint again at `ari_poll_at` (when the CA has one).
    Valid {
        not_before: SystemTime,
        not_after: SystemTime,
        renew_at: SystemTime,
        why: Why,
        ari_poll_at: Option<SystemTime>,
    },
    /// The last order failed; try again at `next`.
    Backoff { attempt: u32, next: SystemTime, error: String },
    /// A permanent failure; only [`Machine::force`] or a new machine leaves it.
    Failed { error: String },
}

/// What the daemon should do for the certificate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start an order, then call [`Machine::order_started`].
    Order,
    /// Fetch the CA's renewal information, then call [`Machine::ari_answer`].
    PollAri,
    /// Nothing until this time (or until a command arrives).
    WaitUntil(SystemTime),
    /// Nothing until a command or an outcome arrives.
    Idle,
}

/// How one certificate is renewed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Overrides the lifetime rule; see [`RenewBefore`].
    pub renew_before: Option<RenewBefore>,
    /// The CA's directory advertises `renewalInfo` (RFC 9773).
    pub ari: bool,
}

/// How an order failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// Retrying cannot help (a rejected identifier, a CAA record forbidding
    /// the CA, an unauthorized account): stop until an operator forces.
    pub permanent: bool,
    /// The CA refused for a rate limit; wait at least an hour when it did not
    /// say how long.
    pub rate_limited: bool,
    /// The CA's `Retry-After`, as an absolute time.
    pub retry_after: Option<SystemTime>,
    /// The CA could not be reached or failed on its side (connection
    /// refused, a time-out, a 5xx): when it answers again the backoff may
    /// end early ([`Machine::ca_back`]).
    pub outage: bool,
    pub message: String,
}

/// Attempts below this may be pulled before expiry (see [`Machine::failed`]).
const CAP_ATTEMPTS: u32 = 4;
/// Margin before `not_after` that a backoff is capped to.
const EXPIRY_MARGIN: Duration = HOUR;

/// One certificate's renewal state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub(super) policy: Policy,
    pub(super) state: State,
    /// Validity of the last certificate we had, across every state.
    pub(super) last_good: Option<(SystemTime, SystemTime)>,
    /// Consecutive failed orders since the last success or force; the
    /// `attempt` of the next `Backoff` is this plus one. Lives here because
    /// it must survive `Backoff -> Ordering -> Backoff`.
    failures: u32,
    /// The current backoff follows a CA outage: the earliest it may end
    /// when the CA answers again (the CA's `Retry-After`, else the failure).
    outage_floor: Option<SystemTime>,
}

impl Machine {
    /// A certificate never issued: due at once.
    pub fn new(policy: Policy) -> Self {
        Self { policy, state: State::Due { why: Why::NotIssued }, last_good: None, failures: 0, outage_floor: None }
    }

    /// A stored certificate: `Valid` until its renewal time (moved earlier by
    /// up to [`renewal_jitter`] with `jitter`), or `Due` when that has passed
    /// (`Due { Expired }` once `not_after` has). With ARI the first poll is
    /// at `now`.
    pub fn with_certificate(
        policy: Policy,
        not_before: SystemTime,
        not_after: SystemTime,
        now: SystemTime,
        jitter: f64,
    ) -> Self {
        let mut machine = Self::new(policy);
        machine.last_good = Some((not_before, not_after));
        let (renew_at, why) = machine.rule(not_before, not_after, jitter);
        machine.state = if not_after <= now {
            State::Due { why: Why::Expired }
        } else if renew_at <= now {
            State::Due { why }
        } else {
            State::Valid { not_before, not_after, renew_at, why, ari_poll_at: policy.ari.then_some(now) }
        };
        machine
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// `(not_before, not_after)` of the last certificate issued or loaded,
    /// whatever the state: what is deployed now.
    pub fn last_good(&self) -> Option<(SystemTime, SystemTime)> {
        self.last_good
    }

    /// What to do at `now`.
    pub fn next_action(&self, now: SystemTime) -> Action {
        match &self.state {
            State::Due { .. } => Action::Order,
            State::Ordering { .. } | State::Failed { .. } => Action::Idle,
            State::Valid { renew_at, ari_poll_at, .. } => match *ari_poll_at {
                Some(poll) if poll <= now => Action::PollAri,
                _ if *renew_at <= now => Action::Order,
                Some(poll) => Action::WaitUntil(poll.min(*renew_at)),
                None => Action::WaitUntil(*renew_at),
            },
            State::Backoff { next, .. } if *next <= now => Action::Order,
            State::Backoff { next, .. } => Action::WaitUntil(*next),
        }
    }

    /// An order has started. Ignored in `Failed`, which only
    /// [`Machine::force`] leaves.
    pub fn order_started(&mut self, now: SystemTime) {
        if !matches!(self.state, State::Failed { .. }) {
            self.state = State::Ordering { started: now };
        }
    }

    /// A new certificate is deployed: `Valid`, failures forgotten, ARI polled
    /// at once when the CA has it. A certificate whose renewal time has
    /// already passed when it arrives (a skewed clock, a very short lifetime)
    /// is not re-ordered for an hour, so a clock problem cannot become an
    /// order loop.
    pub fn issued(&mut self, not_before: SystemTime, not_after: SystemTime, now: SystemTime, jitter: f64) {
        let (renew_at, why) = self.rule(not_before, not_after, jitter);
        self.last_good = Some((not_before, not_after));
        self.failures = 0;
        self.state = State::Valid {
            not_before,
            not_after,
            renew_at: if renew_at <= now { add(now, HOUR) } else { renew_at },
            why,
            ari_poll_at: self.policy.ari.then_some(now),
        };
    }

    /// An order failed.
    ///
    /// Permanent: `Failed`. Otherwise `Backoff` with the next attempt number
    /// at `now +` [`backoff`]`(attempt, jitter)` (about 1 min, 10 min,
    /// 100 min, then daily). While the deployed certificate is still valid
    /// and `attempt < 4`, that backoff is capped at `not_after - 1h` when
    /// that is still after `now`, so a quick retry can still save a nearly
    /// expired certificate. The CA's word is then a floor the cap never
    /// lowers: not before `retry_after`, and not before an hour for a rate
    /// limit without one.
    pub fn failed(&mut self, failure: &Failure, now: SystemTime, jitter: f64) {
        if let State::Failed { error } = &mut self.state {
            if failure.permanent {
                error.clone_from(&failure.message);
            }
            return;
        }
        if failure.permanent {
            self.state = State::Failed { error: failure.message.clone() };
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let attempt = self.failures;
        let mut next = add(now, backoff(attempt, jitter));
        if let Some((_, not_after)) = self.last_good {
            let cap = not_after.checked_sub(EXPIRY_MARGIN).unwrap_or(not_after);
            if cap > now && attempt < CAP_ATTEMPTS {
                next = next.min(cap);
            }
        }
        if let Some(retry_after) = failure.retry_after {
            next = next.max(retry_after);
        } else if failure.rate_limited {
            next = next.max(add(now, HOUR));
        }
        self.outage_floor = (failure.outage && !failure.rate_limited).then(|| failure.retry_after.unwrap_or(now));
        self.state = State::Backoff { attempt, next, error: failure.message.clone() };
    }

    /// The CA answers again after the outage that caused this backoff: the
    /// next attempt moves to `at` (never before the CA's `Retry-After`).
    /// Returns whether it moved. Backoffs for other failures (a failed
    /// validation, a rate limit) keep their time.
    pub fn ca_back(&mut self, at: SystemTime) -> bool {
        let (State::Backoff { next, .. }, Some(floor)) = (&mut self.state, self.outage_floor) else { return false };
        let at = at.max(floor);
        if at < *next {
            *next = at;
            self.outage_floor = None;
            true
        } else {
            false
        }
    }

    /// The order could not start here (another replica holds the
    /// certificate's lock, or the shared store is unreachable): try again at
    /// `next`, counting no failure, so the wait never grows into a backoff.
    /// Ignored in `Failed`.
    pub fn deferred(&mut self, next: SystemTime, why: &str) {
        if !matches!(self.state, State::Failed { .. }) {
            self.state = State::Backoff { attempt: self.failures, next, error: why.to_owned() };
        }
    }

    /// Takes over the backoff another replica recorded for this certificate
    /// (shared store), when it is later than what this machine would do.
    pub fn restore_backoff(&mut self, failures: u32, next: SystemTime, error: &str, now: SystemTime) {
        if next <= now || matches!(self.state, State::Failed { .. }) {
            return;
        }
        if let State::Valid { renew_at, .. } = self.state {
            if renew_at > next {
                return;
            }
        }
        self.failures = failures;
        self.state = State::Backoff { attempt: failures, next, error: error.to_owned() };
    }

    /// An operator forces a renewal: `Due { Forced }` from any state,
    /// failures forgotten.
    pub fn force(&mut self) {
        self.failures = 0;
        self.state = State::Due { why: Why::Forced };
    }

    /// The configured names or key no longer match the deployed certificate:
    /// `Due { ConfigChanged }`, failures forgotten.
    pub fn config_changed(&mut self) {
        self.failures = 0;
        self.state = State::Due { why: Why::ConfigChanged };
    }

    /// An order recorded before a restart is still open: `Due { Interrupted }`
    /// (the issuer downloads its certificate rather than ordering anew).
    pub fn interrupted(&mut self) {
        self.state = State::Due { why: Why::Interrupted };
    }

    /// One line for `proxy-acme certs`; `NAME` stands for the certificate's
    /// name (see [`Machine::describe_for`]).
    pub fn describe(&self, now: SystemTime) -> String {
        self.describe_for("NAME", now)
    }

    /// One line for `proxy-acme certs` about certificate `name`.
    pub fn describe_for(&self, name: &str, now: SystemTime) -> String {
        match &self.state {
            State::Due { why } => format!("order due now ({why})"),
            State::Ordering { started } => format!("ordering since {}", rfc3339(*started)),
            State::Valid { not_after, renew_at, why, ari_poll_at, .. } => {
                let validity = if *not_after <= now { "expired at" } else { "valid until" };
                let renew = if *renew_at <= now {
                    "renewal due now".to_owned()
                } else {
                    format!("renew at {}", rfc3339(*renew_at))
                };
                let ari = ari_poll_at.map(|t| format!("; next ARI check at {}", rfc3339(t))).unwrap_or_default();
                format!("{validity} {}; {renew} ({why}){ari}", rfc3339(*not_after))
            }
            State::Backoff { attempt, next, error } => {
                format!("backing off (attempt {attempt}) until {}: {error}", rfc3339(*next))
            }
            State::Failed { error } => format!("failed: {error} (run `proxy-acme renew {name} --force`)"),
        }
    }

    /// Orders failed in a row since the last success (or force).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next order is due and why, as a short word for metrics;
    /// `None` while ordering or after a permanent failure.
    pub fn next_order(&self, now: SystemTime) -> Option<(SystemTime, &'static str)> {
        match &self.state {
            State::Due { why } => Some((now, why.label())),
            State::Valid { renew_at, why, .. } => Some((*renew_at, why.label())),
            State::Backoff { next, .. } => Some((*next, "backoff")),
            State::Ordering { .. } | State::Failed { .. } => None,
        }
    }

    /// The rule's renewal time for a certificate, spread by `jitter`.
    pub(super) fn rule(&self, not_before: SystemTime, not_after: SystemTime, jitter: f64) -> (SystemTime, Why) {
        let (at, why) = renew_time(not_before, not_after, self.policy.renew_before.as_ref());
        let lifetime = not_after.duration_since(not_before).unwrap_or(Duration::ZERO);
        (renewal_jitter(at, lifetime, jitter), why)
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
