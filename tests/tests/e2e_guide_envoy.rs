//! docs/getting-started-envoy.md, followed literally: its configuration
//! file and `check`, the shipped envoy/envoy.yaml with the guide's changes
//! (the secret named after the certificate), Envoy started first, then the
//! sidecar. The first order must succeed (no failed order, no backoff) and
//! Envoy must serve the CA's certificate; `certs` shows it and
//! `renew --dry-run` orders without keeping anything. Pebble stands in for
//! Let's Encrypt staging; ports and paths are this test's.

use std::path::PathBuf;
use std::time::Duration;

use proxy_acme_e2e::guides::{doc_block, run as proxy_acme, said};
use proxy_acme_e2e::*;

/// The `n`th ```lang block of the guide.
fn guide_block(lang: &str, n: usize) -> String {
    doc_block("getting-started-envoy.md", lang, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envoy_guide_works_as_written_and_the_first_order_succeeds() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    let pebble = Pebble::start_with(
        dir,
        ports.http,
        free_port(),
        &PebbleOptions { authz_reuse: Some(0), ..PebbleOptions::default() },
    );
    let at = |p: &str| -> PathBuf { dir.join(p) };
    std::fs::create_dir_all(at("state")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(at("state"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));

    // Step 3: the guide's file, with Pebble and this test's ports and paths.
    let config_text = render(
        &guide_block("toml", 0),
        &[
            ("/var/lib/proxy-acme", at("state").display().to_string()),
            ("127.0.0.1:8555", format!("127.0.0.1:{}", ports.sidecar)),
            ("127.0.0.1:8558", format!("127.0.0.1:{}", ports.ops)),
            ("/run/proxy-acme/sds.sock", at("sds.sock").display().to_string()),
            ("/run/proxy-acme/admin.sock", at("admin.sock").display().to_string()),
            ("https://acme-staging-v02.api.letsencrypt.org/directory", pebble.directory_url()),
            (
                "# ca_certificate = \"/etc/proxy-acme/ca-root.pem\"",
                format!("ca_certificate = \"{}\"", pebble.minica.root_pem_path.display()),
            ),
        ],
    );
    let config = at("proxy-acme.toml");
    write(&config, &config_text);

    // Step 4: check.
    let check = proxy_acme(&["check"], &config);
    assert!(check.status.success() && said(&check).contains("ok (1 resolvers, 1 certificates)"), "{}", said(&check));

    // Steps 5 and 6: the shipped envoy.yaml with the guide's changes, Envoy first.
    let yaml = render(
        &shipped_envoy_config(&ports, &at("sds.sock")),
        &[("- name: demo  # CHANGE", "- name: www  # CHANGE".to_owned())],
    );
    let mut envoy = Envoy::start(dir, &yaml, ports.admin).await;
    let mut sidecar = start_sidecar(dir, &config_text);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    // Step 7: Envoy serves the CA's certificate, from the first order.
    let root = pebble.root_pem().await;
    let verified = tls_config(&root, &[]);
    let served = || async {
        let der = tls_leaf(verified.clone(), ("127.0.0.1", ports.https), "www.example.com").await?;
        Ok::<_, String>(serial_of(&der))
    };
    let first = eventually(Duration::from_secs(60), served).await.unwrap_or_else(|e| {
        panic!(
            "Envoy never served the CA's certificate: {e}\n--- sidecar\n{}\n--- envoy\n{}",
            sidecar.tail(),
            envoy.proc.tail()
        )
    });
    let log = std::fs::read_to_string(at("proxy-acme.log")).unwrap_or_default();
    assert!(!log.contains("order failed"), "the first order failed: the guide's order of steps is wrong\n{log}");
    let certs = proxy_acme(&["certs"], &config);
    assert!(said(&certs).contains(&first), "{}", said(&certs));

    // The challenge path answers as the guide says: the filter asked the sidecar.
    let (status, body) =
        http_get(("127.0.0.1", ports.http), "example.com", "/.well-known/acme-challenge/test-token", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status, body.trim()), (404, "not found"), "the guide's challenge check");

    // The dry run: reported, nothing stored or served.
    let stored = std::fs::read_to_string(at("state/certificates/www/live/cert.pem")).unwrap_or_else(|e| panic!("{e}"));
    let dry = proxy_acme(&["renew", "www", "--dry-run"], &config);
    let report = said(&dry);
    assert!(dry.status.success() && report.contains("ok: a real order for this certificate would succeed"), "{report}");
    assert_eq!(served().await, Ok(first.clone()), "a dry run changed what Envoy serves");
    let after = std::fs::read_to_string(at("state/certificates/www/live/cert.pem")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, stored, "a dry run changed the store");
    envoy.proc.assert_running();
    sidecar.assert_running();
}
