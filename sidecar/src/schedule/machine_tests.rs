use super::*;
use crate::schedule::Why;

use crate::schedule::test_time::{at, t0, DAYS, HOUR, MIN};

fn plain() -> Policy {
    Policy::default()
}

fn transient(message: &str) -> Failure {
    Failure { message: message.to_owned(), ..Failure::default() }
}

fn renew_at(machine: &Machine) -> SystemTime {
    match machine.state() {
        State::Valid { renew_at, .. } => *renew_at,
        other => panic!("not valid: {other:?}"),
    }
}

fn backoff_next(machine: &Machine) -> (u32, SystemTime) {
    match machine.state() {
        State::Backoff { attempt, next, .. } => (*attempt, *next),
        other => panic!("not backing off: {other:?}"),
    }
}

#[test]
fn new_certificate_is_ordered_then_valid_until_a_third_is_left() {
    let mut m = Machine::new(plain());
    assert_eq!(m.state(), &State::Due { why: Why::NotIssued });
    assert_eq!(m.next_action(t0()), Action::Order);
    m.order_started(t0());
    assert_eq!(m.state(), &State::Ordering { started: t0() });
    assert_eq!(m.next_action(at(HOUR)), Action::Idle);
    m.issued(t0(), at(90 * DAYS), at(MIN), 0.0);
    assert_eq!(
        m.state(),
        &State::Valid {
            not_before: t0(),
            not_after: at(90 * DAYS),
            renew_at: at(60 * DAYS),
            why: Why::Lifetime { short: false },
            ari_poll_at: None,
        }
    );
    assert_eq!(m.next_action(at(DAYS)), Action::WaitUntil(at(60 * DAYS)));
    assert_eq!(m.next_action(at(60 * DAYS)), Action::Order);
    assert_eq!(m.last_good(), Some((t0(), at(90 * DAYS))));
}

#[test]
fn six_day_certificate_renews_at_half_life() {
    let m = Machine::with_certificate(plain(), t0(), at(6 * DAYS), at(HOUR), 0.0);
    assert_eq!(renew_at(&m), at(3 * DAYS));
    let m = Machine::with_certificate(plain(), t0(), at(6 * DAYS), at(3 * DAYS), 0.0);
    assert_eq!(m.state(), &State::Due { why: Why::Lifetime { short: true } });
}

#[test]
fn stored_certificates_past_renewal_or_expiry_are_due() {
    let m = Machine::with_certificate(plain(), t0(), at(90 * DAYS), at(61 * DAYS), 0.0);
    assert_eq!(m.state(), &State::Due { why: Why::Lifetime { short: false } });
    let m = Machine::with_certificate(plain(), t0(), at(90 * DAYS), at(90 * DAYS), 0.0);
    assert_eq!(m.state(), &State::Due { why: Why::Expired });
    assert_eq!(m.last_good(), Some((t0(), at(90 * DAYS))));
}

#[test]
fn renew_before_policy_overrides_the_lifetime_rule() {
    let days7 = Policy { renew_before: Some("7d".parse().unwrap()), ari: false };
    let m = Machine::with_certificate(days7, t0(), at(90 * DAYS), at(DAYS), 0.0);
    assert_eq!(renew_at(&m), at(83 * DAYS));
    let half = Policy { renew_before: Some("50%".parse().unwrap()), ari: false };
    let m = Machine::with_certificate(half, t0(), at(90 * DAYS), at(DAYS), 0.0);
    assert_eq!(renew_at(&m), at(45 * DAYS));
    let too_long = Policy { renew_before: Some("100d".parse().unwrap()), ari: false };
    let mut m = Machine::new(too_long);
    m.issued(t0(), at(90 * DAYS), t0(), 0.0);
    assert_eq!(renew_at(&m), at(45 * DAYS), "not shorter than the lifetime: half-life, no loop");
}

