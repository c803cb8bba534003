use super::*;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// RFC 8737 §3: id-pe-acmeIdentifier.
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

fn digest() -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap_or(0) * 7;
    }
    d
}

#[test]
fn the_certificate_carries_the_critical_acme_identifier_and_the_san() {
    let (der, _key) = challenge_certificate("Example.COM", &digest()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let ext = cert.extensions().iter().find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID).expect("extension");
    assert!(ext.critical, "id-pe-acmeIdentifier must be critical");
    // extnValue is the DER of an OCTET STRING holding the 32-byte digest.
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&digest());
    assert_eq!(ext.value, expected.as_slice());
    let san = cert.subject_alternative_name().unwrap().expect("SAN").value;
    assert_eq!(san.general_names, vec![GeneralName::DNSName("example.com")]);
}

#[test]
fn an_ip_identifier_gets_an_ip_san_and_a_reverse_dns_sni() {
    let (der, _key) = challenge_certificate("192.0.2.7", &digest()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("SAN").value;
    assert_eq!(san.general_names, vec![GeneralName::IPAddress(&[192, 0, 2, 7])]);
    assert_eq!(sni_for("192.0.2.7"), "7.2.0.192.in-addr.arpa");
    assert_eq!(sni_for("2001:db8::1"), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    assert_eq!(sni_for("Example.com"), "example.com");
}

#[test]
fn a_digest_of_the_wrong_size_is_an_error() {
    assert!(challenge_certificate("example.com", &[1, 2, 3]).is_err());
}

#[test]
fn answers_only_a_pending_sni_offering_acme_tls() {
    let certs = TlsAlpnCerts::new();
    let acme: [&[u8]; 1] = [ACME_TLS_ALPN];
    assert!(certs.answer(Some("example.com"), acme.into_iter()).is_none(), "nothing pending");
    let guard = certs.publish("example.com", &digest()).unwrap();
    assert!(certs.answer(Some("EXAMPLE.com"), acme.into_iter()).is_some());
    assert!(certs.answer(Some("other.example"), acme.into_iter()).is_none(), "unknown SNI");
    assert!(certs.answer(None, acme.into_iter()).is_none(), "no SNI");
    let h2: [&[u8]; 2] = [b"h2", b"http/1.1"];
    assert!(certs.answer(Some("example.com"), h2.into_iter()).is_none(), "production ALPN");
    assert!(certs.answer(Some("example.com"), std::iter::empty()).is_none(), "no ALPN");
    drop(guard);
    assert!(certs.is_empty());
    assert!(certs.answer(Some("example.com"), acme.into_iter()).is_none(), "withdrawn");
}
