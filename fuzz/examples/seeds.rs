//! Writes the committed seed corpora (`fuzz/corpus/<target>/`): a handful of
//! small, realistic inputs per target, built with the real types (rcgen
//! certificates, hickory DNS messages, envoy-types requests) rather than
//! kept as opaque blobs. Keys are generated afresh, so a run rewrites the
//! certificate seeds with new ones of the same shape.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Certificates are valid from 2025-10-01 to 2026-04-01, around the fuzzing
//! clock (`proxy_acme_fuzz::now`, 2026-01-01).

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const THUMBPRINT: &str = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
/// The TXT value the dns_answers target looks for.
const TXT_VALUE: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

fn main() -> Result {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let pki = Pki::new()?;
    filter_decision(&corpus.join("filter_decision"))?;
    config_parse(&corpus.join("config_parse"), &root.join("../docs"))?;
    import_traefik(&corpus.join("import_traefik"), &pki)?;
    import_certbot(&corpus.join("import_certbot"), &pki)?;
    pem_bundle(&corpus.join("pem_bundle"), &pki)?;
    dns_answers(&corpus.join("dns_answers"))?;
    xds_request(&corpus.join("xds_request"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> Result {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&0u8)
}

// === filter_decision ===

fn filter_decision(dir: &Path) -> Result {
    let path = format!("/.well-known/acme-challenge/{TOKEN}");
    let key_authorization = format!("{TOKEN}.{THUMBPRINT}");
    let full = r#"{"cluster": "proxy_acme_sidecar", "timeout_ms": 2000, "authority": "proxy-acme", "max_token_length": 64, "on_demand": true, "on_demand_per_second": 5}"#;
    let seeds = [
        ("answered", format!("\n{path}\nGET\nexample.com\n200\n{key_authorization}")),
        ("full_config_port", format!("{full}\n{path}\nGET\nWWW.Example.com.:8443\n200\n{key_authorization}")),
        ("unknown_token", format!("\n{path}\nGET\nexample.com\n404\nnot found")),
        ("ipv6_unavailable", format!("\n{path}\nGET\n[2001:db8::1]:8080\n503\nupstream connect error")),
        ("no_response", format!("\n{path}\nGET\n192.0.2.7\n-\n")),
        ("wrong_token_body", format!("\n{path}\nGET\nexample.com\n200\nother.{THUMBPRINT}")),
        ("post", format!("\n{path}\nPOST\nexample.com")),
        ("query_in_token", format!("\n{path}?x=1\nGET\nexample.com")),
        ("no_authority", format!("\n{path}\nGET\n-")),
        ("not_a_challenge", "\n/index.html\nGET\nexample.com".to_owned()),
        ("bad_config", format!("{{\"cluster\": 7}}\n{path}\nGET\nexample.com")),
    ];
    for (name, text) in seeds {
        write(dir, name, text)?;
    }
    Ok(())
}

// === config_parse ===

/// Every TOML block of the documentation: the configurations users copy.
fn config_parse(dir: &Path, docs: &Path) -> Result {
    let mut files: Vec<PathBuf> = fs::read_dir(docs)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "md"));
    files.sort();
    for file in files {
        let text = fs::read_to_string(&file)?;
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut block: Option<String> = None;
        let mut n = 0;
        for line in text.lines() {
            match (&mut block, line.trim_start()) {
                (None, "```toml") => block = Some(String::new()),
                (Some(b), "```") => {
                    n += 1;
                    write(dir, &format!("{stem}_{n}.toml"), b.as_bytes())?;
                    block = None;
                }
                (Some(b), _) => {
                    b.push_str(line);
                    b.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    Ok(())
}

// === certificates ===

/// A CA, leaves under it and loose keys, all for the seeds.
struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl Pki {
    fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Fuzz Intermediate E1");
        validity(&mut params);
        let key = KeyPair::generate()?;
        let ca_pem = params.self_signed(&key)?.pem();
        Ok(Self { ca_pem, ca: Issuer::new(params, key) })
    }

    /// A leaf for `names` under the CA, with a key of `alg`.
    fn leaf(&self, names: &[&str], key: KeyPair) -> Result<Leaf> {
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        validity(&mut params);
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(Leaf { cert_pem: cert.pem(), cert_der: cert.der().to_vec(), key })
    }

    fn fullchain(&self, leaf: &Leaf) -> String {
        format!("{}{}", leaf.cert_pem, self.ca_pem)
    }
}

fn validity(params: &mut CertificateParams) {
    params.not_before = time::macros::datetime!(2025-10-01 0:00 UTC);
    params.not_after = time::macros::datetime!(2026-04-01 0:00 UTC);
}

fn rsa_key() -> Result<(rsa::RsaPrivateKey, KeyPair)> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)?;
    let pair = KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)?;
    Ok((key, pair))
}

