use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// (id, zone, name, data, ttl)
type Records = Arc<Mutex<Vec<(String, String, String, String, u64)>>>;

/// (domain, subdomain) of the zones in the account.
const ZONES: [(&str, &str); 2] = [("example.com", ""), ("example.com", "sub")];

fn zone_name((domain, subdomain): (&str, &str)) -> String {
    if subdomain.is_empty() {
        domain.to_owned()
    } else {
        format!("{subdomain}.{domain}")
    }
}

/// domain/v2beta1's documented subset: zones filtered by `dns_zone`,
/// records listed by name and type (two per page here, whatever
/// `page_size` asks), `PATCH` with `add` and `delete` changes,
/// `X-Auth-Token`, and the `{"message","type"}` error bodies.
fn api(records: Records) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let token = seen.headers.get("x-auth-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if token != "scw-secret" {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"message":"authentication is denied","method":"api_key","reason":"invalid_argument","type":"denied_authentication"}"#.into(),
            );
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let mut records = records.lock().unwrap();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["domain", "v2beta1", "dns-zones"]) => {
                let wanted = query(&seen.target, "dns_zone").unwrap_or_default();
                let zones: Vec<String> = ZONES
                    .iter()
                    .filter(|z| zone_name(**z) == wanted)
                    .map(|(d, s)| {
                        format!(
                            r#"{{"domain":"{d}","subdomain":"{s}","ns":["ns0.dom.scw.cloud"],"status":"active","project_id":"p1"}}"#
                        )
                    })
                    .collect();
                (StatusCode::OK, format!(r#"{{"dns_zones":[{}],"total_count":{}}}"#, zones.join(","), zones.len()))
            }
            ("GET", ["domain", "v2beta1", "dns-zones", zone, "records"]) => {
                let name = query(&seen.target, "name").unwrap_or_default();
                assert_eq!(query(&seen.target, "type"), Some("TXT"));
                let matching: Vec<_> = records.iter().filter(|r| r.1 == *zone && r.2 == name).collect();
                let items: Vec<String> = matching
                    .iter()
                    .skip((page - 1) * 2)
                    .take(2)
                    .map(|r| {
                        format!(
                            r#"{{"id":"{}","data":{},"name":"{}","priority":0,"ttl":{},"type":"TXT","comment":null}}"#,
                            r.0,
                            serde_json::Value::String(r.3.clone()),
                            r.2,
                            r.4
                        )
                    })
                    .collect();
                (StatusCode::OK, format!(r#"{{"records":[{}],"total_count":{}}}"#, items.join(","), matching.len()))
            }
            ("PATCH", ["domain", "v2beta1", "dns-zones", zone, "records"]) => {
                if !ZONES.iter().any(|z| zone_name(*z) == *zone) {
                    return (
                        StatusCode::NOT_FOUND,
                        format!(r#"{{"message":"resource is not found","resource":"dns_zone","resource_id":"{zone}","type":"not_found"}}"#),
                    );
                }
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                assert_eq!(body["disallow_new_zone_creation"], true);
                for change in body["changes"].as_array().cloned().unwrap_or_default() {
                    for add in change["add"]["records"].as_array().cloned().unwrap_or_default() {
                        let data = add["data"].as_str().unwrap_or_default().to_owned();
                        assert!(data.starts_with('"') && data.ends_with('"'), "TXT data quoted: {data}");
                        let id = format!("id-{}", records.len() + 1);
                        records.push((
                            id,
                            (*zone).to_owned(),
                            add["name"].as_str().unwrap_or_default().to_owned(),
                            data,
                            add["ttl"].as_u64().unwrap_or(0),
                        ));
                    }
                    if let Some(id) = change["delete"]["id"].as_str() {
                        records.retain(|r| r.0 != id);
                    }
                }
                (StatusCode::OK, r#"{"records":[]}"#.into())
            }
            _ => (
                StatusCode::NOT_FOUND,
                r#"{"message":"resource is not found","resource":"path","type":"not_found"}"#.into(),
            ),
        }
    }
}

fn provider(url: &str, key: &str) -> ScalewayProvider {
    ScalewayProvider::new(&Scaleway {
        secret_key: Some(key.into()),
        secret_key_file: None,
        project_id: None,
        base_url: url.into(),
    })
    .unwrap()
}

fn row(id: &str, name: &str, data: &str) -> (String, String, String, String, u64) {
    (id.into(), "example.com".into(), name.into(), data.into(), 3600)
}

#[tokio::test]
async fn values_coexist_and_cleanup_deletes_only_ours_across_pages() {
    let records: Records = Arc::new(Mutex::new(vec![
        row("other-1", "_acme-challenge", "\"someone-else\""),
        row("other-2", "www", "\"unrelated\""),
    ]));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let scaleway = provider(&url, "scw-secret");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 10), TxtRecord::new("*.example.com", "v-wild", 60));
    scaleway.present(&apex).await.unwrap();
    scaleway.present(&wildcard).await.unwrap();
    assert_eq!(records.lock().unwrap()[2].2, "_acme-challenge", "names relative to the zone");
    assert_eq!(records.lock().unwrap()[2].4, 60, "TTL at least 60");
    scaleway.cleanup(&wildcard).await.unwrap(); // on the second page
    scaleway.cleanup(&wildcard).await.unwrap(); // gone: no error
    let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.3.clone()).collect();
    assert_eq!(left, ["\"someone-else\"", "\"unrelated\"", "\"v-apex\""]);
    let log = log.lock().unwrap();
    let delete = log.iter().rev().find(|s| s.method == Method::PATCH).unwrap();
    let body: serde_json::Value = serde_json::from_str(&delete.body).unwrap();
    assert_eq!(body["changes"], serde_json::json!([{"delete": {"id": "id-4"}}]));
    assert!(log.iter().any(|s| s.target.contains("records?") && s.target.contains("page=2")));
}

#[tokio::test]
async fn the_longest_zone_suffix_wins_and_errors_name_the_cause() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let scaleway = provider(&url, "scw-secret");
    scaleway.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    let created = records.lock().unwrap()[0].clone();
    assert_eq!((created.1.as_str(), created.2.as_str()), ("sub.example.com", "_acme-challenge.a"));

    let unknown = scaleway.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no DNS zone in this account holds"), "{unknown}");
    let refused = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable());
    assert_eq!(
        refused.to_string(),
        "scaleway: GET /domain/v2beta1/dns-zones: HTTP 401: authentication is denied (denied_authentication)"
    );
}

#[test]
fn the_secret_key_comes_from_scw_secret_key_then_legos_older_variable() {
    let read = |vars: &[(&str, &str)]| {
        let mut settings: crate::dns::DnsChallenge = toml::from_str("[scaleway]\n").unwrap();
        settings.read_secrets_from("dns", &Env::from_vars(vars.iter().copied())).unwrap();
        let scaleway = settings.provider_settings::<Scaleway>().unwrap().clone();
        assert!(!format!("{settings:?}").contains("scw-"), "{settings:?}");
        (scaleway.secret_key, scaleway.project_id)
    };
    let both = read(&[("SCW_SECRET_KEY", "scw-new"), ("SCALEWAY_API_TOKEN", "scw-old"), ("SCW_PROJECT_ID", "p1")]);
    assert_eq!(both, (Some("scw-new".to_owned()), Some("p1".to_owned())));
    assert_eq!(read(&[("SCALEWAY_API_TOKEN", "scw-old")]).0.as_deref(), Some("scw-old"));
}
