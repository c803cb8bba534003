//! The walking skeleton, end to end with real parts: Pebble (+ challtestsrv
//! as its DNS) validates HTTP-01 through a real Envoy 1.40 running the built
//! wasm filter and the shipped envoy/envoy.yaml; the sidecar orders, stores
//! and pushes the certificate over SDS; a TLS client sees it. Then the
//! sidecar is killed and Envoy keeps serving.
//!
//! One Pebble, one Envoy and one sidecar for the whole binary: the steps run
//! in order inside one test.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use proxy_acme_e2e::*;
use x509_parser::prelude::{FromDer, X509Certificate};

const DOMAIN: &str = "e2e.proxy-acme.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_through_envoy_filter_certificate_served_over_sds() {
    // Envoy first, as in a pod where the proxy is up before the sidecar:
    // the CA must find the HTTP listener when the first order starts.
    let mut stack =
        Stack::start(&PebbleOptions::default(), "", |_| certificate("demo", &[DOMAIN], "pebble"), |c| c).await;
    let (ports, state) = (stack.ports, stack.dir.join("state"));
    let sds_socket = stack.dir.join("sds.sock");
    let (sidecar, envoy, pebble) = (&mut stack.sidecar, &mut stack.envoy, &stack.pebble);

    // 1. The certificate Envoy serves for DOMAIN chains to Pebble's root.
    let root = pebble.root_pem().await;
    let tls = tls_config(&root, &[]);
    let leaf = eventually(Duration::from_secs(120), || tls_leaf(tls.clone(), ("127.0.0.1", ports.https), DOMAIN))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Envoy never served a Pebble certificate: {e}\n--- sidecar\n{}\n--- envoy\n{}",
                sidecar.tail(),
                envoy.proc.tail()
            )
        });
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap_or_else(|e| panic!("{e}"));
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    assert!(sans.contains(&format!("DNSName({DOMAIN})")), "served SANs: {sans:?}");
    let serial = cert.raw_serial_as_string();

    // 1b. Envoys that keep their ADS for another control plane take the
    // secret over its own SDS stream instead (the configuration of
    // docs/getting-started-envoy.md), state of the world and incremental:
    // they are served the same certificate.
    for api_type in ["GRPC", "DELTA_GRPC"] {
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let other_ports = StackPorts::free();
        let yaml = per_secret_sds_envoy_config(&other_ports, &sds_socket, api_type);
        assert!(
            !yaml.contains("ads_config")
                && !yaml.contains("ads: {}")
                && yaml.contains(&format!("api_type: {api_type}")),
            "{yaml}"
        );
        let _envoy = Envoy::start(other.path(), &yaml, other_ports.admin).await;
        let leaf =
            eventually(Duration::from_secs(30), || tls_leaf(tls.clone(), ("127.0.0.1", other_ports.https), DOMAIN))
                .await
                .unwrap_or_else(|e| panic!("{api_type} Envoy never served the certificate: {e}"));
        let (_, other_cert) = X509Certificate::from_der(&leaf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other_cert.raw_serial_as_string(), serial, "{api_type} Envoy serves another certificate");
    }

    // 2. It is on disk too, certbot-style, key 0600.
    let live = state.join("certificates/demo/live");
    for file in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
        assert!(live.join(file).is_file(), "{file} missing in {}", live.display());
    }
    let key_mode = std::fs::metadata(live.join("privkey.pem")).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    assert_eq!(key_mode, 0o600, "privkey.pem mode {key_mode:o}");

    // 3. Ordinary traffic on the HTTP listener reaches the app unchanged.
    let http = ("127.0.0.1", ports.http);
    let (status, seen) = http_get(http, "app.example", "/hello/world?q=1&r=%2F", &["X-Test: keep-me"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{seen}");
    assert!(seen.starts_with("GET /hello/world?q=1&r=%2F HTTP/1.1"), "app saw: {seen}");
    assert!(seen.to_ascii_lowercase().contains("x-test: keep-me"), "app saw: {seen}");

    // 4. The filter's answers to challenge requests that are not pending.
    let challenge = |token: &str| format!("/.well-known/acme-challenge/{token}");
    let unknown = http_get(http, DOMAIN, &challenge("UnknownToken_abc-123"), &[]).await;
    assert_eq!(unknown.map(|r| r.0), Ok(404));
    let malformed = http_get(http, DOMAIN, &challenge("bad.token"), &[]).await;
    assert_eq!(malformed.map(|r| r.0), Ok(400));
    let too_long = http_get(http, DOMAIN, &challenge(&"a".repeat(200)), &[]).await;
    assert_eq!(too_long.map(|r| r.0), Ok(400));
    let post = raw_request(
        http,
        format!(
            "POST {} HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            challenge("abc")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(post.map(|r| r.0), Ok(404));
    // Non-UTF-8 bytes in the host: a 4xx, and the filter keeps working after.
    let mut hostile = format!("GET {} HTTP/1.1\r\nHost: ", challenge("abc")).into_bytes();
    hostile.extend_from_slice(b"\xff\xfe.example\r\nConnection: close\r\n\r\n");
    let hostile = raw_request(http, &hostile).await.unwrap_or_else(|e| panic!("{e}"));
    assert!((400..500).contains(&hostile.0), "hostile host got {}", hostile.0);
    let again = http_get(http, DOMAIN, &challenge("UnknownToken_abc-123"), &[]).await;
    assert_eq!(again.map(|r| r.0), Ok(404), "filter stopped answering after hostile input");
    envoy.proc.assert_running();

    // 5. Sidecar killed: Envoy keeps the certificate and the traffic; challenges get 503.
    sidecar.kill();
    let leaf_after = tls_leaf(tls.clone(), ("127.0.0.1", ports.https), DOMAIN).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, cert_after) = X509Certificate::from_der(&leaf_after).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cert_after.raw_serial_as_string(), serial, "certificate changed after the sidecar died");
    let (status, seen) = http_get(http, "app.example", "/still/here", &[]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{seen}");
    let down = http_get(http, DOMAIN, &challenge("UnknownToken_abc-123"), &[]).await;
    assert_eq!(down.map(|r| r.0), Ok(503));
    envoy.proc.assert_running();
}
