//! The file store: one directory per certificate, every write atomic.
//!
//! ```text
//! <dir>/                              0700, refused if group/other can access it
//! <dir>/accounts/<resolver>.json      0600
//! <dir>/certificates/<name>/live  ->  v<nanos>/   (symlink, swapped by rename)
//! <dir>/certificates/<name>/v<nanos>/{cert,chain,fullchain,privkey}.pem
//! <dir>/certificates/<name>/PENDING   0600, JSON: the open order and its CSR key
//! <dir>/certificates/<name>/RENEWAL   0600, JSON: the backoff after failed orders
//! <dir>/certificates/<name>/ISSUER    0600, the resolver that issued it (with several)
//! <dir>/spares/s<pid>-<n>             0600, empty: spent files kept for reuse ([`Spares`])
//! ```
//!
//! Certificates are versioned PEM trees (see [`PemTree`]): a crash at any
//! point leaves `live` on the previous complete version, and the previous
//! version is kept as the last good one. A `REVOKED` file beside `live`
//! records an operator's revocation (the serial). `PENDING` records the
//! open order until its certificate is stored, so a restart resumes it
//! instead of ordering again.
//!
//! `<dir>` is the operator's and may be a symlink; nothing below it is
//! followed that the store did not create: `accounts`, `certificates` and
//! `certificates/<name>` are checked to be real directories before each
//! write (and read), files are opened without following a symlink, and a
//! planted symlink is an error naming it ([`atomic::own_dir`]).

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::pem_tree::{io, PemTree};
use super::spares::Spares;
use super::{check_key, unreadable, Lock, PendingOrder, RenewalState, Store, StoreError, Stored};
use crate::atomic;
use crate::cert::Bundle;

const ACCOUNTS: &str = "accounts";
const CERTIFICATES: &str = "certificates";
const REVOKED: &str = "REVOKED";
const PENDING: &str = "PENDING";
/// The backoff of a certificate whose last order failed.
const RENEWAL: &str = "RENEWAL";
/// The resolver that issued the stored certificate (issuer fallback).
const ISSUER: &str = "ISSUER";
/// The most read of a pending order (a URL and a key).
const PENDING_CAP: u64 = 1 << 16;
/// The most read of an account file (a JWK and a URL).
const ACCOUNT_CAP: u64 = 1 << 20;
/// The most read of a revocation mark (a serial).
const REVOKED_CAP: u64 = 4096;

/// Certificates and accounts under one state directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    /// Where pending-order records go when they are done, for reuse.
    spares: Arc<Spares>,
}

impl FileStore {
    /// Opens (creating with 0700 if missing) the state directory. Refuses one
    /// that group or others can access: it holds private keys.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        if !root.exists() {
            DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(io(root))?;
        }
        let mode = fs::metadata(root).map_err(io(root))?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::InsecurePermissions { path: root.to_owned(), mode });
        }
        for sub in [ACCOUNTS, CERTIFICATES] {
            atomic::own_dir(&root.join(sub), 0o700)?;
        }
        Ok(Self { root: root.to_owned(), spares: Arc::new(Spares::open(root)?) })
    }

    /// The spare files, shared with the store's challenge board.
    pub fn spares(&self) -> Arc<Spares> {
        Arc::clone(&self.spares)
    }

    /// `<dir>/<sub>`, checked to be a real directory (created if missing).
    fn own(&self, sub: &str) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(sub);
        atomic::own_dir(&dir, 0o700)?;
        Ok(dir)
    }

    /// `<dir>/certificates/<name>`, checked (created if missing).
    fn own_certificate_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.own(CERTIFICATES)?.join(name);
        atomic::own_dir(&dir, 0o700)?;
        Ok(dir)
    }

    /// `<dir>/certificates/<name>` when it exists, checked.
    fn existing_certificate_dir(&self, name: &str) -> Result<Option<PathBuf>, StoreError> {
        let certificates = self.root.join(CERTIFICATES);
        let dir = certificates.join(name);
        Ok((atomic::is_own_dir(&certificates)? && atomic::is_own_dir(&dir)?).then_some(dir))
    }

    /// The directory holding the live PEM files of certificate `name`.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.tree().live_dir(name)
    }

    fn account_path(&self, key: &str) -> PathBuf {
        self.root.join(ACCOUNTS).join(format!("{key}.json"))
    }

    fn tree(&self) -> PemTree {
        PemTree::new(self.root.join(CERTIFICATES))
    }
}

