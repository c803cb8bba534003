//! Envoy file SDS end to end, no gRPC between the sidecar and Envoy: the
//! sidecar writes one SDS file per certificate into a directory (two
//! certificates side by side), a real Envoy on the shipped
//! envoy/envoy-file-sds.yaml watches it, serves the issued certificates and,
//! after a renewal, the new serial, with no restart and no listener drain.
//! Also the start-up pitfall: Envoy refuses to start without the files, and
//! `proxy-acme prepare` is what lets it start before the daemon.

use std::process::Command;
use std::time::Duration;

use proxy_acme_e2e::*;

const FIRST: &str = "file-sds.proxy-acme.test";
const SECOND: &str = "second-file-sds.proxy-acme.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_watches_sds_files_written_by_the_sidecar_and_swaps_without_restart() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    let pebble = Pebble::start_with(dir, ports.http, ports.https, &PebbleOptions::default());
    let sds = dir.join("sds");
    let tail = format!("{}\n{}", certificate("demo", &[FIRST], "pebble"), certificate("second", &[SECOND], "pebble"));
    let config = sidecar_config(dir, &ports, &pebble, "", &tail).replace(
        &format!("sds_socket = \"{}/sds.sock\"", dir.display()),
        &format!("sds_socket = \"\"\nsds_directory = \"{}\"", sds.display()),
    );
    assert!(config.contains("sds_directory"));
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &config);
    let envoy_yaml = shipped_file_sds_envoy_config(&ports, &sds, &["demo", "second"]);
    let envoy_bin = envoy_bin();

    // 1. Without the files, Envoy does not start: the pitfall `prepare` avoids.
    write(&dir.join("early.yaml"), &envoy_yaml);
    let early = Command::new(&envoy_bin)
        .args(["--disable-hot-restart", "--log-level", "critical", "-c"])
        .arg(dir.join("early.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!early.status.success());
    let said = String::from_utf8_lossy(&early.stderr);
    assert!(said.contains("does not exist"), "Envoy said: {said}");

    // 2. `prepare` writes the placeholders; Envoy starts and serves them.
    let out = Command::new(proxy_acme_bin())
        .args(["prepare", "--config"])
        .arg(&config_path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "prepared demo: placeholder\nprepared second: placeholder\n");
    let mut envoy = Envoy::start(dir, &envoy_yaml, ports.admin).await;
    let https = ("127.0.0.1", ports.https);
    let placeholder = tls_leaf(tls_config_unverified(), https, FIRST).await.unwrap_or_else(|e| panic!("{e}"));

    // 3. The daemon issues both; Envoy picks the files up.
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
    let root = pebble.root_pem().await;
    let verified = tls_config(&root, &[]);
    let serial_for = |sni: &'static str| {
        let verified = verified.clone();
        async move { tls_leaf(verified, https, sni).await.map(|der| serial_of(&der)) }
    };
    let first = eventually(Duration::from_secs(60), || serial_for(FIRST)).await.unwrap_or_else(|e| {
        panic!(
            "Envoy never served the issued certificate: {e}\n--- sidecar\n{}\n--- envoy\n{}",
            sidecar.tail(),
            envoy.proc.tail()
        )
    });
    assert_ne!(first, serial_of(&placeholder));
    eventually(Duration::from_secs(60), || serial_for(SECOND)).await.unwrap_or_else(|e| panic!("{SECOND}: {e}"));

    // 4. A renewal: the new serial, same Envoy, no listener modified or drained.
    let renewed = Command::new(proxy_acme_bin())
        .args(["renew", "demo", "--force", "--config"])
        .arg(&config_path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(renewed.status.success(), "{}", String::from_utf8_lossy(&renewed.stderr));
    let second = eventually(Duration::from_secs(30), || async {
        let serial = serial_for(FIRST).await?;
        if serial == first {
            Err(format!("still {first}"))
        } else {
            Ok(serial)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no new serial: {e}\n{}", envoy.proc.tail()));
    assert_ne!(second, first);
    envoy.proc.assert_running();
    assert_eq!(envoy_stat(ports.admin, "listener_manager.listener_modified").await, 0);
    assert_eq!(envoy_stat(ports.admin, "listener_manager.total_listeners_draining").await, 0);
    assert_eq!(envoy_stat(ports.admin, "listener_manager.listener_in_place_updated").await, 0);

    // 5. A half-written file swapped in (what a naive writer would do; the
    //    sidecar never does): Envoy rejects it and keeps the last good one.
    let secret_dir = sds.join("demo");
    let good = std::fs::read_to_string(secret_dir.join("secret.json")).unwrap_or_else(|e| panic!("{e}"));
    let torn = secret_dir.join("..torn");
    std::fs::create_dir(&torn).unwrap_or_else(|e| panic!("{e}"));
    write(&torn.join("secret.json"), &good[..good.len() / 2]);
    let link = secret_dir.join("..data_torn");
    std::os::unix::fs::symlink("..torn", &link).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&link, secret_dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(serial_for(FIRST).await, Ok(second.clone()), "Envoy must keep the last good certificate");
    envoy.proc.assert_running();
    // The sidecar's next write replaces the torn version.
    let renewed = Command::new(proxy_acme_bin())
        .args(["renew", "demo", "--force", "--config"])
        .arg(&config_path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(renewed.status.success(), "{}", String::from_utf8_lossy(&renewed.stderr));
    eventually(Duration::from_secs(30), || async {
        let serial = serial_for(FIRST).await?;
        if serial == second {
            Err(format!("still {second}"))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no recovery from the torn file: {e}"));
}
