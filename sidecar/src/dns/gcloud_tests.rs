use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use ring::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// Two RSA test keys in PKCS#8 PEM: the mock trusts the first only.
fn keys() -> &'static [String; 2] {
    static KEYS: OnceLock<[String; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let pem = || {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string()
        };
        [pem(), pem()]
    })
}

fn key_json(private_key: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "kid-1",
        "private_key": private_key,
        "client_email": "acme@proj-1.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": token_uri,
    })
    .to_string()
}

fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[derive(Default)]
struct State {
    /// (zone name, dnsName, visibility), in list order.
    zones: Vec<(String, String, String)>,
    /// (zone, record name) -> the TXT set.
    sets: BTreeMap<(String, String), RecordSet>,
    changes: u32,
    tokens_issued: u32,
}

type Shared = Arc<Mutex<State>>;

fn google_error(code: u16, message: &str, status: &str) -> String {
    json!({ "error": { "code": code, "message": message, "errors": [{ "message": message, "domain": "global", "reason": "x" }], "status": status } }).to_string()
}

/// The token endpoint checks the JWT's RS256 signature with the trusted
/// key's public half and its claims; the metadata server wants
/// `Metadata-Flavor: Google`; Cloud DNS wants an issued bearer token, pages
/// zone lists one zone a page, and refuses a change whose deletions are not
/// the set as it is.
fn api(state: Shared, base: Arc<Mutex<String>>) -> impl Fn(&Seen) -> (StatusCode, String) {
    let trusted = {
        let der = pem::parse(&keys()[0]).unwrap();
        RsaKeyPair::from_pkcs8(der.contents()).unwrap().public_key().as_ref().to_vec()
    };
    move |seen| {
        let mut state = state.lock().unwrap();
        let path = seen.target.split('?').next().unwrap_or_default();
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if path == "/token" {
            let fields: BTreeMap<String, String> = seen
                .body
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            assert_eq!(header("content-type"), "application/x-www-form-urlencoded");
            assert_eq!(fields["grant_type"], JWT_BEARER);
            let jwt = &fields["assertion"];
            let (input, signature) = jwt.rsplit_once('.').unwrap();
            let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).unwrap();
            let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &trusted);
            if public.verify(input.as_bytes(), &signature).is_err() {
                return (
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into(),
                );
            }
            let part = |i: usize| -> Value {
                let text = input.split('.').nth(i).unwrap();
                serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
            };
            assert_eq!(part(0)["alg"], "RS256");
            assert_eq!(part(0)["kid"], "kid-1");
            let claims = part(1);
            assert_eq!(claims["iss"], "acme@proj-1.iam.gserviceaccount.com");
            assert_eq!(claims["scope"], SCOPE);
            assert_eq!(claims["aud"].as_str().unwrap(), format!("{}/token", base.lock().unwrap()));
            assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);
            state.tokens_issued += 1;
            return (StatusCode::OK, r#"{"access_token":"ya29.key","expires_in":3599,"token_type":"Bearer"}"#.into());
        }
        if path.starts_with("/computeMetadata/") {
            if header("metadata-flavor") != "Google" {
                return (StatusCode::FORBIDDEN, "Missing required header: Metadata-Flavor".into());
            }
            return match path {
                METADATA_TOKEN => {
                    assert_eq!(query(&seen.target, "scopes").map(decode).as_deref(), Some(SCOPE));
                    state.tokens_issued += 1;
                    (StatusCode::OK, r#"{"access_token":"ya29.meta","expires_in":3599,"token_type":"Bearer"}"#.into())
                }
                METADATA_PROJECT => (StatusCode::OK, "proj-meta".into()),
                _ => (StatusCode::NOT_FOUND, "not found".into()),
            };
        }
        let auth = header("authorization");
        if auth != "Bearer ya29.key" && auth != "Bearer ya29.meta" {
            return (
                StatusCode::UNAUTHORIZED,
                google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
            );
        }
        let Some(rest) = path.strip_prefix("/dns/v1/projects/") else {
            return (StatusCode::NOT_FOUND, google_error(404, "not found", "NOT_FOUND"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", [_project, "managedZones"]) => {
                let dns_name = query(&seen.target, "dnsName").map(decode).unwrap_or_default();
                let matching: Vec<_> = state.zones.iter().filter(|z| z.1 == dns_name).collect();
                let page: usize = query(&seen.target, "pageToken").and_then(|p| p.parse().ok()).unwrap_or(0);
                let zones: Vec<Value> = matching
                    .iter()
                    .skip(page)
                    .take(1)
                    .map(|z| json!({ "kind": "dns#managedZone", "name": z.0, "dnsName": z.1, "visibility": z.2, "id": "42" }))
                    .collect();
                let mut body = json!({ "kind": "dns#managedZonesListResponse", "managedZones": zones });
                if page + 1 < matching.len() {
                    body["nextPageToken"] = json!((page + 1).to_string());
                }
                (StatusCode::OK, body.to_string())
            }
            ("GET", [_project, "managedZones", zone]) => match state.zones.iter().find(|z| z.0 == *zone) {
                Some(z) => (StatusCode::OK, json!({ "name": z.0, "dnsName": z.1, "visibility": z.2 }).to_string()),
                None => (StatusCode::NOT_FOUND, google_error(404, "The 'parameters.managedZone' resource named 'x' does not exist.", "NOT_FOUND")),
            },
            ("GET", [_project, "managedZones", zone, "rrsets"]) => {
                let name = query(&seen.target, "name").map(decode).unwrap_or_default();
                assert_eq!(query(&seen.target, "type"), Some("TXT"));
                let sets: Vec<&RecordSet> = state.sets.get(&((*zone).to_owned(), name)).into_iter().collect();
                (StatusCode::OK, json!({ "kind": "dns#resourceRecordSetsListResponse", "rrsets": sets }).to_string())
            }
            ("POST", [_project, "managedZones", zone, "changes"]) => {
                let change: Value = serde_json::from_str(&seen.body).unwrap();
                for deletion in change["deletions"].as_array().into_iter().flatten() {
                    let set: RecordSet = serde_json::from_value(deletion.clone()).unwrap();
                    let key = ((*zone).to_owned(), set.name.clone());
                    match state.sets.get(&key) {
                        Some(current) if current.rrdatas == set.rrdatas && current.ttl == set.ttl => {
                            state.sets.remove(&key);
                        }
                        _ => return (StatusCode::PRECONDITION_FAILED, google_error(412, "Precondition not met for 'entity.change.deletions[0]'", "FAILED_PRECONDITION")),
                    }
                }
                for addition in change["additions"].as_array().into_iter().flatten() {
                    let set: RecordSet = serde_json::from_value(addition.clone()).unwrap();
                    let key = ((*zone).to_owned(), set.name.clone());
                    if state.sets.contains_key(&key) {
                        return (StatusCode::CONFLICT, google_error(409, "The resource 'entity.change.additions[0]' named 'x' already exists", "ALREADY_EXISTS"));
                    }
                    state.sets.insert(key, set);
                }
                state.changes += 1;
                (StatusCode::OK, json!({ "kind": "dns#change", "id": state.changes.to_string(), "status": "pending" }).to_string())
            }
            ("GET", [_project, "managedZones", _zone, "changes", id]) => {
                (StatusCode::OK, json!({ "kind": "dns#change", "id": id, "status": "done" }).to_string())
            }
            _ => (StatusCode::NOT_FOUND, google_error(404, "not found", "NOT_FOUND")),
        }
    }
}

