//! How fast one CA is asked (issue 23): one [`Controller`] per CA (keyed by
//! its directory URL), shared by every resolver and certificate using it,
//! admits new orders, order resumptions, ARI polls, revocations and the
//! account calls inside them.
//!
//! - **Limit (AIMD).** At most `limit` exchanges in flight. It starts at
//!   [`INITIAL_LIMIT`] and, until the CA first slows us down, grows by one
//!   with each clean completion (it doubles every round, as TCP's slow
//!   start); after that by one for each limit's worth of clean
//!   completions; never beyond [`MAX_LIMIT`]. A 503, a time-out, a burst
//!   of refused nonces or a 429 without `Retry-After` halves it (floor 1),
//!   once per episode: exchanges admitted before the last backoff do not
//!   halve it again. A 429 with `Retry-After` is a rate, not a load: it
//!   closes the gate and teaches the spacing, and leaves the limit.
//! - **Gap.** Two new orders are at least [`MIN_GAP`] apart, so that
//!   orders freed at the same instant (polled on one cadence, they end
//!   together) do not reach the CA as one burst: when its limit is first
//!   reached, its 429 comes back before the next new order leaves, instead
//!   of a refusal for each of a dozen orders already on the wire. Other
//!   exchanges have no gap: 10,000 certificates polling renewal
//!   information need more than 100 a second when the CA says
//!   `Retry-After: 60`, and a gap shared with them slowed a mass renewal.
//! - **Unanswered new orders.** At most [`UNANSWERED_ORDERS`] new-order
//!   requests are on the wire at once: an order is admitted, then waits
//!   for its account and key, then sends its new order; until the CA has
//!   answered that one (created the order or refused it), the next is not
//!   admitted. When the CA's budget runs out, what it refuses is the one
//!   that found it empty and at most one more already sent, however slow
//!   the way back is (a gap alone let four through in a test on a loaded
//!   machine, where a 429 took 20 ms to return). The rest of an order
//!   (validation, finalize) is not bounded by this, only by the limit.
//! - **Gate.** A `Retry-After` the CA gave (on a 429 or a 503) closes the
//!   CA until then: no exchange is admitted before it, whoever waits. A
//!   gate further than [`MAX_GATE_WAIT`] away is not waited out: the
//!   exchange fails at once with the CA's time, for the schedule to keep.
//! - **Spacing.** A CA's limits are rates, which a concurrency limit alone
//!   cannot express (short orders at a limit of 1 can still exceed 10 new
//!   orders a second). A rate limit (429) with `Retry-After` on a new
//!   order teaches one, once per episode, plus [`SPACING_MARGIN`]; new
//!   orders are then spaced by it for [`SPACING_MEMORY`] after the last
//!   429. Only new orders ([`Kind::Order`]): a CA limits each endpoint on
//!   its own (Let's Encrypt's new-orders limit says nothing about renewal
//!   information), and a certificate's first ARI poll right after its
//!   issuance would otherwise halve the pace of new orders.
//!   - The first 429: the exchanges admitted within one `Retry-After`
//!     before it (n) say the CA allows n − 1 per that window. The CA's
//!     burst counts as rate here, so this spacing is too narrow when the
//!     CA has one.
//!   - Each later 429: a 429 means the CA's budget is empty, so between
//!     two of them the CA accepted exactly what it refilled. The exchanges
//!     admitted since the previous 429, less this one, over the time
//!     between the two, is its rate (a token bucket's, or Let's Encrypt's
//!     GCRA), with no burst in it. The spacing becomes that.
//!
//!   So a cold start pays two refusals (one per episode), not one per
//!   sawtooth, and then goes at the CA's rate plus the margin.
//!
//! The controller is pure (time is passed in); [`Pace`] is its async
//! wrapper that hands out [`Permit`]s, and the release of a permit reports
//! the exchange's [`Outcome`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::acme::AcmeError;

mod permit;

pub(super) use permit::{Answer, Gated, Paces};

