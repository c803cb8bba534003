//! Each source of the chain against a mock of its endpoint, configured
//! through the same variables the AWS SDKs read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::*;
use crate::dns::mock_tests::{serve, Seen};
use crate::dns::route53::Route53;
use crate::dns::settings::{Env, ProviderSettings};

const FIELD: &str = "resolvers.aws.dns_challenge.route53";

/// The chain a `[route53]` table and these variables give.
fn chain(table: &str, vars: &[(&str, &str)]) -> Chain {
    let mut settings: Route53 = toml::from_str(table).unwrap();
    settings.read_secrets(FIELD, &Env::from_vars(vars.iter().copied())).unwrap();
    settings.validate(FIELD).unwrap();
    Chain::new(settings.sources()).unwrap()
}

/// An RFC 3339 time `secs` from now.
fn in_secs(secs: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    at.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn keys_and_a_session_token_from_the_environment_come_first() {
    let c = chain(
        "",
        &[
            ("AWS_ACCESS_KEY_ID", "ASIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1"),
        ],
    );
    let got = c.get().await.unwrap();
    assert_eq!((got.access_key_id.as_str(), got.secret_access_key.as_str()), ("ASIAENV", "env-secret"));
    assert_eq!((got.session_token.as_deref(), got.expires, got.source), (Some("env-token"), None, "session keys"));
    assert!(!format!("{got:?}").contains("env-secret") && !format!("{got:?}").contains("env-token"));
}

#[tokio::test]
async fn a_shared_profile_is_read_from_the_credentials_file_or_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default-secret\n\n\
         # the ops profile\n[ops]\naws_access_key_id=AKIAOPS\naws_secret_access_key=ops-secret\naws_session_token = ops-token\n",
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[profile cfg]\nregion = eu-west-1\naws_access_key_id = AKIACFG\naws_secret_access_key = cfg-secret\n",
    )
    .unwrap();
    let file = credentials.display().to_string();
    let config_file = config.display().to_string();
    let disabled = ("AWS_EC2_METADATA_DISABLED", "true");

    let ops =
        chain("", &[("AWS_PROFILE", "ops"), ("AWS_SHARED_CREDENTIALS_FILE", &file), disabled]).get().await.unwrap();
    assert_eq!(
        (ops.access_key_id.as_str(), ops.session_token.as_deref(), ops.source),
        ("AKIAOPS", Some("ops-token"), "shared profile")
    );
    let default = chain("", &[("AWS_SHARED_CREDENTIALS_FILE", &file), disabled]).get().await.unwrap();
    assert_eq!(default.access_key_id, "AKIADEFAULT");
    let table = format!("profile = \"cfg\"\nshared_credentials_file = \"{file}\"\n");
    let cfg = chain(&table, &[("AWS_CONFIG_FILE", &config_file), disabled]).get().await.unwrap();
    assert_eq!(cfg.access_key_id, "AKIACFG");
    // ~/.aws/credentials through HOME.
    std::fs::create_dir(dir.path().join(".aws")).unwrap();
    std::fs::copy(&credentials, dir.path().join(".aws/credentials")).unwrap();
    let home = dir.path().display().to_string();
    let from_home = chain("", &[("HOME", &home), ("AWS_PROFILE", "ops"), disabled]).get().await.unwrap();
    assert_eq!(from_home.access_key_id, "AKIAOPS");

    let err = chain("", &[("AWS_PROFILE", "nope"), ("AWS_SHARED_CREDENTIALS_FILE", &file), disabled])
        .get()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("profile 'nope' (AWS_PROFILE) is in none of"), "{err}");
    let none = chain("", &[disabled]).get().await.unwrap_err();
    assert!(!none.is_retryable() && none.to_string().contains("no AWS credentials"), "{none}");
}

