use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::acme::AcmeError;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200)
}

fn ms(n: u64) -> SystemTime {
    t0() + Duration::from_millis(n)
}

/// Admits `n` exchanges at `at`; panics unless each goes.
fn admit_n(c: &mut Controller, n: u32, at: SystemTime) {
    for i in 0..n {
        assert_eq!(c.admit(at), Admission::Go, "exchange {i}");
    }
}

// === the limit ===

#[test]
fn a_new_ca_gets_the_initial_limit_and_no_more() {
    let mut c = Controller::default();
    admit_n(&mut c, INITIAL_LIMIT, t0());
    assert_eq!(c.admit(t0()), Admission::Full);
    assert_eq!(c.in_flight(), INITIAL_LIMIT);
}

#[test]
fn a_release_frees_a_place() {
    let mut c = Controller::default();
    admit_n(&mut c, INITIAL_LIMIT, t0());
    c.release(t0(), Outcome::Failed, ms(10));
    assert_eq!(c.admit(ms(10)), Admission::Go);
    assert_eq!(c.admit(ms(10)), Admission::Full);
}

#[test]
fn a_limits_worth_of_clean_completions_adds_one() {
    let mut c = Controller::default();
    for i in 0..INITIAL_LIMIT {
        assert_eq!(c.limit(), INITIAL_LIMIT, "after {i} completions");
        assert_eq!(c.admit(ms(u64::from(i))), Admission::Go);
        c.release(ms(u64::from(i)), Outcome::Success, ms(u64::from(i) + 1));
    }
    assert_eq!(c.limit(), INITIAL_LIMIT + 1);
    // The next step needs limit + 1 completions.
    for i in 0..=INITIAL_LIMIT {
        assert_eq!(c.limit(), INITIAL_LIMIT + 1);
        assert_eq!(c.admit(ms(100)), Admission::Go);
        c.release(ms(100), Outcome::Success, ms(101 + u64::from(i)));
    }
    assert_eq!(c.limit(), INITIAL_LIMIT + 2);
}

#[test]
fn growth_stops_at_the_cap() {
    let mut c = Controller::default();
    for i in 0..10_000_u64 {
        assert_eq!(c.admit(ms(i)), Admission::Go);
        c.release(ms(i), Outcome::Success, ms(i));
    }
    assert_eq!(c.limit(), MAX_LIMIT);
}

#[test]
fn other_failures_neither_grow_nor_shrink_the_limit() {
    let mut c = Controller::default();
    for i in 0..100 {
        assert_eq!(c.admit(ms(i)), Admission::Go);
        assert_eq!(c.release(ms(i), Outcome::Failed, ms(i)), Released::default());
    }
    assert_eq!(c.limit(), INITIAL_LIMIT);
}

#[test]
fn a_throttle_halves_the_limit_down_to_one() {
    let mut c = Controller::default();
    let mut limits = Vec::new();
    for i in 0..4_u64 {
        assert_eq!(c.admit(ms(i * 10)), Admission::Go);
        let released = c.release(ms(i * 10), Outcome::Busy(None), ms(i * 10 + 1));
        assert!(released.backed_off);
        limits.push(c.limit());
    }
    assert_eq!(limits, [2, 1, 1, 1]);
}

#[test]
fn a_time_out_halves_the_limit() {
    let mut c = Controller::default();
    assert_eq!(c.admit(t0()), Admission::Go);
    let released = c.release(t0(), Outcome::Timeout, ms(5));
    assert_eq!(released, Released { backed_off: true, gated_for: Duration::ZERO });
    assert_eq!(c.limit(), INITIAL_LIMIT / 2);
}

#[test]
fn throttles_of_one_episode_halve_once() {
    let mut c = Controller::default();
    admit_n(&mut c, 4, t0());
    // All four were in flight when the CA started refusing.
    assert!(c.release(t0(), Outcome::Busy(None), ms(10)).backed_off);
    for _ in 0..3 {
        assert!(!c.release(t0(), Outcome::Busy(None), ms(20)).backed_off);
    }
    assert_eq!(c.limit(), 2);
    // One admitted after the backoff halves it again.
    assert_eq!(c.admit(ms(30)), Admission::Go);
    assert!(c.release(ms(30), Outcome::Busy(None), ms(40)).backed_off);
    assert_eq!(c.limit(), 1);
}