/// Exchanges in flight per CA at start: modest, as for an unknown CA.
pub(super) const INITIAL_LIMIT: u32 = 4;
/// The most a CA is ever given at once. 16, not more: Pebble 2.4 (the CA
/// many test against) deadlocked in its MemoryStore with tens of orders in
/// flight (seen twice in a mass renewal, at about 54), and 16 at once
/// already outruns what one sidecar's validations need.
pub(super) const MAX_LIMIT: u32 = 16;
/// Refused nonces within one exchange that count as the CA being
/// overloaded. Each is already three refusals in a row (instant-acme sends
/// a request again twice itself with the nonce the refusal carried), which
/// at Pebble's default 5 % refusal rate happens once in 8,000 requests.
pub(super) const BAD_NONCE_BURST: u32 = 2;
/// The least time between two new orders: at most 250 a second, far
/// beyond any CA's per-account rate, and long enough on a local network
/// for a 429 to return before the next one leaves. (At 10 ms it was what
/// bounded 1,000 first orders at Pebble: 10.4 s, every run.)
pub(super) const MIN_GAP: Duration = Duration::from_millis(4);
/// New-order requests on the wire at once, per CA: what one exhausted
/// budget can cost in refusals (see the module's documentation). Two, not
/// one: one would make every new order wait for the previous one's round
/// trip; two overlap a round trip with the next order's account and key.
pub(super) const UNANSWERED_ORDERS: u32 = 2;
/// How long a spacing learned from a throttle is kept after the last one.
pub(super) const SPACING_MEMORY: Duration = Duration::from_secs(600);
/// Added to a learned spacing: the CA's clock is not ours to the millisecond.
pub(super) const SPACING_MARGIN: f64 = 0.05;
/// The widest spacing learned (a long `Retry-After` with two exchanges in it
/// says little about a rate).
pub(super) const MAX_SPACING: Duration = Duration::from_secs(60);
/// The longest a closed gate is waited out inside an order. Beyond it the
/// order fails at once with the CA's time, and the certificate's schedule
/// backs off until then (shown by `certs`), rather than hold its task and
/// its lock for minutes or hours.
pub(super) const MAX_GATE_WAIT: Duration = Duration::from_secs(30);
/// Admission times kept for learning a spacing.
const KEPT_STARTS: usize = 1024;

/// What an exchange does, for the spacing: only new orders are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Creates an order (first issuance, renewal, on-demand, dry run).
    Order,
    /// Anything else: a resumed order, an ARI poll, a revocation.
    Other,
}

/// How one admitted exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The CA answered and nothing said to slow down.
    Success,
    /// The CA's rate limit (429, `rateLimited`), with the time its
    /// `Retry-After` named, if it did: also teaches the spacing.
    RateLimited(Option<SystemTime>),
    /// The CA is overloaded (503, a burst of refused nonces), with the time
    /// its `Retry-After` named, if it did.
    Busy(Option<SystemTime>),
    /// No answer in time: a request's or the order's time limit.
    Timeout,
    /// Anything else (a refused challenge, a store error): no signal about
    /// the CA's load, neither grows nor shrinks the limit.
    Failed,
}

impl Outcome {
    /// The outcome of an exchange that ended with `result`, after `refused`
    /// refused nonces; `now` is when it ended.
    pub(super) fn of<T>(result: &Result<T, AcmeError>, refused: u32, now: SystemTime) -> Self {
        if refused >= BAD_NONCE_BURST {
            return Self::Busy(None);
        }
        let Err(error) = result else { return Self::Success };
        if let AcmeError::RateLimited(_) = error.cause() {
            // Our own budget or our own gate: nothing the CA said.
            return Self::Failed;
        }
        let status = match error.cause() {
            AcmeError::Protocol(instant_acme::Error::Api(problem)) => problem.status,
            _ => None,
        };
        if error.is_rate_limited() || status == Some(429) {
            return Self::RateLimited(error.retry_after(now));
        }
        if status == Some(503) {
            return Self::Busy(error.retry_after(now));
        }
        match error.cause() {
            AcmeError::Deadline { .. } => Self::Timeout,
            AcmeError::Protocol(instant_acme::Error::Other(e)) if is_timeout(e.as_ref()) => Self::Timeout,
            _ => Self::Failed,
        }
    }
}

