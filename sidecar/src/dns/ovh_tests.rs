use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// The mock API's clock runs this far ahead of ours: requests must use `/auth/time`.
const SKEW: i64 = 1000;

#[derive(Default)]
struct State {
    zones: Vec<&'static str>,
    /// id -> (zone, subDomain, target, ttl).
    records: BTreeMap<u64, (String, String, String, u64)>,
    refreshes: Vec<String>,
    next_id: u64,
}

type Shared = Arc<Mutex<State>>;

fn ovh_error(class: &str, code: &str, http: &str, message: &str) -> String {
    json!({ "class": class, "errorCode": code, "httpCode": http, "message": message }).to_string()
}

/// OVH's `/domain/zone` subset. Every request but `/auth/time` is checked
/// like the API does: the application and consumer keys known, the timestamp
/// in the API's clock, and the signature recomputed from the full URL and
/// the body received.
fn api(state: Shared, base: Arc<Mutex<String>>) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let path = seen.target.split('?').next().unwrap_or_default().to_owned();
        if path == "/1.0/auth/time" {
            return (StatusCode::OK, (unix_now() + SKEW).to_string());
        }
        if header("x-ovh-application") != "app-key" {
            return (StatusCode::FORBIDDEN, ovh_error("Client::Forbidden", "INVALID_KEY", "403 Forbidden", "This application key is invalid"));
        }
        if header("x-ovh-consumer") != "consumer-key" {
            return (StatusCode::FORBIDDEN, ovh_error("Client::Forbidden", "INVALID_CREDENTIAL", "403 Forbidden", "This credential is not valid"));
        }
        let ts: i64 = header("x-ovh-timestamp").parse().unwrap_or(0);
        if (ts - (unix_now() + SKEW)).abs() > 5 {
            return (StatusCode::BAD_REQUEST, ovh_error("Client::BadRequest", "QUERY_TIME_OUT", "400 Bad Request", "Query out of time"));
        }
        let url = format!("{}{}", base.lock().unwrap(), seen.target);
        let expected = signature("app-secret", "consumer-key", seen.method.as_str(), &url, &seen.body, ts);
        if header("x-ovh-signature") != expected {
            return (StatusCode::BAD_REQUEST, ovh_error("Client::BadRequest", "INVALID_SIGNATURE", "400 Bad Request", "Invalid signature"));
        }
        let mut state = state.lock().unwrap();
        let parts: Vec<String> = path.trim_start_matches("/1.0/domain/zone/").split('/').map(str::to_owned).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let not_found = (StatusCode::NOT_FOUND, ovh_error("Client::NotFound", "", "404 Not Found", "This service does not exist"));
        if !path.starts_with("/1.0/domain/zone/") || !state.zones.contains(&parts[0]) {
            return not_found;
        }
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", [zone]) => (StatusCode::OK, json!({ "name": zone, "dnssecSupported": true, "hasDnsAnycast": false }).to_string()),
            ("POST", [zone, "record"]) => {
                let body: Value = serde_json::from_str(&seen.body).unwrap();
                assert_eq!(body["fieldType"], "TXT");
                state.next_id += 1;
                let id = state.next_id;
                let record = (
                    (*zone).to_owned(),
                    body["subDomain"].as_str().unwrap().to_owned(),
                    body["target"].as_str().unwrap().to_owned(),
                    body["ttl"].as_u64().unwrap(),
                );
                state.records.insert(id, record);
                (StatusCode::OK, json!({ "id": id, "zone": zone, "fieldType": "TXT", "subDomain": body["subDomain"], "target": format!("\"{}\"", body["target"].as_str().unwrap()), "ttl": body["ttl"] }).to_string())
            }
            ("GET", [zone, "record"]) => {
                let sub = query(&seen.target, "subDomain").unwrap_or_default();
                assert_eq!(query(&seen.target, "fieldType"), Some("TXT"));
                let ids: Vec<u64> = state.records.iter().filter(|(_, r)| r.0 == *zone && r.1 == sub).map(|(id, _)| *id).collect();
                (StatusCode::OK, json!(ids).to_string())
            }
            ("GET", [zone, "record", id]) => match state.records.get(&id.parse().unwrap_or(0)) {
                // OVH shows TXT targets quoted.
                Some(r) if r.0 == *zone => (StatusCode::OK, json!({ "id": id.parse::<u64>().unwrap(), "zone": zone, "fieldType": "TXT", "subDomain": r.1, "target": format!("\"{}\"", r.2), "ttl": r.3 }).to_string()),
                _ => not_found,
            },
            ("DELETE", [_zone, "record", id]) => match state.records.remove(&id.parse().unwrap_or(0)) {
                Some(_) => (StatusCode::OK, "null".into()),
                None => not_found,
            },
            ("POST", [zone, "refresh"]) => {
                assert_eq!(seen.body, "");
                state.refreshes.push((*zone).to_owned());
                (StatusCode::OK, "null".into())
            }
            _ => not_found,
        }
    }
}

