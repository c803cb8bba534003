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
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use async_trait::async_trait;

use super::posts::{hex, unhex, TlsAlpnPost};
use super::{is_wildcard, Challenge, ChallengeKind, Presented, Solver, SolverError};
use crate::store::board::{self, ChallengeBoard};

/// The ALPN protocol ID of RFC 8737 §6.2.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// How long a validator may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The responder's TLS settings: `acme-tls/1` only, certificates by SNI.
pub fn server_config(certs: &TlsAlpnCerts) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs.clone()));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Binds `address` and answers TLS-ALPN-01 handshakes until aborted.
pub async fn serve(
    address: SocketAddr,
    certs: TlsAlpnCerts,
    board: Option<Arc<dyn ChallengeBoard>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    serve_on(listener, certs, board)
}

/// How long a challenge certificate built from another replica's post is kept.
const BORROWED_FOR: Duration = Duration::from_secs(60);

/// Answers TLS-ALPN-01 handshakes on `listener` until aborted. Each
/// connection is closed once its handshake ends (RFC 8737 §3: the validator
/// sends no data). With a `board`, an SNI this replica has no challenge for
/// is looked up among other replicas' posts before the handshake goes on.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    certs: TlsAlpnCerts,
    board: Option<Arc<dyn ChallengeBoard>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let config = server_config(&certs).map_err(std::io::Error::other)?;
    tracing::info!(address = %listener.local_addr()?, "tls-alpn-01 responder listening");
    Ok(tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (config, certs, board) = (Arc::clone(&config), certs.clone(), board.clone());
            tokio::spawn(async move {
                let handshake = async {
                    let start =
                        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
                    let hello = start.client_hello();
                    let sni = hello.server_name().map(str::to_ascii_lowercase);
                    let offered = hello.alpn().is_some_and(|mut alpn| alpn.any(|p| p == ACME_TLS_ALPN));
                    if let (Some(board), Some(sni), true) = (&board, &sni, offered) {
                        if certs.answer(Some(sni), std::iter::once(ACME_TLS_ALPN)).is_none() {
                            borrow(board.as_ref(), &certs, sni).await;
                        }
                    }
                    start.into_stream(config).await
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(mut tls)) => {
                        let sni = tls.get_ref().1.server_name().map(str::to_owned);
                        tracing::debug!(%peer, sni = ?sni, "answered a tls-alpn-01 validation");
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls-alpn-01 handshake failed"),
                    Err(_) => tracing::debug!(%peer, "tls-alpn-01 handshake timed out"),
                }
            });
        }
    }))
}

/// Builds the challenge certificate another replica posted for `sni`, and
/// keeps it for [`BORROWED_FOR`].
async fn borrow(board: &dyn ChallengeBoard, certs: &TlsAlpnCerts, sni: &str) {
    let post = match board.read(ChallengeKind::TlsAlpn01.as_str(), sni).await {
        Ok(Some(bytes)) => serde_json::from_slice::<TlsAlpnPost>(&bytes).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(sni, error = %e, "cannot read the shared challenge board");
            None
        }
    };
    let Some(post) = post.filter(|p| sni_for(&p.identifier) == sni) else { return };
    let Some(digest) = unhex(&post.digest) else { return };
    match certs.publish(&post.identifier, &digest) {
        Ok(published) => {
            tracing::debug!(sni, "serving a tls-alpn-01 challenge posted by another replica");
            tokio::spawn(async move {
                tokio::time::sleep(BORROWED_FOR).await;
                drop(published);
            });
        }
        Err(e) => tracing::warn!(sni, error = %e, "cannot build a posted tls-alpn-01 certificate"),
    }
}

#[cfg(test)]
#[path = "tls_alpn_tests.rs"]
mod tests;
