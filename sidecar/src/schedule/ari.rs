//! ACME Renewal Information (RFC 9773): the CA suggests a renewal window and
//! the client renews at a uniformly random time inside it.

use std::time::{Duration, SystemTime};

use super::{add, rfc3339, unit, Machine, State, Why, DAY, HOUR, MINUTE};

/// Poll again after this when the CA gave no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(6 * 3600);
/// `Retry-After` is clamped to `[MIN_POLL, MAX_POLL]`.
const MIN_POLL: Duration = MINUTE;
const MAX_POLL: Duration = DAY;
/// Poll again after this when the answer was malformed.
const MALFORMED_POLL: Duration = Duration::from_secs(6 * 3600);
/// Poll again after this when the endpoint failed.
const UNAVAILABLE_POLL: Duration = HOUR;

/// What the CA's `renewalInfo` endpoint said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AriAnswer {
    /// The suggested window `[start, end)` and the CA's `Retry-After`.
    Window { start: SystemTime, end: SystemTime, retry_after: Option<Duration> },
    /// An answer that does not parse or makes no sense.
    Malformed(String),
    /// No answer (network error, 5xx, 404 for an unknown certificate).
    Unavailable(String),
    /// An error answer with the CA's `Retry-After`: not asked again before
    /// `until` (nor before the hour of [`AriAnswer::Unavailable`]).
    Later { problem: String, until: SystemTime },
}

impl Machine {
    /// Takes the CA's renewal information into account; returns a warning to
    /// log, if any. Only meaningful in `Valid`; ignored (`None`) elsewhere.
    ///
    /// A window: renew at `start + (end - start) * jitter`, or at once when
    /// that has passed; the same window as last time keeps the time already
    /// drawn (re-drawing at every poll would drift towards the window's
    /// start). The next poll is at `now + Retry-After`, clamped to 1 min to
    /// 24 h, 6 h when absent. A window starting after `not_after` is followed
    /// (the RFC says to) with a warning. A window with `end <= start` counts
    /// as malformed.
    ///
    /// Malformed or unavailable: the lifetime (or `renew_before`) rule's time
    /// stays or comes back, spread with `jitter`; the next poll is in 6 h
    /// (malformed) or 1 h (unavailable), or at the CA's `Retry-After` when
    /// that is later (at most 24 h).
    pub fn ari_answer(&mut self, answer: &AriAnswer, now: SystemTime, jitter: f64) -> Option<String> {
        if !matches!(self.state, State::Valid { .. }) {
            return None;
        }
        match answer {
            AriAnswer::Window { start, end, .. } if end <= start => {
                let problem = format!("the window ends ({}) before it starts ({})", rfc3339(*end), rfc3339(*start));
                Some(self.ari_fallback(malformed(&problem), MALFORMED_POLL, now, jitter))
            }
            AriAnswer::Window { start, end, retry_after } => self.ari_window(*start, *end, *retry_after, now, jitter),
            AriAnswer::Malformed(problem) => Some(self.ari_fallback(malformed(problem), MALFORMED_POLL, now, jitter)),
            AriAnswer::Unavailable(problem) => Some(self.ari_fallback(
                format!("renewal information unavailable: {problem}"),
                UNAVAILABLE_POLL,
                now,
                jitter,
            )),
            AriAnswer::Later { problem, until } => {
                let asked = until.duration_since(now).unwrap_or_default();
                let wait = asked.clamp(UNAVAILABLE_POLL, MAX_POLL);
                Some(self.ari_fallback(format!("renewal information unavailable: {problem}"), wait, now, jitter))
            }
        }
    }

    /// The CA's directory does (or no longer does) advertise `renewalInfo`.
    /// Turning it on polls at once; turning it off forgets any ARI window and
    /// goes back to the rule's time (spread with `jitter`).
    pub fn set_ari(&mut self, ari: bool, now: SystemTime, jitter: f64) {
        self.policy.ari = ari;
        let rule = self.restore_rule(jitter);
        if let State::Valid { renew_at, why, ari_poll_at, .. } = &mut self.state {
            if ari {
                ari_poll_at.get_or_insert(now);
            } else {
                *ari_poll_at = None;
                if let Some((at, rule_why)) = rule {
                    (*renew_at, *why) = (at, rule_why);
                }
            }
        }
    }

    fn ari_window(
        &mut self,
        start: SystemTime,
        end: SystemTime,
        retry_after: Option<Duration>,
        now: SystemTime,
        jitter: f64,
    ) -> Option<String> {
        let State::Valid { not_after, renew_at, why, ari_poll_at, .. } = &mut self.state else {
            return None;
        };
        let same = matches!(why, Why::AriWindow { start: s, end: e } if *s == start && *e == end);
        if !same {
            let span = end.duration_since(start).unwrap_or(Duration::ZERO);
            // `[start, end)`: rounding must not land on `end` itself.
            let offset = span.mul_f64(unit(jitter)).min(span.saturating_sub(Duration::from_nanos(1)));
            let chosen = add(start, offset);
            *renew_at = chosen.max(now);
            *why = Why::AriWindow { start, end };
        }
        *ari_poll_at = Some(add(now, retry_after.unwrap_or(DEFAULT_POLL).clamp(MIN_POLL, MAX_POLL)));
        (start > *not_after).then(|| {
            format!(
                "the CA's renewal window {}–{} starts after the certificate expires at {}; following it",
                rfc3339(start),
                rfc3339(end),
                rfc3339(*not_after)
            )
        })
    }

    /// Keeps or restores the rule's renewal time and schedules the next poll;
    /// returns the warning.
    fn ari_fallback(&mut self, problem: String, wait: Duration, now: SystemTime, jitter: f64) -> String {
        let rule = self.restore_rule(jitter);
        let State::Valid { renew_at, why, ari_poll_at, .. } = &mut self.state else {
            return problem;
        };
        if let Some((at, rule_why)) = rule {
            (*renew_at, *why) = (at, rule_why);
        }
        let poll = add(now, wait);
        *ari_poll_at = Some(poll);
        format!("{problem}; renewing at {} ({why}); asking again at {}", rfc3339(*renew_at), rfc3339(poll))
    }

    /// The rule's time when the current one came from an ARI window (which
    /// must be replaced), `None` when the current time is the rule's already.
    fn restore_rule(&self, jitter: f64) -> Option<(SystemTime, Why)> {
        match &self.state {
            State::Valid { not_before, not_after, why: Why::AriWindow { .. }, .. } => {
                Some(self.rule(*not_before, *not_after, jitter))
            }
            _ => None,
        }
    }
}

fn malformed(problem: &str) -> String {
    format!("malformed renewal information from the CA: {problem}")
}

#[cfg(test)]
#[path = "ari_tests.rs"]
mod tests;
