//! Crash-safe writes, in one place for every writer (the file store, the
//! PEM trees nginx reads, Envoy's SDS files, acme-dns registrations).
//!
//! - [`write_file`] replaces one file: a uniquely named temp file in the
//!   same directory, the exact `mode`, write, fsync, `rename(2)`, fsync the
//!   directory.
//! - [`write_version`] writes a directory of files under a temp name and
//!   renames it into place as one version; [`point_link`] then swaps a
//!   symlink onto it with one `rename(2)`. Readers following the link see
//!   the old version or the new one, never a mix. Both make their writes
//!   durable through [`flush`]: writers waiting at once share one syncfs(2).
//!
//! A failed write removes what it left behind, so no `.tmp-*` piles up on a
//! full disk. A crash can still leave a temp (nothing runs after `kill -9`);
//! [`prune`] takes those away on the next write, and [`sweep_temps`] at the
//! daemon's start.
//!
//! Below a root the operator configured, proxy-acme follows no symlink it
//! did not create (see [`own_dir`], [`own_link`], [`read_file`]): a
//! directory it writes in must be a real directory, a link it swaps must
//! point at a directory beside it, and a file it reads must be a
//! regular file, opened without following a symlink, read up to a cap.
//! The root itself may be a symlink: the operator chose it.
//!
//! This module reads no configuration and knows nothing of certificates.

