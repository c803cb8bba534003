//! The CA through a real forward proxy (tinyproxy): `[network] proxy`, with
//! and without Basic authentication. Every request to the CA is a `CONNECT`
//! in the proxy's log, the certificate is issued and served by Envoy; wrong
//! credentials fail the order with the proxy named, its password not.

use std::time::Duration;

use proxy_acme_e2e::stack::{certificate, Stack};
use proxy_acme_e2e::tinyproxy::Tinyproxy;
use proxy_acme_e2e::*;

const NAME: &str = "egress.proxy-acme.test";

async fn through(proxy_url: impl FnOnce(u16) -> String, auth: Option<(&str, &str)>) -> (Stack, Tinyproxy) {
    let proxy_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Tinyproxy::start(proxy_dir.path(), auth);
    let url = proxy_url(proxy.port);
    let stack = Stack::start(
        &PebbleOptions::default(),
        "",
        |_| format!("{}\n[network]\nproxy = \"{url}\"\n", certificate("demo", &[NAME], "pebble")),
        |c| c,
    )
    .await;
    std::mem::forget(proxy_dir);
    (stack, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_reached_through_the_proxy() {
    let (mut stack, proxy) = through(|port| format!("http://127.0.0.1:{port}"), None).await;
    stack.wait_for_new_serial(NAME, None, Duration::from_secs(60)).await;
    let acme = format!("CONNECT 127.0.0.1:{}", stack.pebble.acme_port);
    let log = proxy.log();
    assert!(log.contains(&acme), "the proxy saw no tunnel to the CA:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_with_basic_authentication_lets_the_right_credentials_through_only() {
    let (mut stack, proxy) =
        through(|port| format!("http://acme:s3cret@127.0.0.1:{port}"), Some(("acme", "s3cret"))).await;
    stack.wait_for_new_serial(NAME, None, Duration::from_secs(60)).await;
    assert!(proxy.log().contains(&format!("CONNECT 127.0.0.1:{}", stack.pebble.acme_port)), "{}", proxy.log());

    // Wrong credentials: the order fails, the error names the proxy, not the password.
    let (stack, _proxy) =
        through(|port| format!("http://acme:wrong-pw@127.0.0.1:{port}"), Some(("acme", "s3cret"))).await;
    let log = || std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    let failed = eventually(Duration::from_secs(30), || async {
        log()
            .lines()
            .find(|l| l.contains("order failed"))
            .map(str::to_owned)
            .ok_or_else(|| "no failed order yet".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.sidecar.tail()));
    assert!(
        failed.contains("through the proxy http://127.0.0.1:") && failed.contains("the proxy refused the CONNECT"),
        "{failed}"
    );
    assert!(!log().contains("wrong-pw"), "the proxy password reached the log");
}
