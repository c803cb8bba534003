//! The file store: one directory per certificate, every write atomic.
//!
//! ```text
//! <dir>/                              0700, refused if group/other can access it
//! <dir>/accounts/<resolver>.json      0600
//! <dir>/certificates/<name>/live  ->  v<nanos>/   (symlink, swapped by rename)
//! <dir>/certificates/<name>/v<nanos>/{cert,chain,fullchain,privkey}.pem
//! ```
//!
//! Certificates are versioned PEM trees (see [`PemTree`]): a crash at any
//! point leaves `live` on the previous complete version, and the previous
//! version is kept as the last good one. A `REVOKED` file beside `live`
//! records an operator's revocation (the serial).

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;

use super::pem_tree::{io, PemTree};
use super::{check_key, Store, StoreError};
use crate::atomic;
use crate::cert::Bundle;

const REVOKED: &str = "REVOKED";

/// Certificates and accounts under one state directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
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
        for sub in ["accounts", "certificates"] {
            let dir = root.join(sub);
            DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io(&dir))?;
        }
        Ok(Self { root: root.to_owned() })
    }

    /// The directory holding the live PEM files of certificate `name`.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.tree().live_dir(name)
    }

    fn account_path(&self, key: &str) -> PathBuf {
        self.root.join("accounts").join(format!("{key}.json"))
    }

    fn tree(&self) -> PemTree {
        PemTree::new(self.root.join("certificates"))
    }
}

#[async_trait]
impl Store for FileStore {
    async fn health(&self) -> Result<(), StoreError> {
        let dir = self.root.join("certificates");
        blocking(move || fs::read_dir(&dir).map(drop).map_err(|source| StoreError::Io { path: dir, source })).await
    }

    async fn load_account(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let path = self.account_path(key);
        blocking(move || match fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        })
        .await
    }

    async fn save_account(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.account_path(key);
        let data = data.to_vec();
        blocking(move || Ok(atomic::write_file(&path, &data, 0o600)?)).await
    }

    async fn forget_account(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.account_path(key);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let aside = path.with_extension(format!("json.forgotten-{nanos}"));
        blocking(move || match fs::rename(&path, &aside) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
            _ => Ok(()),
        })
        .await
    }

    async fn load_certificate(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        check_key(name)?;
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || this.tree().load(&name)).await
    }

    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name, bundle) = (self.clone(), name.to_owned(), bundle.clone());
        blocking(move || this.tree().write(&name, &bundle).map(|_| ())).await
    }

    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let dir = self.root.join("certificates").join(name);
        let (path, serial) = (dir.join(REVOKED), format!("{serial}\n"));
        blocking(move || {
            DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io(&dir))?;
            Ok(atomic::write_file(&path, serial.as_bytes(), 0o600)?)
        })
        .await
    }

    async fn revoked(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_key(name)?;
        let path = self.root.join("certificates").join(name).join(REVOKED);
        blocking(move || match fs::read_to_string(&path) {
            Ok(serial) => Ok(Some(serial.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        })
        .await
    }

    async fn clear_revoked(&self, name: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let path = self.root.join("certificates").join(name).join(REVOKED);
        blocking(move || match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
            _ => Ok(()),
        })
        .await
    }
}

// === helpers ===

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) }))
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