fn pkcs1_pem(key: &rsa::RsaPrivateKey) -> Result<String> {
    Ok(key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)?.to_string())
}

/// The SEC1 `ECPrivateKey` inside ring's P-256 PKCS#8 (fixed layout): what
/// Go's `x509.MarshalECPrivateKey` (lego, Traefik) and OpenSSL write.
fn sec1(key: &KeyPair) -> Result<Vec<u8>> {
    let der = key.serialize_der();
    if der.get(27..29) != Some(&[0x04, 0x6d]) {
        return Err("unexpected PKCS#8 layout".into());
    }
    Ok(der[29..].to_vec())
}

fn sec1_pem(key: &KeyPair) -> Result<String> {
    Ok(pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1(key)?)))
}

// === import_traefik ===

fn import_traefik(dir: &Path, pki: &Pki) -> Result {
    let a = pki.leaf(&["a.test"], KeyPair::generate()?)?;
    let bc = pki.leaf(&["b.test", "c.test"], KeyPair::generate()?)?;
    let (r_rsa, r_key) = rsa_key()?;
    let r = pki.leaf(&["r.test"], r_key)?;
    let cert = |main: &str, sans: &[&str], leaf: &Leaf, key_pem: &str| {
        serde_json::json!({
            "domain": {"main": main, "sans": sans},
            "certificate": STANDARD.encode(pki.fullchain(leaf)),
            "key": STANDARD.encode(key_pem),
            "Store": "default"
        })
    };
    let certificates = vec![
        cert("a.test", &[], &a, &a.key.serialize_pem()),
        cert("b.test", &["c.test"], &bc, &sec1_pem(&bc.key)?),
        cert("r.test", &[], &r, &pkcs1_pem(&r_rsa)?),
    ];
    let account = |key_der: &[u8], key_type: &str| {
        serde_json::json!({
            "Email": "ops@example.com",
            "Registration": {
                "body": {"status": "valid", "contact": ["mailto:ops@example.com"]},
                "uri": "https://acme-v02.api.letsencrypt.org/acme/acct/123456789"
            },
            "PrivateKey": STANDARD.encode(key_der),
            "KeyType": key_type
        })
    };
    let account_rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let rsa_account = account(account_rsa.to_pkcs1_der()?.as_bytes(), "RSA2048");
    let ec_account = account(&sec1(&KeyPair::generate()?)?, "EC256");

    let one = serde_json::json!({"le": {"Account": ec_account, "Certificates": certificates}});
    write(dir, "acme_v3_ec_account.json", serde_json::to_string_pretty(&one)?)?;
    let rsa_one = serde_json::json!({"le": {"Account": rsa_account, "Certificates": [certificates[0].clone()]}});
    write(dir, "acme_rsa_account.json", serde_json::to_string_pretty(&rsa_one)?)?;
    let two = serde_json::json!({
        "le": {"Account": ec_account, "Certificates": [certificates[1].clone()]},
        "staging": {"Account": null, "Certificates": null}
    });
    write(dir, "two_resolvers.json", serde_json::to_string(&two)?)?;
    write(dir, "empty_resolver.json", r#"{"le": {"Account": null, "Certificates": null}}"#)?;
    Ok(())
}

// === import_certbot ===

fn import_certbot(dir: &Path, pki: &Pki) -> Result {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let regr = serde_json::json!({
        "body": {"contact": ["mailto:ops@example.com"], "status": "valid"},
        "uri": "https://acme-v02.api.letsencrypt.org/acme/acct/987654321"
    })
    .to_string();

    // certbot's default: an RSA account key, an ECDSA certificate key (PKCS#8).
    let account = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let primes = account.primes();
    let rsa_jwk = serde_json::json!({
        "kty": "RSA",
        "n": b64(&account.n().to_bytes_be()),
        "e": b64(&account.e().to_bytes_be()),
        "d": b64(&account.d().to_bytes_be()),
        "p": b64(&primes[0].to_bytes_be()),
        "q": b64(&primes[1].to_bytes_be()),
    })
    .to_string();
    let a = pki.leaf(&["a.test"], KeyPair::generate()?)?;
    let seed =
        join(&[pki.fullchain(&a).as_bytes(), a.key.serialize_pem().as_bytes(), rsa_jwk.as_bytes(), regr.as_bytes()]);
    write(dir, "rsa_account_ec_cert", seed)?;

    // An ECDSA P-256 account key, a SEC1 certificate key.
    let account = KeyPair::generate()?;
    let sec1 = sec1(&account)?;
    let public = account.public_key_raw();
    let ec_jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "d": b64(&sec1[7..39]), "x": b64(&public[1..33]), "y": b64(&public[33..65]),
    })
    .to_string();
    let bc = pki.leaf(&["b.test", "c.test"], KeyPair::generate()?)?;
    let seed =
        join(&[pki.fullchain(&bc).as_bytes(), sec1_pem(&bc.key)?.as_bytes(), ec_jwk.as_bytes(), regr.as_bytes()]);
    write(dir, "ec_account_sec1_cert", seed)?;

    // An RSA certificate with its key as PKCS#1 (`RSA PRIVATE KEY`).
    let (r_rsa, r_key) = rsa_key()?;
    let r = pki.leaf(&["r.test"], r_key)?;
    let seed = join(&[pki.fullchain(&r).as_bytes(), pkcs1_pem(&r_rsa)?.as_bytes(), ec_jwk.as_bytes(), b"{}"]);
    write(dir, "rsa_cert_no_uri", seed)?;
    Ok(())
}

