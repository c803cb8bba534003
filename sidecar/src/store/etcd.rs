//! The shared store on etcd: every replica of a gateway reads and writes the
//! same accounts, certificates, renewal state, pending challenges and locks.
//!
//! | key under `prefix` | value |
//! | --- | --- |
//! | `accounts/<resolver>` | account credentials, sealed |
//! | `certificates/<name>` | JSON: chain PEM, sealed key, replica, time |
//! | `revoked/<name>` | serial revoked by the operator |
//! | `renewal/<name>` | JSON [`RenewalState`] |
//! | `issuer/<name>` | the resolver that issued it (with several) |
//! | `pending/<name>` | the open order and its CSR key, sealed |
//! | `challenges/<type>/<key>` | a pending challenge, on a lease |
//! | `locks/<id>` | the holder's name, on its lease |
//!
//! Private keys and accounts are sealed ([`Sealer`]) with the etcd key as
//! associated data. Certificates are written in a transaction that checks
//! the writer's lock still exists with its own creation revision (the
//! fencing token), so a replica whose lease expired cannot overwrite the
//! work of the one that took over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, PutOptions, TlsOptions,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::board::ChallengeBoard;
use super::etcd_lease::{keep_alive, revoke_later, Release};
use super::mirror::Mirror;
use super::seal::Sealer;
use super::settings::Etcd as Settings;
use super::{check_key, Acquired, Lock, PendingOrder, RenewalState, Store, StoreError};
use crate::cert::{self, Bundle, SecretPem};

/// Whether the watch is live, or why not (shown in `/readyz`).
pub type Health = Result<(), String>;

/// A certificate as stored.
#[derive(Serialize, Deserialize)]
struct Record {
    fullchain_pem: String,
    /// The sealed private key, base64.
    key: String,
    replica: String,
    stored_at: u64,
}

/// The etcd store of one replica.
pub struct EtcdStore {
    /// One client per member; requests go to `current` and move on to the
    /// next member when it cannot be reached.
    members: Vec<Client>,
    current: AtomicUsize,
    prefix: String,
    replica: String,
    sealer: Sealer,
    lock_ttl: i64,
    timeout: Duration,
    /// Pending challenges of every replica, once [`Self::mirror_challenges`] runs.
    mirror: Arc<Mirror>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("prefix", &self.prefix).field("replica", &self.replica).finish()
    }
}

