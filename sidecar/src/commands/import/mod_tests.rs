//! Parsing and matching on fixtures built here with rcgen (no key files in
//! the repository).

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rcgen::{CertificateParams, KeyPair};

use super::*;
use crate::store::MemoryStore;

const CONFIG: &str = r#"
[resolvers.pebble]
email = "ops@example.com"
ca_server = "https://ca.test:14000/dir"
http_challenge = {}

[[certificates]]
name = "a"
domains = ["a.test"]
resolver = "pebble"

[[certificates]]
name = "bc"
domains = ["b.test", "c.test"]
resolver = "pebble"
"#;

fn config() -> Config {
    let config: Config = CONFIG.parse().unwrap_or_else(|e| panic!("{e}"));
    config.validate().unwrap_or_else(|e| panic!("{e}"));
    config
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A certificate for `domains` issued by a test CA, valid from 100 days ago
/// until `days` from now (negative: expired): its chain (leaf, then the
/// CA) and its key.
pub(super) fn issued(domains: &[&str], days: i64) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    (chain(domains, now - time::Duration::days(100), now + time::Duration::days(days), &key), key)
}

/// A chain (leaf, then its CA) for `domains` valid from `not_before` to
/// `not_after`, the leaf's key `key`.
pub(super) fn chain(
    domains: &[&str],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    key: &KeyPair,
) -> String {
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}"));
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut params = CertificateParams::new(domains.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    params.not_before = not_before;
    params.not_after = not_after;
    let leaf = params.signed_by(key, &issuer).unwrap_or_else(|e| panic!("{e}"));
    format!("{}{}", leaf.pem(), ca_cert.pem())
}

/// The SEC1 `ECPrivateKey` inside ring's P-256 PKCS#8 (fixed layout), as
/// Go's `x509.MarshalECPrivateKey` would write it (lego's "EC PRIVATE KEY").
fn sec1_of(key: &KeyPair) -> Vec<u8> {
    let der = key.serialize_der();
    assert_eq!(&der[27..29], &[0x04, 0x6d], "unexpected PKCS#8 layout");
    der[29..].to_vec()
}

pub(super) fn sec1_pem(key: &KeyPair) -> String {
    pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1_of(key)))
}

pub(super) fn traefik_cert(main: &str, sans: &[&str], cert_pem: &str, key_pem: &str) -> serde_json::Value {
    serde_json::json!({
        "domain": {"main": main, "sans": sans},
        "certificate": b64(cert_pem.as_bytes()),
        "key": b64(key_pem.as_bytes()),
        "Store": "default"
    })
}

pub(super) fn traefik_json(certificates: Vec<serde_json::Value>, account_key_der: &[u8]) -> String {
    serde_json::json!({
        "le": {
            "Account": {
                "Email": "old@example.com",
                "Registration": {"body": {"status": "valid"}, "uri": "https://ca.test:14000/my-account/1"},
                "PrivateKey": b64(account_key_der),
                "KeyType": "4096"
            },
            "Certificates": certificates
        }
    })
    .to_string()
}

fn day(days: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(days * 86_400)
}