#[async_trait]
impl Store for FileStore {
    /// Readable, and writable: a probe file is created, synced and removed
    /// in `certificates/` (a read-only or full disk fails here, not at the
    /// next renewal).
    async fn health(&self) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || {
            let dir = this.own(CERTIFICATES)?;
            fs::read_dir(&dir).map(drop).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
            let probe = dir.join(format!(".readyz.tmp-{}-probe", std::process::id()));
            let written = atomic::create_synced(&probe, b"ok\n", 0o600);
            let removed = fs::remove_file(&probe);
            match (written, removed) {
                (Err(e), _) => Err(StoreError::NotWritable { dir, source: e.source }),
                (Ok(()), Err(source)) => Err(StoreError::NotWritable { dir, source }),
                (Ok(()), Ok(())) => Ok(()),
            }
        })
        .await
    }

    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let (this, path) = (self.clone(), self.account_path(key));
        blocking(move || {
            if !atomic::is_own_dir(&this.root.join(ACCOUNTS))? {
                return Ok(None);
            }
            match atomic::read_file(&path, ACCOUNT_CAP) {
                Ok(data) => Ok(Some(data)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        let (this, path, data) = (self.clone(), self.account_path(key), data.to_vec());
        blocking(move || {
            this.own(ACCOUNTS)?;
            Ok(atomic::write_file(&path, &data, 0o600)?)
        })
        .await
    }

    async fn forget_account(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.account_path(key);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let aside = path.with_extension(format!("json.forgotten-{nanos}"));
        let this = self.clone();
        blocking(move || {
            this.own(ACCOUNTS)?;
            match fs::rename(&path, &aside) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || match this.existing_certificate_dir(&name)? {
            Some(_) => this.tree().load(&name),
            None => Ok(None),
        })
        .await
    }

    /// One blocking call for the four reads: at start-up with thousands of
    /// certificates the round trips to the blocking pool cost more than the
    /// reads.
    async fn load_stored(&self, name: &str) -> Result<Stored, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || this.stored(&name)).await
    }

    /// One blocking call for all of `names`: at start-up a hand-off to the
    /// blocking pool per certificate cost about a quarter of the load.
    async fn load_stored_many(&self, names: Vec<String>) -> Vec<Result<Stored, StoreError>> {
        let this = self.clone();
        let count = names.len();
        let loaded = blocking(move || {
            Ok(names.iter().map(|name| check_key(name).and_then(|()| this.stored(name))).collect::<Vec<_>>())
        })
        .await;
        match loaded {
            Ok(each) => each,
            // The blocking task itself failed (a panic): the same for all.
            Err(e) => (0..count)
                .map(|_| Err(StoreError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) }))
                .collect(),
        }
    }

    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name, bundle) = (self.clone(), name.to_owned(), bundle.clone());
        blocking(move || {
            this.own(CERTIFICATES)?;
            this.tree().write(&name, &bundle).map(|_| ())
        })
        .await
    }

    async fn save_issued(&self, name: &str, bundle: &Bundle, lock: &Lock) -> Result<Option<StoreError>, StoreError> {
        check_key(name)?;
        let _ = lock;
        let (this, name, bundle) = (self.clone(), name.to_owned(), bundle.clone());
        blocking(move || {
            let certificates = this.own(CERTIFICATES)?;
            this.tree().write(&name, &bundle)?;
            // The write checked (or made) `<name>` as its own directory.
            let dir = certificates.join(&name);
            remove_if_there(&dir.join(REVOKED))?;
            let pending = dir.join(PENDING);
            Ok(this.spares.retire(&pending).map_err(|source| StoreError::Io { path: pending, source }).err())
        })
        .await
    }

    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name, serial) = (self.clone(), name.to_owned(), format!("{serial}\n"));
        blocking(move || {
            let dir = this.own_certificate_dir(&name)?;
            Ok(atomic::write_file(&dir.join(REVOKED), serial.as_bytes(), 0o600)?)
        })
        .await
    }

    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(None) };
            read_revoked(&dir)
        })
        .await
    }

    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(()) };
            remove_if_there(&dir.join(REVOKED))
        })
        .await
    }

    async fn save_pending(&self, name: &str, order: &PendingOrder) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name, json) = (self.clone(), name.to_owned(), order.to_json()?);
        blocking(move || {
            this.own(CERTIFICATES)?;
            let dir = this.own_certificate_dir(&name)?;
            // Not fsynced: it is written between the CA's answer to
            // newOrder and the first challenge, where a kill costs an extra
            // order; what it must survive is a killed process (the page
            // cache stays). A power loss may lose it: one extra order.
            Ok(this.spares.write(&dir.join(PENDING), &json, 0o600)?)
        })
        .await
    }

    async fn load_pending(&self, name: &str) -> Result<Option<PendingOrder>, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(None) };
            read_pending(&dir)
        })
        .await
    }

    async fn load_issuer(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(None) };
            read_issuer(&dir)
        })
        .await
    }

    async fn save_issuer(&self, name: &str, resolver: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name, line) = (self.clone(), name.to_owned(), format!("{resolver}\n"));
        blocking(move || {
            let dir = this.own_certificate_dir(&name)?;
            Ok(atomic::write_file(&dir.join(ISSUER), line.as_bytes(), 0o600)?)
        })
        .await
    }

    /// A restart during a backoff keeps it: a crash loop (or a probe that
    /// restarts the container) must not order again at every start.
    async fn load_renewal(&self, name: &str) -> Result<Option<RenewalState>, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(None) };
            read_renewal(&dir)
        })
        .await
    }

    async fn save_renewal(&self, name: &str, state: Option<&RenewalState>) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        let json = state
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt { key: name.clone(), reason: e.to_string() })?;
        blocking(move || match json {
            Some(json) => {
                this.own(CERTIFICATES)?;
                let dir = this.own_certificate_dir(&name)?;
                Ok(atomic::write_file(&dir.join(RENEWAL), json.as_bytes(), 0o600)?)
            }
            None => {
                let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(()) };
                let path = dir.join(RENEWAL);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
                    Err(_) => Ok(()),
                    Ok(()) => Ok(atomic::sync_dir(&dir)?),
                }
            }
        })
        .await
    }

    async fn clear_pending(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let Some(dir) = this.existing_certificate_dir(&name)? else { return Ok(()) };
            // Not fsynced, as it was not written so: a power loss that
            // brings the record back costs one download of the same
            // certificate.
            let path = dir.join(PENDING);
            this.spares.retire(&path).map_err(|source| StoreError::Io { path, source })
        })
        .await
    }
}

