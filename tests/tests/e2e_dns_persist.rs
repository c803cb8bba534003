//! dns-persist-01 (draft-ietf-acme-dns-persist) end to end, as an operator
//! meets it: acme2certifier 0.46.3 with its dns-persist-01 validator asks a
//! real BIND 9 that owns the test zone (its `dns_server_list`); the
//! operator runs `proxy-acme dns-persist-record NAME`, creates what it
//! prints once with `nsupdate`, and starts the sidecar with no DNS
//! provider and no DNS credentials. The certificate (an apex and its
//! wildcard, one record with `policy=wildcard`) is issued, pushed over SDS
//! and served by the real Envoy, chaining to acme2certifier's CA; the
//! account is the one the command registered.
//!
//! In the same run, three more certificates fail as they should, each
//! error naming the record to create: a record for another account, no
//! record at all, and a record whose `persistUntil` has passed (refused by
//! the sidecar's check, and, with the check off, by acme2certifier).
//!
//! One BIND, one acme2certifier, one Envoy and one sidecar for the whole
//! binary. `A2C_KEEP=1` keeps the temp dir (its path is printed).

use std::path::Path;
use std::time::Duration;

use proxy_acme_e2e::stack::certificate;
use proxy_acme_e2e::*;
use x509_parser::prelude::{FromDer, X509Certificate};

const ZONE: &str = "persist.test";
const ISSUER: &str = "ca.proxy-acme.test";
/// acme2certifier requires a contact (see e2e_acme2certifier).
const EMAIL: &str = "email = \"ops@proxy-acme.test\"\n";
/// 2001-09-09: long past.
const PAST: &str = "1000000000";

