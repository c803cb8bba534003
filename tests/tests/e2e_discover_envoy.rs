//! Names from Envoy's own routes, end to end: a real Envoy on the shipped
//! envoy/envoy-discovery.yaml, its routes from a file (RDS,
//! `path_config_source`) that the test edits, and its HTTPS listener from the
//! file the sidecar renders from envoy/envoy-discovery-listener.yaml (file
//! LDS). No `[[certificates]]` at all: a virtual host added to the routes
//! gets its certificate, served by Envoy without a restart or a drain; a
//! denied name is never ordered; a name gone from the routes stops being
//! managed after the grace period and its files stay.

use std::path::Path;
use std::time::Duration;

use proxy_acme_e2e::*;

const FIRST: &str = "first.discover.test";
const NEW: &str = "new.discover.test";
const WWW: &str = "www.new.discover.test";
const DENIED: &str = "denied.discover.test";
const ALPN: &str = "alpn.discover.test";
/// A wildcard in the routes that a configured certificate (its own DNS-01
/// resolver) already has: nothing is missing, nothing to report.
const COVERED: &str = "*.covered.discover.test";

/// The routes file: one virtual host per list of names, all to the app.
fn routes(hosts: &[&[&str]]) -> String {
    let mut text = String::from(
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.route.v3.RouteConfiguration\n  name: routes\n  virtual_hosts:\n",
    );
    for (i, names) in hosts.iter().enumerate() {
        let domains: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        text.push_str(&format!(
            "  - name: host{i}\n    domains: [{}]\n    routes: [{{ match: {{ prefix: \"/\" }}, route: {{ cluster: app }} }}]\n",
            domains.join(", ")
        ));
    }
    text
}

