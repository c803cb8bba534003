use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// RRsets by (zone id, name): TTL and (content, disabled).
type Sets = Arc<Mutex<BTreeMap<(String, String), (u32, Vec<(String, bool)>)>>>;

const SERVER: &str = "/api/v1/servers/localhost";

fn error(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// PowerDNS 4.7's API as a real server answers it (shapes taken from one):
/// `X-API-Key` or a plain-text 401, zones listed by `?zone=`, a zone's
/// RRsets filtered by `rrset_name`/`rrset_type`, `PATCH` with `REPLACE` and
/// `DELETE`, TXT contents that must be quoted, names that must be in zone.
fn api(sets: Sets) -> impl Fn(&Seen) -> (StatusCode, String) {
    let zones = [("example.com.", "Master"), ("sub.example.com.", "Native")];
    move |seen| {
        if seen.headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("pdns-key") {
            return (StatusCode::UNAUTHORIZED, "Unauthorized".into());
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let Some(rest) = path.strip_prefix(SERVER) else { return (StatusCode::NOT_FOUND, "Not Found".into()) };
        let mut sets = sets.lock().unwrap();
        let zone_json = |id: &str, kind: &str| {
            serde_json::json!({"id": id, "name": id, "kind": kind, "url": format!("{SERVER}/zones/{id}"), "serial": 1})
        };
        match (seen.method.as_str(), rest) {
            ("GET", "/zones") => {
                let wanted = query(&seen.target, "zone").unwrap_or_default();
                let found: Vec<_> =
                    zones.iter().filter(|(id, _)| wanted.is_empty() || *id == wanted).map(|(id, k)| zone_json(id, k)).collect();
                (StatusCode::OK, serde_json::Value::from(found).to_string())
            }
            ("GET", z) if zones.iter().any(|(id, _)| z == format!("/zones/{id}")) => {
                let id = &z["/zones/".len()..];
                let kind = zones.iter().find(|(i, _)| *i == id).map_or("", |(_, k)| *k);
                let name = query(&seen.target, "rrset_name");
                assert_eq!(query(&seen.target, "rrset_type"), Some("TXT"));
                let rrsets: Vec<_> = sets
                    .iter()
                    .filter(|((zone, n), _)| zone == id && Some(n.as_str()) == name)
                    .map(|((_, n), (ttl, records))| {
                        let records: Vec<_> =
                            records.iter().map(|(c, d)| serde_json::json!({"content": c, "disabled": d})).collect();
                        serde_json::json!({"name": n, "type": "TXT", "ttl": ttl, "records": records, "comments": []})
                    })
                    .collect();
                let mut zone = zone_json(id, kind);
                zone["rrsets"] = rrsets.into();
                (StatusCode::OK, zone.to_string())
            }
            ("PATCH", z) if zones.iter().any(|(id, _)| z == format!("/zones/{id}")) => {
                let id = &z["/zones/".len()..];
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                for rrset in body["rrsets"].as_array().cloned().unwrap_or_default() {
                    let name = rrset["name"].as_str().unwrap_or_default().to_owned();
                    assert_eq!(rrset["type"], "TXT");
                    // The longest zone owns the name (a sub-zone's names are out of its parent).
                    let owner = zones.iter().map(|(i, _)| *i).filter(|i| name.ends_with(&format!(".{i}"))).max_by_key(|i| i.len());
                    if owner != Some(id) {
                        return (StatusCode::UNPROCESSABLE_ENTITY, error(&format!("RRset {name} IN TXT: Name is out of zone")));
                    }
                    match rrset["changetype"].as_str() {
                        Some("REPLACE") => {
                            let mut records = Vec::new();
                            for r in rrset["records"].as_array().cloned().unwrap_or_default() {
                                let content = r["content"].as_str().unwrap_or_default().to_owned();
                                if !(content.starts_with('"') && content.ends_with('"')) {
                                    return (StatusCode::UNPROCESSABLE_ENTITY, error(&format!("Record {name}/TXT '{content}': Not in expected format")));
                                }
                                records.push((content, r["disabled"].as_bool().unwrap_or(false)));
                            }
                            let ttl = rrset["ttl"].as_u64().unwrap_or(0) as u32;
                            sets.insert((id.to_owned(), name), (ttl, records));
                        }
                        Some("DELETE") => {
                            sets.remove(&(id.to_owned(), name));
                        }
                        _ => return (StatusCode::UNPROCESSABLE_ENTITY, error("Changetype not understood")),
                    }
                }
                (StatusCode::NO_CONTENT, String::new())
            }
            ("PUT", "/zones/example.com./notify") => (StatusCode::OK, r#"{"result": "Notification queued"}"#.into()),
            _ => (StatusCode::NOT_FOUND, "Not Found".into()),
        }
    }
}

fn provider(url: &str, key: &str) -> PowerDnsProvider {
    PowerDnsProvider::new(&PowerDns {
        api_url: Some(format!("{url}/")),
        api_key: Some(key.into()),
        api_key_file: None,
        server_name: None,
        zone: None,
    })
    .unwrap()
}

#[tokio::test]
async fn values_share_the_rrset_and_cleanup_removes_only_ours() {
    let name = "_acme-challenge.example.com.";
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::from([(
        ("example.com.".to_owned(), name.to_owned()),
        (300, vec![("\"someone-else\"".to_owned(), false)]),
    )])));
    let (url, log) = serve(Arc::new(api(Arc::clone(&sets)))).await;
    let pdns = provider(&url, "pdns-key");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    pdns.present(&apex).await.unwrap();
    pdns.present(&wildcard).await.unwrap();
    pdns.present(&wildcard).await.unwrap(); // twice: still one value
    let key = ("example.com.".to_owned(), name.to_owned());
    let values = |sets: &Sets| sets.lock().unwrap().get(&key).map(|(_, r)| r.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
    assert_eq!(values(&sets).unwrap(), ["\"someone-else\"", "\"v-apex\"", "\"v-wild\""]);
    assert_eq!(sets.lock().unwrap()[&key].0, 60, "our TTL");

    pdns.cleanup(&wildcard).await.unwrap();
    assert_eq!(values(&sets).unwrap(), ["\"someone-else\"", "\"v-apex\""]);
    pdns.cleanup(&wildcard).await.unwrap(); // gone already: no error
    pdns.cleanup(&apex).await.unwrap();
    assert_eq!(values(&sets).unwrap(), ["\"someone-else\""], "the other value stays");

    let seen = log.lock().unwrap().clone();
    let patch = seen.iter().find(|s| s.method == Method::PATCH).unwrap();
    assert_eq!(patch.target, "/api/v1/servers/localhost/zones/example.com.");
    assert_eq!(patch.headers.get("content-type").unwrap(), "application/json");
    let body: serde_json::Value = serde_json::from_str(&patch.body).unwrap();
    assert_eq!(body["rrsets"][0]["changetype"], "REPLACE");
    assert_eq!(body["rrsets"][0]["records"][1], serde_json::json!({"content": "\"v-apex\"", "disabled": false}));
    assert!(seen.iter().any(|s| s.method == Method::PUT && s.target.ends_with("/example.com./notify")), "a Master zone is notified");
}

#[tokio::test]
async fn the_last_value_deletes_the_rrset_and_a_sub_zone_is_the_longest_suffix() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&sets)))).await;
    let pdns = provider(&url, "pdns-key");
    let record = TxtRecord::new("www.sub.example.com", "v", 60);
    pdns.present(&record).await.unwrap();
    let key = ("sub.example.com.".to_owned(), "_acme-challenge.www.sub.example.com.".to_owned());
    assert!(sets.lock().unwrap().contains_key(&key), "{:?}", sets.lock().unwrap());
    pdns.cleanup(&record).await.unwrap();
    assert!(sets.lock().unwrap().is_empty(), "DELETE of the emptied RRset");
    let seen = log.lock().unwrap().clone();
    let asked: Vec<&str> = seen.iter().filter_map(|s| query(&s.target, "zone")).collect();
    assert_eq!(asked[..2], ["www.sub.example.com.", "sub.example.com."]);
    assert!(!seen.iter().any(|s| s.method == Method::PUT), "a Native zone is not notified");

    let unknown = pdns.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no zone on this server holds _acme-challenge.other.org."), "{unknown}");
}

