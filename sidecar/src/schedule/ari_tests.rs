use super::*;
use crate::schedule::{Action, Failure, Policy};

use crate::schedule::test_time::{at, t0, DAYS, HOUR, MIN};

fn ari() -> Policy {
    Policy { renew_before: None, ari: true }
}

/// A 90-day certificate issued at t0, looked at one day later.
fn machine() -> Machine {
    Machine::with_certificate(ari(), t0(), at(90 * DAYS), at(DAYS), 0.0)
}

fn window(start: SystemTime, end: SystemTime, retry_after: Option<Duration>) -> AriAnswer {
    AriAnswer::Window { start, end, retry_after }
}

fn valid(m: &Machine) -> (SystemTime, Why, Option<SystemTime>) {
    match m.state() {
        State::Valid { renew_at, why, ari_poll_at, .. } => (*renew_at, *why, *ari_poll_at),
        other => panic!("not valid: {other:?}"),
    }
}

#[test]
fn renews_at_a_random_time_inside_the_window() {
    let (start, end) = (at(50 * DAYS), at(52 * DAYS));
    for (jitter, expected) in [(0.0, start), (0.5, at(51 * DAYS))] {
        let mut m = machine();
        assert_eq!(m.ari_answer(&window(start, end, None), at(DAYS), jitter), None);
        assert_eq!(valid(&m).0, expected, "jitter {jitter}");
        assert_eq!(valid(&m).1, Why::AriWindow { start, end });
    }
    let mut m = machine();
    m.ari_answer(&window(start, end, None), at(DAYS), 0.999);
    let chosen = valid(&m).0;
    assert!(chosen >= start && chosen < end && chosen > at(51 * DAYS + 23 * HOUR), "{chosen:?}");
    // Even jitter 1.0 (out of contract) stays inside [start, end).
    let mut m = machine();
    m.ari_answer(&window(start, end, None), at(DAYS), 1.0);
    assert!(valid(&m).0 < end);
}

#[test]
fn the_same_window_keeps_the_time_already_drawn() {
    let (start, end) = (at(50 * DAYS), at(52 * DAYS));
    let mut m = machine();
    m.ari_answer(&window(start, end, None), at(DAYS), 0.5);
    m.ari_answer(&window(start, end, None), at(DAYS + 6 * HOUR), 0.0);
    assert_eq!(valid(&m).0, at(51 * DAYS));
    m.ari_answer(&window(at(10 * DAYS), at(12 * DAYS), None), at(2 * DAYS), 0.0);
    assert_eq!(valid(&m).0, at(10 * DAYS), "a new window is drawn anew");
}

#[test]
fn a_window_in_the_past_renews_now() {
    let mut m = machine();
    let now = at(30 * DAYS);
    m.ari_answer(&window(at(2 * DAYS), at(3 * DAYS), None), now, 0.5);
    assert_eq!(valid(&m).0, now);
    assert_eq!(m.next_action(now), Action::Order);
}

#[test]
fn retry_after_sets_the_next_poll_clamped_to_a_minute_and_a_day() {
    let (start, end) = (at(50 * DAYS), at(52 * DAYS));
    let now = at(DAYS);
    for (retry_after, poll) in [
        (None, 6 * HOUR),
        (Some(Duration::from_secs(2 * HOUR)), 2 * HOUR),
        (Some(Duration::from_secs(5)), MIN),
        (Some(Duration::ZERO), MIN),
        (Some(Duration::from_secs(7 * DAYS)), DAYS),
    ] {
        let mut m = machine();
        m.ari_answer(&window(start, end, retry_after), now, 0.0);
        assert_eq!(valid(&m).2, Some(now + Duration::from_secs(poll)), "{retry_after:?}");
        assert_eq!(m.next_action(now), Action::WaitUntil(now + Duration::from_secs(poll)));
    }
}

#[test]
fn a_window_after_expiry_is_followed_with_a_warning() {
    let mut m = machine();
    let warning = m.ari_answer(&window(at(91 * DAYS), at(92 * DAYS), None), at(DAYS), 0.0).unwrap();
    assert!(warning.contains("after the certificate expires"), "{warning}");
    assert_eq!(valid(&m).0, at(91 * DAYS));
}

