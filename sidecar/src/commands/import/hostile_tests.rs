//! Input another client (or an attacker) left: certificates no CA would
//! issue for use now, key material in the chain, files that are not
//! regular, links out of the tree, loops of links (issue 20).

use std::path::Path;
use std::time::SystemTime;

use rcgen::{CertificateParams, KeyPair};

use super::tests::{chain, issued, jwk_p256, plan_of, sec1_pem, traefik_cert, traefik_json};
use super::*;
use crate::store::MemoryStore;

fn days(n: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(n)
}

/// `(what, why)` skipped lines for `what`.
fn why_skipped<'p>(plan: &'p Plan, what: &str) -> Vec<&'p str> {
    plan.skipped.iter().filter(|(w, _)| w.contains(what)).map(|(_, why)| why.as_str()).collect()
}

#[tokio::test]
async fn certificates_no_ca_would_issue_for_use_now_are_skipped_and_the_good_one_imported() {
    let (good, good_key) = issued(&["a.test"], 60);
    // Self-signed, valid for 100 years (the outside test's 2093 renewal).
    let self_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(vec!["a.test".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    params.not_before = days(-1);
    params.not_after = days(36_500);
    let self_signed = params.self_signed(&self_key).unwrap_or_else(|e| panic!("{e}")).pem();
    // Issued by a CA, but for 100 years, and valid only in 3000 days.
    let long_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let long = chain(&["a.test"], days(-1), days(36_500), &long_key);
    let future_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let future = chain(&["a.test"], days(3000), days(3090), &future_key);
    // A fullchain with the key inside (it would land in a 0644 file).
    let (leaky, leaky_key) = issued(&["a.test"], 80);
    let leaky = format!("{leaky}{}", leaky_key.serialize_pem());

    let text = traefik_json(
        vec![
            traefik_cert("a.test", &[], &good, &good_key.serialize_pem()),
            traefik_cert("self.test", &[], &self_signed, &self_key.serialize_pem()),
            traefik_cert("long.test", &[], &long, &long_key.serialize_pem()),
            traefik_cert("future.test", &[], &future, &sec1_pem(&future_key)),
            traefik_cert("leaky.test", &[], &leaky, &leaky_key.serialize_pem()),
        ],
        &KeyPair::generate().unwrap_or_else(|e| panic!("{e}")).serialize_der(),
    );
    let found = traefik::parse(&text, Path::new("acme.json"), None).unwrap_or_else(|e| panic!("{e}"));
    let plan = plan_of(found);
    assert_eq!(why_skipped(&plan, "self.test"), ["self-signed: no CA issued it"]);
    let long_why = why_skipped(&plan, "long.test");
    assert!(
        long_why.len() == 1
            && long_why[0].starts_with("valid for 36501 days (")
            && long_why[0].ends_with("longer than the 398 days a CA issues"),
        "{long_why:?}"
    );
    let future_why = why_skipped(&plan, "future.test");
    assert!(future_why.len() == 1 && future_why[0].starts_with("not valid before "), "{future_why:?}");
    assert_eq!(
        why_skipped(&plan, "leaky.test"),
        ["invalid: the certificate chain holds a private key block; it would be written where others may read it"]
    );

    let store = MemoryStore::new();
    let summary = apply(plan, &store).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.certificates, 1, "{}", summary.render());
    let stored = store.load_certificate("a").await.ok().flatten().unwrap_or_else(|| panic!("not stored"));
    assert_eq!(stored.fullchain_pem, good);
    let rendered = summary.render();
    for origin in ["self.test", "long.test", "future.test", "leaky.test"] {
        let lines: Vec<&str> = rendered.lines().filter(|l| l.contains(origin)).collect();
        assert!(lines.len() == 1 && lines[0].starts_with("skipped traefik le certificate"), "{rendered}");
    }
    assert!(!rendered.contains("PRIVATE KEY"), "{rendered}");
}

#[test]
fn refusal_is_about_now_and_the_validity_period() {
    let info = |not_before: i64, not_after: i64| CertInfo {
        serial_hex: "01".into(),
        not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(not_before as u64 * 86_400),
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after as u64 * 86_400),
        names: vec!["a.test".into()],
        key_type: Some(KeyType::Ec256),
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * 86_400);
    assert_eq!(refusal(&info(990, 1080), false, now), None);
    assert_eq!(refusal(&info(1000, 1398), false, now), None, "398 days is allowed");
    assert!(refusal(&info(1000, 1399), false, now).is_some_and(|w| w.starts_with("valid for 399 days")));
    assert!(refusal(&info(1001, 1080), false, now).is_some_and(|w| w.starts_with("not valid before")));
    assert!(refusal(&info(900, 1000), false, now).is_some_and(|w| w.starts_with("expired on")));
    assert!(refusal(&info(990, 1080), true, now).is_some_and(|w| w.starts_with("self-signed")));
}

// === certbot files that are not what they seem ===

