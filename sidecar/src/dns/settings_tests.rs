//! `[dns_challenge]` through the registry: names, one provider, unknown
//! keys, secrets, and every registered provider building.

use super::*;
use crate::dns::build;
use crate::dns::cloudflare::Cloudflare;

const FIELD: &str = "resolvers.le.dns_challenge";

fn parse(text: &str) -> Result<DnsChallenge, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn parsed(text: &str) -> DnsChallenge {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn an_unknown_provider_or_setting_is_refused_with_the_list_of_providers() {
    for (text, key) in [("[cloudflar]\napi_token = \"t\"\n", "cloudflar"), ("timeout = 5\n", "timeout")] {
        let err = parse(text).map(|_| ()).unwrap_err();
        assert!(err.contains(&format!("unknown DNS provider or setting '{key}'")), "{err}");
        // Every registered provider, in registry order (the list grows).
        assert!(
            err.contains("providers: rfc2136, exec, httpreq, acme_dns, cloudflare, route53, digitalocean, "),
            "{err}"
        );
        assert!(err.contains(&format!("providers: {};", registry::names(", "))), "{err}");
        assert!(err.contains("settings: resolvers, delay_before_check_secs"), "{err}");
    }
}

#[test]
fn exactly_one_provider_is_named() {
    let two = parsed("[exec]\nprogram = \"/bin/true\"\n[httpreq]\nendpoint = \"http://127.0.0.1:1\"\n");
    let err = two.validate(FIELD).unwrap_err();
    assert_eq!((err.field.as_str(), err.message.as_str()), (FIELD, "one provider only, not exec and httpreq"));

    let none = parsed("timeout_secs = 5\n");
    let err = none.validate(FIELD).unwrap_err();
    assert_eq!(err.field, FIELD);
    assert!(err.message.starts_with("name one provider table: rfc2136, exec, httpreq, acme_dns, cloudflare, "));
    assert_eq!(err.message, format!("name one provider table: {}", registry::names(" or ")));
    assert!(build(&none).is_err(), "nothing to build");
}

#[test]
fn a_providers_unknown_key_or_bad_value_is_a_parse_error_naming_it() {
    let err = parse("[cloudflare]\napi_tokn = \"t\"\n").map(|_| ()).unwrap_err();
    assert!(err.contains("[cloudflare]") && err.contains("unknown field `api_tokn`"), "{err}");
    let err = parse("[rfc2136]\nnameserver = \"not an address\"\n").map(|_| ()).unwrap_err();
    assert!(err.contains("[rfc2136]") && err.contains("nameserver"), "{err}");
    let err = parse("ttl = \"sixty\"\n[exec]\nprogram = \"/bin/true\"\n").map(|_| ()).unwrap_err();
    assert!(err.contains("ttl = \"sixty\""), "{err}");
}

#[test]
fn the_check_settings_keep_their_defaults() {
    let settings = parsed("[exec]\nprogram = \"/bin/true\"\n");
    assert_eq!((settings.timeout_secs, settings.interval_secs, settings.ttl), (120, 2, 60));
    assert!(settings.check_all_nameservers && !settings.disable_checks);
    assert_eq!((settings.nameserver_port, settings.delay_before_check_secs), (53, 0));
    assert_eq!(settings.provider_name(), "exec");
    let err = parsed("timeout_secs = 0\n[exec]\nprogram = \"/bin/true\"\n").validate(FIELD).unwrap_err();
    assert_eq!(err.field, format!("{FIELD}.timeout_secs"));
}

#[test]
fn a_secret_comes_inline_from_its_file_or_from_legos_variables_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file\n").unwrap();
    let token = |text: &str, env: &Env| {
        let mut settings = parsed(text);
        settings.read_secrets_from(FIELD, env)?;
        settings.validate(FIELD)?;
        Ok::<_, SettingsError>(settings.provider_settings::<Cloudflare>().and_then(|c| c.api_token.clone()))
    };
    let none = Env::from_vars([]);
    let vars = Env::from_vars([("CF_DNS_API_TOKEN", " from-env\n")]);
    let file_var = file.display().to_string();
    let var_file = Env::from_vars([("CF_DNS_API_TOKEN_FILE", file_var.as_str())]);
    let with_file = format!("[cloudflare]\napi_token_file = \"{}\"\n", file.display());

    assert_eq!(token("[cloudflare]\napi_token = \"inline\"\n", &vars).unwrap().as_deref(), Some("inline"));
    assert_eq!(token(&with_file, &vars).unwrap().as_deref(), Some("from-file"));
    assert_eq!(token("[cloudflare]\n", &vars).unwrap().as_deref(), Some("from-env"));
    assert_eq!(token("[cloudflare]\n", &var_file).unwrap().as_deref(), Some("from-file"));

    let missing = token("[cloudflare]\n", &none).unwrap_err();
    assert_eq!(
        missing.to_string(),
        format!("{FIELD}.cloudflare.api_token: {}", "is required (inline, _file, or lego's environment variable)")
    );
    let both = token(&format!("{with_file}api_token = \"inline\"\n"), &none).unwrap_err();
    assert_eq!(both.field, format!("{FIELD}.cloudflare.api_token_file"));
    let unreadable = token("[cloudflare]\napi_token_file = \"/nonexistent/token\"\n", &none).unwrap_err();
    assert!(unreadable.to_string().starts_with(&format!("{FIELD}.cloudflare.api_token_file: /nonexistent/token")));
}

