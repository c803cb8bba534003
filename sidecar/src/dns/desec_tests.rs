use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// RRsets by "domain subname": TTL and records.
type Sets = Arc<Mutex<BTreeMap<String, (u64, Vec<String>)>>>;

/// The account's domains and their `minimum_ttl`.
const DOMAINS: [(&str, u32); 2] = [("example.com", 3600), ("sub.example.com", 60)];

/// deSEC's documented subset: `Authorization: Token`, `owns_qname`, RRsets
/// at `/domains/<d>/rrsets/<subname>/TXT/` (404 `Not found.` when absent),
/// `POST` to create, `PATCH` with the whole record list (empty: delete),
/// TTLs under the domain's minimum refused as deSEC does.
fn api(sets: Sets) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        if seen.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Token desec-token") {
            return (StatusCode::UNAUTHORIZED, r#"{"detail":"Invalid token."}"#.into());
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let mut sets = sets.lock().unwrap();
        let min_ttl = |d: &str| DOMAINS.iter().find(|(n, _)| *n == d).map_or(3600, |(_, t)| u64::from(*t));
        let rrset = |d: &str, s: &str, (ttl, records): &(u64, Vec<String>)| {
            serde_json::json!({"domain": d, "subname": s, "name": format!("{s}.{d}."), "type": "TXT", "ttl": ttl, "records": records, "created": "2026-12-06T17:00:00Z", "touched": "2026-12-06T17:00:00Z"})
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v1", "domains"]) => {
                let qname = query(&seen.target, "owns_qname").unwrap_or_default();
                // The one domain responsible: the longest that is a suffix.
                let owner = DOMAINS.iter().filter(|(d, _)| qname == *d || qname.ends_with(&format!(".{d}"))).max_by_key(|(d, _)| d.len());
                let list: Vec<_> = owner.iter().map(|(d, t)| serde_json::json!({"name": d, "minimum_ttl": t, "created": "2022-11-12T18:01:35Z"})).collect();
                (StatusCode::OK, serde_json::Value::from(list).to_string())
            }
            ("POST", ["api", "v1", "domains", d, "rrsets"]) => {
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                let sub = body["subname"].as_str().unwrap_or_default().to_owned();
                let ttl = body["ttl"].as_u64().unwrap_or(0);
                if ttl < min_ttl(d) {
                    return (StatusCode::BAD_REQUEST, format!(r#"{{"ttl":["Ensure this value is greater than or equal to {}."]}}"#, min_ttl(d)));
                }
                let key = format!("{d} {sub}");
                if sets.contains_key(&key) {
                    return (StatusCode::BAD_REQUEST, r#"{"non_field_errors":["Another RRset with the same subdomain and type exists for this domain."]}"#.into());
                }
                let records: Vec<String> = body["records"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_owned)).collect();
                let set = (ttl, records);
                let shown = rrset(d, &sub, &set);
                sets.insert(key, set);
                (StatusCode::CREATED, shown.to_string())
            }
            (method, ["api", "v1", "domains", d, "rrsets", sub, "TXT"]) => {
                assert!(path.ends_with('/'), "deSEC's URLs end with a slash: {path}");
                let key = format!("{d} {sub}");
                match (method, sets.get(&key).cloned()) {
                    (_, None) => (StatusCode::NOT_FOUND, r#"{"detail":"Not found."}"#.into()),
                    ("GET", Some(set)) => (StatusCode::OK, rrset(d, sub, &set).to_string()),
                    ("PATCH", Some((ttl, _))) => {
                        let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                        let ttl = body["ttl"].as_u64().unwrap_or(ttl);
                        let records: Vec<String> = body["records"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_owned)).collect();
                        if records.is_empty() {
                            sets.remove(&key);
                            return (StatusCode::NO_CONTENT, String::new());
                        }
                        let set = (ttl, records);
                        let shown = rrset(d, sub, &set);
                        sets.insert(key, set);
                        (StatusCode::OK, shown.to_string())
                    }
                    _ => (StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method not allowed."}"#.into()),
                }
            }
            _ => (StatusCode::NOT_FOUND, r#"{"detail":"Not found."}"#.into()),
        }
    }
}

fn provider(url: &str, token: &str) -> DesecProvider {
    DesecProvider::new(&Desec { token: Some(token.into()), token_file: None, base_url: format!("{url}/api/v1") }).unwrap()
}

#[tokio::test]
async fn values_share_the_rrset_and_cleanup_removes_only_ours() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::from([(
        "example.com _acme-challenge".to_owned(),
        (7200, vec!["\"someone-else\"".to_owned()]),
    )])));
    let (url, log) = serve(Arc::new(api(Arc::clone(&sets)))).await;
    let desec = provider(&url, "desec-token");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    desec.present(&apex).await.unwrap();
    desec.present(&wildcard).await.unwrap();
    desec.present(&wildcard).await.unwrap(); // twice: once in the set
    let key = "example.com _acme-challenge";
    assert_eq!(sets.lock().unwrap()[key], (7200, vec!["\"someone-else\"".into(), "\"v-apex\"".into(), "\"v-wild\"".into()]));
    desec.cleanup(&wildcard).await.unwrap();
    assert_eq!(sets.lock().unwrap()[key].1, ["\"someone-else\"", "\"v-apex\""]);
    desec.cleanup(&wildcard).await.unwrap();
    desec.cleanup(&apex).await.unwrap();
    assert_eq!(sets.lock().unwrap()[key].1, ["\"someone-else\""], "the other value stays");
    let patch = log.lock().unwrap().iter().find(|s| s.method == Method::PATCH).cloned().unwrap();
    assert_eq!(patch.target, "/api/v1/domains/example.com/rrsets/_acme-challenge/TXT/");
    let body: serde_json::Value = serde_json::from_str(&patch.body).unwrap();
    assert_eq!(body["records"], serde_json::json!(["\"someone-else\"", "\"v-apex\""]), "the whole set");
}

#[tokio::test]
async fn a_new_rrset_is_created_at_the_minimum_ttl_and_deleted_with_its_last_value() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&sets)))).await;
    let desec = provider(&url, "desec-token");
    let apex = TxtRecord::new("www.example.com", "v", 60);
    desec.present(&apex).await.unwrap();
    assert_eq!(sets.lock().unwrap()["example.com _acme-challenge.www"], (3600, vec!["\"v\"".to_owned()]));
    let sub = TxtRecord::new("a.sub.example.com", "w", 300);
    desec.present(&sub).await.unwrap();
    assert_eq!(sets.lock().unwrap()["sub.example.com _acme-challenge.a"].0, 300, "the domain's own minimum (60) lets ours stand");
    desec.cleanup(&apex).await.unwrap();
    desec.cleanup(&sub).await.unwrap();
    assert!(sets.lock().unwrap().is_empty(), "the last value deletes the RRset");
    let unknown = desec.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("desec: no domain in this account holds"), "{unknown}");
}

#[tokio::test]
async fn a_refused_token_is_a_permanent_error_naming_desec_and_the_status() {
    let (url, _) = serve(Arc::new(api(Arc::new(Mutex::new(BTreeMap::new()))))).await;
    let err = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.to_string(), "desec: GET /domains/: HTTP 401: Invalid token.");
}

#[test]
fn the_token_comes_from_legos_variable() {
    let mut settings: Desec = toml::from_str("").unwrap();
    settings.read_secrets("d", &Env::from_vars([("DESEC_TOKEN", "from-env")])).unwrap();
    settings.validate("d").unwrap();
    assert_eq!(settings.token.as_deref(), Some("from-env"));
    assert!(!format!("{settings:?}").contains("from-env"));
}
