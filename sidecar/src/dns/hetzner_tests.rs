use std::collections::BTreeMap;
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
    let mut settings: Hetzner = toml::from_str(&format!("api_key = \"{key}\"\nbase_url = \"{url}/api/v1\"")).unwrap();
    settings.read_secrets("h", &Env::from_vars([])).unwrap();
    HetznerProvider::new(&settings).unwrap()
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

/// RRsets of the Cloud API by "zone name": their values.
type CloudSets = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// The Hetzner Cloud API's subset: `Authorization: Bearer`, zones by name
/// (404 `not_found`), RRset actions `add_records` / `remove_records` that
/// start as `running` and succeed when polled at `/actions/<id>`.
fn cloud_api(sets: CloudSets) -> impl Fn(&Seen) -> (StatusCode, String) {
    let error = |code: &str, message: &str| serde_json::json!({"error": {"code": code, "message": message, "details": {}}}).to_string();
    move |seen| {
        if seen.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer cloud-token") {
            return (StatusCode::UNAUTHORIZED, error("unauthorized", "unable to authenticate"));
        }
        let parts: Vec<&str> = seen.target.trim_matches('/').split('/').collect();
        let mut sets = sets.lock().unwrap();
        let action = |id: usize, command: &str, status: &str| {
            serde_json::json!({"action": {"id": id, "command": command, "status": status, "progress": 50, "resources": [{"id": 42, "type": "zone"}], "error": null}}).to_string()
        };
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["v1", "zones", zone]) if ZONES.iter().any(|(_, n)| n == zone) => {
                (StatusCode::OK, serde_json::json!({"zone": {"id": 42, "name": zone, "mode": "primary", "ttl": 3600}}).to_string())
            }
            ("GET", ["v1", "zones", _]) => (StatusCode::NOT_FOUND, error("not_found", "zone not found")),
            ("POST", ["v1", "zones", zone, "rrsets", name, "TXT", "actions", command]) => {
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                let values: Vec<String> = body["records"].as_array().into_iter().flatten().filter_map(|r| r["value"].as_str().map(str::to_owned)).collect();
                if values.iter().any(|v| !v.starts_with('"')) {
                    return (StatusCode::UNPROCESSABLE_ENTITY, error("invalid_input", "invalid TXT record value"));
                }
                let key = format!("{zone} {name}");
                match *command {
                    "add_records" => {
                        assert!(body["ttl"].as_u64().unwrap_or(0) >= 60);
                        let set = sets.entry(key).or_default();
                        set.extend(values.into_iter().filter(|v| !set.contains(v)).collect::<Vec<_>>());
                    }
                    "remove_records" => {
                        let Some(set) = sets.get_mut(&key) else { return (StatusCode::NOT_FOUND, error("not_found", "rrset not found")) };
                        set.retain(|v| !values.contains(v));
                        if set.is_empty() {
                            sets.remove(&key);
                        }
                    }
                    _ => return (StatusCode::NOT_FOUND, error("not_found", "not found")),
                }
                (StatusCode::CREATED, action(7, &format!("{command}_rrset"), "running"))
            }
            ("GET", ["v1", "actions", "7"]) => (StatusCode::OK, action(7, "add_rrset_records", "success")),
            _ => (StatusCode::NOT_FOUND, error("not_found", "not found")),
        }
    }
}

fn cloud(url: &str, token: &str) -> Arc<dyn DnsProvider> {
    let mut settings: Hetzner = toml::from_str(&format!("cloud_base_url = \"{url}/v1\"")).unwrap();
    settings.read_secrets("h", &Env::from_vars([("HETZNER_API_TOKEN", token), ("HETZNER_API_KEY", "console")])).unwrap();
    settings.validate("h").unwrap();
    settings.build(60).unwrap()
}

#[tokio::test]
async fn with_a_cloud_token_the_cloud_api_adds_and_removes_only_our_value() {
    let sets: CloudSets =
        Arc::new(Mutex::new(BTreeMap::from([("example.com _acme-challenge".to_owned(), vec!["\"someone-else\"".to_owned()])])));
    let (url, log) = serve(Arc::new(cloud_api(Arc::clone(&sets)))).await;
    let hetzner = cloud(&url, "cloud-token");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    hetzner.present(&apex).await.unwrap();
    hetzner.present(&wildcard).await.unwrap();
    let key = "example.com _acme-challenge";
    assert_eq!(sets.lock().unwrap()[key], ["\"someone-else\"", "\"v-apex\"", "\"v-wild\""]);
    hetzner.cleanup(&wildcard).await.unwrap();
    hetzner.cleanup(&apex).await.unwrap();
    assert_eq!(sets.lock().unwrap()[key], ["\"someone-else\""]);
    let sub = TxtRecord::new("a.sub.example.com", "v", 60);
    hetzner.present(&sub).await.unwrap();
    assert!(sets.lock().unwrap().contains_key("sub.example.com _acme-challenge.a"), "{:?}", sets.lock().unwrap());
    hetzner.cleanup(&sub).await.unwrap();
    hetzner.cleanup(&sub).await.unwrap(); // the RRset is gone: no error
    let polled = log.lock().unwrap().iter().filter(|s| s.target == "/v1/actions/7").count();
    assert_eq!(polled, 6, "every action is waited for");

    let err = cloud(&url, "wrong").present(&apex).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.to_string(), "hetzner: GET /zones/<zone>: HTTP 401: unable to authenticate (unauthorized)");
}
