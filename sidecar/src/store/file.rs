//! The file store: one directory per certificate, every write atomic.
//!
//! ```text
//! <dir>/                              0700, refused if group/other can access it
//! <dir>/accounts/<resolver>.json      0600
//! <dir>/certificates/<name>/live  ->  v<nanos>/   (symlink, swapped by rename)
//! <dir>/certificates/<name>/v<nanos>/{cert,chain,fullchain,privkey}.pem
//! ```
//!
//! A new version is written into a temporary directory (files fsynced,
//! `privkey.pem` 0600), renamed into place, then `live` is swapped with one
//! `rename(2)` of a fresh symlink and the directory fsynced. A crash at any
//! point leaves `live` on the previous complete version. The previous version
//! is kept as the last good one; older ones are removed. A `REVOKED` file
//! beside `live` records an operator's revocation (the serial).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{check_key, Store, StoreError};
use crate::cert::{self, Bundle, SecretPem};

const LIVE: &str = "live";
const REVOKED: &str = "REVOKED";
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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
        self.root.join("certificates").join(name).join(LIVE)
    }

    fn account_path(&self, key: &str) -> PathBuf {
        self.root.join("accounts").join(format!("{key}.json"))
    }

    fn save_certificate_sync(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        let info = cert::inspect(bundle, None)
            .map_err(|source| StoreError::InvalidCertificate { name: name.to_owned(), source })?;
        let cert_dir = self.root.join("certificates").join(name);
        DirBuilder::new().recursive(true).mode(0o700).create(&cert_dir).map_err(io(&cert_dir))?;

        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let version = format!("v{nanos:024}");
        let tmp = cert_dir.join(format!(".tmp-{version}"));
        DirBuilder::new().mode(0o700).create(&tmp).map_err(io(&tmp))?;
        let files: [(&str, &str, u32); 4] = [
            ("cert.pem", &info.leaf_pem, 0o644),
            ("chain.pem", &info.chain_pem, 0o644),
            ("fullchain.pem", &bundle.fullchain_pem, 0o644),
            ("privkey.pem", bundle.key_pem.expose(), 0o600),
        ];
        for (file, contents, mode) in files {
            write_synced(&tmp.join(file), contents.as_bytes(), mode)?;
        }
        sync_dir(&tmp)?;
        let final_dir = cert_dir.join(&version);
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        sync_dir(&cert_dir)?;

        let previous = fs::read_link(cert_dir.join(LIVE)).ok();
        let link_tmp = cert_dir.join(format!(".{LIVE}.tmp"));
        let _ = fs::remove_file(&link_tmp);
        std::os::unix::fs::symlink(&version, &link_tmp).map_err(io(&link_tmp))?;
        fs::rename(&link_tmp, cert_dir.join(LIVE)).map_err(io(&cert_dir))?;
        sync_dir(&cert_dir)?;

        prune(&cert_dir, &version, previous.as_deref());
        Ok(())
    }

    fn load_certificate_sync(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        let cert_dir = self.root.join("certificates").join(name);
        if !cert_dir.exists() {
            return Ok(None);
        }
        // `live` first, then the other versions newest first: the last good one.
        let mut candidates = vec![cert_dir.join(LIVE)];
        let mut versions = version_dirs(&cert_dir)?;
        versions.sort_unstable_by(|a, b| b.cmp(a));
        candidates.extend(versions.into_iter().map(|v| cert_dir.join(v)));
        for dir in candidates {
            let Some(bundle) = read_bundle(&dir) else { continue };
            match cert::inspect(&bundle, None) {
                Ok(_) => return Ok(Some(bundle)),
                Err(e) => {
                    tracing::warn!(certificate = name, dir = %dir.display(), error = %e, "skipping unusable stored version")
                }
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Store for FileStore {
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
        blocking(move || write_atomic(&path, &data, 0o600)).await
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
        blocking(move || this.load_certificate_sync(&name)).await
    }

    async fn save_certificate(&self, name: &str, bundle: &Bundle) -> Result<(), StoreError> {
        check_key(name)?;
        let (this, name, bundle) = (self.clone(), name.to_owned(), bundle.clone());
        blocking(move || this.save_certificate_sync(&name, &bundle)).await
    }

    async fn mark_revoked(&self, name: &str, serial: &str) -> Result<(), StoreError> {
        check_key(name)?;
        let dir = self.root.join("certificates").join(name);
        let (path, serial) = (dir.join(REVOKED), format!("{serial}\n"));
        blocking(move || {
            DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io(&dir))?;
            write_atomic(&path, serial.as_bytes(), 0o600)
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Writes a new file with `mode` and fsyncs it. The file must not exist.
fn write_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    // `mode` is filtered by the umask at creation: set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io(path))?;
    file.write_all(data).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Temp file in the same directory, `mode`, write, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    if let Err(e) = write_synced(&tmp, data, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn version_dirs(cert_dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(cert_dir).map_err(io(cert_dir))? {
        let entry = entry.map_err(io(cert_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('v') && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(name);
        }
    }
    Ok(out)
}

fn read_bundle(dir: &Path) -> Option<Bundle> {
    let fullchain_pem = fs::read_to_string(dir.join("fullchain.pem")).ok()?;
    let key_pem = fs::read_to_string(dir.join("privkey.pem")).ok()?;
    Some(Bundle { fullchain_pem, key_pem: SecretPem::new(key_pem) })
}

/// Removes versions other than `current` and `previous`, and leftover temps.
fn prune(cert_dir: &Path, current: &str, previous: Option<&Path>) {
    let previous = previous.and_then(|p| p.to_str()).unwrap_or("");
    let Ok(entries) = fs::read_dir(cert_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_version = name.starts_with('v') && name != current && name != previous;
        if stale_version || name.starts_with(".tmp-") {
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove old certificate version");
            }
        }
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
