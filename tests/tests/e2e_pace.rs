//! Issue as fast as the CA allows and never faster (issue 23), through
//! real Pebble behind two CA fronts, on one stack:
//!
//! - `limited` lets 10 new orders a second through (a token bucket of 10
//!   on `/order-plz`) and answers the rest 429 `rateLimited` with
//!   `Retry-After`, as Let's Encrypt does. 400 certificates start cold on
//!   it: every one is issued, no order fails, at most 1 % of the new-order
//!   requests got a 429, and after each 429 no new order arrived before the
//!   time its `Retry-After` named.
//! - `busy` answers the first three new orders 503 with `Retry-After: 2`,
//!   as an overloaded CA: its certificates are issued all the same, without
//!   a failed order, and no new order arrived there before it said.
//!
//! Each front has its own directory URL, so its own pace: `/metrics` shows
//! both, the limited one having backed off and been gated.

use std::time::{Duration, SystemTime};

use proxy_acme_e2e::ca_front::{CaFront, Fault, Seen};
use proxy_acme_e2e::stack::{certificate, resolver, Stack};
use proxy_acme_e2e::*;

/// Certificates on the rate-limited CA: enough new orders that 1 % of them
/// is four 429s. A cold start pays two learning episodes, and each at most
/// two 429s: the one that found the budget empty and at most one more new
/// order on the wire (the pace waits for an answer after two).
const LIMITED: usize = 400;
/// New orders a second the limited CA lets through (and its burst).
const PER_SECOND: u32 = 10;
/// Certificates on the overloaded CA.
const BUSY: usize = 6;
/// The overloaded CA's `Retry-After`, in seconds.
const BUSY_WAIT: u64 = 2;
/// Clock and logging slack between the front's log and the sidecar's gate.
const SLACK: Duration = Duration::from_millis(50);
/// Requests arriving this soon after a `Retry-After` answer were on their
/// way before the sidecar could have read it (the first orders of a cold
/// start go out together): they are not counted as too early.
const IN_FLIGHT: Duration = Duration::from_millis(100);

/// Every new-order request that arrived before the `Retry-After` of an
/// earlier answer (a 429 or a 503 that carried one) had passed, and after
/// the sidecar had that answer (more than [`IN_FLIGHT`] after it).
fn too_early(seen: &[Seen]) -> Vec<String> {
    let orders: Vec<&Seen> = seen.iter().filter(|s| s.path == "/order-plz").collect();
    let mut early = Vec::new();
    for told in &orders {
        let secs = match told.answer.as_str() {
            a if a.starts_with("RateLimited(") => a["RateLimited(".len()..].trim_end_matches(')').parse().ok(),
            a if a.starts_with("RetryAfter(") => a["RetryAfter(".len()..].trim_end_matches(')').parse().ok(),
            _ => None,
        };
        let Some(secs) = secs else { continue };
        let until = told.at + Duration::from_secs(secs);
        for next in orders.iter().filter(|o| o.arrived > told.at + IN_FLIGHT && o.arrived + SLACK < until) {
            let early_by = until.duration_since(next.arrived).unwrap_or_default();
            early.push(format!("a new order {early_by:?} before the Retry-After: {secs} s given at {:?}", told.at));
        }
    }
    early
}