#[tokio::test]
async fn a_wrong_key_is_a_permanent_error_naming_powerdns_and_the_status() {
    let (url, _) = serve(Arc::new(api(Arc::new(Mutex::new(BTreeMap::new()))))).await;
    let err = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.starts_with("pdns: GET /zones: HTTP 401: Unauthorized"), "{text}");
    assert!(text.contains("PowerDNS refused the API key"), "{text}");
}

#[test]
fn settings_come_from_legos_variables_and_need_a_url_and_a_key() {
    let field = "resolvers.le.dns_challenge.pdns";
    let mut settings: PowerDns = toml::from_str("").unwrap();
    settings.read_secrets(field, &Env::from_vars([])).unwrap();
    assert_eq!(settings.validate(field).unwrap_err().field, format!("{field}.api_url"));
    let env = Env::from_vars([("PDNS_API_URL", "http://127.0.0.1:8081"), ("PDNS_API_KEY", "k"), ("PDNS_SERVER_NAME", "ns1")]);
    settings.read_secrets(field, &env).unwrap();
    settings.validate(field).unwrap();
    let built = PowerDnsProvider::new(&settings).unwrap();
    assert_eq!(built.base, "http://127.0.0.1:8081/api/v1/servers/ns1");
    assert!(!format!("{settings:?} {built:?}").contains("\"k\""));
    let bad: PowerDns = toml::from_str("api_url = \"ftp://x\"\napi_key = \"k\"").unwrap();
    assert_eq!(bad.validate(field).unwrap_err().field, format!("{field}.api_url"));
    assert!(toml::from_str::<PowerDns>("api_kye = \"k\"").is_err(), "unknown fields are refused");
}

#[tokio::test]
async fn a_configured_zone_is_used_without_a_walk_and_a_wrong_one_is_named() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&sets)))).await;
    let with_zone = |zone: &str| {
        let settings = PowerDns {
            api_url: Some(url.clone()),
            api_key: Some("pdns-key".into()),
            api_key_file: None,
            server_name: Some("localhost".into()),
            zone: Some(zone.into()),
        };
        PowerDnsProvider::new(&settings).unwrap()
    };
    let record = TxtRecord::new("www.sub.example.com", "v", 60);
    with_zone("Sub.Example.com.").present(&record).await.unwrap();
    let asked: Vec<String> = log.lock().unwrap().iter().filter_map(|s| query(&s.target, "zone").map(str::to_owned)).collect();
    assert_eq!(asked, ["sub.example.com."]);
    let err = with_zone("nope.example").present(&record).await.unwrap_err();
    assert!(err.to_string().contains("the server has no zone nope.example"), "{err}");
    // The parent zone does not hold a sub-zone's names: PowerDNS's 422, quoted.
    let err = with_zone("example.com").present(&record).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("HTTP 422: RRset _acme-challenge.www.sub.example.com. IN TXT: Name is out of zone"), "{err}");
}
