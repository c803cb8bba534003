use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// (id, zone, name, content, ttl)
type Records = Arc<Mutex<Vec<(u64, String, String, String, u64)>>>;

const ZONES: [&str; 2] = ["example.com", "sub.example.com"];

/// DNSimple v2's documented subset: whoami, zones by name, records filtered
/// by name and type with pagination (two per page here), bearer auth, the
/// `{"message": ...}` error bodies.
fn api(records: Records) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth == "Bearer user-token" && seen.target == "/v2/whoami" {
            return (StatusCode::OK, r#"{"data":{"user":{"id":7,"email":"u@example.com"},"account":null}}"#.into());
        }
        if auth != "Bearer account-token" {
            return (StatusCode::UNAUTHORIZED, r#"{"message":"Authentication failed"}"#.into());
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut records = records.lock().unwrap();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["v2", "whoami"]) => (
                StatusCode::OK,
                r#"{"data":{"user":null,"account":{"id":1010,"email":"a@example.com","plan_identifier":"teams-v1-monthly"}}}"#.into(),
            ),
            ("GET", ["v2", "1010", "zones", zone]) if ZONES.contains(zone) => (
                StatusCode::OK,
                format!(r#"{{"data":{{"id":1,"account_id":1010,"name":"{zone}","reverse":false}}}}"#),
            ),
            ("GET", ["v2", "1010", "zones", zone]) => {
                (StatusCode::NOT_FOUND, format!(r#"{{"message":"Zone `{zone}` not found"}}"#))
            }
            ("POST", ["v2", "1010", "zones", zone, "records"]) => {
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                if body["content"].as_str().unwrap_or_default().is_empty() {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"message":"Validation failed","errors":{"content":["can't be blank"]}}"#.into(),
                    );
                }
                assert_eq!(body["type"], "TXT");
                let id = 100 + records.len() as u64;
                records.push((
                    id,
                    (*zone).to_owned(),
                    body["name"].as_str().unwrap_or_default().to_owned(),
                    body["content"].as_str().unwrap_or_default().to_owned(),
                    body["ttl"].as_u64().unwrap_or(0),
                ));
                (StatusCode::CREATED, format!(r#"{{"data":{{"id":{id},"zone_id":"{zone}","type":"TXT"}}}}"#))
            }
            ("GET", ["v2", "1010", "zones", zone, "records"]) => {
                let name = query(&seen.target, "name").unwrap_or_default();
                assert_eq!(query(&seen.target, "type"), Some("TXT"));
                let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let matching: Vec<_> = records.iter().filter(|r| r.1 == *zone && r.2 == name).collect();
                let pages = matching.len().div_ceil(2).max(1);
                let items: Vec<String> = matching
                    .iter()
                    .skip((page - 1) * 2)
                    .take(2)
                    .map(|r| {
                        // DNSimple answers TXT content quoted.
                        format!(
                            r#"{{"id":{},"zone_id":"{}","name":"{}","content":"\"{}\"","ttl":{},"type":"TXT"}}"#,
                            r.0, r.1, r.2, r.3, r.4
                        )
                    })
                    .collect();
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"data":[{}],"pagination":{{"current_page":{page},"per_page":2,"total_entries":{},"total_pages":{pages}}}}}"#,
                        items.join(","),
                        matching.len()
                    ),
                )
            }
            ("DELETE", ["v2", "1010", "zones", _, "records", id]) => {
                let id: u64 = id.parse().unwrap_or(0);
                records.retain(|r| r.0 != id);
                (StatusCode::NO_CONTENT, String::new())
            }
            _ => (StatusCode::NOT_FOUND, r#"{"message":"Not found"}"#.into()),
        }
    }
}

fn provider(url: &str, token: &str) -> DnsimpleProvider {
    DnsimpleProvider::new(&Dnsimple { oauth_token: Some(token.into()), oauth_token_file: None, base_url: url.into() })
        .unwrap()
}

#[tokio::test]
async fn values_coexist_and_cleanup_deletes_only_ours_across_pages() {
    let records: Records = Arc::new(Mutex::new(vec![(
        1,
        "example.com".into(),
        "_acme-challenge".into(),
        "someone-else".into(),
        3600,
    )]));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let dnsimple = provider(&url, "account-token");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 10), TxtRecord::new("*.example.com", "v-wild", 120));
    dnsimple.present(&apex).await.unwrap();
    dnsimple.present(&wildcard).await.unwrap();
    {
        let records = records.lock().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!((records[1].2.as_str(), records[1].4), ("_acme-challenge", 60), "relative name, TTL clamped to 60");
        assert_eq!(records[2].4, 120);
    }
    dnsimple.cleanup(&wildcard).await.unwrap(); // on the second page
    let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.3.clone()).collect();
    assert_eq!(left, ["someone-else", "v-apex"]);
    dnsimple.cleanup(&wildcard).await.unwrap(); // gone: no error
    assert!(log.lock().unwrap().iter().any(|s| s.target.contains("page=2")), "the second page was read");
}

#[tokio::test]
async fn the_longest_zone_suffix_wins_and_errors_name_the_cause() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let dnsimple = provider(&url, "account-token");
    dnsimple.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    assert_eq!(records.lock().unwrap()[0].1, "sub.example.com");
    assert_eq!(records.lock().unwrap()[0].2, "_acme-challenge.a");
    let asked: Vec<String> = log.lock().unwrap().iter().map(|s| s.target.clone()).collect();
    assert_eq!(asked[..2], ["/v2/whoami", "/v2/1010/zones/a.sub.example.com"]);

    let unknown = dnsimple.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no zone in account 1010 holds _acme-challenge.other.org."), "{unknown}");
    let invalid = dnsimple.present(&TxtRecord::new("example.com", "", 60)).await.unwrap_err();
    assert!(invalid.to_string().contains("HTTP 400: Validation failed"), "{invalid}");

    let refused = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert_eq!(refused.to_string(), "dnsimple: GET /v2/whoami: HTTP 401: Authentication failed");
    let user = provider(&url, "user-token").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(user.to_string().contains("user token"), "{user}");
}

#[test]
fn the_token_comes_from_legos_variable_and_never_shows_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[dnsimple]\n").unwrap();
    settings.read_secrets_from("dns", &Env::from_vars([("DNSIMPLE_OAUTH_TOKEN", "dnsimple-secret")])).unwrap();
    settings.validate("dns").unwrap();
    let dnsimple = settings.provider_settings::<Dnsimple>().unwrap();
    assert_eq!(dnsimple.oauth_token.as_deref(), Some("dnsimple-secret"));
    assert!(!format!("{settings:?}").contains("dnsimple-secret"));
}
