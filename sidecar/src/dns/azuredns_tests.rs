use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

const ZONES: &str =
    "/subscriptions/sub-1/resourceGroups/rg-dns/providers/Microsoft.Network/dnsZones";

fn decode(value: &str) -> String {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn fields(body: &str) -> BTreeMap<String, String> {
    body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

#[derive(Default)]
struct State {
    zones: Vec<&'static str>,
    /// (zone, relative name) -> (etag, TTL, values).
    sets: BTreeMap<(String, String), (u32, u32, Vec<String>)>,
    tokens_issued: u32,
    writes: u32,
}

type Shared = Arc<Mutex<State>>;

fn arm_error(code: &str, message: &str) -> String {
    json!({ "error": { "code": code, "message": message } }).to_string()
}

/// Entra ID's v2.0 token endpoint (client secret or client assertion), the
/// instance metadata service (`Metadata: true`), and ARM's DNS zones and TXT
/// record sets with etags; every ARM call needs an issued token and the
/// api-version.
fn api(state: Shared) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let mut state = state.lock().unwrap();
        let path = seen.target.split('?').next().unwrap_or_default().to_owned();
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if path == "/tenant-1/oauth2/v2.0/token" {
            let form = fields(&seen.body);
            assert_eq!(form["grant_type"], "client_credentials");
            assert_eq!(form["scope"], "https://management.azure.com/.default");
            assert_eq!(form["client_id"], "app-1");
            let good = form.get("client_secret").is_some_and(|s| s == "s3cret")
                || (form.get("client_assertion_type").is_some_and(|t| t == ASSERTION_TYPE)
                    && form.get("client_assertion").is_some_and(|a| a == "k8s-sa-token"));
            if !good {
                return (StatusCode::UNAUTHORIZED, json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215] }).to_string());
            }
            state.tokens_issued += 1;
            return (StatusCode::OK, r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.arm"}"#.into());
        }
        if path == IMDS_PATH {
            if header("metadata") != "true" {
                return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#.into());
            }
            assert_eq!(query(&seen.target, "resource").map(decode).as_deref(), Some(RESOURCE));
            assert_eq!(query(&seen.target, "api-version"), Some("2018-02-01"));
            state.tokens_issued += 1;
            return (StatusCode::OK, r#"{"access_token":"eyJ.arm","expires_in":"3599","expires_on":"1700000000","resource":"https://management.azure.com/","token_type":"Bearer"}"#.into());
        }
        if header("authorization") != "Bearer eyJ.arm" {
            return (StatusCode::UNAUTHORIZED, arm_error("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid."));
        }
        if query(&seen.target, "api-version") != Some(API_VERSION) {
            return (StatusCode::BAD_REQUEST, arm_error("MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."));
        }
        let Some(rest) = path.strip_prefix(ZONES) else {
            return (StatusCode::NOT_FOUND, arm_error("ResourceGroupNotFound", "Resource group 'x' could not be found."));
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let not_found = |what: &str| (StatusCode::NOT_FOUND, arm_error("ResourceNotFound", &format!("The Resource '{what}' under resource group 'rg-dns' was not found.")));
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", [zone]) if state.zones.contains(zone) => (StatusCode::OK, json!({ "name": zone, "type": "Microsoft.Network/dnszones", "properties": {} }).to_string()),
            ("GET", [zone]) => not_found(&format!("Microsoft.Network/dnszones/{zone}")),
            (method, [zone, "TXT", name]) => {
                let key = ((*zone).to_owned(), (*name).to_owned());
                let current = state.sets.get(&key).cloned();
                let etag = current.as_ref().map(|c| format!("etag-{}", c.0));
                let if_match = header("if-match");
                let fails = (!if_match.is_empty() && Some(&if_match) != etag.as_ref())
                    || (header("if-none-match") == "*" && current.is_some());
                let as_json = |c: &(u32, u32, Vec<String>)| {
                    let records: Vec<Value> = c.2.iter().map(|v| json!({ "value": [v] })).collect();
                    json!({ "name": name, "type": "Microsoft.Network/dnszones/TXT", "etag": format!("etag-{}", c.0), "properties": { "TTL": c.1, "fqdn": format!("{name}.{zone}."), "TXTRecords": records } }).to_string()
                };
                match method {
                    "GET" => current.as_ref().map_or_else(|| not_found(&format!("Microsoft.Network/dnszones/{zone}/TXT/{name}")), |c| (StatusCode::OK, as_json(c))),
                    _ if fails => (StatusCode::PRECONDITION_FAILED, arm_error("PreconditionFailed", "The condition 'If-Match' in the request was not satisfied.")),
                    "PUT" => {
                        let body: Value = serde_json::from_str(&seen.body).unwrap();
                        let ttl = body["properties"]["TTL"].as_u64().unwrap() as u32;
                        let values: Vec<String> = body["properties"]["TXTRecords"].as_array().unwrap().iter().map(|r| r["value"][0].as_str().unwrap().to_owned()).collect();
                        state.writes += 1;
                        let set = (state.writes, ttl, values);
                        let text = as_json(&set);
                        let created = current.is_none();
                        state.sets.insert(key, set);
                        (if created { StatusCode::CREATED } else { StatusCode::OK }, text)
                    }
                    "DELETE" => {
                        state.writes += 1;
                        state.sets.remove(&key);
                        (StatusCode::OK, String::new())
                    }
                    _ => (StatusCode::METHOD_NOT_ALLOWED, arm_error("MethodNotAllowed", "no")),
                }
            }
            _ => not_found(&path),
        }
    }
}

