//! TLS-ALPN-01 (RFC 8737): a TLS responder that shows the CA's validator a
//! self-signed certificate carrying the critical `id-pe-acmeIdentifier`
//! extension (the SHA-256 of the key authorization), chosen by SNI.
//!
//! Envoy (a `tls_inspector` + a filter chain matching ALPN `acme-tls/1` with
//! `tcp_proxy`) or nginx (`stream` + `ssl_preread`) hand only `acme-tls/1`
//! connections to this responder; production TLS never reaches it. The
//! responder completes a handshake only for an identifier with a pending
//! challenge, and only when the client offers `acme-tls/1`: any other SNI or
//! ALPN, and every connection while nothing is pending, is refused.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use async_trait::async_trait;

use super::posts::{hex, TlsAlpnPost};
use super::{is_wildcard, Challenge, ChallengeKind, Presented, Solver, SolverError};
use crate::store::board::{self, ChallengeBoard};

/// The ALPN protocol ID of RFC 8737 §6.2.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why a challenge certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsAlpnError {
    #[error("cannot build the acme-tls/1 certificate for {identifier}: {reason}")]
    Certificate { identifier: String, reason: String },
}

/// Pending TLS-ALPN-01 challenges by SNI, shared between the order tasks and
/// the responder.
#[derive(Clone, Default)]
pub struct TlsAlpnCerts {
    inner: Arc<RwLock<HashMap<String, Arc<CertifiedKey>>>>,
}

impl fmt::Debug for TlsAlpnCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAlpnCerts").field("pending", &self.len()).finish()
    }
}

/// The SNI a validator sends for `identifier`: the name itself, or the
/// reverse-DNS name of an IP address (RFC 8738 §6).
pub fn sni_for(identifier: &str) -> String {
    match identifier.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        Ok(IpAddr::V6(ip)) => {
            let nibbles: Vec<String> = ip
                .octets()
                .iter()
                .rev()
                .flat_map(|byte| [byte & 0x0f, byte >> 4])
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
        Err(_) => identifier.to_ascii_lowercase(),
    }
}

/// The self-signed challenge certificate (DER) and its PKCS#8 key for
/// `identifier`: SAN = the identifier, `id-pe-acmeIdentifier` critical with
/// `digest` (SHA-256 of the key authorization).
pub fn challenge_certificate(
    identifier: &str,
    digest: &[u8],
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), TlsAlpnError> {
    let fail = |reason: String| TlsAlpnError::Certificate { identifier: identifier.to_owned(), reason };
    if digest.len() != 32 {
        return Err(fail(format!("the digest is {} bytes, not 32", digest.len())));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| fail(e.to_string()))?;
    params.subject_alt_names = vec![match identifier.parse::<IpAddr>() {
        Ok(ip) => rcgen::SanType::IpAddress(ip),
        Err(_) => {
            rcgen::SanType::DnsName(identifier.to_ascii_lowercase().try_into().map_err(|e| fail(format!("{e}")))?)
        }
    }];
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    Ok((cert.der().clone(), PrivatePkcs8KeyDer::from(key.serialize_der())))
}

impl TlsAlpnCerts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves the challenge certificate for `identifier` until the returned
    /// guard is dropped, so every exit path of an order withdraws it.
    pub fn publish(&self, identifier: &str, digest: &[u8]) -> Result<Published, TlsAlpnError> {
        let (cert, key) = challenge_certificate(identifier, digest)?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(key))
            .map_err(|e| TlsAlpnError::Certificate { identifier: identifier.to_owned(), reason: e.to_string() })?;
        let sni = sni_for(identifier);
        let certified = Arc::new(CertifiedKey::new(vec![cert], signing_key));
        self.inner.write().unwrap_or_else(|e| e.into_inner()).insert(sni.clone(), certified);
        Ok(Published { certs: self.clone(), sni })
    }

    /// The certificate for a handshake with `sni` offering `alpn`, if a
    /// challenge for it is pending and `acme-tls/1` is offered.
    pub fn answer<'a>(&self, sni: Option<&str>, mut alpn: impl Iterator<Item = &'a [u8]>) -> Option<Arc<CertifiedKey>> {
        if !alpn.any(|protocol| protocol == ACME_TLS_ALPN) {
            return None;
        }
        let sni = sni?.to_ascii_lowercase();
        self.inner.read().unwrap_or_else(|e| e.into_inner()).get(&sni).cloned()
    }

    /// Number of pending challenges.
    pub fn len(&self) -> usize {
        self.inner.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Withdraws its challenge certificate when dropped.
#[derive(Debug)]
pub struct Published {
    certs: TlsAlpnCerts,
    sni: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.certs.inner.write().unwrap_or_else(|e| e.into_inner()).remove(&self.sni);
    }
}

/// TLS-ALPN-01: the challenge certificate served by this replica's
/// responder, and its digest on the board when replicas share one (each
/// replica builds its own certificate from it).
#[derive(Debug)]
pub struct TlsAlpnSolver {
    certs: TlsAlpnCerts,
    board: Option<Arc<dyn ChallengeBoard>>,
}

impl TlsAlpnSolver {
    pub fn new(certs: TlsAlpnCerts, board: Option<Arc<dyn ChallengeBoard>>) -> Self {
        Self { certs, board }
    }
}

#[async_trait]
impl Solver for TlsAlpnSolver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::TlsAlpn01
    }

    /// Names and IP addresses (RFC 8738), not wildcards.
    fn supports(&self, identifier: &str) -> bool {
        !is_wildcard(identifier)
    }

    async fn present(&self, challenge: Challenge<'_>) -> Result<Presented, SolverError> {
        let identifier = challenge.identifier;
        let digest = challenge.digest();
        let mut presented = Presented::new(self.kind(), identifier).with(self.certs.publish(identifier, &digest)?);
        if let Some(shared) = &self.board {
            let post = TlsAlpnPost { identifier: identifier.to_owned(), digest: hex(&digest) };
            let (kind, sni) = (self.kind().as_str(), sni_for(identifier));
            presented = presented.with(board::Posted::post(shared, kind, &sni, &post, board::ANSWER_TTL).await?);
        }
        Ok(presented)
    }
}

impl ResolvesServerCert for TlsAlpnCerts {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name().map(str::to_owned);
        let offered: Vec<Vec<u8>> = client_hello.alpn().map(|i| i.map(<[u8]>::to_vec).collect()).unwrap_or_default();
        let answer = self.answer(sni.as_deref(), offered.iter().map(Vec::as_slice));
        if answer.is_none() {
            tracing::debug!(sni = ?sni, pending = self.len(), "tls-alpn-01 handshake refused");
        }
        answer
    }
}

#[cfg(test)]
#[path = "tls_alpn_tests.rs"]
mod tests;