/// `proxy-acme ARGS --config CONFIG`: exit code, stdout, stderr.
fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(proxy_acme_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The one record `dns-persist-record NAME` prints.
fn record_for(config: &Path, name: &str) -> String {
    let (code, out, err) = cli(config, &["dns-persist-record", name]);
    assert_eq!(code, 0, "dns-persist-record {name}: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one record for {name}, nothing else on stdout: {out:?}");
    lines[0].to_owned()
}

/// The `accounturi` a printed record names.
fn account_of(record: &str) -> String {
    let start = record.find("accounturi=").unwrap_or_else(|| panic!("no accounturi in {record}")) + 11;
    record[start..].split([';', '"']).next().unwrap_or_default().to_owned()
}

/// The first `order failed` line of the sidecar's log for `certificate`.
async fn failure(sidecar: &Proc, certificate: &str) -> String {
    let tag = format!("certificate={certificate} ");
    eventually(Duration::from_secs(120), || async {
        std::fs::read_to_string(&sidecar.log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("order failed") && l.contains(&tag))
            .map(str::to_owned)
            .ok_or_else(|| format!("no failed order for {certificate} yet"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_made_once_proves_names_at_acme2certifier_without_dns_credentials() {
    let mut tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    tmp.disable_cleanup(std::env::var_os("A2C_KEEP").is_some());
    let dir = tmp.path().to_owned();
    eprintln!("dns-persist stack in {}", dir.display());
    let bind_dir = dir.join("bind");
    std::fs::create_dir_all(&bind_dir).unwrap_or_else(|e| panic!("{e}"));
    let bind = Bind::start(&bind_dir, ZONE);

    let ports = StackPorts::free();
    let options = A2cOptions {
        dns_server_port: Some(bind.address.port()),
        dns_persist: true,
        dns_persist_wildcard: true,
        caa_identities: vec![ISSUER.to_owned()],
        ..A2cOptions::default()
    };
    let a2c = A2c::start_with(&dir, ports.http, ports.https, &options);
    let _app = start_echo_app(ports.app).await;
    let mut envoy = Envoy::start(&dir, &shipped_envoy_config(&ports, &dir.join("sds.sock")), ports.admin).await;

    // No [dns_challenge], no provider, no credentials: where to look only.
    let check = format!(
        "resolvers = [\"{a}\"], nameserver_port = {port}, timeout_secs = 4, interval_secs = 1",
        a = bind.address,
        port = bind.address.port()
    );
    let body = format!("{EMAIL}dns_persist = {{ {check} }}\n");
    // A second account whose check is off: acme2certifier judges alone.
    let unchecked = format!(
        "[resolvers.unchecked]\nca_server = \"{}\"\nca_certificate = \"{}\"\n{EMAIL}\
         dns_persist = {{ {check}, disable_checks = true }}\n",
        a2c.directory_url(),
        a2c.root_pem_path.display()
    );
    let certificates = [
        certificate("demo", &["app.persist.test", "*.app.persist.test"], "a2c"),
        certificate("other", &["other.persist.test"], "a2c"),
        certificate("missing", &["missing.persist.test"], "a2c"),
        certificate("expired", &["expired.persist.test"], "a2c"),
        certificate("expired-at-ca", &["expired-ca.persist.test"], "unchecked"),
        unchecked,
    ]
    .join("\n");
    let config = a2c.sidecar_config(&dir, &ports, &body, &certificates);
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &config);

    // 1. What to create: one line per record name, zone-file style; the
    // wildcard and its apex share one record with policy=wildcard. The
    // issuer is the directory's caaIdentities; the account is registered
    // now, in the sidecar's store, and the same one is printed again.
    let demo = record_for(&config_path, "demo");
    let account = account_of(&demo);
    assert!(account.starts_with(&format!("https://127.0.0.1:{}/acme/acct/", a2c.port)), "{demo}");
    assert_eq!(
        demo,
        format!("_validation-persist.app.persist.test. IN TXT \"{ISSUER}; accounturi={account}; policy=wildcard\"")
    );
    assert_eq!(record_for(&config_path, "demo"), demo, "the account is stored and reused");
    let other = record_for(&config_path, "other");
    let missing = record_for(&config_path, "missing");
    let expired = record_for(&config_path, "expired");
    let expired_at_ca = record_for(&config_path, "expired-at-ca");
    assert_eq!(other, format!("_validation-persist.other.persist.test. IN TXT \"{ISSUER}; accounturi={account}\""));
    assert_ne!(account_of(&expired_at_ca), account, "another resolver, another account");

    // 2. The operator creates them once, exactly as printed (the wrong
    // ones: another account, and a persistUntil long past).
    let someone_else = format!("{}/someone-else", account.rsplit_once('/').map_or("", |(base, _)| base));
    let past = |record: &str| format!("{}; persistUntil={PAST}\"", record.trim_end_matches('"'));
    let updates = [demo.clone(), other.replace(&account, &someone_else), past(&expired), past(&expired_at_ca)];
    let commands: Vec<String> = updates.iter().map(|r| format!("update add {r}")).collect();
    bind.nsupdate(&commands.join("\n")).unwrap_or_else(|e| panic!("{e}\n--- named\n{}", bind.proc.tail()));
    let value = demo.split_once(" IN TXT ").map(|(_, v)| v.trim_matches('"').to_owned()).unwrap_or_default();
    assert_eq!(txt_values(bind.address, "_validation-persist.app.persist.test.").await, [value]);

    // `check --online` looks at them once, for the stored account: one
    // line per certificate, a FAIL naming the record to create.
    let (code, out, err) = cli(&config_path, &["check", "--online"]);
    assert_eq!(code, 1, "FAIL lines make check --online exit 1:\n{out}{err}");
    let checked = |certificate: &str, resolver: &str| {
        let prefix = format!("dns-persist:{resolver}: {certificate}: ");
        let found = out.lines().find(|l| l.contains(&prefix)).map(str::to_owned);
        found.unwrap_or_else(|| panic!("no check of {certificate}:\n{out}{err}"))
    };
    assert_eq!(
        checked("demo", "a2c"),
        format!("ok   dns-persist:a2c: demo: every nameserver has the record for {account}")
    );
    let other_line = checked("other", "a2c");
    assert!(other_line.starts_with("FAIL") && other_line.contains("names another ACME account"), "{other_line}");
    assert!(other_line.contains(&format!("Create, once: {other}")), "{other_line}");
    let missing_line = checked("missing", "a2c");
    assert!(missing_line.starts_with("FAIL") && missing_line.contains("NXDOMAIN"), "{missing_line}");
    assert!(missing_line.contains(&format!("Create, once: {missing}")), "{missing_line}");
    assert!(!missing_line.contains("within 0s"), "looked at once, not waited for: {missing_line}");
    let expired_line = checked("expired", "a2c");
    assert!(expired_line.contains(&format!("expired (persistUntil={PAST}")), "{expired_line}");
    // Orders there skip the check; asked to look, the command looks.
    let unchecked_line = checked("expired-at-ca", "unchecked");
    assert!(unchecked_line.starts_with("FAIL") && unchecked_line.contains("expired"), "{unchecked_line}");

    // 3. The sidecar, with no DNS credentials at all.
    assert!(!config.contains("dns_challenge"), "{config}");
    let mut sidecar = start_sidecar(&dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    // Envoy serves demo's certificate, issued by acme2certifier's CA, for
    // the apex and the wildcard.
    let tls = tls_config(&a2c.issuing_ca_pem, &[]);
    let https = ports.https;
    let leaf = eventually(Duration::from_secs(120), || tls_leaf(tls.clone(), ("127.0.0.1", https), "app.persist.test"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Envoy never served the certificate: {e}\n--- sidecar\n{}\n--- acme2certifier\n{}\n--- envoy\n{}",
                sidecar.tail(),
                a2c.proc.tail(),
                envoy.proc.tail()
            )
        });
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap_or_else(|e| panic!("{e}"));
    let ca_der = a2c.issuing_ca_der();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw(), "served leaf's issuer: {}", cert.issuer());
    let names = sans(&leaf);
    assert!(names.contains(&"DNSName(app.persist.test)".to_owned()), "{names:?}");
    assert!(names.contains(&"DNSName(*.app.persist.test)".to_owned()), "{names:?}");
    let a2c_log = std::fs::read_to_string(&a2c.proc.log).unwrap_or_default();
    assert!(a2c_log.contains("'type': 'dns-persist-01', 'status': 'valid'"), "{}", a2c.proc.tail());
    let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
    let loaded = log.lines().any(|l| l.contains("loaded ACME account") && l.contains(&account));
    assert!(loaded, "the daemon used the command's account:\n{}", sidecar.tail());
    assert!(!log.contains("registered ACME account"), "the command registered the accounts:\n{}", sidecar.tail());

    // 4. A record for another account: said so, with the record to create.
    let failed = failure(&sidecar, "other").await;
    assert!(failed.contains("names another ACME account"), "{failed}");
    assert!(failed.contains(&format!("names another account (accounturi={someone_else})")), "{failed}");
    assert!(failed.contains(&format!("Create, once: {other}")), "{failed}");

    // No record: the name and value to create, and what BIND answered.
    let failed = failure(&sidecar, "missing").await;
    assert!(failed.contains("no record proving this name"), "{failed}");
    assert!(failed.contains("NXDOMAIN"), "{failed}");
    assert!(failed.contains(&format!("Create, once: {missing}")), "{failed}");
    assert!(failed.contains("permanent=false"), "a missing record may be created later: {failed}");

    // persistUntil past: refused before the CA is asked ...
    let failed = failure(&sidecar, "expired").await;
    assert!(failed.contains(&format!("expired (persistUntil={PAST}")), "{failed}");
    assert!(failed.contains(&format!("Create, once: {expired}")), "{failed}");
    // ... and by acme2certifier when the check is off.
    let failed = failure(&sidecar, "expired-at-ca").await;
    assert!(failed.contains("authorization for expired-ca.persist.test is Invalid"), "{failed}");
    let a2c_log = std::fs::read_to_string(&a2c.proc.log).unwrap_or_default();
    assert!(a2c_log.contains("dns-persist-01 persistuntil expired"), "{}", a2c.proc.tail());

    envoy.proc.assert_running();
    sidecar.assert_running();
}
