//! Versioned PEM directories, certbot-style, swapped atomically:
//!
//! ```text
//! <root>/<name>/live  ->  v<nanos>/   (symlink, swapped by rename)
//! <root>/<name>/v<nanos>/{cert,chain,fullchain,privkey}.pem
//! ```
//!
//! A version's name is `v<nanos>-<check>`: `<check>` is a digest of the
//! chain and key as they were when they passed the key check before being
//! written. A version whose files still hash to it is loaded without
//! parsing the key again (at start-up, 10,000 elliptic-curve
//! multiplications); any other (edited by hand, torn, or named `v<nanos>`
//! by an older version) is checked in full.
//!
//! A new version is written into a temporary directory (files fsynced,
//! `privkey.pem` 0600), renamed into place, then `live` is swapped with one
//! `rename(2)` of a fresh symlink and the directory fsynced. A crash at any
//! point leaves `live` on the previous complete version. The previous version
//! is kept, so `live` can be pointed back at it; older ones are removed.
//! Used by the file store and by the nginx target.
//!
//! Below the root nothing is followed that this module did not create:
//! `<name>` must be a real directory, `live` a link to a directory beside
//! it, and the PEM files regular files of at most 1 MiB
//! (see [`atomic::own_dir`]). A symlink planted there is refused with an
//! error naming it, and nothing is written through it.

use std::fs;
use std::path::{Path, PathBuf};

use super::StoreError;
use crate::atomic;
use crate::cert::{self, Bundle, CertInfo, SecretPem};

const LIVE: &str = "live";
/// The most read of one PEM file: a chain is a few kilobytes.
const PEM_CAP: u64 = 1 << 20;

/// One directory of versioned PEM trees, one per certificate name.
#[derive(Debug, Clone)]
pub struct PemTree {
    root: PathBuf,
}

/// What a write changed: `live` moved from `previous` to `current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub name: String,
    pub previous: Option<String>,
    pub current: String,
}

impl PemTree {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory holding one subdirectory per certificate.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `live` directory (a symlink) of certificate `name`.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.root.join(name).join(LIVE)
    }

    /// Writes `bundle` as a new version of `name` and points `live` at it.
    pub fn write(&self, name: &str, bundle: &Bundle) -> Result<Swap, StoreError> {
        let invalid = |source| StoreError::InvalidCertificate { name: name.to_owned(), source };
        cert::inspect(bundle, None).map_err(invalid)?;
        let (leaf_pem, chain_pem) = bundle.split().map_err(invalid)?;
        let cert_dir = self.root.join(name);
        atomic::own_dir(&cert_dir, 0o700)?;
        let previous = self.live_version(name)?;
        let version = format!("{}-{}", atomic::version_name("v"), check_of(bundle));
        let files: [(&str, &[u8], u32); 4] = [
            ("cert.pem", leaf_pem.as_bytes(), 0o644),
            ("chain.pem", chain_pem.as_bytes(), 0o644),
            ("fullchain.pem", bundle.fullchain_pem.as_bytes(), 0o644),
            ("privkey.pem", bundle.key_pem.expose().as_bytes(), 0o600),
        ];
        atomic::write_version(&cert_dir, &version, &files)?;
        self.point_live(name, &version)?;
        let keep = previous.clone().unwrap_or_default();
        atomic::prune(&cert_dir, |entry| entry.starts_with('v') && entry != version && entry != keep);
        Ok(Swap { name: name.to_owned(), previous, current: version })
    }

    /// The version `live` points at, if any; an error naming `live` (or
    /// `<name>`) when it is not what this module made.
    pub fn live_version(&self, name: &str) -> Result<Option<String>, StoreError> {
        let cert_dir = self.root.join(name);
        if !atomic::is_own_dir(&cert_dir)? {
            return Ok(None);
        }
        Ok(atomic::own_link(&cert_dir, LIVE)?)
    }

    /// Points `live` at `version` (which must be a directory beside it)
    /// with one `rename(2)`.
    pub fn point_live(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let cert_dir = self.root.join(name);
        atomic::own_dir(&cert_dir, 0o700)?;
        let target = cert_dir.join(version);
        let is_version = version.starts_with('v') && !version.contains('/');
        if !is_version || !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(StoreError::Io {
                path: target,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such version directory"),
            });
        }
        Ok(atomic::point_link(&cert_dir, LIVE, Path::new(version))?)
    }

    /// The live bundle, if it is readable and `live` is what this module made.
    pub fn read_live(&self, name: &str) -> Option<Bundle> {
        let version = self.live_version(name).ok()??;
        read_bundle(&self.root.join(name).join(version)).ok()?
    }

    /// The live bundle, else the newest usable version (the last good one).
    /// A `<name>` or `live` this module did not make is an error naming it.
    pub fn load(&self, name: &str) -> Result<Option<Bundle>, StoreError> {
        Ok(self.load_inspected(name)?.map(|(bundle, _)| bundle))
    }

    /// [`load`](Self::load) and what the leaf says: the check that the
    /// bundle is usable is the parse, so it is done once. Older versions are
    /// listed only when `live` is not usable.
    pub fn load_inspected(&self, name: &str) -> Result<Option<(Bundle, CertInfo)>, StoreError> {
        let cert_dir = self.root.join(name);
        if !atomic::is_own_dir(&cert_dir)? {
            return Ok(None);
        }
        let live = self.live_version(name)?;
        if let Some(found) = live.as_deref().and_then(|version| usable(name, &cert_dir.join(version))) {
            return Ok(Some(found));
        }
        let mut versions = version_dirs(&cert_dir)?;
        versions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(versions.iter().filter(|v| Some(*v) != live.as_ref()).find_map(|v| usable(name, &cert_dir.join(v))))
    }
}

/// The bundle in version directory `dir` and its leaf, when it is complete
/// and parses; else `None`, with a warning naming why.
fn usable(name: &str, dir: &Path) -> Option<(Bundle, CertInfo)> {
    let bundle = match read_bundle(dir) {
        Ok(Some(bundle)) => bundle,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(certificate = name, error = %e, "skipping unreadable stored version");
            return None;
        }
    };
    let known = dir
        .file_name()
        .and_then(|v| v.to_str())
        .and_then(|v| v.rsplit_once('-'))
        .is_some_and(|(_, check)| check == check_of(&bundle));
    let inspected = if known { cert::inspect_known_pair(&bundle) } else { cert::inspect(&bundle, None) };
    match inspected {
        Ok(info) => Some((bundle, info)),
        Err(e) => {
            tracing::warn!(certificate = name, dir = %dir.display(), error = %e, "skipping unusable stored version");
            None
        }
    }
}

/// The check part of a version's name: 8 bytes of the bundle's
/// fingerprint.
fn check_of(bundle: &Bundle) -> String {
    bundle.fingerprint(8)
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
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

/// The bundle in version directory `dir`; `None` when a file is missing.
fn read_bundle(dir: &Path) -> Result<Option<Bundle>, atomic::FileError> {
    let read = |file: &str| match atomic::read_text(&dir.join(file), PEM_CAP) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    };
    let (Some(fullchain_pem), Some(key_pem)) = (read("fullchain.pem")?, read("privkey.pem")?) else {
        return Ok(None);
    };
    Ok(Some(Bundle { fullchain_pem, key_pem: SecretPem::new(key_pem) }))
}
