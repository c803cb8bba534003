//! What an operator sees, end to end with real parts: `/metrics` after a
//! real issuance (per-certificate series, orders, challenges, SDS pushes and
//! ACKs), `/readyz`, and the served-certificate check catching an Envoy that
//! serves another certificate than the one deployed.
//!
//! Two Envoys: the stack's, fed over gRPC SDS by the sidecar; and a second
//! one on file SDS that the test feeds itself (standing in for a listener
//! wired to the wrong secret source): first with a self-signed certificate,
//! then with the sidecar's own files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_acme::cert::{Bundle, SecretPem};
use proxy_acme::deploy::Sink;
use proxy_acme_e2e::*;

const NAME: &str = "ops.proxy-acme.test";

fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics.get(series).unwrap_or_else(|| panic!("no series {series} in {metrics:#?}"))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

fn self_signed(name: &str) -> Bundle {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .and_then(|p| p.self_signed(&key))
        .unwrap_or_else(|e| panic!("{e}"));
    Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readyz_and_the_served_check_show_what_envoy_serves() {
    let started = SystemTime::now();
    // The second Envoy, on file SDS the test writes, with a self-signed certificate.
    let other_ports = StackPorts::free();
    let other_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sds = other_dir.path().join("sds");
    let sink = proxy_acme::deploy::file_sds::FileSdsSink::new(&sds).unwrap_or_else(|e| panic!("{e}"));
    let rogue = self_signed(NAME);
    sink.deploy("demo", &Arc::new(rogue.clone())).await.unwrap_or_else(|e| panic!("{e}"));
    let other_yaml = shipped_file_sds_envoy_config(&other_ports, &sds, &["demo"]);
    let _other = Envoy::start(other_dir.path(), &other_yaml, other_ports.admin).await;
    let rogue_serial = serial_of(
        &tls_leaf(tls_config_unverified(), ("127.0.0.1", other_ports.https), NAME)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );

    let stack = Stack::start(
        &PebbleOptions::default(),
        "",
        |pebble| {
            format!(
                "{}\n[served_check]\nendpoints = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\ninterval_secs = 1\n",
                certificate("demo", &[NAME], "pebble"),
                pebble.tls_port, // the stack's Envoy HTTPS listener
                other_ports.https,
            )
        },
        |c| c,
    )
    .await;
    let ours = format!("127.0.0.1:{}", stack.ports.https);
    let theirs = format!("127.0.0.1:{}", other_ports.https);
    let sidecar_port = stack.ports.ops;
    // The challenge API, which the pod network may reach, shows none of it.
    for path in ["/metrics", "/readyz", "/healthz"] {
        let (status, _) =
            http_get(("127.0.0.1", stack.ports.sidecar), "localhost", path, &[]).await.unwrap_or_default();
        assert_eq!(status, 404, "{path} on the challenge API");
    }

    // A real issuance, served by the stack's Envoy.
    let der = eventually(Duration::from_secs(60), || stack.served(NAME)).await.unwrap_or_else(|e| panic!("{e}"));
    let serial = serial_of(&der);
    let not_after = {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        cert.validity().not_after.timestamp() as f64
    };

    // The per-certificate series, and the served check: ours matches, theirs not.
    let served =
        |endpoint: &str| format!("proxy_acme_certificate_served_match{{certificate=\"demo\",endpoint=\"{endpoint}\"}}");
    let metrics = eventually(Duration::from_secs(20), || async {
        let m = scrape_metrics(sidecar_port).await;
        match (m.get(&served(&ours)), m.get(&served(&theirs))) {
            (Some(1.0), Some(0.0)) => Ok(m),
            other => Err(format!("served_match (ours, theirs) = {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&metrics, "proxy_acme_certificate_not_after_seconds{certificate=\"demo\"}"), not_after);
    let renew_at = value(&metrics, "proxy_acme_certificate_renew_at_seconds{certificate=\"demo\",reason=\"lifetime\"}");
    assert!(renew_at > unix(started) && renew_at < not_after, "renew_at {renew_at} not within the validity");
    assert_eq!(value(&metrics, "proxy_acme_certificate_consecutive_failures{certificate=\"demo\"}"), 0.0);
    let last_success = value(&metrics, "proxy_acme_certificate_last_success_seconds{certificate=\"demo\"}");
    assert!(last_success >= unix(started).floor(), "last success {last_success} before the test started");
    assert!(value(&metrics, "proxy_acme_orders_total{resolver=\"pebble\",result=\"success\"}") >= 1.0);
    assert!(value(&metrics, "proxy_acme_order_duration_seconds_count{resolver=\"pebble\"}") >= 1.0);
    assert!(value(&metrics, "proxy_acme_challenges_total{challenge=\"http-01\",result=\"valid\"}") >= 1.0);
    // The placeholder and the issued certificate may reach Envoy in one push
    // (a snapshot that changed twice before Envoy subscribed is sent once).
    assert!(value(&metrics, "proxy_acme_sds_pushes_total{node=\"envoy-1\"}") >= 1.0);
    assert!(value(&metrics, "proxy_acme_sds_acks_total{node=\"envoy-1\"}") >= 1.0);
    assert_eq!(metrics.get("proxy_acme_sds_nacks_total{node=\"envoy-1\"}").copied().unwrap_or(0.0), 0.0);
    assert!(metrics.keys().any(|k| k.starts_with("proxy_acme_orders_remaining{resolver=\"pebble\"}")));

    // /readyz: not ready, and it says exactly why.
    let (status, text) = http_get(("127.0.0.1", sidecar_port), "localhost", "/readyz", &[]).await.unwrap_or_default();
    assert_eq!(status, 503, "{text}");
    for line in ["ok store", "ok ca:pebble", "ok certificate:demo", &format!("ok served:demo@{ours}")] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    let failing = text.lines().find(|l| l.starts_with(&format!("fail served:demo@{theirs}")));
    let failing = failing.unwrap_or_else(|| panic!("no failing served check in {text}"));
    assert!(failing.contains(&rogue_serial) && failing.contains(&serial), "{failing}");
    assert!(stack.sidecar.tail().contains("served certificate differs from the deployed one"));

    // The other Envoy is given the deployed certificate: the check clears.
    let live = stack.dir.join("state/certificates/demo/live");
    let read = |f: &str| std::fs::read_to_string(live.join(f)).unwrap_or_else(|e| panic!("{e}"));
    let deployed = Bundle { fullchain_pem: read("fullchain.pem"), key_pem: SecretPem::new(read("privkey.pem")) };
    sink.deploy("demo", &Arc::new(deployed.clone())).await.unwrap_or_else(|e| panic!("{e}"));
    let ready = eventually(Duration::from_secs(20), || async {
        match http_get(("127.0.0.1", sidecar_port), "localhost", "/readyz", &[]).await {
            Ok((200, text)) => Ok(text),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(ready.starts_with("ready\n") && ready.contains(&format!("ok served:demo@{theirs}")), "{ready}");
    assert_eq!(value(&scrape_metrics(sidecar_port).await, &served(&theirs)), 1.0);
}
