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

// === what is not ours ===

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from_bits_truncate(0o600)).unwrap();
}

fn refusal(err: &FileError) -> String {
    err.refusal().map(ToString::to_string).unwrap_or_else(|| panic!("not a refusal: {err}"))
}

#[test]
fn read_file_refuses_a_fifo_a_device_a_symlink_and_a_file_over_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("privkey.pem");
    mkfifo(&fifo);
    // No writer: a blocking open would wait forever.
    let err = read_file(&fifo, 1 << 20).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: is a FIFO, not a regular file", fifo.display()));

    let err = read_file(Path::new("/dev/zero"), 1 << 20).unwrap_err();
    assert_eq!(refusal(&err), "is a character device, not a regular file");

    let link = dir.path().join("zero.pem");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let err = read_file(&link, 1 << 20).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: is a symlink proxy-acme did not create; refusing to read through it", link.display())
    );

    let big = dir.path().join("big.pem");
    fs::write(&big, vec![b'a'; 2049]).unwrap();
    assert_eq!(refusal(&read_file(&big, 2048).unwrap_err()), "is larger than 2048 bytes");
    assert_eq!(read_file(&big, 2049).unwrap().len(), 2049);
    assert!(read_file(&dir.path().join("missing"), 10).unwrap_err().is_not_found());
}

#[test]
fn own_dir_creates_a_missing_directory_and_refuses_a_symlink_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let made = dir.path().join("certificates");
    own_dir(&made, 0o700).unwrap();
    assert_eq!(fs::symlink_metadata(&made).unwrap().permissions().mode() & 0o777, 0o700);
    own_dir(&made, 0o700).unwrap();

    let link = dir.path().join("accounts");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    let err = own_dir(&link, 0o700).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: is a symlink proxy-acme did not create; refusing to write through it", link.display())
    );
    assert!(is_own_dir(&link).is_err());

    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    assert_eq!(refusal(&own_dir(&file, 0o700).unwrap_err()), "is a regular file, not a directory");
    assert!(!is_own_dir(&dir.path().join("missing")).unwrap());
}

#[test]
fn own_link_accepts_only_a_directory_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    assert_eq!(own_link(dir.path(), "live").unwrap(), None);
    write_version(dir.path(), "v1", &[("f", b"1", 0o600)]).unwrap();
    point_link(dir.path(), "live", Path::new("v1")).unwrap();
    assert_eq!(own_link(dir.path(), "live").unwrap().as_deref(), Some("v1"));

    // A version that was removed is not hostile: the readers find nothing.
    point_link(dir.path(), "live", Path::new("v9")).unwrap();
    assert_eq!(own_link(dir.path(), "live").unwrap().as_deref(), Some("v9"));

    for target in [outside.path().to_owned(), PathBuf::from("../v1"), PathBuf::from("v1/f")] {
        point_link(dir.path(), "live", &target).unwrap();
        let err = own_link(dir.path(), "live").unwrap_err();
        assert!(refusal(&err).starts_with("is a symlink to"), "{err}");
        assert!(err.path.ends_with("live"), "{err}");
    }
    // A version directory replaced by a symlink out of the tree.
    std::os::unix::fs::symlink(outside.path(), dir.path().join("v2")).unwrap();
    point_link(dir.path(), "live", Path::new("v2")).unwrap();
    assert!(own_link(dir.path(), "live").is_err());

    fs::remove_file(dir.path().join("live")).unwrap();
    fs::create_dir(dir.path().join("live")).unwrap();
    assert_eq!(
        refusal(&own_link(dir.path(), "live").unwrap_err()),
        "is a directory, not the symlink proxy-acme creates"
    );
}

#[test]
fn the_start_sweep_removes_crashed_writers_temps_and_spares_a_running_ones() {
    let root = tempfile::tempdir().unwrap();
    let cert_dir = root.path().join("certificates").join("web");
    fs::create_dir_all(&cert_dir).unwrap();
    // A crashed writer (a pid that cannot run: above the kernel's pid_max),
    // a crashed predecessor with this pid, and a writer that runs now (pid 1).
    let dead = cert_dir.join(".v17.tmp-4194305-0");
    let mine = cert_dir.join(format!(".PENDING.tmp-{}-3", std::process::id()));
    let running = cert_dir.join(".v18.tmp-1-0");
    fs::create_dir(&dead).unwrap();
    fs::write(dead.join("privkey.pem"), "x").unwrap();
    fs::write(&mine, "x").unwrap();
    fs::create_dir(&running).unwrap();
    let kept = cert_dir.join("v16");
    fs::create_dir(&kept).unwrap();
    // Too deep for the sweep: left alone.
    let deep = kept.join(".x.tmp-4194305-0");
    fs::write(&deep, "x").unwrap();

    assert_eq!(sweep_temps(root.path(), 2), 2);
    assert!(!dead.exists() && !mine.exists(), "a crashed writer's temp is left");
    assert!(running.exists(), "a running writer's temp was removed");
    assert!(kept.exists() && deep.exists());
}
