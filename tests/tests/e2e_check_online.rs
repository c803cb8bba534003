//! `proxy-acme check --online` against a real Pebble that requires EAB: one
//! line per check, `FAIL` with the reason and exit 1 for a resolver without
//! EAB, a profile the CA does not offer and a CA nobody answers for; exit 0
//! once the configuration is right.

use std::process::Command;

use proxy_acme_e2e::*;

const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

fn check_online(dir: &std::path::Path, config: &str) -> (i32, String) {
    let path = dir.join("proxy-acme.toml");
    write(&path, config);
    let out = Command::new(proxy_acme_bin())
        .args(["check", "--online", "--config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_says_what_the_ca_needs_and_fails_until_it_is_given() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let pebble = Pebble::start_with(
        dir,
        free_port(),
        free_port(),
        &PebbleOptions { eab_keys: vec![("kid-1".into(), HMAC.into())], ..PebbleOptions::default() },
    );
    std::fs::create_dir_all(dir.join("state")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(dir.join("state"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));
    let common = format!(
        "[storage]\ndirectory = \"{state}\"\n[envoy]\nsds_socket = \"{d}/sds.sock\"\n[admin]\nsocket = \"{d}/admin.sock\"\n",
        state = dir.join("state").display(),
        d = dir.display()
    );
    let resolver = |name: &str, extra: &str| {
        format!(
            "[resolvers.{name}]\nca_server = \"{}\"\nca_certificate = \"{}\"\nhttp_challenge = {{}}\n{extra}\n",
            pebble.directory_url(),
            pebble.minica.root_pem_path.display()
        )
    };
    let gone_port = free_port();
    let wrong = format!(
        "{common}{}{}[resolvers.gone]\nca_server = \"https://127.0.0.1:{gone_port}/dir\"\nhttp_challenge = {{}}\n\n\
         [[certificates]]\nname = \"a\"\ndomains = [\"a.test\"]\nresolver = \"noeab\"\n",
        resolver("noeab", ""),
        resolver(
            "badprofile",
            &format!("profile = \"no-such-profile\"\neab = {{ kid = \"kid-1\", hmac_key = \"{HMAC}\" }}")
        ),
    );
    let (code, out) = check_online(dir, &wrong);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL ca:noeab: the CA requires external account binding: set [resolvers.noeab.eab]"),
        "{out}"
    );
    assert!(out.contains("FAIL ca:badprofile: profile 'no-such-profile' is not offered"), "{out}");
    assert!(out.contains(&format!("FAIL ca:gone: https://127.0.0.1:{gone_port}/dir:")), "{out}");
    assert!(out.contains("hint: nothing listens at that address"), "{out}");
    assert!(out.contains("ok   store: opened and written"), "{out}");
    assert!(out.contains("ok   admin.socket:"), "{out}");

    let right = format!(
        "{common}{}[[certificates]]\nname = \"a\"\ndomains = [\"a.test\"]\nresolver = \"good\"\n",
        resolver("good", &format!("eab = {{ kid = \"kid-1\", hmac_key = \"{HMAC}\" }}")),
    );
    let (code, out) = check_online(dir, &right);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok   ca:good: {} answers", pebble.directory_url())), "{out}");
    assert!(out.contains("ok   ca:good: renewal information (ARI): "), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

/// The DNS provider's credentials, tried with a read-only call against a
/// real PowerDNS: the zone of each certificate's names is found with the
/// right key; a wrong key is a FAIL naming the provider and the 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_tries_the_dns_providers_credentials() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let pdns = PowerDns::start(dir, "online.test").await;
    let pebble = Pebble::start_with(dir, free_port(), free_port(), &PebbleOptions::default());
    std::fs::create_dir_all(dir.join("state")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(dir.join("state"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = |key: &str| {
        format!(
            "[storage]\ndirectory = \"{state}\"\n[envoy]\nsds_socket = \"{d}/sds.sock\"\n[admin]\nsocket = \"{d}/admin.sock\"\n\
             [resolvers.dns]\nca_server = \"{ca}\"\nca_certificate = \"{root}\"\n\
             [resolvers.dns.dns_challenge.pdns]\napi_url = \"{api}\"\napi_key = \"{key}\"\n\n\
             [[certificates]]\nname = \"w\"\ndomains = [\"*.online.test\", \"online.test\", \"www.online.test\"]\nresolver = \"dns\"\n",
            state = dir.join("state").display(),
            d = dir.display(),
            ca = pebble.directory_url(),
            root = pebble.minica.root_pem_path.display(),
            api = pdns.api_url,
        )
    };
    let (code, out) = check_online(dir, &config(&pdns.api_key));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   dns:dns: pdns: credentials accepted; _acme-challenge.online.test. is in zone online.test."),
        "{out}"
    );
    assert!(out.contains("_acme-challenge.www.online.test. is in zone online.test."), "{out}");
    assert_eq!(
        out.matches("ok   dns:dns:").count(),
        2,
        "one line per record name (the wildcard shares the apex's): {out}"
    );

    let (code, out) = check_online(dir, &config("not-the-key"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL dns:dns: _acme-challenge.online.test.: pdns:") && out.contains("401"), "{out}");
}
