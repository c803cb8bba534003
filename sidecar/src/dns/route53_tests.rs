use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

fn keys(id: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: id.into(),
        secret_access_key: secret.into(),
        session_token: token.map(Into::into),
        expires: None,
        source: "test",
    }
}

/// `20150830T123600Z` as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    Some(time::PrimitiveDateTime::parse(text, &format).ok()?.assume_utc().into())
}

#[test]
fn signs_the_aws_sigv4_test_suite_get_vanilla_request() {
    // aws-sig-v4-test-suite "get-vanilla", through the aws-sigv4 crate.
    let at = amz_date("20150830T123600Z").unwrap();
    let credentials = keys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None);
    let headers = sign("GET", "https://example.amazonaws.com/", b"", &credentials, ("us-east-1", "service"), at).unwrap();
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
    assert_eq!(
        get("authorization"),
        Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
    assert_eq!(get("x-amz-security-token"), None);
    let temporary = keys("ASIAEXAMPLE", "s", Some("session"));
    let headers = sign("GET", "https://example.amazonaws.com/", b"", &temporary, ("us-east-1", "service"), at).unwrap();
    assert!(headers.iter().any(|(k, v)| k == "x-amz-security-token" && v == "session"), "{headers:?}");
}

type Sets = Arc<Mutex<BTreeMap<String, (u32, Vec<String>)>>>;

fn error(code: &str, message: &str) -> String {
    format!("<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")
}

/// The zones of the account: `example.com` both private (listed first, as
/// Route 53 may) and public, and the public `sub.example.com`.
const ZONES: [(&str, &str, bool); 3] =
    [("Z2PRIVATE", "example.com.", true), ("Z1PUBLIC", "example.com.", false), ("Z3SUB", "sub.example.com.", false)];

/// Route 53's documented subset; every request's SigV4 signature is
/// recomputed from what the server received, with the secret and session
/// token the access key id stands for in `accounts`.
fn api(sets: Sets, accounts: Vec<Credentials>) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let authorization = header("authorization");
        let key_id = authorization.split("Credential=").nth(1).and_then(|c| c.split('/').next()).unwrap_or_default();
        let Some(account) = accounts.iter().find(|a| a.access_key_id == key_id) else {
            return (StatusCode::FORBIDDEN, error("InvalidClientTokenId", "The security token included in the request is invalid."));
        };
        let at = amz_date(&header("x-amz-date")).unwrap_or(SystemTime::UNIX_EPOCH);
        let url = format!("http://{}{}", header("host"), seen.target);
        let expected = sign(seen.method.as_str(), &url, seen.body.as_bytes(), account, ("us-east-1", "route53"), at).unwrap();
        let wanted = |name: &str| expected.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        if authorization != wanted("authorization") || header("x-amz-security-token") != wanted("x-amz-security-token") {
            return (StatusCode::FORBIDDEN, error("SignatureDoesNotMatch", "The request signature we calculated does not match"));
        }
        let (path, _) = seen.target.split_once('?').unwrap_or((seen.target.as_str(), ""));
        let mut sets = sets.lock().unwrap();
        match (seen.method.as_str(), path) {
            ("GET", "/2013-04-01/hostedzonesbyname") => {
                let name = query(&seen.target, "dnsname").unwrap_or_default();
                // Route 53 lists from `dnsname` on, in order; here, the zones
                // of that name and then one that is not.
                let zones: String = ZONES
                    .iter()
                    .filter(|(_, n, _)| n.trim_end_matches('.') == name)
                    .chain(std::iter::once(&("Z9OTHER", "zzz.org.", false)))
                    .map(|(id, n, private)| format!("<HostedZone><Id>/hostedzone/{id}</Id><Name>{n}</Name><CallerReference>c</CallerReference><Config><PrivateZone>{private}</PrivateZone></Config><ResourceRecordSetCount>3</ResourceRecordSetCount></HostedZone>"))
                    .collect();
                (StatusCode::OK, format!("<ListHostedZonesByNameResponse xmlns=\"{XMLNS}\"><HostedZones>{zones}</HostedZones><DNSName>{name}</DNSName><IsTruncated>false</IsTruncated><MaxItems>100</MaxItems></ListHostedZonesByNameResponse>"))
            }
            ("GET", p) if p.starts_with("/2013-04-01/hostedzone/") && p.ends_with("/rrset") => {
                let zone = p.split('/').nth(3).unwrap_or_default();
                let name = query(&seen.target, "name").unwrap_or_default().to_owned();
                let body = match sets.get(&format!("{zone} {name}")) {
                    Some((ttl, values)) => {
                        let records: String = values.iter().map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>")).collect();
                        format!("<ResourceRecordSet><Name>{name}</Name><Type>TXT</Type><TTL>{ttl}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet>")
                    }
                    None => String::new(),
                };
                (StatusCode::OK, format!("<ListResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ResourceRecordSets>{body}</ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>"))
            }
            ("POST", p) if p.starts_with("/2013-04-01/hostedzone/") && p.ends_with("/rrset/") => {
                let zone = p.split('/').nth(3).unwrap_or_default();
                assert!(seen.body.contains(XMLNS));
                let (action, name) = (first(&seen.body, "Action").unwrap_or_default(), first(&seen.body, "Name").unwrap_or_default());
                let ttl: u32 = first(&seen.body, "TTL").and_then(|t| t.parse().ok()).unwrap_or(0);
                let values = tags(&seen.body, "Value");
                let key = format!("{zone} {name}");
                match action.as_str() {
                    "UPSERT" => {
                        sets.insert(key, (ttl, values));
                    }
                    "DELETE" if sets.get(&key) == Some(&(ttl, values)) => {
                        sets.remove(&key);
                    }
                    _ => return (StatusCode::BAD_REQUEST, error("InvalidChangeBatch", "Tried to delete resource record set but it was not found")),
                }
                (StatusCode::OK, format!("<ChangeResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2026-11-28T00:00:00.000Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>"))
            }
            ("GET", "/2013-04-01/change/C2682N5HXP0BZ4") => (StatusCode::OK, format!("<GetChangeResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>INSYNC</Status></ChangeInfo></GetChangeResponse>")),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, error("InternalFailure", "boom")),
        }
    }
}

