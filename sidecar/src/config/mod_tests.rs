use super::*;
use crate::cert::KeyType;
use crate::dns::rfc2136::Rfc2136;
use crate::store::StoreKind;

const VALID: &str = r#"
[storage]
directory = "/tmp/state"

[resolvers.le]
email = "ops@example.com"
ca_server = "https://acme.example/dir"
http_challenge = {}

[[certificates]]
name = "web"
domains = ["example.com", "www.example.com"]
resolver = "le"
"#;

fn invalid(text: &str) -> String {
    let config: Config = match text.parse() {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match config.validate() {
        Ok(()) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn valid_config_gets_defaults() {
    let config: Config = VALID.parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(config.validate().is_ok());
    let le = &config.resolvers["le"];
    assert_eq!(le.key_type, KeyType::Ec256);
    assert_eq!(config.listen.http, SocketAddr::from(([127, 0, 0, 1], 8555)));
    assert_eq!(config.envoy.sds_socket.as_deref(), Some(Path::new("/run/proxy-acme/sds.sock")));
    assert!(config.envoy.placeholder);
}

#[test]
fn defaults_to_lets_encrypt() {
    let text = VALID.replace("ca_server = \"https://acme.example/dir\"\n", "");
    let config: Config = text.parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.resolvers["le"].ca_server, LETS_ENCRYPT_PRODUCTION);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (VALID.replace("\"www.example.com\"", "\"www..example.com\""), "certificates[0].domains[1]"),
        (VALID.replace("\"www.example.com\"", "\"*.example.com\""), "certificates[0].domains[1]"),
        (VALID.replace("resolver = \"le\"", "resolver = \"nope\""), "certificates[0].resolver"),
        (VALID.replace("name = \"web\"", "name = \"../etc\""), "certificates[0].name"),
        (VALID.replace("https://acme.example/dir", "http://acme.example/dir"), "resolvers.le.ca_server"),
        (VALID.replace("ops@example.com", "not-an-email"), "resolvers.le.email"),
        (VALID.replace("http_challenge = {}\n", ""), "resolvers.le.http_challenge"),
        (VALID.replace("domains = [\"example.com\", \"www.example.com\"]", "domains = []"), "certificates[0].domains"),
        (
            format!("{VALID}\n[[certificates]]\nname = \"web\"\ndomains = [\"a.example\"]\nresolver = \"le\"\n"),
            "certificates[1].name",
        ),
        (format!("{VALID}\n[envoy]\nsds_socket = \"\"\n"), "envoy"),
        (
            VALID.replace("http_challenge = {}", "http_challenge = {}\nchallenge_order = [\"tls-alpn-01\"]"),
            "resolvers.le.challenge_order",
        ),
        (
            VALID.replace("http_challenge = {}", "http_challenge = {}\nchallenge_order = [\"http-01\", \"http-01\"]"),
            "resolvers.le.challenge_order",
        ),
        (
            VALID.replace("http_challenge = {}", "http_challenge = {}\nchallenge_order = []"),
            "resolvers.le.challenge_order",
        ),
        (format!("{VALID}\n[nginx]\ndirectory = \"relative\"\n"), "nginx.directory"),
        (format!("{VALID}\n[nginx]\ndirectory = \"/x\"\nreload_command = []\n"), "nginx.reload_command"),
        (format!("{VALID}\n[nginx]\ndirectory = \"/x\"\nretry_secs = 0\n"), "nginx.retry_secs"),
        (format!("{VALID}\n[post_deploy]\ncommand = []\n"), "post_deploy.command"),
        (
            VALID.replace("http_challenge = {}", "http_challenge = { webroot = \"www\" }"),
            "resolvers.le.http_challenge.webroot",
        ),
    ];
    for (text, field) in cases {
        let message = invalid(&text);
        assert!(message.contains(field), "{field:?} not named in: {message}");
    }
}

#[test]
fn unknown_keys_and_bad_values_are_parse_errors_with_the_key() {
    let typo = invalid(&VALID.replace("email =", "emial ="));
    assert!(typo.contains("emial"), "{typo}");
    let key_type = invalid(&VALID.replace("http_challenge = {}", "http_challenge = {}\nkey_type = \"dsa\""));
    assert!(key_type.contains("key_type") || key_type.contains("dsa"), "{key_type}");
}

#[test]
fn load_reports_a_missing_file() {
    let err = Config::load(Path::new("/nonexistent/proxy-acme.toml")).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/proxy-acme.toml"), "{err}");
}

#[test]
fn challenge_types_are_tried_in_the_documented_order() {
    use crate::solvers::ChallengeKind::{Http01, TlsAlpn01};
    let parse = |text: &str| -> Config {
        let config: Config = text.parse().unwrap_or_else(|e| panic!("{e}"));
        config.validate().unwrap_or_else(|e| panic!("{e}"));
        config
    };
    assert_eq!(parse(VALID).resolvers["le"].challenges(), vec![Http01]);
    let both = VALID.replace("http_challenge = {}", "http_challenge = {}\ntls_challenge = {}");
    assert_eq!(parse(&both).resolvers["le"].challenges(), vec![Http01, TlsAlpn01]);
    let tls_first =
        both.replace("tls_challenge = {}", "tls_challenge = {}\nchallenge_order = [\"tls-alpn-01\", \"http-01\"]");
    assert_eq!(parse(&tls_first).resolvers["le"].challenges(), vec![TlsAlpn01, Http01]);
    let tls_only = VALID.replace("http_challenge = {}", "tls_challenge = {}");
    let config = parse(&tls_only);
    assert_eq!(config.resolvers["le"].challenges(), vec![TlsAlpn01]);
    assert_eq!(config.listen.tls_alpn.to_string(), "127.0.0.1:8556");
    let unknown = invalid(&VALID.replace("http_challenge = {}", "http_challenge = {}\nchallenge_order = [\"dns-02\"]"));
    assert!(unknown.contains("dns-02") || unknown.contains("challenge_order"), "{unknown}");
}

#[test]
fn nginx_alone_is_a_deployment_target() {
    let text = format!("{VALID}\n[envoy]\nsds_socket = \"\"\n\n[nginx]\ndirectory = \"/etc/nginx/proxy-acme\"\n");
    let config: Config = text.parse().unwrap_or_else(|e| panic!("{e}"));
    config.validate().unwrap_or_else(|e| panic!("{e}"));
    let nginx = config.nginx.unwrap_or_else(|| panic!("no [nginx]"));
    assert_eq!(nginx.pid_file, Path::new("/run/nginx.pid"));
    assert_eq!(nginx.check_command, ["nginx", "-t", "-q"]);
    assert_eq!((nginx.reload_delay_ms, nginx.retry_secs, nginx.command_timeout_secs), (1000, 60, 30));
}

#[test]
fn dns_challenge_needs_exactly_one_provider_and_reads_secret_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secret = dir.path().join("tsig");
    std::fs::write(&secret, "c2VjcmV0\n").unwrap_or_else(|e| panic!("{e}"));
    let dns = format!(
        "{VALID}\n[resolvers.le.dns_challenge]\n[resolvers.le.dns_challenge.rfc2136]\nnameserver = \"127.0.0.1:53\"\n\
         tsig_key = \"k\"\ntsig_secret_file = \"{}\"\n",
        secret.display()
    );
    let path = dir.path().join("proxy-acme.toml");
    std::fs::write(&path, &dns).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::load_valid(&path).unwrap_or_else(|e| panic!("{e}"));
    let rfc2136 = config.resolvers["le"].dns_challenge.as_ref().and_then(|d| d.provider_settings::<Rfc2136>());
    assert_eq!(rfc2136.and_then(|r| r.tsig_secret.as_deref()), Some("c2VjcmV0"));
    assert_eq!(config.resolvers["le"].challenges(), vec![ChallengeKind::Http01, ChallengeKind::Dns01]);

    // tsig-keygen's output as it is: the key block gives name, algorithm, secret.
    std::fs::write(
        &secret,
        "key \"acme-key\" {\n\talgorithm hmac-sha512;\n\tsecret \"3FbFJ6Qp3TtdQ01Y3CLBTMrrNzf0nnrvDewglNYxSnc=\";\n};\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, dns.replace("tsig_key = \"k\"\n", "")).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::load_valid(&path).unwrap_or_else(|e| panic!("{e}"));
    let rfc2136 = config.resolvers["le"].dns_challenge.as_ref().and_then(|d| d.provider_settings::<Rfc2136>());
    let rfc2136 = rfc2136.unwrap_or_else(|| panic!("rfc2136"));
    assert_eq!(rfc2136.tsig_key.as_deref(), Some("acme-key"));
    assert_eq!(rfc2136.tsig_algorithm, "hmac-sha512");
    assert_eq!(rfc2136.tsig_secret.as_deref(), Some("3FbFJ6Qp3TtdQ01Y3CLBTMrrNzf0nnrvDewglNYxSnc="));
    // What `run` would refuse, `check` refuses: a secret that is not base64.
    std::fs::write(&secret, "not base64 at all!\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, &dns).unwrap_or_else(|e| panic!("{e}"));
    let refused = Config::load_valid(&path).map(drop).unwrap_err().to_string();
    assert!(refused.contains("resolvers.le.dns_challenge.rfc2136.tsig_secret: is not base64"), "{refused}");

    let none = format!("{VALID}\n[resolvers.le.dns_challenge]\ntimeout_secs = 5\n");
    assert!(invalid(&none).contains("resolvers.le.dns_challenge"), "{}", invalid(&none));
    let two = format!(
        "{VALID}\n[resolvers.le.dns_challenge.exec]\nprogram = \"/bin/true\"\n\
         [resolvers.le.dns_challenge.httpreq]\nendpoint = \"http://127.0.0.1:1\"\n"
    );
    assert!(invalid(&two).contains("one provider only"), "{}", invalid(&two));
    let no_token = format!("{VALID}\n[resolvers.le.dns_challenge.digitalocean]\n");
    if std::env::var_os("DO_AUTH_TOKEN").is_none() && std::env::var_os("DO_AUTH_TOKEN_FILE").is_none() {
        assert!(invalid(&no_token).contains("digitalocean.auth_token"), "{}", invalid(&no_token));
    }
    let wildcard = VALID.replace("\"www.example.com\"", "\"*.example.com\"");
    assert!(invalid(&wildcard).contains("give resolver 'le' a dns_challenge"), "{}", invalid(&wildcard));
    let with_dns = format!("{wildcard}\n[resolvers.le.dns_challenge.exec]\nprogram = \"/bin/true\"\n");
    let config: Config = with_dns.parse().unwrap_or_else(|e| panic!("{e}"));
    config.validate().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn dns_provider_errors_name_the_field_path() {
    let table = |body: &str| format!("{VALID}\n[resolvers.le.dns_challenge.cloudflare]\n{body}");
    let typo = invalid(&table("api_tokn = \"t\"\n"));
    assert!(
        typo.starts_with("line 15, column 1: resolvers.le.dns_challenge.cloudflare: unknown field `api_tokn`"),
        "{typo}"
    );
    let missing = invalid(&table("base_url = \"http://127.0.0.1:1\"\n"));
    assert!(missing.starts_with("resolvers.le.dns_challenge.cloudflare.api_token: is required"), "{missing}");
    let unknown = invalid(&format!("{VALID}\n[resolvers.le.dns_challenge.cloudflar]\napi_token = \"t\"\n"));
    assert!(unknown.contains(": resolvers.le.dns_challenge.cloudflar: "), "{unknown}");
    assert!(unknown.contains("unknown DNS provider or setting 'cloudflar'; providers: rfc2136, exec,"), "{unknown}");
    let algorithm = format!(
        "{VALID}\n[resolvers.le.dns_challenge.rfc2136]\nnameserver = \"127.0.0.1:53\"\ntsig_algorithm = \"md5\"\n"
    );
    assert!(invalid(&algorithm).starts_with("resolvers.le.dns_challenge.rfc2136.tsig_algorithm: 'md5'"));
}

/// The annotated example in docs/configuration.md, with every commented
/// option switched on, is a valid configuration: the reference cannot drift
/// from the parser.
#[test]
fn the_documented_example_with_every_option_on_is_valid() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let start = doc.find("### Annotated example").unwrap_or_else(|| panic!("no annotated example"));
    let block = &doc[start..];
    let body_start = block.find("```toml\n").map(|i| i + 8).unwrap_or_else(|| panic!("no toml block"));
    let body = &block[body_start..body_start + block[body_start..].find("```").unwrap_or(0)];
    let mut on = String::new();
    for line in body.lines() {
        let uncommented = line.strip_prefix("# ").unwrap_or(line);
        // Explanatory comments are prose; commented options are `key = value` or `[table]`.
        let is_option =
            uncommented.starts_with('[') || uncommented.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '));
        let keep = if line.starts_with("# ") { is_option } else { true };
        // One of two alternatives per key: the first wins.
        if keep && !(line.starts_with("# http_challenge") || line.starts_with("# reload_command")) {
            on.push_str(uncommented);
            on.push('\n');
        }
    }
    let config: Config = on.parse().unwrap_or_else(|e| panic!("{e}\n{on}"));
    let mut config = config;
    // The secret file the example names does not exist here.
    if let Some(dns) = config.resolvers.get_mut("letsencrypt").and_then(|r| r.dns_challenge.as_mut()) {
        if let Some(rfc2136) = dns.provider_settings_mut::<Rfc2136>() {
            rfc2136.tsig_secret_file = None;
            rfc2136.tsig_secret = Some("c2VjcmV0".into());
        }
    }
    if let Some(eab) = config.resolvers.get_mut("letsencrypt").and_then(|r| r.eab.as_mut()) {
        eab.hmac_key_file = None;
        eab.hmac_key = Some("c2VjcmV0".into());
    }
    if let Some(etcd) = config.storage.etcd.as_mut() {
        etcd.password_file = None;
        etcd.password = Some("secret".into());
        etcd.encryption_key = Some([7; 32]);
    }
    config.validate().unwrap_or_else(|e| panic!("{e}\n{on}"));
    assert!(config.nginx.is_some() && config.post_deploy.is_some() && config.envoy.sds_directory.is_some());
    assert_eq!(config.storage.store, StoreKind::Etcd);
}

