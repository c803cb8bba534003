use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::cert::{self, placeholder};

fn version_dirs(cert_dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(cert_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('v') {
            out.push(name);
        }
    }
    Ok(out)
}

fn bundle(domain: &str) -> Bundle {
    placeholder(&[domain.to_owned()]).unwrap_or_else(|e| panic!("{e}"))
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn refuses_a_state_directory_others_can_read() {
    let dir = private_dir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    let err = FileStore::open(dir.path()).map(|_| ()).unwrap_err();
    assert!(matches!(err, StoreError::InsecurePermissions { mode: 0o755, .. }), "{err}");
}

#[test]
fn creates_a_missing_state_directory_private() {
    let dir = private_dir();
    let state = dir.path().join("state");
    FileStore::open(&state).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fs::metadata(&state).map(|m| m.mode() & 0o777).unwrap_or(0), 0o700);
}

#[tokio::test]
async fn writes_certbot_names_key_0600_and_reads_back() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let b = bundle("a.example");
    store.save_certificate("web", &b).await.unwrap_or_else(|e| panic!("{e}"));
    let live = store.live_dir("web");
    for file in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
        assert!(live.join(file).is_file(), "{file}");
    }
    assert_eq!(fs::metadata(live.join("privkey.pem")).map(|m| m.mode() & 0o777).unwrap_or(0), 0o600);
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(b));
    assert_eq!(store.load_certificate("other").await.unwrap_or_else(|e| panic!("{e}")), None);
}

#[tokio::test]
async fn keeps_the_previous_version_and_prunes_older_ones() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..4 {
        store.save_certificate("web", &bundle(&format!("v{i}.example"))).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let versions = version_dirs(&dir.path().join("certificates/web")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(versions.len(), 2, "{versions:?}");
    let loaded = store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}"));
    let names = loaded.and_then(|b| cert::inspect(&b, None).ok()).map(|i| i.names);
    assert_eq!(names, Some(vec!["v3.example".to_owned()]));
}

#[tokio::test]
async fn a_refused_certificate_leaves_the_last_good_one() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let good = bundle("a.example");
    store.save_certificate("web", &good).await.unwrap_or_else(|e| panic!("{e}"));
    let other = bundle("a.example");
    let mismatched = Bundle { fullchain_pem: good.fullchain_pem.clone(), key_pem: other.key_pem };
    assert!(matches!(store.save_certificate("web", &mismatched).await, Err(StoreError::InvalidCertificate { .. })));
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(good));
}

#[tokio::test]
async fn a_torn_live_version_falls_back_to_the_last_good_one() {
    // What a crash mid-write (or a disk error) can leave: `live` pointing at a
    // version whose key was truncated.
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let first = bundle("a.example");
    store.save_certificate("web", &first).await.unwrap_or_else(|e| panic!("{e}"));
    store.save_certificate("web", &bundle("b.example")).await.unwrap_or_else(|e| panic!("{e}"));
    fs::write(store.live_dir("web").join("privkey.pem"), "-----BEGIN PRIVATE KEY-----\ntrunc")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(first));
}

#[tokio::test]
async fn a_key_swapped_by_hand_is_checked_again_and_refused() {
    // A version's name carries a digest of what passed the key check when
    // it was written; files that no longer hash to it are checked in full.
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let first = bundle("a.example");
    store.save_certificate("web", &first).await.unwrap_or_else(|e| panic!("{e}"));
    let second = bundle("b.example");
    store.save_certificate("web", &second).await.unwrap_or_else(|e| panic!("{e}"));
    let live = fs::read_link(dir.path().join("certificates/web/live")).unwrap_or_else(|e| panic!("{e}"));
    let live = live.to_string_lossy().into_owned();
    assert!(live.rsplit_once('-').is_some_and(|(_, check)| check.len() == 16), "{live}");
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(second));

    // Another (valid) key in the live version: it does not match the leaf.
    let other = bundle("c.example");
    fs::write(store.live_dir("web").join("privkey.pem"), other.key_pem.expose()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(first));
}

