use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The name this process gives its `n`-th retired file.
fn ours(n: u64) -> String {
    format!("s{}-{n}", std::process::id())
}

fn spare_files(root: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = fs::read_dir(root.join(SPARES))
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_retired_file_is_emptied_and_its_inode_reused_by_the_next_write() {
    let root = root();
    let spares = Spares::open(root.path()).unwrap();
    let (pending, post) = (root.path().join("PENDING"), root.path().join("post"));
    spares.write(&pending, b"order and its key", 0o600).unwrap();
    let inode = fs::metadata(&pending).unwrap().ino();
    spares.retire(&pending).unwrap();
    assert!(!pending.exists(), "gone from where it was");
    assert_eq!(spare_files(root.path()), vec![(ours(0), 0)], "kept, empty: the key is not left");

    spares.write(&post, b"key authorization", 0o600).unwrap();
    let meta = fs::metadata(&post).unwrap();
    assert_eq!(meta.ino(), inode, "the same inode, no new one");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(fs::read(&post).unwrap(), b"key authorization");
    assert!(spare_files(root.path()).is_empty());
}

#[test]
fn a_shorter_write_into_a_spare_leaves_nothing_of_the_longer_one() {
    let root = root();
    Spares::open(root.path()).unwrap();
    let path = root.path().join("PENDING");
    fs::write(&path, vec![b'x'; 4096]).unwrap();
    // Retired without the emptying (a kill between the rename and it).
    fs::rename(&path, root.path().join(SPARES).join("s7")).unwrap();
    let spares = Spares::open(root.path()).unwrap();
    spares.write(&path, b"short", 0o600).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"short");
    assert!(spare_files(root.path()).is_empty());
    spares.retire(&path).unwrap();
    assert_eq!(spare_files(root.path()), vec![(ours(0), 0)]);
}

#[test]
fn retiring_what_is_not_there_is_fine_and_the_pool_is_bounded() {
    let root = root();
    let spares = Spares::open(root.path()).unwrap();
    spares.retire(&root.path().join("absent")).unwrap();
    assert!(spare_files(root.path()).is_empty());
    for i in 0..KEPT + 5 {
        let path = root.path().join(format!("f{i}"));
        fs::write(&path, b"x").unwrap();
        spares.retire(&path).unwrap();
        assert!(!path.exists());
    }
    assert_eq!(spare_files(root.path()).len(), KEPT, "beyond the pool, deleted");
}

#[test]
fn a_planted_symlink_among_the_spares_is_not_followed() {
    let root = root();
    let victim = root.path().join("victim");
    fs::write(&victim, b"untouched").unwrap();
    fs::create_dir_all(root.path().join(SPARES)).unwrap();
    std::os::unix::fs::symlink(&victim, root.path().join(SPARES).join("s0")).unwrap();
    fs::create_dir(root.path().join(SPARES).join("s1")).unwrap();
    fs::write(root.path().join(SPARES).join("other"), b"").unwrap();
    let spares = Spares::open(root.path()).unwrap();
    assert!(spare_files(root.path()).is_empty(), "only regular s… files are kept");
    // A symlink planted after the open: the write goes to a fresh file.
    fs::write(root.path().join("old"), b"x").unwrap();
    spares.retire(&root.path().join("old")).unwrap();
    let (name, _) = spare_files(root.path()).remove(0);
    let spare = root.path().join(SPARES).join(name);
    fs::remove_file(&spare).unwrap();
    std::os::unix::fs::symlink(&victim, &spare).unwrap();
    let target = root.path().join("PENDING");
    spares.write(&target, b"order", 0o600).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"untouched");
    assert_eq!(fs::read(&target).unwrap(), b"order");
    assert!(!fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    assert!(spare_files(root.path()).is_empty(), "the planted one removed");
}

#[test]
fn two_processes_knowing_one_spare_each_get_their_file_whole() {
    let root = root();
    let retiring = Spares::open(root.path()).unwrap();
    let old = root.path().join("old");
    fs::write(&old, b"x").unwrap();
    retiring.retire(&old).unwrap();
    // The daemon and a command opened the store: both know the spare.
    let (daemon, command) = (Spares::open(root.path()).unwrap(), Spares::open(root.path()).unwrap());
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    daemon.write(&a, b"the daemon's order", 0o600).unwrap();
    command.write(&b, b"the command's", 0o600).unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"the daemon's order");
    assert_eq!(fs::read(&b).unwrap(), b"the command's");
    assert_ne!(fs::metadata(&a).unwrap().ino(), fs::metadata(&b).unwrap().ino());
    let temps = fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .filter(|e| atomic::is_temp(&e.file_name().to_string_lossy()))
        .count();
    assert_eq!(temps, 0);
}
