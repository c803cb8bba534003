//! An upgrade: today's daemon started on a file store the previous release
//! wrote (`tests/fixtures/store-79c2d64`, see its README) serves the stored
//! certificate at once, through file SDS, without ordering (its CA is not
//! even reachable), and `certs` shows it valid.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use proxy_acme_e2e::*;

/// The fixture's certificate.
const SERIAL: &str = "6602becf8cb17d0eb982ae286827ae754012096d";

/// Copies the fixture tree (the `live` symlink as a symlink) with the modes
/// the release wrote: 0700 directories, 0600 keys, 0644 certificates.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten() {
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap_or_else(|e| panic!("{e}"));
        if kind.is_symlink() {
            let link = std::fs::read_link(&source).unwrap_or_else(|e| panic!("{e}"));
            std::os::unix::fs::symlink(link, &target).unwrap_or_else(|e| panic!("{e}"));
        } else if kind.is_dir() {
            copy_store(&source, &target);
        } else {
            std::fs::copy(&source, &target).unwrap_or_else(|e| panic!("{e}"));
            let mode = if entry.file_name() == "privkey.pem" { 0o600 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_daemon_serves_what_the_previous_release_stored() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    copy_store(&workspace_root().join("tests/fixtures/store-79c2d64"), &d.join("state"));
    let (http, ops, closed) = (free_port(), free_port(), free_port());
    let config = format!(
        "[storage]\ndirectory = \"{d}/state\"\n[listen]\nhttp = \"127.0.0.1:{http}\"\nops = \"127.0.0.1:{ops}\"\n\
         [envoy]\nsds_directory = \"{d}/sds\"\n[admin]\nsocket = \"{d}/admin.sock\"\n\
         [resolvers.le]\nca_server = \"https://127.0.0.1:{closed}/dir\"\nhttp_challenge = {{}}\n\
         [[certificates]]\nname = \"www\"\ndomains = [\"upgrade.test\", \"www.upgrade.test\"]\nresolver = \"le\"\n",
        d = d.display(),
    );
    std::fs::create_dir_all(d.join("sds")).unwrap_or_else(|e| panic!("{e}"));
    let mut sidecar = start_sidecar(d, &config);
    let secret = d.join("sds/www/secret.json");
    let served = eventually(Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&secret).map_err(|e| e.to_string())?;
        let pem = text.split("-----BEGIN CERTIFICATE-----").nth(1).ok_or("no certificate yet")?;
        let pem = format!("-----BEGIN CERTIFICATE-----{}", pem.split("-----END CERTIFICATE-----").next().unwrap_or(""));
        let pem = pem.replace("\\n", "\n") + "-----END CERTIFICATE-----\n";
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let cert = parsed.parse_x509().map_err(|e| e.to_string())?;
        let serial = cert.raw_serial_as_string().replace(':', "");
        (serial == SERIAL).then_some(()).ok_or(format!("serving {serial}"))
    })
    .await;
    served.unwrap_or_else(|e| panic!("the stored certificate is not served: {e}\n{}", sidecar.tail()));
    let out = std::process::Command::new(proxy_acme_bin())
        .args(["certs", "--config"])
        .arg(d.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let certs = String::from_utf8_lossy(&out.stdout);
    assert!(certs.contains(SERIAL) && certs.contains("valid until 2036-"), "{certs}");
    assert!(!d.join("state/certificates/www/PENDING").exists(), "nothing was ordered");
    sidecar.assert_running();
}
