//! A CA's validator that arrives while the sidecar restarts (killed during
//! an order, as the crash trials do) gets the answer, not a 503 that fails
//! the order: the filter in the real Envoy holds the challenge request and
//! asks the sidecar again until it answers (within `sidecar_retry_ms`,
//! default 3 s), and the restarted sidecar answers from the challenges its
//! killed predecessor left in the store's board. A sidecar that stays down
//! longer gets the request its 503 once the window ends: the wait is bounded.

use std::time::{Duration, Instant};

use proxy_acme_e2e::stack::{certificate, Stack};
use proxy_acme_e2e::*;

const DOMAIN: &str = "demo.restart.test";
const TOKEN: &str = "Wait_for-the-sidecar_0123456789";

/// What the killed sidecar's board left for an order in flight (the file
/// store's `challenges/http-01/<hex token>`: expiry, then the post).
fn plant_answer(state: &std::path::Path, token: &str, key_authorization: &str) {
    let dir = state.join("challenges/http-01");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let name: String = token.bytes().map(|b| format!("{b:02x}")).collect();
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 600;
    let post = serde_json::json!({"identifier": DOMAIN, "key_authorization": key_authorization});
    write(&dir.join(name), &format!("{expires}\n{post}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_request_waits_out_a_sidecar_restart_and_gets_the_answer() {
    let mut stack =
        Stack::start(&PebbleOptions::default(), "", |_| certificate("demo", &[DOMAIN], "pebble"), |c| c).await;
    stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(60)).await;
    let config = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));
    let http = ("127.0.0.1", stack.ports.http);
    let path = format!("/.well-known/acme-challenge/{TOKEN}");
    let key_authorization = format!("{TOKEN}.thumbprint_of_the_account");

    // 1. Killed with an answer on its board; the validator comes while it
    //    is down; it is back 1.5 s later: the validator gets the answer.
    stack.sidecar.kill();
    plant_answer(&stack.dir.join("state"), TOKEN, &key_authorization);
    let started = Instant::now();
    let validator = {
        let path = path.clone();
        tokio::spawn(async move { http_get(http, DOMAIN, &path, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.sidecar = start_sidecar(&stack.dir, &config);
    let answer = validator.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    let waited = started.elapsed();
    assert_eq!(answer.0, 200, "the validator got {answer:?} after {waited:?}\n{}", stack.envoy.proc.tail());
    assert!(answer.1.ends_with(&key_authorization), "{answer:?}");
    assert!(waited >= Duration::from_millis(1400), "answered before the sidecar was back? {waited:?}");
    let envoy_log = std::fs::read_to_string(&stack.envoy.proc.log).unwrap_or_default();
    assert!(
        envoy_log.contains("no sidecar for token") && envoy_log.contains("the sidecar answers again"),
        "{envoy_log}"
    );

    // 2. Down for longer than the window: a 503 when it ends, not a hang.
    stack.sidecar.kill();
    let started = Instant::now();
    let answer = http_get(http, DOMAIN, &path, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    let waited = started.elapsed();
    assert_eq!(answer.0, 503, "{answer:?}");
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(6),
        "the default window is 3 s; waited {waited:?}"
    );
    stack.sidecar = start_sidecar(&stack.dir, &config);
}
