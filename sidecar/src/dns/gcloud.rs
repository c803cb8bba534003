//! `gcloud`: Google Cloud DNS API v1. Credentials: a service account's JSON
//! key, exchanged for an access token with a signed JWT (RS256, OAuth 2.0
//! `jwt-bearer` grant at the key's `token_uri`), or, without a key, the
//! instance's service account through the metadata server. Tokens are kept
//! until shortly before they expire.
//!
//! The managed zone is the one whose `dnsName` is the record name's longest
//! suffix (public zones only unless `allow_private_zone`), or `zone_id`. A
//! TXT record set holds every value at its name, so `present` and `cleanup`
//! read the set and replace it whole in one change (`deletions` of the set as
//! it is, `additions` of the new set), then wait until the change is `done`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::{Method, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{zone_candidates, Answer, ApiClient};
use super::oauth::{base64url, encode, form, oauth_error, TokenAnswer, TokenCache};
use super::settings::{http_url, redacted, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "gcloud";
/// The OAuth scope for reading and changing Cloud DNS records.
pub(super) const SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const METADATA_TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const METADATA_PROJECT: &str = "/computeMetadata/v1/project/project-id";
/// How long `present` and `cleanup` wait for a change to be `done`.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of a change that raced with another writer of the same set.
const CHANGE_TRIES: u32 = 3;

// === settings ===

/// `[dns_challenge.gcloud]`: a service account key (`GCE_SERVICE_ACCOUNT`,
/// `GCE_SERVICE_ACCOUNT_FILE`) or the metadata server, and the project
/// (`GCE_PROJECT`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gcloud {
    /// The project holding the zones; default: the key's `project_id`, else
    /// the metadata server's project.
    #[serde(default)]
    pub project: Option<String>,
    /// The service account key, as JSON.
    #[serde(default)]
    pub service_account: Option<String>,
    /// File holding the service account key.
    #[serde(default)]
    pub service_account_file: Option<PathBuf>,
    /// The managed zone's name (`GCE_ZONE_ID`); found by `dnsName` when absent.
    #[serde(default)]
    pub zone_id: Option<String>,
    /// Whether a private zone may be used (only a private CA can see it).
    #[serde(default)]
    pub allow_private_zone: bool,
    /// The metadata server, used without a key (`GCE_METADATA_HOST`).
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://dns.googleapis.com/dns/v1".into()
}

impl std::fmt::Debug for Gcloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcloud")
            .field("project", &self.project)
            .field("service_account", &redacted(self.service_account.as_ref()))
            .field("service_account_file", &self.service_account_file)
            .field("zone_id", &self.zone_id)
            .field("allow_private_zone", &self.allow_private_zone)
            .field("metadata_url", &self.metadata_url)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Gcloud {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.service_account_file.as_deref();
        env.secret(&format!("{field}.service_account"), &mut self.service_account, file, "GCE_SERVICE_ACCOUNT")?;
        env.fill(&mut self.project, "GCE_PROJECT");
        env.fill(&mut self.zone_id, "GCE_ZONE_ID");
        if self.metadata_url.is_none() {
            let mut host = None;
            env.fill(&mut host, "GCE_METADATA_HOST");
            self.metadata_url = host.map(|h| if h.contains("://") { h } else { format!("http://{h}") });
        }
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        if let Some(url) = &self.metadata_url {
            http_url(&format!("{field}.metadata_url"), url)?;
        }
        if let Some(json) = &self.service_account {
            let key =
                ServiceAccount::parse(json)
                    .map_err(|e| SettingsError::new(format!("{field}.service_account"), e.to_string()))?;
            if key.project_id.is_none() && self.project.is_none() {
                return Err(SettingsError::new(
                    format!("{field}.project"),
                    "is required: the key names no project_id (or set GCE_PROJECT)",
                ));
            }
        }
        Ok(())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(GcloudProvider::new(self)?))
    }
}

