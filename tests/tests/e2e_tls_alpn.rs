//! TLS-ALPN-01 (RFC 8737) end to end through a real Envoy with the shipped
//! HTTPS listener and no HTTP listener at all: Pebble validates by connecting
//! to Envoy's TLS port offering `acme-tls/1`; Envoy's `tls_inspector` hands
//! that connection to the sidecar's responder with `tcp_proxy`; the
//! certificate comes back over SDS. Ordinary HTTPS clients on the same port
//! keep the production certificate while a challenge is pending. A resolver
//! that tries HTTP-01 first falls back to TLS-ALPN-01.
//!
//! One Pebble, one Envoy and one sidecar for the whole binary.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxy_acme_e2e::*;
use x509_parser::prelude::{FromDer, X509Certificate};

const ALPN_ONLY: &str = "alpn.proxy-acme.test";
const FALLBACK: &str = "fallback.proxy-acme.test";
/// RFC 8737 §3: id-pe-acmeIdentifier.
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// The shipped bootstrap without its HTTP listener: only :443 is open.
fn without_http_listener(config: String) -> String {
    let start = config.find("  - name: http\n").unwrap_or_else(|| panic!("no http listener in envoy.yaml"));
    let end = config.find("  - name: https\n").unwrap_or_else(|| panic!("no https listener in envoy.yaml"));
    format!("{}{}", &config[..start], &config[end..])
}

fn has_acme_identifier(der: &[u8]) -> bool {
    let (_, cert) = X509Certificate::from_der(der).unwrap_or_else(|e| panic!("{e}"));
    cert.extensions().iter().any(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID && e.critical)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_envoy_tls_port_with_production_traffic_unchanged() {
    let tail = |pebble: &Pebble| {
        let alpn_only = resolver(pebble, "alpn", "tls_challenge = {}").replace("http_challenge = {}\n", "");
        // Tries HTTP-01 first; with no HTTP listener the CA cannot validate it.
        let fallback = resolver(pebble, "fallback", "tls_challenge = {}");
        format!(
            "{alpn_only}\n{fallback}\n{}\n{}",
            certificate("alpn", &[ALPN_ONLY], "alpn"),
            certificate("fallback", &[FALLBACK], "fallback")
        )
    };
    // Every order solves its challenge: the renewal below must not reuse
    // the first order's authorization.
    let pebble = PebbleOptions { authz_reuse: Some(0), ..PebbleOptions::default() };
    let mut stack = Stack::start(&pebble, "", tail, |c| {
        let config = without_http_listener(with_secrets(c, &["alpn", "fallback"]));
        assert!(!config.contains("  - name: http\n"), "the HTTP listener is still there");
        config
    })
    .await;
    let https = ("127.0.0.1", stack.ports.https);

    // 1. Issued through TLS-ALPN-01 only, and served by Envoy over SDS.
    let first = stack.wait_for_new_serial(ALPN_ONLY, None, Duration::from_secs(120)).await;
    let leaf = stack.served(ALPN_ONLY).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sans(&leaf), vec![format!("DNSName({ALPN_ONLY})")]);
    assert!(!has_acme_identifier(&leaf), "the production certificate must not be a challenge certificate");
    let proxied = stack.envoy_stat("tcp.acme_tls_alpn.downstream_cx_total").await;
    assert!(proxied >= 1, "Envoy passed no acme-tls/1 connection to the sidecar");

    // 2. HTTP-01 first, which fails (no HTTP listener), then TLS-ALPN-01.
    stack.wait_for_new_serial(FALLBACK, None, Duration::from_secs(120)).await;
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.contains("ordering again with the next challenge type"), "no fallback in the log:\n{log}");

    // 3. Outside an order, acme-tls/1 is refused, whatever the SNI.
    let validator = tls_config_validator();
    assert!(tls_leaf(validator.clone(), https, ALPN_ONLY).await.is_err(), "no challenge is pending");

    // 4. During a renewal: validators see the challenge certificate while it
    //    is pending; ordinary clients only ever see production certificates.
    let root = stack.pebble.root_pem().await;
    let production = tls_config(&root, &["h2", "http/1.1"]);
    let done = Arc::new(AtomicBool::new(false));
    let (challenges_seen, ordinary_ok) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let probe = {
        let (done, seen) = (Arc::clone(&done), Arc::clone(&challenges_seen));
        let validator = validator.clone();
        let port = stack.ports.https;
        tokio::spawn(async move {
            let mut unknown_sni_refused = true;
            while !done.load(Ordering::SeqCst) {
                if let Ok(der) = tls_leaf(validator.clone(), ("127.0.0.1", port), ALPN_ONLY).await {
                    assert!(has_acme_identifier(&der), "acme-tls/1 got a certificate without acmeIdentifier");
                    assert_eq!(sans(&der), vec![format!("DNSName({ALPN_ONLY})")]);
                    seen.fetch_add(1, Ordering::SeqCst);
                    let other = tls_leaf(validator.clone(), ("127.0.0.1", port), "other.proxy-acme.test").await;
                    unknown_sni_refused &= other.is_err();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            unknown_sni_refused
        })
    };
    let clients = {
        let (done, ok) = (Arc::clone(&done), Arc::clone(&ordinary_ok));
        let port = stack.ports.https;
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) {
                match tls_leaf(production.clone(), ("127.0.0.1", port), ALPN_ONLY).await {
                    Ok(der) if !has_acme_identifier(&der) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => failures.push("an ordinary client got the challenge certificate".to_owned()),
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        })
    };
    let (code, out, err) = {
        let config = stack.config_path.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(proxy_acme_bin())
                .args(["renew", "alpn", "--force", "--config"])
                .arg(config)
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // Keep probing a little after the order, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::SeqCst);
    let unknown_sni_refused = probe.await.unwrap_or_else(|e| panic!("{e}"));
    let failures = clients.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 0, "renew failed: {out}{err}\n--- sidecar\n{}", stack.sidecar.tail());
    assert!(failures.is_empty(), "ordinary clients failed during the order: {failures:?}");
    assert!(ordinary_ok.load(Ordering::SeqCst) > 0, "no ordinary client ran during the order");
    assert!(
        challenges_seen.load(Ordering::SeqCst) > 0,
        "the challenge was never seen pending through Envoy\n--- sidecar\n{}",
        std::fs::read_to_string(&stack.sidecar.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("handshake refused") && !l.contains("no server certificate chain"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(unknown_sni_refused, "acme-tls/1 with an unknown SNI got a certificate");
    stack.wait_for_new_serial(ALPN_ONLY, Some(&first), Duration::from_secs(30)).await;
}