#[test]
fn a_backoff_starts_the_count_of_clean_completions_over() {
    let mut c = Controller::default();
    for i in 0..3 {
        assert_eq!(c.admit(ms(i)), Admission::Go);
        c.release(ms(i), Outcome::Success, ms(i));
    }
    assert_eq!(c.admit(ms(10)), Admission::Go);
    c.release(ms(10), Outcome::Timeout, ms(11));
    assert_eq!(c.limit(), 2);
    assert_eq!(c.admit(ms(20)), Admission::Go);
    c.release(ms(20), Outcome::Success, ms(21));
    assert_eq!(c.limit(), 2, "one clean completion is not a limit's worth");
    assert_eq!(c.admit(ms(22)), Admission::Go);
    c.release(ms(22), Outcome::Success, ms(23));
    assert_eq!(c.limit(), 3);
}

// === the gate ===

#[test]
fn retry_after_closes_the_gate_for_everyone_until_then() {
    // A 503 with Retry-After: the gate without a learned spacing.
    let mut c = Controller::default();
    admit_n(&mut c, 2, t0());
    let until = ms(2_000);
    let released = c.release(t0(), Outcome::Busy(Some(until)), ms(100));
    assert_eq!(released, Released { backed_off: true, gated_for: Duration::from_millis(1_900) });
    assert_eq!(c.admit(ms(100)), Admission::Gated(until));
    assert_eq!(c.admit(ms(1_999)), Admission::Gated(until));
    assert_eq!(c.gated_until(ms(500)), Some(until));
    // The one still in flight finishes; the gate stays closed.
    c.release(t0(), Outcome::Success, ms(1_500));
    assert_eq!(c.admit(ms(1_500)), Admission::Gated(until));
    assert_eq!(c.admit(until), Admission::Go, "open at the time it named");
    assert_eq!(c.gated_until(until), None);
}

#[test]
fn a_later_retry_after_extends_the_gate_an_earlier_one_does_not_shorten_it() {
    let mut c = Controller::default();
    admit_n(&mut c, 3, t0());
    c.release(t0(), Outcome::Busy(Some(ms(5_000))), ms(10));
    let earlier = c.release(t0(), Outcome::Busy(Some(ms(3_000))), ms(20));
    assert_eq!(earlier.gated_for, Duration::ZERO);
    assert_eq!(c.admit(ms(3_000)), Admission::Gated(ms(5_000)));
    let later = c.release(t0(), Outcome::Busy(Some(ms(8_000))), ms(30));
    assert_eq!(later.gated_for, Duration::from_millis(3_000));
    assert_eq!(c.admit(ms(7_999)), Admission::Gated(ms(8_000)));
}

#[test]
fn a_retry_after_in_the_past_closes_nothing() {
    let mut c = Controller::default();
    assert_eq!(c.admit(t0()), Admission::Go);
    let released = c.release(t0(), Outcome::Busy(Some(ms(50))), ms(100));
    assert_eq!(released.gated_for, Duration::ZERO);
    assert_eq!(c.admit(ms(100)), Admission::Go);
}

#[test]
fn the_gate_comes_before_the_limit() {
    let mut c = Controller::default();
    admit_n(&mut c, INITIAL_LIMIT, t0());
    c.release(t0(), Outcome::Busy(Some(ms(1_000))), ms(1));
    // Two in flight of a limit of two (halved from four)... after the gate: full.
    assert_eq!(c.admit(ms(2)), Admission::Gated(ms(1_000)));
    assert_eq!(c.admit(ms(1_000)), Admission::Full);
}

// === the spacing ===

#[test]
fn a_throttle_with_retry_after_learns_the_cas_rate() {
    let mut c = Controller::default();
    // 11 exchanges in the second before the CA said "1 s": it allows 10
    // a second, so admissions are spaced by 100 ms plus the margin.
    let mut at = 0;
    for i in 0..11 {
        at = 100 + i * 90;
        assert_eq!(c.admit(ms(at)), Admission::Go);
        c.release(ms(at), Outcome::Success, ms(at + 1));
    }
    assert_eq!(c.admit(ms(at + 2)), Admission::Go);
    let now = ms(at + 3);
    c.release(ms(at + 2), Outcome::RateLimited(Some(now + Duration::from_secs(1))), now);
    let spacing = c.spacing(now).unwrap_or_default();
    // 12 admissions within the second before: 11 allowed.
    let expected = (Duration::from_secs(1) / 11).mul_f64(1.0 + SPACING_MARGIN);
    assert_eq!(spacing, expected);
    let open = now + Duration::from_secs(1);
    assert_eq!(c.admit(open), Admission::Go);
    assert_eq!(c.admit(open + spacing / 2), Admission::Spaced(open + spacing));
    assert_eq!(c.admit(open + spacing), Admission::Go);
}