/// Whether `e` says the member could not be reached or did not answer in
/// time, so another member may be asked. Every request is safe to repeat:
/// reads and puts are idempotent, the fenced write compares the same token,
/// and a lock taken twice is found held (by this replica) until its lease
/// expires.
fn unreachable_member(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // A member killed under an open connection shows as a request that
        // times out (Cancelled, "Timeout expired"), not as a refused one.
        etcd_client::Error::GRpcStatus(status) => {
            matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
        }
        _ => false,
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl EtcdStore {
    /// Connects (lazily: an unreachable cluster is reported by the first
    /// request and by `/readyz`, not here).
    pub async fn connect(settings: &Settings) -> Result<Self, StoreError> {
        let timeout = Duration::from_secs(settings.timeout_secs);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            // etcd refuses pings more often than every 5 s (GOAWAY
            // too_many_pings, which broke every watch); the 2-second store
            // probe finds a dead cluster sooner anyway.
            .with_keep_alive(Duration::from_secs(10), timeout)
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(ca) = &settings.ca_file {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })
            };
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        let key = settings.encryption_key.ok_or_else(|| StoreError::Corrupt {
            key: "storage.etcd.encryption_key_file".into(),
            reason: "no encryption key".into(),
        })?;
        let mut members = Vec::with_capacity(settings.endpoints.len());
        let mut errors = Vec::new();
        for endpoint in &settings.endpoints {
            match Client::connect([endpoint], Some(options.clone())).await {
                Ok(client) => members.push(client),
                Err(e) => errors.push(format!("{endpoint}: {e}")),
            }
        }
        if members.is_empty() {
            return Err(StoreError::Unavailable(errors.join("; ")));
        }
        for error in errors {
            tracing::warn!(%error, "etcd member unreachable at start; using the others");
        }
        Ok(Self {
            members,
            current: AtomicUsize::new(0),
            prefix: settings.prefix.clone(),
            replica: settings.replica_name(),
            sealer: Sealer::new(&key),
            lock_ttl: i64::try_from(settings.lock_ttl_secs).unwrap_or(15),
            timeout,
            mirror: Arc::default(),
        })
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", self.prefix)
    }

    /// The key of a pending challenge: `rest` is `<type>/<key>`.
    pub(super) fn board_key(&self, rest: &str) -> String {
        self.key("challenges", rest)
    }

    /// Keeps a copy of every replica's pending challenges from now on, so
    /// that looking up an unknown token or SNI never reaches etcd.
    pub fn mirror_challenges(self: &Arc<Self>) {
        super::mirror::follow(self, Arc::clone(&self.mirror));
    }

    /// The client of the member requests go to now.
    fn client(&self) -> Client {
        let i = self.current.load(Ordering::Relaxed) % self.members.len();
        self.members[i].clone()
    }

    /// Runs one request with the configured time-out, on the current member
    /// and then on each other one while members cannot be reached (the
    /// request never left, so trying another is safe).
    pub(super) async fn call<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut failures = Vec::new();
        for _ in 0..self.members.len() {
            let i = self.current.load(Ordering::Relaxed) % self.members.len();
            match tokio::time::timeout(self.timeout, request(self.members[i].clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if unreachable_member(&e) => failures.push(e.to_string()),
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => failures.push(format!("no answer within {:?}", self.timeout)),
            }
            let _ =
                self.current.compare_exchange(i, (i + 1) % self.members.len(), Ordering::Relaxed, Ordering::Relaxed);
        }
        Err(StoreError::Unavailable(failures.join("; ")))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self.call(|mut c| async move { c.get(key, None).await }).await?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.call(|mut c| {
            let value = value.clone();
            async move { c.put(key, value, None).await }
        })
        .await
        .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.call(|mut c| async move { c.delete(key, None).await }).await.map(drop)
    }

    fn encode(&self, key: &str, bundle: &Bundle) -> Result<Vec<u8>, StoreError> {
        let sealed = self
            .sealer
            .seal(key, bundle.key_pem.expose().as_bytes())
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })?;
        let record = Record {
            fullchain_pem: bundle.fullchain_pem.clone(),
            key: base64::engine::general_purpose::STANDARD.encode(sealed),
            replica: self.replica.clone(),
            stored_at: unix_now(),
        };
        serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
    }

    fn decode(&self, key: &str, value: &[u8]) -> Result<Bundle, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { key: key.to_owned(), reason };
        let record: Record = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
        let sealed =
            base64::engine::general_purpose::STANDARD.decode(&record.key).map_err(|e| corrupt(e.to_string()))?;
        let key_pem = self.sealer.open(key, &sealed).map_err(|e| corrupt(e.to_string()))?;
        let key_pem = String::from_utf8(key_pem).map_err(|e| corrupt(e.to_string()))?;
        Ok(Bundle { fullchain_pem: record.fullchain_pem, key_pem: SecretPem::new(key_pem) })
    }

    fn check(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        cert::inspect(bundle, None)
            .map(drop)
            .map_err(|source| StoreError::InvalidCertificate { name: name.to_owned(), source })
    }

    /// Every stored certificate now, then each one written later, for as
    /// long as the receiver lives. A lost connection is retried every
    /// second; each reconnection starts with the full list again, so a
    /// replica catches up on whatever was written while it was cut off.
    /// `healthy` follows whether the watch is connected.
    pub fn watch_certificates(self: &Arc<Self>, healthy: watch::Sender<Health>) -> mpsc::Receiver<(String, Bundle)> {
        let (tx, rx) = mpsc::channel(256);
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let prefix = store.key("certificates", "");
            loop {
                let result = store.watch_once(&prefix, &tx, &healthy).await;
                if tx.is_closed() {
                    return;
                }
                let why = match result {
                    Ok(()) => "the watch ended".to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(error = %why, "etcd watch lost; reconnecting");
                let _ = healthy.send(Err(why));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }

    async fn watch_once(
        &self,
        prefix: &str,
        tx: &mpsc::Sender<(String, Bundle)>,
        healthy: &watch::Sender<Health>,
    ) -> Result<(), StoreError> {
        let listed =
            self.call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }).await?;
        let revision = listed.header().map_or(0, |h| h.revision());
        for kv in listed.kvs() {
            self.deliver(prefix, kv.key(), kv.value(), tx).await;
        }
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut stream = self
            .call(|mut c| {
                let options = options.clone();
                async move { c.watch(prefix, Some(options)).await }
            })
            .await?;
        let _ = healthy.send(Ok(()));
        tracing::info!(revision, "watching the shared store");
        while let Some(response) = stream.message().await.map_err(unavailable)? {
            if response.canceled() {
                return Err(StoreError::Unavailable(format!("watch canceled: {}", response.cancel_reason())));
            }
            for event in response.events() {
                if let (EventType::Put, Some(kv)) = (event.event_type(), event.kv()) {
                    self.deliver(prefix, kv.key(), kv.value(), tx).await;
                }
            }
        }
        Ok(())
    }

    async fn deliver(&self, prefix: &str, key: &[u8], value: &[u8], tx: &mpsc::Sender<(String, Bundle)>) {
        let Ok(key) = std::str::from_utf8(key) else { return };
        let Some(name) = key.strip_prefix(prefix) else { return };
        match self.decode(key, value) {
            Ok(bundle) => {
                let _ = tx.send((name.to_owned(), bundle)).await;
            }
            Err(e) => {
                tracing::error!(certificate = name, error = %e, "cannot read a certificate from the shared store")
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn health(&self) -> Result<(), StoreError> {
        let key = self.key("health", "");
        let key = key.as_str();
        self.call(|mut c| async move { c.get(key, Some(GetOptions::new().with_count_only())).await }).await.map(drop)
    }

    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let k = self.key("accounts", key);
        let Some(sealed) = self.get(&k).await? else { return Ok(None) };
        self.sealer.open(&k, &sealed).map(Some).map_err(|e| StoreError::Corrupt { key: k, reason: e.to_string() })
    }

    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        let k = self.key("accounts", key);
        let sealed =
            self.sealer.seal(&k, data).map_err(|e| StoreError::Corrupt { key: k.clone(), reason: e.to_string() })?;
        self.put(&k, sealed).await
    }

    async fn forget_account(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.delete(&self.key("accounts", key)).await
    }

    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        check_key(name)?;
        let key = self.key("certificates", name);
        match self.get(&key).await? {
            Some(value) => self.decode(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        check_key(name)?;
        self.check(name, bundle)?;
        let key = self.key("certificates", name);
        let value = self.encode(&key, bundle)?;
        self.put(&key, value).await
    }

    async fn save_certificate_fenced(&self, name: &str, bundle: &Bundle, lock: &Lock) -> Result<(), StoreError> {
        let Some((lock_key, token)) = &lock.fence else { return self.save_certificate(name, bundle).await };
        check_key(name)?;
        self.check(name, bundle)?;
        let key = self.key("certificates", name);
        let value = self.encode(&key, bundle)?;
        let txn = Txn::new()
            .when([Compare::create_revision(lock_key.as_str(), CompareOp::Equal, *token)])
            .and_then([TxnOp::put(key.as_str(), value, None)]);
        let response = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(StoreError::LockLost(name.to_owned()))
        }
    }

    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.put(&self.key("revoked", name), serial.as_bytes().to_vec()).await
    }

    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        Ok(self.get(&self.key("revoked", name)).await?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.delete(&self.key("revoked", name)).await
    }

    async fn lock(&self, id: &str) -> Result<Acquired, StoreError> {
        check_key(&id.replace('/', "-"))?;
        let key = self.key("locks", id);
        let ttl = self.lock_ttl;
        let lease = self.call(|mut c| async move { c.lease_grant(ttl, None).await }).await?.id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), self.replica.as_bytes(), Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = match self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
        {
            Ok(response) => response,
            Err(e) => {
                revoke_later(self.client(), lease);
                return Err(e);
            }
        };
        if !response.succeeded() {
            revoke_later(self.client(), lease);
            let holder = response
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => {
                        get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "another replica".to_owned());
            return Ok(Acquired::HeldBy(holder));
        }
        let token = response.header().map_or(0, |h| h.revision());
        let (lost_tx, lost_rx) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(self.client(), lease, self.lock_ttl, self.timeout, lost_tx));
        tracing::debug!(lock = id, token, replica = %self.replica, "lock taken");
        let release = Release { client: self.client(), lease, keeper };
        Ok(Acquired::Lock(Lock::shared(key, token, lost_rx, Box::new(release))))
    }

    async fn load_issuer(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        let value = self.get(&self.key("issuer", name)).await?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()).filter(|r| !r.is_empty()))
    }

    async fn save_issuer(&self, name: &str, resolver: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.put(&self.key("issuer", name), resolver.as_bytes().to_vec()).await
    }

    async fn load_renewal(&self, name: &str) -> Result<Option<RenewalState>, StoreError> {
        check_key(name)?;
        let key = self.key("renewal", name);
        match self.get(&key).await? {
            Some(value) => {
                serde_json::from_slice(&value).map(Some).map_err(|e| StoreError::Corrupt { key, reason: e.to_string() })
            }
            None => Ok(None),
        }
    }

    async fn save_renewal(&self, name: &str, state: Option<&RenewalState>) -> Result<(), StoreError> {
        check_key(name)?;
        let key = self.key("renewal", name);
        match state {
            Some(state) => {
                let value = serde_json::to_vec(state)
                    .map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
                self.put(&key, value).await
            }
            None => self.delete(&key).await,
        }
    }

    async fn save_pending(&self, name: &str, order: &PendingOrder) -> Result<(), StoreError> {
        check_key(name)?;
        let key = self.key("pending", name);
        let sealed = self.sealer.seal(&key, &order.to_json()?);
        self.put(&key, sealed.map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?).await
    }

    async fn load_pending(&self, name: &str) -> Result<Option<PendingOrder>, StoreError> {
        check_key(name)?;
        let key = self.key("pending", name);
        let Some(sealed) = self.get(&key).await? else { return Ok(None) };
        let json = self
            .sealer
            .open(&key, &sealed)
            .map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
        PendingOrder::from_json(&key, &json).map(Some)
    }

    async fn clear_pending(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        self.delete(&self.key("pending", name)).await
    }
}