async fn mock() -> (String, Shared) {
    let state: Shared = Arc::default();
    state.lock().unwrap().zones = vec!["example.com", "sub.example.com"];
    let base = Arc::new(Mutex::new(String::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&state), Arc::clone(&base)))).await;
    *base.lock().unwrap() = url.clone();
    (format!("{url}/1.0"), state)
}

fn settings(endpoint: &str, consumer_key: &str) -> Ovh {
    Ovh {
        endpoint: Some(endpoint.to_owned()),
        application_key: Some("app-key".into()),
        application_secret: Some("app-secret".into()),
        application_secret_file: None,
        consumer_key: Some(consumer_key.into()),
        consumer_key_file: None,
    }
}

fn targets(state: &Shared) -> Vec<(String, String, String)> {
    state.lock().unwrap().records.values().map(|r| (r.0.clone(), r.1.clone(), r.2.clone())).collect()
}

#[tokio::test]
async fn signed_requests_create_refresh_and_delete_only_our_record() {
    let (endpoint, state) = mock().await;
    state.lock().unwrap().records.insert(50, ("sub.example.com".into(), "_acme-challenge.a".into(), "someone-else".into(), 300));
    let provider = OvhProvider::new(&settings(&endpoint, "consumer-key")).unwrap();
    let (apex, wildcard) = (TxtRecord::new("a.sub.example.com", "v-apex", 30), TxtRecord::new("*.a.sub.example.com", "v-wild", 30));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    assert_eq!(state.lock().unwrap().records[&1].3, 60, "TTL raised to OVH's minimum");
    provider.cleanup(&wildcard).await.unwrap();
    provider.cleanup(&wildcard).await.unwrap(); // gone: nothing to do
    let sub = |v: &str| ("sub.example.com".to_owned(), "_acme-challenge.a".to_owned(), v.to_owned());
    assert_eq!(targets(&state), [sub("v-apex"), sub("someone-else")]);
    assert_eq!(state.lock().unwrap().refreshes, ["sub.example.com"; 3]);

    // The zone is the longest suffix: a name in the parent lands there.
    provider.present(&TxtRecord::new("example.com", "v-top", 60)).await.unwrap();
    assert!(targets(&state).contains(&("example.com".into(), "_acme-challenge".into(), "v-top".into())));
}

#[tokio::test]
async fn a_refused_consumer_key_is_a_clear_permanent_error() {
    let (endpoint, state) = mock().await;
    let provider = OvhProvider::new(&settings(&endpoint, "revoked")).unwrap();
    let err = provider.present(&TxtRecord::new("example.com", "v1", 60)).await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert_eq!(text, "ovh: GET /domain/zone/<zone>: HTTP 403: This credential is not valid (INVALID_CREDENTIAL)");
    assert!(state.lock().unwrap().records.is_empty());
}

#[test]
fn signatures_and_endpoints_follow_ovh() {
    // The documented recipe: "$1$" + SHA1_HEX(AS+"+"+CK+"+"+METHOD+"+"+QUERY+"+"+BODY+"+"+TSTAMP).
    let text = "as+ck+GET+https://eu.api.ovh.com/1.0/domain/zone+ +1366560945";
    let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature("as", "ck", "GET", "https://eu.api.ovh.com/1.0/domain/zone", " ", 1_366_560_945), format!("$1${hex}"));
    assert_eq!(endpoint_url(None).unwrap(), "https://eu.api.ovh.com/1.0");
    assert_eq!(endpoint_url(Some("ovh-us")).unwrap(), "https://api.us.ovhcloud.com/1.0");
    assert!(endpoint_url(Some("ovh-mars")).unwrap_err().contains("ovh-eu, ovh-ca"));

    let env = Env::from_vars([("OVH_APPLICATION_KEY", "ak"), ("OVH_APPLICATION_SECRET", "as"), ("OVH_CONSUMER_KEY", "ck"), ("OVH_ENDPOINT", "ovh-ca")]);
    let mut config: Ovh = toml::from_str("").unwrap();
    config.read_secrets("ovh", &env).unwrap();
    config.validate("ovh").unwrap();
    assert_eq!(config.endpoint.as_deref(), Some("ovh-ca"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("\"as\"") && !debug.contains("\"ck\""), "{debug}");
}
