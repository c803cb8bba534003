//! Crash-safe writes, in one place for every writer (the file store, the
//! PEM trees nginx reads, Envoy's SDS files, acme-dns registrations).
//!
//! - [`write_file`] replaces one file: a uniquely named temp file in the
//!   same directory, the exact `mode`, write, fsync, `rename(2)`, fsync the
//!   directory.
//! - [`write_version`] writes a directory of files under a temp name and
//!   renames it into place as one version; [`point_link`] then swaps a
//!   symlink onto it with one `rename(2)`. Readers following the link see
//!   the old version or the new one, never a mix.
//!
//! A failed write removes what it left behind, so no `.tmp-*` piles up on a
//! full disk. A crash can still leave a temp (nothing runs after `kill -9`);
//! [`prune`] takes those away on the next write.
//!
//! This module reads no configuration and knows nothing of certificates.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A file operation that failed, and on which path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Maps an `io::Error` on `path` to a [`FileError`].
pub fn on(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError { path: path.to_owned(), source }
}

/// Names temp files apart within one process (the pid parts processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `.<name>.tmp-<pid>-<n>` beside `name`: never a name a reader looks for.
fn temp_name(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.tmp-{}-{n}", std::process::id())
}

/// A fresh version name, `<prefix><nanoseconds since the epoch>`, zero
/// padded so names sort by time.
pub fn version_name(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}{nanos:024}")
}

/// Creates `dir` and its parents, each new one with `mode`.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), FileError> {
    DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(on(dir))
}

/// Writes a new file with exactly `mode` and fsyncs it. The file must not exist.
pub fn create_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(on(path))?;
    // `mode` is filtered by the umask at creation: set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(on(path))?;
    file.write_all(data).map_err(on(path))?;
    file.sync_all().map_err(on(path))
}

/// Fsyncs a directory, so the renames in it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(on(dir))
}

/// Replaces `path` with `data` (mode `mode`) so that a reader or a crash
/// sees the old contents or the new, whole.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(temp_name(&name));
    let written = create_synced(&tmp, data, mode).and_then(|()| fs::rename(&tmp, path).map_err(on(path)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Writes `files` (name, contents, mode) into a new directory
/// `<parent>/<version>` (mode 0700): built under a temp name, each file and
/// the directory fsynced, then renamed into place and `parent` fsynced.
/// On failure the temp directory is removed.
pub fn write_version(parent: &Path, version: &str, files: &[(&str, &[u8], u32)]) -> Result<PathBuf, FileError> {
    let tmp = parent.join(temp_name(version));
    let target = parent.join(version);
    let written = (|| {
        DirBuilder::new().mode(0o700).create(&tmp).map_err(on(&tmp))?;
        for (name, contents, mode) in files {
            create_synced(&tmp.join(name), contents, *mode)?;
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, &target).map_err(on(&target))
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_dir(parent)?;
    Ok(target)
}

/// Points the symlink `<parent>/<link>` at `target` (relative to `parent`)
/// with one `rename(2)` of a fresh link, then fsyncs `parent`.
pub fn point_link(parent: &Path, link: &str, target: &Path) -> Result<(), FileError> {
    let tmp = parent.join(temp_name(link));
    let made = std::os::unix::fs::symlink(target, &tmp)
        .map_err(on(&tmp))
        .and_then(|()| fs::rename(&tmp, parent.join(link)).map_err(on(parent)));
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent)
}

/// Whether `name` is a temp left by this module (a crashed write's).
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Removes, in `parent`, the entries `stale` says are old versions, and
/// every temp a crashed write left. Best effort: failures are logged.
pub fn prune(parent: &Path, stale: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(stale(&name) || is_temp(&name)) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old version");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_whole_with_the_exact_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_file(&path, b"one", 0o600).unwrap();
        write_file(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_failed_version_write_removes_its_temp_directory() {
        let dir = tempfile::tempdir().unwrap();
        // Two files of the same name: the second create_new fails half-way.
        let err = write_version(dir.path(), "v1", &[("x", b"1", 0o600), ("x", b"2", 0o600)]).unwrap_err();
        assert!(err.path.ends_with("x"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "temp left behind");
    }

    #[test]
    fn a_link_swap_points_at_the_new_version_and_prune_keeps_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["v1", "v2", "v3"] {
            write_version(dir.path(), v, &[("f", v.as_bytes(), 0o644)]).unwrap();
            point_link(dir.path(), "live", Path::new(v)).unwrap();
        }
        fs::create_dir(dir.path().join(".v9.tmp-1-1")).unwrap();
        assert_eq!(fs::read(dir.path().join("live/f")).unwrap(), b"v3");
        prune(dir.path(), |name| name.starts_with('v') && name != "v3" && name != "v2");
        let mut names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["live", "v2", "v3"]);
    }
}