/// A certbot directory with lineage `live/b.test` (links into `archive/`)
/// and one P-256 account under `accounts/`.
fn certbot_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let (cert, key) = issued(&["b.test", "c.test"], 60);
    write(&dir.join("archive/b.test/fullchain1.pem"), &cert);
    write(&dir.join("archive/b.test/privkey1.pem"), &sec1_pem(&key));
    std::fs::create_dir_all(dir.join("live/b.test")).unwrap_or_else(|e| panic!("{e}"));
    for (link, target) in [("fullchain.pem", "fullchain1.pem"), ("privkey.pem", "privkey1.pem")] {
        symlink(Path::new(&format!("../../archive/b.test/{target}")), &dir.join("live/b.test").join(link));
    }
    let account_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let account = dir.join("accounts/ca.test:14000/dir/0123abcd");
    write(&account.join("private_key.json"), &jwk_p256(&account_key).to_string());
    write(&account.join("regr.json"), r#"{"body": {}, "uri": "https://ca.test:14000/my-account/7"}"#);
    tmp
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("{e}"));
}

fn read_err(dir: &Path) -> String {
    match certbot::read(dir) {
        Ok(found) => panic!("accepted: {found:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_fifo_as_privkey_is_refused_at_once() {
    let tmp = certbot_dir();
    let target = tmp.path().join("archive/b.test/privkey1.pem");
    std::fs::remove_file(&target).unwrap_or_else(|e| panic!("{e}"));
    rustix::fs::mkfifoat(rustix::fs::CWD, &target, rustix::fs::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    // Before: a read that waited for a writer forever.
    let key = tmp.path().join("live/b.test/privkey.pem");
    assert_eq!(read_err(tmp.path()), format!("cannot read {}: is a FIFO, not a regular file", key.display()));
}

#[test]
fn a_privkey_linked_to_dev_zero_or_out_of_the_tree_is_refused() {
    let tmp = certbot_dir();
    let key = tmp.path().join("live/b.test/privkey.pem");
    std::fs::remove_file(&key).unwrap_or_else(|e| panic!("{e}"));
    symlink(Path::new("/dev/zero"), &key);
    // Before: read until memory ran out.
    assert_eq!(
        read_err(tmp.path()),
        format!(
            "{}: is a symlink to /dev/zero, outside {}; refusing to follow it",
            key.display(),
            tmp.path().display()
        )
    );

    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let stolen = outside.path().join("key.pem");
    write(&stolen, "-----BEGIN PRIVATE KEY-----\n");
    std::fs::remove_file(&key).unwrap_or_else(|e| panic!("{e}"));
    symlink(&stolen, &key);
    assert!(read_err(tmp.path()).contains("outside"), "{}", read_err(tmp.path()));
}

#[test]
fn a_file_over_the_cap_is_refused_without_reading_it_whole() {
    let tmp = certbot_dir();
    let target = tmp.path().join("archive/b.test/fullchain1.pem");
    let file = std::fs::File::create(&target).unwrap_or_else(|e| panic!("{e}"));
    file.set_len(source::FILE_CAP + 1).unwrap_or_else(|e| panic!("{e}"));
    let chain = tmp.path().join("live/b.test/fullchain.pem");
    assert_eq!(read_err(tmp.path()), format!("cannot read {}: is larger than 1048576 bytes", chain.display()));
}

#[test]
fn a_loop_of_directory_links_in_accounts_is_skipped_not_walked() {
    let tmp = certbot_dir();
    let accounts = tmp.path().join("accounts");
    // Before: 8 links back to accounts/ took 8.2 s, doubling with each.
    for i in 0..12 {
        symlink(Path::new("."), &accounts.join(format!("loop{i}")));
        symlink(&accounts, &accounts.join("ca.test:14000").join(format!("back{i}")));
    }
    let started = std::time::Instant::now();
    let found = certbot::read(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    assert_eq!(found.accounts.len(), 1);
    assert_eq!(found.certificates.len(), 1);
    assert_eq!(found.skipped.len(), 24, "{:?}", found.skipped);
    assert!(found
        .skipped
        .contains(&("certbot accounts/loop3".to_owned(), "a symlink to a directory, not followed".to_owned())));
    // Shown, not asserted: the walk visits each real directory once.
    eprintln!("read with 24 looping links in {elapsed:?}");

    let plan = plan_of(found);
    assert_eq!(plan.certificates.len(), 1, "{plan:?}");
    assert!(plan.skipped.iter().any(|(what, _)| what == "certbot accounts/ca.test:14000/back11"), "{plan:?}");
}

#[test]
fn a_symlinked_lineage_is_skipped_and_the_others_read() {
    let tmp = certbot_dir();
    let elsewhere = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (cert, key) = issued(&["a.test"], 60);
    write(&elsewhere.path().join("fullchain.pem"), &cert);
    write(&elsewhere.path().join("privkey.pem"), &key.serialize_pem());
    symlink(elsewhere.path(), &tmp.path().join("live/a.test"));
    let found = certbot::read(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.certificates.len(), 1);
    assert_eq!(found.certificates[0].origin, "certbot live/b.test");
    assert_eq!(
        found.skipped,
        [("certbot live/a.test".to_owned(), "a symlink to a directory, not followed".to_owned())]
    );
}

#[test]
fn an_acme_json_that_is_a_device_or_a_fifo_is_refused() {
    let err = |path: &Path| match traefik::read(path, None) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert_eq!(err(Path::new("/dev/zero")), "cannot read /dev/zero: is a character device, not a regular file");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fifo = tmp.path().join("acme.json");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let link = tmp.path().join("link.json");
    symlink(&fifo, &link);
    assert_eq!(err(&link), format!("cannot read {}: is a FIFO, not a regular file", link.display()));
}