#[test]
fn an_inverted_window_is_malformed_and_the_lifetime_rule_returns() {
    let mut m = machine();
    m.ari_answer(&window(at(50 * DAYS), at(52 * DAYS), None), at(DAYS), 0.5);
    let warning = m.ari_answer(&window(at(52 * DAYS), at(50 * DAYS), None), at(2 * DAYS), 0.0).unwrap();
    assert!(warning.starts_with("malformed renewal information from the CA"), "{warning}");
    assert!(warning.contains("ends"), "{warning}");
    assert_eq!(valid(&m), (at(60 * DAYS), Why::Lifetime { short: false }, Some(at(2 * DAYS + 6 * HOUR))));
    // An empty window (end == start) too.
    let mut m = machine();
    assert!(m.ari_answer(&window(at(50 * DAYS), at(50 * DAYS), None), at(DAYS), 0.0).is_some());
    assert_eq!(valid(&m).0, at(60 * DAYS));
}

#[test]
fn a_malformed_answer_keeps_the_lifetime_rule() {
    let mut m = machine();
    let warning = m.ari_answer(&AriAnswer::Malformed("missing suggestedWindow".into()), at(DAYS), 0.0).unwrap();
    assert!(warning.contains("missing suggestedWindow"), "{warning}");
    assert_eq!(valid(&m), (at(60 * DAYS), Why::Lifetime { short: false }, Some(at(DAYS + 6 * HOUR))));
}

#[test]
fn an_unavailable_endpoint_asks_again_in_an_hour() {
    let mut m = machine();
    m.ari_answer(&window(at(50 * DAYS), at(52 * DAYS), None), at(DAYS), 0.0);
    let warning = m.ari_answer(&AriAnswer::Unavailable("HTTP 503".into()), at(2 * DAYS), 0.0).unwrap();
    assert!(warning.starts_with("renewal information unavailable: HTTP 503"), "{warning}");
    assert_eq!(valid(&m), (at(60 * DAYS), Why::Lifetime { short: false }, Some(at(2 * DAYS + HOUR))));
}

#[test]
fn an_error_answers_retry_after_is_honoured_when_later_than_the_hour() {
    let mut m = machine();
    let later = |hours: u64| AriAnswer::Later { problem: "HTTP 503".into(), until: at(2 * DAYS + hours * HOUR) };
    m.ari_answer(&later(5), at(2 * DAYS), 0.0);
    assert_eq!(valid(&m).2, Some(at(2 * DAYS + 5 * HOUR)), "the CA's five hours");
    m.ari_answer(&later(0), at(2 * DAYS), 0.0);
    assert_eq!(valid(&m).2, Some(at(2 * DAYS + HOUR)), "never sooner than the hour");
    m.ari_answer(&later(100), at(2 * DAYS), 0.0);
    assert_eq!(valid(&m).2, Some(at(3 * DAYS)), "at most a day");
}

#[test]
fn answers_outside_valid_are_ignored() {
    let mut m = Machine::new(ari());
    let answer = window(at(50 * DAYS), at(52 * DAYS), None);
    assert_eq!(m.ari_answer(&answer, t0(), 0.0), None);
    assert_eq!(m.state(), &State::Due { why: Why::NotIssued });
    m.failed(&Failure { message: "x".into(), ..Failure::default() }, t0(), 0.0);
    let before = m.clone();
    assert_eq!(m.ari_answer(&AriAnswer::Unavailable("x".into()), t0(), 0.0), None);
    assert_eq!(m, before);
}

#[test]
fn ari_can_be_turned_on_and_off() {
    let mut m = Machine::with_certificate(Policy::default(), t0(), at(90 * DAYS), at(DAYS), 0.0);
    assert_eq!(m.next_action(at(DAYS)), Action::WaitUntil(at(60 * DAYS)));
    m.set_ari(true, at(DAYS), 0.0);
    assert_eq!(m.next_action(at(DAYS)), Action::PollAri);
    m.ari_answer(&window(at(50 * DAYS), at(52 * DAYS), None), at(DAYS), 0.0);
    m.set_ari(false, at(2 * DAYS), 0.0);
    assert_eq!(valid(&m), (at(60 * DAYS), Why::Lifetime { short: false }, None));
    assert!(!m.policy().ari);
}