use std::fs::{self, DirBuilder, File, FileType, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::flush;

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

/// Why a path below a root is not one proxy-acme writes in or reads: the
/// `source` of a [`FileError`] naming the path.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("is a symlink proxy-acme did not create; refusing to {0} through it")]
    Symlink(&'static str),
    #[error("is a symlink to {0:?}, not to a directory beside it; refusing to follow it")]
    StrayLink(String),
    #[error("is {0}, not a directory")]
    NotDirectory(&'static str),
    #[error("is {0}, not the symlink proxy-acme creates")]
    NotLink(&'static str),
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than {0} bytes")]
    TooLarge(u64),
}

impl FileError {
    /// `path` is refused for `why`.
    pub fn refused(path: &Path, why: Refused) -> Self {
        Self { path: path.to_owned(), source: std::io::Error::other(why) }
    }

    /// Whether the path does not exist.
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }

    /// What was refused, when the path is not one proxy-acme may use.
    pub fn refusal(&self) -> Option<&Refused> {
        self.source.get_ref().and_then(|e| e.downcast_ref::<Refused>())
    }
}

/// What a file type is, for messages.
pub fn kind_of(file_type: FileType) -> &'static str {
    if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Names temp files apart within one process (the pid parts processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `.<name>.tmp-<pid>-<n>` beside `name`: never a name a reader looks for.
fn temp_name(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.tmp-{}-{n}", std::process::id())
}

/// A fresh temp name for `path`, in its directory.
pub fn temp_beside(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(temp_name(&name))
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

/// Makes sure `dir`, a directory proxy-acme owns below a root, is a real
/// directory: created with `mode` when missing (its parent must exist),
/// refused when it is a symlink or anything else. Call it for each level
/// below the root, from the top, before writing in the last one.
pub fn own_dir(dir: &Path, mode: u32) -> Result<(), FileError> {
    for _ in 0..2 {
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FileError::refused(dir, Refused::Symlink("write")))
            }
            Ok(meta) => return Err(FileError::refused(dir, Refused::NotDirectory(kind_of(meta.file_type())))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match DirBuilder::new().mode(mode).create(dir) {
                // Another writer made it in between: look again.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                made => return made.map_err(on(dir)),
            },
            Err(e) => return Err(on(dir)(e)),
        }
    }
    Err(FileError::refused(dir, Refused::NotDirectory("changing under us")))
}

/// Whether `dir` exists as a real directory; `false` when missing, an
/// error naming it when it is a symlink or not a directory.
pub fn is_own_dir(dir: &Path) -> Result<bool, FileError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(meta) if meta.file_type().is_symlink() => Err(FileError::refused(dir, Refused::Symlink("read"))),
        Ok(meta) => Err(FileError::refused(dir, Refused::NotDirectory(kind_of(meta.file_type())))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(on(dir)(e)),
    }
}

/// The directory `<parent>/<link>` points at, when it is a link like the
/// ones [`point_link`] makes: one name, beside the link, of a real
/// directory (or of none: a removed version is not a hostile one). `None`
/// when there is no link; an error naming the link when it is anything
/// else (a link out of `parent`, to a symlink, or not a link).
pub fn own_link(parent: &Path, link: &str) -> Result<Option<String>, FileError> {
    let path = parent.join(link);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(on(&path)(e)),
    };
    if !meta.file_type().is_symlink() {
        return Err(FileError::refused(&path, Refused::NotLink(kind_of(meta.file_type()))));
    }
    let target = fs::read_link(&path).map_err(on(&path))?;
    let stray = || FileError::refused(&path, Refused::StrayLink(target.display().to_string()));
    let mut parts = target.components();
    let (Some(std::path::Component::Normal(name)), None) = (parts.next(), parts.next()) else {
        return Err(stray());
    };
    let name = name.to_str().ok_or_else(stray)?.to_owned();
    match fs::symlink_metadata(parent.join(&name)) {
        Ok(meta) if meta.is_dir() => Ok(Some(name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(name)),
        _ => Err(stray()),
    }
}

/// Reads the regular file `path`, at most `cap` bytes, without following
/// a symlink (the last component; [`own_dir`] checks the others) and
/// without blocking on a FIFO: anything but a regular file is refused
/// before a byte is read, and a file larger than `cap` is refused too.
pub fn read_file(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // ELOOP: the last component is a symlink; ENXIO: a socket.
        Err(e) => {
            return Err(match fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => FileError::refused(path, Refused::Symlink("read")),
                Ok(meta) if !meta.is_file() => FileError::refused(path, Refused::NotRegular(kind_of(meta.file_type()))),
                _ => on(path)(e.into()),
            })
        }
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(on(path))?;
    if !meta.is_file() {
        return Err(FileError::refused(path, Refused::NotRegular(kind_of(meta.file_type()))));
    }
    if meta.len() > cap {
        return Err(FileError::refused(path, Refused::TooLarge(cap)));
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the fstat: read one byte past the cap to see.
    file.take(cap.saturating_add(1)).read_to_end(&mut data).map_err(on(path))?;
    if data.len() as u64 > cap {
        return Err(FileError::refused(path, Refused::TooLarge(cap)));
    }
    Ok(data)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(path: &Path, cap: u64) -> Result<String, FileError> {
    String::from_utf8(read_file(path, cap)?)
        .map_err(|_| on(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")))
}

/// Writes a new file with exactly `mode` and fsyncs it. The file must not exist.
pub fn create_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    create(path, data, mode)?.sync_all().map_err(on(path))
}

/// Writes a new file with exactly `mode`, not synced. The file must not exist.
fn create(path: &Path, data: &[u8], mode: u32) -> Result<File, FileError> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(on(path))?;
    // `mode` is filtered by the umask at creation: set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(on(path))?;
    file.write_all(data).map_err(on(path))?;
    Ok(file)
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

/// Replaces `path` with `data` (mode `mode`) by rename, without fsync: a
/// killed process leaves the old contents or the new, whole; a power loss
/// may lose the change (for records that do not outlive one).
pub fn replace_unsynced(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    let tmp = temp_beside(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(data)
        })
        .map_err(on(&tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(on(path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Writes `files` (name, contents, mode) into a new directory
/// `<parent>/<version>` (mode 0700): built under a temp name, the files
/// and the directory made durable (see [`flush`]), then renamed into
/// place. On failure the temp directory is removed. `parent` is not synced
/// here: [`point_link`] in the same `parent`, which every caller makes
/// next, makes both renames durable at once. A power loss between the two
/// keeps the previous link, or a link to a version that did not survive,
/// which readers skip for the newest complete one.
pub fn write_version(parent: &Path, version: &str, files: &[(&str, &[u8], u32)]) -> Result<PathBuf, FileError> {
    let tmp = parent.join(temp_name(version));
    let target = parent.join(version);
    let written = (|| {
        DirBuilder::new().mode(0o700).create(&tmp).map_err(on(&tmp))?;
        let anchor = flush::Anchor::open(&tmp).map_err(on(&tmp))?;
        let mut written = Vec::with_capacity(files.len());
        for (name, contents, mode) in files {
            written.push(create(&tmp.join(name), contents, *mode)?);
        }
        anchor.durable(&written).map_err(on(&tmp))?;
        fs::rename(&tmp, &target).map_err(on(&target))
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(target)
}

/// Points the symlink `<parent>/<link>` at `target` (relative to `parent`)
/// with one `rename(2)` of a fresh link, then makes `parent` durable (see
/// [`flush`]).
pub fn point_link(parent: &Path, link: &str, target: &Path) -> Result<(), FileError> {
    let anchor = flush::Anchor::open(parent).map_err(on(parent))?;
    let tmp = parent.join(temp_name(link));
    let made = std::os::unix::fs::symlink(target, &tmp)
        .map_err(on(&tmp))
        .and_then(|()| fs::rename(&tmp, parent.join(link)).map_err(on(parent)));
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    anchor.durable(&[]).map_err(on(parent))
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

/// Removes the temps crashed writers left under `root` (down to `depth`
/// levels of real directories; symlinks are not followed): those of a
/// process that no longer runs, and this process's own (called before it
/// writes anything, so they are a crashed predecessor's with the same pid,
/// as in a container where the daemon is pid 1). A temp of another running
/// process (a `proxy-acme import` writing now) is left alone. Returns how
/// many were removed; failures are logged.
pub fn sweep_temps(root: &Path, depth: usize) -> usize {
    let Ok(entries) = fs::read_dir(root) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(file_type) = entry.file_type() else { continue };
        let path = entry.path();
        if is_temp(&name) {
            if temp_writer_runs(&name) {
                continue;
            }
            let result = if file_type.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            match result {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a crashed write's temp"),
            }
        } else if file_type.is_dir() && depth > 0 {
            removed += sweep_temps(&path, depth - 1);
        }
    }
    removed
}

/// Whether the process that named a temp `.<name>.tmp-<pid>-<n>` runs now
/// (and is not this one).
fn temp_writer_runs(name: &str) -> bool {
    let pid =
        name.rsplit_once(".tmp-").and_then(|(_, rest)| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) if pid == std::process::id() => false,
        Some(pid) => Path::new("/proc").join(pid.to_string()).exists(),
        None => false,
    }
}

#[cfg(test)]
#[path = "atomic_tests.rs"]
mod tests;