#[tokio::test]
async fn an_interrupted_write_is_invisible() {
    // A crash before the rename leaves only a temp directory behind.
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let good = bundle("a.example");
    store.save_certificate("web", &good).await.unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.path().join("certificates/web/.tmp-v999");
    fs::create_dir(&tmp).unwrap_or_else(|e| panic!("{e}"));
    fs::write(tmp.join("fullchain.pem"), "half").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(good.clone()));
    // and the next save cleans it up
    store.save_certificate("web", &bundle("c.example")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!tmp.exists());
}

#[tokio::test]
async fn accounts_are_private_and_keys_cannot_escape() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    store.save_account("le", b"{}").await.unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("accounts/le.json");
    assert_eq!(fs::metadata(&path).map(|m| m.mode() & 0o777).unwrap_or(0), 0o600);
    assert_eq!(store.load_account("le").await.unwrap_or_else(|e| panic!("{e}")), Some(b"{}".to_vec()));
    assert!(matches!(store.save_account("../x", b"{}").await, Err(StoreError::InvalidKey(_))));
    assert!(matches!(store.load_certificate("").await, Err(StoreError::InvalidKey(_))));
    store.forget_account("le").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.load_account("le").await.unwrap_or_else(|e| panic!("{e}")), None);
}

#[tokio::test]
async fn revocation_mark_survives_and_clears() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.revoked("web").await.unwrap_or_else(|e| panic!("{e}")), None);
    store.mark_revoked("web", "0abc").await.unwrap_or_else(|e| panic!("{e}"));
    let reopened = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reopened.revoked("web").await.unwrap_or_else(|e| panic!("{e}")).as_deref(), Some("0abc"));
    reopened.clear_revoked("web").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reopened.revoked("web").await.unwrap_or_else(|e| panic!("{e}")), None);
}

// === symlinks planted in the store (issue 20) ===

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn err_text<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_symlink_at_a_certificate_directory_is_refused_and_nothing_is_written_outside() {
    let dir = private_dir();
    let outside = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let link = dir.path().join("certificates/web");
    symlink(outside.path(), &link);

    let err = err_text(store.save_certificate("web", &bundle("a.example")).await);
    assert_eq!(
        err,
        format!("{}: is a symlink proxy-acme did not create; refusing to write through it", link.display())
    );
    let err = err_text(store.mark_revoked("web", "0abc").await);
    assert!(err.starts_with(&format!("{}: is a symlink", link.display())), "{err}");
    let err = err_text(store.load_certificate("web").await);
    assert!(err.starts_with(&format!("{}: is a symlink", link.display())), "{err}");
    assert!(entries(outside.path()).is_empty(), "written outside: {:?}", entries(outside.path()));
}

#[tokio::test]
async fn a_symlink_at_certificates_or_accounts_is_refused() {
    let dir = private_dir();
    let outside = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    for sub in ["certificates", "accounts"] {
        let path = dir.path().join(sub);
        fs::remove_dir(&path).unwrap_or_else(|e| panic!("{e}"));
        symlink(outside.path(), &path);
    }
    let certificates = dir.path().join("certificates");
    let err = err_text(store.save_certificate("web", &bundle("a.example")).await);
    assert_eq!(
        err,
        format!("{}: is a symlink proxy-acme did not create; refusing to write through it", certificates.display())
    );
    let err = err_text(store.save_account("le", b"{}").await);
    assert!(err.starts_with(&format!("{}: is a symlink", dir.path().join("accounts").display())), "{err}");
    assert!(err_text(store.health().await).contains("is a symlink"));
    assert!(entries(outside.path()).is_empty(), "written outside: {:?}", entries(outside.path()));
    // and a store opened on such a directory says so at once
    let err = err_text(FileStore::open(dir.path()));
    assert!(err.contains("is a symlink proxy-acme did not create"), "{err}");
}

