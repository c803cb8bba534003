//! Proving control of an order's identifiers: each pending authorization's
//! challenge of the chosen type is presented through its solver, the CA is
//! told to validate, and the order is polled until it is ready or invalid.
//!
//! HTTP-01 and TLS-ALPN-01 answers are published per authorization and
//! withdrawn when this returns. DNS-01 records are all presented first, then
//! checked for propagation, then the CA is told; they are removed on every
//! exit path, also when the order task is aborted (the guard's `Drop`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{AuthorizationStatus, Order, OrderStatus, RetryPolicy};

use super::{AcmeError, OrderRequest};
use crate::dns::{self, DnsProvider, TxtRecord};
use crate::solvers::{http01, posts, tls_alpn, webroot, ChallengeKind, Solvers};
use crate::store::board;

/// An answer shown to the validator until dropped.
#[derive(Debug)]
enum Published {
    #[allow(dead_code)] // held for its Drop
    Http01(http01::Published),
    #[allow(dead_code)] // held for its Drop
    TlsAlpn01(tls_alpn::Published),
    #[allow(dead_code)] // held for its Drop
    Webroot(webroot::WebrootFile),
    #[allow(dead_code)] // held for its Drop
    Board(board::Posted),
}

/// How the order is polled.
pub(super) fn retries() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(120))
}

/// DNS records to remove; removed by `run`, or by a spawned task on drop.
#[derive(Debug)]
struct DnsCleanup {
    provider: Option<Arc<dyn DnsProvider>>,
    records: Vec<TxtRecord>,
}

impl DnsCleanup {
    async fn run(mut self) {
        let records = std::mem::take(&mut self.records);
        if let Some(provider) = &self.provider {
            cleanup(provider.as_ref(), &records).await;
        }
    }
}

async fn cleanup(provider: &dyn DnsProvider, records: &[TxtRecord]) {
    for record in records {
        if let Err(e) = provider.cleanup(record).await {
            tracing::warn!(fqdn = %record.fqdn, error = %e, "cannot remove the DNS-01 record");
        }
    }
}

/// Clean-ups spawned by interrupted orders and not finished yet.
static INTERRUPTED_CLEANUPS: AtomicUsize = AtomicUsize::new(0);