fn provider(table: &str) -> Route53Provider {
    let mut settings: Route53 = toml::from_str(table).unwrap();
    settings.read_secrets("route53", &Env::from_vars([("AWS_EC2_METADATA_DISABLED", "true")])).unwrap();
    settings.validate("route53").unwrap();
    Route53Provider::new(&settings).unwrap()
}

fn with_keys(url: &str, secret: &str, extra: &str) -> Route53Provider {
    provider(&format!("endpoint = \"{url}\"\naccess_key_id = \"AKIATEST\"\nsecret_access_key = \"{secret}\"\n{extra}"))
}

#[tokio::test]
async fn values_share_the_record_set_and_cleanup_removes_only_ours() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&sets), vec![keys("AKIATEST", "secret-key", None)]))).await;
    let route53 = with_keys(&url, "secret-key", "");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    route53.present(&apex).await.unwrap();
    route53.present(&wildcard).await.unwrap();
    let name = "Z1PUBLIC _acme-challenge.example.com.";
    assert_eq!(sets.lock().unwrap()[name], (60, vec!["\"v-apex\"".to_owned(), "\"v-wild\"".to_owned()]), "the public zone");
    route53.cleanup(&wildcard).await.unwrap();
    assert_eq!(sets.lock().unwrap()[name].1, ["\"v-apex\""]);
    route53.cleanup(&wildcard).await.unwrap();
    route53.cleanup(&apex).await.unwrap();
    assert!(sets.lock().unwrap().is_empty(), "the last value deletes the set");

    let forged = with_keys(&url, "wrong-secret", "");
    let err = forged.present(&apex).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("HTTP 403: SignatureDoesNotMatch"), "{err}");
    assert!(err.to_string().contains("credentials: access keys"), "{err}");
    let unknown = route53.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no public hosted zone"), "{unknown}");
}

