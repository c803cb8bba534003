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