async fn mock() -> (String, Shared, Arc<Mutex<Vec<Seen>>>) {
    let state: Shared = Arc::default();
    state.lock().unwrap().zones = vec!["example.com", "sub.example.com"];
    let (url, log) = serve(Arc::new(api(Arc::clone(&state)))).await;
    (url, state, log)
}

fn settings(url: &str) -> AzureDns {
    let mut settings: AzureDns = toml::from_str("").unwrap();
    settings.subscription_id = Some("sub-1".into());
    settings.resource_group = Some("rg-dns".into());
    settings.tenant_id = Some("tenant-1".into());
    settings.client_id = Some("app-1".into());
    settings.authority_host = Some(url.to_owned());
    settings.imds_url = url.to_owned();
    settings.base_url = url.to_owned();
    settings
}

fn values(state: &Shared, zone: &str, name: &str) -> Vec<String> {
    state.lock().unwrap().sets.get(&(zone.to_owned(), name.to_owned())).map(|s| s.2.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_client_secret_signs_in_and_values_coexist_in_the_longest_suffix_zone() {
    let (url, state, log) = mock().await;
    state.lock().unwrap().sets.insert(("sub.example.com".into(), "_acme-challenge.a".into()), (0, 300, vec!["someone-else".into()]));
    let mut config = settings(&url);
    config.client_secret = Some("s3cret".into());
    let provider = AzureDnsProvider::new(&config).unwrap();
    let (apex, wildcard) = (TxtRecord::new("a.sub.example.com", "v-apex", 60), TxtRecord::new("*.a.sub.example.com", "v-wild", 60));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    assert_eq!(values(&state, "sub.example.com", "_acme-challenge.a"), ["someone-else", "v-apex", "v-wild"]);
    provider.cleanup(&wildcard).await.unwrap();
    provider.cleanup(&wildcard).await.unwrap();
    assert_eq!(values(&state, "sub.example.com", "_acme-challenge.a"), ["someone-else", "v-apex"]);
    assert_eq!(state.lock().unwrap().writes, 3);
    assert_eq!(state.lock().unwrap().tokens_issued, 1, "the token is cached");

    let log = log.lock().unwrap();
    let put = log.iter().find(|s| s.method == Method::PUT).unwrap();
    assert_eq!(put.target, format!("{ZONES}/sub.example.com/TXT/_acme-challenge.a?api-version={API_VERSION}"));
    assert_eq!(put.headers["if-match"], "etag-0", "writes are conditional on the set read");
    let body: Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(body["properties"]["TTL"], 60);
    assert_eq!(body["properties"]["TXTRecords"], json!([{ "value": ["someone-else"] }, { "value": ["v-apex"] }]));
    assert!(log.iter().any(|s| s.target.starts_with(&format!("{ZONES}/a.sub.example.com?"))), "the longest name was tried first");
}

#[tokio::test]
async fn managed_identity_and_workload_identity_get_tokens_and_the_last_value_deletes_the_set() {
    let (url, state, log) = mock().await;
    let provider = AzureDnsProvider::new(&settings(&url)).unwrap(); // nothing else: managed identity
    let record = TxtRecord::new("example.com", "v1", 60);
    provider.present(&record).await.unwrap();
    assert_eq!(values(&state, "example.com", "_acme-challenge"), ["v1"]);
    assert_eq!(log.lock().unwrap().iter().find(|s| s.method == Method::PUT).unwrap().headers["if-none-match"], "*");

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "k8s-sa-token\n").unwrap();
    let mut workload = settings(&url);
    workload.federated_token_file = Some(token_file);
    workload.zone_name = Some("example.com".into());
    let provider = AzureDnsProvider::new(&workload).unwrap();
    provider.cleanup(&record).await.unwrap();
    assert!(state.lock().unwrap().sets.is_empty());
    assert_eq!(state.lock().unwrap().tokens_issued, 2);
}

#[tokio::test]
async fn a_refused_client_secret_is_a_clear_permanent_error() {
    let (url, state, _) = mock().await;
    let mut config = settings(&url);
    config.client_secret = Some("wrong".into());
    let provider = AzureDnsProvider::new(&config).unwrap();
    let err = provider.present(&TxtRecord::new("example.com", "v1", 60)).await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.starts_with("azuredns: getting a token (client secret): HTTP 401: invalid_client: AADSTS7000215"), "{text}");
    assert_eq!(state.lock().unwrap().writes, 0);
}

#[test]
fn settings_come_from_lego_variables_and_name_what_is_missing() {
    let env = Env::from_vars([
        ("AZURE_CLIENT_ID", "app-1"),
        ("AZURE_CLIENT_SECRET", "s3cret"),
        ("AZURE_TENANT_ID", "tenant-1"),
        ("AZURE_SUBSCRIPTION_ID", "sub-1"),
        ("AZURE_RESOURCE_GROUP", "rg"),
    ]);
    let mut config: AzureDns = toml::from_str("").unwrap();
    config.read_secrets("azuredns", &env).unwrap();
    config.validate("azuredns").unwrap();
    assert_eq!(config.method(), Ok(SignIn::ClientSecret));
    assert!(!format!("{config:?}").contains("s3cret"));

    let mut workload: AzureDns = toml::from_str("subscription_id = 's'\nresource_group = 'r'\nauth_method = 'wli'").unwrap();
    workload.read_secrets("azuredns", &Env::from_vars([])).unwrap();
    assert_eq!(workload.validate("azuredns").unwrap_err().field, "azuredns.tenant_id");
    let none: AzureDns = toml::from_str("").unwrap();
    assert_eq!(none.validate("azuredns").unwrap_err().field, "azuredns.subscription_id");
    let msi: AzureDns = toml::from_str("subscription_id = 's'\nresource_group = 'r'").unwrap();
    msi.validate("azuredns").unwrap();
}
