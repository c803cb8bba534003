//! Renewal information (ARI) with the in-memory task of `task_tests`
//! (its clock, store, sink and scripted CA): windows followed as they
//! move, polls timed by the CA's Retry-After.

use super::*;

#[tokio::test]
async fn an_ari_window_that_moves_earlier_moves_the_renewal() {
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::Issue { days: 90 });
    let window = |from: u32, to: u32| Window {
        start: t0() + from * DAY,
        end: t0() + to * DAY,
        retry_after: Duration::from_secs(6 * 3600),
        explanation_url: None,
    };
    world.ca.windows.lock().unwrap().extend([window(50, 52), window(20, 21)]);
    let mut task = world.task().await;
    // Issued, then polled at once: the renewal lies in the first window.
    let poll = settle(&mut task).await;
    let (first, _) = task.machine.next_order(world.clock.now()).unwrap();
    assert!(first >= t0() + 50 * DAY && first < t0() + 52 * DAY, "{}", world.status().state);
    assert!(poll <= t0() + Duration::from_secs(6 * 3600), "next poll at the CA's Retry-After");

    // The CA moves the window earlier (an incident): the next poll follows it.
    world.clock.advance(poll.duration_since(world.clock.now()).unwrap());
    settle(&mut task).await;
    let (second, _) = task.machine.next_order(world.clock.now()).unwrap();
    assert!(second >= t0() + 20 * DAY && second < t0() + 21 * DAY, "{}", world.status().state);
    assert!(world.ca.windows.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_next_ari_poll_counts_the_retry_after_from_the_answer_not_the_ask() {
    // In a mass renewal an ARI poll waits its turn at the CA's pace for
    // tens of seconds; the Retry-After is counted from the answer.
    let world = World::new(Arc::new(MemoryStore::new()), None);
    world.script(Next::Issue { days: 90 });
    let ahead = Window {
        start: t0() + 50 * DAY,
        end: t0() + 52 * DAY,
        retry_after: Duration::from_secs(60),
        explanation_url: None,
    };
    world.ca.windows.lock().unwrap().push_back(ahead);
    *world.ca.ari_wait.lock().unwrap() = Duration::from_secs(30);
    let mut task = world.task().await;
    let poll = settle(&mut task).await;
    assert_eq!(world.clock.now(), t0() + Duration::from_secs(30), "the answer came 30 s after the ask");
    assert_eq!(poll, world.clock.now() + Duration::from_secs(60), "60 s after the answer");
}
