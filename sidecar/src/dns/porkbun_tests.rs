use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::*;
use crate::dns::mock_tests::{serve, Seen};

#[derive(Default)]
struct State {
    domains: Vec<&'static str>,
    /// (id, domain, full name, type, content, ttl).
    records: Vec<(u64, String, String, String, String, String)>,
    next_id: u64,
}

type Shared = Arc<Mutex<State>>;

fn error(message: &str) -> String {
    json!({ "status": "ERROR", "message": message }).to_string()
}

/// Porkbun's v3 subset: every call a `POST` whose JSON body carries the
/// keys; records are named in full (`_acme-challenge.a.example.com`) in
/// answers and relative to the domain in requests.
fn api(state: Shared) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        assert_eq!(seen.method, Method::POST, "Porkbun's API is POST only");
        let body: Value = serde_json::from_str(&seen.body).unwrap_or_default();
        if body["apikey"] != "pk1_good" || body["secretapikey"] != "sk1_good" {
            return (StatusCode::BAD_REQUEST, error("Invalid API key. (002)"));
        }
        let mut state = state.lock().unwrap();
        let parts: Vec<&str> = seen.target.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["domain", "listAll"] => {
                assert_eq!(body["start"], "0");
                let domains: Vec<Value> = state.domains.iter().map(|d| json!({ "domain": d, "status": "ACTIVE", "tld": "com" })).collect();
                (StatusCode::OK, json!({ "status": "SUCCESS", "domains": domains }).to_string())
            }
            ["dns", "create", domain] if state.domains.contains(domain) => {
                assert_eq!(body["type"], "TXT");
                assert!(body["ttl"].as_str().unwrap().parse::<u32>().unwrap() >= 600);
                state.next_id += 1;
                let id = state.next_id;
                let sub = body["name"].as_str().unwrap();
                let full = if sub.is_empty() { (*domain).to_owned() } else { format!("{sub}.{domain}") };
                let record = (id, (*domain).to_owned(), full, "TXT".to_owned(), body["content"].as_str().unwrap().to_owned(), body["ttl"].as_str().unwrap().to_owned());
                state.records.push(record);
                (StatusCode::OK, json!({ "status": "SUCCESS", "id": id }).to_string())
            }
            ["dns", "retrieveByNameType", domain, kind, sub] if state.domains.contains(domain) => {
                let full = format!("{sub}.{domain}");
                let records: Vec<Value> = state
                    .records
                    .iter()
                    .filter(|r| r.1 == *domain && r.2 == full && r.3 == *kind)
                    .map(|r| json!({ "id": r.0.to_string(), "name": r.2, "type": r.3, "content": r.4, "ttl": r.5, "prio": "0", "notes": "" }))
                    .collect();
                (StatusCode::OK, json!({ "status": "SUCCESS", "records": records }).to_string())
            }
            ["dns", "delete", domain, id] if state.domains.contains(domain) => {
                let before = state.records.len();
                state.records.retain(|r| r.0.to_string() != *id);
                if state.records.len() == before {
                    return (StatusCode::BAD_REQUEST, error("Invalid record ID."));
                }
                (StatusCode::OK, r#"{"status":"SUCCESS"}"#.into())
            }
            _ => (StatusCode::BAD_REQUEST, error("Invalid domain.")),
        }
    }
}

async fn mock() -> (String, Shared) {
    let state: Shared = Arc::default();
    state.lock().unwrap().domains = vec!["example.com", "sub.example.com"];
    let (url, _) = serve(Arc::new(api(Arc::clone(&state)))).await;
    (url, state)
}

fn provider(url: &str, secret: &str) -> PorkbunProvider {
    PorkbunProvider::new(&Porkbun {
        api_key: Some("pk1_good".into()),
        api_key_file: None,
        secret_api_key: Some(secret.into()),
        secret_api_key_file: None,
        base_url: url.to_owned(),
    })
    .unwrap()
}

#[tokio::test]
async fn records_go_to_the_longest_domain_and_cleanup_deletes_only_ours() {
    let (url, state) = mock().await;
    {
        let mut s = state.lock().unwrap();
        s.records.push((90, "sub.example.com".into(), "_acme-challenge.a.sub.example.com".into(), "TXT".into(), "someone-else".into(), "600".into()));
        s.next_id = 100;
    }
    let provider = provider(&url, "sk1_good");
    let (apex, wildcard) = (TxtRecord::new("a.sub.example.com", "v-apex", 60), TxtRecord::new("*.a.sub.example.com", "v-wild", 60));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    {
        let s = state.lock().unwrap();
        let ours = s.records.iter().find(|r| r.4 == "v-wild").unwrap();
        assert_eq!((ours.1.as_str(), ours.2.as_str(), ours.5.as_str()), ("sub.example.com", "_acme-challenge.a.sub.example.com", "600"));
    }
    provider.cleanup(&wildcard).await.unwrap();
    provider.cleanup(&wildcard).await.unwrap();
    let left: Vec<String> = state.lock().unwrap().records.iter().map(|r| r.4.clone()).collect();
    assert_eq!(left, ["someone-else", "v-apex"]);
    let err = provider.present(&TxtRecord::new("example.org", "v", 60)).await.unwrap_err();
    assert!(err.to_string().contains("porkbun: no domain in this account holds"), "{err}");
}

#[tokio::test]
async fn a_refused_key_is_a_clear_permanent_error() {
    let (url, state) = mock().await;
    let err = provider(&url, "sk1_wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "porkbun: listing domains: HTTP 400: Invalid API key. (002)");
    assert!(state.lock().unwrap().records.is_empty());
}

#[test]
fn keys_come_from_lego_variables_and_debug_hides_them() {
    let mut config: Porkbun = toml::from_str("").unwrap();
    let env = Env::from_vars([("PORKBUN_API_KEY", "pk1_abc"), ("PORKBUN_SECRET_API_KEY", "sk1_def")]);
    config.read_secrets("porkbun", &env).unwrap();
    config.validate("porkbun").unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("pk1_abc") && !debug.contains("sk1_def"), "{debug}");
    let half: Porkbun = toml::from_str("api_key = 'pk1'").unwrap();
    assert_eq!(half.validate("porkbun").unwrap_err().field, "porkbun.secret_api_key");
}