#[async_trait]
impl ChallengeBoard for EtcdStore {
    async fn post(&self, kind: &'static str, key: &str, value: &[u8], ttl_secs: i64) -> Result<(), StoreError> {
        let lease = self.call(|mut c| async move { c.lease_grant(ttl_secs, None).await }).await?.id();
        let key = self.board_key(&format!("{kind}/{key}"));
        let key = key.as_str();
        let put = self
            .call(|mut c| async move { c.put(key, value, Some(PutOptions::new().with_lease(lease))).await })
            .await?;
        // Told to validate after this returns: the post must be in the
        // watch stream every replica's copy follows.
        let revision = put.header().map_or(0, |h| h.revision());
        if self.mirror.get("").is_some() && !self.mirror.reached(revision, self.timeout).await {
            tracing::warn!(key, revision, "the challenge watch did not deliver a post in time");
        }
        Ok(())
    }

    async fn take_down(&self, kind: &'static str, key: &str) {
        let key = self.key("challenges", &format!("{kind}/{key}"));
        if let Err(e) = self.delete(&key).await {
            tracing::debug!(key, error = %e, "cannot remove a pending challenge; its lease will");
        }
    }

    async fn read(&self, kind: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rest = format!("{kind}/{key}");
        match self.mirror.get(&rest) {
            Some(post) => Ok(post),
            None => self.get(&self.board_key(&rest)).await,
        }
    }

    fn copied(&self) -> bool {
        self.mirror.get("").is_some()
    }

    async fn list(&self, kind: &'static str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = self.key("challenges", &format!("{kind}/"));
        let prefix = prefix.as_str();
        let listed =
            self.call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }).await?;
        Ok(listed
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = std::str::from_utf8(kv.key()).ok()?.strip_prefix(prefix)?;
                Some((key.to_owned(), kv.value().to_vec()))
            })
            .collect())
    }
}
