use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::dns::mock_tests::{serve, Seen};

#[derive(Default)]
struct State {
    zones: Vec<&'static str>,
    /// (zone, name) -> (ttl, values as Gandi shows them: quoted).
    sets: BTreeMap<(String, String), (u64, Vec<String>)>,
}

type Shared = Arc<Mutex<State>>;

fn gandi_error(code: u16, object: &str, cause: &str, message: &str) -> String {
    json!({ "code": code, "message": message, "object": object, "cause": cause }).to_string()
}

/// LiveDNS's subset: a personal access token or an API key, domains, and
/// TXT rrsets that are replaced whole by `PUT`.
fn api(state: Shared) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if auth != "Bearer pat-good" && auth != "Apikey key-good" {
            return (StatusCode::UNAUTHORIZED, gandi_error(401, "HTTPUnauthorized", "Unauthorized", "The server could not verify that you authorized to access the document you requested."));
        }
        let mut state = state.lock().unwrap();
        let parts: Vec<&str> = seen.target.trim_start_matches('/').split('/').collect();
        let not_found = (StatusCode::NOT_FOUND, gandi_error(404, "HTTPNotFound", "Not Found", "The resource could not be found."));
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["domains", zone]) if state.zones.contains(zone) => (StatusCode::OK, json!({ "fqdn": zone, "automatic_snapshots": true }).to_string()),
            (method, ["domains", zone, "records", name, "TXT"]) if state.zones.contains(zone) => {
                let key = ((*zone).to_owned(), (*name).to_owned());
                match method {
                    "GET" => match state.sets.get(&key) {
                        Some((ttl, values)) => (StatusCode::OK, json!({ "rrset_name": name, "rrset_type": "TXT", "rrset_ttl": ttl, "rrset_values": values }).to_string()),
                        None => not_found,
                    },
                    "PUT" => {
                        let body: Value = serde_json::from_str(&seen.body).unwrap();
                        let ttl = body["rrset_ttl"].as_u64().unwrap();
                        assert!(ttl >= 300, "LiveDNS refuses a TTL under 300");
                        let values = body["rrset_values"].as_array().unwrap().iter().map(|v| format!("\"{}\"", v.as_str().unwrap().trim_matches('"'))).collect();
                        state.sets.insert(key, (ttl, values));
                        (StatusCode::CREATED, r#"{"message":"DNS Record Created"}"#.into())
                    }
                    "DELETE" => match state.sets.remove(&key) {
                        Some(_) => (StatusCode::NO_CONTENT, String::new()),
                        None => not_found,
                    },
                    _ => not_found,
                }
            }
            _ => not_found,
        }
    }
}

async fn mock() -> (String, Shared) {
    let state: Shared = Arc::default();
    state.lock().unwrap().zones = vec!["example.com", "sub.example.com"];
    let (url, _) = serve(Arc::new(api(Arc::clone(&state)))).await;
    (url, state)
}

fn settings(url: &str, token: Option<&str>, key: Option<&str>) -> GandiV5 {
    GandiV5 {
        personal_access_token: token.map(Into::into),
        personal_access_token_file: None,
        api_key: key.map(Into::into),
        api_key_file: None,
        base_url: url.to_owned(),
    }
}

fn values(state: &Shared, zone: &str, name: &str) -> Vec<String> {
    state.lock().unwrap().sets.get(&(zone.to_owned(), name.to_owned())).map(|s| s.1.clone()).unwrap_or_default()
}

#[tokio::test]
async fn values_coexist_in_the_longest_zone_and_cleanup_removes_only_ours() {
    let (url, state) = mock().await;
    state.lock().unwrap().sets.insert(("sub.example.com".into(), "_acme-challenge.a".into()), (600, vec!["\"someone-else\"".into()]));
    let provider = GandiV5Provider::new(&settings(&url, Some("pat-good"), None)).unwrap();
    let (apex, wildcard) = (TxtRecord::new("a.sub.example.com", "v-apex", 60), TxtRecord::new("*.a.sub.example.com", "v-wild", 60));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    assert_eq!(values(&state, "sub.example.com", "_acme-challenge.a"), ["\"someone-else\"", "\"v-apex\"", "\"v-wild\""]);
    assert_eq!(state.lock().unwrap().sets[&("sub.example.com".into(), "_acme-challenge.a".into())].0, 300);
    provider.cleanup(&wildcard).await.unwrap();
    provider.cleanup(&wildcard).await.unwrap();
    assert_eq!(values(&state, "sub.example.com", "_acme-challenge.a"), ["\"someone-else\"", "\"v-apex\""]);

    // An API key works too; the last value removed deletes the rrset.
    let by_key = GandiV5Provider::new(&settings(&url, None, Some("key-good"))).unwrap();
    let top = TxtRecord::new("example.com", "v-top", 300);
    by_key.present(&top).await.unwrap();
    assert_eq!(values(&state, "example.com", "_acme-challenge"), ["\"v-top\""]);
    by_key.cleanup(&top).await.unwrap();
    assert!(!state.lock().unwrap().sets.contains_key(&("example.com".into(), "_acme-challenge".into())));
}

#[tokio::test]
async fn a_refused_token_is_a_clear_permanent_error() {
    let (url, state) = mock().await;
    let provider = GandiV5Provider::new(&settings(&url, Some("pat-revoked"), None)).unwrap();
    let err = provider.present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().starts_with("gandiv5: GET /domains/<fqdn>: HTTP 401: The server could not verify"), "{err}");
    assert!(err.to_string().ends_with("(Unauthorized)"), "{err}");
    assert!(state.lock().unwrap().sets.is_empty());
}

#[test]
fn credentials_come_from_lego_variables_and_debug_hides_them() {
    let mut config: GandiV5 = toml::from_str("").unwrap();
    config.read_secrets("gandiv5", &Env::from_vars([("GANDIV5_PERSONAL_ACCESS_TOKEN", "pat-xyz")])).unwrap();
    config.validate("gandiv5").unwrap();
    assert!(!format!("{config:?}").contains("pat-xyz"));
    let empty: GandiV5 = toml::from_str("").unwrap();
    assert_eq!(empty.validate("gandiv5").unwrap_err().field, "gandiv5.personal_access_token");
}
