use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// (id, zone id, name, type, content as stored, ttl)
type Records = Arc<Mutex<Vec<(String, String, String, String, String, u64)>>>;

const ZONES: [(&str, &str); 2] = [("z-example", "example.com"), ("z-sub", "sub.example.com")];

/// The IONOS DNS API's documented subset: zones, a zone's records filtered
/// by `suffix` and `recordType`, `PATCH` replacing every record of each
/// name and type given, `DELETE` by id, `X-API-Key`, and the
/// `[{"code","message"}]` error bodies. TXT content is stored quoted.
fn api(records: Records, next: Arc<Mutex<u32>>) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let key = seen.headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if key != "pub123.secret456" {
            return (
                StatusCode::UNAUTHORIZED,
                r#"[{"code":"UNAUTHORIZED","message":"The customer is not authorized to do this operation."}]"#.into(),
            );
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut records = records.lock().unwrap();
        let Some((zone_id, zone_name)) = parts.get(2).and_then(|id| ZONES.iter().find(|z| z.0 == *id)).copied() else {
            return match parts.as_slice() {
                ["v1", "zones"] if seen.method == Method::GET => (
                    StatusCode::OK,
                    serde_json::Value::Array(
                        ZONES.iter().map(|(id, name)| serde_json::json!({"id": id, "name": name, "type": "NATIVE"})).collect(),
                    )
                    .to_string(),
                ),
                _ => (StatusCode::NOT_FOUND, r#"[{"code":"ZONE_NOT_FOUND","message":"Zone not found."}]"#.into()),
            };
        };
        match (seen.method.as_str(), &parts[3..]) {
            ("GET", []) => {
                let suffix = query(&seen.target, "suffix").unwrap_or_default();
                let kind = query(&seen.target, "recordType").unwrap_or_default();
                let rows: Vec<serde_json::Value> = records
                    .iter()
                    .filter(|r| r.1 == zone_id && r.2.ends_with(suffix) && (kind.is_empty() || r.3 == kind))
                    .map(|r| {
                        serde_json::json!({"id": r.0, "name": r.2, "rootName": zone_name, "type": r.3, "content": r.4,
                            "changeDate": "2026-12-06T17:00:00.000Z", "ttl": r.5, "disabled": false})
                    })
                    .collect();
                let zone = serde_json::json!({"id": zone_id, "name": zone_name, "type": "NATIVE", "records": rows});
                (StatusCode::OK, zone.to_string())
            }
            ("PATCH", []) => {
                let body: Vec<serde_json::Value> = serde_json::from_str(&seen.body).unwrap_or_default();
                let sets: Vec<(String, String)> = body
                    .iter()
                    .map(|r| (r["name"].as_str().unwrap_or_default().into(), r["type"].as_str().unwrap_or_default().into()))
                    .collect();
                records.retain(|r| !(r.1 == zone_id && sets.contains(&(r.2.clone(), r.3.clone()))));
                for r in &body {
                    let mut content = r["content"].as_str().unwrap_or_default().to_owned();
                    if r["type"] == "TXT" && !content.starts_with('"') {
                        content = format!("\"{content}\"");
                    }
                    let id = r["id"].as_str().map(str::to_owned).unwrap_or_else(|| {
                        let mut next = next.lock().unwrap();
                        *next += 1;
                        format!("r-{next}")
                    });
                    records.push((
                        id,
                        zone_id.into(),
                        r["name"].as_str().unwrap_or_default().into(),
                        r["type"].as_str().unwrap_or_default().into(),
                        content,
                        r["ttl"].as_u64().unwrap_or(3600),
                    ));
                }
                (StatusCode::OK, String::new())
            }
            ("DELETE", ["records", id]) => {
                let before = records.len();
                records.retain(|r| r.0 != *id);
                if records.len() == before {
                    return (StatusCode::NOT_FOUND, r#"[{"code":"RECORD_NOT_FOUND","message":"Record not found."}]"#.into());
                }
                (StatusCode::OK, String::new())
            }
            _ => (StatusCode::NOT_FOUND, r#"[{"code":"NOT_FOUND","message":"Not found."}]"#.into()),
        }
    }
}

fn provider(url: &str, key: &str) -> IonosProvider {
    IonosProvider::new(&Ionos { api_key: Some(key.into()), api_key_file: None, base_url: url.into() }).unwrap()
}

fn row(id: &str, name: &str, kind: &str, content: &str) -> (String, String, String, String, String, u64) {
    (id.into(), "z-example".into(), name.into(), kind.into(), content.into(), 3600)
}

#[tokio::test]
async fn the_patch_keeps_other_values_and_cleanup_deletes_only_ours() {
    let records: Records = Arc::new(Mutex::new(vec![
        row("keep-1", "_acme-challenge.example.com", "TXT", "\"someone-else\""),
        row("keep-2", "x._acme-challenge.example.com", "TXT", "\"deeper\""),
        row("keep-3", "example.com", "MX", "mail.example.com"),
    ]));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records), Arc::new(Mutex::new(0))))).await;
    let ionos = provider(&url, "pub123.secret456");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 600));
    ionos.present(&apex).await.unwrap();
    ionos.present(&wildcard).await.unwrap();
    let patch = log.lock().unwrap().iter().rev().find(|s| s.method == Method::PATCH).unwrap().body.clone();
    let sent: Vec<serde_json::Value> = serde_json::from_str(&patch).unwrap();
    assert_eq!(sent.len(), 3, "the set at the name, and only it: {patch}");
    assert_eq!(sent[2], serde_json::json!({"name": "_acme-challenge.example.com", "type": "TXT", "content": "v-wild", "ttl": 600}));
    let contents = |records: &Records| -> Vec<String> { records.lock().unwrap().iter().map(|r| r.4.clone()).collect() };
    assert_eq!(contents(&records).len(), 5);
    assert!(contents(&records).contains(&"\"v-apex\"".to_owned()));

    ionos.cleanup(&wildcard).await.unwrap();
    ionos.cleanup(&wildcard).await.unwrap(); // gone: no error
    ionos.cleanup(&apex).await.unwrap();
    let mut left = contents(&records);
    left.sort();
    assert_eq!(left, ["\"deeper\"", "\"someone-else\"", "mail.example.com"]);
    let ttl = records.lock().unwrap().iter().find(|r| r.4 == "\"someone-else\"").map(|r| r.5);
    assert_eq!(ttl, Some(3600), "the other value's TTL is kept");
}

