use super::*;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// RFC 8737 §3: id-pe-acmeIdentifier.
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

fn digest() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i).unwrap_or(0) * 7)
}

/// A TLS client's view of the responder: the leaf it was shown, or why not.
async fn handshake(port: u16, sni: &str, alpn: &[&[u8]]) -> Result<Vec<u8>, String> {
    #[derive(Debug)]
    struct AcceptAnything;
    impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(ACME_TLS_ALPN), "the responder must negotiate acme-tls/1");
    conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).ok_or_else(|| "no certificate".into())
}

#[tokio::test]
async fn the_responder_completes_handshakes_only_for_pending_challenges() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let certs = TlsAlpnCerts::new();
    let server = serve_on(listener, certs.clone(), None).unwrap();

    assert!(handshake(port, "example.com", &[ACME_TLS_ALPN]).await.is_err(), "nothing pending: refused");
    let guard = certs.publish("example.com", &digest()).unwrap();
    let der = handshake(port, "example.com", &[ACME_TLS_ALPN]).await.unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(cert.extensions().iter().any(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID && e.critical));

    assert!(handshake(port, "other.example", &[ACME_TLS_ALPN]).await.is_err(), "unknown SNI");
    assert!(handshake(port, "example.com", &[b"h2"]).await.is_err(), "other ALPN");
    assert!(handshake(port, "example.com", &[]).await.is_err(), "no ALPN");
    drop(guard);
    assert!(handshake(port, "example.com", &[ACME_TLS_ALPN]).await.is_err(), "withdrawn");
    server.abort();
}
