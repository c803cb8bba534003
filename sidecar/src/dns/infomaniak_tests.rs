use super::*;
use crate::dns::mock_tests::{serve, Seen};

/// (id, zone, source, target, ttl)
type Records = Arc<Mutex<Vec<(u64, String, String, String, u64)>>>;

const ZONES: [&str; 2] = ["example.com", "sub.example.com"];

fn error(code: &str, description: &str) -> String {
    format!(r#"{{"result":"error","error":{{"code":"{code}","description":"{description}"}}}}"#)
}

/// API v2's documented subset: zone existence, records created in a zone
/// and deleted by id, bearer auth, the `{"result","data","error"}` envelope.
fn api(records: Records) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth != "Bearer ik-token" {
            return (StatusCode::UNAUTHORIZED, error("not_authorized", "Authorization required"));
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut records = records.lock().unwrap();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["2", "zones", zone, "exists"]) if ZONES.contains(zone) => {
                (StatusCode::OK, r#"{"result":"success","data":true}"#.into())
            }
            ("GET", ["2", "zones", _, "exists"]) => (
                StatusCode::NOT_FOUND,
                r#"{"result":"error","error":{"code":"object_not_found","description":"Object not found","context":{"model":"DelegatedSubDomain"}}}"#.into(),
            ),
            ("POST", ["2", "zones", zone, "records"]) if ZONES.contains(zone) => {
                assert_eq!(seen.target.split_once('?').map(|q| q.1), Some("with=idn"));
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                if body["ttl"].as_u64().unwrap_or(0) < 60 {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        r#"{"result":"error","error":{"code":"validation_failed","description":"Validation failed","errors":[{"code":"attribute_min_value","description":"The ttl must be at least 60","context":{"attribute":"ttl"}}]}}"#.into(),
                    );
                }
                let id = 32824 + records.len() as u64;
                let source = body["source"].as_str().unwrap_or_default().to_owned();
                let target = body["target"].as_str().unwrap_or_default().to_owned();
                records.push((id, (*zone).to_owned(), source.clone(), target.clone(), body["ttl"].as_u64().unwrap_or(0)));
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"result":"success","data":{{"id":{id},"source":"{source}","source_idn":"{source}.{zone}","target":"{target}","ttl":{},"type":"TXT","updated_at":1779826643}}}}"#,
                        body["ttl"]
                    ),
                )
            }
            ("DELETE", ["2", "zones", zone, "records", id]) => {
                let id: u64 = id.parse().unwrap_or(0);
                let before = records.len();
                records.retain(|r| !(r.0 == id && r.1 == *zone));
                if records.len() == before {
                    return (StatusCode::NOT_FOUND, error("object_not_found", "Object not found"));
                }
                (StatusCode::OK, r#"{"result":"success","data":true}"#.into())
            }
            _ => (StatusCode::NOT_FOUND, error("route_not_found", "Route not found")),
        }
    }
}

fn provider(url: &str, token: &str) -> InfomaniakProvider {
    InfomaniakProvider::new(&Infomaniak {
        access_token: Some(token.into()),
        access_token_file: None,
        base_url: Some(url.into()),
    })
    .unwrap()
}

#[tokio::test]
async fn values_coexist_and_cleanup_deletes_only_the_record_we_created() {
    let records: Records =
        Arc::new(Mutex::new(vec![(1, "example.com".into(), "_acme-challenge".into(), "someone-else".into(), 300)]));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let infomaniak = provider(&url, "ik-token");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 10), TxtRecord::new("*.example.com", "v-wild", 300));
    infomaniak.present(&apex).await.unwrap();
    infomaniak.present(&wildcard).await.unwrap();
    assert_eq!(records.lock().unwrap()[1], (32825, "example.com".to_owned(), "_acme-challenge".to_owned(), "v-apex".to_owned(), 60));
    infomaniak.cleanup(&wildcard).await.unwrap();
    infomaniak.cleanup(&wildcard).await.unwrap(); // gone: no error
    let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.3.clone()).collect();
    assert_eq!(left, ["someone-else", "v-apex"]);
    // Deleted behind our back: still no error.
    records.lock().unwrap().retain(|r| r.3 != "v-apex");
    infomaniak.cleanup(&apex).await.unwrap();
}

#[tokio::test]
async fn the_longest_zone_suffix_wins_and_errors_name_the_cause() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let infomaniak = provider(&url, "ik-token");
    infomaniak.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    let created = records.lock().unwrap()[0].clone();
    assert_eq!((created.1.as_str(), created.2.as_str()), ("sub.example.com", "_acme-challenge.a"));
    let asked: Vec<String> = log.lock().unwrap().iter().map(|s| s.target.clone()).collect();
    assert_eq!(asked[..2], ["/2/zones/a.sub.example.com/exists", "/2/zones/sub.example.com/exists"]);

    let unknown = infomaniak.present(&TxtRecord::new("example.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no zone in this account holds"), "{unknown}");
    let refused = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable());
    assert_eq!(
        refused.to_string(),
        "infomaniak: GET /2/zones/<zone>/exists: HTTP 401: [not_authorized] Authorization required"
    );
}

#[test]
fn the_secret_comes_from_legos_variable_and_never_shows_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[infomaniak]\n").unwrap();
    settings.read_secrets_from("dns", &Env::from_vars([("INFOMANIAK_ACCESS_TOKEN", "prefix.infomaniak-secret")])).unwrap();
    settings.validate("dns").unwrap();
    let table = settings.provider_settings::<Infomaniak>().unwrap();
    assert_eq!(table.access_token.as_deref(), Some("prefix.infomaniak-secret"));
    assert!(!format!("{settings:?}").contains("infomaniak-secret"));
}
