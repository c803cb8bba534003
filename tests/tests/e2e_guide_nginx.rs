//! docs/getting-started-nginx.md, followed literally: its configuration
//! file, `check`, `prepare`, `nginx-config` loaded by a real nginx, then the
//! sidecar. The first order must succeed (no failed order, no backoff) and
//! nginx must serve the CA's certificate; `renew --force` answers once nginx
//! serves the new one, and `renew --dry-run` orders without keeping
//! anything. Pebble stands in for Let's Encrypt staging; ports and
//! paths are this test's, substituted where the guide names them.

use std::path::PathBuf;
use std::time::Duration;

use proxy_acme_e2e::guides::{doc_block, run as proxy_acme, said};
use proxy_acme_e2e::*;

/// The `n`th ```lang block of the guide.
fn guide_block(lang: &str, n: usize) -> String {
    doc_block("getting-started-nginx.md", lang, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_guide_works_as_written_and_the_first_order_succeeds() {
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
    // Step 1: the guide's directories.
    for (path, mode) in [("state", 0o700), ("nginx-certs", 0o700)] {
        std::fs::create_dir_all(at(path)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(at(path), std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let nginx_conf = at("nginx.conf");

    // Step 2: the guide's file, with Pebble and this test's ports and paths.
    let config_text = render(
        &guide_block("toml", 0),
        &[
            ("/var/lib/proxy-acme", at("state").display().to_string()),
            ("127.0.0.1:8555", format!("127.0.0.1:{}", ports.sidecar)),
            ("127.0.0.1:8558", format!("127.0.0.1:{}", ports.ops)),
            ("/run/proxy-acme/admin.sock", at("admin.sock").display().to_string()),
            ("https://acme-staging-v02.api.letsencrypt.org/directory", pebble.directory_url()),
            (
                "# ca_certificate = \"/etc/proxy-acme/ca-root.pem\"",
                format!("ca_certificate = \"{}\"", pebble.minica.root_pem_path.display()),
            ),
            ("/etc/nginx/proxy-acme", at("nginx-certs").display().to_string()),
            ("/run/nginx.pid", at("nginx.pid").display().to_string()),
            (
                "check_command = [\"nginx\", \"-t\", \"-q\"]",
                format!(
                    "check_command = [\"nginx\", \"-t\", \"-q\", \"-p\", \"{}\", \"-c\", \"{}\"]",
                    dir.display(),
                    nginx_conf.display()
                ),
            ),
        ],
    );
    let config = at("proxy-acme.toml");
    write(&config, &config_text);
    let check = proxy_acme(&["check"], &config);
    assert!(check.status.success() && said(&check).contains("ok (1 resolvers, 1 certificates)"), "{}", said(&check));

    // Step 3: the files nginx will load.
    let prepare = proxy_acme(&["prepare"], &config);
    assert!(prepare.status.success() && said(&prepare).contains("prepared www: placeholder"), "{}", said(&prepare));
    assert!(at("nginx-certs/www/live/privkey.pem").is_file());

    // Step 4: nginx-config, its CHANGE lines edited, loaded by nginx.
    let generated = proxy_acme(&["nginx-config"], &config);
    assert!(generated.status.success(), "{}", said(&generated));
    let site = render(
        &String::from_utf8_lossy(&generated.stdout),
        &[
            ("listen 80;", format!("listen 127.0.0.1:{};", ports.http)),
            ("listen 443 ssl;", format!("listen 127.0.0.1:{} ssl;", ports.https)),
            ("http://127.0.0.1:8080", format!("http://127.0.0.1:{}", ports.app)),
        ],
    );
    write(&at("proxy-acme.conf"), &site);
    let whole = format!(
        "{}http {{\n{}include {};\n}}\n",
        Nginx::preamble(dir),
        Nginx::http_paths(dir),
        at("proxy-acme.conf").display()
    );
    let mut nginx = Nginx::start(dir, &whole, ports.https);

    // Step 5: the sidecar.
    let mut sidecar = start_sidecar(dir, &config_text);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    // Step 6: nginx serves the CA's certificate, from the first order.
    let root = pebble.root_pem().await;
    let verified = tls_config(&root, &[]);
    let served = || async {
        let der = tls_leaf(verified.clone(), ("127.0.0.1", ports.https), "www.example.com").await?;
        Ok::<_, String>(serial_of(&der))
    };
    let first = eventually(Duration::from_secs(60), served)
        .await
        .unwrap_or_else(|e| panic!("nginx never served the CA's certificate: {e}\n--- sidecar\n{}", sidecar.tail()));
    let log = std::fs::read_to_string(at("proxy-acme.log")).unwrap_or_default();
    assert!(!log.contains("order failed"), "the first order failed: the guide's order of steps is wrong\n{log}");
    let certs = proxy_acme(&["certs"], &config);
    assert!(said(&certs).contains(&first), "{}", said(&certs));

    let renewed = proxy_acme(&["renew", "www", "--force"], &config);
    assert!(renewed.status.success() && said(&renewed).contains("served"), "{}", said(&renewed));
    let second = served().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(second, first);
    assert!(said(&renewed).contains(&second), "renew named another serial than nginx serves: {}", said(&renewed));

    // The guide's dry run: a whole order (here at Pebble itself: the
    // guide's CA has no staging twin), reported, nothing stored or served.
    let stored = std::fs::read_to_string(at("state/certificates/www/live/cert.pem")).unwrap_or_else(|e| panic!("{e}"));
    let dry = proxy_acme(&["renew", "www", "--dry-run"], &config);
    let report = said(&dry);
    assert!(dry.status.success(), "{report}");
    assert!(report.contains("http-01: account registered, order created, every name proven"), "{report}");
    assert!(report.contains("ok: a real order for this certificate would succeed"), "{report}");
    assert!(!report.contains(&second), "the dry run reported the served certificate: {report}");
    assert_eq!(served().await, Ok(second.clone()), "a dry run changed what nginx serves");
    let after = std::fs::read_to_string(at("state/certificates/www/live/cert.pem")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, stored, "a dry run changed the store");
    nginx.proc.assert_running();
    sidecar.assert_running();
}
