use std::sync::{Arc, Mutex};

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

#[derive(Default)]
struct State {
    /// (id, domain name).
    domains: Vec<(u64, &'static str)>,
    /// (id, domain id, type, name, target, ttl_sec).
    records: Vec<(u64, u64, String, String, String, u64)>,
    next_id: u64,
}

type Shared = Arc<Mutex<State>>;

/// Linode's v4 subset: bearer auth, lists paginated two items a page
/// (`page`, `pages`, `results`), the `{"errors":[...]}` body.
fn api(state: Shared) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth != "Bearer linode-token" {
            return (StatusCode::UNAUTHORIZED, r#"{"errors":[{"reason":"Invalid Token"}]}"#.into());
        }
        let mut state = state.lock().unwrap();
        let path = seen.target.split('?').next().unwrap_or_default();
        let page = |items: Vec<Value>| {
            let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            assert_eq!(query(&seen.target, "page_size"), Some("100"));
            let pages = items.len().div_ceil(2).max(1);
            let data: Vec<Value> = items.iter().skip((page - 1) * 2).take(2).cloned().collect();
            (StatusCode::OK, json!({ "data": data, "page": page, "pages": pages, "results": items.len() }).to_string())
        };
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let not_found = (StatusCode::NOT_FOUND, r#"{"errors":[{"reason":"Not found"}]}"#.to_owned());
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["domains"]) => page(state.domains.iter().map(|d| json!({ "id": d.0, "domain": d.1, "type": "master", "status": "active" })).collect()),
            ("GET", ["domains", id, "records"]) => {
                let id: u64 = id.parse().unwrap_or(0);
                page(state.records.iter().filter(|r| r.1 == id).map(|r| json!({ "id": r.0, "type": r.2, "name": r.3, "target": r.4, "ttl_sec": r.5 })).collect())
            }
            ("POST", ["domains", id, "records"]) => {
                let id: u64 = id.parse().unwrap_or(0);
                if !state.domains.iter().any(|d| d.0 == id) {
                    return not_found;
                }
                let body: Value = serde_json::from_str(&seen.body).unwrap();
                state.next_id += 1;
                let record = (state.next_id, id, body["type"].as_str().unwrap().to_owned(), body["name"].as_str().unwrap().to_owned(), body["target"].as_str().unwrap().to_owned(), body["ttl_sec"].as_u64().unwrap());
                let answer = json!({ "id": record.0, "type": record.2, "name": record.3, "target": record.4, "ttl_sec": record.5 });
                state.records.push(record);
                (StatusCode::OK, answer.to_string())
            }
            ("DELETE", ["domains", _id, "records", rid]) => {
                let rid: u64 = rid.parse().unwrap_or(0);
                let before = state.records.len();
                state.records.retain(|r| r.0 != rid);
                if state.records.len() == before { not_found } else { (StatusCode::OK, "{}".into()) }
            }
            _ => not_found,
        }
    }
}

async fn mock() -> (String, Shared) {
    let state: Shared = Arc::default();
    // Three domains: two pages.
    state.lock().unwrap().domains = vec![(10, "example.com"), (11, "other.org"), (12, "sub.example.com")];
    let (url, _) = serve(Arc::new(api(Arc::clone(&state)))).await;
    (url, state)
}

fn provider(url: &str, token: &str) -> LinodeProvider {
    LinodeProvider::new(&Linode { token: Some(token.into()), token_file: None, base_url: url.to_owned() }).unwrap()
}

#[tokio::test]
async fn records_go_to_the_longest_domain_across_pages_and_cleanup_deletes_only_ours() {
    let (url, state) = mock().await;
    {
        let mut s = state.lock().unwrap();
        // Enough records in domain 12 to put ours on a later page.
        s.records.push((100, 12, "TXT".into(), "_acme-challenge.a".into(), "someone-else".into(), 300));
        s.records.push((101, 12, "A".into(), "www".into(), "192.0.2.1".into(), 300));
        s.next_id = 200;
    }
    let provider = provider(&url, "linode-token");
    let (apex, wildcard) = (TxtRecord::new("a.sub.example.com", "v-apex", 60), TxtRecord::new("*.a.sub.example.com", "v-wild", 60));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    {
        let s = state.lock().unwrap();
        let ours = s.records.iter().find(|r| r.4 == "v-wild").unwrap();
        assert_eq!((ours.1, ours.2.as_str(), ours.3.as_str(), ours.5), (12, "TXT", "_acme-challenge.a", 300));
    }
    provider.cleanup(&wildcard).await.unwrap(); // on the second page
    provider.cleanup(&wildcard).await.unwrap();
    let left: Vec<String> = state.lock().unwrap().records.iter().map(|r| r.4.clone()).collect();
    assert_eq!(left, ["someone-else", "192.0.2.1", "v-apex"]);

    let err = provider.present(&TxtRecord::new("example.net", "v", 60)).await.unwrap_err();
    assert!(err.to_string().contains("linode: no domain in this account holds _acme-challenge.example.net."), "{err}");
}

#[tokio::test]
async fn a_refused_token_is_a_clear_permanent_error() {
    let (url, state) = mock().await;
    let err = provider(&url, "expired").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "linode: GET /domains: HTTP 401: Invalid Token");
    assert!(state.lock().unwrap().records.is_empty());
}

#[test]
fn the_token_comes_from_lego_variables_and_debug_hides_it() {
    let mut config: Linode = toml::from_str("").unwrap();
    config.read_secrets("linode", &Env::from_vars([("LINODE_TOKEN", "tok-123")])).unwrap();
    config.validate("linode").unwrap();
    assert!(!format!("{config:?}").contains("tok-123"));
    let empty: Linode = toml::from_str("").unwrap();
    assert_eq!(empty.validate("linode").unwrap_err().field, "linode.token");
}
