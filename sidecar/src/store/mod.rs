//! Where accounts and certificates live. One small trait, a file backend (the
//! embedded default), an in-memory one for unit tests, and etcd, shared by
//! several replicas (locks with fencing tokens, sealed keys, a watch).

pub mod board;
pub mod etcd;
mod etcd_lease;
mod file;
pub mod file_board;
mod lock;
mod memory;
pub mod mirror;
mod pem_tree;
pub mod seal;
pub mod settings;
pub mod spares;

pub use etcd::EtcdStore;
pub use file::FileStore;
pub use lock::{Acquired, Lock};
pub use memory::MemoryStore;
pub use pem_tree::{PemTree, Swap};
pub use settings::{Etcd, Storage, StoreKind};

use std::sync::Arc;

use async_trait::async_trait;

use crate::cert::{self, Bundle, CertError, CertInfo, SecretPem};

/// The configured store, as [`open`] returns it: the daemon and every
/// command reach accounts and certificates through `store` alone.
#[derive(Debug, Clone)]
pub struct Opened {
    pub store: Arc<dyn Store>,
    /// The shared store's extras (challenge board, watch, replica name),
    /// when it is etcd.
    pub etcd: Option<Arc<EtcdStore>>,
    /// The file store's board (answers of orders in flight, kept across a
    /// restart); `None` with etcd, whose board is the store itself.
    pub files: Option<Arc<file_board::FileBoard>>,
}

impl Opened {
    /// This process's name among replicas (`local` without a shared store).
    pub fn replica(&self) -> String {
        self.etcd.as_ref().map_or_else(|| "local".to_owned(), |e| e.replica().to_owned())
    }

    /// Where pending challenges are kept: shared with other replicas
    /// (etcd), or across a restart of this process (the file store).
    pub fn board(&self) -> Option<Arc<dyn board::ChallengeBoard>> {
        match (&self.etcd, &self.files) {
            (Some(etcd), _) => Some(Arc::clone(etcd) as Arc<dyn board::ChallengeBoard>),
            (None, Some(files)) => Some(Arc::clone(files) as Arc<dyn board::ChallengeBoard>),
            (None, None) => None,
        }
    }
}

/// Opens the store `settings` name: the one construction site, so `run`,
/// `certs`, `revoke`, `account rollover`, `prepare` and `import` all read
/// and write the same place, sealed the same way. With etcd nothing is
/// written under `directory`.
pub async fn open(settings: &Storage) -> Result<Opened, StoreError> {
    match (settings.store, &settings.etcd) {
        (StoreKind::File, _) => {
            let store = Arc::new(FileStore::open(&settings.directory)?);
            let files = Some(Arc::new(file_board::FileBoard::open_with(&settings.directory, store.spares())?));
            Ok(Opened { store, etcd: None, files })
        }
        (StoreKind::Etcd, Some(etcd)) => {
            let etcd = Arc::new(EtcdStore::connect(etcd).await?);
            Ok(Opened { store: Arc::clone(&etcd) as Arc<dyn Store>, etcd: Some(etcd), files: None })
        }
        (StoreKind::Etcd, None) => Err(StoreError::Unavailable("store = \"etcd\" needs [storage.etcd]".into())),
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("state directory {path} is accessible by group or others (mode {mode:o}); run `chmod 700 {path}`")]
    InsecurePermissions { path: std::path::PathBuf, mode: u32 },
    #[error("refusing to store certificate {name}: {source}")]
    InvalidCertificate { name: String, source: CertError },
    #[error("invalid store key {0:?}")]
    InvalidKey(String),
    #[error("the shared store is unreachable: {0}")]
    Unavailable(String),
    #[error("lost the lock on {0} (its lease expired or another replica took it over): not writing")]
    LockLost(String),
    #[error("{key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("cannot write {dir}: {source}")]
    NotWritable { dir: std::path::PathBuf, source: std::io::Error },
}

