//! Reading another client's files without trusting them: only regular
//! files, each up to a cap, opened so that a FIFO cannot block and a
//! device cannot be read forever ([`atomic::read_file`]); directories are
//! walked without following a symlink, within a budget of entries, so a
//! loop of links costs nothing.
//!
//! The rule for symlinks: the path the operator names (`acme.json`, the
//! certbot directory) may be one. Inside the certbot directory, a symlink
//! to a file is followed only when it resolves to a regular file inside
//! that directory (certbot's `live/` links into `archive/`); a symlink to a
//! directory is never followed, and is reported as skipped.

use std::fs;
use std::path::{Path, PathBuf};

use super::ImportError;
use crate::atomic;

/// The most read of one PEM or JSON file of certbot's.
pub(super) const FILE_CAP: u64 = 1 << 20;
/// The most read of a Traefik `acme.json` (thousands of certificates).
pub(super) const ACME_JSON_CAP: u64 = 64 << 20;
/// The most directory entries looked at in one certbot directory.
const ENTRIES_CAP: usize = 10_000;

/// Reads the file the operator named (it may be a symlink), up to `cap`.
pub(super) fn read_named(path: &Path, cap: u64) -> Result<String, ImportError> {
    let real = fs::canonicalize(path).map_err(|source| ImportError::Read { path: path.to_owned(), source })?;
    read_real(path, &real, cap)
}

/// `real` (no symlink in it) as text, errors naming `shown`.
fn read_real(shown: &Path, real: &Path, cap: u64) -> Result<String, ImportError> {
    atomic::read_text(real, cap).map_err(|e| ImportError::Read { path: shown.to_owned(), source: e.source })
}

/// What a directory entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    Missing,
    Directory,
    Symlink,
    /// Anything else: a file, a FIFO, ...
    Other(&'static str),
}

/// A certbot config directory: everything read is inside it.
#[derive(Debug)]
pub(super) struct Tree {
    /// As the operator gave it, for messages.
    shown: PathBuf,
    /// Without symlinks, to tell inside from outside.
    real: PathBuf,
    /// Directory entries still allowed to be looked at.
    budget: usize,
    /// `(what, why)` for each symlinked directory left out.
    pub(super) skipped: Vec<(String, String)>,
}

impl Tree {
    /// Opens the directory the operator named (it may be a symlink).
    pub(super) fn open(dir: &Path) -> Result<Self, ImportError> {
        let real = fs::canonicalize(dir).map_err(|source| ImportError::Read { path: dir.to_owned(), source })?;
        if !real.is_dir() {
            return Err(ImportError::invalid(dir, "not a directory"));
        }
        Ok(Self { shown: dir.to_owned(), real, budget: ENTRIES_CAP, skipped: Vec::new() })
    }

    /// `path` relative to the tree, for messages.
    pub(super) fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.shown).unwrap_or(path)
    }

    /// What `path` is, not following a symlink.
    pub(super) fn entry(path: &Path) -> Result<Entry, ImportError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(Entry::Directory),
            Ok(meta) if meta.file_type().is_symlink() => Ok(Entry::Symlink),
            Ok(meta) => Ok(Entry::Other(atomic::kind_of(meta.file_type()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Entry::Missing),
            Err(source) => Err(ImportError::Read { path: path.to_owned(), source }),
        }
    }

    /// Whether `dir` is a directory to walk: a real one. A symlink to a
    /// directory is recorded as skipped.
    pub(super) fn walkable(&mut self, dir: &Path) -> Result<bool, ImportError> {
        match Self::entry(dir)? {
            Entry::Directory => Ok(true),
            Entry::Symlink if dir.is_dir() => {
                let what = format!("certbot {}", self.relative(dir).display());
                self.skipped.push((what, "a symlink to a directory, not followed".into()));
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// The real subdirectories of `dir`, sorted; none when it does not
    /// exist. Symlinks to directories are skipped (and recorded); more
    /// than the budget of entries in the whole tree is an error.
    pub(super) fn subdirs(&mut self, dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ImportError::Read { path: dir.to_owned(), source }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ImportError::Read { path: dir.to_owned(), source })?;
            self.budget = self.budget.checked_sub(1).ok_or_else(|| {
                let message = format!("more than {ENTRIES_CAP} entries; not a certbot config directory");
                ImportError::invalid(&self.shown, message)
            })?;
            let path = entry.path();
            if self.walkable(&path)? {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads `path` (inside the tree), following a symlink only to a
    /// regular file inside the tree.
    pub(super) fn read(&self, path: &Path, cap: u64) -> Result<String, ImportError> {
        let real = fs::canonicalize(path).map_err(|source| ImportError::Read { path: path.to_owned(), source })?;
        if !real.starts_with(&self.real) {
            let message =
                format!("is a symlink to {}, outside {}; refusing to follow it", real.display(), self.shown.display());
            return Err(ImportError::invalid(path, message));
        }
        read_real(path, &real, cap)
    }
}
