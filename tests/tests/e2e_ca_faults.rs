//! A CA that hangs, refuses, floods or rejects nonces (issue 21): every
//! exchange with it is bounded, its `Retry-After` is honoured, a refused
//! nonce is retried within the order, and the other certificates go on.
//! The faults come from Pebble itself (`PEBBLE_WFE_NONCEREJECT`) or from
//! the CA fault front (`proxy_acme_e2e::ca_front`), a TLS proxy in front
//! of Pebble that answers chosen paths with a fault.

use std::time::Duration;

use proxy_acme_e2e::ca_front::{CaFront, Fault};
use proxy_acme_e2e::stack::{certificate, resolver, Stack};
use proxy_acme_e2e::*;

/// Pebble's count of log lines containing `what`.
fn pebble_count(pebble: &Pebble, what: &str) -> usize {
    std::fs::read_to_string(&pebble.pebble.log).unwrap_or_default().lines().filter(|l| l.contains(what)).count()
}

const NONCE_CERTS: usize = 20;

/// With `percent` of nonces refused, every certificate is issued with
/// exactly one order and none backs off.
async fn refused_nonces_cost_no_order(percent: u8) {
    let options = PebbleOptions { nonce_reject: Some(percent), ..PebbleOptions::default() };
    let tail = |_: &Pebble| {
        (0..NONCE_CERTS)
            .map(|i| certificate(&format!("n{i:02}"), &[&format!("n{i:02}.nonce.test")], "pebble"))
            .collect()
    };
    let stack = Stack::start(&options, "", tail, |c| c).await;
    let started = std::time::Instant::now();
    let issued = eventually(Duration::from_secs(90), || async {
        match pebble_count(&stack.pebble, "Issued certificate serial") {
            n if n >= NONCE_CERTS => Ok(()),
            n => Err(format!("{n} of {NONCE_CERTS} issued")),
        }
    })
    .await;
    let (_, certs, _) = stack.cli(&["certs"]);
    issued.unwrap_or_else(|e| panic!("{e}\n--- certs\n{certs}\n--- sidecar\n{}", stack.sidecar.tail()));
    eprintln!("{NONCE_CERTS} certificates at {percent}% refused nonces in {:?}", started.elapsed());
    assert_eq!(pebble_count(&stack.pebble, "Added order"), NONCE_CERTS, "one order per certificate");
    assert!(!certs.contains("backing off"), "{certs}");
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.contains("the CA refused the nonce; sending again"), "no nonce was refused?\n{}", stack.sidecar.tail());
    assert!(!log.contains("order failed"), "{}", stack.sidecar.tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_nonces_refused_costs_no_order() {
    refused_nonces_cost_no_order(50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_in_ten_nonces_refused_costs_no_order() {
    refused_nonces_cost_no_order(90).await;
}

// === the CA fault front ===

/// Pebble, Envoy and a sidecar with two resolvers: `pebble` straight at
/// Pebble with the certificates `p1` and `p2`, and `faulty` through a CA
/// front (programmed by `program` before the sidecar starts) with
/// `faulty_extra` and the certificates named in `faulty_certs`.
async fn with_front(faulty_extra: &str, faulty_certs: &[&str], program: impl FnOnce(&CaFront)) -> (Stack, CaFront) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let front = CaFront::start(pebble.acme_port, &root, &pebble.minica.cert_path, &pebble.minica.key_path).await;
    program(&front);
    let faulty = resolver(&pebble, "faulty", faulty_extra).replace(&pebble.directory_url(), &front.directory_url());
    let mut tail = faulty;
    for name in ["p1", "p2"] {
        tail.push_str(&certificate(name, &[&format!("{name}.direct.test")], "pebble"));
    }
    for name in faulty_certs {
        tail.push_str(&certificate(name, &[&format!("{name}.faulty.test")], "faulty"));
    }
    let stack = Stack::start_with_pebble(tmp, ports, pebble, "", |_| tail, |c| c).await;
    (stack, front)
}

/// The `state:` and `last error:` lines `proxy-acme certs` shows for `name`.
fn cert_lines(stack: &Stack, name: &str) -> String {
    let (_, out, err) = stack.cli(&["certs"]);
    let mut lines = out.lines().skip_while(|l| *l != name).skip(1).take_while(|l| l.starts_with("  "));
    let shown: Vec<&str> = lines.by_ref().filter(|l| l.contains("state:") || l.contains("last error:")).collect();
    if shown.is_empty() {
        format!("(nothing for {name})\n{out}{err}")
    } else {
        shown.join("\n")
    }
}

async fn wait_issued(stack: &Stack, name: &str, timeout: Duration) {
    let issued = eventually(timeout, || async {
        match cert_lines(stack, name) {
            lines if lines.contains("valid until") => Ok(()),
            lines => Err(lines),
        }
    })
    .await;
    issued.unwrap_or_else(|e| panic!("{name} not issued: {e}\n--- sidecar\n{}", stack.sidecar.tail()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ca_times_out_and_holds_back_nothing_else() {
    // The faulty CA accepts the registration and never answers.
    let (stack, front) =
        with_front("order_timeout_secs = 30", &["f1", "f2"], |f| f.fault("/sign-me-up", Fault::Stall, None)).await;
    let started = std::time::Instant::now();
    // The other resolver's certificates are issued meanwhile...
    wait_issued(&stack, "p1", Duration::from_secs(20)).await;
    wait_issued(&stack, "p2", Duration::from_secs(20)).await;
    // ...and a forced renewal of one of them returns, while f1 still hangs.
    let (code, out, err) = stack.cli(&["renew", "p1", "--force"]);
    assert_eq!(code, 0, "renew: {out}{err}\n--- sidecar\n{}", stack.sidecar.tail());
    assert!(out.contains("renewed p1"), "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(28), "too slow to show anything: {:?}", started.elapsed());
    assert!(front.seen().iter().any(|s| s.path == "/sign-me-up"), "{:?}", front.seen());
    let f1 = cert_lines(&stack, "f1");
    assert!(f1.contains("order due now") || f1.contains("ordering since"), "{f1}");
    // Then the order deadline ends both, with a clear error: the one that
    // registers says so, the other waited for that registration.
    let failed = eventually(Duration::from_secs(30), || async {
        let both = format!("{}\n{}", cert_lines(&stack, "f1"), cert_lines(&stack, "f2"));
        if both.matches("backing off (attempt 1) until").count() == 2
            && both.matches("order deadline of 30 s passed while").count() == 4
        {
            Ok(both)
        } else {
            Err(both)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- sidecar\n{}", stack.sidecar.tail()));
    let want = "order deadline of 30 s passed while registering the account";
    assert!(failed.contains(want), "{failed}");
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.lines().any(|l| l.contains("order failed") && l.contains(want)), "{}", stack.sidecar.tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_an_error_answer_sets_the_next_attempt() {
    const RETRY_AFTER: u64 = 300;
    let (stack, front) = with_front("", &["f1"], |f| f.fault("/order-plz", Fault::RetryAfter(RETRY_AFTER), None)).await;
    let backing_off = eventually(Duration::from_secs(30), || async {
        match cert_lines(&stack, "f1") {
            lines if lines.contains("backing off") => Ok(lines),
            lines => Err(lines),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- sidecar\n{}", stack.sidecar.tail()));
    let failed_at = front.seen().iter().find(|s| s.path == "/order-plz").map(|s| s.at).expect("a newOrder");
    assert!(backing_off.contains("the CA asks to retry after"), "{backing_off}");
    // "backing off (attempt 1) until 2026-...Z: ..."
    let until = backing_off
        .split("until ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|t| t.trim_end_matches(':'))
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(std::time::SystemTime::from)
        .unwrap_or_else(|| panic!("no time in {backing_off}"));
    let wait = until.duration_since(failed_at).unwrap_or_default();
    // Not the first backoff's minute: the CA's five.
    assert!(wait >= Duration::from_secs(RETRY_AFTER - 2), "next attempt after {wait:?}: {backing_off}");
    assert!(wait <= Duration::from_secs(RETRY_AFTER + 5), "next attempt after {wait:?}: {backing_off}");
    assert_eq!(front.seen().iter().filter(|s| s.path == "/order-plz").count(), 1, "{:?}", front.seen());
}

/// The next attempt's time in a `backing off (attempt N) until <time>: ...` line.
fn backoff_until(line: &str) -> std::time::SystemTime {
    line.split("until ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|t| t.trim_end_matches(':'))
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(std::time::SystemTime::from)
        .unwrap_or_else(|| panic!("no time in {line}"))
}

/// Let's Encrypt beyond a rate limit: 429 `rateLimited` with `Retry-After`
/// on new-account and on new-order. The sidecar waits as long as the CA
/// says (not its own hour for a rate limit without one, nor its first
/// minute of backoff), says why, and sends nothing to that CA meanwhile,
/// not even for `renew --force` (the CA's pace, `daemon::pace`). Each wait
/// is longer than the backoff of its attempt (about a minute, then ten)
/// and than the 30 s a closed gate is waited out inside an order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_on_new_account_and_new_order_are_waited_out_as_the_ca_says() {
    const ACCOUNT_WAIT: u64 = 75;
    const ORDER_WAIT: u64 = 700;
    let (stack, front) = with_front("", &["r1"], |f| {
        f.fault("/sign-me-up", Fault::RateLimited(ACCOUNT_WAIT), Some(1));
        f.fault("/order-plz", Fault::RateLimited(ORDER_WAIT), Some(1));
    })
    .await;
    let attempt = |n: u32, within: u64| {
        let stack = &stack;
        async move {
            eventually(Duration::from_secs(within), || async {
                match cert_lines(stack, "r1") {
                    lines if lines.contains(&format!("backing off (attempt {n})")) => Ok(lines),
                    lines => Err(lines),
                }
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e}
--- sidecar
{}",
                    stack.sidecar.tail()
                )
            })
        }
    };
    let first = attempt(1, 30).await;
    let refused_at = front.seen().iter().find(|s| s.path == "/sign-me-up").map(|s| s.at).expect("a newAccount");
    assert!(first.contains("rateLimited") && first.contains("the CA asks to retry after"), "{first}");
    let wait = backoff_until(&first).duration_since(refused_at).unwrap_or_default();
    assert!(
        wait >= Duration::from_secs(ACCOUNT_WAIT - 2) && wait <= Duration::from_secs(ACCOUNT_WAIT + 5),
        "{wait:?}: {first}"
    );
    assert_eq!(front.seen().iter().filter(|s| s.path == "/order-plz").count(), 0, "ordered without an account");

    // The operator retries now: refused at once, nothing sent before the CA's time.
    let asked = |path: &str| front.seen().iter().filter(|s| s.path == path).count();
    let (_, out, err) = stack.cli(&["renew", "r1", "--force"]);
    assert!(format!("{out}{err}").contains("the CA asks to retry after"), "{out}{err}");
    assert_eq!((asked("/sign-me-up"), asked("/order-plz")), (1, 0), "{:?}", front.seen());

    // When the CA's time has come, the account is made, and the order is
    // refused for its own limit.
    let second = attempt(2, ACCOUNT_WAIT + 60).await;
    assert!(second.contains("rateLimited"), "{second}");
    let registered = front.seen().into_iter().filter(|s| s.path == "/sign-me-up").nth(1).expect("a second newAccount");
    let waited = registered.arrived.duration_since(refused_at).unwrap_or_default();
    assert!(waited >= Duration::from_secs(ACCOUNT_WAIT) - Duration::from_millis(50), "asked again after {waited:?}");
    let refused_at = front.seen().iter().find(|s| s.path == "/order-plz").map(|s| s.at).expect("a newOrder");
    let wait = backoff_until(&second).duration_since(refused_at).unwrap_or_default();
    assert!(
        wait >= Duration::from_secs(ORDER_WAIT - 2) && wait <= Duration::from_secs(ORDER_WAIT + 5),
        "{wait:?}: {second}"
    );
    assert_eq!(asked("/order-plz"), 1, "{:?}", front.seen());
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(
        log.lines().filter(|l| l.contains("order failed") && l.contains("rateLimited")).count() >= 2,
        "{}",
        stack.sidecar.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_malformed_empty_and_cut_answers_are_refused_without_growing() {
    const HUGE: usize = 10 << 20;
    let names = ["f1", "f2", "f3", "m1", "e1", "c1", "s1"];
    let (stack, front) = with_front("", &names, |_| {}).await;
    for name in names {
        wait_issued(&stack, name, Duration::from_secs(30)).await;
    }
    let (_, baseline) = memory_mib(stack.sidecar.pid());
    // Three 10 MiB bodies for the next three orders, then one that is not
    // JSON, an empty one, a connection closed without an answer and a 500;
    // each renewal forced by the operator.
    front.fault("/order-plz", Fault::Huge(HUGE), Some(3));
    front.fault("/order-plz", Fault::Malformed, Some(1));
    front.fault("/order-plz", Fault::Empty, Some(1));
    front.fault("/order-plz", Fault::Close, Some(1));
    front.fault("/order-plz", Fault::Status(500), Some(1));
    let mut answers = String::new();
    for name in names {
        let (code, out, err) = stack.cli(&["renew", name, "--force"]);
        assert_ne!(code, 0, "{name}: {out}{err}");
        answers.push_str(&format!("{name}: {out}{err}\n"));
    }
    let huge = front.seen().iter().filter(|s| s.answer.starts_with("Huge")).count();
    assert_eq!(huge, 3, "{:?}", front.seen());
    let (rss, peak) = memory_mib(stack.sidecar.pid());
    eprintln!("sidecar: VmHWM {baseline:.1} MiB before three 10 MiB answers, {peak:.1} MiB after (VmRSS {rss:.1})");
    // Reading the three bodies whole took the peak from 15 to 52 MiB.
    assert!(peak - baseline < 8.0, "the sidecar's peak RSS grew from {baseline:.1} to {peak:.1} MiB");
    let count = |what: &str| answers.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("/order-plz: the answer's body is over 1048576 bytes; refused"), 3, "{answers}");
    assert_eq!(count("failed to (de)serialize JSON"), 2, "{answers}");
    let closed = answers.lines().find(|l| l.starts_with("c1:")).unwrap_or_default();
    assert!(closed.contains("POST https://127.0.0.1:") && closed.contains("/order-plz: "), "{answers}");
    let failed = answers.lines().find(|l| l.starts_with("s1:")).unwrap_or_default();
    assert!(failed.contains("CA front: programmed to answer 500"), "{answers}");
    let shown: Vec<String> = names.iter().map(|n| cert_lines(&stack, n)).collect();
    let shown = shown.join("\n");
    assert_eq!(shown.lines().filter(|l| l.contains("state:") && l.contains("backing off")).count(), 7, "{shown}");
}

/// `name=default` from the environment (for the recorded run).
fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The CA refuses every connection for `CA_OUTAGE_SECS` (70: past the
/// second failed attempt, whose backoff is 10 minutes), then comes back:
/// every certificate that waited for it is issued within the probe's
/// interval and the spread (30 s each), not at its next backoff step. The
/// other resolver's certificates are issued meanwhile. For the figure in
/// docs/reliability.md: `CA_OUTAGE_SECS=120 CA_OUTAGE_CERTS=20`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_outage_ends_the_backoffs_it_caused_when_the_ca_is_back() {
    let outage = Duration::from_secs(env_or("CA_OUTAGE_SECS", 70));
    let count = env_or("CA_OUTAGE_CERTS", 2);
    let names: Vec<String> = (1..=count).map(|i| format!("o{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (mut stack, front) = with_front("", &refs, |f| f.refuse_connections(true)).await;
    let started = std::time::Instant::now();
    wait_issued(&stack, "p1", Duration::from_secs(30)).await;
    // At least two failures each: the next backoff step is 10 minutes.
    let second = eventually(outage + Duration::from_secs(30), || async {
        let lines: Vec<String> = names.iter().map(|n| cert_lines(&stack, n)).collect();
        let all = lines.join("\n");
        (lines.iter().all(|l| l.contains("backing off (attempt 2)"))).then_some(()).ok_or(all)
    })
    .await;
    second.unwrap_or_else(|e| panic!("not at the second backoff: {e}\n--- sidecar\n{}", stack.sidecar.tail()));
    if let Some(left) = outage.checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    front.refuse_connections(false);
    let back = std::time::Instant::now();
    for name in &names {
        wait_issued(&stack, name, Duration::from_secs(90)).await;
    }
    let recovered = back.elapsed();
    let (rss, peak) = memory_mib(stack.sidecar.pid());
    eprintln!(
        "CA outage of {:?} for {count} certificates: all issued {:.1} s after the CA came back; sidecar RSS {rss:.1} MiB, peak {peak:.1} MiB",
        outage,
        recovered.as_secs_f64()
    );
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.contains("the CA answers again; certificates waiting for it retry now"), "{}", stack.sidecar.tail());
    stack.sidecar.assert_running();
}
