//! nginx end to end, with a real nginx on the shipped nginx/proxy-acme.conf:
//! HTTP-01 through nginx's `proxy_pass`, PEM files written by the `[nginx]`
//! target, a checked reload, the certificate served by nginx; an automatic
//! renewal (short validity in Pebble) under a loop of requests, none of
//! which may fail; then a broken nginx config at reload time: no reload, the
//! error logged, the previous files restored and still served, and recovery
//! once the config is fixed. Also the `[post_deploy]` hook and the output of
//! `proxy-acme nginx-config`, loaded by `nginx -t`.
//!
//! One Pebble, one nginx and one sidecar for the whole binary.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxy_acme_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "nginx.proxy-acme.test";

/// One HTTPS request on a new connection: the status, or what went wrong.
async fn try_get(config: Arc<rustls::ClientConfig>, port: u16) -> Result<u16, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(DOMAIN.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let request = format!("GET /load HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut raw)).await;
    match read {
        Err(_) => return Err("response timed out".into()),
        Ok(Err(e)) if raw.is_empty() => return Err(format!("read: {e}")),
        Ok(_) => {}
    }
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no HTTP response: {text:?}"))
}

fn serial_of_pem_file(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    serial_of(&der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_issues_reloads_under_load_renews_and_survives_a_broken_config() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    let pebble = Pebble::start_with(
        dir,
        ports.http,
        free_port(),
        &PebbleOptions { validity_secs: Some(40), ..PebbleOptions::default() },
    );
    let certs = dir.join("nginx-certs");
    let live = certs.join("web/live");

    // The shipped site, with this test's ports and paths.
    let site = shipped_site(&ports, DOMAIN, &live);
    // nginx runs its HTTP site first, as before HTTPS is added.
    let http_only = &site[..site.rfind("\nserver {").unwrap_or_else(|| panic!("no https server block"))];
    write(&dir.join("site.conf"), http_only);
    write(&dir.join("broken.conf"), "");
    let conf = dir.join("nginx.conf");
    let nginx_conf = |include: &str| {
        format!(
            "{}http {{\n{}include {};\ninclude {}/broken.conf;\n}}\n",
            Nginx::preamble(dir),
            Nginx::http_paths(dir),
            include,
            dir.display()
        )
    };
    let mut nginx = Nginx::start(dir, &nginx_conf(&dir.join("site.conf").display().to_string()), ports.http);

    let tail = format!(
        r#"
[nginx]
directory = "{certs}"
pid_file = "{d}/nginx.pid"
check_command = ["nginx", "-t", "-q", "-p", "{d}", "-c", "{conf}"]
reload_delay_ms = 300
retry_secs = 2

[post_deploy]
command = ["sh", "-c", "echo \"$PROXY_ACME_NAME $PROXY_ACME_SERIAL $PROXY_ACME_FULLCHAIN\" >> {d}/hook.log"]

{cert}"#,
        certs = certs.display(),
        d = dir.display(),
        conf = conf.display(),
        cert = certificate("web", &[DOMAIN], "pebble"),
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
    let sidecar_log = || std::fs::read_to_string(dir.join("proxy-acme.log")).unwrap_or_default();

    // The sidecar writes a placeholder at once, so the HTTPS site can go live.
    eventually(Duration::from_secs(20), || async {
        live.join("fullchain.pem").is_file().then_some(()).ok_or_else(|| "no placeholder files".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    write(&dir.join("site.conf"), &site);
    let reload = std::process::Command::new("nginx")
        .args(["-s", "reload", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(reload.success());
    wait_for_port(ports.https, Duration::from_secs(20), &mut nginx.proc);

    // 1. Issued through nginx's proxy_pass and served by nginx.
    let root = pebble.root_pem().await;
    let verified = tls_config(&root, &[]);
    let serial_served = || async {
        let der = tls_leaf(verified.clone(), ("127.0.0.1", ports.https), DOMAIN).await?;
        Ok::<_, String>(serial_of(&der))
    };
    let first = eventually(Duration::from_secs(60), serial_served).await.unwrap_or_else(|e| {
        panic!(
            "nginx never served a Pebble certificate: {e}\n--- sidecar\n{}\n--- nginx\n{}",
            sidecar.tail(),
            std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
        )
    });
    let key_mode = std::fs::metadata(live.join("privkey.pem"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(key_mode.ok(), Some(0o600));
    let hook = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(dir.join("hook.log")).map_err(|e| e.to_string())?;
        text.contains(&first).then_some(text.clone()).ok_or(text)
    })
    .await
    .unwrap_or_else(|e| panic!("the post_deploy hook did not see {first}: {e}"));
    assert!(hook.contains(&format!("web {first} {}", live.join("fullchain.pem").display())), "{hook}");

    // `nginx-config` prints blocks that a real nginx loads.
    let out = std::process::Command::new(proxy_acme_bin())
        .args(["nginx-config", "--config"])
        .arg(dir.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(generated.contains(&format!("ssl_certificate     {}/fullchain.pem;", live.display())), "{generated}");
    write(&dir.join("generated.conf"), &generated);
    let generated_conf = dir.join("generated-nginx.conf");
    write(&generated_conf, &nginx_conf(&dir.join("generated.conf").display().to_string()));
    let check = std::process::Command::new("nginx")
        .args(["-t", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&generated_conf)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        check.status.success(),
        "nginx -t refused nginx-config's output: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // 2. The automatic renewal reloads nginx while requests keep coming;
    //    not one fails.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = Arc::clone(&stop);
        let port = ports.https;
        tokio::spawn(async move {
            let (mut ok, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match try_get(tls_config_unverified(), port).await {
                    Ok(200) => ok += 1,
                    other => failures.push(format!("{other:?}")),
                }
            }
            (ok, failures)
        })
    };
    let automatic = eventually(Duration::from_secs(60), || async {
        let serial = serial_served().await?;
        if serial == first {
            Err(format!("still {first}"))
        } else {
            Ok(serial)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no renewal served: {e}\n{}", sidecar.tail()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = load.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(failures.is_empty(), "{} requests failed during the reload: {failures:?}", failures.len());
    assert!(ok >= 20, "only {ok} requests ran during the renewal");
    assert!(sidecar_log().contains("nginx reloaded"));

    let cli = |args: &[&str]| {
        std::process::Command::new(proxy_acme_bin())
            .args(args)
            .arg("--config")
            .arg(dir.join("proxy-acme.toml"))
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // `renew` answers once nginx serves the new certificate, not before
    // (reload_delay_ms is 300 here; nginx keeps the old one until then).
    let renewed = cli(&["renew", "web", "--force"]);
    let said = String::from_utf8_lossy(&renewed.stdout).into_owned();
    assert!(renewed.status.success(), "{said}{}", String::from_utf8_lossy(&renewed.stderr));
    let second = serial_of_pem_file(&dir.join("state/certificates/web/live/cert.pem"));
    assert_ne!(second, automatic, "renew --force ordered nothing");
    assert!(said.contains(&second) && said.contains("served"), "{said}");
    assert_eq!(serial_served().await, Ok(second.clone()), "renew said done before nginx served it");

    // 3. A broken nginx config at reload time: no reload, the error is
    //    logged, the previous files are restored and still served, and
    //    `renew` fails saying so in nginx's words.
    write(&dir.join("broken.conf"), "this_is_not_a_directive on;\n");
    let renewed = cli(&["renew", "web", "--force"]);
    let said = String::from_utf8_lossy(&renewed.stderr).into_owned();
    assert!(!renewed.status.success(), "renew succeeded while nginx refused its configuration");
    assert!(
        said.contains("not served yet") && said.contains("this_is_not_a_directive") && said.contains("tried again"),
        "{said}"
    );
    let stored = serial_of_pem_file(&dir.join("state/certificates/web/live/cert.pem"));
    assert_ne!(stored, second);
    assert!(said.contains(&stored), "the answer must name the stored serial: {said}");
    eventually(Duration::from_secs(15), || async {
        let log = sidecar_log();
        (log.contains("nginx check failed") && log.contains("this_is_not_a_directive"))
            .then_some(())
            .ok_or_else(|| "no check failure logged".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert_eq!(serial_of_pem_file(&live.join("cert.pem")), second, "the previous files must be restored");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(serial_served().await, Ok(second.clone()), "nginx must keep serving the previous certificate");
    nginx.proc.assert_running();

    // 4. The operator fixes the config: the retry reloads the new files.
    write(&dir.join("broken.conf"), "");
    let recovered = eventually(Duration::from_secs(20), || async {
        let serial = serial_served().await?;
        if serial == second {
            Err(format!("still {second}"))
        } else {
            Ok(serial)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no recovery after the fix: {e}\n{}", sidecar.tail()));
    assert_eq!(serial_of_pem_file(&live.join("cert.pem")), recovered);
}
