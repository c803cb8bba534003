//! `route53`: AWS Route 53's REST API (2013-04-01), requests signed with
//! Signature Version 4 by the `aws-sigv4` crate, with credentials from the
//! AWS SDKs' chain (`route53_credentials`: keys, shared profile, web
//! identity, container endpoint, instance metadata). IAM actions:
//! `route53:ListHostedZonesByName`, `route53:ListResourceRecordSets`,
//! `route53:ChangeResourceRecordSets`, `route53:GetChange`.
//!
//! A TXT record set holds all values at a name, so both `present` and
//! `cleanup` read the set and write it back whole with `UPSERT` (or
//! `DELETE` it, exactly as it is, when our value was the last), then wait
//! until the change is `INSYNC`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;

use super::http::{zone_candidates, Answer, ApiClient};
use super::route53_credentials::{xml_error, Chain, Credentials, Sources};
use super::settings::{http_url, redacted, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "route53";
const API: &str = "/2013-04-01";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const INSYNC_TIMEOUT: Duration = Duration::from_secs(60);

// === settings ===

/// `[dns_challenge.route53]`: where the credentials come from (nothing set:
/// the AWS SDKs' chain), and which hosted zone.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53 {
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// With temporary keys (`AWS_SESSION_TOKEN`).
    #[serde(default)]
    pub session_token: Option<String>,
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// The shared profile (`AWS_PROFILE`), `default` unless set.
    #[serde(default)]
    pub profile: Option<String>,
    /// `AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials` unless set.
    #[serde(default)]
    pub shared_credentials_file: Option<PathBuf>,
    /// Web identity: the role (`AWS_ROLE_ARN`) and the token file
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`).
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub web_identity_token_file: Option<PathBuf>,
    /// `AWS_ROLE_SESSION_NAME`, `proxy-acme` unless set.
    #[serde(default)]
    pub role_session_name: Option<String>,
    /// STS (`AWS_ENDPOINT_URL_STS`), `https://sts.<region>.amazonaws.com`
    /// unless set.
    #[serde(default)]
    pub sts_endpoint: Option<String>,
    /// The instance metadata service (`AWS_EC2_METADATA_SERVICE_ENDPOINT`),
    /// `http://169.254.169.254` unless set.
    #[serde(default)]
    pub imds_endpoint: Option<String>,
    /// Signing region (`AWS_REGION`); Route 53 is global, `us-east-1` by default.
    #[serde(default)]
    pub region: Option<String>,
    /// The hosted zone (`AWS_HOSTED_ZONE_ID`); found by name when absent.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// Use the private hosted zone of the name, not the public one
    /// (`AWS_PRIVATE_ZONE`).
    #[serde(default)]
    pub private_zone: Option<bool>,
    /// API endpoint; change only for tests or a proxy.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// What only the environment says: the container endpoint and the rest.
    #[serde(skip)]
    environment: Environment,
}

/// Settings the AWS SDKs read from the environment only.
#[derive(Clone, Default)]
struct Environment {
    container_uri: Option<String>,
    container_token: Option<String>,
    container_token_file: Option<PathBuf>,
    imds_disabled: bool,
    config_file: Option<PathBuf>,
    home: Option<PathBuf>,
}

fn default_endpoint() -> String {
    "https://route53.amazonaws.com".into()
}

impl std::fmt::Debug for Route53 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(self.secret_access_key.as_ref()))
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("session_token", &redacted(self.session_token.as_ref()))
            .field("profile", &self.profile)
            .field("role_arn", &self.role_arn)
            .field("web_identity_token_file", &self.web_identity_token_file)
            .field("region", &self.region)
            .field("hosted_zone_id", &self.hosted_zone_id)
            .field("private_zone", &self.private_zone)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// `value`, else the variable `var`, as a path.
fn fill_path(env: &Env, value: &mut Option<PathBuf>, var: &str) {
    if value.is_none() {
        let mut text = None;
        env.fill(&mut text, var);
        *value = text.filter(|t| !t.is_empty()).map(PathBuf::from);
    }
}

