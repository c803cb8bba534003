//! DNS-01 (RFC 8555 §8.4) through the resolver's DNS provider: each record
//! is posted on the board, then published; once every record of the order
//! is published, the propagation check waits until the authoritative
//! nameservers answer them all, and only then is the CA told. Records are
//! removed on every exit path, also when the order task is aborted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{is_ip, posts, spawn_cleanup, Challenge, ChallengeKind, Presented, Solver, SolverError};
use crate::dns::{propagation, DnsProvider, DnsSolver, TxtRecord};
use crate::store::board::{self, ChallengeBoard};

/// DNS-01 with one resolver's provider and check settings.
#[derive(Debug)]
pub struct Dns01Solver {
    dns: DnsSolver,
    board: Option<Arc<dyn ChallengeBoard>>,
    /// Told how each propagation check ended (ok) and how long it took.
    observe: fn(bool, Duration),
}

impl Dns01Solver {
    pub fn new(dns: DnsSolver, board: Option<Arc<dyn ChallengeBoard>>) -> Self {
        Self { dns, board, observe: |_, _| {} }
    }

    /// Reports each propagation check to `observe` (the daemon's metrics).
    #[must_use]
    pub fn observe_propagation(mut self, observe: fn(bool, Duration)) -> Self {
        self.observe = observe;
        self
    }
}

/// A TXT record at the provider: removed by [`Record::remove`], or in the
/// background when dropped (an aborted order).
#[derive(Debug)]
struct Record {
    provider: Arc<dyn DnsProvider>,
    record: Option<TxtRecord>,
}

impl Record {
    async fn remove(&mut self) {
        if let Some(record) = self.record.take() {
            remove(self.provider.as_ref(), &record).await;
        }
    }
}

async fn remove(provider: &dyn DnsProvider, record: &TxtRecord) {
    if let Err(e) = provider.cleanup(record).await {
        tracing::warn!(fqdn = %record.fqdn, error = %e, "cannot remove the DNS-01 record");
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let Some(record) = self.record.take() else { return };
        let provider = Arc::clone(&self.provider);
        tracing::info!(fqdn = %record.fqdn, "order interrupted: removing its DNS-01 record");
        let fqdn = record.fqdn.clone();
        if !spawn_cleanup(async move { remove(provider.as_ref(), &record).await }) {
            tracing::warn!(%fqdn, "no runtime to remove the DNS-01 record");
        }
    }
}

#[async_trait]
impl Solver for Dns01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Dns01
    }

    /// Names and wildcards; an IP address has no DNS name to put a record at.
    fn supports(&self, identifier: &str) -> bool {
        !is_ip(identifier)
    }

    async fn present(&self, challenge: Challenge<'_>) -> Result<Presented, SolverError> {
        let record = TxtRecord::new(challenge.identifier, &challenge.dns_value(), self.dns.settings.ttl);
        // Posted before it is published and until it is removed, so that a
        // replica taking over from a crashed one removes the record it may
        // have left.
        let mut post = None;
        if let Some(shared) = &self.board {
            let key = posts::dns_key(&record);
            match board::Posted::post(shared, self.kind().as_str(), &key, &record, board::DNS_TTL).await {
                Ok(posted) => post = Some(posted),
                Err(e) => tracing::warn!(fqdn = %record.fqdn, error = %e, "cannot post the DNS-01 record"),
            }
        }
        self.dns.provider.present(&record).await?;
        let record = Record { provider: Arc::clone(&self.dns.provider), record: Some(record) };
        // Dropped in this order: the record is removed before its post.
        let presented = Presented::new(self.kind(), challenge.identifier).with(record);
        Ok(match post {
            Some(post) => presented.with(post),
            None => presented,
        })
    }

    fn visible_at_once(&self) -> bool {
        false
    }

    async fn wait_visible(&self, presented: &[Presented]) -> Result<(), SolverError> {
        let records: Vec<TxtRecord> =
            presented.iter().flat_map(Presented::parts::<Record>).filter_map(|r| r.record.clone()).collect();
        if records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let waited = propagation::wait_for(&records, &self.dns.settings).await;
        (self.observe)(waited.is_ok(), started.elapsed());
        Ok(waited?)
    }

    async fn clean_up(&self, mut presented: Vec<Presented>) {
        for answer in &mut presented {
            for record in answer.parts_mut::<Record>() {
                record.remove().await;
            }
        }
    }
}
