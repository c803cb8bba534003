//! The failures every newcomer meets once, against a real Pebble, say what
//! to do (issue 27): the CA's own words first, then the usual cause.
//!
//! - HTTP-01 where port 80 answers 404 (the challenge location is not in
//!   place): "is the challenge location in place?".
//! - TLS-ALPN-01 where port 443 answers without `acme-tls/1` (the filter
//!   chain order, or no `ssl_preread`): the chain order and `ssl_preread`.
//!
//! - A private CA whose HTTPS certificate is a self-signed `CA:TRUE`
//!   certificate, and a CA that is not there: the error carries webpki's
//!   reason and the address refused.
//!
//! One Pebble and one sidecar; the proxies are stand-ins that make exactly
//! these mistakes.

use std::sync::Arc;
use std::time::Duration;

use proxy_acme_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Port 80 of a proxy without the challenge location: 404 for everything.
async fn not_found_server(port: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = "no such page";
                let answer = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    })
}

/// Port 443 of a proxy that keeps every handshake for itself: TLS with its
/// own certificate and no `acme-tls/1`.
async fn tls_without_alpn(port: u16) -> tokio::task::JoinHandle<()> {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let cert = rcgen::CertificateParams::new(vec!["proxy.test".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .unwrap_or_else(|e| panic!("{e}"));
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap_or_else(|e| panic!("{e}"));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap_or_else(|e| panic!("{e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(socket).await {
                    let _ = tls.shutdown().await;
                }
            });
        }
    })
}

/// A private CA whose HTTPS certificate is its own self-signed `CA:TRUE`
/// certificate (common in private setups): webpki refuses a CA certificate
/// as an end entity. Returns the PEM to trust.
async fn ca_true_server(port: u16) -> (tokio::task::JoinHandle<()>, String) {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap_or_else(|e| panic!("{e}"));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap_or_else(|e| panic!("{e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(socket).await;
            });
        }
    });
    (task, cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_and_a_missing_alpn_chain_say_what_to_fix() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let tls_port = free_port();
    let _http = not_found_server(ports.http).await;
    let _tls = tls_without_alpn(tls_port).await;
    let pebble = Pebble::start_with(
        dir,
        ports.http,
        tls_port,
        &PebbleOptions { authz_reuse: Some(0), ..PebbleOptions::default() },
    );
    let alpn = resolver(&pebble, "alpn", "").replace("http_challenge = {}\n", "tls_challenge = {}\n");
    // A private CA with a CA:TRUE certificate on its HTTPS, and a CA that is not there.
    let ca_true_port = free_port();
    let (_ca_true, ca_true_pem) = ca_true_server(ca_true_port).await;
    write(&dir.join("ca-true.pem"), &ca_true_pem);
    let unreachable_port = free_port();
    let tail = format!(
        "{alpn}\n[resolvers.private]\nca_server = \"https://127.0.0.1:{ca_true_port}/dir\"\nca_certificate = \"{}\"\n\
         http_challenge = {{}}\n\n[resolvers.gone]\nca_server = \"https://127.0.0.1:{unreachable_port}/dir\"\n\
         http_challenge = {{}}\n\n{}\n{}\n{}\n{}",
        dir.join("ca-true.pem").display(),
        certificate("web", &["web.first-day.test"], "pebble"),
        certificate("tls", &["tls.first-day.test"], "alpn"),
        certificate("private", &["private.first-day.test"], "private"),
        certificate("gone", &["gone.first-day.test"], "gone"),
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    let log = || std::fs::read_to_string(dir.join("proxy-acme.log")).unwrap_or_default();
    let failed = |certificate: &'static str| {
        let log = log();
        let line = log
            .lines()
            .find(|l| l.contains("order failed") && l.contains(&format!("certificate={certificate}")))
            .map(str::to_owned);
        async move { line.ok_or_else(|| format!("no failed order for {certificate} yet")) }
    };
    let http01 = eventually(Duration::from_secs(60), || failed("web"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert!(http01.contains("404"), "the CA's words come first: {http01}");
    assert!(http01.contains("hint: is the challenge location in place?"), "{http01}");
    assert!(http01.contains("proxy-acme nginx-config") && http01.contains("port-80 listener"), "{http01}");

    let alpn01 = eventually(Duration::from_secs(60), || failed("tls"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert!(alpn01.contains("acme-tls/1"), "{alpn01}");
    assert!(alpn01.contains("hint: the CA's handshake with ALPN acme-tls/1 did not reach the sidecar"), "{alpn01}");
    assert!(alpn01.contains("filter chain") && alpn01.contains("ssl_preread"), "{alpn01}");

    // Errors carry their cause: webpki's reason for the CA:TRUE server, the
    // address for the CA that is not there.
    let private = eventually(Duration::from_secs(60), || failed("private"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert!(private.contains("CaUsedAsEndEntity"), "webpki's reason is missing: {private}");
    assert!(private.contains("hint: the CA server presents a CA certificate (CA:TRUE)"), "{private}");
    let gone = eventually(Duration::from_secs(60), || failed("gone"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert!(
        gone.contains(&format!("127.0.0.1:{unreachable_port}"))
            && gone.to_lowercase().contains("connection refused")
            && gone.contains("hint: nothing listens at that address"),
        "{gone}"
    );

    // `certs` shows the same advice to whoever looks later.
    let certs = std::process::Command::new(proxy_acme_bin())
        .args(["certs", "--config"])
        .arg(dir.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = String::from_utf8_lossy(&certs.stdout);
    assert!(shown.contains("is the challenge location in place?"), "{shown}");
    sidecar.assert_running();
}
