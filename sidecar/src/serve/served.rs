//! The served-certificate check: connect to each configured endpoint as a
//! TLS client would, with SNI = each name of each certificate, and compare
//! the certificate the proxy serves with the one the sidecar deployed. A
//! mismatch (Envoy NACKed the update, a listener that does not use the
//! secret, nginx not reloaded) is a metric, a `/readyz` failure and a
//! warning naming what is served instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::serve::admin::Statuses;
use crate::serve::health::{Check, Readiness};

/// Connect to each endpoint with SNI = each name of each certificate and
/// compare the served certificate with the deployed one.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedCheck {
    /// TLS endpoints, `host:port` (the proxy's HTTPS listeners).
    pub endpoints: Vec<String>,
    /// Seconds between two rounds.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Connect and handshake timeout per name, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_interval() -> u64 {
    60
}

fn default_timeout() -> u64 {
    3000
}

/// The SNI used to check a name: a wildcard is checked with one label in
/// its place.
pub fn probe_name(domain: &str) -> String {
    match domain.strip_prefix("*.") {
        Some(base) => format!("proxy-acme-check.{base}"),
        None => domain.to_owned(),
    }
}

/// Compares the served leaf with the deployed serial (hex, no colons, as
/// [`crate::cert::CertInfo::serial_hex`]). The error describes what is
/// served instead.
pub fn compare(expected_serial: &str, served_der: &[u8]) -> Check {
    let (_, leaf) = X509Certificate::from_der(served_der).map_err(|e| format!("unparsable certificate served: {e}"))?;
    let served = leaf.raw_serial_as_string().replace(':', "");
    if served.eq_ignore_ascii_case(expected_serial) {
        return Ok(());
    }
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Err(format!(
        "serves serial {served} (names {names:?}, issuer \"{}\", not after {}) instead of {expected_serial}",
        leaf.issuer(),
        leaf.validity().not_after
    ))
}

/// One TLS handshake with `endpoint` (host:port) and SNI `sni`; the served
/// leaf certificate. Signatures are checked, the chain is not: the point is
/// to see what is served, trusted or not.
pub async fn fetch_leaf(endpoint: &str, sni: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let server_name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("SNI {sni}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(client_config()?);
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(endpoint).await.map_err(|e| format!("connect: {e}"))?;
        let tls = connector.connect(server_name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let leaf = session.peer_certificates().and_then(|c| c.first()).ok_or("no certificate served")?;
        Ok(leaf.as_ref().to_vec())
    };
    tokio::time::timeout(timeout, handshake).await.unwrap_or_else(|_| Err(format!("no handshake within {timeout:?}")))
}

/// Checks every deployed certificate on every endpoint, every
/// `interval_secs`, until dropped.
pub async fn run(config: ServedCheck, statuses: Statuses, readiness: Readiness) {
    let timeout = Duration::from_millis(config.timeout_ms);
    let mut last: BTreeMap<String, Check> = BTreeMap::new();
    loop {
        for status in statuses.all() {
            let Some(serial) = &status.serial else { continue };
            for endpoint in &config.endpoints {
                let mut result = Ok(());
                for domain in &status.domains {
                    let sni = probe_name(domain);
                    let checked = match fetch_leaf(endpoint, &sni, timeout).await {
                        Ok(der) => compare(serial, &der),
                        Err(e) => Err(e),
                    };
                    if let Err(why) = checked {
                        result = Err(format!("{endpoint} with SNI {sni}: {why}"));
                        break;
                    }
                }
                crate::serve::metrics::metrics().served(&status.name, endpoint, result.is_ok());
                let key = format!("served:{}@{endpoint}", status.name);
                if last.get(&key) != Some(&result) {
                    match &result {
                        Ok(()) => {
                            tracing::info!(certificate = %status.name, endpoint, serial, "served certificate matches")
                        }
                        Err(why) => tracing::warn!(
                            certificate = %status.name,
                            endpoint,
                            expected = serial,
                            problem = %why,
                            "served certificate differs from the deployed one: check for SDS NACKs \
                             (proxy_acme_sds_nacks_total), a listener not using this secret, or a proxy not reloaded"
                        ),
                    }
                }
                readiness.set(key.clone(), result.clone());
                last.insert(key, result);
            }
        }
        tokio::time::sleep(Duration::from_secs(config.interval_secs)).await;
    }
}

fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SeeAnything(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any chain (we compare it, we do not trust it) but checks the
/// handshake signatures, so the peer holds the served certificate's key.
#[derive(Debug)]
struct SeeAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for SeeAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let der = cert.der().to_vec();
        let (_, parsed) = X509Certificate::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        let serial = parsed.raw_serial_as_string().replace(':', "");
        (der, serial)
    }

    #[test]
    fn the_same_serial_matches_and_another_is_described() {
        let (der, serial) = self_signed("a.test");
        assert_eq!(compare(&serial, &der), Ok(()));
        assert_eq!(compare(&serial.to_ascii_uppercase(), &der), Ok(()));
        let (other, other_serial) = self_signed("b.test");
        let why = compare(&serial, &other).expect_err("different certificate");
        assert!(why.contains(&other_serial) && why.contains("b.test") && why.contains(&serial), "{why}");
        assert!(compare(&serial, b"not a certificate").is_err());
    }

    #[test]
    fn wildcards_are_probed_with_one_label() {
        assert_eq!(probe_name("*.example.com"), "proxy-acme-check.example.com");
        assert_eq!(probe_name("www.example.com"), "www.example.com");
    }

    #[tokio::test]
    async fn an_endpoint_that_is_not_listening_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(listener);
        let result = fetch_leaf(&address.to_string(), "a.test", Duration::from_secs(2)).await;
        assert!(result.is_err_and(|e| e.contains("connect")));
    }
}