#[test]
fn renewal_is_spread_by_up_to_an_hour() {
    let mut m = Machine::new(plain());
    m.issued(t0(), at(90 * DAYS), t0(), 0.5);
    assert_eq!(renew_at(&m), at(60 * DAYS - 30 * MIN));
    // 1% of six days is 86.4 min, capped at an hour.
    let m = Machine::with_certificate(plain(), t0(), at(6 * DAYS), t0(), 0.999);
    assert!(renew_at(&m) < at(3 * DAYS) && renew_at(&m) >= at(3 * DAYS - HOUR));
}

#[test]
fn ari_polls_first_when_the_ca_has_it() {
    let ari = Policy { renew_before: None, ari: true };
    let m = Machine::with_certificate(ari, t0(), at(90 * DAYS), at(DAYS), 0.0);
    assert_eq!(m.next_action(at(DAYS)), Action::PollAri);
    let mut m = Machine::new(ari);
    m.order_started(t0());
    m.issued(t0(), at(90 * DAYS), at(MIN), 0.0);
    assert_eq!(m.next_action(at(MIN)), Action::PollAri);
}

#[test]
fn fresh_certificate_already_due_is_not_reordered_for_an_hour() {
    let mut m = Machine::new(plain());
    m.issued(t0(), at(6 * DAYS), at(5 * DAYS), 0.0);
    assert_eq!(m.next_action(at(5 * DAYS)), Action::WaitUntil(at(5 * DAYS + HOUR)));
}

#[test]
fn backoff_grows_over_five_failures() {
    let mut m = Machine::new(plain());
    let mut now = t0();
    let mut delays = Vec::new();
    for expected_attempt in 1..=5 {
        assert_eq!(m.next_action(now), Action::Order);
        m.order_started(now);
        m.failed(&transient("connection refused"), now, 0.0);
        let (attempt, next) = backoff_next(&m);
        assert_eq!(attempt, expected_attempt);
        assert_eq!(m.next_action(now), Action::WaitUntil(next));
        delays.push(next.duration_since(now).unwrap().as_secs());
        now = next;
    }
    assert_eq!(delays, [MIN, 10 * MIN, 100 * MIN, DAYS, DAYS]);
}

#[test]
fn jitter_adds_up_to_ten_percent() {
    let mut m = Machine::new(plain());
    m.failed(&transient("x"), t0(), 0.5);
    assert_eq!(backoff_next(&m).1, at(63));
}

#[test]
fn backoff_is_capped_before_expiry_while_a_retry_can_save_the_certificate() {
    // Expires in 90 minutes: the third attempt's 100 min would pass expiry.
    let not_after = at(90 * MIN);
    let mut m = Machine::with_certificate(plain(), at(90 * MIN) - Duration::from_secs(6 * DAYS), not_after, t0(), 0.0);
    assert!(matches!(m.state(), State::Due { .. }));
    m.failed(&transient("a"), t0(), 0.0);
    m.failed(&transient("b"), t0(), 0.0);
    assert_eq!(backoff_next(&m), (2, at(10 * MIN)), "under the cap: unchanged");
    m.failed(&transient("c"), t0(), 0.0);
    assert_eq!(backoff_next(&m), (3, at(30 * MIN)), "capped at not_after - 1h");
    m.failed(&transient("d"), t0(), 0.0);
    assert_eq!(backoff_next(&m), (4, at(DAYS)), "from the fourth attempt, no cap");

    // Less than the margin left: the cap would be in the past, so none.
    let mut m = Machine::with_certificate(plain(), t0(), at(6 * DAYS), at(6 * DAYS - 30 * MIN), 0.0);
    for _ in 0..3 {
        m.failed(&transient("x"), at(6 * DAYS - 30 * MIN), 0.0);
    }
    assert_eq!(backoff_next(&m).1, at(6 * DAYS - 30 * MIN + 100 * MIN));
}

