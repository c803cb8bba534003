use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{serve, Seen};

/// (domain, type, name, data, ttl)
type Records = Arc<Mutex<Vec<(String, String, String, String, u64)>>>;

const DOMAINS: [&str; 2] = ["example.com", "sub.example.com"];

/// GoDaddy v1's documented subset: the domain, and the records of one type
/// and name read, replaced as a set (`PUT`) or deleted; `sso-key` auth; the
/// `{"code","message","fields"}` error bodies.
fn api(records: Records) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth != "sso-key gd-key:gd-secret" {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"code":"UNABLE_TO_AUTHENTICATE","message":"Unable to authenticate request"}"#.into(),
            );
        }
        let parts: Vec<&str> = seen.target.trim_start_matches('/').split('/').collect();
        let mut records = records.lock().unwrap();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["v1", "domains", domain]) if DOMAINS.contains(domain) => {
                (StatusCode::OK, format!(r#"{{"domain":"{domain}","domainId":1,"status":"ACTIVE"}}"#))
            }
            ("GET", ["v1", "domains", _]) => (
                StatusCode::NOT_FOUND,
                r#"{"code":"NOT_FOUND","message":"The given domain is not registered, or does not have a zone file"}"#
                    .into(),
            ),
            ("GET", ["v1", "domains", domain, "records", kind, name]) => {
                let items: Vec<String> = records
                    .iter()
                    .filter(|r| r.0 == *domain && r.1 == *kind && r.2 == *name)
                    .map(|r| format!(r#"{{"data":"{}","name":"{}","ttl":{},"type":"{}"}}"#, r.3, r.2, r.4, r.1))
                    .collect();
                (StatusCode::OK, format!("[{}]", items.join(",")))
            }
            ("PUT", ["v1", "domains", domain, "records", kind, name]) => {
                let body: Vec<serde_json::Value> = match serde_json::from_str(&seen.body) {
                    Ok(body) => body,
                    Err(_) => {
                        return (
                            StatusCode::UNPROCESSABLE_ENTITY,
                            r#"{"code":"INVALID_BODY","message":"Request body doesn't fulfill schema, see details in `fields`"}"#.into(),
                        )
                    }
                };
                if let Some(i) = body.iter().position(|r| r["ttl"].as_u64().unwrap_or(0) < 600) {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            r#"{{"code":"INVALID_BODY","message":"Request body doesn't fulfill schema, see details in `fields`","fields":[{{"code":"UNEXPECTED_TYPE","message":"is less than the minimum of 600","path":"records[{i}].ttl"}}]}}"#
                        ),
                    );
                }
                records.retain(|r| !(r.0 == *domain && r.1 == *kind && r.2 == *name));
                for r in &body {
                    let data = r["data"].as_str().unwrap_or_default().to_owned();
                    records.push(((*domain).into(), (*kind).into(), (*name).into(), data, r["ttl"].as_u64().unwrap_or(0)));
                }
                (StatusCode::OK, String::new())
            }
            ("DELETE", ["v1", "domains", domain, "records", kind, name]) => {
                records.retain(|r| !(r.0 == *domain && r.1 == *kind && r.2 == *name));
                (StatusCode::NO_CONTENT, String::new())
            }
            _ => (StatusCode::NOT_FOUND, r#"{"code":"NOT_FOUND","message":"Not found"}"#.into()),
        }
    }
}

fn provider(url: &str, secret: &str) -> GoDaddyProvider {
    GoDaddyProvider::new(&GoDaddy {
        api_key: Some("gd-key".into()),
        api_key_file: None,
        api_secret: Some(secret.into()),
        api_secret_file: None,
        base_url: url.into(),
    })
    .unwrap()
}

fn row(domain: &str, name: &str, data: &str, ttl: u64) -> (String, String, String, String, u64) {
    (domain.into(), "TXT".into(), name.into(), data.into(), ttl)
}

#[tokio::test]
async fn the_set_keeps_other_values_and_cleanup_removes_only_ours() {
    let records: Records = Arc::new(Mutex::new(vec![
        row("example.com", "_acme-challenge", "someone-else", 3600),
        row("example.com", "www", "unrelated", 600),
    ]));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let godaddy = provider(&url, "gd-secret");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    godaddy.present(&apex).await.unwrap();
    godaddy.present(&wildcard).await.unwrap();
    let put = log.lock().unwrap().iter().rev().find(|s| s.method == Method::PUT).unwrap().clone();
    assert_eq!(put.target, "/v1/domains/example.com/records/TXT/_acme-challenge");
    let sent: serde_json::Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!([
            {"data": "someone-else", "ttl": 3600},
            {"data": "v-apex", "ttl": 600},
            {"data": "v-wild", "ttl": 600},
        ]),
        "the whole set, TTL clamped to 600"
    );

    godaddy.cleanup(&wildcard).await.unwrap();
    godaddy.cleanup(&wildcard).await.unwrap(); // gone: no error, no write
    godaddy.cleanup(&apex).await.unwrap();
    let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.3.clone()).collect();
    assert_eq!(left, ["unrelated", "someone-else"]);

    // Ours the last value: the set is deleted.
    records.lock().unwrap().retain(|r| r.2 != "_acme-challenge");
    godaddy.present(&apex).await.unwrap();
    godaddy.cleanup(&apex).await.unwrap();
    assert_eq!(log.lock().unwrap().last().unwrap().method, Method::DELETE);
    assert_eq!(records.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_longest_domain_suffix_wins_and_errors_name_the_cause() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let godaddy = provider(&url, "gd-secret");
    godaddy.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    assert_eq!(records.lock().unwrap()[0], row("sub.example.com", "_acme-challenge.a", "v", 600));
    let asked: Vec<String> = log.lock().unwrap().iter().map(|s| s.target.clone()).collect();
    assert_eq!(asked[..2], ["/v1/domains/a.sub.example.com", "/v1/domains/sub.example.com"]);

    let unknown = godaddy.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no domain in this account holds"), "{unknown}");

    let refused = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert_eq!(
        refused.to_string(),
        "godaddy: GET /v1/domains/<domain>: HTTP 401: UNABLE_TO_AUTHENTICATE: Unable to authenticate request"
    );
}

#[test]
fn key_and_secret_come_from_legos_variables_and_never_show_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[godaddy]\n").unwrap();
    let env = Env::from_vars([("GODADDY_API_KEY", "gd-key-secret"), ("GODADDY_API_SECRET", "gd-secret-secret")]);
    settings.read_secrets_from("dns", &env).unwrap();
    settings.validate("dns").unwrap();
    let godaddy = settings.provider_settings::<GoDaddy>().unwrap();
    assert_eq!((godaddy.api_key.as_deref(), godaddy.api_secret.as_deref()), (Some("gd-key-secret"), Some("gd-secret-secret")));
    let debug = format!("{settings:?}");
    assert!(!debug.contains("gd-key-secret") && !debug.contains("gd-secret-secret"), "{debug}");
}

#[tokio::test]
async fn two_values_presented_at_once_both_stay() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let godaddy = provider(&url, "gd-secret");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    let (first, second) = tokio::join!(godaddy.present(&apex), godaddy.present(&wildcard));
    first.unwrap();
    second.unwrap();
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
}
