//! acme2certifier (PyPI `acme2certifier`, 0.46.3): a second ACME server,
//! independent of Pebble, for the end-to-end suite. Its own WSGI
//! application (share/acme2certifier_wsgi.py) with the `wsgi_handler` SQLite
//! DB handler and the `openssl_ca_handler` on an issuing CA generated here,
//! served over TLS by tests/support/a2c_server.py (the sidecar accepts only
//! `https://` directories) with a server certificate for 127.0.0.1 from a
//! test root ([`MiniCa`]).
//!
//! How its validation reaches a test's Envoy: acme2certifier has no port
//! setting for challenges. HTTP-01 always fetches
//! `http://<domain>/.well-known/acme-challenge/<token>` on port 80,
//! TLS-ALPN-01 always dials port 443, DNS-01 asks the `dns_server_list`
//! addresses on port 53. So the runner maps them, for its own process only:
//! a pebble-challtestsrv answers every name with 127.0.0.1 on a free port
//! (dnspython's default port there), and connections to 127.0.0.1:80 and
//! :443 go to the test's Envoy HTTP and HTTPS ports, as Pebble's `httpPort`
//! and `tlsPort` do. (`proxy_server_list`, which could send HTTP-01 through
//! Envoy as a forward proxy, is not read by 0.46.3's challenge validators:
//! see tests/support/a2c_server.py.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::net::{free_port, wait_for_port};
use super::procs::{require, write, MiniCa, Proc};
use super::{workspace_root, StackPorts};

/// acme2certifier settings a test may change.
#[derive(Debug, Clone, Default)]
pub struct A2cOptions {
    /// External account binding required (the `json_handler` EAB handler),
    /// with these kid -> base64url HMAC keys.
    pub eab_keys: Vec<(String, String)>,
    /// The DNS server acme2certifier asks, on 127.0.0.1 at this port (a
    /// test's BIND), instead of its own pebble-challtestsrv.
    pub dns_server_port: Option<u16>,
    /// Offer and validate dns-persist-01 (`dns_persist_01_support`).
    pub dns_persist: bool,
    /// Let a dns-persist-01 record with `policy=wildcard` prove wildcards
    /// (`dns_persist_allow_policy_wildcard`).
    pub dns_persist_wildcard: bool,
    /// The issuer domain names (`[Directory] caaidentities`): the
    /// directory's `caaIdentities` and dns-persist-01's
    /// `issuer-domain-names`.
    pub caa_identities: Vec<String>,
}

/// acme2certifier on a free port, with pebble-challtestsrv as its DNS.
pub struct A2c {
    pub port: u16,
    /// The root the sidecar trusts for acme2certifier's HTTPS
    /// (`ca_certificate`).
    pub root_pem_path: PathBuf,
    /// The CA acme2certifier issues from (the openssl CA handler's
    /// `issuing_ca_cert`), PEM.
    pub issuing_ca_pem_path: PathBuf,
    pub issuing_ca_pem: String,
    /// Where the openssl CA handler keeps each certificate it issued.
    pub cert_save_path: PathBuf,
    /// The `wsgi_handler` SQLite database.
    pub db_path: PathBuf,
    pub config_path: PathBuf,
    pub proc: Proc,
    /// pebble-challtestsrv, acme2certifier's DNS (every name -> 127.0.0.1).
    pub challtestsrv: Proc,
    /// Its DNS port (TXT records for DNS-01 are read there, unless
    /// [`A2cOptions::dns_server_port`] names another server).
    pub dns_port: u16,
    /// Its management API (`/set-txt`, `/clear-txt`, ...).
    pub challtestsrv_management: u16,
    pub minica: MiniCa,
}

impl A2c {
    /// Starts it in `dir`, validating HTTP-01 on `http_port` and
    /// TLS-ALPN-01 on `tls_port` of 127.0.0.1 (in a stack: Envoy's).
    pub fn start(dir: &Path, http_port: u16, tls_port: u16) -> Self {
        Self::start_with(dir, http_port, tls_port, &A2cOptions::default())
    }

