//! The TLS-ALPN-01 responder (RFC 8737): a TLS listener that completes a
//! handshake only for an SNI with a pending challenge offering
//! `acme-tls/1`, showing the challenge certificate from
//! [`TlsAlpnCerts`], then closes. With a shared store, an SNI this replica
//! has no challenge for is looked up in the board's copy of other
//! replicas' posts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::serve::door::{self, Limits};
use crate::solvers::posts::{unhex, TlsAlpnPost};
use crate::solvers::tls_alpn::{sni_for, TlsAlpnCerts, ACME_TLS_ALPN};
use crate::solvers::ChallengeKind;
use crate::store::board::ChallengeBoard;

/// A validator finishes its handshake within this, or is disconnected.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let limits = Limits { header_timeout: HANDSHAKE_TIMEOUT, ..Limits::PUBLIC };
    Ok(door::serve(listener, "tls_alpn", limits, move |stream, peer, activity| {
        let (config, certs, board) = (Arc::clone(&config), certs.clone(), board.clone());
        async move {
            // Counted until the connection ends; never busy, so the
            // handshake timeout is also the door's.
            let _activity = activity;
            let handshake = async {
                let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
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
        }
    }))
}

/// Builds the challenge certificate another replica posted for `sni`, and
/// keeps it for [`BORROWED_FOR`].
async fn borrow(board: &dyn ChallengeBoard, certs: &TlsAlpnCerts, sni: &str) {
    crate::serve::metrics::metrics().board_lookup(board.copied());
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