#[test]
fn the_spacing_is_forgotten_after_its_memory() {
    let mut c = Controller::default();
    admit_n(&mut c, 3, t0());
    c.release(t0(), Outcome::RateLimited(Some(ms(1_000))), ms(1));
    assert!(c.spacing(ms(2)).is_some());
    assert!(c.spacing(ms(1) + SPACING_MEMORY - Duration::from_millis(1)).is_some());
    assert_eq!(c.spacing(ms(1) + SPACING_MEMORY), None);
}

#[test]
fn a_lone_exchange_teaches_no_spacing() {
    let mut c = Controller::default();
    assert_eq!(c.admit(t0()), Admission::Go);
    c.release(t0(), Outcome::RateLimited(Some(ms(3_600_000))), ms(1));
    assert_eq!(c.spacing(ms(2)), None);
}

#[test]
fn the_spacing_is_capped_and_only_widened() {
    let mut c = Controller::default();
    admit_n(&mut c, 2, t0());
    // Two exchanges within an hour's Retry-After: one an hour, capped.
    c.release(t0(), Outcome::RateLimited(Some(ms(3_600_000))), ms(1));
    assert_eq!(c.spacing(ms(2)), Some(MAX_SPACING));
    // A later throttle suggesting a narrower spacing keeps the wider one.
    let mut c = Controller::default();
    admit_n(&mut c, 3, t0());
    c.release(t0(), Outcome::RateLimited(Some(ms(1_000))), ms(1));
    let wide = c.spacing(ms(1)).unwrap_or_default();
    c.release(t0(), Outcome::RateLimited(Some(ms(1_000))), ms(2));
    assert_eq!(c.spacing(ms(2)), Some(wide));
}

#[test]
fn only_a_rate_limit_with_retry_after_teaches_a_spacing() {
    let mut c = Controller::default();
    admit_n(&mut c, 4, t0());
    c.release(t0(), Outcome::Timeout, ms(1));
    c.release(t0(), Outcome::RateLimited(None), ms(2));
    assert_eq!(c.spacing(ms(3)), None);
    assert_eq!(c.gated_until(ms(3)), None);
    // An overloaded CA (503) closes the gate but says nothing of a rate.
    c.release(t0(), Outcome::Busy(Some(ms(1_000))), ms(4));
    assert_eq!(c.spacing(ms(5)), None);
    assert_eq!(c.gated_until(ms(5)), Some(ms(1_000)));
}

// === outcomes of errors ===

fn problem(status: u16, kind: &str) -> AcmeError {
    AcmeError::Protocol(instant_acme::Error::Api(instant_acme::Problem {
        r#type: Some(format!("urn:ietf:params:acme:error:{kind}")),
        detail: None,
        status: Some(status),
        subproblems: Vec::new(),
    }))
}

#[test]
fn errors_map_to_outcomes() {
    let now = SystemTime::now();
    let until = now + Duration::from_secs(5);
    let ok: Result<(), AcmeError> = Ok(());
    assert_eq!(Outcome::of(&ok, 0, now), Outcome::Success);
    assert_eq!(Outcome::of(&ok, BAD_NONCE_BURST, now), Outcome::Busy(None), "a burst of refused nonces");
    assert_eq!(Outcome::of(&ok, BAD_NONCE_BURST - 1, now), Outcome::Success);
    let of = |e: AcmeError| Outcome::of(&Err::<(), _>(e), 0, now);
    assert_eq!(of(problem(429, "rateLimited")), Outcome::RateLimited(None));
    assert_eq!(of(problem(503, "serverInternal")), Outcome::Busy(None));
    let waited = of(AcmeError::CaSaidWait { source: Box::new(problem(429, "rateLimited")), until });
    let Outcome::RateLimited(Some(at)) = waited else { panic!("{waited:?}") };
    assert!(at.duration_since(until).unwrap_or_default() < Duration::from_secs(1), "{at:?} {until:?}");
    let unavailable = of(AcmeError::CaSaidWait { source: Box::new(problem(503, "serverInternal")), until });
    assert!(matches!(unavailable, Outcome::Busy(Some(_))), "{unavailable:?}");
    assert_eq!(of(AcmeError::Deadline { secs: 60, step: "creating the order" }), Outcome::Timeout);
    let timeout = crate::acme::bounds::CaRequestError::Timeout { what: "POST /order-plz".into(), secs: 30 };
    assert_eq!(of(AcmeError::Protocol(instant_acme::Error::Other(Box::new(timeout)))), Outcome::Timeout);
    assert_eq!(of(problem(400, "malformed")), Outcome::Failed);
    let ours = AcmeError::RateLimited("order budget used up".into());
    assert_eq!(of(ours), Outcome::Failed, "our own budget says nothing of the CA");
    let gated = AcmeError::CaSaidWait { source: Box::new(AcmeError::RateLimited("waiting".into())), until };
    assert_eq!(of(gated), Outcome::Failed, "nor does our own gate");
    assert_eq!(of(problem(500, "serverInternal")), Outcome::Failed);
    let invalid =
        AcmeError::Authorization { identifier: "a.test".into(), status: "Invalid".into(), detail: String::new() };
    assert_eq!(of(invalid), Outcome::Failed);
}

