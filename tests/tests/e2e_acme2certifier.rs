//! A second, independent ACME server: acme2certifier 0.46.3 (its WSGI
//! application, SQLite DB handler and openssl CA handler on an issuing CA the
//! test generates; tests/src/a2c.rs). Its HTTP-01 validation goes to a
//! real Envoy on the shipped envoy/envoy.yaml with the built wasm filter
//! (its port 80 mapped to Envoy's HTTP listener), the sidecar orders and pushes the certificate over SDS, Envoy serves it
//! and it chains to acme2certifier's issuing CA; ARI; `proxy-acme revoke`
//! is accepted: the serial is on acme2certifier's CRL. TLS-ALPN-01 on
//! Envoy's TLS port, DNS-01 (a wildcard) through the `exec` provider into
//! acme2certifier's DNS, EAB, and an account without `email` (refused).
//!
//! `A2C_KEEP=1` keeps each test's temp dir (its path is printed) with every
//! component's log.

use std::path::Path;
use std::time::Duration;

use proxy_acme_e2e::stack::certificate;
use proxy_acme_e2e::*;
use x509_parser::prelude::{FromDer, X509Certificate};

const DOMAIN: &str = "a2c.proxy-acme.test";
/// acme2certifier requires a contact, one its pattern takes
/// (`user@dom.tld`, a domain label of 3 characters or more).
const EMAIL: &str = "email = \"ops@proxy-acme.test\"\n";

/// acme2certifier, Envoy and the sidecar in one temp dir.
struct A2cStack {
    ports: StackPorts,
    a2c: A2c,
    envoy: Envoy,
    sidecar: Proc,
    config_path: std::path::PathBuf,
    domain: String,
    _app: tokio::task::JoinHandle<()>,
    _tmp: tempfile::TempDir,
}

impl A2cStack {
    /// Everything for one certificate `demo` on `domain`.
    async fn start(options: &A2cOptions, resolver_body: &str, domain: &str) -> Self {
        Self::start_for(options, |_| resolver_body.to_owned(), &[domain]).await
    }

    /// Everything for one certificate `demo` on `domains` (the first is the
    /// SNI [`Self::served_leaf`] asks for), with a resolver body that may
    /// use acme2certifier's ports.
    async fn start_for(options: &A2cOptions, resolver_body: impl FnOnce(&A2c) -> String, domains: &[&str]) -> Self {
        let mut tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        tmp.disable_cleanup(std::env::var_os("A2C_KEEP").is_some());
        let dir = tmp.path().to_owned();
        eprintln!("a2c stack in {}", dir.display());
        let ports = StackPorts::free();
        let a2c = A2c::start_with(&dir, ports.http, ports.https, options);
        let app = start_echo_app(ports.app).await;
        let envoy = Envoy::start(&dir, &shipped_envoy_config(&ports, &dir.join("sds.sock")), ports.admin).await;
        let config = a2c.sidecar_config(&dir, &ports, &resolver_body(&a2c), &certificate("demo", domains, "a2c"));
        let mut sidecar = start_sidecar(&dir, &config);
        wait_for_port(ports.sidecar, Duration::from_secs(30), &mut sidecar);
        Self {
            ports,
            a2c,
            envoy,
            sidecar,
            config_path: dir.join("proxy-acme.toml"),
            domain: domains[0].to_owned(),
            _app: app,
            _tmp: tmp,
        }
    }