/// Whether a transport error is [`bounds`](crate::acme::bounds)' time limit.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        error.downcast_ref::<crate::acme::bounds::CaRequestError>(),
        Some(crate::acme::bounds::CaRequestError::Timeout { .. })
    )
}

/// What [`Controller::admit`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Go: the exchange is counted in flight.
    Go,
    /// The CA's `Retry-After` closes it until then.
    Gated(SystemTime),
    /// The learned spacing allows the next exchange at this time.
    Spaced(SystemTime),
    /// `limit` exchanges are in flight: wait for one to end.
    Full,
    /// [`UNANSWERED_ORDERS`] new orders are on the wire: wait for an answer.
    Unanswered,
}

/// What a release changed, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Released {
    /// The limit was halved.
    pub(super) backed_off: bool,
    /// How much longer the gate stays closed than before.
    pub(super) gated_for: Duration,
}

/// One CA's pace: the pure state machine.
#[derive(Debug, Clone)]
pub(super) struct Controller {
    limit: u32,
    in_flight: u32,
    /// New orders admitted whose request the CA has not answered yet.
    unanswered: u32,
    /// Clean completions since the limit last changed.
    clean: u32,
    /// Nothing has slowed us down yet: the limit grows per completion.
    slow_start: bool,
    /// Closed until then (the CA's `Retry-After`).
    gate: Option<SystemTime>,
    /// The learned spacing and when the last throttle episode renewed it.
    spacing: Option<(Duration, SystemTime)>,
    /// When the last backoff happened: exchanges admitted before it
    /// belong to the same episode.
    backed_off_at: Option<SystemTime>,
    /// When the last rate limit taught a spacing: exchanges admitted
    /// before it were on the wire already and teach nothing more.
    throttled_at: Option<SystemTime>,
    /// Recent admissions of new orders, oldest first.
    starts: VecDeque<SystemTime>,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            limit: INITIAL_LIMIT,
            in_flight: 0,
            unanswered: 0,
            clean: 0,
            slow_start: true,
            gate: None,
            spacing: None,
            backed_off_at: None,
            throttled_at: None,
            starts: VecDeque::new(),
        }
    }
}

impl Controller {
    #[cfg(test)]
    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    #[cfg(test)]
    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// When the gate opens, if it is closed at `now`.
    pub(super) fn gated_until(&self, now: SystemTime) -> Option<SystemTime> {
        self.gate.filter(|until| *until > now)
    }

    /// The spacing in force at `now`, if one was learned recently.
    pub(super) fn spacing(&self, now: SystemTime) -> Option<Duration> {
        let (spacing, renewed) = self.spacing?;
        let age = now.duration_since(renewed).unwrap_or_default();
        (age < SPACING_MEMORY).then_some(spacing)
    }

    /// Whether an exchange of `kind` may start at `now`; when it may, it is
    /// counted in flight (and must be [`released`](Self::release)).
    pub(super) fn admit(&mut self, now: SystemTime, kind: Kind) -> Admission {
        if let Some(until) = self.gated_until(now) {
            return Admission::Gated(until);
        }
        self.gate = None;
        if self.in_flight >= self.limit {
            return Admission::Full;
        }
        let next = match (kind, self.starts.back()) {
            (Kind::Order, Some(order)) => Some(*order + self.spacing(now).unwrap_or_default().max(MIN_GAP)),
            _ => None,
        };
        if let Some(next) = next.filter(|next| *next > now) {
            return Admission::Spaced(next);
        }
        if kind == Kind::Order && self.unanswered >= UNANSWERED_ORDERS {
            return Admission::Unanswered;
        }
        // Admitted at its slot, or a wake-up after it: counted at the slot,
        // so that waking late does not add to every spacing.
        let at = next.filter(|next| now.duration_since(*next).unwrap_or_default() < MIN_GAP).unwrap_or(now);
        self.in_flight += 1;
        if kind == Kind::Order {
            self.unanswered += 1;
            if self.starts.len() == KEPT_STARTS {
                self.starts.pop_front();
            }
            self.starts.push_back(at);
        }
        Admission::Go
    }