impl From<crate::atomic::FileError> for StoreError {
    fn from(e: crate::atomic::FileError) -> Self {
        Self::Io { path: e.path, source: e.source }
    }
}

impl StoreError {
    /// A permanent error needs an operator; a retryable one may pass.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::NotWritable { .. } | Self::Unavailable(_) | Self::LockLost(_))
    }
}

/// Accounts and certificates by name.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Whether the store can be read now (for `/readyz`).
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The serialized account for `key` (resolver name), if any.
    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Saves account credentials; they hold a private key, so 0600.
    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError>;
    /// Sets a stored account aside (the CA no longer knows it); the next
    /// `load_account` finds none. The old file is kept for the record.
    async fn forget_account(&self, key: &str) -> Result<(), StoreError>;
    /// The last good bundle stored under `name`, if any.
    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError>;
    /// Stores `bundle` as the new last good one. Implementations check that it
    /// parses and matches its key first, and keep the previous one on failure.
    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError>;
    /// Records that the certificate with `serial` was revoked by the
    /// operator: it must not be deployed again, nor silently re-ordered.
    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError>;
    /// The serial recorded by `mark_revoked`, if any.
    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Forgets the revocation mark (a forced renewal replaces the certificate).
    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError>;
    /// Records the open order for `name` and its CSR key, so that a
    /// restart resumes it instead of ordering again.
    /// Holds a private key: sealed or 0600, like an account.
    async fn save_pending(&self, name: &str, order: &PendingOrder) -> Result<(), StoreError>;
    /// The order recorded by `save_pending`, if any.
    async fn load_pending(&self, name: &str) -> Result<Option<PendingOrder>, StoreError>;
    /// Forgets the pending order (its certificate is stored, or the CA
    /// dropped it).
    async fn clear_pending(&self, name: &str) -> Result<(), StoreError>;

    /// Takes the lock `id` (`certificates/<name>`, `accounts/<resolver>`)
    /// so that one replica alone orders or registers. A store used by one
    /// process always grants it.
    async fn lock(&self, id: &str) -> Result<Acquired, StoreError> {
        check_key(&id.replace('/', "-"))?;
        Ok(Acquired::Lock(Lock::local()))
    }
    /// Stores `bundle` only while `lock` is still held: the write of a
    /// replica whose lease expired is refused ([`StoreError::LockLost`]).
    async fn save_certificate_fenced(&self, name: &str, bundle: &Bundle, lock: &Lock) -> Result<(), StoreError> {
        let _ = lock;
        self.save_certificate(name, bundle).await
    }
    /// Stores an issued certificate (fenced by `lock`), then forgets its
    /// revocation mark and its pending order: one call where a store can
    /// make it one (the file store: one blocking call instead of three).
    /// `Ok(Some(e))`: stored, but the pending order could not be forgotten,
    /// which is harmless (the next order downloads the same certificate).
    async fn save_issued(&self, name: &str, bundle: &Bundle, lock: &Lock) -> Result<Option<StoreError>, StoreError> {
        self.save_certificate_fenced(name, bundle, lock).await?;
        self.clear_revoked(name).await?;
        Ok(self.clear_pending(name).await.err())
    }
    /// What a certificate's task needs when it starts, in one call: the
    /// last good bundle (parsed), the revocation mark, whether an order is
    /// pending and the recorded backoff. Errors reading the pending order or
    /// the backoff are logged and read as none: they delay nothing that the
    /// next order would not redo.
    async fn load_stored(&self, name: &str) -> Result<Stored, StoreError> {
        let bundle = self.load_certificate(name).await?;
        let revoked = self.revoked(name).await?;
        let pending = self.load_pending(name).await.unwrap_or_else(|e| unreadable(name, "pending order", &e)).is_some();
        let renewal = self.load_renewal(name).await.unwrap_or_else(|e| unreadable(name, "renewal state", &e));
        let issuer = self.load_issuer(name).await.unwrap_or_else(|e| unreadable(name, "issuing resolver", &e));
        let bundle = bundle.and_then(|b| cert::inspect(&b, None).ok().map(|info| (b, info)));
        Ok(Stored { bundle, revoked, pending, renewal, issuer })
    }
    /// [`load_stored`](Self::load_stored) for each of `names`, in order:
    /// at start-up, thousands at once. A store that can do them in one go
    /// (the file store: one blocking call for all) does.
    async fn load_stored_many(&self, names: Vec<String>) -> Vec<Result<Stored, StoreError>> {
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            out.push(self.load_stored(name).await);
        }
        out
    }
    /// The resolver that issued the certificate stored under `name`, when
    /// the certificate has several ([`crate::config::Certificate::resolvers`]):
    /// its renewal information and revocation go there.
    async fn load_issuer(&self, name: &str) -> Result<Option<String>, StoreError> {
        let _ = name;
        Ok(None)
    }
    /// Records which resolver issued the certificate stored under `name`.
    async fn save_issuer(&self, name: &str, resolver: &str) -> Result<(), StoreError> {
        let _ = (name, resolver);
        Ok(())
    }
    /// Renewal state shared with other replicas (failures, backoff).
    async fn load_renewal(&self, name: &str) -> Result<Option<RenewalState>, StoreError> {
        let _ = name;
        Ok(None)
    }
    /// Records renewal state (`None`: the last order succeeded).
    async fn save_renewal(&self, name: &str, state: Option<&RenewalState>) -> Result<(), StoreError> {
        let _ = (name, state);
        Ok(())
    }
}