fn write_routes(dir: &Path, hosts: &[&[&str]]) {
    proxy_acme::deploy::file_sds::write_watched(dir, "routes.yaml", &routes(hosts)).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_host_added_to_the_routes_gets_its_certificate_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let _app = start_echo_app(ports.app).await;
    // No authorization reuse: every order's TLS-ALPN-01 validation must
    // really reach the sidecar through the rendered listener.
    let options = PebbleOptions { authz_reuse: Some(0), ..PebbleOptions::default() };
    let pebble = Pebble::start_with(dir, ports.http, ports.https, &options);
    let (routes_dir, lds_dir) = (dir.join("routes"), dir.join("lds"));
    write_routes(&routes_dir, &[&[FIRST], &["*"]]);

    let root = workspace_root();
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let all = [
        ("port_value: 9901", format!("port_value: {}", ports.admin)),
        ("port_value: 8080", format!("port_value: {}", ports.http)),
        ("port_value: 8443", format!("port_value: {}", ports.https)),
        ("port_value: 8081", format!("port_value: {}", ports.app)),
        ("port_value: 8555", format!("port_value: {}", ports.sidecar)),
        ("port_value: 8556", format!("port_value: {}", ports.tls_alpn)),
        ("address: 0.0.0.0", "address: 127.0.0.1".to_owned()),
        ("/usr/local/lib/proxy-acme/proxy_acme_filter.wasm", wasm_path().display().to_string()),
        ("/run/proxy-acme/sds.sock", dir.join("sds.sock").display().to_string()),
        ("/etc/envoy/routes", routes_dir.display().to_string()),
        ("/etc/envoy/lds", lds_dir.display().to_string()),
    ];
    // Each file with the substitutions that apply to it (render insists on each).
    let paths = |text: &str, keys: &[&str]| {
        let subs: Vec<(&str, String)> = all.iter().filter(|(k, _)| keys.contains(k)).cloned().collect();
        render(text, &subs)
    };
    let listener_keys = ["port_value: 8443", "address: 0.0.0.0", "/etc/envoy/routes"];
    let bootstrap_keys: Vec<&str> = all.iter().map(|(k, _)| *k).filter(|k| *k != "port_value: 8443").collect();
    let template = dir.join("listener-template.yaml");
    write(&template, &paths(&read("envoy/envoy-discovery-listener.yaml"), &listener_keys));
    let discover = format!(
        "[discover]\nresolver = \"pebble\"\nenvoy_admin = \"http://127.0.0.1:{}\"\ninterval_secs = 1\ngrace_secs = 2\n\
         deny = [\"{DENIED}\"]\nlistener_directory = \"{}\"\nlistener_template = \"{}\"\n",
        ports.admin,
        lds_dir.display(),
        template.display()
    );
    // A configured certificate proven by TLS-ALPN-01 only: its own chain in
    // the rendered listener must not swallow the CA's acme-tls/1 handshake.
    let alpn = format!(
        "[resolvers.alpn]\nca_server = \"{}\"\nca_certificate = \"{}\"\ntls_challenge = {{}}\n\n{}",
        pebble.directory_url(),
        pebble.minica.root_pem_path.display(),
        certificate("alpn", &[ALPN], "alpn"),
    );
    let covered = format!(
        "[resolvers.dns]\nca_server = \"{}\"\nca_certificate = \"{}\"\n\n[resolvers.dns.dns_challenge.exec]\n\
         program = \"/bin/false\"\n\n{}",
        pebble.directory_url(),
        pebble.minica.root_pem_path.display(),
        certificate("covered", &[COVERED], "dns"),
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &format!("{discover}\n{alpn}\n{covered}"));
    // The sidecar first: it writes the listener file Envoy needs to start.
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
    eventually(Duration::from_secs(10), || async {
        if lds_dir.join("listeners.yaml").exists() {
            Ok(())
        } else {
            Err("no listener file".to_owned())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    let _envoy = Envoy::start(dir, &paths(&read("envoy/envoy-discovery.yaml"), &bootstrap_keys), ports.admin).await;

    // The name in the routes is discovered, issued and served (Pebble-verified).
    let pebble_root = pebble.root_pem().await;
    let https = ("127.0.0.1", ports.https);
    let served = |sni: &'static str| {
        let verified = tls_config(&pebble_root, &[]);
        async move { tls_leaf(verified, https, sni).await }
    };
    eventually(Duration::from_secs(90), || served(FIRST)).await.unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    let drained_before = envoy_stat(ports.admin, "listener_manager.total_filter_chains_draining").await;
    let mut kept = KeptAlive::open(tls_config(&pebble_root, &[]), https, FIRST).await;
    assert_eq!(kept.get("/").await, Ok(200));

    // A new virtual host (two names) and a denied one appear in the routes.
    write_routes(&routes_dir, &[&[FIRST], &[NEW, WWW], &[DENIED], &[COVERED], &["*"]]);
    let der =
        eventually(Duration::from_secs(90), || served(NEW)).await.unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert_eq!(
        sans(&der),
        vec![format!("DNSName({NEW})"), format!("DNSName({WWW})")],
        "one certificate for the virtual host"
    );
    eventually(Duration::from_secs(10), || served(WWW)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(envoy_stat(ports.admin, "listener_manager.total_filter_chains_draining").await, drained_before);
    assert_eq!(kept.get("/").await, Ok(200), "a connection to the first name survived the listener update");

    // The denied name: never ordered, no chain in Envoy, said once in the log.
    let log = sidecar.tail();
    assert!(
        log.lines().any(|l| l.contains("discovered name not ordered") && l.contains(DENIED) && l.contains("denied by")),
        "{log}"
    );
    let whole_log = std::fs::read_to_string(dir.join("proxy-acme.log")).unwrap_or_default();
    assert!(whole_log.contains(NEW), "not the sidecar's log");
    assert!(
        !whole_log.lines().any(|l| l.contains("discovered name not ordered") && l.contains("covered.discover.test")),
        "a name a configured certificate has was reported as not ordered:\n{log}"
    );
    assert!(pebble.pebble.tail().contains(NEW), "Pebble's log names what it validated");
    assert!(!pebble.pebble.tail().contains(DENIED), "Pebble saw the denied name:\n{}", pebble.pebble.tail());
    assert!(tls_leaf(tls_config_unverified(), https, DENIED).await.is_err(), "Envoy has no chain for the denied name");
    let (code, certs, _) = run_cli(dir, &["certs"]);
    assert_eq!(code, 0);
    assert!(certs.contains(FIRST) && certs.contains(NEW) && !certs.contains(DENIED), "{certs}");

    // FIRST leaves the routes: after the grace period it is no longer managed,
    // and its files stay in the store.
    write_routes(&routes_dir, &[&[NEW, WWW], &["*"]]);
    eventually(Duration::from_secs(30), || async {
        let (_, certs, _) = run_cli(dir, &["certs"]);
        if certs.contains(FIRST) {
            Err(certs)
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("still managed: {e}"));
    assert!(dir.join("state/certificates").join(FIRST).join("live/fullchain.pem").exists());
    assert!(sidecar.tail().contains("grace period over"));

    // The TLS-ALPN-01 certificate: its first order ran before Envoy was up
    // (the sidecar writes the listener Envoy starts from) and backs off for
    // about a minute; the next one is validated through its own chain.
    eventually(Duration::from_secs(120), || served(ALPN))
        .await
        .unwrap_or_else(|e| panic!("TLS-ALPN-01 through the discovery listener: {e}\n{}", sidecar.tail()));
    assert!(
        envoy_stat(ports.admin, "tcp.acme_tls_alpn.downstream_cx_total").await >= 1,
        "the CA never reached the sidecar"
    );
    sidecar.assert_running();

    // A restart keeps the listener as it is: no filter chain drained (the
    // file was written with the configured certificates alone, then again
    // with the discovered ones: Envoy drained those chains every restart).
    let drained_before = envoy_stat(ports.admin, "listener_manager.total_filter_chains_draining").await;
    let updates_before = envoy_stat(ports.admin, "listener_manager.listener_in_place_updated").await;
    sidecar.kill();
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
    eventually(Duration::from_secs(20), || async {
        let (_, certs, _) = run_cli(dir, &["certs"]);
        if certs.contains(NEW) {
            Ok(())
        } else {
            Err(certs)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the discovered certificate is back after the restart: {e}"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sidecar.tail().contains("listener file kept until the first discovery round"), "{}", sidecar.tail());
    assert_eq!(envoy_stat(ports.admin, "listener_manager.total_filter_chains_draining").await, drained_before);
    assert_eq!(envoy_stat(ports.admin, "listener_manager.listener_in_place_updated").await, updates_before);
    eventually(Duration::from_secs(10), || served(NEW)).await.unwrap_or_else(|e| panic!("{e}"));
    sidecar.assert_running();
}

fn run_cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(proxy_acme_bin())
        .args(args)
        .arg("--config")
        .arg(dir.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}