// === pem_bundle ===

fn pem_bundle(dir: &Path, pki: &Pki) -> Result {
    let a = pki.leaf(&["a.test", "www.a.test"], KeyPair::generate()?)?;
    let chain = pki.fullchain(&a);
    let key = a.key.serialize_pem();
    write(dir, "ec_chain", join(&[chain.as_bytes(), key.as_bytes(), b"a.test,www.a.test"]))?;
    write(dir, "ec_der", [&a.cert_der[..], &a.key.serialize_der(), b"a.test"].concat())?;
    write(dir, "missing_name", join(&[chain.as_bytes(), key.as_bytes(), b"a.test,b.test"]))?;
    let other = KeyPair::generate()?.serialize_pem();
    write(dir, "key_mismatch", join(&[chain.as_bytes(), other.as_bytes(), b""]))?;

    let p384 = pki.leaf(&["192.0.2.1", "2001:db8::1"], KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?)?;
    let seed = join(&[p384.cert_pem.as_bytes(), p384.key.serialize_pem().as_bytes(), b"192.0.2.1"]);
    write(dir, "p384_ip_names", seed)?;

    let (_, r_key) = rsa_key()?;
    let r = pki.leaf(&["r.test"], r_key)?;
    write(dir, "rsa_leaf", join(&[r.cert_pem.as_bytes(), r.key.serialize_pem().as_bytes(), b"R.TEST"]))?;
    Ok(())
}

// === dns_answers ===

fn name(text: &str) -> Result<Name> {
    Ok(Name::from_str(text)?)
}

fn response(asked: &str, record_type: RecordType, code: ResponseCode, answers: Vec<Record>) -> Result<Message> {
    let mut message = Message::new();
    message.set_id(0x5eed).set_message_type(MessageType::Response).set_recursion_desired(true);
    message.set_response_code(code);
    message.add_query(Query::query(name(asked)?, record_type));
    message.add_answers(answers);
    Ok(message)
}

