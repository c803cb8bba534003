//! Where `route53` gets its AWS credentials: the chain the AWS SDKs follow,
//! in their order, the first source that is configured winning.
//!
//! 1. Keys in the table or the environment (`AWS_ACCESS_KEY_ID`,
//!    `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
//! 2. A shared profile (`AWS_PROFILE`, default `default`) in
//!    `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`), or static keys in
//!    the profile of `AWS_CONFIG_FILE` (`~/.aws/config`).
//! 3. Web identity (EKS IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` and
//!    `AWS_ROLE_ARN`, exchanged with STS `AssumeRoleWithWebIdentity`.
//! 4. The container endpoint (EKS Pod Identity, ECS):
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or `_RELATIVE_URI`), with the
//!    token of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (or `_TOKEN`).
//! 5. The instance metadata service, IMDSv2: a session token (`PUT`), then
//!    the instance role's credentials (`GET`).
//!
//! Temporary credentials are kept and fetched again five minutes before they
//! expire (token files are read again each time: they rotate).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::Method;

use super::http::{Answer, ApiClient};
use super::DnsError;

const PROVIDER: &str = "route53";
/// Fetch new temporary credentials this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
const IMDS_TOKEN_TTL: &str = "21600";

/// One set of AWS credentials; `Debug` shows the key id only.
#[derive(Clone)]
pub(super) struct Credentials {
    pub(super) access_key_id: String,
    pub(super) secret_access_key: String,
    pub(super) session_token: Option<String>,
    /// When they stop working; `None` for long-term keys.
    pub(super) expires: Option<SystemTime>,
    /// Which source gave them, for logs and errors.
    pub(super) source: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn fresh(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|at| now + REFRESH_BEFORE < at)
    }
}

/// What the chain may use, as the settings and the environment give it.
#[derive(Clone, Default)]
pub(super) struct Sources {
    /// Key id, secret, session token.
    pub(super) keys: Option<(String, String, Option<String>)>,
    pub(super) profile: Option<String>,
    pub(super) credentials_file: Option<PathBuf>,
    pub(super) config_file: Option<PathBuf>,
    /// Token file, role ARN, session name.
    pub(super) web_identity: Option<(PathBuf, String, String)>,
    pub(super) sts_endpoint: String,
    /// Full URI, token, token file.
    pub(super) container: Option<(String, Option<String>, Option<PathBuf>)>,
    /// `None` when `AWS_EC2_METADATA_DISABLED=true`.
    pub(super) imds_endpoint: Option<String>,
}

/// The credentials chain with its cache.
pub(super) struct Chain {
    sources: Sources,
    client: ApiClient,
    cache: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").finish_non_exhaustive()
    }
}

fn fail(message: impl Into<String>, retryable: bool) -> DnsError {
    DnsError::provider(PROVIDER, message, retryable)
}

/// `YYYY-MM-DDThh:mm:ssZ` (STS, IMDS and the container endpoint).
fn parse_time(text: &str) -> Option<SystemTime> {
    let parsed = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some(parsed.into())
}

/// The text of the first `<tag>...</tag>` in `xml`.
pub(super) fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(xml[start..end].replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
}

/// `application/x-www-form-urlencoded` value.
fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The keys of `[section]` (or `[profile section]` when `prefixed`) in an
/// INI file as the AWS CLI writes it.
fn ini_section(text: &str, section: &str, prefixed: bool) -> Option<Vec<(String, String)>> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = if prefixed && section != "default" {
                name.strip_prefix("profile ").map(str::trim)
            } else {
                Some(name)
            };
            inside = name == Some(section);
            if inside && found.is_none() {
                found = Some(Vec::new());
            }
            continue;
        }
        if let (true, Some((key, value)), Some(keys)) = (inside, line.split_once('='), found.as_mut()) {
            keys.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    found
}

impl Chain {
    pub(super) fn new(sources: Sources) -> Result<Self, DnsError> {
        Ok(Self { sources, client: ApiClient::new(PROVIDER)?, cache: tokio::sync::Mutex::new(None) })
    }