#[test]
fn retry_after_is_honoured_on_failure() {
    let mut m = Machine::new(plain());
    let failure = Failure { retry_after: Some(at(2 * HOUR)), ..transient("503") };
    m.failed(&failure, t0(), 0.0);
    assert_eq!(backoff_next(&m), (1, at(2 * HOUR)));
    // An earlier Retry-After does not shorten our own backoff.
    let failure = Failure { retry_after: Some(at(MIN)), ..transient("503") };
    m.failed(&failure, t0(), 0.0);
    assert_eq!(backoff_next(&m), (2, at(10 * MIN)));
    // The CA's Retry-After beats the expiry cap.
    let mut m = Machine::with_certificate(plain(), t0(), at(6 * DAYS), at(6 * DAYS - 90 * MIN), 0.0);
    let failure = Failure { retry_after: Some(at(6 * DAYS)), ..transient("503") };
    m.failed(&failure, at(6 * DAYS - 90 * MIN), 0.0);
    assert_eq!(backoff_next(&m).1, at(6 * DAYS));
}

#[test]
fn rate_limited_failure_waits_at_least_an_hour() {
    let mut m = Machine::new(plain());
    let failure = Failure { rate_limited: true, ..transient("too many orders") };
    m.failed(&failure, t0(), 0.0);
    assert!(backoff_next(&m).1 >= at(HOUR));
    // Even close to expiry, where the cap would pull a plain failure earlier.
    let mut m = Machine::with_certificate(plain(), t0(), at(6 * DAYS), at(6 * DAYS - 90 * MIN), 0.0);
    m.failed(&failure, at(6 * DAYS - 90 * MIN), 0.0);
    assert_eq!(backoff_next(&m).1, at(6 * DAYS - 30 * MIN));
}

#[test]
fn backoff_leads_to_a_new_order_and_success_resets_attempts() {
    let mut m = Machine::new(plain());
    m.order_started(t0());
    m.failed(&transient("x"), t0(), 0.0);
    assert_eq!(m.next_action(at(59)), Action::WaitUntil(at(MIN)));
    assert_eq!(m.next_action(at(MIN)), Action::Order);
    m.order_started(at(MIN));
    m.issued(at(MIN), at(MIN + 90 * DAYS), at(2 * MIN), 0.0);
    m.order_started(at(61 * DAYS));
    m.failed(&transient("y"), at(61 * DAYS), 0.0);
    assert_eq!(backoff_next(&m).0, 1);
}

#[test]
fn permanent_failure_stays_failed_until_forced() {
    let mut m = Machine::with_certificate(plain(), t0(), at(90 * DAYS), at(61 * DAYS), 0.0);
    m.order_started(at(61 * DAYS));
    m.failed(&Failure { permanent: true, ..transient("CAA forbids this CA") }, at(61 * DAYS), 0.0);
    assert_eq!(m.state(), &State::Failed { error: "CAA forbids this CA".to_owned() });
    assert_eq!(m.next_action(at(100 * DAYS)), Action::Idle);
    m.order_started(at(62 * DAYS));
    m.failed(&transient("ignored"), at(62 * DAYS), 0.0);
    assert!(matches!(m.state(), State::Failed { .. }));
    assert_eq!(m.last_good(), Some((t0(), at(90 * DAYS))), "the deployed certificate is remembered");
    m.force();
    assert_eq!(m.state(), &State::Due { why: Why::Forced });
    assert_eq!(m.next_action(at(62 * DAYS)), Action::Order);
}

#[test]
fn force_and_config_change_work_from_any_state() {
    let mut m = Machine::with_certificate(plain(), t0(), at(90 * DAYS), at(DAYS), 0.0);
    m.force();
    assert_eq!(m.state(), &State::Due { why: Why::Forced });
    m.failed(&transient("x"), t0(), 0.0);
    m.failed(&transient("x"), t0(), 0.0);
    m.config_changed();
    assert_eq!(m.state(), &State::Due { why: Why::ConfigChanged });
    m.failed(&transient("x"), t0(), 0.0);
    assert_eq!(backoff_next(&m).0, 1, "a config change forgets failures");
}