/// STS's `AssumeRoleWithWebIdentity` as AWS answers it: form-encoded POST,
/// XML result, `InvalidIdentityToken` for a token it does not accept.
fn sts(calls: Arc<AtomicUsize>, expires_in: i64) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/"));
        assert_eq!(seen.headers.get("content-type").unwrap(), "application/x-www-form-urlencoded");
        let form: Vec<(&str, &str)> = seen.body.split('&').filter_map(|kv| kv.split_once('=')).collect();
        let get = |k: &str| form.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        assert_eq!((get("Action"), get("Version")), (Some("AssumeRoleWithWebIdentity"), Some("2011-06-15")));
        assert_eq!(get("RoleArn"), Some("arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdns"));
        assert_eq!(get("RoleSessionName"), Some("proxy-acme"));
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if get("WebIdentityToken") != Some(&format!("jwt-{n}")) {
            return (StatusCode::BAD_REQUEST, "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error><RequestId>r</RequestId></ErrorResponse>".into());
        }
        (StatusCode::OK, format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult>\
             <SubjectFromWebIdentityToken>system:serviceaccount:acme:proxy-acme</SubjectFromWebIdentityToken>\
             <Credentials><SessionToken>sts-token-{n}</SessionToken><SecretAccessKey>sts-secret-{n}</SecretAccessKey>\
             <Expiration>{}</Expiration><AccessKeyId>ASIASTS{n}</AccessKeyId></Credentials>\
             </AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>",
            in_secs(expires_in)
        ))
    }
}

#[tokio::test]
async fn web_identity_exchanges_the_rotating_token_with_sts_and_refreshes_before_expiry() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Expiring in 4 minutes: inside the 5-minute margin, so each get refreshes.
    let (url, _) = serve(Arc::new(sts(Arc::clone(&calls), 240))).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "jwt-1\n").unwrap();
    let token_file = token.display().to_string();
    let vars = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/dns"),
        ("AWS_ENDPOINT_URL_STS", url.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let c = chain("", &vars);
    let first = c.get().await.unwrap();
    assert_eq!((first.access_key_id.as_str(), first.session_token.as_deref()), ("ASIASTS1", Some("sts-token-1")));
    assert_eq!(first.source, "web identity");
    assert!(first.expires.is_some());
    std::fs::write(&token, "jwt-2").unwrap(); // the kubelet rotated it
    let second = c.get().await.unwrap();
    assert_eq!(second.access_key_id, "ASIASTS2", "refreshed with the new token");
    // A token STS refuses: its code and message.
    let err = c.get().await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("InvalidIdentityToken: Couldn't retrieve"), "{err}");

    // Far from expiry: kept.
    let calls = Arc::new(AtomicUsize::new(0));
    let (url, _) = serve(Arc::new(sts(Arc::clone(&calls), 3600))).await;
    std::fs::write(&token, "jwt-1").unwrap();
    let c = chain(&format!("sts_endpoint = \"{url}\"\n"), &vars[..2]);
    assert_eq!(c.get().await.unwrap().access_key_id, "ASIASTS1");
    assert_eq!(c.get().await.unwrap().access_key_id, "ASIASTS1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn eks_pod_identity_sends_the_token_file_to_the_container_endpoint() {
    let seen_tokens = Arc::new(Mutex::new(Vec::new()));
    let tokens = Arc::clone(&seen_tokens);
    let (url, _) = serve(Arc::new(move |seen: &Seen| {
        let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        tokens.lock().unwrap().push(auth.clone());
        if seen.target != "/v1/credentials" || auth != "eks-pod-token" {
            return (StatusCode::UNAUTHORIZED, r#"{"Message":"Service account token cannot be empty"}"#.into());
        }
        (StatusCode::OK, format!(
            r#"{{"AccessKeyId":"ASIAPOD","SecretAccessKey":"pod-secret","Token":"pod-token","AccountId":"123456789012","Expiration":"{}"}}"#,
            in_secs(6 * 3600)
        ))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token, "eks-pod-token\n").unwrap();
    let (full, token_file) = (format!("{url}/v1/credentials"), token.display().to_string());
    let vars = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let got = chain("", &vars).get().await.unwrap();
    assert_eq!(
        (got.access_key_id.as_str(), got.session_token.as_deref(), got.source),
        ("ASIAPOD", Some("pod-token"), "container credentials")
    );
    assert_eq!(seen_tokens.lock().unwrap().as_slice(), ["eks-pod-token"]);
    std::fs::write(&token, "").unwrap();
    let err = chain("", &vars).get().await.unwrap_err();
    assert!(
        err.to_string().contains("HTTP 401") && err.to_string().contains("container credentials endpoint"),
        "{err}"
    );
}

/// IMDSv2 as EC2 answers it: a session token from `PUT /latest/api/token`
/// (with its TTL header), required on every `GET`.
fn imds(calls: Arc<AtomicUsize>, expires_in: i64) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let header = |n: &str| seen.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match (seen.method.as_str(), seen.target.as_str()) {
            ("PUT", "/latest/api/token") => match header("x-aws-ec2-metadata-token-ttl-seconds") {
                Some(_) => (StatusCode::OK, "imds-session-token".into()),
                None => (StatusCode::BAD_REQUEST, String::new()),
            },
            _ if header("x-aws-ec2-metadata-token").as_deref() != Some("imds-session-token") => {
                (StatusCode::UNAUTHORIZED, String::new())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => (StatusCode::OK, "proxy-acme-role".into()),
            ("GET", "/latest/meta-data/iam/security-credentials/proxy-acme-role") => {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"Code":"Success","LastUpdated":"2026-12-06T17:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS{n}","SecretAccessKey":"imds-secret","Token":"imds-token-{n}","Expiration":"{}"}}"#,
                        in_secs(expires_in)
                    ),
                )
            }
            _ => (StatusCode::NOT_FOUND, String::new()),
        }
    }
}