// === helpers ===

/// Removes `path`; one that is not there is not an error.
fn remove_if_there(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

impl FileStore {
    /// What is stored for `name`, read at once (see [`Store::load_stored`]).
    fn stored(&self, name: &str) -> Result<Stored, StoreError> {
        let Some(dir) = self.existing_certificate_dir(name)? else { return Ok(Stored::default()) };
        let bundle = self.tree().load_inspected(name)?;
        let revoked = read_revoked(&dir)?;
        let pending = read_pending(&dir).unwrap_or_else(|e| unreadable(name, "pending order", &e)).is_some();
        let renewal = read_renewal(&dir).unwrap_or_else(|e| unreadable(name, "renewal state", &e));
        let issuer = read_issuer(&dir).unwrap_or_else(|e| unreadable(name, "issuing resolver", &e));
        Ok(Stored { bundle, revoked, pending, renewal, issuer })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) }))
}

/// The serial in `<dir>/REVOKED`, if any.
fn read_revoked(dir: &Path) -> Result<Option<String>, StoreError> {
    match atomic::read_text(&dir.join(REVOKED), REVOKED_CAP) {
        Ok(serial) => Ok(Some(serial.trim().to_owned())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The order in `<dir>/PENDING`, if any.
fn read_pending(dir: &Path) -> Result<Option<PendingOrder>, StoreError> {
    let path = dir.join(PENDING);
    match atomic::read_file(&path, PENDING_CAP) {
        Ok(json) => PendingOrder::from_json(&path.display().to_string(), &json).map(Some),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The resolver in `<dir>/ISSUER`, if any.
fn read_issuer(dir: &Path) -> Result<Option<String>, StoreError> {
    match atomic::read_file(&dir.join(ISSUER), REVOKED_CAP) {
        Ok(line) => Ok(Some(String::from_utf8_lossy(&line).trim().to_owned()).filter(|r| !r.is_empty())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The backoff in `<dir>/RENEWAL`, if any.
fn read_renewal(dir: &Path) -> Result<Option<RenewalState>, StoreError> {
    let path = dir.join(RENEWAL);
    match atomic::read_file(&path, PENDING_CAP) {
        Ok(json) => serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { key: path.display().to_string(), reason: e.to_string() }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