// === credentials ===

/// The parts of a service account key that sign a token request.
struct ServiceAccount {
    client_email: String,
    private_key_id: String,
    token_uri: String,
    project_id: Option<String>,
    key: RsaKeyPair,
}

/// Why a service-account key cannot be used; each is the operator's to
/// fix (a wrong file), never worth retrying.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("not a service account JSON key: {0}")]
    NotJson(serde_json::Error),
    #[error("a key of type '{0}', not 'service_account'")]
    WrongType(String),
    #[error("private_key is not PEM ({0})")]
    NotPem(pem::PemError),
    #[error("private_key is not an RSA key in PKCS#8: {0}")]
    NotRsa(ring::error::KeyRejected),
    #[error("token_uri must be an http(s):// URL")]
    TokenUri,
}

impl ServiceAccount {
    fn parse(json: &str) -> Result<Self, KeyError> {
        #[derive(Deserialize)]
        struct Key {
            #[serde(rename = "type", default)]
            kind: String,
            client_email: String,
            private_key: String,
            #[serde(default)]
            private_key_id: String,
            #[serde(default)]
            token_uri: Option<String>,
            #[serde(default)]
            project_id: Option<String>,
        }
        let key: Key = serde_json::from_str(json).map_err(KeyError::NotJson)?;
        if !key.kind.is_empty() && key.kind != "service_account" {
            return Err(KeyError::WrongType(key.kind));
        }
        let pem = pem::parse(&key.private_key).map_err(KeyError::NotPem)?;
        let pair = RsaKeyPair::from_pkcs8(pem.contents()).map_err(KeyError::NotRsa)?;
        let token_uri = key.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
        if !token_uri.starts_with("https://") && !token_uri.starts_with("http://") {
            return Err(KeyError::TokenUri);
        }
        Ok(Self {
            client_email: key.client_email,
            private_key_id: key.private_key_id,
            token_uri,
            project_id: key.project_id,
            key: pair,
        })
    }

    /// The signed JWT asking for a token with `scope`, valid one hour from `now`.
    fn assertion(&self, scope: &str, now: u64) -> Result<String, DnsError> {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.private_key_id });
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let input = format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
            .map_err(|_| DnsError::provider(PROVIDER, "signing the token request failed", false))?;
        Ok(format!("{input}.{}", base64url(&signature)))
    }
}

enum Credentials {
    Key(Box<ServiceAccount>),
    /// The metadata server's base URL.
    Metadata(String),
}

// === impl GcloudProvider ===

pub struct GcloudProvider {
    base: String,
    project: tokio::sync::OnceCell<String>,
    zone_id: Option<String>,
    allow_private_zone: bool,
    credentials: Credentials,
    token: TokenCache,
    client: ApiClient,
}

