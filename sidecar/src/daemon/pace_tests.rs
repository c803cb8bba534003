use std::time::{Duration, SystemTime};

use super::*;
use crate::acme::AcmeError;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200)
}

fn ms(n: u64) -> SystemTime {
    t0() + Duration::from_millis(n)
}

/// A test's admissions: each new order admitted is answered at once (it
/// is created), unless a test says otherwise.
trait AdmitAnswered {
    fn admit_answered(&mut self, now: SystemTime, kind: Kind) -> Admission;
}

impl AdmitAnswered for Controller {
    fn admit_answered(&mut self, now: SystemTime, kind: Kind) -> Admission {
        let admission = self.admit(now, kind);
        if admission == Admission::Go && kind == Kind::Order {
            self.answered();
        }
        admission
    }
}

/// The `i`-th admission time from `at`, one [`MIN_GAP`] apart.
fn gap(at: SystemTime, i: u32) -> SystemTime {
    at + MIN_GAP * i
}

/// Admits `n` exchanges from `at` on, one [`MIN_GAP`] apart; panics unless
/// each goes. Returns the time of the last.
fn admit_n(c: &mut Controller, n: u32, at: SystemTime) -> SystemTime {
    for i in 0..n {
        assert_eq!(c.admit_answered(gap(at, i), Kind::Order), Admission::Go, "exchange {i}");
    }
    gap(at, n.saturating_sub(1))
}

/// Halves the limit once (a time-out), ending the slow start.
fn slowed(c: &mut Controller, at: SystemTime) -> SystemTime {
    assert_eq!(c.admit_answered(at, Kind::Order), Admission::Go);
    assert!(c.release(at, Kind::Order, Outcome::Timeout, at).backed_off);
    at + MIN_GAP
}

// === the limit ===

#[test]
fn a_new_ca_gets_the_initial_limit_and_no_more() {
    let mut c = Controller::default();
    let last = admit_n(&mut c, INITIAL_LIMIT, t0());
    assert_eq!(c.admit_answered(last + MIN_GAP, Kind::Order), Admission::Full);
    assert_eq!(c.in_flight(), INITIAL_LIMIT);
}

#[test]
fn a_release_frees_a_place() {
    let mut c = Controller::default();
    admit_n(&mut c, INITIAL_LIMIT, t0());
    c.release(t0(), Kind::Order, Outcome::Failed, ms(100));
    assert_eq!(c.admit_answered(ms(100), Kind::Order), Admission::Go);
    assert_eq!(c.admit_answered(ms(200), Kind::Order), Admission::Full);
}

#[test]
fn a_late_wake_up_keeps_the_cadence() {
    let mut c = Controller::default();
    assert_eq!(c.admit_answered(t0(), Kind::Order), Admission::Go);
    // Woken 3 ms after its slot: the next slot is still two gaps from t0.
    assert_eq!(c.admit_answered(t0() + MIN_GAP + Duration::from_millis(3), Kind::Order), Admission::Go);
    assert_eq!(
        c.admit_answered(t0() + MIN_GAP * 2 - Duration::from_millis(1), Kind::Order),
        Admission::Spaced(t0() + MIN_GAP * 2)
    );
    // Much later than a gap: counted when it came.
    let late = t0() + Duration::from_secs(1);
    assert_eq!(c.admit_answered(late, Kind::Order), Admission::Go);
    assert_eq!(c.admit_answered(late + MIN_GAP / 2, Kind::Order), Admission::Spaced(late + MIN_GAP));
}

#[test]
fn admissions_are_a_gap_apart() {
    let mut c = Controller::default();
    assert_eq!(c.admit_answered(t0(), Kind::Order), Admission::Go);
    assert_eq!(c.admit_answered(t0(), Kind::Order), Admission::Spaced(t0() + MIN_GAP), "freed at the same instant");
    assert_eq!(c.admit_answered(t0() + MIN_GAP / 2, Kind::Order), Admission::Spaced(t0() + MIN_GAP));
    assert_eq!(c.admit_answered(t0() + MIN_GAP, Kind::Order), Admission::Go);
}

#[test]
fn until_slowed_down_each_clean_completion_adds_one() {
    let mut c = Controller::default();
    let mut at = t0();
    for i in 0..(MAX_LIMIT - INITIAL_LIMIT) {
        assert_eq!(c.limit(), INITIAL_LIMIT + i);
        assert_eq!(c.admit_answered(at, Kind::Order), Admission::Go);
        c.release(at, Kind::Order, Outcome::Success, at);
        at += MIN_GAP;
    }
    assert_eq!(c.limit(), MAX_LIMIT);
}