async fn mock(zones: &[(&str, &str, &str)]) -> (String, Shared, Arc<Mutex<Vec<Seen>>>) {
    let state: Shared = Arc::default();
    state.lock().unwrap().zones = zones.iter().map(|z| (z.0.into(), z.1.into(), z.2.into())).collect();
    let base = Arc::new(Mutex::new(String::new()));
    let (url, log) = serve(Arc::new(api(Arc::clone(&state), Arc::clone(&base)))).await;
    *base.lock().unwrap() = url.clone();
    (url, state, log)
}

fn settings(url: &str, service_account: Option<String>) -> Gcloud {
    Gcloud {
        project: None,
        service_account,
        service_account_file: None,
        zone_id: None,
        allow_private_zone: false,
        metadata_url: Some(url.to_owned()),
        base_url: format!("{url}/dns/v1"),
    }
}

fn values(state: &Shared, zone: &str, name: &str) -> Vec<String> {
    let state = state.lock().unwrap();
    state.sets.get(&(zone.to_owned(), name.to_owned())).map(|s| s.rrdatas.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_service_account_key_signs_in_and_values_coexist_in_one_record_set() {
    let (url, state, log) = mock(&[("example-com", "example.com.", "public")]).await;
    state.lock().unwrap().sets.insert(
        ("example-com".into(), "_acme-challenge.example.com.".into()),
        RecordSet { name: "_acme-challenge.example.com.".into(), kind: "TXT".into(), ttl: 300, rrdatas: vec!["\"someone-else\"".into()] },
    );
    let provider = GcloudProvider::new(&settings(&url, Some(key_json(&keys()[0], &format!("{url}/token"))))).unwrap();
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    provider.present(&wildcard).await.unwrap(); // already there: no change
    assert_eq!(values(&state, "example-com", "_acme-challenge.example.com."), ["\"someone-else\"", "\"v-apex\"", "\"v-wild\""]);
    provider.cleanup(&wildcard).await.unwrap();
    provider.cleanup(&wildcard).await.unwrap(); // gone: no change
    assert_eq!(values(&state, "example-com", "_acme-challenge.example.com."), ["\"someone-else\"", "\"v-apex\""]);
    assert_eq!(state.lock().unwrap().changes, 3);
    assert_eq!(state.lock().unwrap().tokens_issued, 1, "the token is cached");

    // The change replaced the set whole: deletions of it as it was, additions of the new one.
    let log = log.lock().unwrap();
    let change = log.iter().filter(|s| s.method == Method::POST && s.target.ends_with("/changes")).nth(1).unwrap();
    let body: Value = serde_json::from_str(&change.body).unwrap();
    assert_eq!(body["deletions"][0]["rrdatas"], json!(["\"someone-else\"", "\"v-apex\""]));
    assert_eq!(body["additions"][0]["rrdatas"], json!(["\"someone-else\"", "\"v-apex\"", "\"v-wild\""]));
    assert_eq!(body["additions"][0]["ttl"], 60);
    assert!(change.target.starts_with("/dns/v1/projects/proj-1/managedZones/example-com/"), "{}", change.target);
}

#[tokio::test]
async fn the_longest_public_suffix_zone_is_chosen_across_pages() {
    let zones = [
        ("example-com", "example.com.", "public"),
        ("sub-private", "sub.example.com.", "private"),
        ("sub-public", "sub.example.com.", "public"),
        ("only-private", "private.example.com.", "private"),
    ];
    let (url, state, _) = mock(&zones).await;
    let provider = GcloudProvider::new(&settings(&url, Some(key_json(&keys()[0], &format!("{url}/token"))))).unwrap();
    let record = TxtRecord::new("a.sub.example.com", "v1", 60);
    provider.present(&record).await.unwrap();
    assert_eq!(values(&state, "sub-public", "_acme-challenge.a.sub.example.com."), ["\"v1\""]);
    // A private zone is skipped: the record lands in the public parent.
    provider.present(&TxtRecord::new("private.example.com", "v2", 60)).await.unwrap();
    assert_eq!(values(&state, "example-com", "_acme-challenge.private.example.com."), ["\"v2\""]);
    // The last value removed: the set is deleted.
    provider.cleanup(&record).await.unwrap();
    assert!(state.lock().unwrap().sets.keys().all(|k| k.0 != "sub-public"));

    let mut allowed = settings(&url, Some(key_json(&keys()[0], &format!("{url}/token"))));
    allowed.allow_private_zone = true;
    let provider = GcloudProvider::new(&allowed).unwrap();
    provider.present(&TxtRecord::new("private.example.com", "v3", 60)).await.unwrap();
    assert_eq!(values(&state, "only-private", "_acme-challenge.private.example.com."), ["\"v3\""]);

    let missing = provider.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(missing.to_string().contains("gcloud: no managed zone"), "{missing}");
}

#[tokio::test]
async fn without_a_key_the_metadata_server_gives_the_token_and_the_project() {
    let (url, state, log) = mock(&[("example-com", "example.com.", "public")]).await;
    let provider = GcloudProvider::new(&settings(&url, None)).unwrap();
    provider.present(&TxtRecord::new("example.com", "v1", 60)).await.unwrap();
    assert_eq!(values(&state, "example-com", "_acme-challenge.example.com."), ["\"v1\""]);
    assert!(log.lock().unwrap().iter().any(|s| s.target.starts_with("/dns/v1/projects/proj-meta/")));

    let mut pinned = settings(&url, None);
    pinned.project = Some("proj-1".into());
    pinned.zone_id = Some("example-com".into());
    let provider = GcloudProvider::new(&pinned).unwrap();
    provider.cleanup(&TxtRecord::new("example.com", "v1", 60)).await.unwrap();
    assert!(values(&state, "example-com", "_acme-challenge.example.com.").is_empty());
    assert!(log.lock().unwrap().iter().any(|s| s.target == "/dns/v1/projects/proj-1/managedZones/example-com"));
}

#[tokio::test]
async fn a_key_the_token_endpoint_refuses_is_a_clear_permanent_error() {
    let (url, state, _) = mock(&[("example-com", "example.com.", "public")]).await;
    let provider = GcloudProvider::new(&settings(&url, Some(key_json(&keys()[1], &format!("{url}/token"))))).unwrap();
    let err = provider.present(&TxtRecord::new("example.com", "v1", 60)).await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.starts_with("gcloud: getting a token for the service account: HTTP 400"), "{text}");
    assert!(text.contains("invalid_grant: Invalid JWT Signature."), "{text}");
    assert_eq!(state.lock().unwrap().changes, 0);
}

#[test]
fn settings_read_the_key_from_lego_variables_and_debug_hides_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sa.json");
    std::fs::write(&file, key_json(&keys()[0], "https://oauth2.googleapis.com/token")).unwrap();
    let path = file.display().to_string();
    let env = Env::from_vars([("GCE_SERVICE_ACCOUNT_FILE", path.as_str()), ("GCE_PROJECT", "proj-2")]);
    let mut settings: Gcloud = toml::from_str("").unwrap();
    settings.read_secrets("gcloud", &env).unwrap();
    settings.validate("gcloud").unwrap();
    assert_eq!(settings.project.as_deref(), Some("proj-2"));
    let debug = format!("{settings:?}");
    assert!(!debug.contains("PRIVATE KEY") && debug.contains("service_account: Some(\"...\")"), "{debug}");

    let bad: Gcloud = toml::from_str("service_account = '{\"type\":\"authorized_user\",\"client_email\":\"a\",\"private_key\":\"\"}'").unwrap();
    let err = bad.validate("gcloud").unwrap_err();
    assert_eq!(err.field, "gcloud.service_account");
    assert!(toml::from_str::<Gcloud>("service_acount = 'x'").is_err());

    let mut no_project: Value = serde_json::from_str(&key_json(&keys()[0], "https://oauth2.googleapis.com/token")).unwrap();
    no_project.as_object_mut().unwrap().remove("project_id");
    let mut config: Gcloud = toml::from_str("").unwrap();
    config.service_account = Some(no_project.to_string());
    assert_eq!(config.validate("gcloud").unwrap_err().field, "gcloud.project");
    config.project = Some("p".into());
    config.validate("gcloud").unwrap();
}
