use super::*;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// A syncer that counts its calls, notes the descriptor it was given,
/// fails while `failing` is set, and holds its first call until released.
#[derive(Default)]
struct Recorder {
    calls: AtomicUsize,
    through: Mutex<Vec<i32>>,
    failing: std::sync::atomic::AtomicBool,
    release: Mutex<bool>,
    released: Condvar,
}

impl SyncWhole for Arc<Recorder> {
    fn sync(&self, through: &File) -> io::Result<()> {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        self.through.lock().unwrap().push(through.as_raw_fd());
        if first {
            let mut open = self.release.lock().unwrap();
            while !*open {
                open = self.released.wait(open).unwrap();
            }
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::other("EIO from the disk"));
        }
        Ok(())
    }
}

impl Recorder {
    fn let_go(&self) {
        *self.release.lock().unwrap() = true;
        self.released.notify_all();
    }
}

fn member(dir: &Path) -> Member {
    Member { opened: OPENED.fetch_add(1, Ordering::Relaxed), dir: Arc::new(File::open(dir).unwrap()) }
}

/// Waits (bounded) until `n` members wait behind a running round.
fn until_waiting<S: SyncWhole>(group: &Group<S>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.lock().waiting.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} members arrived", group.lock().waiting.len());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn writers_arriving_during_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let group = Arc::new(Group::new(recorder.clone()));
    std::thread::scope(|s| {
        let first = member(dir.path());
        let g = group.clone();
        let leader = s.spawn(move || g.sync(first));
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.calls.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the first writer never synced");
            std::thread::sleep(Duration::from_millis(2));
        }
        let followers: Vec<_> = (0..8)
            .map(|_| {
                let (g, m) = (group.clone(), member(dir.path()));
                s.spawn(move || g.sync(m))
            })
            .collect();
        until_waiting(&group, 8);
        recorder.let_go();
        leader.join().unwrap().unwrap();
        for f in followers {
            f.join().unwrap().unwrap();
        }
    });
    // The first round had the first writer alone; the eight after it, one.
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 2);
    assert!(group.lock().outcomes.is_empty(), "every outcome was taken");
}

#[test]
fn a_round_syncs_through_its_earliest_anchor_and_fails_every_member_on_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    recorder.failing.store(true, Ordering::SeqCst);
    let group = Arc::new(Group::new(recorder.clone()));
    // Opened in this order; they reach the group in the reverse one.
    let anchors: Vec<Member> = (0..4).map(|_| member(dir.path())).collect();
    let earliest = anchors[0].dir.as_raw_fd();
    std::thread::scope(|s| {
        let blocker = member(dir.path());
        let g = group.clone();
        let first = s.spawn(move || g.sync(blocker));
        while recorder.calls.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut joined = Vec::new();
        for (i, m) in anchors.into_iter().enumerate().rev() {
            let g = group.clone();
            joined.push(s.spawn(move || g.sync(m)));
            until_waiting(&group, 4 - i);
        }
        recorder.let_go();
        let err = first.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "EIO from the disk");
        for j in joined {
            let err = j.join().unwrap().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Other, "{err}");
        }
    });
    assert_eq!(recorder.through.lock().unwrap()[1], earliest, "the second round used the anchor opened first");
    // The disk recovers: the next writer's round succeeds.
    recorder.failing.store(false, Ordering::SeqCst);
    group.sync(member(dir.path())).unwrap();
}

#[test]
fn a_real_anchor_makes_its_files_durable_on_this_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = Anchor::open(dir.path()).unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"kept").unwrap();
    anchor.durable(&[File::open(&path).unwrap()]).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    let grouped = rustix::fs::fstatfs(&*anchor.dir).map(|s| GROUPED.contains(&magic(&s))).unwrap();
    assert_eq!(anchor.group.is_some(), grouped && kernel_reports_syncfs_errors());
}

#[test]
fn kernel_releases_are_compared_by_major_and_minor() {
    assert!(release_at_least("6.18.44-fc-v1300", (5, 8)));
    assert!(release_at_least("5.8.0", (5, 8)));
    assert!(release_at_least("5.10.0-28-amd64", (5, 8)));
    assert!(!release_at_least("5.4.0-150-generic", (5, 8)));
    assert!(!release_at_least("4.18.0-513.el8.x86_64", (5, 8)));
    assert!(!release_at_least("garbage", (5, 8)));
}

#[test]
fn where_syncfs_is_not_trusted_each_file_and_the_directory_are_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    // As `Anchor::open` makes it on NFS, FUSE or an older kernel.
    let anchor = Anchor { dir: Arc::new(File::open(dir.path()).unwrap()), opened: 0, group: None };
    let path = dir.path().join("f");
    std::fs::write(&path, b"kept").unwrap();
    anchor.durable(&[File::open(&path).unwrap()]).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    // A descriptor fsync refuses (a socket is not a file) is an error, not
    // a silent success.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let not_a_file = File::from(std::os::fd::OwnedFd::from(a));
    assert!(anchor.durable(&[not_a_file]).is_err(), "fsync of a socket must fail");
}