#[tokio::test]
async fn a_version_directory_replaced_by_a_symlink_is_refused() {
    let dir = private_dir();
    let outside = private_dir();
    fs::write(outside.path().join("fullchain.pem"), "planted").unwrap_or_else(|e| panic!("{e}"));
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    store.save_certificate("web", &bundle("a.example")).await.unwrap_or_else(|e| panic!("{e}"));
    let cert_dir = dir.path().join("certificates/web");
    let live = fs::read_link(cert_dir.join("live")).unwrap_or_else(|e| panic!("{e}"));
    fs::remove_dir_all(cert_dir.join(&live)).unwrap_or_else(|e| panic!("{e}"));
    symlink(outside.path(), &cert_dir.join(&live));

    let err = err_text(store.save_certificate("web", &bundle("b.example")).await);
    let expected =
        format!("{}: is a symlink to {:?}, not to a directory beside it", cert_dir.join("live").display(), live);
    assert!(err.starts_with(&expected), "{err}");
    assert!(err_text(store.load_certificate("web").await).starts_with(&expected));
    assert_eq!(entries(outside.path()), ["fullchain.pem"], "written outside");
}

#[tokio::test]
async fn planted_files_are_not_read_through() {
    let dir = private_dir();
    let outside = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let good = bundle("a.example");
    store.save_certificate("web", &good).await.unwrap_or_else(|e| panic!("{e}"));
    store.save_certificate("web", &bundle("b.example")).await.unwrap_or_else(|e| panic!("{e}"));
    // The live key replaced by a link to /dev/zero: that version is skipped
    // (not read until memory runs out), the previous one is used.
    let key = store.live_dir("web").join("privkey.pem");
    fs::remove_file(&key).unwrap_or_else(|e| panic!("{e}"));
    symlink(Path::new("/dev/zero"), &key);
    assert_eq!(store.load_certificate("web").await.unwrap_or_else(|e| panic!("{e}")), Some(good));

    let account = dir.path().join("accounts/le.json");
    fs::write(outside.path().join("secret.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
    symlink(&outside.path().join("secret.json"), &account);
    let err = err_text(store.load_account("le").await);
    assert!(err.starts_with(&format!("{}: is a symlink proxy-acme did not create", account.display())), "{err}");

    // A FIFO as the revocation mark: refused at once rather than waited on.
    let revoked = dir.path().join("certificates/web/REVOKED");
    rustix::fs::mkfifoat(rustix::fs::CWD, &revoked, rustix::fs::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(err_text(store.revoked("web").await), format!("{}: is a FIFO, not a regular file", revoked.display()));
}

/// Every regular file under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root).unwrap().flatten() {
        let (path, kind) = (entry.path(), entry.file_type().unwrap());
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() && fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_cleared_order_leaves_no_key_behind_and_the_next_reuses_its_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap();
    let first = bundle("web.example").key_pem;
    let order = |key_pem| PendingOrder { url: "https://ca.test/order/7".into(), key_pem, resolver: None };
    store.save_pending("web", &order(first.clone())).await.unwrap();
    let inode = fs::metadata(dir.path().join("certificates/web/PENDING")).unwrap().ino();
    store.clear_pending("web").await.unwrap();
    let key = first.expose().lines().nth(1).unwrap().as_bytes().to_vec();
    assert_eq!(files_containing(dir.path(), &key), Vec::<PathBuf>::new(), "the order's key is gone from disk");
    // The next order elsewhere is written into the same inode, whole.
    let second = order(bundle("api.example").key_pem);
    store.save_pending("api", &second).await.unwrap();
    assert_eq!(fs::metadata(dir.path().join("certificates/api/PENDING")).unwrap().ino(), inode);
    assert_eq!(FileStore::open(dir.path()).unwrap().load_pending("api").await.unwrap(), Some(second));
}

#[tokio::test]
async fn a_pending_order_is_kept_0600_beside_the_certificate_until_cleared() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_pending("web").await.unwrap(), None);
    let order =
        PendingOrder { url: "https://ca.test/order/7".into(), key_pem: bundle("web.example").key_pem, resolver: None };
    store.save_pending("web", &order).await.unwrap();
    let path = dir.path().join("certificates/web/PENDING");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    // A new store (a restart) reads it back.
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load_pending("web").await.unwrap(), Some(order));
    reopened.clear_pending("web").await.unwrap();
    assert!(!path.exists());
    assert_eq!(reopened.load_pending("web").await.unwrap(), None);
    reopened.clear_pending("web").await.unwrap();
    // A torn file is reported as corrupt, naming it (the issuer forgets it).
    fs::write(&path, "{\"url\":").unwrap();
    let err = err_text(reopened.load_pending("web").await);
    assert!(err.contains("certificates/web/PENDING"), "{err}");
}

