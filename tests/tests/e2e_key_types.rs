//! Two key types for the same names (`key_types = ["ec256", "rsa2048"]`):
//! two certificates, `demo` and `demo-rsa2048`, each ordered at Pebble and
//! served by the real Envoy from one filter chain holding both secrets. A
//! client that offers only RSA signature algorithms gets the RSA
//! certificate; one that offers ECDSA gets the ECDSA one. `nginx-config`
//! prints both pairs, and nginx loads them.

use std::process::Command;
use std::time::Duration;

use proxy_acme_e2e::nginx::Nginx;
use proxy_acme_e2e::stack::{certificate, with_secrets, Stack};
use proxy_acme_e2e::*;

const DOMAIN: &str = "demo.keytypes.test";

/// The bits of the server key `openssl s_client` reports when it offers only `sigalgs`.
fn served_key_bits(port: u16, root: &std::path::Path, sigalgs: &str) -> Result<u32, String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", DOMAIN, "-sigalgs", sigalgs])
        .arg("-CAfile")
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let bits = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Server public key is ").and_then(|r| r.split(' ').next()))
        .and_then(|n| n.parse().ok());
    let verified = text.contains("Verify return code: 0 (ok)");
    match bits {
        Some(bits) if verified => Ok(bits),
        _ => Err(format!("no verified handshake: {}", text.lines().rev().take(6).collect::<Vec<_>>().join(" | "))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_the_key_type_it_can_verify() {
    require("openssl", "apt-get install openssl");
    let demo = format!("{}key_types = [\"ec256\", \"rsa2048\"]\n", certificate("demo", &[DOMAIN], "pebble"));
    let stack =
        Stack::start(&PebbleOptions::default(), "", |_| demo, |c| with_secrets(c, &["demo", "demo-rsa2048"])).await;
    let root = stack.dir.join("pebble-root.pem");
    write(&root, &stack.pebble.root_pem().await);
    let port = stack.ports.https;
    let rsa = eventually(Duration::from_secs(60), || async {
        match served_key_bits(port, &root, "RSA-PSS+SHA256:RSA+SHA256") {
            Ok(2048) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    rsa.unwrap_or_else(|e| {
        panic!("an RSA-only client is not served the RSA certificate: {e}\n{}", stack.sidecar.tail())
    });
    let ecdsa = eventually(Duration::from_secs(30), || async {
        match served_key_bits(port, &root, "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256") {
            Ok(256) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    ecdsa.unwrap_or_else(|e| panic!("a client offering ECDSA is not served the ECDSA certificate: {e}"));

    // Two certificates in the store, two in `certs`, each of its key type.
    let (_, certs, _) = stack.cli(&["certs"]);
    assert!(certs.contains("demo\n") && certs.contains("demo-rsa2048\n"), "{certs}");
    for (name, want) in [("demo", "EC"), ("demo-rsa2048", "RSA")] {
        let pem = std::fs::read_to_string(stack.dir.join(format!("state/certificates/{name}/live/cert.pem")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let cert = parsed.parse_x509().unwrap_or_else(|e| panic!("{e}"));
        let kind = match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(_)) => "RSA",
            Ok(x509_parser::public_key::PublicKey::EC(_)) => "EC",
            _ => "?",
        };
        assert_eq!(kind, want, "{name}");
    }

    // nginx-config prints both pairs; a real nginx loads them and, like
    // Envoy, serves each client the key type it can verify.
    let (code, conf, err) = stack.cli(&["nginx-config"]);
    assert_eq!(code, 0, "{err}");
    for name in ["demo", "demo-rsa2048"] {
        assert!(conf.contains(&format!("certificates/{name}/live/fullchain.pem;")), "{conf}");
    }
    let (http, https) = (free_port(), free_port());
    let site = render(
        &conf,
        &[
            ("listen 80;", format!("listen 127.0.0.1:{http};")),
            ("listen 443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
        ],
    );
    let dir = &stack.dir;
    let whole = format!("{}http {{\n{}{site}\n}}\n", Nginx::preamble(dir), Nginx::http_paths(dir));
    let _nginx = Nginx::start(dir, &whole, https);
    assert_eq!(served_key_bits(https, &root, "RSA-PSS+SHA256:RSA+SHA256"), Ok(2048), "nginx, RSA-only client");
    assert_eq!(served_key_bits(https, &root, "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256"), Ok(256), "nginx, ECDSA client");
}
