use super::*;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200)
}

fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

#[test]
fn order_budget_refuses_the_301st_order_until_the_first_slot_frees() {
    let mut budget = OrderBudget::default();
    // 300 orders, one every 10 s from t0.
    for i in 0..300 {
        assert_eq!(budget.try_take(at(i * 10)), Ok(()), "order {i}");
    }
    assert_eq!(budget.remaining(at(2999)), 0);
    assert_eq!(budget.try_take(at(3000)), Err(at(3 * 3600)));
    assert_eq!(budget.try_take(at(3 * 3600 - 1)), Err(at(3 * 3600)));
    assert_eq!(budget.try_take(at(3 * 3600)), Ok(()));
    // The slot just taken is used; the next frees when the second order leaves.
    assert_eq!(budget.try_take(at(3 * 3600 + 1)), Err(at(3 * 3600 + 10)));
    assert_eq!(budget.try_take(at(3 * 3600 + 10)), Ok(()));
}

#[test]
fn order_budget_forgets_old_orders() {
    let mut budget = OrderBudget::new(2, Duration::from_secs(60));
    assert_eq!(budget.try_take(at(0)), Ok(()));
    assert_eq!(budget.try_take(at(1)), Ok(()));
    assert_eq!(budget.try_take(at(2)), Err(at(60)));
    assert_eq!(budget.remaining(at(1000)), 2);
    assert_eq!(budget.try_take(at(1000)), Ok(()));
    assert_eq!(budget.taken.len(), 1, "pruned");
}

#[test]
fn zero_budget_never_allows() {
    let mut budget = OrderBudget::new(0, Duration::from_secs(60));
    assert!(budget.try_take(t0()).is_err());
    assert_eq!(AuthzFailures::new(0, Duration::from_secs(60)).check("a.example", t0()), Err(at(60)));
}

#[test]
fn sixth_failed_authorization_in_an_hour_blocks_only_that_identifier() {
    let mut failures = AuthzFailures::default();
    for i in 0..5 {
        assert_eq!(failures.check("example.com", at(i * 60)), Ok(()), "before failure {i}");
        failures.record("example.com", at(i * 60));
    }
    assert_eq!(failures.check("example.com", at(300)), Err(at(3600)));
    assert_eq!(failures.check("EXAMPLE.com", at(300)), Err(at(3600)), "identifiers are case-insensitive");
    assert_eq!(failures.check("www.example.com", at(300)), Ok(()));
    assert_eq!(failures.check("example.com", at(3599)), Err(at(3600)));
    assert_eq!(failures.check("example.com", at(3600)), Ok(()));
}

#[test]
fn authz_failures_free_when_enough_have_expired() {
    let mut failures = AuthzFailures::new(2, Duration::from_secs(100));
    for t in [0, 10, 20, 30] {
        failures.record("a.example", at(t));
    }
    // Four inside the window, two allowed: three must leave, the third at 20 + 100.
    assert_eq!(failures.check("a.example", at(50)), Err(at(120)));
    failures.record("b.example", at(500));
    assert!(!failures.failures.contains_key("a.example"), "old identifiers are forgotten");
}