fn after(start: SystemTime, t: SystemTime) -> f64 {
    t.duration_since(start).unwrap_or_default().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_go_as_fast_as_the_ca_allows_and_never_faster() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, &PebbleOptions::default());
    let root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = (&pebble.minica.cert_path, &pebble.minica.key_path);
    let limited = CaFront::start(pebble.acme_port, &root, cert, key).await;
    limited.rate_limit("/order-plz", PER_SECOND, PER_SECOND);
    let busy = CaFront::start(pebble.acme_port, &root, cert, key).await;
    busy.fault("/order-plz", Fault::RetryAfter(BUSY_WAIT), Some(3));
    let direct = pebble.directory_url();
    // 400 orders: more than the default budget of 300 in 3 h.
    let mut tail =
        resolver(&pebble, "limited", "rate_limit = { orders = 1000 }").replace(&direct, &limited.directory_url());
    tail += &resolver(&pebble, "busy", "").replace(&direct, &busy.directory_url());
    for i in 0..LIMITED {
        tail += &certificate(&format!("l{i}"), &[&format!("l{i}.pace.test")], "limited");
    }
    for i in 0..BUSY {
        tail += &certificate(&format!("b{i}"), &[&format!("b{i}.busy.test")], "busy");
    }
    let started = SystemTime::now();
    let stack = Stack::start_with_pebble(tmp, ports, pebble, "", |_| tail, |c| c).await;
    let issued = eventually(Duration::from_secs(300), || async {
        let (_, out, _) = stack.cli(&["certs"]);
        let valid = out.matches("valid until").count();
        if valid >= LIMITED + BUSY {
            Ok(())
        } else {
            Err(format!("{valid} of {} issued", LIMITED + BUSY))
        }
    })
    .await;
    issued.unwrap_or_else(|e| {
        let seen = limited.seen();
        let count =
            |prefix: &str| seen.iter().filter(|s| s.path == "/order-plz" && s.answer.starts_with(prefix)).count();
        panic!(
            "not all issued: {e}; limited CA: {} orders created, {} new orders answered 429\n--- sidecar\n{}",
            count("pebble 201"),
            count("RateLimited"),
            stack.sidecar.tail()
        )
    });
    let took = after(started, SystemTime::now());

    // The limited CA: every certificate from one order, at most 1 % 429s.
    let seen = limited.seen();
    let new_orders: Vec<&Seen> = seen.iter().filter(|s| s.path == "/order-plz").collect();
    let created = new_orders.iter().filter(|s| s.answer.starts_with("pebble 201")).count();
    let throttled: Vec<&&Seen> = new_orders.iter().filter(|s| s.answer.starts_with("RateLimited")).collect();
    let fraction = throttled.len() as f64 / new_orders.len() as f64;
    let at: Vec<String> = throttled.iter().map(|s| format!("{:.2}s {}", after(started, s.at), s.answer)).collect();
    eprintln!(
        "limited CA: {LIMITED} certificates in {took:.1} s; {} new-order requests, {created} orders created, {} answered 429 ({:.2} %) at {at:?}",
        new_orders.len(),
        throttled.len(),
        fraction * 100.0
    );
    assert_eq!(created, LIMITED, "one order per certificate");
    assert!(throttled.len() * 100 <= new_orders.len(), "more than 1 % 429s: {at:?}");
    let early = too_early(&seen);
    assert!(early.is_empty(), "the limited CA was asked before it said: {early:#?}");

    // The overloaded CA: issued despite its 503s, never asked too early.
    let seen = busy.seen();
    let refused = seen.iter().filter(|s| s.answer.starts_with("RetryAfter")).count();
    assert_eq!(refused, 3, "{seen:#?}");
    let created = seen.iter().filter(|s| s.path == "/order-plz" && s.answer.starts_with("pebble 201")).count();
    assert_eq!(created, BUSY, "one order per certificate");
    let early = too_early(&seen);
    let log: Vec<String> = seen
        .iter()
        .map(|s| {
            format!("{:.3}-{:.3} {} {} {}", after(started, s.arrived), after(started, s.at), s.method, s.path, s.answer)
        })
        .collect();
    assert!(early.is_empty(), "the busy CA was asked before it said: {early:#?}\n{log:#?}");

    // No failed order anywhere; each CA's pace is in /metrics.
    let metrics = scrape_metrics(stack.ports.ops).await;
    for resolver in ["limited", "busy"] {
        let failed = format!("proxy_acme_orders_total{{resolver=\"{resolver}\",result=\"failure\"}}");
        assert_eq!(metrics.get(&failed).copied().unwrap_or_default(), 0.0, "{failed}");
    }
    let pace: Vec<(&String, &f64)> = metrics.iter().filter(|(k, _)| k.starts_with("proxy_acme_ca_")).collect();
    eprintln!("pace in /metrics: {pace:?}");
    for front in [&limited, &busy] {
        let ca = front.directory_url();
        let series = |name: &str| {
            let key = format!("{name}{{ca=\"{ca}\"}}");
            metrics.get(&key).copied().unwrap_or_else(|| panic!("no {key} in /metrics: {metrics:#?}"))
        };
        assert!(series("proxy_acme_ca_limit") >= 1.0);
        assert_eq!(series("proxy_acme_ca_in_flight"), 0.0, "all done");
        assert!(series("proxy_acme_ca_gated_seconds_total") > 0.0, "{ca} was gated");
    }
    // A 429 with Retry-After is a rate: it teaches the spacing of new
    // orders (about 1 / PER_SECOND plus the margin) and leaves the number
    // in flight; a 503 is a load, which halves it.
    let series = |front: &CaFront, name: &str| {
        let key = format!("{name}{{ca=\"{}\"}}", front.directory_url());
        metrics.get(&key).copied().unwrap_or_else(|| panic!("no {key} in /metrics"))
    };
    let spacing = series(&limited, "proxy_acme_ca_order_spacing_seconds");
    let per_order = 1.0 / f64::from(PER_SECOND);
    assert!(
        (per_order..per_order * 1.5).contains(&spacing),
        "learned spacing {spacing} s, the CA allows one every {per_order} s"
    );
    assert_eq!(series(&limited, "proxy_acme_ca_backoffs_total"), 0.0, "429s with Retry-After halve nothing");
    assert!(series(&busy, "proxy_acme_ca_backoffs_total") >= 1.0, "503s halve the limit");
    assert_eq!(series(&busy, "proxy_acme_ca_order_spacing_seconds"), 0.0, "503s teach no rate");
    // The first looks were learned from the orders (they start at 100 ms)
    // and stay within their bounds.
    for after in ["validation", "issuance"] {
        let key = format!("proxy_acme_ca_first_look_seconds{{ca=\"{}\",after=\"{after}\"}}", limited.directory_url());
        let look = metrics.get(&key).copied().unwrap_or_else(|| panic!("no {key} in /metrics"));
        assert!((0.01..=2.0).contains(&look), "{key} = {look}");
        if after == "validation" {
            assert!((look - 0.1).abs() > 1e-6, "{key} never learned: {look}");
        }
    }
}
