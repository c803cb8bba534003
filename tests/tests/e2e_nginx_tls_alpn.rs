//! TLS-ALPN-01 through a real nginx with the shipped
//! nginx/tls-alpn-stream.conf: nginx's `stream` module reads the ALPN with
//! `ssl_preread` and hands `acme-tls/1` to the sidecar's responder; every
//! other connection reaches the https server block unchanged. Pebble
//! validates on nginx's stream port; no Envoy, no HTTP port.

use std::time::Duration;

use proxy_acme_e2e::*;

const DOMAIN: &str = "nginx-alpn.proxy-acme.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_nginx_stream_ssl_preread() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let (public, backend) = (free_port(), free_port());

    // The site's own certificate, served by its https server block.
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let params = rcgen::CertificateParams::new(vec![DOMAIN.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let production = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.join("site.pem"), &production.pem());
    write(&dir.join("site.key"), &key.serialize_pem());
    let production_serial = serial_of(production.der());

    let shipped =
        std::fs::read_to_string(workspace_root().join("nginx/tls-alpn-stream.conf")).unwrap_or_else(|e| panic!("{e}"));
    let stream = render(
        &shipped,
        &[
            ("listen 443;", format!("listen 127.0.0.1:{public};")),
            ("127.0.0.1:8556", format!("127.0.0.1:{}", ports.tls_alpn)),
            ("127.0.0.1:8443", format!("127.0.0.1:{backend}")),
        ],
    );
    let config = format!(
        "{preamble}{stream}\nhttp {{\n{paths}server {{\n  listen 127.0.0.1:{backend} ssl;\n  \
         ssl_certificate {d}/site.pem;\n  ssl_certificate_key {d}/site.key;\n  \
         location / {{ return 200 \"production\\n\"; }}\n}}\n}}\n",
        preamble = Nginx::preamble(dir),
        paths = Nginx::http_paths(dir),
        d = dir.display(),
    );
    let mut nginx = Nginx::start(dir, &config, public);

    let pebble = Pebble::start_with(dir, free_port(), public, &PebbleOptions::default());
    let tail = format!(
        "{}\n{}",
        resolver(&pebble, "alpn", "tls_challenge = {}").replace("http_challenge = {}\n", ""),
        certificate("web", &[DOMAIN], "alpn")
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    // 1. The CA validated through nginx: the stored chain verifies against
    //    Pebble's root for DOMAIN.
    let root = pebble.root_pem().await;
    let fullchain = dir.join("state/certificates/web/live/fullchain.pem");
    let issued = eventually(Duration::from_secs(60), || async {
        let pem = std::fs::read_to_string(&fullchain).map_err(|e| e.to_string())?;
        verify_chain(&root, &pem, DOMAIN)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "no certificate through nginx: {e}\n--- sidecar\n{}\n--- nginx\n{}",
            sidecar.tail(),
            std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
        )
    });
    assert_ne!(issued, production_serial);
    let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
    assert!(log.contains("answered a tls-alpn-01 validation"), "the responder saw no validation:\n{log}");

    // 2. Ordinary TLS through the same port reaches the https server block.
    let (status, body) = https_get(tls_config_unverified(), ("127.0.0.1", public), DOMAIN, "/").await;
    assert_eq!((status, body.as_str()), (200, "production\n"));
    let served = tls_leaf(tls_config(&production.pem(), &["h2", "http/1.1"]), ("127.0.0.1", public), DOMAIN).await;
    assert_eq!(served.map(|der| serial_of(&der)), Ok(production_serial));

    // 3. With no challenge pending, acme-tls/1 gets no certificate.
    let refused = tls_leaf(tls_config_validator(), ("127.0.0.1", public), DOMAIN).await;
    assert!(refused.is_err(), "acme-tls/1 answered outside an order");
    nginx.proc.assert_running();

    // 4. `nginx-config` for this TLS-ALPN-01-only resolver: its https block
    //    listens where the stream block passes ordinary TLS (not :443, which
    //    the stream block owns) and port 80 has no challenge location. A
    //    second real nginx runs it behind the shipped stream block and serves
    //    the issued certificate.
    let out = std::process::Command::new(proxy_acme_bin())
        .args(["nginx-config", "--config"])
        .arg(dir.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!generated.contains("acme-challenge"), "HTTP-01 location for a TLS-ALPN-01 resolver:\n{generated}");
    let (public2, backend2, http2) = (free_port(), free_port(), free_port());
    let site = render(
        &generated,
        &[
            ("listen 80;", format!("listen 127.0.0.1:{http2};")),
            ("listen 127.0.0.1:8443 ssl;", format!("listen 127.0.0.1:{backend2} ssl;")),
            ("proxy_pass http://127.0.0.1:8080;", "return 200 \"issued\\n\";".to_owned()),
        ],
    );
    let stream2 = render(
        &shipped,
        &[
            ("listen 443;", format!("listen 127.0.0.1:{public2};")),
            ("127.0.0.1:8556", format!("127.0.0.1:{}", ports.tls_alpn)),
            ("127.0.0.1:8443", format!("127.0.0.1:{backend2}")),
        ],
    );
    let dir2 = dir.join("generated");
    std::fs::create_dir_all(&dir2).unwrap_or_else(|e| panic!("{e}"));
    let config2 = format!("{}{stream2}\nhttp {{\n{}{site}}}\n", Nginx::preamble(&dir2), Nginx::http_paths(&dir2),);
    let mut generated_nginx = Nginx::start(&dir2, &config2, public2);
    let served = tls_leaf(tls_config(&root, &[]), ("127.0.0.1", public2), DOMAIN).await;
    assert_eq!(
        served.map(|der| serial_of(&der)),
        Ok(issued),
        "nginx-config's https block serves the issued certificate"
    );
    generated_nginx.proc.assert_running();
}
