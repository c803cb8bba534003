//! Making written files durable, one group of writers at a time.
//!
//! A certificate's new version took six fsync(2) calls (four PEM files,
//! their directory, the directory holding `live`), each a device cache
//! flush; on a VM each also a costly exit to the host. When hundreds of
//! certificates are issued or renewed together, that was the sidecar's
//! largest single cost. Here every writer waiting at the same moment on
//! the same filesystem shares one syncfs(2), which writes back everything
//! dirty on it and flushes once: a group commit.
//!
//! **Errors are not lost.** A writer opens its [`Anchor`] (the directory
//! it writes in) *before* writing. syncfs reports every writeback error on
//! the filesystem since the descriptor it is given was opened (Linux 5.8
//! and later), so a round syncs through the anchor its members opened
//! first: an error on any member's data fails every member of the round.
//! An error on some unrelated file fails the round as well, which costs a
//! retried write, never a lost one.
//!
//! **Where syncfs is not known to be as strong as fsync** (FUSE and
//! network filesystems, kernels before 5.8, or an unknown filesystem), each
//! file and the anchor are fsynced one by one, as before.
//!
//! A save waits for the other dirty data on its filesystem too: on a disk
//! shared with a heavy writer, a certificate's save takes longer (it is off
//! the serving path; Envoy serves the previous certificate meanwhile).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};

/// Filesystems whose syncfs(2) persists data and metadata as fsync(2)
/// would (statfs(2) magic numbers): ext2/3/4, XFS, Btrfs, F2FS, tmpfs
/// (nothing to persist) and overlayfs (which syncs its upper layer).
const GROUPED: [i64; 6] = [0xEF53, 0x5846_5342, 0x9123_683E, 0xF2F5_2010, 0x0102_1994, 0x794C_7630];

/// Opening order of anchors: the earliest of a round covers all of it.
static OPENED: AtomicU64 = AtomicU64::new(0);

/// The directory a writer is about to write in, opened first.
#[derive(Debug)]
pub struct Anchor {
    dir: Arc<File>,
    opened: u64,
    /// The filesystem's group, if syncfs may stand for fsync on it.
    group: Option<Arc<Group<SyncFs>>>,
}

impl Anchor {
    /// Opens `dir` as the anchor of the writes about to be made in it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let file = File::open(dir)?;
        let opened = OPENED.fetch_add(1, Ordering::Relaxed);
        let group = group_of(&file)?;
        Ok(Self { dir: Arc::new(file), opened, group })
    }

    /// Makes durable `files` (written in the anchor's directory, or below
    /// it, since it was opened) and the anchor directory's entries.
    pub fn durable(&self, files: &[File]) -> io::Result<()> {
        match &self.group {
            Some(group) => group.sync(Member { opened: self.opened, dir: self.dir.clone() }),
            None => {
                files.iter().try_for_each(File::sync_all)?;
                self.dir.sync_all()
            }
        }
    }
}

/// Whether syncfs on `file`'s filesystem reports errors and persists as
/// fsync does.
fn groupable(file: &File) -> bool {
    kernel_reports_syncfs_errors() && rustix::fs::fstatfs(file).is_ok_and(|s| GROUPED.contains(&magic(&s)))
}

/// The filesystem's magic number (`f_type` is `i64`, `i32` or `u32` by
/// architecture).
#[allow(trivial_numeric_casts, clippy::unnecessary_cast)]
fn magic(stat: &rustix::fs::StatFs) -> i64 {
    stat.f_type as i64
}

/// syncfs(2) reports writeback errors since Linux 5.8.
fn kernel_reports_syncfs_errors() -> bool {
    static NEW_ENOUGH: LazyLock<bool> = LazyLock::new(|| {
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        release_at_least(&release, (5, 8))
    });
    *NEW_ENOUGH
}

/// Whether a kernel release string (`6.1.0-13-amd64`) is at least `want`.
fn release_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(major), Some(minor)) if (major, minor) >= want)
}

/// The group of the filesystem `file` is on, one per process; `None` where
/// syncfs may not stand for fsync (decided once per filesystem).
fn group_of(file: &File) -> io::Result<Option<Arc<Group<SyncFs>>>> {
    type Groups = HashMap<u64, Option<Arc<Group<SyncFs>>>>;
    static GROUPS: LazyLock<Mutex<Groups>> = LazyLock::new(Mutex::default);
    let dev = file.metadata()?.dev();
    let mut groups = GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    let group = groups.entry(dev).or_insert_with(|| groupable(file).then(|| Arc::new(Group::new(SyncFs))));
    Ok(group.clone())
}

/// Syncing a whole filesystem through one of its descriptors.
pub(crate) trait SyncWhole {
    fn sync(&self, through: &File) -> io::Result<()>;
}

/// syncfs(2).
#[derive(Debug)]
pub(crate) struct SyncFs;

impl SyncWhole for SyncFs {
    fn sync(&self, through: &File) -> io::Result<()> {
        rustix::fs::syncfs(through).map_err(io::Error::from)
    }
}

/// One writer waiting for durability.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) opened: u64,
    pub(crate) dir: Arc<File>,
}

/// Writers of one filesystem: while one round's sync runs, the next
/// writers gather, and the first to find no round running leads theirs.
#[derive(Debug)]
pub(crate) struct Group<S> {
    syncer: S,
    state: Mutex<Rounds>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct Rounds {
    tickets: u64,
    running: bool,
    waiting: Vec<(u64, Member)>,
    /// Outcomes not yet taken by their member: `Err` keeps the kind and text.
    outcomes: HashMap<u64, Result<(), (io::ErrorKind, String)>>,
}

impl<S: SyncWhole> Group<S> {
    pub(crate) fn new(syncer: S) -> Self {
        Self { syncer, state: Mutex::default(), turn: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Rounds> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a sync that began after this call has finished, with
    /// its outcome.
    pub(crate) fn sync(&self, member: Member) -> io::Result<()> {
        let mut rounds = self.lock();
        rounds.tickets += 1;
        let ticket = rounds.tickets;
        rounds.waiting.push((ticket, member));
        loop {
            if let Some(outcome) = rounds.outcomes.remove(&ticket) {
                return outcome.map_err(|(kind, text)| io::Error::new(kind, text));
            }
            if rounds.running {
                rounds = self.turn.wait(rounds).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead a round of everyone waiting (this member among them).
            let members = std::mem::take(&mut rounds.waiting);
            rounds.running = true;
            drop(rounds);
            let outcome = match members.iter().map(|(_, m)| m).min_by_key(|m| m.opened) {
                Some(first) => self.syncer.sync(&first.dir).map_err(|e| (e.kind(), e.to_string())),
                None => Ok(()),
            };
            rounds = self.lock();
            for (ticket, _) in members {
                rounds.outcomes.insert(ticket, outcome.clone());
            }
            rounds.running = false;
            self.turn.notify_all();
        }
    }
}

#[cfg(test)]
#[path = "flush_tests.rs"]
mod tests;