    /// Starts it with `options`.
    pub fn start_with(dir: &Path, http_port: u16, tls_port: u16, options: &A2cOptions) -> Self {
        let python = require("python3", "apt-get install python3");
        let importable =
            Command::new(&python).args(["-c", "import acme2certifier"]).output().is_ok_and(|o| o.status.success());
        assert!(
            importable,
            "acme2certifier is not installed: python3 -m pip install acme2certifier==0.46.3 (`make setup` installs \
             everything)"
        );
        let challtestsrv_bin = require("pebble-challtestsrv", "apt-get install pebble");
        let (dns_port, chall_mgmt) = (free_port(), free_port());
        let mut challtestsrv = Proc::spawn(
            "a2c-challtestsrv",
            Command::new(challtestsrv_bin)
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .arg("-dns01")
                .arg(format!("127.0.0.1:{dns_port}"))
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .arg("-management")
                .arg(format!("127.0.0.1:{chall_mgmt}")),
            dir,
        );
        wait_for_port(dns_port, Duration::from_secs(20), &mut challtestsrv);

        let minica = MiniCa::create(dir);
        let a2c = dir.join("a2c");
        let cert_save_path = a2c.join("certs");
        fs::create_dir_all(&cert_save_path).unwrap_or_else(|e| panic!("{e}"));
        let (issuing_ca_pem, issuing_ca_key) = issuing_ca();
        let issuing_ca_pem_path = a2c.join("issuing-ca.pem");
        let key_path = a2c.join("issuing-ca.key");
        write(&issuing_ca_pem_path, &issuing_ca_pem);
        write(&key_path, &issuing_ca_key);
        let db_path = a2c.join("acme_srv.db");

        let mut eab = String::new();
        if !options.eab_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> =
                options.eab_keys.iter().map(|(kid, key)| (kid.clone(), key.clone().into())).collect();
            let key_file = a2c.join("eab-keys.json");
            write(&key_file, &serde_json::Value::Object(keys).to_string());
            eab = format!(
                "[EABhandler]\neab_handler_module: acme2certifier.eabhandlers.json_handler\nkey_file: {}\n",
                key_file.display()
            );
        }
        let mut persist = String::new();
        if options.dns_persist {
            persist = format!(
                "dns_persist_01_support: True\ndns_persist_allow_policy_wildcard: {}\n",
                if options.dns_persist_wildcard { "True" } else { "False" }
            );
        }
        let mut directory = String::new();
        if !options.caa_identities.is_empty() {
            let names = serde_json::Value::from(options.caa_identities.clone());
            directory = format!("[Directory]\ncaaidentities: {names}\n");
        }
        let config = format!(
            r#"[DEFAULT]
debug: True
dns_server_list: ["127.0.0.1"]

[Nonce]
nonce_check_disable: False

[CAhandler]
handler_module: acme2certifier.cahandlers.openssl_ca_handler
issuing_ca_key: {key}
issuing_ca_cert: {ca}
issuing_ca_crl: {crl}
cert_save_path: {certs}
ca_cert_chain_list: ["{ca}"]
cert_validity_days: 30

[DBhandler]
handler_module: acme2certifier.dbhandlers.wsgi_handler
dbfile: {db}

[Certificate]
revocation_reason_check_disable: False

[Challenge]
challenge_validation_disable: False
challenge_validation_timeout: 10
{persist}
[Order]
tnauthlist_support: False

{directory}
{eab}"#,
            key = key_path.display(),
            ca = issuing_ca_pem_path.display(),
            crl = a2c.join("crl.pem").display(),
            certs = cert_save_path.display(),
            db = db_path.display(),
        );
        let config_path = a2c.join("acme_srv.cfg");
        write(&config_path, &config);

        let port = free_port();
        let mut proc = Proc::spawn(
            "acme2certifier",
            Command::new(python)
                .arg(workspace_root().join("tests/support/a2c_server.py"))
                .arg("--config")
                .arg(&config_path)
                .arg("--port")
                .arg(port.to_string())
                .arg("--cert")
                .arg(&minica.cert_path)
                .arg("--key")
                .arg(&minica.key_path)
                .arg("--dns-port")
                .arg(options.dns_server_port.unwrap_or(dns_port).to_string())
                .arg("--port-map")
                .arg(format!("80:{http_port}"))
                .arg("--port-map")
                .arg(format!("443:{tls_port}"))
                .env("PYTHONUNBUFFERED", "1"),
            dir,
        );
        wait_for_port(port, Duration::from_secs(60), &mut proc);
        Self {
            port,
            root_pem_path: minica.root_pem_path.clone(),
            issuing_ca_pem_path,
            issuing_ca_pem,
            cert_save_path,
            db_path,
            config_path,
            proc,
            challtestsrv,
            dns_port,
            challtestsrv_management: chall_mgmt,
            minica,
        }
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/directory", self.port)
    }

    /// The sidecar's config for this acme2certifier, in `dir` (its state
    /// directory, SDS and admin sockets there): the resolver `a2c` on its
    /// directory, trusting its HTTPS root, with `resolver_body` (its
    /// challenge and further options), then `certificates`.
    pub fn sidecar_config(&self, dir: &Path, ports: &StackPorts, resolver_body: &str, certificates: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let state = dir.join("state");
        fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
        format!(
            r#"
[storage]
directory = "{state}"

[listen]
http = "127.0.0.1:{sidecar}"
ops = "127.0.0.1:{ops}"
tls_alpn = "127.0.0.1:{tls_alpn}"

[envoy]
sds_socket = "{dir}/sds.sock"

[admin]
socket = "{dir}/admin.sock"

[resolvers.a2c]
ca_server = "{directory}"
ca_certificate = "{root}"
{resolver_body}

{certificates}
"#,
            state = state.display(),
            sidecar = ports.sidecar,
            ops = ports.ops,
            tls_alpn = ports.tls_alpn,
            dir = dir.display(),
            directory = self.directory_url(),
            root = self.root_pem_path.display(),
        )
    }

    /// The issuing CA certificate, DER.
    pub fn issuing_ca_der(&self) -> Vec<u8> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        CertificateDer::from_pem_slice(self.issuing_ca_pem.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", self.issuing_ca_pem_path.display()))
            .to_vec()
    }
}

/// A self-signed issuing CA (P-256): certificate and PKCS#8 key, PEM.
fn issuing_ca() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.distinguished_name.push(DnType::CommonName, "proxy-acme test acme2certifier issuing CA");
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    (cert.pem(), key.serialize_pem())
}