/// Waits (up to `limit`) for the clean-ups of interrupted orders, so a
/// stopping daemon leaves no DNS-01 record behind.
pub async fn finish_cleanups(limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while INTERRUPTED_CLEANUPS.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for DnsCleanup {
    fn drop(&mut self) {
        let (Some(provider), false) = (self.provider.clone(), self.records.is_empty()) else { return };
        let records = std::mem::take(&mut self.records);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::info!(records = records.len(), "order interrupted: removing its DNS-01 records");
            INTERRUPTED_CLEANUPS.fetch_add(1, Ordering::SeqCst);
            runtime.spawn(async move {
                cleanup(provider.as_ref(), &records).await;
                INTERRUPTED_CLEANUPS.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// Proves every pending authorization of `order` with `kind`; the order's
/// status once the CA is done (`Ready` or not).
pub(super) async fn prove(
    order: &mut Order,
    request: &OrderRequest<'_>,
    solvers: &Solvers,
    kind: ChallengeKind,
) -> Result<OrderStatus, AcmeError> {
    let mut records = DnsCleanup { provider: request.dns.map(|d| Arc::clone(&d.provider)), records: Vec::new() };
    let result = prove_inner(order, request, solvers, kind, &mut records).await;
    records.run().await;
    result
}

async fn prove_inner(
    order: &mut Order,
    request: &OrderRequest<'_>,
    solvers: &Solvers,
    kind: ChallengeKind,
    records: &mut DnsCleanup,
) -> Result<OrderStatus, AcmeError> {
    let mut published = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(AcmeError::Authorization {
                    identifier: authz.identifier().to_string(),
                    status: format!("{status:?}"),
                    detail: "not pending at order start".into(),
                })
            }
        }
        let identifier = authz.identifier().to_string();
        let mut challenge = authz
            .challenge(kind.acme_type())
            .ok_or_else(|| AcmeError::NoChallenge(kind.as_str(), identifier.clone()))?;
        let key_authorization = challenge.key_authorization();
        match kind {
            ChallengeKind::Http01 => {
                if let Some(root) = request.webroot {
                    let file = webroot::publish(root, &challenge.token, key_authorization.as_str())
                        .map_err(|e| AcmeError::Solver(e.to_string()))?;
                    published.push(Published::Webroot(file));
                }
                let token = solvers.http01.publish(&challenge.token, &identifier, key_authorization.as_str());
                published.push(Published::Http01(token));
                if let Some(shared) = &solvers.board {
                    let post = posts::Http01Post {
                        identifier: identifier.to_ascii_lowercase(),
                        key_authorization: key_authorization.as_str().to_owned(),
                    };
                    published.push(Published::Board(
                        board::Posted::post(shared, kind.as_str(), &challenge.token, &post, board::ANSWER_TTL).await?,
                    ));
                }
            }
            ChallengeKind::TlsAlpn01 => {
                let digest = key_authorization.digest();
                let cert = solvers.tls_alpn.publish(&identifier, digest.as_ref());
                published.push(Published::TlsAlpn01(cert.map_err(|e| AcmeError::Solver(e.to_string()))?));
                if let Some(shared) = &solvers.board {
                    let post =
                        posts::TlsAlpnPost { identifier: identifier.clone(), digest: posts::hex(digest.as_ref()) };
                    let sni = tls_alpn::sni_for(&identifier);
                    published.push(Published::Board(
                        board::Posted::post(shared, kind.as_str(), &sni, &post, board::ANSWER_TTL).await?,
                    ));
                }
            }
            ChallengeKind::Dns01 => {
                let dns = request.dns.ok_or_else(|| AcmeError::Solver("no dns_challenge configured".into()))?;
                let record = TxtRecord::new(&identifier, &key_authorization.dns_value(), dns.settings.ttl);
                // Posted before it is published and until it is removed, so
                // that a replica taking over from a crashed one removes the
                // record it may have left.
                if let Some(shared) = &solvers.board {
                    let key = posts::dns_key(&record);
                    match board::Posted::post(shared, kind.as_str(), &key, &record, board::DNS_TTL).await {
                        Ok(posted) => published.push(Published::Board(posted)),
                        Err(e) => tracing::warn!(fqdn = %record.fqdn, error = %e, "cannot post the DNS-01 record"),
                    }
                }
                dns.provider.present(&record).await?;
                records.records.push(record);
                // The CA is told once every record is visible.
                continue;
            }
        }
        challenge.set_ready().await?;
        tracing::debug!(identifier, token = %challenge.token, challenge = %kind, "challenge ready");
    }

    if kind == ChallengeKind::Dns01 && !records.records.is_empty() {
        if let Some(dns) = request.dns {
            let started = std::time::Instant::now();
            let waited = dns::propagation::wait_for(&records.records, &dns.settings).await;
            crate::serve::metrics::metrics().dns_propagation(waited.is_ok(), started.elapsed());
            waited?;
        }
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(kind.acme_type())
                .ok_or_else(|| AcmeError::NoChallenge(kind.as_str(), identifier.clone()))?;
            challenge.set_ready().await?;
            tracing::debug!(identifier, challenge = %kind, "challenge ready");
        }
    }

    let status = order.poll_ready(&retries()).await?;
    drop(published);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::dns::DnsError;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl DnsProvider for Recorder {
        async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
            self.0.lock().unwrap().push(format!("present {}", record.value));
            Ok(())
        }
        async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.0.lock().unwrap().push(format!("cleanup {}", record.value));
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_interrupted_order_still_removes_its_records() {
        let recorder = Arc::new(Recorder::default());
        let provider: Arc<dyn DnsProvider> = recorder.clone();
        let records = vec![TxtRecord::new("example.com", "a", 60), TxtRecord::new("*.example.com", "b", 60)];
        // An order task aborted mid-way drops its guard.
        let task = tokio::spawn(async move {
            let _guard = DnsCleanup { provider: Some(provider), records };
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        task.abort();
        let _ = task.await;
        finish_cleanups(Duration::from_secs(5)).await;
        assert_eq!(*recorder.0.lock().unwrap(), ["cleanup a", "cleanup b"]);
    }
}