    /// Waits for Envoy to serve, for the domain, a certificate that chains
    /// to acme2certifier's issuing CA (and no other) and is issued by it.
    async fn served_leaf(&mut self) -> Vec<u8> {
        let tls = tls_config(&self.a2c.issuing_ca_pem, &[]);
        let (https, domain) = (self.ports.https, self.domain.clone());
        match eventually(Duration::from_secs(120), || tls_leaf(tls.clone(), ("127.0.0.1", https), &domain)).await {
            Ok(leaf) => {
                let (_, cert) = X509Certificate::from_der(&leaf).unwrap_or_else(|e| panic!("{e}"));
                let ca_der = self.a2c.issuing_ca_der();
                let (_, ca) = X509Certificate::from_der(&ca_der).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw(), "served leaf's issuer: {}", cert.issuer());
                assert!(sans(&leaf).contains(&format!("DNSName({domain})")), "served SANs: {:?}", sans(&leaf));
                leaf.to_vec()
            }
            Err(e) => panic!(
                "Envoy never served an acme2certifier certificate: {e}\n--- sidecar\n{}\n--- acme2certifier\n{}\n--- \
                 envoy\n{}",
                self.sidecar.tail(),
                self.a2c.proc.tail(),
                self.envoy.proc.tail()
            ),
        }
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_with(&self.config_path, args)
    }

    /// `proxy-acme ARGS --config CONFIG`.
    fn cli_with(&self, config: &Path, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(proxy_acme_bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap_or_else(|e| panic!("run proxy-acme: {e}"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme2certifier_issues_over_http01_through_envoy_and_accepts_the_revocation() {
    let mut stack = A2cStack::start(&A2cOptions::default(), &format!("{EMAIL}http_challenge = {{}}"), DOMAIN).await;

    // 1. Envoy serves, for DOMAIN, a leaf issued by acme2certifier's CA
    // (verified against that CA alone), with DOMAIN among its names.
    let leaf = stack.served_leaf().await;
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap_or_else(|e| panic!("{e}"));
    let serial = cert.raw_serial_as_string();

    // acme2certifier fetched the HTTP-01 answer itself (from Envoy).
    let a2c_log = std::fs::read_to_string(&stack.a2c.proc.log).unwrap_or_default();
    let fetch = format!("Helper.url_get_dns_pinned(host={DOMAIN}, path=/.well-known/acme-challenge/");
    assert!(a2c_log.contains(&fetch), "no HTTP-01 fetch in acme2certifier's log:\n{}", stack.a2c.proc.tail());

    // 2. The stored chain is the leaf and acme2certifier's CA.
    let live = stack._tmp.path().join("state/certificates/demo/live");
    let fullchain = std::fs::read_to_string(live.join("fullchain.pem")).unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_chain(&stack.a2c.issuing_ca_pem, &fullchain, DOMAIN);
    assert!(verified.is_ok(), "stored fullchain: {verified:?}\n{fullchain}");

    // 3. ARI: the sidecar asked acme2certifier's renewalInfo for the new
    // certificate and took its window.
    let asked = eventually(Duration::from_secs(20), || async {
        let log = std::fs::read_to_string(&stack.a2c.proc.log).unwrap_or_default();
        let sidecar = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
        if log.contains("\"GET /acme/renewal-info/")
            && log.contains("'suggestedWindow'")
            && sidecar.contains("ARI window")
        {
            Ok(())
        } else {
            Err("no renewalInfo answered and taken yet".to_owned())
        }
    })
    .await;
    assert_eq!(asked, Ok(()), "{}", stack.sidecar.tail());

    // 4. A forced renewal: a new serial, served by Envoy. The sidecar's order
    // names the old certificate in `replaces` (RFC 9773); acme2certifier
    // 0.46.3 ignores the field and leaves it out of the order it returns,
    // which the ACME client takes as a refusal, so the sidecar orders again
    // without it (docs/ca-compatibility.md says so: if this changes, update
    // that row).
    let (code, out, err) = stack.cli(&["renew", "demo", "--force"]);
    assert_eq!(code, 0, "forced renewal failed: {out}{err}\n--- acme2certifier\n{}", stack.a2c.proc.tail());
    let tls = tls_config(&stack.a2c.issuing_ca_pem, &[]);
    let https = stack.ports.https;
    let renewed = eventually(Duration::from_secs(30), || async {
        let der = tls_leaf(tls.clone(), ("127.0.0.1", https), DOMAIN).await?;
        let renewed = serial_of(&der);
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
        if cert.raw_serial_as_string() == serial {
            Err(format!("still serving {renewed}"))
        } else {
            Ok(cert.raw_serial_as_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- sidecar\n{}", stack.sidecar.tail()));
    let sidecar_log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(sidecar_log.contains("the CA did not take `replaces`; ordering without it"), "{}", stack.sidecar.tail());
    // The order that exists is logged as what it is: without `replaces`.
    let created = sidecar_log.lines().rev().find(|l| l.contains("order created")).unwrap_or_default();
    assert!(created.contains("replaces=false"), "{created}");
    let serial = renewed;

    // 5. Revocation: acme2certifier accepts it and puts the serial on its CRL.
    let (code, out, err) = stack.cli(&["revoke", "demo", "--reason", "4"]);
    assert_eq!(code, 0, "revoke failed: {out}{err}\n--- acme2certifier\n{}", stack.a2c.proc.tail());
    let crl_serials = crl_serials(&stack.a2c.cert_save_path.parent().unwrap_or(Path::new("/")).join("crl.pem"));
    assert!(
        crl_serials.iter().any(|s| s.eq_ignore_ascii_case(&serial)),
        "serial {serial} not on acme2certifier's CRL: {crl_serials:?}"
    );
    stack.sidecar.assert_running();
}

/// The serials (hex, `:`-separated as x509-parser prints them) on a PEM CRL.
fn crl_serials(path: &Path) -> Vec<String> {
    use x509_parser::prelude::CertificateRevocationList;
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, crl) = CertificateRevocationList::from_der(&pem.contents).unwrap_or_else(|e| panic!("{e}"));
    crl.iter_revoked_certificates()
        .map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme2certifier_validates_tls_alpn01_on_envoy_tls_port() {
    let mut stack =
        A2cStack::start(&A2cOptions::default(), &format!("{EMAIL}tls_challenge = {{}}"), "alpn.a2c.proxy-acme.test")
            .await;
    stack.served_leaf().await;
    let log = std::fs::read_to_string(&stack.a2c.proc.log).unwrap_or_default();
    assert!(
        log.contains("'type': 'tls-alpn-01', 'status': 'valid'"),
        "no valid tls-alpn-01 challenge:\n{}",
        stack.a2c.proc.tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme2certifier_with_eab_binds_the_account_to_the_kid() {
    const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let options = A2cOptions { eab_keys: vec![("kid-a2c".into(), HMAC.into())], ..A2cOptions::default() };
    let body = format!("{EMAIL}http_challenge = {{}}\neab = {{ kid = \"kid-a2c\", hmac_key = \"{HMAC}\" }}");
    let mut stack = A2cStack::start(&options, &body, "eab.a2c.proxy-acme.test").await;
    stack.served_leaf().await;
    let sidecar = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(sidecar.contains("eab=true"), "{}", stack.sidecar.tail());
    let log = std::fs::read_to_string(&stack.a2c.proc.log).unwrap_or_default();
    assert!(log.contains("'eab_kid': 'kid-a2c'"), "the account was not bound to kid-a2c:\n{}", stack.a2c.proc.tail());

    // check --online reads acme2certifier's directory: externalAccountRequired
    // (given here), renewalInfo; without the eab it says what to set.
    let (code, out, err) = stack.cli(&["check", "--online"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok   ca:a2c: renewal information (ARI): "), "{out}");
    let config = std::fs::read_to_string(&stack.config_path).unwrap_or_else(|e| panic!("{e}"));
    let no_eab = stack._tmp.path().join("no-eab.toml");
    write(&no_eab, &config.replace(&format!("eab = {{ kid = \"kid-a2c\", hmac_key = \"{HMAC}\" }}"), ""));
    let (code, out, err) = stack.cli_with(&no_eab, &["check", "--online"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL ca:a2c: the CA requires external account binding: set [resolvers.a2c.eab]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme2certifier_refuses_an_account_without_contact_and_the_sidecar_says_so() {
    let stack = A2cStack::start(&A2cOptions::default(), "http_challenge = {}", "nocontact.a2c.proxy-acme.test").await;
    let log = || std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    let failed = eventually(Duration::from_secs(30), || async {
        log()
            .lines()
            .find(|l| l.contains("order failed"))
            .map(str::to_owned)
            .ok_or_else(|| "no failed order yet".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.sidecar.tail()));
    assert!(failed.contains("Contact information is missing"), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme2certifier_validates_dns01_for_a_wildcard_through_its_dns_servers() {
    const APEX: &str = "dns.a2c.proxy-acme.test";
    let body = |a2c: &A2c| {
        // The exec provider's hook: TXT records in acme2certifier's DNS.
        let script = a2c.config_path.with_file_name("dns-hook.py");
        write(
            &script,
            &format!(
                "#!/usr/bin/env python3\nimport json, sys, urllib.request\n\
                 action, fqdn, value = sys.argv[1:4]\n\
                 path, body = ('/set-txt', {{'host': fqdn, 'value': value}}) if action == 'present' else \
                 ('/clear-txt', {{'host': fqdn}})\n\
                 req = urllib.request.Request('http://127.0.0.1:{port}' + path, data=json.dumps(body).encode(), \
                 method='POST')\n\
                 urllib.request.urlopen(req, timeout=10)\n",
                port = a2c.challtestsrv_management,
            ),
        );
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        format!(
            "{EMAIL}\n[resolvers.a2c.dns_challenge]\ncheck_all_nameservers = false\nresolvers = [\"127.0.0.1:{}\"]\n\
             timeout_secs = 30\ninterval_secs = 1\n[resolvers.a2c.dns_challenge.exec]\nprogram = \"{}\"\n",
            a2c.dns_port,
            script.display()
        )
    };
    let wildcard = format!("*.{APEX}");
    let mut stack = A2cStack::start_for(&A2cOptions::default(), body, &[APEX, &wildcard]).await;
    let leaf = stack.served_leaf().await;
    assert!(sans(&leaf).contains(&format!("DNSName({wildcard})")), "served SANs: {:?}", sans(&leaf));
    let log = std::fs::read_to_string(&stack.a2c.proc.log).unwrap_or_default();
    assert!(
        log.contains("'type': 'dns-01', 'status': 'valid'"),
        "no valid dns-01 challenge:\n{}",
        stack.a2c.proc.tail()
    );
}

/// acme2certifier marks a failed challenge's authorization invalid and
/// leaves the order pending: the poll only times out. The sidecar then
/// looks at the authorizations and says which name failed, not "timed
/// out". (The DNS-01 hook here writes nothing; the propagation check is
/// off, so the CA is the first to look.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_left_pending_by_acme2certifier_names_the_authorization() {
    const NAME: &str = "nothing.a2c.proxy-acme.test";
    let body = |_: &A2c| {
        format!(
            "{EMAIL}\n[resolvers.a2c.dns_challenge]\ndisable_checks = true\n[resolvers.a2c.dns_challenge.exec]\n\
             program = \"/bin/true\"\n"
        )
    };
    let stack = A2cStack::start_for(&A2cOptions::default(), body, &[NAME]).await;
    let log = || std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    let failed = eventually(Duration::from_secs(180), || async {
        log()
            .lines()
            .find(|l| l.contains("order failed"))
            .map(str::to_owned)
            .ok_or_else(|| "no failed order yet".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.sidecar.tail()));
    assert!(failed.contains(&format!("authorization for {NAME} is Invalid")), "{failed}");
    assert!(!failed.contains("timed out waiting for an order update"), "{failed}");
}