fn dns_answers(dir: &Path) -> Result {
    let record = |owner: &str, data: RData| -> Result<Record> { Ok(Record::from_rdata(name(owner)?, 60, data)) };
    let txt = |strings: &[&str]| RData::TXT(TXT::new(strings.iter().map(|s| (*s).to_owned()).collect()));
    let challenge = "_acme-challenge.a.test.";
    let soa =
        RData::SOA(SOA::new(name("ns1.a.test.")?, name("hostmaster.a.test.")?, 2026010101, 7200, 3600, 1209600, 300));

    let mut messages = vec![
        (
            "txt_present",
            response(challenge, RecordType::TXT, ResponseCode::NoError, vec![record(challenge, txt(&[TXT_VALUE]))?])?,
        ),
        (
            "txt_stale_split",
            response(
                challenge,
                RecordType::TXT,
                ResponseCode::NoError,
                vec![
                    record(challenge, txt(&["old-value"]))?,
                    record(challenge, txt(&["evaGxfADs6pSRb2LAv9I", "Zf17Dt3juxGJ-PCt92wr-oA"]))?,
                ],
            )?,
        ),
        ("servfail", response(challenge, RecordType::TXT, ResponseCode::ServFail, vec![])?),
        (
            "cname",
            response(
                challenge,
                RecordType::CNAME,
                ResponseCode::NoError,
                vec![record(challenge, RData::CNAME(CNAME(name("0f3b1c2a.auth.acme-dns.io.")?)))?],
            )?,
        ),
        ("soa", response("a.test.", RecordType::SOA, ResponseCode::NoError, vec![record("a.test.", soa.clone())?])?),
        (
            "ns",
            response(
                "a.test.",
                RecordType::NS,
                ResponseCode::NoError,
                vec![
                    record("a.test.", RData::NS(NS(name("ns1.a.test.")?)))?,
                    record("a.test.", RData::NS(NS(name("ns2.a.test.")?)))?,
                ],
            )?,
        ),
        (
            "a",
            response(
                "ns1.a.test.",
                RecordType::A,
                ResponseCode::NoError,
                vec![record("ns1.a.test.", RData::A(A(Ipv4Addr::new(192, 0, 2, 53))))?],
            )?,
        ),
        (
            "aaaa",
            response(
                "ns1.a.test.",
                RecordType::AAAA,
                ResponseCode::NoError,
                vec![record("ns1.a.test.", RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53))))?],
            )?,
        ),
    ];
    let mut nxdomain = response(challenge, RecordType::TXT, ResponseCode::NXDomain, vec![])?;
    nxdomain.add_name_server(record("a.test.", soa)?);
    messages.push(("nxdomain_with_soa", nxdomain));
    for (file, message) in messages {
        write(dir, file, message.to_vec()?)?;
    }
    Ok(())
}

// === xds_request ===

/// One record of the xds_request input: flags, u16 LE length, request.
fn record(flags: u8, request: &impl prost::Message) -> Vec<u8> {
    let bytes = request.encode_to_vec();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![flags];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

fn node() -> Option<Node> {
    Some(Node { id: "edge-1".into(), cluster: "edge".into(), ..Default::default() })
}

fn nack() -> Option<Status> {
    Some(Status { code: 3, message: "Failed to load certificate chain from <inline>".into(), details: vec![] })
}

fn xds_request(dir: &Path) -> Result {
    let sotw = |names: &[&str], version: &str, nonce: &str, error: Option<Status>, type_url: &str| DiscoveryRequest {
        version_info: version.into(),
        node: node(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        error_detail: error,
        ..Default::default()
    };
    let mut seed = vec![0u8];
    seed.extend(record(0, &sotw(&["a", "example-com"], "", "", None, SECRET)));
    seed.extend(record(1, &sotw(&["a", "example-com"], "4", "1", None, SECRET)));
    seed.extend(record(3, &sotw(&["a", "example-com"], "5", "2", nack(), SECRET)));
    write(dir, "sotw_ack_nack", seed)?;

    let mut seed = vec![0u8];
    seed.extend(record(0, &sotw(&[], "", "", None, "")));
    seed.extend(record(1, &sotw(&["listener_https"], "", "", None, LISTENER)));
    seed.extend(record(1, &sotw(&["wild"], "4", "7", None, SECRET)));
    write(dir, "sotw_wildcard_then_listener", seed)?;

    let delta =
        |subscribe: &[&str], unsubscribe: &[&str], held: &[(&str, &str)], nonce: &str, error: Option<Status>| {
            DeltaDiscoveryRequest {
                node: node(),
                type_url: SECRET.into(),
                resource_names_subscribe: subscribe.iter().map(|n| (*n).to_owned()).collect(),
                resource_names_unsubscribe: unsubscribe.iter().map(|n| (*n).to_owned()).collect(),
                initial_resource_versions: held
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect::<HashMap<_, _>>(),
                response_nonce: nonce.into(),
                error_detail: error,
                ..Default::default()
            }
        };
    let mut seed = vec![1u8];
    seed.extend(record(0, &delta(&["a", "b"], &[], &[("a", "3f1c0d9e2b7a4c5d6e8f9a0b1c2d3e4f")], "", None)));
    seed.extend(record(1, &delta(&["wild"], &["b"], &[], "1", None)));
    seed.extend(record(7, &delta(&[], &[], &[], "2", nack())));
    write(dir, "delta_subscribe_unsubscribe", seed)?;

    let mut seed = vec![1u8];
    seed.extend(record(0, &delta(&[], &[], &[], "", None)));
    seed.extend(record(1, &delta(&["*"], &[], &[], "1", None)));
    seed.extend(record(1, &delta(&[], &["*"], &[], "2", None)));
    write(dir, "delta_legacy_wildcard", seed)?;
    Ok(())
}