#[test]
fn the_admin_api_on_tcp_needs_a_token() {
    let tcp = format!("{VALID}\n[admin]\naddress = \"127.0.0.1:8557\"\n");
    assert!(invalid(&tcp).contains("admin.token_file"), "{}", invalid(&tcp));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token = dir.path().join("token");
    let path = dir.path().join("proxy-acme.toml");
    std::fs::write(&path, format!("{tcp}token_file = \"{}\"\n", token.display())).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&token, "short\n").unwrap_or_else(|e| panic!("{e}"));
    let short = Config::load_valid(&path).map(|_| ()).unwrap_err().to_string();
    assert!(short.contains("at least 16"), "{short}");
    std::fs::write(&token, "a-long-enough-admin-token\n").unwrap_or_else(|e| panic!("{e}"));
    let config = Config::load_valid(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.admin.token.as_deref(), Some("a-long-enough-admin-token"));
}

#[test]
fn etcd_store_settings_name_the_field_at_fault() {
    let etcd = VALID.replace("[storage]\n", "[storage]\nstore = \"etcd\"\n");
    assert!(invalid(&etcd).starts_with("storage.etcd: required"), "{}", invalid(&etcd));
    let no_key = format!("{etcd}\n[storage.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n");
    assert!(invalid(&no_key).starts_with("storage.etcd.encryption_key_file: required"), "{}", invalid(&no_key));
    let bad_endpoint = format!("{etcd}\n[storage.etcd]\nendpoints = [\"127.0.0.1:2379\"]\n");
    assert!(invalid(&bad_endpoint).starts_with("storage.etcd.endpoints[0]:"), "{}", invalid(&bad_endpoint));
    let tls = format!("{etcd}\n[storage.etcd]\nendpoints = [\"https://10.0.0.1:2379\"]\n");
    assert!(invalid(&tls).starts_with("storage.etcd.ca_file:"), "{}", invalid(&tls));
    let file_with_etcd = format!("{VALID}\n[storage.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n");
    assert!(invalid(&file_with_etcd).starts_with("storage.store:"), "{}", invalid(&file_with_etcd));
    let mut good: Config = format!("{etcd}\n[storage.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let Some(settings) = good.storage.etcd.as_mut() else { panic!("no etcd settings") };
    settings.encryption_key = Some([1; 32]);
    assert_eq!(settings.prefix, "/proxy-acme/");
    assert_eq!(settings.lock_ttl_secs, 15);
    assert!(good.validate().is_ok());
    assert!(!format!("{:?}", good.storage).contains("[1, 1"), "the key is never printed");
}

#[test]
fn the_dry_run_directory_is_the_staging_twin_or_the_setting_or_the_ca_itself() {
    let resolver = |extra: &str| -> Resolver { toml::from_str(&format!("http_challenge = {{}}\n{extra}")).unwrap() };
    assert_eq!(resolver("").staging_directory(), "https://acme-staging-v02.api.letsencrypt.org/directory");
    assert_eq!(
        resolver("ca_server = \"https://dv.acme-v02.api.pki.goog/directory\"").staging_directory(),
        "https://dv.acme-v02.test-api.pki.goog/directory"
    );
    assert_eq!(resolver("ca_server = \"https://ca.internal/dir\"").staging_directory(), "https://ca.internal/dir");
    assert_eq!(
        resolver("staging_server = \"https://ca.internal/staging\"").staging_directory(),
        "https://ca.internal/staging"
    );
}
