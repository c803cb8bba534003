//! Logs never carry secrets: a full issuance (EAB account, HTTP-01 through
//! Envoy, certificate stored and pushed over SDS) with every crate at
//! `trace` and JSON log lines, then the log is searched for the certificate
//! key, the account key, the EAB HMAC key and key authorizations. Every
//! line must also be a JSON object.

use std::time::Duration;

use proxy_acme_e2e::*;

const DOMAIN: &str = "logs.proxy-acme.test";
const HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// The base64 body of a PEM block, as one string.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_issuance_logs_no_secret() {
    // The sidecar inherits these (each test binary is its own process).
    std::env::set_var("PROXY_ACME_LOG", "trace");
    std::env::set_var("PROXY_ACME_LOG_FORMAT", "json");
    let secrets = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_file = secrets.path().join("eab-hmac");
    write(&key_file, &format!("{HMAC}\n"));
    let options = PebbleOptions { eab_keys: vec![("kid-1".into(), HMAC.into())], ..Default::default() };
    let eab = format!("eab = {{ kid = \"kid-1\", hmac_key_file = \"{}\" }}", key_file.display());
    let mut stack = Stack::start(&options, &eab, |_| certificate("demo", &[DOMAIN], "pebble"), |c| c).await;
    stack.wait_for_new_serial(DOMAIN, None, Duration::from_secs(90)).await;

    let log = std::fs::read_to_string(&stack.sidecar.log).unwrap_or_default();
    assert!(log.lines().count() > 50, "trace logging is on");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok_and(|v| v.is_object()), "not a JSON log line: {line}");
    }
    assert!(log.contains("\"certificate\":\"demo\""), "log lines carry the certificate name as a field");

    let state = stack.dir.join("state");
    let key =
        std::fs::read_to_string(state.join("certificates/demo/live/privkey.pem")).unwrap_or_else(|e| panic!("{e}"));
    let account = std::fs::read_to_string(state.join("accounts/pebble.json")).unwrap_or_else(|e| panic!("{e}"));
    let account: serde_json::Value = serde_json::from_str(&account).unwrap_or_else(|e| panic!("{e}"));
    let mut secrets: Vec<(&str, String)> =
        vec![("PEM private key header", "PRIVATE KEY".into()), ("EAB HMAC key", HMAC.into())];
    let body = pem_body(&key);
    secrets.push(("certificate key", body[body.len() / 3..body.len() / 3 + 32].to_owned()));
    // The account's private key (instant-acme stores it as base64 PKCS#8).
    let account_key = account["credentials"]["key_pkcs8"].as_str().unwrap_or_else(|| panic!("no key in {account}"));
    assert!(account_key.len() > 64);
    secrets.push(("account key", account_key[account_key.len() / 2 - 16..account_key.len() / 2 + 16].to_owned()));
    for (what, needle) in &secrets {
        assert!(!log.contains(needle.as_str()), "the log contains the {what}");
    }
    // A key authorization is `<token>.<thumbprint>`, two base64url runs of 43.
    let key_authorization = log.as_bytes().windows(87).any(|w| {
        w[43] == b'.' && w[..43].iter().chain(&w[44..]).all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    });
    assert!(!key_authorization, "the log contains a key authorization");
}