#[test]
fn once_slowed_down_a_limits_worth_of_clean_completions_adds_one() {
    let mut c = Controller::default();
    let mut at = slowed(&mut c, t0());
    let limit = INITIAL_LIMIT / 2;
    assert_eq!(c.limit(), limit);
    for i in 0..limit {
        assert_eq!(c.limit(), limit, "after {i} completions");
        assert_eq!(c.admit_answered(at, Kind::Order), Admission::Go);
        c.release(at, Kind::Order, Outcome::Success, at);
        at += MIN_GAP;
    }
    assert_eq!(c.limit(), limit + 1);
    // The next step needs limit + 1 completions.
    for _ in 0..=limit {
        assert_eq!(c.limit(), limit + 1);
        assert_eq!(c.admit_answered(at, Kind::Order), Admission::Go);
        c.release(at, Kind::Order, Outcome::Success, at);
        at += MIN_GAP;
    }
    assert_eq!(c.limit(), limit + 2);
}

#[test]
fn growth_stops_at_the_cap() {
    let mut c = Controller::default();
    for i in 0..10_000_u32 {
        assert_eq!(c.admit_answered(gap(t0(), i), Kind::Order), Admission::Go);
        c.release(gap(t0(), i), Kind::Order, Outcome::Success, gap(t0(), i));
    }
    assert_eq!(c.limit(), MAX_LIMIT);
}

#[test]
fn other_failures_neither_grow_nor_shrink_the_limit() {
    let mut c = Controller::default();
    for i in 0..100 {
        assert_eq!(c.admit_answered(gap(t0(), i), Kind::Order), Admission::Go);
        assert_eq!(c.release(gap(t0(), i), Kind::Order, Outcome::Failed, gap(t0(), i)), Released::default());
    }
    assert_eq!(c.limit(), INITIAL_LIMIT);
}

#[test]
fn a_throttle_halves_the_limit_down_to_one() {
    let mut c = Controller::default();
    let mut limits = Vec::new();
    for i in 0..4_u64 {
        assert_eq!(c.admit_answered(ms(i * 10), Kind::Order), Admission::Go);
        let released = c.release(ms(i * 10), Kind::Order, Outcome::Busy(None), ms(i * 10 + 1));
        assert!(released.backed_off);
        limits.push(c.limit());
    }
    assert_eq!(limits, [2, 1, 1, 1]);
}

#[test]
fn a_rate_limit_with_retry_after_gates_and_leaves_the_limit() {
    let mut c = Controller::default();
    let last = admit_n(&mut c, INITIAL_LIMIT, t0());
    let until = ms(2_000);
    let released = c.release(last, Kind::Order, Outcome::RateLimited(Some(until)), ms(100));
    assert_eq!(released, Released { backed_off: false, gated_for: Duration::from_millis(1_900) });
    assert_eq!(c.limit(), INITIAL_LIMIT);
    assert_eq!(c.admit_answered(ms(1_999), Kind::Order), Admission::Gated(until));
    // Without a time it says nothing of a rate: shed load.
    assert_eq!(c.admit_answered(until, Kind::Order), Admission::Go);
    assert!(c.release(until, Kind::Order, Outcome::RateLimited(None), ms(2_001)).backed_off);
    assert_eq!(c.limit(), INITIAL_LIMIT / 2);
}

#[test]
fn a_time_out_halves_the_limit() {
    let mut c = Controller::default();
    assert_eq!(c.admit_answered(t0(), Kind::Order), Admission::Go);
    let released = c.release(t0(), Kind::Order, Outcome::Timeout, ms(5));
    assert_eq!(released, Released { backed_off: true, gated_for: Duration::ZERO });
    assert_eq!(c.limit(), INITIAL_LIMIT / 2);
}

#[test]
fn throttles_of_one_episode_halve_once() {
    let mut c = Controller::default();
    admit_n(&mut c, 4, t0());
    // All four were in flight when the CA started refusing.
    assert!(c.release(t0(), Kind::Order, Outcome::Busy(None), ms(100)).backed_off);
    for _ in 0..3 {
        assert!(!c.release(t0(), Kind::Order, Outcome::Busy(None), ms(110)).backed_off);
    }
    assert_eq!(c.limit(), 2);
    // One admitted after the backoff halves it again.
    assert_eq!(c.admit_answered(ms(120), Kind::Order), Admission::Go);
    assert!(c.release(ms(120), Kind::Order, Outcome::Busy(None), ms(130)).backed_off);
    assert_eq!(c.limit(), 1);
}