#[tokio::test]
async fn imds_v2_gets_a_session_token_then_the_role_credentials_and_refreshes_them() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (url, log) = serve(Arc::new(imds(Arc::clone(&calls), 120))).await;
    let c = chain(&format!("imds_endpoint = \"{url}\"\n"), &[]);
    let first = c.get().await.unwrap();
    assert_eq!((first.access_key_id.as_str(), first.session_token.as_deref()), ("ASIAIMDS1", Some("imds-token-1")));
    assert_eq!(first.source, "instance role");
    assert_eq!(c.get().await.unwrap().access_key_id, "ASIAIMDS2", "two minutes left: fetched again");
    let methods: Vec<String> =
        log.lock().unwrap().iter().take(3).map(|s| format!("{} {}", s.method, s.target)).collect();
    assert_eq!(
        methods,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/proxy-acme-role"
        ]
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let (url, _) = serve(Arc::new(imds(Arc::clone(&calls), 6 * 3600))).await;
    let c = chain("", &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str())]);
    c.get().await.unwrap();
    c.get().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "six hours left: kept");
    c.forget().await;
    assert_eq!(c.get().await.unwrap().access_key_id, "ASIAIMDS2", "forgotten after ExpiredToken");

    // Not on EC2: the error lists what was tried.
    let nowhere = chain("imds_endpoint = \"http://127.0.0.1:1\"\n", &[]).get().await.unwrap_err();
    let text = nowhere.to_string();
    assert!(
        text.contains("no AWS credentials")
            && text.contains("AWS_WEB_IDENTITY_TOKEN_FILE")
            && text.contains("instance metadata"),
        "{text}"
    );
}

#[test]
fn ini_sections_and_times_parse_as_the_aws_cli_writes_them() {
    let text = "[default]\na = 1\n[profile x]\nb = 2\n[y]\nc=3\n";
    assert_eq!(ini_section(text, "x", true).unwrap(), [("b".to_owned(), "2".to_owned())]);
    assert_eq!(ini_section(text, "default", true).unwrap(), [("a".to_owned(), "1".to_owned())]);
    assert!(ini_section(text, "x", false).is_none());
    assert_eq!(ini_section(text, "y", false).unwrap(), [("c".to_owned(), "3".to_owned())]);
    assert!(parse_time("2026-12-06T18:00:00Z").is_some());
}
