//! Spent small files kept for reuse, in `<dir>/spares/s<pid>-<n>` (0700,
//! each file 0600 and empty).
//!
//! Every certificate's first order writes two short-lived files, its
//! pending-order record and its challenge answer, and used to delete both.
//! On ext4 without a journal (CI machines and some container hosts), the
//! kernel skips the inodes freed in the last 60 to 300 seconds when it
//! allocates one, reading each to see when it was freed: every new file
//! costs as much as the number freed lately, and 1,000 first orders spent
//! about half the sidecar's CPU there (`find_inode_bit` →
//! `recently_deleted`, perf). So a spent file is renamed here and emptied
//! instead of deleted, and the next such write fills a spare and renames it
//! into place: no inode is freed or allocated in the steady state.
//!
//! A write is as atomic as [`atomic::replace_unsynced`]: the spare is
//! claimed by renaming it to a temp name beside the target (a command
//! running beside the daemon may know the same spare: only one rename
//! wins, the other writes a fresh temp file), filled, and renamed over the
//! target. A kill in between leaves a temp file, swept as any other. A
//! spare that cannot be reused (a planted symlink) is removed and the write
//! takes a fresh temp file. At most [`KEPT`] spares are kept.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;
use crate::atomic::{self, FileError};

/// The directory under the store's root.
pub(super) const SPARES: &str = "spares";
/// The most spares kept: more than the orders a CA's pace lets run at once
/// have files in flight (16 orders, two files each).
pub(super) const KEPT: usize = 64;

/// The spare files of one store directory.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    /// Names of the spares ready for reuse.
    free: Vec<String>,
    /// The number the next retired file gets (after this process's id).
    next: u64,
}

/// Opens `path` for writing from its start, not following a symlink.
fn open_truncated(path: &Path) -> std::io::Result<fs::File> {
    OpenOptions::new().write(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

impl Spares {
    /// Opens (creating, 0700) `<root>/spares` and keeps the spares a
    /// previous run left; anything else there is removed.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join(SPARES);
        atomic::own_dir(&dir, 0o700)?;
        let mut pool = Pool::default();
        let entries = fs::read_dir(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        for entry in entries.flatten() {
            let name = entry.file_name().into_string().ok().filter(|n| n.starts_with('s'));
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            match name {
                Some(name) if regular && pool.free.len() < KEPT => pool.free.push(name),
                _ => {
                    let path = entry.path();
                    let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    if let Err(e) = removed {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a stray spare");
                    }
                }
            }
        }
        Ok(Self { dir, pool: Mutex::new(pool) })
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `data` to `path` (mode `mode`) as
    /// [`atomic::replace_unsynced`] does, in a spare when there is one.
    /// `path`'s directory must be one the caller owns (checked).
    pub fn write(&self, path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
        let Some(name) = self.pool().free.pop() else { return atomic::replace_unsynced(path, data, mode) };
        let tmp = atomic::temp_beside(path);
        if fs::rename(self.dir.join(&name), &tmp).is_err() {
            // Claimed by another process, or gone.
            return atomic::replace_unsynced(path, data, mode);
        }
        let written = open_truncated(&tmp)
            .and_then(|mut file| {
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                file.write_all(data)
            })
            .and_then(|()| fs::rename(&tmp, path));
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(spare = %name, error = %e, "a spare could not be reused; writing anew");
                let _ = fs::remove_file(&tmp).or_else(|_| fs::remove_dir_all(&tmp));
                atomic::replace_unsynced(path, data, mode)
            }
        }
    }

    /// Removes `path` (a regular file; absent is fine): kept, emptied, as a
    /// spare while there are fewer than [`KEPT`], deleted otherwise.
    pub fn retire(&self, path: &Path) -> std::io::Result<()> {
        let name = {
            let mut pool = self.pool();
            (pool.free.len() < KEPT).then(|| {
                pool.next += 1;
                format!("s{}-{}", std::process::id(), pool.next - 1)
            })
        };
        let deleted = || match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        let Some(name) = name else { return deleted() };
        let spare = self.dir.join(&name);
        match fs::rename(path, &spare) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => return deleted(),
        }
        // What it held (an order's key) does not stay on disk.
        match open_truncated(&spare) {
            Ok(_) => self.pool().free.push(name),
            // Not a file (a directory or a symlink planted as `path`).
            Err(_) => {
                let _ = fs::remove_file(&spare).or_else(|_| fs::remove_dir_all(&spare));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "spares_tests.rs"]
mod tests;
