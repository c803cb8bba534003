use super::*;

fn issued(domains: &[&str]) -> Bundle {
    let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
    placeholder(&domains).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn inspect_reads_names_validity_and_splits_the_chain() {
    let bundle = issued(&["example.com", "www.example.com"]);
    let info = inspect(&bundle, Some(&["www.example.com".to_owned()])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.names, vec!["example.com", "www.example.com"]);
    assert!(info.not_after > info.not_before);
    let (leaf_pem, chain_pem) = bundle.split().unwrap_or_else(|e| panic!("{e}"));
    assert!(leaf_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(leaf_pem, bundle.fullchain_pem);
    assert!(chain_pem.is_empty());
    assert_eq!(info.key_type, Some(KeyType::Ec256));
    assert!(!info.serial_hex.contains(':'));
}

#[test]
fn a_key_from_another_certificate_is_refused() {
    let a = issued(&["a.example"]);
    let b = issued(&["a.example"]);
    let mixed = Bundle { fullchain_pem: a.fullchain_pem, key_pem: b.key_pem };
    assert!(matches!(inspect(&mixed, None), Err(CertError::KeyMismatch)));
}

#[test]
fn missing_names_and_garbage_are_refused() {
    let bundle = issued(&["a.example"]);
    assert!(
        matches!(inspect(&bundle, Some(&["b.example".to_owned()])), Err(CertError::MissingName(n)) if n == "b.example")
    );
    let empty = Bundle { fullchain_pem: String::new(), key_pem: bundle.key_pem.clone() };
    assert!(matches!(inspect(&empty, None), Err(CertError::Empty)));
    let truncated = Bundle { fullchain_pem: bundle.fullchain_pem[..100].to_owned(), key_pem: bundle.key_pem.clone() };
    assert!(inspect(&truncated, None).is_err());
    let bad_key = Bundle { fullchain_pem: bundle.fullchain_pem, key_pem: SecretPem::new("nope".into()) };
    assert!(matches!(inspect(&bad_key, None), Err(CertError::Key(_))));
}

#[test]
fn debug_never_shows_the_private_key() {
    let bundle = issued(&["a.example"]);
    let shown = format!("{bundle:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("SecretPem(...)"));
}

#[test]
fn csr_carries_the_names_and_key_types_generate() {
    for key_type in [KeyType::Ec256, KeyType::Ec384, KeyType::Rsa2048] {
        let key = generate_key(key_type).unwrap_or_else(|e| panic!("{e}"));
        let csr =
            csr_der(&["a.example".to_owned(), "b.example".to_owned()], &key, true).unwrap_or_else(|e| panic!("{e}"));
        let (_, parsed) = x509_parser::certification_request::X509CertificationRequest::from_der(&csr)
            .unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{:?}", parsed.requested_extensions().map(|e| e.collect::<Vec<_>>()));
        assert!(text.contains("a.example") && text.contains("b.example"), "{text}");
    }
}

#[test]
fn self_signed_leaves_are_told_from_issued_ones() {
    assert!(self_signed(&issued(&["a.example"])).unwrap_or_else(|e| panic!("{e}")));

    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Test CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateParams::new(vec!["a.example".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let cert = leaf.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
    let bundle = Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) };
    assert!(!self_signed(&bundle).unwrap_or_else(|e| panic!("{e}")));

    // An issuer name that is not its subject does not hide a self-signature.
    let mut forged = CertificateParams::new(vec!["a.example".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    forged.distinguished_name.push(DnType::CommonName, "a.example");
    let own_params = CertificateParams::default();
    let own = rcgen::Issuer::from_params(&own_params, &key);
    let cert = forged.signed_by(&key, &own).unwrap_or_else(|e| panic!("{e}"));
    let bundle = Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) };
    assert!(self_signed(&bundle).unwrap_or_else(|e| panic!("{e}")));
}

#[test]
fn a_chain_holding_a_private_key_is_refused() {
    let bundle = issued(&["a.example"]);
    let leaky = Bundle {
        fullchain_pem: format!("{}{}", bundle.fullchain_pem, bundle.key_pem.expose()),
        key_pem: bundle.key_pem,
    };
    assert!(matches!(inspect(&leaky, None), Err(CertError::KeyInChain)));
}

/// The subject of a CSR as the CA parses it.
fn csr_subject(domains: &[&str], common_name: bool) -> String {
    let key = generate_key(KeyType::Ec256).unwrap_or_else(|e| panic!("{e}"));
    let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
    let csr = csr_der(&domains, &key, common_name).unwrap_or_else(|e| panic!("{e}"));
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap_or_else(|e| panic!("{e}"));
    let sans = format!("{:?}", parsed.requested_extensions().map(|e| e.collect::<Vec<_>>()));
    for domain in &domains {
        let in_san = sans.contains(domain.as_str()) || domain.parse::<std::net::IpAddr>().is_ok();
        assert!(in_san, "{domain} not in the SANs: {sans}");
    }
    parsed.certification_request_info.subject.to_string()
}

#[test]
fn the_csr_common_name_is_a_short_dns_name_or_nothing() {
    assert_eq!(csr_subject(&["a.example", "b.example"], true), "CN=a.example");
    assert_eq!(csr_subject(&["a.example"], false), "", "common_name = false");
    assert_eq!(csr_subject(&["192.0.2.1", "a.example"], true), "", "never an IP address");
    assert_eq!(csr_subject(&["2001:db8::1"], true), "");
    let long = format!("{}.example.com", "a".repeat(60));
    assert_eq!(csr_subject(&[&long, "b.example"], true), "", "over 64 bytes");
    let edge = format!("{}.example", "a".repeat(56));
    assert_eq!(edge.len(), 64);
    assert_eq!(csr_subject(&[&edge], true), format!("CN={edge}"));
}
