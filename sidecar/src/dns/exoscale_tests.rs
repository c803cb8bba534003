use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{serve, Seen};

/// The known answers of Exoscale's Python signer (`exoscale-auth`'s tests):
/// without and with query arguments, expiring 2077-01-01.
#[test]
fn signs_like_exoscales_own_signer() {
    let (key, secret, expires) = ("EXOxxxxxxxxxxxxxxxxxxxxxxxx", "X".repeat(43), 3_376_684_800);
    assert_eq!(
        sign(key, &secret, &Method::GET, "/v2/zone", &[], "", expires),
        format!("EXO2-HMAC-SHA256 credential={key},expires={expires},signature=Ntbq/p0HVmA3Zg1HHY+Lq1vjFGi7HeMrrgXDS5jRNlY=")
    );
    assert_eq!(
        sign(key, &secret, &Method::GET, "/v2/zone", &[("k2", "v2"), ("k1", "v1")], "", expires),
        format!(
            "EXO2-HMAC-SHA256 credential={key},signed-query-args=k1;k2,expires={expires},signature=iqOBz13+44L5j0uJclE8hmUhQQcvtCSoPEOXYK6liqY="
        )
    );
}

/// (id, domain id, name, content, ttl)
type Records = Arc<Mutex<Vec<(String, String, String, String, u64)>>>;

const DOMAINS: [(&str, &str); 2] = [("d-1", "example.com"), ("d-2", "sub.example.com")];
const SECRET: &str = "exo-secret";

/// Checks the request's signature as Exoscale does: the key known, not
/// expired, and the HMAC over method, path, body and expiry matching.
fn signed(seen: &Seen) -> bool {
    let header = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(fields) = header.strip_prefix("EXO2-HMAC-SHA256 ") else { return false };
    let fields: HashMap<&str, &str> = fields.split(',').filter_map(|kv| kv.split_once('=')).collect();
    let expires: u64 = fields.get("expires").and_then(|e| e.parse().ok()).unwrap_or(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (Some(&key), false) = (fields.get("credential"), expires < now) else { return false };
    key == "EXOkey" && sign(key, SECRET, &seen.method, &seen.target, &[], &seen.body, expires) == header
}

/// API v2's documented subset: DNS domains, their records, record
/// creation and deletion answered with an operation that is `pending` once
/// before `success`, and the `{"message"}` error bodies.
fn api(records: Records, operations: Arc<Mutex<HashMap<String, u32>>>) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        if !signed(seen) {
            return (StatusCode::FORBIDDEN, r#"{"message":"Invalid request signature"}"#.into());
        }
        let parts: Vec<&str> = seen.target.trim_start_matches('/').split('/').collect();
        let mut records = records.lock().unwrap();
        let mut operations = operations.lock().unwrap();
        let mut operation = |reference: &str| {
            let id = format!("op-{}", operations.len() + 1);
            operations.insert(id.clone(), 0);
            let body = serde_json::json!({"id": id, "state": "pending", "reference": {"id": reference}});
            (StatusCode::OK, body.to_string())
        };
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["v2", "dns-domain"]) => {
                let domains: Vec<serde_json::Value> = DOMAINS
                    .iter()
                    .map(|(id, name)| serde_json::json!({"id": id, "unicode-name": name, "created-at": "2026-01-01T00:00:00Z"}))
                    .collect();
                (StatusCode::OK, serde_json::json!({"dns-domains": domains}).to_string())
            }
            ("GET", ["v2", "dns-domain", domain, "record"]) => {
                let rows: Vec<serde_json::Value> = records
                    .iter()
                    .filter(|r| r.1 == *domain)
                    .map(|r| serde_json::json!({"id": r.0, "name": r.2, "type": "TXT", "content": r.3, "ttl": r.4}))
                    .collect();
                (StatusCode::OK, serde_json::json!({"dns-domain-records": rows}).to_string())
            }
            ("POST", ["v2", "dns-domain", domain, "record"]) if DOMAINS.iter().any(|d| d.0 == *domain) => {
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                assert_eq!(body["type"], "TXT");
                let id = format!("r-{}", records.len() + 1);
                records.push((
                    id.clone(),
                    (*domain).to_owned(),
                    body["name"].as_str().unwrap_or_default().into(),
                    format!("\"{}\"", body["content"].as_str().unwrap_or_default()),
                    body["ttl"].as_u64().unwrap_or(0),
                ));
                operation(&id)
            }
            ("DELETE", ["v2", "dns-domain", _, "record", id]) => {
                let before = records.len();
                records.retain(|r| r.0 != *id);
                if records.len() == before {
                    return (StatusCode::NOT_FOUND, r#"{"message":"Record not found"}"#.into());
                }
                operation(id)
            }
            ("GET", ["v2", "operation", id]) => match operations.get_mut(*id) {
                Some(polls) => {
                    *polls += 1;
                    let state = if *polls < 2 { "pending" } else { "success" };
                    (StatusCode::OK, serde_json::json!({"id": id, "state": state}).to_string())
                }
                None => (StatusCode::NOT_FOUND, r#"{"message":"Operation not found"}"#.into()),
            },
            _ => (StatusCode::NOT_FOUND, r#"{"message":"Not found"}"#.into()),
        }
    }
}

fn provider(url: &str, secret: &str) -> ExoscaleProvider {
    ExoscaleProvider::new(&Exoscale {
        api_key: Some("EXOkey".into()),
        api_secret: Some(secret.into()),
        api_secret_file: None,
        endpoint: Some(format!("{url}/v2")),
    })
    .unwrap()
}

#[tokio::test]
async fn values_coexist_and_cleanup_deletes_only_ours_after_the_operations_succeed() {
    let records: Records = Arc::new(Mutex::new(vec![(
        "r-0".into(),
        "d-1".into(),
        "_acme-challenge".into(),
        "\"someone-else\"".into(),
        3600,
    )]));
    let operations = Arc::new(Mutex::new(HashMap::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records), Arc::clone(&operations)))).await;
    let exoscale = provider(&url, SECRET);
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 120));
    exoscale.present(&apex).await.unwrap();
    exoscale.present(&wildcard).await.unwrap();
    assert_eq!(records.lock().unwrap().len(), 3);
    exoscale.cleanup(&wildcard).await.unwrap();
    exoscale.cleanup(&wildcard).await.unwrap(); // gone: no error
    let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.3.clone()).collect();
    assert_eq!(left, ["\"someone-else\"", "\"v-apex\""]);
    assert!(operations.lock().unwrap().values().all(|polls| *polls == 2), "each operation waited for");
    let posted = log.lock().unwrap().iter().find(|s| s.method == Method::POST).unwrap().body.clone();
    let posted: serde_json::Value = serde_json::from_str(&posted).unwrap();
    assert_eq!(posted, serde_json::json!({"name": "_acme-challenge", "type": "TXT", "content": "v-apex", "ttl": 60}));
}

