//! The replica coordinator: who orders a certificate when several replicas
//! share a store. It takes the certificate's lock (always granted by a
//! store of one process), removes DNS-01 records a crashed holder left,
//! finds a certificate another replica stored meanwhile, decides whether a
//! certificate from the store may be adopted, and shares the renewal state
//! (failures, backoff) with the other replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::cert::{self, Bundle, CertInfo, KeyType};
use crate::config::Certificate;
use crate::dns::{DnsSolver, TxtRecord};
use crate::solvers::ChallengeKind;
use crate::store::board::ChallengeBoard;
use crate::store::{Acquired, Lock, RenewalState, Store, StoreError, Stored};

/// Whose turn it is to order.
#[derive(Debug)]
pub(super) enum Turn {
    /// Ours; `stored` is what the store holds now when another replica
    /// held the lock before (it may have stored a new certificate just
    /// before releasing it).
    Ours { lock: Lock, stored: Option<Bundle> },
    /// Another replica is ordering.
    Held(String),
    /// The shared store cannot be reached: no order without the lock.
    Unreachable(StoreError),
}

#[derive(Debug)]
pub(super) struct Coordinator {
    store: Arc<dyn Store>,
    board: Option<Arc<dyn ChallengeBoard>>,
    /// DNS-01 solvers by resolver name (to remove orphaned records);
    /// swapped by a reload.
    dns: std::sync::RwLock<Arc<BTreeMap<String, DnsSolver>>>,
    /// This replica's name in the shared renewal state.
    replica: String,
}

impl Coordinator {
    pub(super) fn new(
        store: Arc<dyn Store>,
        board: Option<Arc<dyn ChallengeBoard>>,
        dns: Arc<BTreeMap<String, DnsSolver>>,
        replica: String,
    ) -> Self {
        Self { store, board, dns: std::sync::RwLock::new(dns), replica }
    }

    /// A reload's DNS-01 providers.
    pub(super) fn set_dns(&self, dns: BTreeMap<String, DnsSolver>) {
        *self.dns.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(dns);
    }

    /// What the store holds for `name` when its task starts.
    pub(super) async fn stored(&self, name: &str) -> Result<Stored, StoreError> {
        self.store.load_stored(name).await
    }

    /// [`stored`](Self::stored) for each of `names`, in order, read in one
    /// go where the store can.
    pub(super) async fn stored_many(&self, names: Vec<String>) -> Vec<Result<Stored, StoreError>> {
        self.store.load_stored_many(names).await
    }

    /// Takes the certificate's lock.
    pub(super) async fn take_turn(&self, certificate: &Certificate) -> Turn {
        let id = format!("certificates/{}", certificate.name);
        match self.store.lock(&id).await {
            // Token 0: a store of one process; nobody else writes.
            Ok(Acquired::Lock(lock)) if lock.token() == 0 => Turn::Ours { lock, stored: None },
            Ok(Acquired::Lock(lock)) => {
                self.remove_orphaned_records(certificate).await;
                match self.store.load_certificate(&certificate.name).await {
                    Ok(stored) => Turn::Ours { lock, stored },
                    Err(e) => Turn::Unreachable(e),
                }
            }
            Ok(Acquired::HeldBy(holder)) => {
                tracing::debug!(certificate = %certificate.name, %holder, "another replica is ordering");
                Turn::Held(holder)
            }
            Err(e) => {
                tracing::warn!(certificate = %certificate.name, error = %e, "not ordering without the lock");
                Turn::Unreachable(e)
            }
        }
    }

    /// Whether `bundle`, read from the store, should replace `current`: it
    /// covers the names, has the configured key type, is newer, and is not
    /// the certificate the operator revoked (which stays in the store as the
    /// last one issued, and is never served again).
    pub(super) async fn adoptable(
        &self,
        certificate: &Certificate,
        key_type: KeyType,
        current: Option<&CertInfo>,
        bundle: &Bundle,
    ) -> Option<CertInfo> {
        let info = cert::inspect(bundle, Some(&certificate.domains)).ok()?;
        if current.is_some_and(|c| c.serial_hex == info.serial_hex || c.not_before > info.not_before) {
            return None;
        }
        match self.store.revoked(&certificate.name).await {
            Ok(Some(serial)) if serial.eq_ignore_ascii_case(&info.serial_hex) => return None,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(certificate = %certificate.name, error = %e, "cannot read the revocation mark");
                return None;
            }
        }
        (info.key_type == Some(key_type)).then_some(info)
    }

    /// DNS-01 records a crashed replica published for this certificate's
    /// names and never removed (their posts outlive it): removed now, under
    /// the lock, before a new order publishes its own.
    async fn remove_orphaned_records(&self, certificate: &Certificate) {
        let dns = self.dns.read().unwrap_or_else(|e| e.into_inner()).get(&certificate.resolver).cloned();
        let (Some(board), Some(dns)) = (&self.board, dns) else { return };
        let kind = ChallengeKind::Dns01.as_str();
        let posts = match board.list(kind).await {
            Ok(posts) => posts,
            Err(e) => {
                tracing::warn!(certificate = %certificate.name, error = %e, "cannot list posted DNS-01 records");
                return;
            }
        };
        let ours = |domain: &str| certificate.domains.iter().any(|d| d.strip_prefix("*.").unwrap_or(d) == domain);
        for (key, value) in posts {
            let Ok(record) = serde_json::from_slice::<TxtRecord>(&value) else { continue };
            if !ours(&record.domain) {
                continue;
            }
            match dns.provider.cleanup(&record).await {
                Ok(()) => {
                    tracing::info!(certificate = %certificate.name, fqdn = %record.fqdn, "removed a DNS-01 record left by an interrupted order");
                    board.take_down(kind, &key).await;
                }
                Err(e) => {
                    tracing::warn!(fqdn = %record.fqdn, error = %e, "cannot remove a DNS-01 record left by an interrupted order")
                }
            }
        }
    }

    /// Records a backoff (`Some`) or a success (`None`) where other
    /// replicas see it.
    pub(super) async fn share(&self, name: &str, backoff: Option<(u32, std::time::SystemTime, &str)>) {
        let state = backoff.map(|(failures, next, error)| RenewalState {
            failures,
            next_attempt: next.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            last_error: error.to_owned(),
            replica: self.replica.clone(),
        });
        if let Err(e) = self.store.save_renewal(name, state.as_ref()).await {
            tracing::warn!(certificate = %name, error = %e, "cannot share the renewal state");
        }
    }
}

/// When a recorded backoff ends.
pub(super) fn next_attempt(state: &RenewalState) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(state.next_attempt)
}
