//! A whole stack for one test: Pebble (+ challtestsrv), the echo app, Envoy
//! on the shipped bootstrap (or a variant of it) and the sidecar, all on
//! free ports in the test's own temp dir.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::*;

pub struct Stack {
    pub ports: StackPorts,
    pub pebble: Pebble,
    pub envoy: Envoy,
    pub sidecar: Proc,
    pub config_path: PathBuf,
    pub dir: PathBuf,
    _app: tokio::task::JoinHandle<()>,
    _tmp: tempfile::TempDir,
}

impl Stack {
    /// Starts everything; `envoy_config` may rewrite the shipped bootstrap.
    pub async fn start(
        options: &PebbleOptions,
        resolver_extra: &str,
        tail: impl FnOnce(&Pebble) -> String,
        envoy_config: impl FnOnce(String) -> String,
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ports = StackPorts::free();
        let pebble = Pebble::start_with(tmp.path(), ports.http, ports.https, options);
        Self::start_with_pebble(tmp, ports, pebble, resolver_extra, tail, envoy_config).await
    }

    /// Starts the rest around a Pebble already running in `tmp` for `ports`
    /// (a test may first have another ACME client use it).
    pub async fn start_with_pebble(
        tmp: tempfile::TempDir,
        ports: StackPorts,
        pebble: Pebble,
        resolver_extra: &str,
        tail: impl FnOnce(&Pebble) -> String,
        envoy_config: impl FnOnce(String) -> String,
    ) -> Self {
        let dir = tmp.path().to_owned();
        let app = start_echo_app(ports.app).await;
        // Envoy first, as in a pod: the CA must find the HTTP listener.
        let envoy_yaml = envoy_config(shipped_envoy_config(&ports, &dir.join("sds.sock")));
        let envoy = Envoy::start(&dir, &envoy_yaml, ports.admin).await;
        let config = sidecar_config(&dir, &ports, &pebble, resolver_extra, &tail(&pebble));
        let mut sidecar = start_sidecar(&dir, &config);
        wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
        Self { ports, pebble, envoy, sidecar, config_path: dir.join("proxy-acme.toml"), dir, _app: app, _tmp: tmp }
    }

    /// Runs `proxy-acme ARGS --config <this stack's config>`.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(proxy_acme_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    /// The leaf Envoy serves for `sni`, verified against Pebble's current root.
    pub async fn served(&self, sni: &str) -> Result<CertificateDer<'static>, String> {
        let root = self.pebble.root_pem().await;
        tls_leaf(tls_config(&root, &[]), ("127.0.0.1", self.ports.https), sni).await
    }

    /// The serial Envoy serves for `sni`, whatever it is (no verification).
    pub async fn served_serial_unverified(&self, sni: &str) -> Result<String, String> {
        let der = tls_leaf(tls_config_unverified(), ("127.0.0.1", self.ports.https), sni).await?;
        Ok(serial_of(&der))
    }

    /// Waits until Envoy serves a Pebble-verified certificate for `sni`
    /// other than `not_serial`; returns its serial.
    pub async fn wait_for_new_serial(&mut self, sni: &str, not_serial: Option<&str>, timeout: Duration) -> String {
        let result = eventually(timeout, || async {
            let der = self.served(sni).await?;
            let serial = serial_of(&der);
            if Some(serial.as_str()) == not_serial {
                Err(format!("still serving {serial}"))
            } else {
                Ok(serial)
            }
        })
        .await;
        match result {
            Ok(serial) => serial,
            Err(e) => panic!(
                "no new certificate for {sni}: {e}\n--- sidecar\n{}\n--- envoy\n{}",
                self.sidecar.tail(),
                self.envoy.proc.tail()
            ),
        }
    }

    /// An Envoy stat's value from the admin API.
    pub async fn envoy_stat(&self, name: &str) -> u64 {
        let path = format!("/stats?filter=^{name}$");
        let (_, body) = http_get(("127.0.0.1", self.ports.admin), "localhost", &path, &[]).await.unwrap_or_default();
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no stat {name} in {body:?}"))
    }
}

/// `[[certificates]]` TOML for one certificate.
pub fn certificate(name: &str, domains: &[&str], resolver: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!("[[certificates]]\nname = \"{name}\"\ndomains = [{}]\nresolver = \"{resolver}\"\n", domains.join(", "))
}

/// A further resolver on the same Pebble.
pub fn resolver(pebble: &Pebble, name: &str, extra: &str) -> String {
    format!(
        "[resolvers.{name}]\nca_server = \"{}\"\nca_certificate = \"{}\"\nhttp_challenge = {{}}\n{extra}\n",
        pebble.directory_url(),
        pebble.minica.root_pem_path.display()
    )
}

/// The shipped HTTPS listener with one SDS certificate per name instead of
/// `demo` (Envoy picks among them by SNI).
pub fn with_secrets(config: String, names: &[&str]) -> String {
    let start = config.find("            - name: demo").unwrap_or_else(|| panic!("no demo secret in envoy.yaml"));
    let end_marker = "ads: {}  # over dynamic_resources.ads_config above\n";
    let end = config[start..]
        .find(end_marker)
        .map(|i| start + i + end_marker.len())
        .unwrap_or_else(|| panic!("no SDS block"));
    let block = &config[start..end];
    let blocks: String = names.iter().map(|n| block.replacen("name: demo", &format!("name: {n}"), 1)).collect();
    format!("{}{blocks}{}", &config[..start], &config[end..])
}

/// A DNS-01 certificate `wild` for `*.<zone>` and `<zone>`, answered by the
/// authoritative server at `dns`: served by Envoy for both names (SANs as
/// ordered), checked for propagation, and its challenge records gone after.
pub async fn assert_wildcard_issued(stack: &mut Stack, zone: &str, dns: std::net::SocketAddr) {
    let below = format!("a.{zone}");
    stack.wait_for_new_serial(&below, None, Duration::from_secs(90)).await;
    let wanted = [format!("DNSName(*.{zone})"), format!("DNSName({zone})")];
    for sni in [below.as_str(), zone] {
        let der = stack.served(sni).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(sans(&der), wanted, "{sni}");
    }
    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.contains("DNS records propagated"), "no propagation check in the log:\n{log}");
    let record = format!("_acme-challenge.{zone}.");
    let empty = eventually(Duration::from_secs(10), || async {
        let values = txt_values(dns, &record).await;
        if values.is_empty() {
            Ok(())
        } else {
            Err(format!("left behind: {values:?}"))
        }
    })
    .await;
    assert_eq!(empty, Ok(()), "the challenge records must be removed");
}
