//! Certificate lifecycle end to end, with real Pebble, Envoy and the sidecar:
//! renewal of short-lived certificates without cutting connections, a CA
//! outage, EAB, revocation, and every key type served by Envoy. Each test
//! owns its stack on free ports, so they run side by side.

use std::time::Duration;

use proxy_acme_e2e::*;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

const DOMAIN: &str = "life.proxy-acme.test";

fn demo_certificate(_: &Pebble) -> String {
    certificate("demo", &[DOMAIN], "pebble")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_before_expiry_and_swaps_without_cutting_connections() {
    // 30 s certificates renew at half-life, ~15 s after issuance.
    let options = PebbleOptions { validity_secs: Some(30), ..Default::default() };
    let mut stack = Stack::start(&options, "", demo_certificate, |c| c).await;
    let first = stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(60)).await;

    let root = stack.pebble.root_pem().await;
    let mut kept = KeptAlive::open(tls_config(&root, &[]), ("127.0.0.1", stack.ports.https), DOMAIN).await;
    assert_eq!(kept.serial(), first);
    assert_eq!(kept.get("/before").await, Ok(200));

    let second = stack.wait_for_new_serial(DOMAIN, Some(&first), Duration::from_secs(60)).await;
    // The connection opened on the old certificate still carries requests.
    assert_eq!(kept.get("/after").await, Ok(200), "renewal cut an established connection");
    // Hot swap: no listener was modified or drained to do it.
    assert_eq!(stack.envoy_stat("listener_manager.listener_modified").await, 0);
    assert_eq!(stack.envoy_stat("listener_manager.total_filter_chains_draining").await, 0);

    let (code, out, err) = stack.cli(&["certs"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("demo") && out.contains(DOMAIN), "{out}");
    assert!(out.contains("renew at") || out.contains("due"), "{out}");
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_outage_keeps_the_last_certificate_and_recovers_alone() {
    let options = PebbleOptions { validity_secs: Some(30), ..Default::default() };
    let mut stack = Stack::start(&options, "", demo_certificate, |c| c).await;
    let first = stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(60)).await;

    // The CA goes down before the renewal (due at ~15 s) and stays down
    // past the certificate's expiry.
    stack.pebble.stop();
    tokio::time::sleep(Duration::from_secs(35)).await;
    let served = stack.served_serial_unverified(DOMAIN).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served, first, "Envoy must keep serving the last certificate, even expired");
    let (_, out, _) = stack.cli(&["certs"]);
    assert!(out.contains("backing off") || out.contains("last error"), "{out}");

    // The CA comes back empty (new root, accounts forgotten, as a reset
    // private CA would): the sidecar re-registers and renews by itself.
    stack.pebble.restart();
    let second = stack.wait_for_new_serial(DOMAIN, Some(&first), Duration::from_secs(150)).await;
    assert_ne!(second, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eab_account_revocation_and_forced_renewal() {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let secrets = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_file = secrets.path().join("eab-hmac");
    write(&key_file, &format!("{hmac}\n"));
    let options = PebbleOptions { eab_keys: vec![("kid-1".into(), hmac.into())], ..Default::default() };
    let eab = format!("eab = {{ kid = \"kid-1\", hmac_key_file = \"{}\" }}", key_file.display());
    let mut stack = Stack::start(&options, &eab, demo_certificate, |c| c).await;

    // Pebble requires EAB: a certificate at all proves the binding worked.
    let first = stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(60)).await;
    assert!(stack.pebble.cert_status(&first).await.contains("Valid"));

    let (code, out, err) = stack.cli(&["revoke", "demo", "--reason", "4"]);
    assert_eq!(code, 0, "revoke failed: {out}{err}");
    let status = stack.pebble.cert_status(&first).await;
    assert!(status.contains("Revoked"), "Pebble says: {status}");
    // Removed from deployment: Envoy no longer serves the revoked certificate.
    let replaced = eventually(Duration::from_secs(10), || async {
        let serial = stack.served_serial_unverified(DOMAIN).await?;
        if serial == first {
            Err("still serving the revoked certificate".to_owned())
        } else {
            Ok(serial)
        }
    })
    .await;
    assert!(replaced.is_ok(), "{replaced:?}");
    let (_, out, _) = stack.cli(&["certs"]);
    assert!(out.contains("revoked"), "{out}");

    // Not re-ordered behind the operator's back; a forced renewal is.
    let (code, _, err) = stack.cli(&["renew", "demo"]);
    assert_ne!(code, 0);
    assert!(err.contains("--force"), "{err}");
    let (code, out, err) = stack.cli(&["renew", "demo", "--force"]);
    assert_eq!(code, 0, "forced renewal failed: {out}{err}");
    let second = stack.wait_for_new_serial(DOMAIN, Some(&first), Duration::from_secs(30)).await;
    assert!(out.contains(&second), "renew printed {out}, Envoy serves {second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type_is_issued_and_served() {
    let kinds = [("ec256", 256), ("ec384", 384), ("rsa2048", 2048), ("rsa4096", 4096)];
    let tail = |pebble: &Pebble| {
        kinds
            .iter()
            .map(|(kind, _)| {
                resolver(pebble, kind, &format!("key_type = \"{kind}\""))
                    + &certificate(kind, &[&format!("{kind}.proxy-acme.test")], kind)
            })
            .collect::<String>()
    };
    let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
    let mut stack = Stack::start(&PebbleOptions::default(), "", tail, |c| with_secrets(c, &names)).await;
    for (kind, bits) in kinds {
        let sni = format!("{kind}.proxy-acme.test");
        stack.wait_for_new_serial(&sni, None, Duration::from_secs(90)).await;
        let der = stack.served(&sni).await.unwrap_or_else(|e| panic!("{e}"));
        let (_, cert) = X509Certificate::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        let served_bits = match cert.public_key().parsed() {
            Ok(PublicKey::EC(point)) => point.key_size() as i32,
            Ok(PublicKey::RSA(rsa)) => rsa.key_size() as i32,
            other => panic!("{kind}: unexpected key {other:?}"),
        };
        assert_eq!(served_bits, bits, "{kind}: Envoy served a {served_bits}-bit key");
    }
}

fn common_name(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let (_, cert) = X509Certificate::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
    let name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_chain_picks_the_alternate_root() {
    // Pebble with a second root: the default chain leads to root 0, the
    // alternate (announced with Link: rel="alternate") to root 1.
    let options = PebbleOptions { alternate_roots: 1, ..Default::default() };
    // The preferred issuer is only known once Pebble runs, so the resolver
    // option is added through the tail hook, which sees Pebble.
    let preferred = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let hook = std::sync::Arc::clone(&preferred);
    let tail = move |pebble: &Pebble| {
        let root1 = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(pebble.root_pem_at(1)));
        let name = common_name(&root1);
        *hook.lock().unwrap_or_else(|e| e.into_inner()) = name.clone();
        resolver(pebble, "alt", &format!("preferred_chain = \"{name}\"")) + &certificate("demo", &[DOMAIN], "alt")
    };
    let stack = Stack::start(&options, "", tail, |c| c).await;
    let root0 = stack.pebble.root_pem_at(0).await;
    let root1 = stack.pebble.root_pem_at(1).await;
    assert_ne!(common_name(&root0), common_name(&root1));
    let sni_addr = ("127.0.0.1", stack.ports.https);
    // Envoy serves the chain to root 1, which root 0 alone cannot verify.
    let via_alt = eventually(Duration::from_secs(60), || tls_leaf(tls_config(&root1, &[]), sni_addr, DOMAIN)).await;
    assert!(via_alt.is_ok(), "{via_alt:?}\n{}", stack.sidecar.tail());
    let via_default = tls_leaf(tls_config(&root0, &[]), sni_addr, DOMAIN).await;
    assert!(via_default.is_err(), "the default chain was served");
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.contains("using the preferred alternate chain"), "{}", stack.sidecar.tail());
    assert!(!preferred.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_address_identifier_is_issued_and_served() {
    // RFC 8738: Pebble validates http://127.0.0.1:<port>/.well-known/... and
    // the filter accepts an IP literal as the host.
    let tail = |_: &Pebble| certificate("demo", &["127.0.0.1"], "pebble");
    let stack = Stack::start(&PebbleOptions::default(), "", tail, |c| c).await;
    let root = stack.pebble.root_pem().await;
    let leaf = eventually(Duration::from_secs(60), || {
        tls_leaf(tls_config(&root, &[]), ("127.0.0.1", stack.ports.https), "127.0.0.1")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.sidecar.tail()));
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap_or_else(|e| panic!("{e}"));
    let sans = format!("{:?}", cert.subject_alternative_name());
    assert!(sans.contains("IPAddress([127, 0, 0, 1])"), "{sans}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_certificate_is_served_until_the_first_issuance() {
    // A CA nobody answers at: the certificate cannot be issued, so Envoy
    // gets the operator's default certificate (Traefik's defaultCertificate).
    let files = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let params = rcgen::CertificateParams::new(vec!["fallback.example".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let default = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    let (cert_file, key_file) = (files.path().join("default.pem"), files.path().join("default.key"));
    write(&cert_file, &default.pem());
    write(&key_file, &key.serialize_pem());
    let tail = |pebble: &Pebble| {
        let down = resolver(pebble, "down", "")
            .replace(&pebble.directory_url(), &format!("https://127.0.0.1:{}/dir", free_port()));
        format!(
            "[default_certificate]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n{down}{}",
            cert_file.display(),
            key_file.display(),
            certificate("demo", &[DOMAIN], "down")
        )
    };
    let stack = Stack::start(&PebbleOptions::default(), "", tail, |c| c).await;
    let expected = serial_of(default.der());
    let served = eventually(Duration::from_secs(20), || async {
        let serial = stack.served_serial_unverified(DOMAIN).await?;
        if serial == expected {
            Ok(())
        } else {
            Err(format!("serving {serial}"))
        }
    })
    .await;
    assert!(served.is_ok(), "{served:?}\n{}", stack.sidecar.tail());
    let (_, out, _) = stack.cli(&["certs"]);
    assert!(out.contains("last error"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_type_orders_a_new_certificate_at_restart() {
    let tail = |p: &Pebble| resolver(p, "keys", "key_type = \"ec256\"") + &certificate("demo", &[DOMAIN], "keys");
    let mut stack = Stack::start(&PebbleOptions::default(), "", tail, |c| c).await;
    let first = stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(60)).await;

    stack.sidecar.kill();
    let config = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));
    stack.sidecar = start_sidecar(&stack.dir, &config.replace("key_type = \"ec256\"", "key_type = \"rsa2048\""));
    let second = stack.wait_for_new_serial(DOMAIN, Some(&first), Duration::from_secs(60)).await;
    let der = stack.served(DOMAIN).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, cert) = X509Certificate::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(cert.public_key().parsed(), Ok(PublicKey::RSA(_))), "{second} is not RSA");
}
