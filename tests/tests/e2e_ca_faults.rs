//! A CA that hangs, refuses, floods or rejects nonces (issue 21): every
//! exchange with it is bounded, its `Retry-After` is honoured, a refused
//! nonce is retried within the order, and the other certificates go on.
//! The faults come from Pebble itself (`PEBBLE_WFE_NONCEREJECT`) or from
//! the CA fault front (`proxy_acme_e2e::ca_front`), a TLS proxy in front
//! of Pebble that answers chosen paths with a fault.

use std::time::Duration;

use proxy_acme_e2e::stack::{certificate, Stack};
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