#[test]
fn a_backoff_starts_the_count_of_clean_completions_over() {
    let mut c = Controller::default();
    let at = slowed(&mut c, t0());
    // Limit 2: one clean completion, then a time-out.
    assert_eq!(c.admit_answered(at, Kind::Order), Admission::Go);
    c.release(at, Kind::Order, Outcome::Success, at);
    assert_eq!(c.admit_answered(ms(100), Kind::Order), Admission::Go);
    c.release(ms(100), Kind::Order, Outcome::Timeout, ms(101));
    assert_eq!(c.limit(), 1);
    assert_eq!(c.admit_answered(ms(200), Kind::Order), Admission::Go);
    c.release(ms(200), Kind::Order, Outcome::Success, ms(201));
    assert_eq!(c.limit(), 2, "a limit's worth (one) of clean completions");
    assert_eq!(c.admit_answered(ms(300), Kind::Order), Admission::Go);
    c.release(ms(300), Kind::Order, Outcome::Success, ms(301));
    assert_eq!(c.limit(), 2, "one clean completion is not a limit's worth");
    assert_eq!(c.admit_answered(ms(400), Kind::Order), Admission::Go);
    c.release(ms(400), Kind::Order, Outcome::Success, ms(401));
    assert_eq!(c.limit(), 3);
}

// === the gate ===

#[test]
fn retry_after_closes_the_gate_for_everyone_until_then() {
    // A 503 with Retry-After: the gate without a learned spacing.
    let mut c = Controller::default();
    admit_n(&mut c, 2, t0());
    let until = ms(2_000);
    let released = c.release(t0(), Kind::Order, Outcome::Busy(Some(until)), ms(100));
    assert_eq!(released, Released { backed_off: true, gated_for: Duration::from_millis(1_900) });
    assert_eq!(c.admit_answered(ms(100), Kind::Order), Admission::Gated(until));
    assert_eq!(c.admit_answered(ms(1_999), Kind::Order), Admission::Gated(until));
    assert_eq!(c.gated_until(ms(500)), Some(until));
    // The one still in flight finishes; the gate stays closed.
    c.release(t0(), Kind::Order, Outcome::Success, ms(1_500));
    assert_eq!(c.admit_answered(ms(1_500), Kind::Order), Admission::Gated(until));
    assert_eq!(c.admit_answered(until, Kind::Order), Admission::Go, "open at the time it named");
    assert_eq!(c.gated_until(until), None);
}

#[test]
fn a_later_retry_after_extends_the_gate_an_earlier_one_does_not_shorten_it() {
    let mut c = Controller::default();
    admit_n(&mut c, 3, t0());
    c.release(t0(), Kind::Order, Outcome::Busy(Some(ms(5_000))), ms(100));
    let earlier = c.release(t0(), Kind::Order, Outcome::Busy(Some(ms(3_000))), ms(120));
    assert_eq!(earlier.gated_for, Duration::ZERO);
    assert_eq!(c.admit_answered(ms(3_000), Kind::Order), Admission::Gated(ms(5_000)));
    let later = c.release(t0(), Kind::Order, Outcome::Busy(Some(ms(8_000))), ms(130));
    assert_eq!(later.gated_for, Duration::from_millis(3_000));
    assert_eq!(c.admit_answered(ms(7_999), Kind::Order), Admission::Gated(ms(8_000)));
}

#[test]
fn a_retry_after_in_the_past_closes_nothing() {
    let mut c = Controller::default();
    assert_eq!(c.admit_answered(t0(), Kind::Order), Admission::Go);
    let released = c.release(t0(), Kind::Order, Outcome::Busy(Some(ms(50))), ms(100));
    assert_eq!(released.gated_for, Duration::ZERO);
    assert_eq!(c.admit_answered(ms(100), Kind::Order), Admission::Go);
}

#[test]
fn the_gate_comes_before_the_limit() {
    let mut c = Controller::default();
    admit_n(&mut c, INITIAL_LIMIT, t0());
    c.release(t0(), Kind::Order, Outcome::Busy(Some(ms(1_000))), ms(100));
    // Three in flight of a limit of two (halved from four)... after the gate: full.
    assert_eq!(c.admit_answered(ms(200), Kind::Order), Admission::Gated(ms(1_000)));
    assert_eq!(c.admit_answered(ms(1_000), Kind::Order), Admission::Full);
}