// === the async wrapper ===

#[derive(Debug)]
struct Wall;

impl Clock for Wall {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[tokio::test]
async fn permits_are_released_with_their_outcome_and_wake_the_next_waiter() {
    let pace = Arc::new(Pace::new("https://ca.test/dir", Arc::new(Wall)));
    let mut permits = Vec::new();
    for _ in 0..INITIAL_LIMIT {
        permits.push(pace.acquire(Duration::from_secs(5)).await.unwrap());
    }
    let waiter = {
        let pace = Arc::clone(&pace);
        tokio::spawn(async move { pace.acquire(Duration::from_secs(5)).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the limit holds it back");
    permits.pop().unwrap().finish(Outcome::Success);
    tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(pace.controller().in_flight(), INITIAL_LIMIT - 1);
    drop(permits);
    assert_eq!(pace.controller().in_flight(), 0, "dropped unfinished: released");
}

#[tokio::test]
async fn a_gate_holds_every_waiter_until_it_opens_or_fails_those_that_cannot_wait() {
    let pace = Arc::new(Pace::new("https://ca.test/dir", Arc::new(Wall)));
    let permit = pace.acquire(Duration::from_secs(5)).await.unwrap();
    let until = SystemTime::now() + Duration::from_millis(300);
    permit.finish(Outcome::Busy(Some(until)));
    // Cannot wait that long: told until when, at once.
    assert_eq!(pace.acquire(Duration::from_millis(10)).await.map(|_| ()), Err(Gated(until)));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pace = Arc::clone(&pace);
            tokio::spawn(async move {
                let permit = pace.acquire(Duration::from_secs(5)).await?;
                let at = SystemTime::now();
                permit.finish(Outcome::Success);
                Ok::<_, Gated>(at)
            })
        })
        .collect();
    for waiter in waiters {
        let at = tokio::time::timeout(Duration::from_secs(3), waiter).await.unwrap().unwrap().unwrap();
        assert!(at >= until, "admitted at {at:?}, before the gate opened at {until:?}");
    }
}

#[tokio::test]
async fn a_waiter_that_goes_away_passes_its_turn_on() {
    let pace = Arc::new(Pace::new("https://ca.test/dir", Arc::new(Wall)));
    let mut permits = Vec::new();
    for _ in 0..INITIAL_LIMIT {
        permits.push(pace.acquire(Duration::from_secs(5)).await.unwrap());
    }
    let first = {
        let pace = Arc::clone(&pace);
        tokio::spawn(async move { pace.acquire(Duration::from_secs(5)).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = {
        let pace = Arc::clone(&pace);
        tokio::spawn(async move { pace.acquire(Duration::from_secs(5)).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.abort();
    permits.pop().unwrap().finish(Outcome::Success);
    tokio::time::timeout(Duration::from_secs(2), second).await.unwrap().unwrap().unwrap();
}

#[test]
fn each_ca_has_its_own_pace_shared_by_its_resolvers() {
    let paces = Paces::new(Arc::new(Wall));
    let a = paces.of("https://a.test/dir");
    assert!(Arc::ptr_eq(&a, &paces.of("https://a.test/dir")));
    assert!(!Arc::ptr_eq(&a, &paces.of("https://b.test/dir")));
}
