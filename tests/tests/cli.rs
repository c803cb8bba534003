//! The `proxy-acme` command as an operator meets it: exit codes and messages.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use proxy_acme_e2e::proxy_acme_bin;

fn proxy_acme(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(proxy_acme_bin()).args(args).output().expect("run proxy-acme");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn config_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("proxy-acme.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

const VALID: &str = r#"
[resolvers.le]
email = "ops@example.com"
http_challenge = {}

[[certificates]]
name = "web"
domains = ["example.com"]
resolver = "le"
"#;

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stdout, _) = proxy_acme(&["check", "--config", &config_file(dir.path(), VALID)]);
    assert_eq!(code, 0);
    assert!(stdout.contains("ok (1 resolvers, 1 certificates)"), "{stdout}");
}

#[test]
fn check_names_the_bad_field_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = VALID.replace("\"example.com\"", "\"exa mple.com\"");
    let (code, _, stderr) = proxy_acme(&["check", "--config", &config_file(dir.path(), &bad)]);
    assert_eq!(code, 64);
    assert!(stderr.contains("certificates[0].domains[0]"), "{stderr}");
}

#[test]
fn unknown_keys_and_missing_files_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = VALID.replace("email", "emial");
    let (code, _, stderr) = proxy_acme(&["check", "--config", &config_file(dir.path(), &typo)]);
    assert_eq!(code, 64);
    assert!(stderr.contains("emial"), "{stderr}");
    let (code, _, stderr) = proxy_acme(&["run", "--config", "/nonexistent/proxy-acme.toml"]);
    assert_eq!(code, 64);
    assert!(stderr.contains("/nonexistent/proxy-acme.toml"), "{stderr}");
}

#[test]
fn run_refuses_a_state_directory_others_can_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = format!("[storage]\ndirectory = \"{}\"\n{VALID}", state.display());
    let (code, _, stderr) = proxy_acme(&["run", "--config", &config_file(dir.path(), &text)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("chmod 700"), "{stderr}");
}

#[test]
fn import_exit_codes_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config = config_file(dir.path(), &format!("[storage]\ndirectory = \"{}\"\n{VALID}", state.display()));
    let acme_json = dir.path().join("acme.json");
    let acme = acme_json.display().to_string();

    let (code, _, stderr) = proxy_acme(&["import", "traefik", &acme, "--config", &config]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot read {acme}")), "{stderr}");

    std::fs::write(
        &acme_json,
        r#"{"le": {"Certificates": [{"domain": {"main": "a.test"}, "certificate": "%", "key": ""}]}}"#,
    )
    .expect("write");
    let (code, _, stderr) = proxy_acme(&["import", "traefik", &acme, "--config", &config]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("{acme}: le.Certificates[0].certificate: not base64")), "{stderr}");

    std::fs::write(&acme_json, r#"{"le": {"Certificates": null}}"#).expect("write");
    let (code, stdout, stderr) = proxy_acme(&["import", "traefik", &acme, "--config", &config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("imported 0 certificates and 0 accounts, skipped 0"), "{stdout}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let (code, _, stderr) = proxy_acme(&["import", "certbot", &empty.display().to_string(), "--config", &config]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a certbot config directory"), "{stderr}");

    let bad = config_file(dir.path(), &VALID.replace("email", "emial"));
    let (code, _, _) = proxy_acme(&["import", "traefik", &acme, "--config", &bad]);
    assert_eq!(code, 64);
}

/// `check` and `run` on `text`: both exit 64 with the same single stderr
/// line and no raw control character anywhere; returns that line.
fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), text);
    let mut lines = Vec::new();
    for command in ["check", "run"] {
        let (code, stdout, stderr) = proxy_acme(&[command, "--config", &config]);
        assert_eq!(code, 64, "{command}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{command}: not one line: {stderr:?}");
        let raw = |c: char| c.is_control() && c != '\n';
        assert!(!stderr.chars().any(raw) && !stdout.chars().any(raw), "{command}: raw control character: {stderr:?}");
        assert!(stderr.starts_with(&format!("proxy-acme: {config}: ")), "{stderr}");
        lines.push(stderr.trim_end()[format!("proxy-acme: {config}: ").len()..].to_owned());
    }
    assert_eq!(lines[0], lines[1], "check and run disagree");
    lines.swap_remove(0)
}

#[test]
fn a_file_with_nothing_to_do_exits_64() {
    let nothing = "certificates: nothing to do: no [[certificates]], [discover] or [on_demand] is configured";
    assert_eq!(refused(""), nothing);
    assert_eq!(refused(&VALID[..VALID.find("[[certificates]]").expect("certificates")]), nothing);
}