#[tokio::test]
async fn traefik_certificates_are_matched_and_stored_with_a_p256_account() {
    let (a_new, a_new_key) = issued(&["a.test"], 80);
    let (a_old, a_old_key) = issued(&["a.test"], 20);
    let (expired, expired_key) = issued(&["a.test"], -1);
    let (other, other_key) = issued(&["x.test"], 80);
    let (bc, _) = issued(&["b.test", "c.test"], 80);
    let (_, wrong_key) = issued(&["b.test"], 80);
    let account_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let text = traefik_json(
        vec![
            traefik_cert("a.test", &[], &a_old, &a_old_key.serialize_pem()),
            traefik_cert("a.test", &[], &a_new, &sec1_pem(&a_new_key)),
            traefik_cert("a.test", &[], &expired, &expired_key.serialize_pem()),
            traefik_cert("x.test", &[], &other, &other_key.serialize_pem()),
            traefik_cert("b.test", &["c.test"], &bc, &wrong_key.serialize_pem()),
        ],
        &sec1_of(&account_key),
    );
    let found = traefik::parse(&text, Path::new("acme.json"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.certificates.len(), 5);
    assert!(!format!("{found:?}").contains("PRIVATE KEY"), "Debug shows key material");

    let plan = plan(&config(), found, SystemTime::now());
    assert_eq!(plan.certificates.len(), 1, "{plan:?}");
    assert_eq!(plan.certificates[0].name, "a");
    assert!(plan.certificates[0].info.not_after > day(70));
    let why = |needle: &str| plan.skipped.iter().any(|(_, why)| why.contains(needle));
    assert!(why("expired on"), "{:?}", plan.skipped);
    assert!(why("matches no [[certificates]] entry (it covers x.test)"), "{:?}", plan.skipped);
    assert!(why("private key does not belong"), "{:?}", plan.skipped);
    assert!(why("another certificate for a expires later"), "{:?}", plan.skipped);
    assert_eq!(plan.skipped.len(), 4);
    assert_eq!(plan.accounts.len(), 1);
    assert_eq!(plan.accounts[0].resolver, "pebble");

    let store = MemoryStore::new();
    let summary = apply(plan, &store).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((summary.certificates, summary.accounts, summary.skipped), (1, 1, 4));
    let rendered = summary.render();
    assert!(rendered.ends_with("imported 1 certificate and 1 account, skipped 4\n"), "{rendered}");
    assert!(!rendered.contains("PRIVATE"), "{rendered}");

    let stored = store.load_certificate("a").await.ok().flatten().unwrap_or_else(|| panic!("not stored"));
    assert_eq!(stored.fullchain_pem, a_new);
    assert!(stored.key_pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"), "stored key is not PKCS#8");
    let account = store.load_account("pebble").await.ok().flatten().unwrap_or_else(|| panic!("no account"));
    let json: serde_json::Value = serde_json::from_slice(&account).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["ca_server"], "https://ca.test:14000/dir");
    assert_eq!(json["contact"], serde_json::json!(["mailto:old@example.com"]));
    assert_eq!(json["credentials"]["id"], "https://ca.test:14000/my-account/1");
    let credentials: Result<instant_acme::AccountCredentials, _> = serde_json::from_value(json["credentials"].clone());
    assert!(credentials.is_ok());

    // A second run changes nothing.
    let again = traefik::parse(&text, Path::new("acme.json"), None).unwrap_or_else(|e| panic!("{e}"));
    let summary = apply(plan_of(again), &store).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((summary.certificates, summary.accounts), (0, 0), "{}", summary.render());
    assert!(summary.render().contains("already stored as a"), "{}", summary.render());
    assert!(summary.render().contains("already has an account"), "{}", summary.render());
}

pub(super) fn plan_of(found: Found) -> Plan {
    plan(&config(), found, SystemTime::now())
}

#[test]
fn an_rsa_account_key_is_reported_not_imported() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap_or_else(|e| panic!("{e}"));
    let der = rsa.to_pkcs1_der().unwrap_or_else(|e| panic!("{e}"));
    let text = traefik_json(vec![], der.as_bytes());
    let plan = plan_of(traefik::parse(&text, Path::new("acme.json"), None).unwrap_or_else(|e| panic!("{e}")));
    assert!(plan.accounts.is_empty());
    let (what, why) = &plan.skipped[0];
    assert_eq!(what, "account traefik le");
    assert!(why.contains("RSA 2048 key cannot be used") && why.contains("new account will be registered"), "{why}");

    // An RSA certificate key in PKCS#1 ("RSA PRIVATE KEY") is converted.
    let pem = rsa.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap_or_else(|e| panic!("{e}"));
    assert!(keys::key_pem_to_pkcs8(&pem).expose().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn an_account_on_another_ca_is_not_attached() {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let text = traefik_json(vec![], &key.serialize_der()).replace("https://ca.test:14000/", "https://other.test/");
    let plan = plan_of(traefik::parse(&text, Path::new("acme.json"), None).unwrap_or_else(|e| panic!("{e}")));
    assert!(plan.accounts.is_empty());
    assert!(plan.skipped[0].1.contains("belongs to https://other.test"), "{:?}", plan.skipped);
}

#[test]
fn traefik_errors_name_the_file_and_the_field() {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut two: serde_json::Value =
        serde_json::from_str(&traefik_json(vec![], &key.serialize_der())).unwrap_or_else(|e| panic!("{e}"));
    two["other"] = two["le"].clone();
    let err = |text: &str, resolver: Option<&str>| match traefik::parse(text, Path::new("/x/acme.json"), resolver) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let several = err(&two.to_string(), None);
    assert!(several.starts_with("/x/acme.json: ") && several.contains("--resolver: le, other"), "{several}");
    assert!(err(&two.to_string(), Some("nope")).contains("no resolver named nope"));
    assert!(traefik::parse(&two.to_string(), Path::new("a"), Some("other")).is_ok());

    let bad =
        traefik_json(vec![serde_json::json!({"domain": {"main": "a.test"}, "certificate": "%%", "key": ""})], &[]);
    assert!(err(&bad, None).contains("le.Certificates[0].certificate: not base64"), "{}", err(&bad, None));
    let no_key = traefik_json(vec![], &[]);
    assert!(err(&no_key, None).contains("le.Account.PrivateKey: missing"));
    assert!(err("[1, 2]", None).contains("not a Traefik acme.json"));
    let missing =
        traefik_json(vec![serde_json::json!({"domain": {"main": "a.test"}, "key": ""})], &key.serialize_der());
    assert!(err(&missing, None).contains("missing field `certificate`"), "{}", err(&missing, None));
}

pub(super) fn jwk_p256(key: &KeyPair) -> serde_json::Value {
    let der = key.serialize_der();
    let url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public = &der[der.len() - 64..];
    serde_json::json!({"kty": "EC", "crv": "P-256", "d": url(&der[36..68]), "x": url(&public[..32]), "y": url(&public[32..])})
}

#[test]
fn certbot_directory_is_read_through_its_symlinks() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let (cert, key) = issued(&["b.test", "c.test"], 60);
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(path.parent().unwrap_or(dir)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    };
    write(&dir.join("archive/b.test/fullchain1.pem"), &cert);
    write(&dir.join("archive/b.test/privkey1.pem"), &sec1_pem(&key));
    std::fs::create_dir_all(dir.join("live/b.test")).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.join("live/README"), "certbot's README");
    for (link, target) in [("fullchain.pem", "fullchain1.pem"), ("privkey.pem", "privkey1.pem")] {
        std::os::unix::fs::symlink(format!("../../archive/b.test/{target}"), dir.join("live/b.test").join(link))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let account_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let account = dir.join("accounts/ca.test:14000/dir/0123abcd");
    write(&account.join("private_key.json"), &jwk_p256(&account_key).to_string());
    write(
        &account.join("regr.json"),
        r#"{"body": {"contact": ["mailto:c@example.com"]}, "uri": "https://ca.test:14000/my-account/7"}"#,
    );
    write(&account.join("meta.json"), r#"{"creation_host": "h"}"#);

    let found = certbot::read(dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.certificates.len(), 1);
    assert_eq!(found.certificates[0].origin, "certbot live/b.test");
    assert_eq!(found.accounts.len(), 1);
    assert!(matches!(found.accounts[0].key, AccountKey::P256(_)));
    assert_eq!(found.accounts[0].contact, vec!["mailto:c@example.com"]);
    let plan = plan_of(found);
    assert_eq!(plan.certificates.len(), 1, "{plan:?}");
    assert_eq!(plan.certificates[0].name, "bc");
    assert_eq!(plan.accounts.len(), 1);

    // Broken inputs name the file and the field.
    write(&account.join("regr.json"), r#"{"body": {}}"#);
    let e = certbot::read(dir).map(|_| ()).unwrap_err_or_panic();
    assert!(e.contains("regr.json: uri: missing"), "{e}");
    write(&account.join("private_key.json"), r#"{"kty": "EC", "crv": "P-256", "d": "AAAA", "x": "", "y": ""}"#);
    let e = certbot::read(dir).map(|_| ()).unwrap_err_or_panic();
    assert!(e.contains("private_key.json: P-256"), "{e}");
    let e = certbot::read(&dir.join("live")).map(|_| ()).unwrap_err_or_panic();
    assert!(e.contains("not a certbot config directory"), "{e}");
}

trait UnwrapErr {
    fn unwrap_err_or_panic(self) -> String;
}

impl UnwrapErr for Result<(), ImportError> {
    fn unwrap_err_or_panic(self) -> String {
        match self {
            Ok(()) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }
}

#[test]
fn certbot_rsa_jwk_is_classified() {
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
    let jwk = serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB", "d": "AQAB"});
    let account = certbot::parse_account(&jwk.to_string(), r#"{"uri": "https://ca.test/acct/1"}"#, Path::new("d"), "x")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(account.key, AccountKey::Unusable("RSA 2048".into()));
    assert!(!format!("{account:?}").contains(&n));
}

#[tokio::test]
async fn a_stored_certificate_that_expires_later_is_kept() {
    let (newer, newer_key) = issued(&["a.test"], 80);
    let (older, older_key) = issued(&["a.test"], 30);
    let store = MemoryStore::new();
    let bundle = Bundle { fullchain_pem: newer, key_pem: cert::SecretPem::new(newer_key.serialize_pem()) };
    store.save_certificate("a", &bundle).await.unwrap_or_else(|e| panic!("{e}"));
    let found = Found {
        certificates: vec![FoundCertificate {
            origin: "test".into(),
            bundle: Bundle { fullchain_pem: older, key_pem: cert::SecretPem::new(older_key.serialize_pem()) },
        }],
        accounts: Vec::new(),
        skipped: Vec::new(),
    };
    let summary = apply(plan_of(found), &store).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.certificates, 0);
    assert!(summary.render().contains("expires no earlier"), "{}", summary.render());
    assert_eq!(store.load_certificate("a").await.ok().flatten(), Some(bundle));
}

#[test]
fn a_certificate_with_another_key_type_is_skipped_with_the_fix() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap_or_else(|e| panic!("{e}"));
    let pem = rsa.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap_or_else(|e| panic!("{e}"));
    let key_pem = keys::key_pem_to_pkcs8(&pem);
    let key = KeyPair::from_pkcs8_pem_and_sign_algo(key_pem.expose(), &rcgen::PKCS_RSA_SHA256)
        .unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    let fullchain_pem = chain(&["a.test"], now - time::Duration::days(1), now + time::Duration::days(30), &key);
    let found = Found {
        certificates: vec![FoundCertificate { origin: "rsa".into(), bundle: Bundle { fullchain_pem, key_pem } }],
        accounts: Vec::new(),
        skipped: Vec::new(),
    };
    let plan = plan_of(found);
    assert!(plan.certificates.is_empty());
    let why = &plan.skipped[0].1;
    assert!(why.contains("rsa2048") && why.contains("key_type = \"ec256\"") && why.contains("ordered again"), "{why}");
}