/// A certificate's stored state at start ([`Store::load_stored`]).
#[derive(Debug, Default)]
pub struct Stored {
    /// The last good bundle and its leaf.
    pub bundle: Option<(Bundle, CertInfo)>,
    /// The serial the operator revoked.
    pub revoked: Option<String>,
    /// An order was recorded and its certificate not stored.
    pub pending: bool,
    pub renewal: Option<RenewalState>,
    /// The resolver that issued the bundle, when recorded.
    pub issuer: Option<String>,
}

/// Logs a part of the stored state that could not be read; reads as none.
pub(crate) fn unreadable<T>(name: &str, what: &str, error: &StoreError) -> Option<T> {
    tracing::warn!(certificate = %name, error = %error, "cannot read the {what}");
    None
}

/// An order whose certificate is not stored yet (the CA may be validating
/// it, or may have issued it): its URL and the key for its CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOrder {
    pub url: String,
    pub key_pem: SecretPem,
    /// The resolver it was ordered from (`None` in records written before
    /// issuer fallback: the certificate's first resolver).
    pub resolver: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingRecord {
    url: String,
    key_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolver: Option<String>,
}

impl PendingOrder {
    /// JSON, key in the clear: sealed (etcd) or written 0600 (files) by the store.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, StoreError> {
        let record = PendingRecord {
            url: self.url.clone(),
            key_pem: self.key_pem.expose().to_owned(),
            resolver: self.resolver.clone(),
        };
        serde_json::to_vec(&record)
            .map_err(|e| StoreError::Corrupt { key: "pending order".into(), reason: e.to_string() })
    }

    pub(crate) fn from_json(key: &str, data: &[u8]) -> Result<Self, StoreError> {
        let record: PendingRecord = serde_json::from_slice(data)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })?;
        Ok(Self { url: record.url, key_pem: SecretPem::new(record.key_pem), resolver: record.resolver })
    }
}

/// A certificate's renewal state, as other replicas should see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenewalState {
    /// Orders failed in a row.
    pub failures: u32,
    /// Not before this (seconds since the Unix epoch).
    pub next_attempt: u64,
    pub last_error: String,
    /// The replica that recorded it.
    pub replica: String,
}

/// Keys become path components: refuse anything that could escape.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_owned()))
    }
}
