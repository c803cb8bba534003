use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

#[derive(Default)]
struct State {
    domains: Vec<&'static str>,
    /// (id, domain, type, name, data, ttl).
    records: Vec<(String, String, String, String, String, u64)>,
    next_id: u64,
}

type Shared = Arc<Mutex<State>>;

/// A page of `items` at the opaque `cursor` (here an index), two per page,
/// with Vultr's `meta.links`.
fn page(key: &str, items: &[Value], seen: &Seen) -> (StatusCode, String) {
    assert_eq!(query(&seen.target, "per_page"), Some("100"));
    let start: usize = query(&seen.target, "cursor").map_or(0, |c| c.trim_start_matches("bmV4dF9f").parse().unwrap());
    let data: Vec<&Value> = items.iter().skip(start).take(2).collect();
    let next = if start + 2 < items.len() { format!("bmV4dF9f{}", start + 2) } else { String::new() };
    let prev = if start > 0 { "cHJldl9f".to_owned() } else { String::new() };
    (StatusCode::OK, json!({ key: data, "meta": { "total": items.len(), "links": { "next": next, "prev": prev } } }).to_string())
}

/// Vultr's v2 subset: bearer auth, cursor pagination, quoted TXT data.
fn api(state: Shared) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth != "Bearer VULTRKEY" {
            return (StatusCode::UNAUTHORIZED, r#"{"error":"Invalid API token.","status":401}"#.into());
        }
        let mut state = state.lock().unwrap();
        let path = seen.target.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let not_found = (StatusCode::NOT_FOUND, r#"{"error":"Not found","status":404}"#.to_owned());
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["domains"]) => {
                let items: Vec<Value> = state.domains.iter().map(|d| json!({ "domain": d, "date_created": "2024-01-01T00:00:00+00:00", "dns_sec": "disabled" })).collect();
                page("domains", &items, seen)
            }
            ("GET", ["domains", domain, "records"]) if state.domains.contains(domain) => {
                let items: Vec<Value> = state.records.iter().filter(|r| r.1 == *domain).map(|r| json!({ "id": r.0, "type": r.2, "name": r.3, "data": r.4, "priority": -1, "ttl": r.5 })).collect();
                page("records", &items, seen)
            }
            ("POST", ["domains", domain, "records"]) if state.domains.contains(domain) => {
                let body: Value = serde_json::from_str(&seen.body).unwrap();
                let data = body["data"].as_str().unwrap();
                assert!(data.starts_with('"') && data.ends_with('"'), "TXT data is quoted: {data}");
                state.next_id += 1;
                let id = format!("cb676a46-66fd-4dfb-b839-{:012}", state.next_id);
                let record = (id, (*domain).to_owned(), body["type"].as_str().unwrap().to_owned(), body["name"].as_str().unwrap().to_owned(), data.to_owned(), body["ttl"].as_u64().unwrap());
                let answer = json!({ "record": { "id": record.0, "type": record.2, "name": record.3, "data": record.4, "priority": -1, "ttl": record.5 } });
                state.records.push(record);
                (StatusCode::CREATED, answer.to_string())
            }
            ("DELETE", ["domains", _domain, "records", id]) => {
                let before = state.records.len();
                state.records.retain(|r| r.0 != *id);
                if state.records.len() == before { not_found } else { (StatusCode::NO_CONTENT, String::new()) }
            }
            _ => not_found,
        }
    }
}

async fn mock() -> (String, Shared) {
    let state: Shared = Arc::default();
    state.lock().unwrap().domains = vec!["example.com", "example.net", "sub.example.com"];
    let (url, _) = serve(Arc::new(api(Arc::clone(&state)))).await;
    (url, state)
}

fn provider(url: &str, key: &str) -> VultrProvider {
    VultrProvider::new(&Vultr { api_key: Some(key.into()), api_key_file: None, base_url: url.to_owned() }).unwrap()
}

#[tokio::test]
async fn records_go_to_the_longest_domain_across_cursor_pages_and_cleanup_deletes_only_ours() {
    let (url, state) = mock().await;
    {
        let mut s = state.lock().unwrap();
        s.records.push(("r-other".into(), "sub.example.com".into(), "TXT".into(), "_acme-challenge.a".into(), "\"someone-else\"".into(), 300));
        s.records.push(("r-a".into(), "sub.example.com".into(), "A".into(), "www".into(), "192.0.2.1".into(), 300));
    }
    let provider = provider(&url, "VULTRKEY");
    let (apex, wildcard) = (TxtRecord::new("a.sub.example.com", "v-apex", 60), TxtRecord::new("*.a.sub.example.com", "v-wild", 60));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    {
        let s = state.lock().unwrap();
        let ours = s.records.iter().find(|r| r.4 == "\"v-wild\"").unwrap();
        assert_eq!((ours.1.as_str(), ours.3.as_str(), ours.5), ("sub.example.com", "_acme-challenge.a", 60));
    }
    provider.cleanup(&wildcard).await.unwrap(); // on the second page
    provider.cleanup(&wildcard).await.unwrap();
    let left: Vec<String> = state.lock().unwrap().records.iter().map(|r| r.4.clone()).collect();
    assert_eq!(left, ["\"someone-else\"", "192.0.2.1", "\"v-apex\""]);
}

#[tokio::test]
async fn a_refused_key_is_a_clear_permanent_error() {
    let (url, state) = mock().await;
    let err = provider(&url, "WRONG").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "vultr: GET /domains: HTTP 401: Invalid API token.");
    assert!(state.lock().unwrap().records.is_empty());
}

#[test]
fn the_key_comes_from_lego_variables_and_debug_hides_it() {
    let mut config: Vultr = toml::from_str("").unwrap();
    config.read_secrets("vultr", &Env::from_vars([("VULTR_API_KEY", "KEY123")])).unwrap();
    config.validate("vultr").unwrap();
    assert!(!format!("{config:?}").contains("KEY123"));
    let empty: Vultr = toml::from_str("").unwrap();
    assert_eq!(empty.validate("vultr").unwrap_err().field, "vultr.api_key");
}