impl ProviderSettings for Route53 {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let (key, file) = (format!("{field}.secret_access_key"), self.secret_access_key_file.as_deref());
        env.secret(&key, &mut self.secret_access_key, file, "AWS_SECRET_ACCESS_KEY")?;
        env.secret(&format!("{field}.access_key_id"), &mut self.access_key_id, None, "AWS_ACCESS_KEY_ID")?;
        let (key, file) = (format!("{field}.session_token"), self.session_token_file.as_deref());
        env.secret(&key, &mut self.session_token, file, "AWS_SESSION_TOKEN")?;
        env.fill(&mut self.profile, "AWS_PROFILE");
        fill_path(env, &mut self.shared_credentials_file, "AWS_SHARED_CREDENTIALS_FILE");
        env.fill(&mut self.role_arn, "AWS_ROLE_ARN");
        fill_path(env, &mut self.web_identity_token_file, "AWS_WEB_IDENTITY_TOKEN_FILE");
        env.fill(&mut self.role_session_name, "AWS_ROLE_SESSION_NAME");
        env.fill(&mut self.sts_endpoint, "AWS_ENDPOINT_URL_STS");
        env.fill(&mut self.imds_endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
        env.fill(&mut self.region, "AWS_REGION");
        env.fill(&mut self.hosted_zone_id, "AWS_HOSTED_ZONE_ID");
        if self.private_zone.is_none() {
            let mut text = None;
            env.fill(&mut text, "AWS_PRIVATE_ZONE");
            self.private_zone = text.map(|t| t.eq_ignore_ascii_case("true") || t == "1");
        }
        let e = &mut self.environment;
        env.fill(&mut e.container_uri, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
        if e.container_uri.is_none() {
            let mut relative = None;
            env.fill(&mut relative, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
            e.container_uri = relative.map(|path| format!("http://169.254.170.2{path}"));
        }
        env.fill(&mut e.container_token, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
        fill_path(env, &mut e.container_token_file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        let mut disabled = None;
        env.fill(&mut disabled, "AWS_EC2_METADATA_DISABLED");
        e.imds_disabled = disabled.is_some_and(|d| d.eq_ignore_ascii_case("true"));
        fill_path(env, &mut e.config_file, "AWS_CONFIG_FILE");
        fill_path(env, &mut e.home, "HOME");
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => {
                return Err(SettingsError::new(format!("{field}.secret_access_key"), "is required with access_key_id"))
            }
            (None, Some(_)) => {
                return Err(SettingsError::new(format!("{field}.access_key_id"), "is required with secret_access_key"))
            }
            _ => {}
        }
        if self.role_arn.is_some() != self.web_identity_token_file.is_some() {
            let missing = if self.role_arn.is_some() { "web_identity_token_file" } else { "role_arn" };
            return Err(SettingsError::new(format!("{field}.{missing}"), "web identity needs both role_arn and web_identity_token_file"));
        }
        for (name, url) in [("endpoint", Some(&self.endpoint)), ("sts_endpoint", self.sts_endpoint.as_ref()), ("imds_endpoint", self.imds_endpoint.as_ref())] {
            if let Some(url) = url {
                http_url(&format!("{field}.{name}"), url)?;
            }
        }
        if let Some(uri) = &self.environment.container_uri {
            http_url("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)?;
        }
        Ok(())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(Route53Provider::new(self)?))
    }
}

impl Route53 {
    fn region(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".into())
    }

    /// The chain's sources, from the settings.
    pub(super) fn sources(&self) -> Sources {
        let e = &self.environment;
        let aws = |name: &str| e.home.as_ref().map(|home| home.join(".aws").join(name));
        Sources {
            keys: match (&self.access_key_id, &self.secret_access_key) {
                (Some(id), Some(secret)) => Some((id.clone(), secret.clone(), self.session_token.clone())),
                _ => None,
            },
            profile: self.profile.clone(),
            credentials_file: self.shared_credentials_file.clone().or_else(|| aws("credentials")),
            config_file: e.config_file.clone().or_else(|| aws("config")),
            web_identity: match (&self.web_identity_token_file, &self.role_arn) {
                (Some(file), Some(role)) => Some((
                    file.clone(),
                    role.clone(),
                    self.role_session_name.clone().unwrap_or_else(|| "proxy-acme".into()),
                )),
                _ => None,
            },
            sts_endpoint: self.sts_endpoint.clone().unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region())),
            container: e.container_uri.clone().map(|uri| (uri, e.container_token.clone(), e.container_token_file.clone())),
            imds_endpoint: (!e.imds_disabled)
                .then(|| self.imds_endpoint.clone().unwrap_or_else(|| "http://169.254.169.254".into())),
        }
    }
}

// === impl Route53Provider ===

pub struct Route53Provider {
    endpoint: String,
    region: String,
    hosted_zone_id: Option<String>,
    private_zone: bool,
    credentials: Chain,
    client: ApiClient,
}

impl std::fmt::Debug for Route53Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Provider")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("hosted_zone_id", &self.hosted_zone_id)
            .finish_non_exhaustive()
    }
}

