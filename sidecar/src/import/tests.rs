use std::time::{Duration, SystemTime};

use base64::Engine;

use super::*;
use crate::cert::SecretPem;

/// A self-signed certificate for `names`, valid `days` from yesterday.
fn bundle(names: &[&str], days: i64) -> Bundle {
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) }
}

fn entry(name: &str, domains: &[&str]) -> Certificate {
    Certificate {
        name: name.to_owned(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        resolver: "le".to_owned(),
    }
}

fn acme_json(resolver: &str, certs: &[(&str, &Bundle)]) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let certificates: Vec<serde_json::Value> = certs
        .iter()
        .map(|(main, b)| {
            serde_json::json!({"domain": {"main": main}, "certificate": b64(&b.fullchain_pem), "key": b64(b.key_pem.expose()), "Store": "default"})
        })
        .collect();
    serde_json::json!({ resolver: {"Account": {"Email": "ops@example.com", "PrivateKey": "AAAA", "KeyType": "4096"}, "Certificates": certificates} })
        .to_string()
}

#[test]
fn each_entry_gets_the_matching_certificate_that_expires_last() {
    let (short, long, other) =
        (bundle(&["a.test"], 10), bundle(&["a.test"], 80), bundle(&["b.test", "www.b.test"], 80));
    let text = acme_json("le", &[("a.test", &short), ("a.test", &long), ("b.test", &other)]);
    let found = traefik::candidates("acme.json", &text, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.len(), 3);
    let plan = plan(&[entry("a", &["a.test"]), entry("c", &["c.test"])], found, SystemTime::now());
    assert_eq!(plan.imports.len(), 1);
    assert_eq!(plan.imports[0].0, "a");
    assert_eq!(plan.imports[0].1.bundle.fullchain_pem, long.fullchain_pem);
    let skipped: Vec<&str> = plan.skipped.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(skipped, vec!["acme.json resolver le: a.test", "acme.json resolver le: b.test"]);
}

#[test]
fn expired_and_broken_certificates_are_skipped_with_the_reason() {
    let expired = bundle(&["a.test"], -0);
    let mut broken = bundle(&["a.test"], 80);
    broken.key_pem = bundle(&["a.test"], 80).key_pem;
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    let plan = plan(
        &[entry("a", &["a.test"])],
        vec![Candidate { source: "x".into(), bundle: expired }, Candidate { source: "y".into(), bundle: broken }],
        later,
    );
    assert!(plan.imports.is_empty());
    assert_eq!(plan.skipped[0], ("x".to_owned(), "expired".to_owned()));
    assert_eq!(plan.skipped[1].0, "y");
    assert!(plan.skipped[1].1.contains("key"), "{:?}", plan.skipped[1]);
}

#[test]
fn acme_json_errors_name_the_resolver_and_field() {
    let one = bundle(&["a.test"], 80);
    let two = format!(
        "{{\"le\": {}, \"other\": {{\"Certificates\": null}}}}",
        serde_json::from_str::<serde_json::Value>(&acme_json("le", &[("a.test", &one)]))
            .map(|v| v["le"].to_string())
            .unwrap_or_default()
    );
    let message = |r: Result<Vec<Candidate>, ImportError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message(traefik::candidates("acme.json", &two, None)),
        "acme.json: holds resolvers le, other: choose one with --resolver"
    );
    assert_eq!(traefik::candidates("acme.json", &two, Some("other")).map(|c| c.len()).ok(), Some(0));
    assert_eq!(
        message(traefik::candidates("acme.json", &two, Some("x"))),
        "acme.json: no resolver x (it holds le, other)"
    );
    assert!(message(traefik::candidates("acme.json", "[]", None)).starts_with("acme.json: not a Traefik acme.json"));
    let bad = r#"{"le": {"Certificates": [{"domain": {"main": "a.test"}, "certificate": "***", "key": "***"}]}}"#;
    assert_eq!(
        message(traefik::candidates("acme.json", bad, None)),
        "acme.json: le.Certificates[0].certificate is not base64 PEM"
    );
}

#[test]
fn certbot_lineages_are_read_from_live() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let b = bundle(&["b.test"], 80);
    let lineage = dir.path().join("live/b.test");
    std::fs::create_dir_all(&lineage).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("live/README"), "certbot's").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(lineage.join("fullchain.pem"), &b.fullchain_pem).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(lineage.join("privkey.pem"), b.key_pem.expose()).unwrap_or_else(|e| panic!("{e}"));
    let found = certbot::candidates(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].bundle.fullchain_pem, b.fullchain_pem);
    std::fs::remove_file(lineage.join("privkey.pem")).unwrap_or_else(|e| panic!("{e}"));
    let error = certbot::candidates(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("privkey.pem"), "{error}");
}