// === the spacing ===

/// Admits one exchange every `every_ms` from `from_ms`, each released
/// clean, until (not including) `until_ms`; returns how many.
fn steady(c: &mut Controller, from_ms: u64, every_ms: u64, until_ms: u64) -> u32 {
    let mut n = 0;
    let mut at = from_ms;
    while at < until_ms {
        assert_eq!(c.admit_answered(ms(at), Kind::Order), Admission::Go, "at {at} ms");
        c.release(ms(at), Kind::Order, Outcome::Success, ms(at + 1));
        at += every_ms;
        n += 1;
    }
    n
}

#[test]
fn new_orders_wait_for_the_answers_of_those_on_the_wire() {
    let mut c = Controller::default();
    for i in 0..UNANSWERED_ORDERS {
        assert_eq!(c.admit(gap(t0(), i), Kind::Order), Admission::Go, "order {i}");
    }
    let next = gap(t0(), UNANSWERED_ORDERS);
    assert_eq!(c.admit(next, Kind::Order), Admission::Unanswered, "the limit has room, the wire has not");
    assert_eq!(c.admit(next, Kind::Other), Admission::Go, "other exchanges are not held back");
    c.release(next, Kind::Other, Outcome::Failed, next);
    c.answered();
    assert_eq!(c.admit(next, Kind::Order), Admission::Go, "one answer, one more");
    assert_eq!(c.admit(gap(next, 1), Kind::Order), Admission::Unanswered);
}

#[test]
fn only_new_orders_are_spaced_and_teach_a_spacing() {
    let mut c = Controller::default();
    steady(&mut c, 0, 10, 500);
    assert_eq!(c.admit_answered(ms(500), Kind::Order), Admission::Go);
    let now = ms(501);
    c.release(ms(500), Kind::Order, Outcome::RateLimited(Some(ms(1_501))), now);
    let spacing = c.spacing(now).unwrap_or_default();
    assert!(spacing > MIN_GAP * 2, "{spacing:?}");
    // After the gate: an order, then an ARI poll only a gap later...
    assert_eq!(c.admit_answered(ms(1_501), Kind::Order), Admission::Go);
    let gap_later = ms(1_501) + MIN_GAP;
    assert_eq!(c.admit_answered(gap_later, Kind::Other), Admission::Go);
    assert_eq!(c.admit_answered(gap_later, Kind::Other), Admission::Go, "no gap between other exchanges");
    // ...but the next order a spacing after the last order.
    assert_eq!(c.admit_answered(gap_later + MIN_GAP, Kind::Order), Admission::Spaced(ms(1_501) + spacing));
    // An ARI poll refused 429 with Retry-After closes the gate, and
    // teaches nothing about orders.
    let later = ms(1_600);
    c.release(gap_later, Kind::Other, Outcome::RateLimited(Some(ms(2_600))), later);
    assert_eq!(c.spacing(later), Some(spacing));
    assert_eq!(c.admit_answered(later, Kind::Other), Admission::Gated(ms(2_600)));
}

#[test]
fn a_first_throttle_with_retry_after_learns_a_rate_from_its_window() {
    let mut c = Controller::default();
    // 11 exchanges in the second before the CA said "1 s": it allows 10
    // a second, so admissions are spaced by 100 ms plus the margin.
    steady(&mut c, 100, 90, 1_090);
    let at = 1_090;
    assert_eq!(c.admit_answered(ms(at), Kind::Order), Admission::Go);
    let now = ms(at + 3);
    c.release(ms(at), Kind::Order, Outcome::RateLimited(Some(now + Duration::from_secs(1))), now);
    let spacing = c.spacing(now).unwrap_or_default();
    // 12 admissions within the second before: 11 allowed.
    let expected = (Duration::from_secs(1) / 11).mul_f64(1.0 + SPACING_MARGIN);
    assert_eq!(spacing, expected);
    let open = now + Duration::from_secs(1);
    assert_eq!(c.admit_answered(open, Kind::Order), Admission::Go);
    assert_eq!(c.admit_answered(open + spacing / 2, Kind::Order), Admission::Spaced(open + spacing));
    assert_eq!(c.admit_answered(open + spacing, Kind::Order), Admission::Go);
}