/// The SigV4 headers (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with temporary credentials) for one request.
pub(super) fn sign(
    method: &str,
    url: &str,
    body: &[u8],
    credentials: &Credentials,
    (region, service): (&str, &str),
    at: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        credentials.expires,
        "proxy-acme",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body)).map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
    Ok(instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
}

/// RFC 3986 encoding of a query value, as SigV4 wants it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The texts of every `<tag>...</tag>` in `xml`, in order.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].replace("&quot;", "\"").replace("&amp;", "&"));
        rest = &after[end + close.len()..];
    }
    out
}

fn first(xml: &str, tag: &str) -> Option<String> {
    tags(xml, tag).into_iter().next()
}

/// The TXT record set at a name as Route 53 has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordSet {
    ttl: u32,
    values: Vec<String>,
}

impl Route53Provider {
    pub fn new(config: &Route53) -> Result<Self, DnsError> {
        Ok(Self {
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            region: config.region(),
            hosted_zone_id: config.hosted_zone_id.clone(),
            private_zone: config.private_zone.unwrap_or(false),
            credentials: Chain::new(config.sources())?,
            client: ApiClient::new(PROVIDER)?,
        })
    }

    async fn call(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<String>) -> Result<Answer, DnsError> {
        let mut pairs: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, encode(v))).collect();
        pairs.sort();
        let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let url = if query.is_empty() { format!("{}{path}", self.endpoint) } else { format!("{}{path}?{query}", self.endpoint) };
        let payload = body.unwrap_or_default();
        let credentials = self.credentials.get().await?;
        let signed = sign(method.as_str(), &url, payload.as_bytes(), &credentials, (&self.region, "route53"), SystemTime::now())
            .map_err(|e| DnsError::provider(PROVIDER, format!("signing {method} {path}: {e}"), false))?;
        let headers: Vec<(&str, String)> = signed.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let body = (!payload.is_empty()).then(|| ("text/xml", payload.into_bytes()));
        let answer = self.client.send(method.clone(), &url, &headers, body).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        if first(&answer.text(), "Code").as_deref() == Some("ExpiredToken") {
            self.credentials.forget().await;
        }
        Err(xml_error(&answer, &format!("{method} {path} (credentials: {})", credentials.source)))
    }

    /// The hosted zone for `fqdn`: the configured one, else the longest
    /// suffix's, public unless `private_zone`.
    async fn zone_id(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(id) = &self.hosted_zone_id {
            return Ok(id.trim_start_matches("/hostedzone/").to_owned());
        }
        for candidate in zone_candidates(fqdn) {
            let path = format!("{API}/hostedzonesbyname");
            let answer = self.call(Method::GET, &path, &[("dnsname", &candidate), ("maxitems", "100")], None).await?;
            for zone in tags(&answer.text(), "HostedZone") {
                let named = first(&zone, "Name").is_some_and(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&candidate));
                let private = first(&zone, "PrivateZone").as_deref() == Some("true");
                if let (true, true, Some(id)) = (named, private == self.private_zone, first(&zone, "Id")) {
                    return Ok(id.trim_start_matches("/hostedzone/").to_owned());
                }
            }
        }
        let kind = if self.private_zone { "private" } else { "public" };
        Err(DnsError::provider(PROVIDER, format!("no {kind} hosted zone in this account holds {fqdn}"), false))
    }

    async fn record_set(&self, zone: &str, fqdn: &str) -> Result<Option<RecordSet>, DnsError> {
        let path = format!("{API}/hostedzone/{zone}/rrset");
        let answer = self.call(Method::GET, &path, &[("name", fqdn), ("type", "TXT"), ("maxitems", "1")], None).await?;
        let text = answer.text();
        let Some(set) = first(&text, "ResourceRecordSet") else { return Ok(None) };
        let same_name = first(&set, "Name").is_some_and(|n| n.eq_ignore_ascii_case(fqdn));
        if !same_name || first(&set, "Type").as_deref() != Some("TXT") {
            return Ok(None);
        }
        let ttl = first(&set, "TTL").and_then(|t| t.parse().ok()).unwrap_or(60);
        Ok(Some(RecordSet { ttl, values: tags(&set, "Value") }))
    }

    async fn change(&self, zone: &str, action: &str, fqdn: &str, set: &RecordSet) -> Result<(), DnsError> {
        let values: String =
            set.values.iter().map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>")).collect();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch>\
             <Comment>proxy-acme DNS-01</Comment><Changes><Change><Action>{action}</Action><ResourceRecordSet>\
             <Name>{fqdn}</Name><Type>TXT</Type><TTL>{}</TTL><ResourceRecords>{values}</ResourceRecords>\
             </ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>",
            set.ttl
        );
        let answer = self.call(Method::POST, &format!("{API}/hostedzone/{zone}/rrset/"), &[], Some(body)).await?;
        let Some(change) = first(&answer.text(), "Id") else { return Ok(()) };
        let change = change.trim_start_matches("/change/").to_owned();
        let deadline = tokio::time::Instant::now() + INSYNC_TIMEOUT;
        loop {
            let status = self.call(Method::GET, &format!("{API}/change/{change}"), &[], None).await?;
            if first(&status.text(), "Status").as_deref() == Some("INSYNC") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DnsError::provider(PROVIDER, format!("change {change} not INSYNC after {INSYNC_TIMEOUT:?}"), true));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[async_trait]
impl DnsProvider for Route53Provider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone_id(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone_id(&record.fqdn).await?;
        let quoted = format!("\"{}\"", record.value);
        let mut set =
            self.record_set(&zone, &record.fqdn).await?.unwrap_or(RecordSet { ttl: record.ttl, values: Vec::new() });
        if !set.values.contains(&quoted) {
            set.values.push(quoted);
        }
        self.change(&zone, "UPSERT", &record.fqdn, &set).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, values = set.values.len(), "TXT record set written");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone_id(&record.fqdn).await?;
        let quoted = format!("\"{}\"", record.value);
        let Some(set) = self.record_set(&zone, &record.fqdn).await? else { return Ok(()) };
        if !set.values.contains(&quoted) {
            return Ok(());
        }
        let rest = RecordSet { ttl: set.ttl, values: set.values.iter().filter(|v| **v != quoted).cloned().collect() };
        if rest.values.is_empty() {
            self.change(&zone, "DELETE", &record.fqdn, &set).await
        } else {
            self.change(&zone, "UPSERT", &record.fqdn, &rest).await
        }
    }
}

#[cfg(test)]
#[path = "route53_tests.rs"]
mod tests;
