//! The sidecar and nginx sharing only a directory: the sidecar writes PEM
//! files (`[nginx] reload = false`), `proxy-acme watch` runs as a separate
//! process beside a real nginx and reloads it when the files change. After
//! issuance and after a renewal nginx serves the new certificate; a
//! truncated `privkey.pem` dropped into the directory causes no reload and
//! is reported.

use std::process::Command;
use std::time::Duration;

use proxy_acme_e2e::*;

const DOMAIN: &str = "watch.proxy-acme.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_nginx_for_new_files_and_refuses_a_truncated_key() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    let pebble = Pebble::start_with(dir, ports.http, free_port(), &PebbleOptions::default());
    let certs = dir.join("certs");
    let live = certs.join("web/live");

    let tail = format!(
        "[nginx]\ndirectory = \"{}\"\nreload = false\n\n{}",
        certs.display(),
        certificate("web", &[DOMAIN], "pebble")
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &config);
    let cli = |args: &[&str]| {
        let out = Command::new(proxy_acme_bin())
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    cli(&["prepare"]);

    // nginx on the shipped site, reading the shared directory.
    let site = shipped_site(&ports, DOMAIN, &live);
    write(&dir.join("site.conf"), &site);
    let conf = dir.join("nginx.conf");
    let nginx_conf = format!(
        "{}http {{\n{}include {}/site.conf;\n}}\n",
        Nginx::preamble(dir),
        Nginx::http_paths(dir),
        dir.display()
    );
    let mut nginx = Nginx::start(dir, &nginx_conf, ports.http);
    wait_for_port(ports.https, Duration::from_secs(10), &mut nginx.proc);

    // The watcher: its own process, told only the directory and nginx.
    let check = format!("nginx -t -q -p {} -c {}", dir.display(), conf.display());
    let mut watch = Proc::spawn(
        "watch",
        Command::new(proxy_acme_bin())
            .args(["watch", "--dir"])
            .arg(&certs)
            .arg("--pid-file")
            .arg(dir.join("nginx.pid"))
            .args(["--check", &check, "--debounce-ms", "300"])
            .env("PROXY_ACME_LOG", "proxy_acme=debug"),
        dir,
    );
    let watch_log = || std::fs::read_to_string(&watch.log).unwrap_or_default();
    // The watcher logs a reload once nginx's old workers are stopping, a
    // moment after new ones serve: waits for more than `before` reloads.
    let reloaded_after = |before: usize| {
        let (watch_log, watch) = (&watch_log, &watch);
        eventually(Duration::from_secs(10), move || async move {
            (watch_log().matches("nginx reloaded").count() > before).then_some(()).ok_or_else(|| watch.tail())
        })
    };
    eventually(Duration::from_secs(10), || async {
        watch_log().contains("watching").then_some(()).ok_or_else(|| "watch did not start".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
    let root = pebble.root_pem().await;
    let verified = tls_config(&root, &[]);
    let https = ("127.0.0.1", ports.https);
    let serial = || async { tls_leaf(verified.clone(), https, DOMAIN).await.map(|der| serial_of(&der)) };

    // 1. Issued, written by the sidecar, reloaded by the watcher.
    let first = eventually(Duration::from_secs(60), serial).await.unwrap_or_else(|e| {
        panic!(
            "nginx never served the issued certificate: {e}\n--- sidecar\n{}\n--- watch\n{}",
            sidecar.tail(),
            watch.tail()
        )
    });
    reloaded_after(0).await.unwrap_or_else(|e| panic!("the first reload was not logged:\n{e}"));
    assert!(!std::fs::read_to_string(&sidecar.log).unwrap_or_default().contains("nginx reloaded"));

    // 2. A renewal: the new serial, again through the watcher.
    let reloads_first = watch_log().matches("nginx reloaded").count();
    cli(&["renew", "web", "--force"]);
    let second = eventually(Duration::from_secs(30), || async {
        let now = serial().await?;
        if now == first {
            Err(format!("still {first}"))
        } else {
            Ok(now)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no renewal served: {e}\n--- watch\n{}", watch.tail()));

    reloaded_after(reloads_first).await.unwrap_or_else(|e| panic!("the renewal's reload was not logged:\n{e}"));

    // 3. A truncated key: no reload, and the watcher says why.
    let reloads_before = watch_log().matches("nginx reloaded").count();
    let key = std::fs::read_to_string(live.join("privkey.pem")).unwrap_or_else(|e| panic!("{e}"));
    write(&live.join("privkey.pem"), &key[..key.len() / 2]);
    eventually(Duration::from_secs(10), || async {
        let log = watch_log();
        log.contains("not reloading nginx: certificate files are unusable").then_some(()).ok_or(log)
    })
    .await
    .unwrap_or_else(|e| panic!("the truncated key was not reported:\n{e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(watch_log().matches("nginx reloaded").count(), reloads_before, "reloaded on a truncated key");
    assert_eq!(serial().await, Ok(second), "nginx keeps serving the last good certificate");
    // Idle, the watcher does nothing: its own reads are not changes (they
    // started a scan every debounce, forever, reporting the key each time).
    let reports = watch_log().matches("not reloading nginx").count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(watch_log().matches("not reloading nginx").count(), reports, "rescanning while idle:\n{}", watch.tail());
    assert!(!watch_log().contains("unable to remove watch descriptor"), "{}", watch.tail());
    watch.assert_running();
    nginx.proc.assert_running();
}
