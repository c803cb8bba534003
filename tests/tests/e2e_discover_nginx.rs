//! Names from nginx's own configuration, end to end with a real nginx: the
//! sidecar reads `nginx -T`, orders a certificate for each TLS `server`
//! block, and nginx serves it through the by-name links
//! (`ssl_certificate .../by-name/$ssl_server_name/...`, the pattern
//! docs/discovery.md recommends), so a `server_name` added with
//! `nginx -s reload` gets its certificate with no other step.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proxy_acme_e2e::*;

const FIRST: &str = "first.ngx.test";
const NEW: &str = "new.ngx.test";
const WWW: &str = "www.new.ngx.test";

/// docs/discovery.md's server block (by-name links with `$ssl_server_name`)
/// with this test's port, names and directory, and a location to answer.
fn site(ports: &StackPorts, certs: &Path, names: &str) -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/discovery.md")).unwrap_or_else(|e| panic!("{e}"));
    let block =
        doc.split("```nginx\n").nth(1).and_then(|b| b.split("```").next()).unwrap_or_else(|| panic!("no nginx block"));
    let block = render(
        block,
        &[
            ("listen 443 ssl;", format!("listen 127.0.0.1:{} ssl;", ports.https)),
            ("server_name new.example.com www.new.example.com;", format!("server_name {names};")),
            ("/etc/nginx/proxy-acme", certs.display().to_string()),
        ],
    );
    let end = block.rfind('}').unwrap_or_else(|| panic!("no closing brace"));
    format!("{}    location / {{ return 200 \"ok\\n\"; }}\n}}\n", &block[..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_name_added_with_a_reload_gets_its_certificate() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(dir, ports.http, ports.https, &PebbleOptions::default());
    let (certs, sites, conf) = (dir.join("certs"), dir.join("sites"), dir.join("nginx.conf"));
    std::fs::create_dir_all(&sites).unwrap_or_else(|e| panic!("{e}"));
    write(&sites.join("first.conf"), &site(&ports, &certs, FIRST));
    let nginx_conf = format!(
        "{}http {{\n{}server {{\n    listen 127.0.0.1:{};\n    server_name _;\n    \
         location ^~ /.well-known/acme-challenge/ {{ proxy_pass http://127.0.0.1:{}; proxy_set_header Host $host; }}\n}}\n\
         include {}/*.conf;\n}}\n",
        Nginx::preamble(dir),
        Nginx::http_paths(dir),
        ports.http,
        ports.sidecar,
        sites.display()
    );
    let _nginx = Nginx::start(dir, &nginx_conf, ports.http);
    let (d, c) = (dir.display(), conf.display());
    let tail = format!(
        "[nginx]\ndirectory = \"{}\"\npid_file = \"{d}/nginx.pid\"\ncheck_command = [\"nginx\", \"-t\", \"-q\", \"-p\", \"{d}\", \"-c\", \"{c}\"]\nreload_delay_ms = 100\n\n\
         [discover]\nresolver = \"pebble\"\nnginx_command = [\"nginx\", \"-T\", \"-p\", \"{d}\", \"-c\", \"{c}\"]\ninterval_secs = 1\n",
        certs.display()
    );
    let config = sidecar_config(dir, &ports, &pebble, "", &tail);
    let mut sidecar = start_sidecar(dir, &config);
    wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);

    let root = pebble.root_pem().await;
    let https = ("127.0.0.1", ports.https);
    let served = |sni: &'static str| {
        let verified = tls_config(&root, &[]);
        async move { tls_leaf(verified, https, sni).await }
    };
    eventually(Duration::from_secs(90), || served(FIRST)).await.unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));

    // A new server block, and nginx reloaded by its operator.
    write(&sites.join("new.conf"), &site(&ports, &certs, &format!("{NEW} {WWW}")));
    let reload = Command::new("nginx").args(["-s", "reload", "-p"]).arg(dir).arg("-c").arg(&conf).output();
    assert!(reload.as_ref().is_ok_and(|o| o.status.success()), "{reload:?}");
    let der =
        eventually(Duration::from_secs(90), || served(NEW)).await.unwrap_or_else(|e| panic!("{e}\n{}", sidecar.tail()));
    assert_eq!(sans(&der), vec![format!("DNSName({NEW})"), format!("DNSName({WWW})")]);
    let www = eventually(Duration::from_secs(10), || served(WWW)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(serial_of(&www), serial_of(&der), "the second name is served the same certificate");
    sidecar.assert_running();
}