#[test]
fn a_later_throttle_learns_the_rate_the_ca_refilled_since_the_previous() {
    // A CA with a burst of 20 and 10 a second: the first 429 comes after
    // 20 + 10 t at our 100 a second, and its window overstates the rate.
    let mut c = Controller::default();
    let n = steady(&mut c, 0, 10, 2_220);
    assert_eq!(n, 222);
    assert_eq!(c.admit_answered(ms(2_220), Kind::Order), Admission::Go);
    let first = ms(2_221);
    c.release(ms(2_220), Kind::Order, Outcome::RateLimited(Some(first + Duration::from_secs(1))), first);
    let too_narrow = c.spacing(first).unwrap_or_default();
    assert!(too_narrow < Duration::from_millis(20), "{too_narrow:?}");
    // After the gate, one every 20 ms (wider than that) for a second,
    // until the CA's budget is empty again.
    let open = first + Duration::from_secs(1);
    let from = open.duration_since(t0()).unwrap_or_default().as_millis() as u64;
    let accepted = steady(&mut c, from, 20, from + 1_000);
    let at = from + 1_000;
    assert_eq!(c.admit_answered(ms(at), Kind::Order), Admission::Go);
    let second = ms(at + 1);
    c.release(ms(at), Kind::Order, Outcome::RateLimited(Some(second + Duration::from_secs(1))), second);
    // `accepted` in the two seconds between the two 429s: the CA's rate,
    // narrower or wider than what the first window said.
    let between = second.duration_since(first).unwrap_or_default();
    let expected = (between / accepted).mul_f64(1.0 + SPACING_MARGIN);
    assert_eq!(c.spacing(second), Some(expected));
}

#[test]
fn only_a_new_episode_teaches_a_spacing() {
    let mut c = Controller::default();
    steady(&mut c, 0, 10, 500);
    let last = admit_n(&mut c, 3, ms(500));
    let now = last + Duration::from_millis(1);
    c.release(ms(500), Kind::Order, Outcome::RateLimited(Some(now + Duration::from_secs(1))), now);
    let learned = c.spacing(now);
    assert!(learned.is_some());
    // The other two were on the wire already: the same episode.
    let later = now + Duration::from_millis(2);
    c.release(ms(500), Kind::Order, Outcome::RateLimited(Some(later + Duration::from_secs(1))), later);
    c.release(ms(500), Kind::Order, Outcome::RateLimited(Some(later + Duration::from_secs(1))), later);
    assert_eq!(c.spacing(later), learned);
}

#[test]
fn the_spacing_is_forgotten_after_its_memory() {
    let mut c = Controller::default();
    admit_n(&mut c, 3, t0());
    c.release(t0(), Kind::Order, Outcome::RateLimited(Some(ms(1_000))), ms(100));
    assert!(c.spacing(ms(101)).is_some());
    assert!(c.spacing(ms(100) + SPACING_MEMORY - Duration::from_millis(1)).is_some());
    assert_eq!(c.spacing(ms(100) + SPACING_MEMORY), None);
}

#[test]
fn a_lone_exchange_teaches_no_spacing() {
    let mut c = Controller::default();
    assert_eq!(c.admit_answered(t0(), Kind::Order), Admission::Go);
    c.release(t0(), Kind::Order, Outcome::RateLimited(Some(ms(3_600_000))), ms(1));
    assert_eq!(c.spacing(ms(2)), None);
}

#[test]
fn the_spacing_is_capped() {
    let mut c = Controller::default();
    admit_n(&mut c, 2, t0());
    // Two exchanges within an hour's Retry-After: one an hour, capped.
    c.release(t0(), Kind::Order, Outcome::RateLimited(Some(ms(3_600_000))), ms(100));
    assert_eq!(c.spacing(ms(101)), Some(MAX_SPACING));
}

#[test]
fn only_a_rate_limit_with_retry_after_teaches_a_spacing() {
    let mut c = Controller::default();
    let last = admit_n(&mut c, 4, t0());
    c.release(t0(), Kind::Order, Outcome::Timeout, last);
    for _ in 0..3 {
        c.release(t0(), Kind::Order, Outcome::Failed, last);
    }
    // Each of these was admitted after the last backoff: a new episode.
    let mut at = last;
    for outcome in [Outcome::RateLimited(None), Outcome::Busy(Some(ms(1_000)))] {
        at += MIN_GAP;
        assert_eq!(c.admit_answered(at, Kind::Order), Admission::Go);
        assert!(c.release(at, Kind::Order, outcome, at).backed_off);
    }
    assert_eq!(c.spacing(at), None);
    // An overloaded CA (503) closes the gate but says nothing of a rate.
    assert_eq!(c.gated_until(at), Some(ms(1_000)));
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