#[test]
fn a_domain_in_two_certificates_exits_64_unless_allowed() {
    let two = format!("{VALID}\n[[certificates]]\nname = \"api\"\ndomains = [\"api.example.com\", \"example.com\"]\nresolver = \"le\"\n");
    assert_eq!(
        refused(&two),
        "certificates[1].domains[1]: 'example.com' is already in certificates[0]; to order it in both, set \
         allow_shared_domains = true at the top of the file"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = config_file(dir.path(), &format!("allow_shared_domains = true\n{two}"));
    let (code, stdout, stderr) = proxy_acme(&["check", "--config", &allowed]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 resolvers, 2 certificates)"), "{stdout}");
}

#[test]
fn invalid_ip_literals_exit_64() {
    for (bad, why) in [
        ("999.1.1.1", "is not an IPv4 address (four numbers 0-255, no leading zeros)"),
        ("1.2.3", "is not an IPv4 address (four numbers 0-255, no leading zeros)"),
        ("::g", "is not an IPv6 address"),
    ] {
        let text = VALID.replace("[\"example.com\"]", &format!("[\"example.com\", \"{bad}\"]"));
        assert_eq!(refused(&text), format!("certificates[0].domains[1]: '{bad}' {why}"));
    }
}

#[test]
fn more_than_100_names_exit_64() {
    let names: Vec<String> = (0..200).map(|i| format!("\"n{i}.example.com\"")).collect();
    let text = VALID.replace("[\"example.com\"]", &format!("[{}]", names.join(", ")));
    assert_eq!(
        refused(&text),
        "certificates[0].domains: has 200 names; a certificate may have at most 100 (Let's Encrypt's limit): split it"
    );
}

#[test]
fn toml_errors_are_one_line_naming_the_field() {
    let text = VALID.replace("[\"example.com\"]", "\"x\"");
    assert_eq!(
        refused(&text),
        "line 8, column 11: certificates[0].domains: invalid type: string \"x\", expected a sequence"
    );
    assert_eq!(refused("[resolvers.le\n"), "line 1, column 14: unclosed table, expected `]`");
}

#[test]
fn control_characters_are_never_echoed_raw() {
    // TOML escapes put ESC, BEL and NUL into values; the terminal gets `\u{..}`.
    let esc = VALID.replace("\"example.com\"", "\"\\u001b]0;pwned\\u0007.example.com\"");
    assert!(
        refused(&esc).starts_with("certificates[0].domains[0]: '\\u{1b}]0;pwned\\u{7}.example.com' may contain only")
    );
    let nul = VALID.replace("name = \"web\"", "name = \"web\\u0000\"");
    assert!(refused(&nul).starts_with("certificates[0].name: 'web\\u{0}' must be"));
    let parser_echo = VALID.replace("http_challenge = {}", "http_challenge = {}\nkey_type = \"\\u001b[2J\"");
    assert!(refused(&parser_echo).contains("resolvers.le.key_type: unknown variant `\\u{1b}[2J`"));
}

fn proxy_acme_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(proxy_acme_bin()).args(args).envs(env.iter().copied()).output().expect("run proxy-acme");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn environment_overrides_reach_any_setting_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), VALID);
    let (code, _, stderr) =
        proxy_acme_env(&["check", "--config", &config], &[("PROXY_ACME_RESOLVERS__LE__EMAIL", "not-an-email")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("resolvers.le.email: 'not-an-email' is not an email address"), "{stderr}");
    let (code, _, stderr) =
        proxy_acme_env(&["check", "--config", &config], &[("PROXY_ACME_LISTEN__HTTP", "not-an-address")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("PROXY_ACME_LISTEN__HTTP"), "the variable must be named: {stderr}");
    let (code, stdout, stderr) = proxy_acme_env(
        &["check", "--config", &config],
        &[
            ("PROXY_ACME_CERTIFICATES__1__NAME", "api"),
            ("PROXY_ACME_CERTIFICATES__1__DOMAINS", "[\"api.example.com\"]"),
            ("PROXY_ACME_CERTIFICATES__1__RESOLVER", "le"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 resolvers, 2 certificates)"), "{stdout}");
}

#[test]
fn completions_are_valid_shell_and_the_man_page_is_roff() {
    let (code, bash, _) = proxy_acme(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(bash.contains("renew") && bash.contains("--dry-run") && bash.contains("reload"), "{bash}");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("proxy-acme.bash");
    std::fs::write(&script, &bash).expect("write");
    let syntax = Command::new("bash").arg("-n").arg(&script).output().expect("bash");
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    for shell in ["zsh", "fish"] {
        let (code, text, _) = proxy_acme(&["completions", shell]);
        assert_eq!(code, 0);
        assert!(text.contains("check") && text.contains("online"), "{shell}: {text}");
    }
    let (code, man, _) = proxy_acme(&["man"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH proxy-acme 1") && man.contains("renew") && man.contains("reload"), "{man}");
}
