//! Reload without a restart, with a real Envoy and Pebble: Envoy already
//! asks for a secret `second` the sidecar does not manage (and the sidecar
//! says so); the certificate is added to the file, SIGHUP, and Envoy serves
//! it. A broken file and a changed resolver are refused by `proxy-acme
//! reload` with the reason while everything keeps running; removing the
//! certificate again stops managing it.

use std::time::Duration;

use proxy_acme_e2e::stack::{certificate, with_secrets, Stack};
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

    // Added to the file, SIGHUP: ordered and served without a restart.
    let pid = stack.sidecar.pid();
    write(&stack.config_path, &format!("{original}\n{}", certificate("second", &[SECOND], "pebble")));
    let hup = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or_default()).unwrap_or_else(|| panic!("pid"));
    rustix::process::kill_process(hup, rustix::process::Signal::HUP).unwrap_or_else(|e| panic!("{e}"));
    let second = stack.wait_for_new_serial(SECOND, None, Duration::from_secs(60)).await;
    assert!(log().contains("configuration reloaded") && log().contains("added: second"), "{}", stack.sidecar.tail());
    assert_eq!(stack.sidecar.pid(), pid, "the same process");
    stack.sidecar.assert_running();

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
    // A resolver changed: refused as a whole, saying a restart is needed.
    let changed = format!("{original}\n{}", certificate("second", &[SECOND], "pebble"))
        .replace("email = \"ops@proxy-acme.test\"", "email = \"other@proxy-acme.test\"");
    write(&stack.config_path, &changed);
    let (code, _, err) = stack.cli(&["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("[resolvers] changed, which needs a restart"), "{err}");
    assert_eq!(stack.served(SECOND).await.map(|der| serial_of(&der)), Ok(second), "still served");
    stack.sidecar.assert_running();

    // Removed from the file: no longer managed.
    write(&stack.config_path, &original);
    let (code, out, err) = stack.cli(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed: second"), "{out}");
    let (_, certs, _) = stack.cli(&["certs"]);
    assert!(certs.contains("demo") && !certs.contains(SECOND), "{certs}");
}