#[test]
fn debug_never_shows_a_secret() {
    let mut settings = parsed(
        "[route53]\naccess_key_id = \"AKIATEST\"\nsecret_access_key = \"route53-secret\"\n\
         [cloudflare]\napi_token = \"cloudflare-secret\"\n[digitalocean]\nauth_token = \"do-secret\"\n\
         [httpreq]\nendpoint = \"http://127.0.0.1:1\"\npassword = \"httpreq-secret\"\n\
         [rfc2136]\nnameserver = \"127.0.0.1:53\"\ntsig_key = \"k\"\ntsig_secret = \"tsig-secret\"\n\
         [pdns]\napi_url = \"http://127.0.0.1:8081\"\napi_key = \"pdns-secret\"\n\
         [hetzner]\napi_key = \"hetzner-secret\"\n[desec]\ntoken = \"desec-secret\"\n",
    );
    settings.read_secrets_from(FIELD, &Env::from_vars([])).unwrap();
    let debug = format!("{settings:?} {:?}", settings.clone());
    for secret in [
        "route53-secret",
        "cloudflare-secret",
        "do-secret",
        "httpreq-secret",
        "tsig-secret",
        "pdns-secret",
        "hetzner-secret",
        "desec-secret",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("AKIATEST") && debug.contains("Cloudflare"), "{debug}");
}

/// Every registered provider parses, validates and builds through the
/// registry with its minimal table.
#[test]
fn every_registered_provider_builds_from_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme-dns.json");
    let tables = [
        ("rfc2136", "nameserver = \"127.0.0.1:53\"".to_owned()),
        ("exec", "program = \"/bin/true\"".to_owned()),
        ("httpreq", "endpoint = \"http://127.0.0.1:1\"".to_owned()),
        ("acme_dns", format!("api_base = \"http://127.0.0.1:1\"\nstorage_file = \"{}\"", storage.display())),
        ("cloudflare", "api_token = \"t\"".to_owned()),
        ("route53", "access_key_id = \"a\"\nsecret_access_key = \"s\"".to_owned()),
        ("digitalocean", "auth_token = \"t\"".to_owned()),
        ("gcloud", "project = \"p\"".to_owned()),
        ("azuredns", "subscription_id = \"s\"\nresource_group = \"r\"".to_owned()),
        ("ovh", "application_key = \"a\"\napplication_secret = \"s\"\nconsumer_key = \"c\"".to_owned()),
        ("linode", "token = \"t\"".to_owned()),
        ("gandiv5", "personal_access_token = \"t\"".to_owned()),
        ("porkbun", "api_key = \"k\"\nsecret_api_key = \"s\"".to_owned()),
        ("vultr", "api_key = \"k\"".to_owned()),
        ("pdns", "api_url = \"http://127.0.0.1:8081\"\napi_key = \"k\"".to_owned()),
        ("hetzner", "api_key = \"k\"".to_owned()),
        ("desec", "token = \"t\"".to_owned()),
        ("dnsimple", "oauth_token = \"t\"".to_owned()),
        ("godaddy", "api_key = \"k\"\napi_secret = \"s\"".to_owned()),
        ("namecheap", "api_user = \"u\"\napi_key = \"k\"\nclient_ip = \"192.0.2.1\"".to_owned()),
        ("duckdns", "token = \"t\"".to_owned()),
        ("scaleway", "secret_key = \"s\"".to_owned()),
        ("bunny", "api_key = \"k\"".to_owned()),
        ("ionos", "api_key = \"p.s\"".to_owned()),
        ("infomaniak", "access_token = \"t\"".to_owned()),
        ("exoscale", "api_key = \"EXOk\"\napi_secret = \"s\"".to_owned()),
    ];
    assert_eq!(
        registry::names(", "),
        tables.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "),
        "a provider without a test here"
    );
    for (name, table) in &tables {
        let settings = parsed(&format!("[{name}]\n{table}\n"));
        settings.validate(FIELD).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(settings.provider_name(), *name);
        build(&settings).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