#[tokio::test]
async fn the_public_zone_wins_unless_private_zone_and_a_sub_zone_is_the_longest_suffix() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&sets), vec![keys("AKIATEST", "s", None)]))).await;
    let record = TxtRecord::new("www.example.com", "v", 60);
    with_keys(&url, "s", "private_zone = true\n").present(&record).await.unwrap();
    with_keys(&url, "s", "").present(&record).await.unwrap();
    with_keys(&url, "s", "hosted_zone_id = \"/hostedzone/ZCONFIGURED\"\n").present(&record).await.unwrap();
    with_keys(&url, "s", "").present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap();
    let keys: Vec<String> = sets.lock().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "Z1PUBLIC _acme-challenge.www.example.com.",
            "Z2PRIVATE _acme-challenge.www.example.com.",
            "Z3SUB _acme-challenge.a.sub.example.com.",
            "ZCONFIGURED _acme-challenge.www.example.com.",
        ]
    );
}

#[tokio::test]
async fn temporary_credentials_sign_with_their_session_token() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&sets), vec![keys("ASIATEMP", "temp-secret", Some("temp-token"))]))).await;
    let table = format!("endpoint = \"{url}\"\n");
    let mut settings: Route53 = toml::from_str(&table).unwrap();
    let env = Env::from_vars([
        ("AWS_ACCESS_KEY_ID", "ASIATEMP"),
        ("AWS_SECRET_ACCESS_KEY", "temp-secret"),
        ("AWS_SESSION_TOKEN", "temp-token"),
    ]);
    settings.read_secrets("route53", &env).unwrap();
    let route53 = Route53Provider::new(&settings).unwrap();
    route53.present(&TxtRecord::new("example.com", "v", 60)).await.unwrap();
    assert_eq!(sets.lock().unwrap().len(), 1);

    let mut settings: Route53 = toml::from_str(&table).unwrap();
    let env = Env::from_vars([("AWS_ACCESS_KEY_ID", "ASIATEMP"), ("AWS_SECRET_ACCESS_KEY", "temp-secret")]);
    settings.read_secrets("route53", &env).unwrap();
    let err = Route53Provider::new(&settings).unwrap().present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "without the token: {err}");
}

#[test]
fn settings_check_pairs_and_urls_and_keep_secrets_out_of_debug() {
    let check = |table: &str| toml::from_str::<Route53>(table).unwrap().validate("r").map_err(|e| e.field);
    assert_eq!(check(""), Ok(()), "nothing set: the chain");
    assert_eq!(check("access_key_id = \"a\""), Err("r.secret_access_key".into()));
    assert_eq!(check("secret_access_key = \"s\""), Err("r.access_key_id".into()));
    assert_eq!(check("role_arn = \"arn:aws:iam::1:role/r\""), Err("r.web_identity_token_file".into()));
    assert_eq!(check("imds_endpoint = \"169.254.169.254\""), Err("r.imds_endpoint".into()));
    let settings: Route53 = toml::from_str("access_key_id = \"AKIA\"\nsecret_access_key = \"top\"\nsession_token = \"tok\"").unwrap();
    let debug = format!("{settings:?}");
    assert!(debug.contains("AKIA") && !debug.contains("top") && !debug.contains("tok\""), "{debug}");
}

#[tokio::test]
async fn web_identity_credentials_from_sts_sign_the_route53_calls() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let route53 = api(Arc::clone(&sets), vec![keys("ASIAIRSA", "irsa-secret", Some("irsa-token"))]);
    let (url, log) = serve(Arc::new(move |seen: &Seen| {
        if seen.method == Method::POST && seen.target == "/" {
            assert!(seen.body.contains("WebIdentityToken=eks-jwt"), "{}", seen.body);
            assert!(seen.headers.get("authorization").is_none(), "AssumeRoleWithWebIdentity is not signed");
            return (StatusCode::OK, "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAIRSA</AccessKeyId><SecretAccessKey>irsa-secret</SecretAccessKey><SessionToken>irsa-token</SessionToken><Expiration>2999-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>".into());
        }
        route53(seen)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eks-jwt").unwrap();
    let provider = provider(&format!(
        "endpoint = \"{url}\"\nsts_endpoint = \"{url}\"\nrole_arn = \"arn:aws:iam::123456789012:role/dns\"\nweb_identity_token_file = \"{}\"\n",
        token.display()
    ));
    let record = TxtRecord::new("example.com", "v", 60);
    provider.present(&record).await.unwrap();
    provider.cleanup(&record).await.unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|s| s.target == "/").count(), 1, "the credentials are kept until they near expiry");
    assert!(seen.iter().filter(|s| s.target != "/").all(|s| s.headers.get("x-amz-security-token").is_some()));
}
