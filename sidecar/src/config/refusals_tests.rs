//! What the configuration refuses because it cannot work (issue 20), and
//! how every refusal reads: one line, naming the field, no raw control
//! character.

use super::*;

const RESOLVER: &str = "[resolvers.le]\nemail = \"ops@example.com\"\nhttp_challenge = {}\n";

fn certificate(name: &str, domains: &[&str]) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!("\n[[certificates]]\nname = \"{name}\"\ndomains = [{}]\nresolver = \"le\"\n", domains.join(", "))
}

/// The error a user would see for `text`, parse or validation; panics when accepted.
fn refused(text: &str) -> String {
    let message = match text.parse::<Config>() {
        Ok(config) => match config.validate() {
            Ok(()) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    assert!(!message.contains('\n'), "more than one line: {message:?}");
    assert!(!message.chars().any(char::is_control), "raw control character in {message:?}");
    message
}

fn accepted(text: &str) {
    let config: Config = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{text}"));
}

#[test]
fn a_file_with_nothing_to_do_is_refused() {
    let nothing = "certificates: nothing to do: no [[certificates]], [discover] or [on_demand] is configured";
    assert_eq!(refused(""), nothing);
    assert_eq!(refused(RESOLVER), nothing);
    accepted(&format!("{RESOLVER}\n[discover]\nresolver = \"le\"\nenvoy_admin = \"http://127.0.0.1:9901\"\n"));
    accepted(&format!("{RESOLVER}\n[on_demand]\nresolver = \"le\"\nallow = [\".example.com\"]\n"));
    accepted(&format!("{RESOLVER}{}", certificate("web", &["example.com"])));
}

#[test]
fn a_domain_in_two_certificates_is_refused_unless_allowed() {
    let two =
        format!("{RESOLVER}{}{}", certificate("a", &["a.test", "b.test"]), certificate("b", &["c.test", "b.test"]));
    assert_eq!(
        refused(&two),
        "certificates[1].domains[1]: 'b.test' is already in certificates[0]; to order it in both, set \
         allow_shared_domains = true at the top of the file"
    );
    accepted(&format!("allow_shared_domains = true\n{two}"));
    // A wildcard and a name under it are two names.
    let mut dns = RESOLVER.replace("http_challenge = {}\n", "");
    dns.push_str("[resolvers.le.dns_challenge.exec]\nprogram = \"/bin/true\"\n");
    accepted(&format!("{dns}{}{}", certificate("wild", &["*.a.test", "a.test"]), certificate("b", &["b.a.test"])));
    // IP addresses compare in their canonical form.
    let ips = format!("{RESOLVER}{}{}", certificate("a", &["::1"]), certificate("b", &["0:0::1"]));
    assert!(refused(&ips).starts_with("certificates[1].domains[0]: '0:0::1' is already in certificates[0]"));
    // The top-level key after a table belongs to that table: a loud error, not a silent no.
    let late = format!("{two}allow_shared_domains = true\n");
    assert!(refused(&late).contains("certificates[1].allow_shared_domains: unknown field"), "{}", refused(&late));
}

#[test]
fn a_domain_twice_in_one_certificate_is_refused_even_when_sharing_is_allowed() {
    let twice = format!("allow_shared_domains = true\n{RESOLVER}{}", certificate("a", &["a.test", "b.test", "a.test"]));
    assert_eq!(refused(&twice), "certificates[0].domains[2]: 'a.test' is listed twice (also domains[0])");
}

#[test]
fn names_made_of_numbers_are_ip_addresses_or_refused() {
    for (bad, why) in [
        ("999.1.1.1", "is not an IPv4 address (four numbers 0-255, no leading zeros)"),
        ("1.2.3", "is not an IPv4 address (four numbers 0-255, no leading zeros)"),
        ("010.1.1.1", "is not an IPv4 address (four numbers 0-255, no leading zeros)"),
        ("::g", "is not an IPv6 address"),
    ] {
        let text = format!("{RESOLVER}{}", certificate("a", &["a.test", bad]));
        assert_eq!(refused(&text), format!("certificates[0].domains[1]: '{bad}' {why}"));
    }
    accepted(&format!("{RESOLVER}{}", certificate("a", &["192.0.2.1", "2001:db8::1", "1.2.3.example"])));
}

#[test]
fn more_than_100_names_in_a_certificate_are_refused() {
    let names: Vec<String> = (0..=MAX_NAMES).map(|i| format!("n{i}.example.com")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let too_many = format!("{RESOLVER}{}", certificate("big", &names));
    assert_eq!(
        refused(&too_many),
        "certificates[0].domains: has 101 names; a certificate may have at most 100 (Let's Encrypt's limit): split it"
    );
    accepted(&format!("{RESOLVER}{}", certificate("big", &names[..MAX_NAMES])));
}

#[test]
fn toml_errors_are_one_line_with_the_position_and_the_field() {
    let wrong_type = format!("{RESOLVER}{}", certificate("a", &["a.test"])).replace("[\"a.test\"]", "\"x\"");
    assert_eq!(
        refused(&wrong_type),
        "line 7, column 11: certificates[0].domains: invalid type: string \"x\", expected a sequence"
    );
    let element = format!("{RESOLVER}{}", certificate("a", &["a.test"])).replace("[\"a.test\"]", "[\"a.test\", 3]");
    assert_eq!(
        refused(&element),
        "line 7, column 22: certificates[0].domains[1]: invalid type: integer `3`, expected a string"
    );
    let missing = format!("{RESOLVER}\n[[certificates]]\nname = \"a\"\ndomains = [\"a.test\"]\n");
    assert_eq!(
        refused(&missing),
        "line 5, column 1: certificates[0]: missing field `resolver` (or `resolvers = [...]`)"
    );
    let typo = RESOLVER.replace("email", "emial");
    assert!(refused(&typo).starts_with("line 2, column 1: resolvers.le.emial: unknown field `emial`, expected one of"));
    assert_eq!(refused("a = = 3\n"), "line 1, column 5: extra `=`, expected nothing");
    let quoted = "[resolvers.\"a.b\"]\nemial = 1\n";
    assert!(
        refused(quoted).starts_with("line 2, column 1: resolvers.\"a.b\".emial: unknown field"),
        "{}",
        refused(quoted)
    );
}

#[test]
fn control_characters_in_echoed_values_are_escaped() {
    // TOML escapes put ESC, BEL and NUL into values; every message echoing them shows the escape.
    let esc = format!("{RESOLVER}{}", certificate("a", &["a\\u001b[31m.test"]));
    assert_eq!(
        refused(&esc),
        "certificates[0].domains[0]: 'a\\u{1b}[31m.test' may contain only a-z, 0-9 and '-' (use the xn-- form for IDNs)"
    );
    let bel = RESOLVER.replace("http_challenge = {}", "http_challenge = {}\nkey_type = \"\\u0007\"");
    assert!(refused(&bel).contains("unknown variant `\\u{7}`"), "{}", refused(&bel));
    let nul = format!("{RESOLVER}{}", certificate("a\\u0000b", &["a.test"]));
    assert!(refused(&nul).starts_with("certificates[0].name: 'a\\u{0}b' must be"), "{}", refused(&nul));
    let key = "[resolvers.\"\\u001b]0;pwned\\u0007\"]\nemial = 1\n";
    assert!(refused(key).contains("resolvers.\"\\u{1b}]0;pwned\\u{7}\".emial"), "{}", refused(key));
    let newline = format!("{RESOLVER}{}", certificate("a", &["a.test\\nfake: ok"]));
    assert!(refused(&newline).contains("'a.test\\u{a}fake: ok'"), "{}", refused(&newline));
    let error = ConfigError::invalid("certificates", "nothing");
    assert_eq!(error.in_file(Path::new("/etc/x\u{1b}[2J.toml")), "/etc/x\\u{1b}[2J.toml: certificates: nothing");
    assert_eq!(escape_controls("bidi \u{202e}txt.exe"), "bidi \\u{202e}txt.exe");
    assert!(matches!(escape_controls("plain ünïcode"), std::borrow::Cow::Borrowed(_)));
}

#[test]
fn an_order_deadline_is_between_ten_seconds_and_a_day() {
    let with = |secs: &str| format!("{RESOLVER}order_timeout_secs = {secs}\n{}", certificate("web", &["example.com"]));
    for secs in ["0", "9", "86401"] {
        assert_eq!(
            refused(&with(secs)),
            format!("resolvers.le.order_timeout_secs: {secs} is not between 10 and 86400"),
            "{secs}"
        );
    }
    accepted(&with("10"));
    accepted(&with("86400"));
    let config: Config = format!("{RESOLVER}{}", certificate("web", &["example.com"])).parse().expect("parses");
    assert_eq!(config.resolvers["le"].order_timeout_secs, 600, "the default");
}

#[test]
fn two_key_types_make_two_certificates_and_their_mistakes_are_named() {
    let web = format!("{}key_types = [\"ec256\", \"rsa2048\"]\n", certificate("web", &["example.com"]));
    let config: Config = format!("{RESOLVER}{web}").parse().unwrap();
    config.validate().unwrap();
    let managed = config.managed();
    let names: Vec<(&str, Vec<crate::cert::KeyType>)> =
        managed.iter().map(|c| (c.name.as_str(), c.key_types.clone())).collect();
    use crate::cert::KeyType::{Ec256, Rsa2048};
    assert_eq!(names, [("web", vec![Ec256]), ("web-rsa2048", vec![Rsa2048])]);
    assert_eq!(managed[1].domains, ["example.com"]);
    assert_eq!(
        refused(&format!("{RESOLVER}{}key_types = [\"rsa2048\", \"RSA2048\"]\n", certificate("web", &["a.example"]))),
        "certificates[0].key_types[1]: 'rsa2048' is listed twice (also key_types[0])"
    );
    let taken = format!("{web}{}", certificate("web-rsa2048", &["b.example"]));
    assert!(
        refused(&format!("{RESOLVER}{taken}")).starts_with(
            "certificates[0].key_types: makes a certificate 'web-rsa2048' for its second key type, which is already certificates[1]'s name"
        ),
        "{}",
        refused(&format!("{RESOLVER}{taken}"))
    );
}

#[test]
fn fallback_resolvers_are_each_checked_and_named_by_their_place() {
    let two = format!(
        "{RESOLVER}[resolvers.zs]\nca_server = \"https://acme.zerossl.test/directory\"\nhttp_challenge = {{}}\n"
    );
    let cert = |lines: &str| format!("{two}\n[[certificates]]\nname = \"a\"\ndomains = [\"a.test\"]\n{lines}\n");
    accepted(&cert("resolvers = [\"le\", \"zs\"]"));
    accepted(&cert(
        "resolvers = [\"le\", \"zs\"]\nfallback = { after_failures = 3, patience_secs = 60, renewals = \"stick\" }",
    ));
    let config: Config = cert("resolvers = [\"zs\", \"le\"]").parse().unwrap();
    assert_eq!(config.certificates[0].resolver, "zs", "the first is where orders go");
    assert_eq!(config.certificates[0].fallback, FallbackSettings::default());

    let at = |e: String| e.split_once(": ").map(|(_, rest)| rest.to_owned()).unwrap_or(e);
    assert_eq!(
        at(refused(&cert("resolver = \"le\"\nresolvers = [\"le\", \"zs\"]"))),
        "certificates[0]: set either resolver or resolvers, not both"
    );
    assert_eq!(at(refused(&cert("resolvers = []"))), "certificates[0]: resolvers must name at least one resolver");
    assert_eq!(at(refused(&cert("resolvers = [\"le\", \"le\"]"))), "certificates[0]: resolvers lists 'le' twice");
    assert_eq!(
        refused(&cert("resolvers = [\"le\", \"nope\"]")),
        "certificates[0].resolvers[1]: no resolver named 'nope' (known: le, zs)"
    );
    assert_eq!(
        at(refused(&cert("resolver = \"le\"\nfallback = {}"))),
        "certificates[0]: fallback needs resolvers = [...] with more than one resolver"
    );
    assert!(refused(&cert("resolvers = [\"le\", \"zs\"]\nfallback = { renewals = \"sometimes\" }"))
        .contains("certificates[0].fallback.renewals: unknown variant `sometimes`"));
    assert_eq!(
        refused(&cert("resolvers = [\"le\", \"zs\"]\nfallback = { after_failures = 0 }")),
        "certificates[0].fallback.after_failures: must be at least 1"
    );
    // A wildcard needs DNS-01 at every resolver it may be ordered from.
    let dns = two.replace(
        "[resolvers.le]\n",
        "[resolvers.le]\ndns_challenge = { rfc2136 = { nameserver = \"127.0.0.1:53\" } }\n",
    );
    let wildcard =
        format!("{dns}\n[[certificates]]\nname = \"w\"\ndomains = [\"*.a.test\"]\nresolvers = [\"le\", \"zs\"]\n");
    assert_eq!(
        refused(&wildcard),
        "certificates[0].domains[0]: '*.a.test' is a wildcard, which needs DNS-01 or dns-persist-01: give resolver 'zs' a dns_challenge or dns_persist"
    );
}

#[test]
fn dns_persist_proves_wildcards_and_its_refusals_name_the_field() {
    let persist = RESOLVER.replace("http_challenge = {}\n", "dns_persist = {}\n");
    accepted(&format!("{persist}{}", certificate("wild", &["*.a.test", "a.test"])));
    let ordered = RESOLVER.replace(
        "http_challenge = {}\n",
        "dns_persist = { issuer_domain = \"ca.example\", policy = \"wildcard\", timeout_secs = 30 }\n\
         challenge_order = [\"dns-persist-01\"]\n",
    );
    let config: Config =
        format!("{ordered}{}", certificate("a", &["a.test"])).parse().unwrap_or_else(|e| panic!("{e}"));
    config.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.resolvers["le"].challenges(), [ChallengeKind::DnsPersist01]);
    let cert = certificate("a", &["a.test"]);
    let policy = RESOLVER.replace("http_challenge = {}\n", "dns_persist = { policy = \"any\" }\n");
    assert!(refused(&format!("{policy}{cert}")).starts_with("resolvers.le.dns_persist.policy: 'any' is not a policy"));
    let issuer = RESOLVER.replace("http_challenge = {}\n", "dns_persist = { issuer_domain = \"a b\" }\n");
    assert!(refused(&format!("{issuer}{cert}")).starts_with("resolvers.le.dns_persist.issuer_domain: 'a b'"));
    let provider = RESOLVER.replace("http_challenge = {}\n", "dns_persist = { cloudflare = {} }\n");
    assert!(refused(&format!("{provider}{cert}")).contains("unknown dns_persist setting 'cloudflare'"));
    let unset =
        RESOLVER.replace("http_challenge = {}\n", "http_challenge = {}\nchallenge_order = [\"dns-persist-01\"]\n");
    assert!(
        refused(&format!("{unset}{cert}")).contains("'dns-persist-01' is listed but `dns_persist` is not configured")
    );
}
