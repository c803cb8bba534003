//! ACME Renewal Information (RFC 9773) end to end: Pebble behind a small
//! front that adds `renewalInfo` to its directory (Pebble 2.4 has none).
//! Pebble issues 5-year certificates, so any renewal within the test is the
//! CA's window at work; a malformed answer must change nothing.

use std::time::{Duration, SystemTime};

use proxy_acme_e2e::ari_front::{cert_id, Answer, AriFront};
use proxy_acme_e2e::*;

const DOMAIN: &str = "ari.proxy-acme.test";
const ODD: &str = "odd.proxy-acme.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_inside_the_ari_window_and_ignores_a_malformed_answer() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    let pebble = Pebble::start(dir, ports.http, free_port());
    let minica_root = std::fs::read_to_string(&pebble.minica.root_pem_path).unwrap_or_else(|e| panic!("{e}"));
    let pebble_dir = pebble.directory_url();
    let (cert, key) = (&pebble.minica.cert_path, &pebble.minica.key_path);
    let good = AriFront::start(&pebble_dir, &minica_root, cert, key).await;
    let odd = AriFront::start(&pebble_dir, &minica_root, cert, key).await;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    // Until told otherwise: renew in ten days, ask again in a minute.
    good.set_default(Answer::Window { start: now + 10 * day, end: now + 11 * day, retry_after_secs: 60 });
    odd.set_default(Answer::Malformed("{\"suggestedWindow\": \"tomorrow\"}".into()));

    let envoy = Envoy::start(
        dir,
        &with_secrets(shipped_envoy_config(&ports, &dir.join("sds.sock")), &["demo", "odd"]),
        ports.admin,
    )
    .await;
    let odd_resolver = resolver(&pebble, "odd", "").replace(&pebble.directory_url(), &odd.directory_url());
    let tail =
        format!("{}{odd_resolver}{}", certificate("demo", &[DOMAIN], "pebble"), certificate("odd", &[ODD], "odd"));
    let config =
        sidecar_config(dir, &ports, &pebble, "", &tail).replacen(&pebble.directory_url(), &good.directory_url(), 1);
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    let root = pebble.root_pem().await;
    let served = |sni: &'static str| {
        let tls = tls_config(&root, &[]);
        async move { tls_leaf(tls, ("127.0.0.1", ports.https), sni).await }
    };
    let first = eventually(Duration::from_secs(60), || served(DOMAIN)).await.unwrap_or_else(|e| {
        panic!("no certificate: {e}\n--- sidecar\n{}\n--- envoy\n{}", sidecar.tail(), envoy.proc.tail())
    });
    let first_id = cert_id(&first);
    let odd_first = eventually(Duration::from_secs(60), || served(ODD)).await.unwrap_or_else(|e| panic!("{e}"));
    let odd_id = cert_id(&odd_first);

    // Polled at once after issuance, by RFC 9773 certificate ID.
    let polled = eventually(Duration::from_secs(20), || async {
        let seen = good.requests();
        if seen.contains(&first_id) {
            Ok(())
        } else {
            Err(format!("polled {seen:?}, want {first_id}"))
        }
    })
    .await;
    assert!(polled.is_ok(), "{polled:?}");

    // The CA moves the window to now: renewed at the next poll (Retry-After 60 s).
    let now = SystemTime::now();
    good.set_answer_for(
        &first_id,
        Answer::Window { start: now - Duration::from_secs(60), end: now, retry_after_secs: 60 },
    );
    let renewed = eventually(Duration::from_secs(120), || async {
        let der = served(DOMAIN).await?;
        if der == first {
            Err("still the first certificate".to_owned())
        } else {
            Ok(der)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no ARI renewal: {e}\n--- sidecar\n{}", sidecar.tail()));
    assert_ne!(cert_id(&renewed), first_id);
    assert!(good.requests().iter().filter(|id| **id == first_id).count() >= 2, "{:?}", good.requests());

    // The malformed answer was asked for, logged, and changed nothing.
    assert!(odd.requests().contains(&odd_id), "{:?}", odd.requests());
    let odd_now = served(ODD).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(odd_now, odd_first, "a malformed ARI answer must not trigger a renewal");
    let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
    assert!(log.contains("malformed renewal information"), "no warning in the log:\n{}", sidecar.tail());
}