#[test]
fn describe_reads_well() {
    let mut m = Machine::with_certificate(plain(), t0(), at(90 * DAYS), at(DAYS), 0.0);
    assert_eq!(
        m.describe(at(DAYS)),
        "valid until 2027-02-26T12:00:00Z; renew at 2027-01-27T12:00:00Z (one third of the lifetime left)"
    );
    m.failed(&transient("a"), t0(), 0.0);
    m.failed(&transient("dns timeout"), t0(), 0.0);
    assert_eq!(m.describe(t0()), "backing off (attempt 2) until 2026-11-28T12:10:00Z: dns timeout");
    m.failed(&Failure { permanent: true, ..transient("rejected identifier") }, t0(), 0.0);
    assert_eq!(m.describe(t0()), "failed: rejected identifier (run `proxy-acme renew NAME --force`)");
    assert_eq!(m.describe_for("web", t0()), "failed: rejected identifier (run `proxy-acme renew web --force`)");
    m.force();
    assert_eq!(m.describe(t0()), "order due now (renewal forced by an operator)");
    m.order_started(t0());
    assert_eq!(m.describe(t0()), "ordering since 2026-11-28T12:00:00Z");
    let ari = Machine::with_certificate(Policy { renew_before: None, ari: true }, t0(), at(90 * DAYS), t0(), 0.0);
    assert!(ari.describe(t0()).ends_with("; next ARI check at 2026-11-28T12:00:00Z"), "{}", ari.describe(t0()));
}

#[test]
fn a_deferred_order_waits_without_counting_a_failure() {
    let now = t0();
    let mut m = Machine::new(Policy::default());
    m.order_started(now);
    m.deferred(at(2), "replica-b is ordering it");
    assert_eq!(m.failures(), 0);
    assert_eq!(m.next_action(at(1)), Action::WaitUntil(at(2)));
    assert_eq!(m.next_action(at(2)), Action::Order);
    for i in 0..10 {
        m.deferred(at(3 + i), "still held");
    }
    assert_eq!(m.failures(), 0, "waiting on another replica never becomes a backoff");
}

#[test]
fn a_backoff_recorded_by_another_replica_is_honoured() {
    let mut m = Machine::new(Policy::default());
    m.restore_backoff(3, at(600), "CA down", at(0));
    assert_eq!(m.failures(), 3);
    assert_eq!(m.next_action(at(10)), Action::WaitUntil(at(600)));
    // One already over changes nothing.
    let mut fresh = Machine::new(Policy::default());
    fresh.restore_backoff(3, at(5), "old", at(10));
    assert_eq!(fresh.next_action(at(10)), Action::Order);
}

#[test]
fn a_backoff_after_an_outage_ends_when_the_ca_answers_again_but_not_before_its_retry_after() {
    let policy = Policy::default();
    let outage = Failure { outage: true, ..transient("connection refused") };
    let mut m = Machine::new(policy);
    m.order_started(t0());
    m.failed(&outage, t0(), 0.0);
    m.order_started(at(MIN));
    m.failed(&outage, at(MIN), 0.0);
    let State::Backoff { next, .. } = *m.state() else { panic!("{:?}", m.state()) };
    assert!(next >= at(10 * MIN), "second backoff: {next:?}");
    assert!(m.ca_back(at(3 * MIN)), "the CA is back: the backoff should end");
    assert_eq!(m.next_action(at(3 * MIN)), Action::Order);
    assert!(!m.ca_back(at(3 * MIN)), "once");

    // The CA's Retry-After stays a floor.
    let mut m = Machine::new(policy);
    m.failed(&outage, t0(), 0.0);
    m.failed(&Failure { retry_after: Some(at(6 * MIN)), ..outage.clone() }, at(MIN), 0.0);
    assert!(m.ca_back(at(2 * MIN)));
    assert_eq!(m.next_action(at(2 * MIN)), Action::WaitUntil(at(6 * MIN)));

    // Other failures keep their backoff.
    let mut m = Machine::new(policy);
    m.failed(&transient("authorization for a.test is Invalid"), t0(), 0.0);
    assert!(!m.ca_back(at(1)));
    let mut m = Machine::new(policy);
    m.failed(&Failure { rate_limited: true, ..outage }, t0(), 0.0);
    assert!(!m.ca_back(at(1)), "a rate limit is no outage");
}
