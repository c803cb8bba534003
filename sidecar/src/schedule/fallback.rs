//! Issuer fallback for one certificate: which of its resolvers the next
//! order goes to. A pure state machine over injected time, beside the
//! [`Machine`](super::Machine) that says *when* to order.
//!
//! - An order fails at the resolver being tried: the fallback moves on to
//!   the next one when waiting will not fix it soon (a permanent error, a
//!   `Retry-After` beyond the patience, an outage longer than the
//!   patience, or `after_failures` failures in a row there).
//! - Moving on within a round orders again at once; after the last
//!   resolver the round starts over at the first, and the failure is the
//!   machine's to back off (permanent only when every resolver of the
//!   round failed for good).
//! - A success records which resolver issued the certificate (ARI and
//!   revocation go there) and, with `renewals = "prefer_first"`, sends the
//!   next order back to the first resolver.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::Failure;

/// When a certificate moves on to its next resolver, and where renewals go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSettings {
    /// Orders failed in a row at one resolver before the next is tried. A
    /// permanent error (a refused name, an unauthorized account) moves on
    /// at once.
    #[serde(default = "default_after_failures")]
    pub after_failures: u32,
    /// How long an outage or a rate limit may last before the next
    /// resolver is tried: a CA unreachable for longer, or asking to wait
    /// (`Retry-After`) beyond it, is given up for this order.
    #[serde(default = "default_patience_secs")]
    pub patience_secs: u64,
    /// Where renewals go after a fallback.
    #[serde(default)]
    pub renewals: Renewals,
}

/// Where a renewal goes after a certificate came from a later resolver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Renewals {
    /// Back to the first resolver (falling back again if it still fails).
    #[default]
    PreferFirst,
    /// To the resolver that issued the current certificate.
    Stick,
}

fn default_after_failures() -> u32 {
    2
}

fn default_patience_secs() -> u64 {
    3600
}

impl Default for FallbackSettings {
    fn default() -> Self {
        Self {
            after_failures: default_after_failures(),
            patience_secs: default_patience_secs(),
            renewals: Renewals::default(),
        }
    }
}

type Settings = FallbackSettings;

/// What the task does after a failed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Record the failure in the machine as it is (back off, or stop when
    /// permanent).
    BackOff(Failure),
    /// Order again now at resolver `to` (index into the certificate's
    /// resolvers); `why` says why `from` was given up.
    MoveOn { from: usize, to: usize, why: String },
}

/// One certificate's place in its list of resolvers.
#[derive(Debug, Clone)]
pub struct Fallback {
    settings: Settings,
    count: usize,
    /// Where the next order goes.
    next: usize,
    /// Which resolver issued the current certificate, if known.
    issued_by: Option<usize>,
    /// Failures in a row at `next`, and since when it has been failing.
    failures_here: u32,
    failing_since: Option<SystemTime>,
    /// Every resolver tried in this round failed for good.
    round_permanent: bool,
    /// Why the current certificate (or the resolver now tried) is not the
    /// first: the last move's reason.
    why: Option<String>,
}

impl Fallback {
    /// `count` resolvers (at least one); `issued_by`: the resolver that
    /// issued the stored certificate, if recorded.
    pub fn new(settings: Settings, count: usize, issued_by: Option<usize>) -> Self {
        let count = count.max(1);
        let issued_by = issued_by.filter(|&i| i < count);
        let next = match (settings.renewals, issued_by) {
            (Renewals::Stick, Some(i)) => i,
            _ => 0,
        };
        Self {
            settings,
            count,
            next,
            issued_by,
            failures_here: 0,
            failing_since: None,
            round_permanent: true,
            why: None,
        }
    }

    /// The resolver the next order goes to.
    pub fn next(&self) -> usize {
        self.next
    }

    /// The resolver that issued the current certificate (the first when
    /// not recorded): ARI and revocation go there.
    pub fn issued_by(&self) -> usize {
        self.issued_by.unwrap_or(0)
    }

    /// Why the last fallback happened, while it matters (until a success
    /// at the first resolver).
    pub fn why(&self) -> Option<&str> {
        self.why.as_deref()
    }

    /// An order at [`Self::next`] failed with `failure`.
    pub fn failed(&mut self, failure: &Failure, now: SystemTime) -> AfterFailure {
        self.failures_here = self.failures_here.saturating_add(1);
        let since = *self.failing_since.get_or_insert(now);
        self.round_permanent &= failure.permanent;
        let from = self.next;
        let why = (self.count > 1).then(|| self.give_up(failure, since, now)).flatten();
        let Some(why) = why else { return AfterFailure::BackOff(failure.clone()) };
        self.failures_here = 0;
        self.failing_since = None;
        self.next = (from + 1) % self.count;
        if self.next == 0 {
            // A whole round failed: the machine backs off, and the next
            // round starts over at the first resolver.
            let permanent = std::mem::replace(&mut self.round_permanent, true);
            self.why = Some(format!("every resolver failed; last: {why}"));
            return AfterFailure::BackOff(Failure { permanent, ..failure.clone() });
        }
        self.why = Some(why.clone());
        AfterFailure::MoveOn { from, to: self.next, why }
    }

    /// Why `failure` gives up the resolver being tried, if it does.
    fn give_up(&self, failure: &Failure, since: SystemTime, now: SystemTime) -> Option<String> {
        let patience = Duration::from_secs(self.settings.patience_secs);
        if failure.permanent {
            return Some(format!("permanent error: {}", failure.message));
        }
        if let Some(until) = failure.retry_after.filter(|&until| until > now + patience) {
            let wait = until.duration_since(now).unwrap_or_default().as_secs();
            return Some(format!(
                "the CA asks to wait {wait} s, beyond the patience of {} s: {}",
                patience.as_secs(),
                failure.message
            ));
        }
        let failing_for = now.duration_since(since).unwrap_or_default();
        if (failure.outage || failure.rate_limited) && failing_for >= patience {
            return Some(format!(
                "failing for {} s, beyond the patience of {} s: {}",
                failing_for.as_secs(),
                patience.as_secs(),
                failure.message
            ));
        }
        if self.failures_here >= self.settings.after_failures {
            return Some(format!("{} failures in a row; last: {}", self.failures_here, failure.message));
        }
        None
    }

    /// The order at [`Self::next`] succeeded: that resolver issued the
    /// current certificate.
    pub fn succeeded(&mut self) {
        let by = self.next;
        self.issued_by = Some(by);
        self.failures_here = 0;
        self.failing_since = None;
        self.round_permanent = true;
        if by == 0 {
            self.why = None;
        }
        if self.settings.renewals == Renewals::PreferFirst {
            self.next = 0;
        }
    }

    /// A certificate another replica stored, issued by resolver `by` if known.
    pub fn adopted(&mut self, by: Option<usize>) {
        self.issued_by = by.filter(|&i| i < self.count);
        if self.settings.renewals == Renewals::Stick {
            self.next = self.issued_by();
        }
    }
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod tests;