    /// The CA answered the new-order request of an admitted
    /// [`Kind::Order`] (once per order: at its answer, else at its release).
    pub(super) fn answered(&mut self) {
        self.unanswered = self.unanswered.saturating_sub(1);
    }

    /// An exchange of `kind` admitted at `admitted` ended at `now` with
    /// `outcome`.
    pub(super) fn release(&mut self, admitted: SystemTime, kind: Kind, outcome: Outcome, now: SystemTime) -> Released {
        self.in_flight = self.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                self.clean += 1;
                if self.slow_start || self.clean >= self.limit {
                    self.limit = (self.limit + 1).min(MAX_LIMIT);
                    self.clean = 0;
                }
                Released::default()
            }
            Outcome::Failed => Released::default(),
            Outcome::Timeout => Released { backed_off: self.back_off(admitted, now), gated_for: Duration::ZERO },
            // A rate limit with a time: a rate to learn, not a load to
            // shed. The spacing and the gate slow us; halving the limit
            // too would leave too few exchanges in flight to reach the
            // CA's rate once orders take longer than a spacing each.
            Outcome::RateLimited(Some(at)) if at > now => {
                if kind == Kind::Order && self.throttled_at.is_none_or(|last| admitted >= last) {
                    self.learn_spacing(at.duration_since(now).unwrap_or_default(), now);
                    self.throttled_at = Some(now);
                }
                Released { backed_off: false, gated_for: self.close_until(at, now) }
            }
            Outcome::RateLimited(retry_after) | Outcome::Busy(retry_after) => {
                let backed_off = self.back_off(admitted, now);
                let gated_for = match retry_after.filter(|at| *at > now) {
                    Some(at) => self.close_until(at, now),
                    None => Duration::ZERO,
                };
                Released { backed_off, gated_for }
            }
        }
    }

    /// Halves the limit unless this exchange started before the last
    /// backoff (the same episode). Returns whether it halved.
    fn back_off(&mut self, admitted: SystemTime, now: SystemTime) -> bool {
        if self.backed_off_at.is_some_and(|at| admitted < at) {
            return false;
        }
        self.limit = (self.limit / 2).max(1);
        self.clean = 0;
        self.slow_start = false;
        self.backed_off_at = Some(now);
        true
    }

    /// Keeps the gate closed until `at` (never opens it earlier); returns
    /// how much longer it is closed than before.
    fn close_until(&mut self, at: SystemTime, now: SystemTime) -> Duration {
        let was = self.gated_until(now).unwrap_or(now);
        if at <= was {
            return Duration::ZERO;
        }
        self.gate = Some(at);
        at.duration_since(was).unwrap_or_default()
    }

    /// Learns the spacing from a new episode's 429 at `now`, whose
    /// `Retry-After` was `window` away (see the module's documentation).
    fn learn_spacing(&mut self, window: Duration, now: SystemTime) {
        let kept = self.spacing(now);
        let since = match self.spacing {
            // Since the previous 429, while remembered: the CA's rate.
            Some((_, previous)) if kept.is_some() => previous,
            // The first: within one `Retry-After` before it, burst and all.
            _ => now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let learned = self.per_admission(since, now).map(|s| s.mul_f64(1.0 + SPACING_MARGIN).min(MAX_SPACING));
        // With nothing learned (a lone exchange), what was is kept.
        let spacing = learned.or(kept);
        self.spacing = spacing.filter(|s| !s.is_zero()).map(|s| (s, now));
    }

    /// The time from `since` to `now` over the exchanges admitted in it,
    /// less one (the one refused at `now`): what one admission is worth.
    fn per_admission(&self, since: SystemTime, now: SystemTime) -> Option<Duration> {
        // Admissions older than those kept are not counted: then only the
        // time the kept ones span.
        let since = match self.starts.front() {
            Some(oldest) if self.starts.len() == KEPT_STARTS && *oldest > since => *oldest - Duration::from_nanos(1),
            _ => since,
        };
        let admitted = self.starts.iter().filter(|t| **t > since).count();
        let allowed = u32::try_from(admitted.saturating_sub(1)).ok().filter(|n| *n > 0)?;
        Some(now.duration_since(since).unwrap_or_default() / allowed)
    }
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod tests;