#[tokio::test]
async fn a_backoff_survives_a_restart_and_a_success_clears_it() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.load_renewal("web").await.unwrap(), None);
    let state = RenewalState {
        failures: 3,
        next_attempt: 1_900_000_000,
        last_error: "the CA said no".into(),
        replica: "local".into(),
    };
    store.save_renewal("web", Some(&state)).await.unwrap();
    let path = dir.path().join("certificates/web/RENEWAL");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load_renewal("web").await.unwrap(), Some(state));
    reopened.save_renewal("web", None).await.unwrap();
    assert!(!path.exists());
    assert_eq!(reopened.load_renewal("web").await.unwrap(), None);
    reopened.save_renewal("other", None).await.unwrap();
}

/// Runs `mount` with `args`; whether it worked (root with CAP_SYS_ADMIN).
fn mount(args: &[&str]) -> bool {
    std::process::Command::new("mount").args(args).status().is_ok_and(|s| s.success())
}

#[tokio::test]
async fn health_fails_when_the_store_cannot_be_written() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap();
    store.health().await.unwrap();
    assert!(entries(&dir.path().join("certificates")).is_empty(), "the probe file was left behind");

    // Through the real probe: its file cannot be created (a directory is
    // in its place). Runs everywhere; root is not exempt from EISDIR.
    let probe = dir.path().join(format!("certificates/.readyz.tmp-{}-probe", std::process::id()));
    fs::create_dir(&probe).unwrap();
    let err = err_text(store.health().await);
    let certificates = dir.path().join("certificates");
    assert!(err.starts_with(&format!("cannot write {}: ", certificates.display())), "{err}");
    fs::remove_dir(&probe).unwrap();
    store.health().await.unwrap();

    // A read-only file system over `certificates` (what a full or
    // read-only disk looks like; chmod would not stop root). Needs mount
    // rights: without them this part says so and proves nothing.
    let target = certificates.to_string_lossy().into_owned();
    if !mount(&["-t", "tmpfs", "-o", "ro,mode=0700,size=64k", "tmpfs", &target]) {
        eprintln!("cannot mount a read-only tmpfs here: the read-only case was not tried");
        return;
    }
    let result = store.health().await;
    let unmounted = std::process::Command::new("umount").arg(&target).status().is_ok_and(|s| s.success());
    let err = err_text(result);
    assert!(err.contains("cannot write") && err.contains("Read-only file system"), "{err}");
    assert!(unmounted);
}

