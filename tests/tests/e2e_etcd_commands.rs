//! The operator's commands on the shared etcd store, with the daemon
//! stopped: `certs`, `prepare`, `account rollover`, `revoke` and `import`
//! read and write etcd (sealed, as the daemon does) and nothing under the
//! local `[storage] directory`. A real etcd and a real Pebble; Pebble
//! validates HTTP-01 at the sidecar's own listener.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use proxy_acme_e2e::etcd::EtcdCluster;
use proxy_acme_e2e::*;

const PREFIX: &str = "/proxy-acme-commands/";

fn cli(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(proxy_acme_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A certificate for `domain` from a throwaway CA, valid for 90 days from
/// yesterday: what import takes (it refuses self-signed ones).
fn ca_issued(domain: &str) -> proxy_acme::cert::Bundle {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "proxy-acme test CA (import)");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut leaf = CertificateParams::new(vec![domain.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    (leaf.not_before, leaf.not_after) = (now - time::Duration::days(1), now + time::Duration::days(89));
    let cert = leaf.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
    proxy_acme::cert::Bundle {
        fullchain_pem: cert.pem(),
        key_pem: proxy_acme::cert::SecretPem::new(key.serialize_pem()),
    }
}

/// Every key and value under the test's prefix.
async fn etcd_values(endpoints: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap_or_else(|e| panic!("{e}"));
    let all =
        client.get(PREFIX, Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap_or_else(|e| panic!("{e}"));
    all.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec())).collect()
}

fn value_of(values: &[(String, Vec<u8>)], key: &str) -> Option<Vec<u8>> {
    values.iter().find(|(k, _)| k == &format!("{PREFIX}{key}")).map(|(_, v)| v.clone())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// The serial on a line `  serial:    <hex>` of `certs` for certificate `name`.
fn serial_in_certs(certs: &str, name: &str) -> Option<String> {
    let block = certs.split(&format!("{name}\n")).nth(1)?;
    let line = block.lines().find(|l| l.trim_start().starts_with("serial:"))?;
    Some(line.trim_start().trim_start_matches("serial:").trim().to_owned()).filter(|s| s != "-")
}

/// A Traefik acme.json holding `bundle` for `domain` (resolver `pebble`).
fn traefik_json(domain: &str, fullchain_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::json!({
        "pebble": {
            "Account": null,
            "Certificates": [{
                "domain": { "main": domain },
                "certificate": b64(fullchain_pem),
                "key": b64(key_pem),
                "Store": "default"
            }]
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_commands_read_and_write_the_etcd_store() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().to_owned();
    let etcd = EtcdCluster::start(&dir, 1).await;
    let endpoints = etcd.endpoints();
    let ports = StackPorts::free();
    let pebble = Pebble::start(&dir, ports.http, ports.https);

    let key_file = dir.join("store.key");
    write(&key_file, "q83vEjRWeJq7zN3uASNFZ4mrze8BI0VniavN7wEjRWc=\n");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
    let endpoints_toml: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let etcd_toml = format!(
        "\n[storage.etcd]\nendpoints = [{}]\nprefix = \"{PREFIX}\"\nreplica = \"ops\"\nencryption_key_file = \"{}\"\n",
        endpoints_toml.join(", "),
        key_file.display()
    );
    let sds_dir = dir.join("sds-files");
    let config_for = |certificates: &str| {
        sidecar_config(&dir, &ports, &pebble, "", &format!("{certificates}{etcd_toml}"))
            .replacen("[storage]\n", "[storage]\nstore = \"etcd\"\n", 1)
            // Pebble validates HTTP-01 on `ports.http`: the sidecar answers there itself.
            .replacen(
                &format!("http = \"127.0.0.1:{}\"", ports.sidecar),
                &format!("http = \"127.0.0.1:{}\"", ports.http),
                1,
            )
            .replacen("[envoy]\n", &format!("[envoy]\nsds_directory = \"{}\"\n", sds_dir.display()), 1)
    };
    let demo = certificate("demo", &["demo.etcd.test"], "pebble");
    let config_path = dir.join("proxy-acme.toml");
    let state = dir.join("state");

    // The daemon issues `demo` into etcd, then stops.
    let mut sidecar = start_sidecar(&dir, &config_for(&demo));
    let issued = eventually(Duration::from_secs(60), || async {
        let (_, certs) = cli(&config_path, &["certs"]);
        serial_in_certs(&certs, "demo").ok_or(certs)
    })
    .await
    .unwrap_or_else(|e| panic!("the daemon issued nothing: {e}\n{}", sidecar.tail()));
    sidecar.kill();

    // certs: read from etcd, not "not issued yet".
    let (code, certs) = cli(&config_path, &["certs"]);
    assert_eq!(code, 0, "{certs}");
    assert_eq!(serial_in_certs(&certs, "demo").as_deref(), Some(issued.as_str()), "{certs}");
    assert!(certs.contains("daemon not running"), "certs did not work offline: {certs}");

    // prepare: the stored certificate, not a placeholder.
    let (code, out) = cli(&config_path, &["prepare"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("prepared demo: stored certificate"), "{out}");
    let secret = std::fs::read_to_string(sds_dir.join("demo/secret.json")).unwrap_or_else(|e| panic!("{e}"));
    let secret: serde_json::Value = serde_json::from_str(&secret).unwrap_or_else(|e| panic!("{e}"));
    let chain = secret["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"].as_str().unwrap_or("");
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(chain.as_bytes())
        .map(|d: rustls_pki_types::CertificateDer<'_>| d.to_vec())
        .unwrap_or_else(|e| panic!("prepared chain: {e}"));
    assert_eq!(serial_of(&der), issued, "prepare wrote another certificate");

    // account rollover: a new key for the same account, sealed in etcd.
    let before = value_of(&etcd_values(&endpoints).await, "accounts/pebble").expect("no account in etcd");
    let (code, out) = cli(&config_path, &["account", "rollover", "pebble"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rolled over the key of https://"), "{out}");
    let after = value_of(&etcd_values(&endpoints).await, "accounts/pebble").expect("account gone from etcd");
    assert_ne!(before, after, "the account in etcd still has the old key");

    // revoke: at the CA, and marked in etcd.
    assert!(pebble.cert_status(&issued).await.contains("Valid"));
    let (code, out) = cli(&config_path, &["revoke", "demo"]);
    assert_eq!(code, 0, "{out}");
    let status = pebble.cert_status(&issued).await;
    assert!(status.contains("Revoked"), "Pebble says: {status}");
    let (_, certs) = cli(&config_path, &["certs"]);
    assert!(certs.contains(&format!("revoked ({issued})")), "{certs}");

    // import: a Traefik certificate for a second entry lands in etcd.
    let imported_domain = "imported.etcd.test";
    let bundle = ca_issued(imported_domain);
    let imported_serial = proxy_acme::cert::inspect(&bundle, None).unwrap_or_else(|e| panic!("{e}")).serial_hex;
    let acme_json = dir.join("acme.json");
    write(&acme_json, &traefik_json(imported_domain, &bundle.fullchain_pem, bundle.key_pem.expose()));
    write(&config_path, &config_for(&format!("{demo}\n{}", certificate("imported", &[imported_domain], "pebble"))));
    let (code, out) = cli(&config_path, &["import", "traefik", &acme_json.display().to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 1 certificate"), "{out}");
    let (_, certs) = cli(&config_path, &["certs"]);
    assert_eq!(serial_in_certs(&certs, "imported").as_deref(), Some(imported_serial.as_str()), "{certs}");

    // Nothing was written under the local directory; nothing unsealed in etcd.
    assert_eq!(files_under(&state), Vec::<String>::new(), "files written under [storage] directory");
    let values = etcd_values(&endpoints).await;
    assert!(value_of(&values, "certificates/imported").is_some(), "import wrote nothing to etcd");
    for (key, value) in &values {
        assert!(!String::from_utf8_lossy(value).contains("PRIVATE KEY"), "{key} holds a private key in the clear");
    }

    // The daemon again: the rolled-over key is the one the CA knows now.
    let mut sidecar = start_sidecar(&dir, &config_for(&demo));
    let renewed = eventually(Duration::from_secs(60), || async {
        let (code, out) = cli(&config_path, &["renew", "demo", "--force"]);
        if code == 0 {
            Ok(out)
        } else {
            Err(out)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no renewal with the rolled-over key: {e}\n{}", sidecar.tail()));
    assert!(renewed.contains("renewed demo"), "{renewed}");
    assert!(!renewed.contains(&issued), "{renewed}\n{}", sidecar.tail());
    sidecar.assert_running();
}
