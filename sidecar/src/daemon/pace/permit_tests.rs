//! The async side of the pace: permits, wake-ups, gates, answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::super::{Kind, Outcome, INITIAL_LIMIT, UNANSWERED_ORDERS};
use super::*;

/// A pace on the wall clock, for a CA no one has asked yet.
fn new_pace() -> Arc<Pace> {
    Arc::new(Pace::new("https://ca.test/dir", Arc::new(Wall)))
}

/// Every place of a new CA's initial limit, each new order answered.
async fn all_places(pace: &Arc<Pace>) -> Vec<Permit> {
    let mut permits = Vec::new();
    for _ in 0..INITIAL_LIMIT {
        let permit = pace.acquire(Duration::from_secs(5), Kind::Order).await.unwrap();
        permit.answer().given();
        permits.push(permit);
    }
    permits
}

/// A new order waiting for its place, in a task of its own.
fn waiter(pace: &Arc<Pace>) -> tokio::task::JoinHandle<Result<Permit, Gated>> {
    let pace = Arc::clone(pace);
    tokio::spawn(async move { pace.acquire(Duration::from_secs(5), Kind::Order).await })
}

#[derive(Debug)]
struct Wall;

impl Clock for Wall {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[tokio::test]
async fn permits_are_released_with_their_outcome_and_wake_the_next_waiter() {
    let pace = new_pace();
    let mut permits = all_places(&pace).await;
    let waiter = waiter(&pace);
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
    let pace = new_pace();
    let permit = pace.acquire(Duration::from_secs(5), Kind::Order).await.unwrap();
    let until = SystemTime::now() + Duration::from_millis(300);
    permit.finish(Outcome::Busy(Some(until)));
    // Cannot wait that long: told until when, at once.
    assert_eq!(pace.acquire(Duration::from_millis(10), Kind::Order).await.map(|_| ()), Err(Gated(until)));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pace = Arc::clone(&pace);
            tokio::spawn(async move {
                let permit = pace.acquire(Duration::from_secs(5), Kind::Order).await?;
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
async fn an_answered_new_order_lets_the_next_go_and_an_unanswered_one_at_its_release() {
    let pace = new_pace();
    let mut on_the_wire = Vec::new();
    for _ in 0..UNANSWERED_ORDERS {
        on_the_wire.push(pace.acquire(Duration::from_secs(5), Kind::Order).await.unwrap());
    }
    let mut waiting = vec![waiter(&pace), waiter(&pace)];
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(waiting.iter().all(|w| !w.is_finished()), "both wait for an answer");
    // The CA created the first order: its validation goes on, the next goes.
    let first = on_the_wire.remove(0);
    first.answer().given();
    first.answer().given();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(waiting.iter().filter(|w| w.is_finished()).count(), 1, "one answer (given twice) lets one go");
    let gone = waiting.iter().position(|w| w.is_finished()).unwrap();
    let third = waiting.remove(gone).await.unwrap().unwrap();
    // The second was refused: its release is its answer.
    drop(on_the_wire);
    let fourth = tokio::time::timeout(Duration::from_secs(2), waiting.remove(0)).await.unwrap().unwrap().unwrap();
    assert_eq!(pace.controller().in_flight(), 3, "the first, third and fourth");
    drop((first, third, fourth));
    assert_eq!(pace.controller().in_flight(), 0);
    assert_eq!(pace.controller().unanswered, 0, "every order answered once");
}

#[tokio::test]
async fn a_waiter_that_goes_away_passes_its_turn_on() {
    let pace = new_pace();
    let mut permits = all_places(&pace).await;
    let first = waiter(&pace);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = waiter(&pace);
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