#[tokio::test]
async fn one_start_up_read_gives_what_the_four_reads_give() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap();
    let empty = store.load_stored("web").await.unwrap();
    assert!(empty.bundle.is_none() && empty.revoked.is_none() && !empty.pending && empty.renewal.is_none());
    let (first, second) = (bundle("a.example"), bundle("b.example"));
    store.save_certificate("web", &first).await.unwrap();
    store.save_certificate("web", &second).await.unwrap();
    store.mark_revoked("web", "0a1b").await.unwrap();
    store
        .save_pending(
            "web",
            &PendingOrder { url: "https://ca.test/order/7".into(), key_pem: second.key_pem.clone(), resolver: None },
        )
        .await
        .unwrap();
    let state = RenewalState { failures: 2, next_attempt: 1_900_000_000, last_error: "no".into(), replica: "r".into() };
    store.save_renewal("web", Some(&state)).await.unwrap();
    let stored = FileStore::open(dir.path()).unwrap().load_stored("web").await.unwrap();
    let (live, info) = stored.bundle.unwrap();
    assert_eq!((live, info.names), (second, vec!["b.example".to_owned()]));
    assert_eq!((stored.revoked.as_deref(), stored.pending, stored.renewal), (Some("0a1b"), true, Some(state)));
    // A torn live version: the last good one, as `load_certificate` gives;
    // a torn backoff record reads as none and does not hide the rest.
    fs::write(store.live_dir("web").join("privkey.pem"), "-----BEGIN PRIVATE KEY-----\ntrunc").unwrap();
    fs::write(dir.path().join("certificates/web/RENEWAL"), "{").unwrap();
    let stored = store.load_stored("web").await.unwrap();
    assert_eq!(stored.bundle.map(|(b, _)| b), Some(first));
    assert!(stored.renewal.is_none() && stored.pending);
}

#[tokio::test]
async fn many_certificates_read_in_one_go_are_what_each_read_alone_gives() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    store.save_certificate("a", &bundle("a.example")).await.unwrap_or_else(|e| panic!("{e}"));
    store.save_certificate("c", &bundle("c.example")).await.unwrap_or_else(|e| panic!("{e}"));
    store.mark_revoked("c", "01").await.unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = ["c", "missing", "../x", "a"].map(String::from).to_vec();
    let many = store.load_stored_many(names.clone()).await;
    assert_eq!(many.len(), 4);
    for (name, together) in names.iter().zip(many) {
        let alone = store.load_stored(name).await;
        match (together, alone) {
            (Ok(together), Ok(alone)) => {
                assert_eq!(together.bundle.map(|(b, _)| b), alone.bundle.map(|(b, _)| b), "{name}");
                assert_eq!(together.revoked, alone.revoked, "{name}");
            }
            (Err(together), Err(alone)) => assert_eq!(together.to_string(), alone.to_string()),
            (together, alone) => panic!("{name}: {:?} vs {:?}", together.is_ok(), alone.is_ok()),
        }
    }
    let first = store.load_stored("c").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.revoked.as_deref(), Some("01"));
    assert!(store.load_stored("a").await.unwrap_or_else(|e| panic!("{e}")).bundle.is_some());
}

#[tokio::test]
async fn an_issued_certificate_is_stored_and_its_mark_and_order_forgotten_in_one_call() {
    let dir = private_dir();
    let store = FileStore::open(dir.path()).unwrap();
    let issued = bundle("web.example");
    let order = PendingOrder { url: "https://ca.test/order/7".into(), key_pem: issued.key_pem.clone(), resolver: None };
    store.save_pending("web", &order).await.unwrap();
    store.mark_revoked("web", "0a1b").await.unwrap();
    let unforgotten = store.save_issued("web", &issued, &Lock::local()).await.unwrap();
    assert!(unforgotten.is_none(), "{unforgotten:?}");
    // What a restart reads: the certificate, no mark, no order.
    let reopened = FileStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load_certificate("web").await.unwrap().unwrap().fullchain_pem, issued.fullchain_pem);
    assert_eq!(reopened.revoked("web").await.unwrap(), None);
    assert_eq!(reopened.load_pending("web").await.unwrap(), None);
    let live = fs::read_to_string(dir.path().join("certificates/web/live/fullchain.pem")).unwrap();
    assert_eq!(live, issued.fullchain_pem);
    // Nothing to forget the second time is not an error.
    assert!(store.save_issued("web", &issued, &Lock::local()).await.unwrap().is_none());
}
