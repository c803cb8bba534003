use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// (id, zone id, type, name, value, ttl).
type Records = Arc<Mutex<Vec<(String, String, String, String, String, u64)>>>;

const ZONES: [(&str, &str); 2] = [("zoneA", "example.com"), ("zoneB", "sub.example.com")];

/// The DNS Console API's subset: `Auth-API-Token` (the gateway's 401
/// otherwise), zones by name (404 when none), records by zone with paging
/// (two per page here, whatever `per_page` asks, to force several pages),
/// create and delete.
fn api(records: Records) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        if seen.headers.get("auth-api-token").and_then(|v| v.to_str().ok()) != Some("hetzner-token") {
            return (StatusCode::UNAUTHORIZED, r#"{"message":"Invalid authentication credentials"}"#.into());
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let mut records = records.lock().unwrap();
        match (seen.method.as_str(), path) {
            ("GET", "/api/v1/zones") => {
                let name = query(&seen.target, "name").unwrap_or_default();
                match ZONES.iter().find(|(_, n)| *n == name) {
                    Some((id, n)) => (StatusCode::OK, format!(
                        r#"{{"zones":[{{"id":"{id}","name":"{n}","ttl":86400,"status":"verified","records_count":2}}],"meta":{{"pagination":{{"page":1,"per_page":100,"last_page":1,"total_entries":1}}}}}}"#
                    )),
                    None => (StatusCode::NOT_FOUND, r#"{"zones":[],"error":{"message":"zone not found","code":404}}"#.into()),
                }
            }
            ("POST", "/api/v1/records") => {
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
                let ttl = body["ttl"].as_u64().unwrap_or(0);
                if !ZONES.iter().any(|(id, _)| *id == text("zone_id")) || ttl < 60 {
                    return (StatusCode::UNPROCESSABLE_ENTITY, r#"{"record":{},"error":{"message":"422 Unprocessable Entity: invalid zone_id or ttl","code":422}}"#.into());
                }
                let id = format!("r{}", records.len() + 10);
                records.push((id.clone(), text("zone_id"), text("type"), text("name"), text("value"), ttl));
                (StatusCode::OK, format!(r#"{{"record":{{"id":"{id}","type":"TXT","name":"{}","value":"{}","zone_id":"{}","ttl":{ttl}}}}}"#, text("name"), text("value"), text("zone_id")))
            }
            ("GET", "/api/v1/records") => {
                let zone = query(&seen.target, "zone_id").unwrap_or_default();
                assert_eq!(query(&seen.target, "per_page"), Some("100"));
                let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let in_zone: Vec<_> = records.iter().filter(|r| r.1 == zone).collect();
                let items: Vec<String> = in_zone
                    .iter()
                    .skip((page - 1) * 2)
                    .take(2)
                    .map(|r| serde_json::json!({"id": r.0, "zone_id": r.1, "type": r.2, "name": r.3, "value": r.4, "ttl": r.5}).to_string())
                    .collect();
                (StatusCode::OK, format!(
                    r#"{{"records":[{}],"meta":{{"pagination":{{"page":{page},"per_page":2,"last_page":{},"total_entries":{}}}}}}}"#,
                    items.join(","),
                    in_zone.len().div_ceil(2).max(1),
                    in_zone.len()
                ))
            }
            ("DELETE", p) if p.starts_with("/api/v1/records/") => {
                let id = &p["/api/v1/records/".len()..];
                let before = records.len();
                records.retain(|r| r.0 != id);
                if records.len() == before {
                    return (StatusCode::NOT_FOUND, r#"{"error":{"message":"record not found","code":404}}"#.into());
                }
                (StatusCode::OK, String::new())
            }
            _ => (StatusCode::NOT_FOUND, r#"{"error":{"message":"not found","code":404}}"#.into()),
        }
    }
}

fn provider(url: &str, key: &str) -> HetznerProvider {
    HetznerProvider::new(&Hetzner { api_key: Some(key.into()), api_key_file: None, base_url: format!("{url}/api/v1") })
        .unwrap()
}

#[tokio::test]
async fn values_coexist_and_cleanup_deletes_only_ours_across_pages() {
    let records: Records = Arc::new(Mutex::new(vec![
        ("r1".into(), "zoneA".into(), "A".into(), "www".into(), "192.0.2.1".into(), 600),
        ("r2".into(), "zoneA".into(), "TXT".into(), "_acme-challenge".into(), "someone-else".into(), 600),
    ]));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let hetzner = provider(&url, "hetzner-token");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 10), TxtRecord::new("*.example.com", "v-wild", 10));
    hetzner.present(&apex).await.unwrap();
    hetzner.present(&wildcard).await.unwrap();
    {
        let records = records.lock().unwrap();
        let created = &records[2];
        assert_eq!((created.1.as_str(), created.2.as_str(), created.3.as_str()), ("zoneA", "TXT", "_acme-challenge"));
        assert_eq!((created.4.as_str(), created.5), ("v-apex", 60), "TTL clamped to Hetzner's minimum");
    }
    hetzner.cleanup(&wildcard).await.unwrap(); // on the second page
    let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.4.clone()).collect();
    assert_eq!(left, ["192.0.2.1", "someone-else", "v-apex"]);
    hetzner.cleanup(&wildcard).await.unwrap();
    let pages: Vec<String> = log.lock().unwrap().iter().filter_map(|s| query(&s.target, "page").map(str::to_owned)).collect();
    assert_eq!(pages[..2], ["1", "2"]);
}

#[tokio::test]
async fn a_sub_zone_is_the_longest_suffix_and_names_are_relative_to_it() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let hetzner = provider(&url, "hetzner-token");
    let record = TxtRecord::new("a.b.sub.example.com", "v", 120);
    hetzner.present(&record).await.unwrap();
    assert_eq!(records.lock().unwrap()[0].1, "zoneB");
    assert_eq!(records.lock().unwrap()[0].3, "_acme-challenge.a.b");
    let asked: Vec<String> = log.lock().unwrap().iter().filter_map(|s| query(&s.target, "name").map(str::to_owned)).collect();
    assert_eq!(asked, ["a.b.sub.example.com", "b.sub.example.com", "sub.example.com"]);
    hetzner.cleanup(&record).await.unwrap();
    assert!(records.lock().unwrap().is_empty());
    let unknown = hetzner.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("hetzner: no zone in this account holds"), "{unknown}");
}

#[tokio::test]
async fn a_refused_token_is_a_permanent_error_naming_hetzner_and_the_status() {
    let (url, _) = serve(Arc::new(api(Arc::new(Mutex::new(Vec::new()))))).await;
    let err = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.to_string(), "hetzner: GET /zones: HTTP 401: Invalid authentication credentials");
}

#[test]
fn the_token_comes_from_legos_variable() {
    let mut settings: Hetzner = toml::from_str("").unwrap();
    settings.read_secrets("h", &Env::from_vars([("HETZNER_API_KEY", "from-env")])).unwrap();
    settings.validate("h").unwrap();
    assert_eq!(settings.api_key.as_deref(), Some("from-env"));
    assert_eq!(settings.base_url, "https://dns.hetzner.com/api/v1");
    assert!(!format!("{settings:?}").contains("from-env"));
}