#[tokio::test]
async fn the_longest_zone_suffix_wins_and_a_bad_signature_is_refused() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records), Arc::new(Mutex::new(HashMap::new()))))).await;
    let exoscale = provider(&url, SECRET);
    exoscale.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    let created = records.lock().unwrap()[0].clone();
    assert_eq!((created.1.as_str(), created.2.as_str()), ("d-2", "_acme-challenge.a"));

    let unknown = exoscale.present(&TxtRecord::new("example.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no DNS domain in this organization holds"), "{unknown}");
    let refused = provider(&url, "wrong-secret").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable());
    assert_eq!(refused.to_string(), "exoscale: GET /dns-domain: HTTP 403: Invalid request signature");
}

#[test]
fn credentials_come_from_legos_variables_and_the_secret_never_shows_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[exoscale]\n").unwrap();
    let env = Env::from_vars([
        ("EXOSCALE_API_KEY", "EXOkey"),
        ("EXOSCALE_API_SECRET", "exo-secret-value"),
        ("EXOSCALE_ENDPOINT", "https://api-de-fra-1.exoscale.com/v2"),
    ]);
    settings.read_secrets_from("dns", &env).unwrap();
    settings.validate("dns").unwrap();
    let exoscale = settings.provider_settings::<Exoscale>().unwrap();
    assert_eq!(exoscale.endpoint.as_deref(), Some("https://api-de-fra-1.exoscale.com/v2"));
    let provider = ExoscaleProvider::new(exoscale).unwrap();
    assert_eq!((provider.origin.as_str(), provider.prefix.as_str()), ("https://api-de-fra-1.exoscale.com", "/v2"));
    let debug = format!("{settings:?} {provider:?}");
    assert!(debug.contains("EXOkey") && !debug.contains("exo-secret-value"), "{debug}");
}