impl std::fmt::Debug for GcloudProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.credentials {
            Credentials::Key(key) => format!("service account {}", key.client_email),
            Credentials::Metadata(url) => format!("metadata server {url}"),
        };
        f.debug_struct("GcloudProvider").field("base", &self.base).field("auth", &auth).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedZone {
    name: String,
    dns_name: String,
    #[serde(default)]
    visibility: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZoneList {
    #[serde(default)]
    managed_zones: Vec<ManagedZone>,
    next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct RecordSet {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    ttl: u32,
    rrdatas: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Change {
    id: String,
    #[serde(default)]
    status: String,
}

/// Google's error body: `{"error":{"code":403,"message":"...","status":"PERMISSION_DENIED"}}`.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let error = &body["error"];
    match (error["message"].as_str(), error["status"].as_str()) {
        (Some(message), Some(status)) => format!("{message} ({status})"),
        (Some(message), None) => message.to_owned(),
        _ => oauth_error(&answer.body).unwrap_or_else(|| answer.text()),
    }
}

/// A TXT string as Cloud DNS shows it (`"value"`) and back.
fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

fn unquoted(data: &str) -> &str {
    data.strip_prefix('"').and_then(|d| d.strip_suffix('"')).unwrap_or(data)
}

impl GcloudProvider {
    pub fn new(config: &Gcloud) -> Result<Self, DnsError> {
        let credentials = match &config.service_account {
            Some(json) => Credentials::Key(
                Box::new(ServiceAccount::parse(json).map_err(|e| DnsError::provider(PROVIDER, e.to_string(), false))?),
            ),
            None => Credentials::Metadata(
                config.metadata_url.as_deref().unwrap_or("http://metadata.google.internal").trim_end_matches('/').into(),
            ),
        };
        let project = match (&config.project, &credentials) {
            (Some(project), _) => Some(project.clone()),
            (None, Credentials::Key(key)) => key.project_id.clone(),
            (None, Credentials::Metadata(_)) => None,
        };
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            project: tokio::sync::OnceCell::new_with(project),
            zone_id: config.zone_id.clone(),
            allow_private_zone: config.allow_private_zone,
            credentials,
            token: TokenCache::default(),
            client: ApiClient::new(PROVIDER)?,
        })
    }

    async fn fetch_token(&self) -> Result<(String, Duration), DnsError> {
        let (what, answer) = match &self.credentials {
            Credentials::Key(key) => {
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let assertion = key.assertion(SCOPE, now)?;
                let body = form(&[("grant_type", JWT_BEARER), ("assertion", &assertion)]);
                let content = Some(("application/x-www-form-urlencoded", body.into_bytes()));
                ("getting a token for the service account", self.client.send(Method::POST, &key.token_uri, &[], content).await?)
            }
            Credentials::Metadata(base) => {
                let url = format!("{base}{METADATA_TOKEN}?scopes={}", encode(SCOPE));
                let headers = [("metadata-flavor", "Google".to_owned())];
                ("getting a token from the metadata server", self.client.send(Method::GET, &url, &headers, None).await?)
            }
        };
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        let token: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
        Ok(token.lifetime())
    }

    async fn project(&self) -> Result<&str, DnsError> {
        let project = self
            .project
            .get_or_try_init(|| async {
                let Credentials::Metadata(base) = &self.credentials else {
                    return Err(DnsError::provider(PROVIDER, "no project: set project (GCE_PROJECT)", false));
                };
                let headers = [("metadata-flavor", "Google".to_owned())];
                let answer = self.client.send(Method::GET, &format!("{base}{METADATA_PROJECT}"), &headers, None).await?;
                if !answer.status.is_success() {
                    return Err(answer.error(PROVIDER, "reading the project from the metadata server", &answer.text()));
                }
                Ok(answer.text().trim().to_owned())
            })
            .await?;
        Ok(project)
    }

    /// A Cloud DNS call: `path` under `/projects/<project>`.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, DnsError> {
        let url = format!("{}/projects/{}{path}", self.base, self.project().await?);
        let token = self.token.get(|| self.fetch_token()).await?;
        let headers = [("authorization", format!("Bearer {token}"))];
        let answer = self.client.json(method, &url, &headers, body).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            self.token.clear().await;
        }
        Ok(answer)
    }

    async fn call_ok<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<T, DnsError> {
        let answer = self.call(method, path, body).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))
    }

    fn usable(&self, zone: &ManagedZone) -> bool {
        zone.visibility != "private" || self.allow_private_zone
    }

    /// The managed zone's name: `zone_id`, or the longest suffix's zone.
    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(id) = &self.zone_id {
            let zone: ManagedZone = self
                .call_ok(Method::GET, &format!("/managedZones/{id}"), None, "GET managedZones/<zone_id>")
                .await?;
            return Ok(zone.name);
        }
        for candidate in zone_candidates(fqdn) {
            let mut page: Option<String> = None;
            let mut found: Vec<ManagedZone> = Vec::new();
            loop {
                let mut path = format!("/managedZones?dnsName={}.", encode(&candidate));
                if let Some(token) = &page {
                    path.push_str(&format!("&pageToken={}", encode(token)));
                }
                let list: ZoneList = self.call_ok(Method::GET, &path, None, "listing managedZones").await?;
                found.extend(list.managed_zones.into_iter().filter(|z| z.dns_name.trim_end_matches('.') == candidate));
                match list.next_page_token {
                    Some(token) if !token.is_empty() => page = Some(token),
                    _ => break,
                }
            }
            // Public first: the CA looks at public DNS.
            found.sort_by_key(|z| z.visibility == "private");
            if let Some(zone) = found.into_iter().find(|z| self.usable(z)) {
                return Ok(zone.name);
            }
        }
        let hint = if self.allow_private_zone { "" } else { " (private zones are skipped: allow_private_zone)" };
        Err(DnsError::provider(PROVIDER, format!("no managed zone in this project holds {fqdn}{hint}"), false))
    }

    async fn record_set(&self, zone: &str, fqdn: &str) -> Result<Option<RecordSet>, DnsError> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            rrsets: Vec<RecordSet>,
        }
        let path = format!("/managedZones/{zone}/rrsets?name={}&type=TXT", encode(fqdn));
        let list: List = self.call_ok(Method::GET, &path, None, "listing rrsets").await?;
        Ok(list.rrsets.into_iter().find(|s| s.kind == "TXT" && s.name.eq_ignore_ascii_case(fqdn)))
    }

    /// Replaces the TXT set at `record`'s name with `edit(values)`, keeping
    /// every other value; retries when another writer changed the set first.
    async fn update(&self, record: &TxtRecord, edit: impl Fn(&mut Vec<String>)) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        for attempt in 1..=CHANGE_TRIES {
            let current = self.record_set(&zone, &record.fqdn).await?;
            let mut values = current.as_ref().map(|s| s.rrdatas.clone()).unwrap_or_default();
            let before = values.clone();
            edit(&mut values);
            if values == before {
                return Ok(());
            }
            let mut change = json!({});
            if let Some(current) = &current {
                change["deletions"] = json!([current]);
            }
            if !values.is_empty() {
                let set = RecordSet { name: record.fqdn.clone(), kind: "TXT".into(), ttl: record.ttl, rrdatas: values };
                change["additions"] = json!([set]);
            }
            let path = format!("/managedZones/{zone}/changes");
            let answer = self.call(Method::POST, &path, Some(&change)).await?;
            // 409 alreadyExists / 412 conditionNotMet: the set changed since we read it.
            let raced = answer.status == StatusCode::CONFLICT || answer.status == StatusCode::PRECONDITION_FAILED;
            if raced && attempt < CHANGE_TRIES {
                continue;
            }
            if !answer.status.is_success() {
                return Err(answer.error(PROVIDER, "POST changes", &error_text(&answer)));
            }
            let change: Change = serde_json::from_slice(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("POST changes: unexpected answer: {e}"), true))?;
            return self.wait_done(&zone, change).await;
        }
        Ok(())
    }

    async fn wait_done(&self, zone: &str, mut change: Change) -> Result<(), DnsError> {
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        while change.status != "done" {
            if tokio::time::Instant::now() >= deadline {
                let message = format!("change {} still '{}' after {CHANGE_TIMEOUT:?}", change.id, change.status);
                return Err(DnsError::provider(PROVIDER, message, true));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let path = format!("/managedZones/{zone}/changes/{}", change.id);
            change = self.call_ok(Method::GET, &path, None, "GET changes/<id>").await?;
        }
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for GcloudProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, |values| {
            if !values.iter().any(|v| unquoted(v) == record.value) {
                values.push(quoted(&record.value));
            }
        })
        .await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, |values| values.retain(|v| unquoted(v) != record.value)).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "gcloud_tests.rs"]
mod tests;