    /// Credentials that will not expire in the next five minutes.
    pub(super) async fn get(&self) -> Result<Credentials, DnsError> {
        let mut cache = self.cache.lock().await;
        if let Some(kept) = cache.as_ref().filter(|c| c.fresh(SystemTime::now())) {
            return Ok(kept.clone());
        }
        let loaded = self.load().await?;
        if let Some(expires) = loaded.expires {
            let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
            tracing::info!(provider = PROVIDER, source = loaded.source, key = %loaded.access_key_id, valid_for = ?left, "AWS credentials fetched");
        }
        *cache = Some(loaded.clone());
        Ok(loaded)
    }

    /// Forgets the kept credentials (AWS said they expired).
    pub(super) async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    async fn load(&self) -> Result<Credentials, DnsError> {
        let s = &self.sources;
        if let Some((id, secret, token)) = &s.keys {
            let source = if token.is_some() { "session keys" } else { "access keys" };
            return Ok(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: token.clone(),
                expires: None,
                source,
            });
        }
        if let Some(credentials) = self.profile()? {
            return Ok(credentials);
        }
        if let Some((token_file, role_arn, session)) = &s.web_identity {
            return self.web_identity(token_file, role_arn, session).await;
        }
        if let Some((uri, token, token_file)) = &s.container {
            return self.container(uri, token.as_deref(), token_file.as_deref()).await;
        }
        let Some(endpoint) = &s.imds_endpoint else {
            return Err(fail(
                "no AWS credentials: no access keys (table or AWS_ACCESS_KEY_ID), no profile in the shared files, \
                 no web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), no container endpoint \
                 (AWS_CONTAINER_CREDENTIALS_FULL_URI), and AWS_EC2_METADATA_DISABLED is set",
                false,
            ));
        };
        self.imds(endpoint).await.map_err(|e| {
            let detail = match &e {
                DnsError::Provider { message, .. } => message.clone(),
                other => other.to_string(),
            };
            fail(
                format!(
                    "no AWS credentials: no access keys (table or AWS_ACCESS_KEY_ID), no profile in the shared files, \
                     no web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), no container endpoint \
                     (AWS_CONTAINER_CREDENTIALS_FULL_URI), and the instance metadata service: {detail}"
                ),
                e.is_retryable(),
            )
        })
    }

    /// Keys from the shared credentials file, else the config file; `None`
    /// when neither has the profile (an error if it was named explicitly).
    fn profile(&self) -> Result<Option<Credentials>, DnsError> {
        let s = &self.sources;
        let name = s.profile.as_deref().unwrap_or("default");
        let files = [(s.credentials_file.as_deref(), false), (s.config_file.as_deref(), true)];
        for (file, prefixed) in files {
            let Some(file) = file else { continue };
            let Ok(text) = std::fs::read_to_string(file) else { continue };
            let Some(keys) = ini_section(&text, name, prefixed) else { continue };
            let get = |key: &str| keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some(id), Some(secret)) => {
                    return Ok(Some(Credentials {
                        access_key_id: id,
                        secret_access_key: secret,
                        session_token: get("aws_session_token"),
                        expires: None,
                        source: "shared profile",
                    }))
                }
                _ if s.profile.is_some() => {
                    return Err(fail(
                        format!(
                            "profile '{name}' in {} has no aws_access_key_id and aws_secret_access_key \
                             (roles and SSO in profiles are not supported: use web identity or keys)",
                            file.display()
                        ),
                        false,
                    ))
                }
                _ => {}
            }
        }
        if s.profile.is_some() {
            let shown: Vec<String> = files.iter().filter_map(|(f, _)| f.map(|f| f.display().to_string())).collect();
            return Err(fail(format!("profile '{name}' (AWS_PROFILE) is in none of {}", shown.join(", ")), false));
        }
        Ok(None)
    }

    /// STS `AssumeRoleWithWebIdentity` (unsigned: the token is the proof).
    async fn web_identity(&self, token_file: &Path, role_arn: &str, session: &str) -> Result<Credentials, DnsError> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| fail(format!("web identity token {}: {e}", token_file.display()), true))?;
        let body = format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
            form(role_arn),
            form(session),
            form(token.trim())
        );
        let url = format!("{}/", self.sources.sts_endpoint.trim_end_matches('/'));
        let answer = self
            .client
            .send(Method::POST, &url, &[], Some(("application/x-www-form-urlencoded", body.into_bytes())))
            .await?;
        let text = answer.text();
        if !answer.status.is_success() {
            return Err(xml_error(&answer, &format!("STS AssumeRoleWithWebIdentity for {role_arn}")));
        }
        let get = |tag: &str| xml_tag(&text, tag);
        match (get("AccessKeyId"), get("SecretAccessKey"), get("SessionToken")) {
            (Some(id), Some(secret), Some(token)) => Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: Some(token),
                expires: get("Expiration").as_deref().and_then(parse_time),
                source: "web identity",
            }),
            _ => Err(fail("STS AssumeRoleWithWebIdentity: no Credentials in the answer", true)),
        }
    }

    /// The container credentials endpoint (EKS Pod Identity, ECS).
    async fn container(
        &self,
        uri: &str,
        token: Option<&str>,
        token_file: Option<&Path>,
    ) -> Result<Credentials, DnsError> {
        let token = match token_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| fail(format!("container authorization token {}: {e}", file.display()), true))?
                    .trim()
                    .to_owned(),
            ),
            None => token.map(str::to_owned),
        };
        let headers: Vec<(&str, String)> = token.into_iter().map(|t| ("authorization", t)).collect();
        let answer = self.client.send(Method::GET, uri, &headers, None).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, &format!("container credentials endpoint {uri}"), &answer.text()));
        }
        json_credentials(&answer, "container endpoint", "container credentials")
    }

    /// IMDSv2: a session token, the instance role's name, its credentials.
    async fn imds(&self, endpoint: &str) -> Result<Credentials, DnsError> {
        let base = endpoint.trim_end_matches('/');
        let answer = self
            .client
            .send(
                Method::PUT,
                &format!("{base}/latest/api/token"),
                &[("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL.into())],
                None,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, "IMDSv2 PUT /latest/api/token", &answer.text()));
        }
        let token = [("x-aws-ec2-metadata-token", answer.text().trim().to_owned())];
        let path = "/latest/meta-data/iam/security-credentials/";
        let answer = self.client.send(Method::GET, &format!("{base}{path}"), &token, None).await?;
        if !answer.status.is_success() {
            return Err(answer.error(
                PROVIDER,
                &format!("IMDS GET {path} (is an instance profile attached?)"),
                &answer.text(),
            ));
        }
        let role = answer.text().lines().next().unwrap_or_default().trim().to_owned();
        if role.is_empty() {
            return Err(fail("IMDS: the instance has no IAM role (attach an instance profile)", false));
        }
        let answer = self.client.send(Method::GET, &format!("{base}{path}{role}"), &token, None).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, &format!("IMDS GET {path}{role}"), &answer.text()));
        }
        json_credentials(&answer, "instance metadata", "instance role")
    }
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` (IMDS adds
/// `"Code": "Success"`).
fn json_credentials(answer: &Answer, what: &str, source: &'static str) -> Result<Credentials, DnsError> {
    let json: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| fail(format!("{what}: unexpected answer: {e}"), true))?;
    if let Some(code) = json["Code"].as_str().filter(|c| *c != "Success") {
        return Err(fail(format!("{what}: {code}: {}", json["Message"].as_str().unwrap_or_default()), true));
    }
    let text = |key: &str| json[key].as_str().map(str::to_owned);
    match (text("AccessKeyId"), text("SecretAccessKey")) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: text("Token"),
            expires: text("Expiration").as_deref().and_then(parse_time),
            source,
        }),
        _ => Err(fail(format!("{what}: no AccessKeyId and SecretAccessKey in the answer"), true)),
    }
}

/// An AWS XML error (`<Error><Code>..</Code><Message>..</Message>`) as a
/// provider error.
pub(super) fn xml_error(answer: &Answer, what: &str) -> DnsError {
    let text = answer.text();
    let detail = match (xml_tag(&text, "Code"), xml_tag(&text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => text,
    };
    answer.error(PROVIDER, what, &detail)
}

#[cfg(test)]
#[path = "route53_credentials_tests.rs"]
mod tests;
