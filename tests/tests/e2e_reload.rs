//! Reload without a restart, with a real Envoy and Pebble: Envoy already
//! asks for a secret `second` the sidecar does not manage (and the sidecar
//! says so); the certificate and a new resolver for it are added to the
//! file, SIGHUP, and Envoy serves it, issued through the new resolver's
//! account. A changed resolver (its key type) renews its certificates: Envoy
//! serves an RSA one. A broken file and a change that needs a restart are
//! refused by `proxy-acme reload` with the reason while everything keeps
//! running; removing the certificate and its resolver again stops managing
//! it.

use std::time::Duration;

use proxy_acme_e2e::stack::{certificate, resolver, with_secrets, Stack};
use proxy_acme_e2e::*;

const DEMO: &str = "demo.reload.test";
const SECOND: &str = "second.reload.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_come_and_go_with_a_reload_and_a_bad_file_changes_nothing() {
    let mut stack = Stack::start(
        &PebbleOptions::default(),
        "",
        |_| certificate("demo", &[DEMO], "pebble"),
        |c| with_secrets(c, &["demo", "second"]),
    )
    .await;
    let log_path = stack.sidecar.log.clone();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let original = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));

    // Envoy asks for `second`, which nobody manages yet: said once, by name.
    eventually(Duration::from_secs(30), || async {
        let log = log();
        log.lines()
            .any(|l| l.contains("Envoy asked for secrets this sidecar does not manage") && l.contains("second"))
            .then_some(())
            .ok_or_else(|| "not reported yet".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.sidecar.tail()));

    // Added to the file with a resolver of its own, SIGHUP: ordered and
    // served without a restart.
    let pid = stack.sidecar.pid();
    let added = format!(
        "{original}\n{}\n{}",
        certificate("second", &[SECOND], "second_ca"),
        resolver(&stack.pebble, "second_ca", "email = \"second@proxy-acme.test\"")
    );
    write(&stack.config_path, &added);
    let hup = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or_default()).unwrap_or_else(|| panic!("pid"));
    rustix::process::kill_process(hup, rustix::process::Signal::HUP).unwrap_or_else(|e| panic!("{e}"));
    let second = stack.wait_for_new_serial(SECOND, None, Duration::from_secs(60)).await;
    assert!(
        log().contains("configuration reloaded")
            && log().contains("certificates added: second")
            && log().contains("resolvers added or changed: second_ca"),
        "{}",
        stack.sidecar.tail()
    );
    assert_eq!(stack.sidecar.pid(), pid, "the same process");
    let accounts = stack.dir.join("state/accounts");
    assert!(accounts.join("second_ca.json").is_file(), "the new resolver registered its own account");
    stack.sidecar.assert_running();

    // The first resolver's key type changed: its certificate is renewed as
    // RSA; the other resolver's certificate is left alone.
    let demo = serial_of(&stack.served(DEMO).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(original.contains("[resolvers.pebble]\n"), "{original}");
    let rsa = added.replace("[resolvers.pebble]\n", "[resolvers.pebble]\nkey_type = \"rsa2048\"\n");
    write(&stack.config_path, &rsa);
    let (code, out, err) = stack.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("changed: demo") && out.contains("resolvers added or changed: pebble;"), "{out}");
    stack.wait_for_new_serial(DEMO, Some(&demo), Duration::from_secs(60)).await;
    let leaf = stack.served(DEMO).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(parsed.public_key().parsed(), Ok(x509_parser::public_key::PublicKey::RSA(_))),
        "Envoy serves an RSA certificate after the reload"
    );
    assert_eq!(stack.served(SECOND).await.map(|der| serial_of(&der)), Ok(second.clone()), "untouched");

    // A broken file: refused, with the reason; nothing changes. (The
    // command reads a good copy to find the admin socket; the daemon
    // reads its own file, the broken one.)
    let good = stack.dir.join("good.toml");
    write(&good, &original);
    write(&stack.config_path, "this is not = = toml");
    let out = std::process::Command::new(proxy_acme_bin())
        .args(["reload", "--config"])
        .arg(&good)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("proxy-acme.toml: line 1"), "the parser's reason, in the daemon's file: {err}");
    assert!(log().contains("configuration not reloaded; the running one stays"), "{}", stack.sidecar.tail());
    // A listener moved: refused as a whole, saying a restart is needed;
    // the certificate added in the same file is not started.
    let third = certificate("third", &["third.reload.test"], "pebble");
    let moved = format!("{rsa}\n{third}").replacen("tls_alpn = \"127.0.0.1:", "tls_alpn = \"127.0.0.2:", 1);
    assert!(moved.contains("tls_alpn = \"127.0.0.2:"), "the stack's file has [listen] tls_alpn: {moved}");
    write(&stack.config_path, &moved);
    let (code, _, err) = stack.cli(&["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("[listen] changed, which needs a restart"), "{err}");
    let (_, certs, _) = stack.cli(&["certs"]);
    assert!(!certs.contains("third.reload.test"), "nothing of a refused file is applied: {certs}");
    assert_eq!(stack.served(SECOND).await.map(|der| serial_of(&der)), Ok(second), "still served");
    stack.sidecar.assert_running();

    // Removed from the file with its resolver: no longer managed.
    write(&stack.config_path, &original);
    let (code, out, err) = stack.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed: second") && out.contains("removed: second_ca"), "{out}");
    let (_, certs, _) = stack.cli(&["certs"]);
    assert!(certs.contains("demo") && !certs.contains(SECOND), "{certs}");
}