#[tokio::test]
async fn the_longest_zone_suffix_wins_and_errors_name_the_cause() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records), Arc::new(Mutex::new(0))))).await;
    let ionos = provider(&url, "pub123.secret456");
    ionos.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    let created = records.lock().unwrap()[0].clone();
    assert_eq!((created.1.as_str(), created.2.as_str(), created.5), ("z-sub", "_acme-challenge.a.sub.example.com", 300));

    let unknown = ionos.present(&TxtRecord::new("example.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no zone in this account holds"), "{unknown}");
    let refused = provider(&url, "pub123.wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable());
    assert_eq!(
        refused.to_string(),
        "ionos: GET /v1/zones: HTTP 401: UNAUTHORIZED: The customer is not authorized to do this operation."
    );
}

#[test]
fn the_secret_comes_from_legos_variable_and_never_shows_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[ionos]\n").unwrap();
    settings.read_secrets_from("dns", &Env::from_vars([("IONOS_API_KEY", "prefix.ionos-secret")])).unwrap();
    settings.validate("dns").unwrap();
    let table = settings.provider_settings::<Ionos>().unwrap();
    assert_eq!(table.api_key.as_deref(), Some("prefix.ionos-secret"));
    assert!(!format!("{settings:?}").contains("ionos-secret"));
}

#[tokio::test]
async fn two_values_presented_at_once_both_stay() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records), Arc::new(Mutex::new(0))))).await;
    let ionos = provider(&url, "pub123.secret456");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    let (first, second) = tokio::join!(ionos.present(&apex), ionos.present(&wildcard));
    first.unwrap();
    second.unwrap();
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
}
