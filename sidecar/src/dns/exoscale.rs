//! `exoscale`: the Exoscale API v2 with an API key and secret, each request
//! signed with `EXO2-HMAC-SHA256` (the method and path, the body, the
//! values of the signed query arguments, no headers, and an expiry time,
//! HMAC-SHA256 with the secret, base64). The zone is the longest DNS domain
//! `GET /dns-domain` lists whose name is a suffix of the record name.
//! `present` creates a TXT record and `cleanup` deletes the one holding our
//! value (found in `GET /dns-domain/<id>/record`); both wait for the
//! asynchronous operation they start to succeed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use http::{Method, StatusCode};
use ring::hmac;
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "exoscale";
/// How long a signature stays valid.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(600);
/// The longest wait for an operation to succeed.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

// === settings ===

/// `[dns_challenge.exoscale]`: an API key and secret (`EXOSCALE_API_KEY`,
/// `EXOSCALE_API_SECRET`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exoscale {
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_secret: Option<String>,
    #[serde(default)]
    pub api_secret_file: Option<PathBuf>,
    /// The zone's API endpoint, `/v2` included (lego's `EXOSCALE_ENDPOINT`).
    #[serde(default)]
    pub endpoint: Option<String>,
}

const DEFAULT_ENDPOINT: &str = "https://api-ch-gva-2.exoscale.com/v2";

impl std::fmt::Debug for Exoscale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exoscale")
            .field("api_key", &self.api_key)
            .field("api_secret", &redacted(self.api_secret.as_ref()))
            .field("api_secret_file", &self.api_secret_file)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl ProviderSettings for Exoscale {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        env.fill(&mut self.api_key, "EXOSCALE_API_KEY");
        env.fill(&mut self.endpoint, "EXOSCALE_ENDPOINT");
        let file = self.api_secret_file.as_deref();
        env.secret(&format!("{field}.api_secret"), &mut self.api_secret, file, "EXOSCALE_API_SECRET")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.api_key"), self.api_key.as_ref())?;
        required(&format!("{field}.api_secret"), self.api_secret.as_ref())?;
        http_url(&format!("{field}.endpoint"), self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT))
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(ExoscaleProvider::new(self)?))
    }
}

// === signing ===

/// The `Authorization` header for a request to `path` (the URL's path,
/// `/v2` included) with `query` and `body`, valid until `expires` (Unix
/// seconds). Query arguments are signed sorted by name, their values
/// concatenated; no header is signed.
pub fn sign(
    key: &str,
    secret: &str,
    method: &Method,
    path: &str,
    query: &[(&str, &str)],
    body: &str,
    expires: u64,
) -> String {
    let mut query = query.to_vec();
    query.sort_unstable();
    let names: Vec<&str> = query.iter().map(|(name, _)| *name).collect();
    let values: String = query.iter().map(|(_, value)| *value).collect();
    let message = format!("{method} {path}\n{body}\n{values}\n\n{expires}");
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), message.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
    let signed_args = if names.is_empty() { String::new() } else { format!(",signed-query-args={}", names.join(";")) };
    format!("EXO2-HMAC-SHA256 credential={key}{signed_args},expires={expires},signature={signature}")
}

// === impl ExoscaleProvider ===

pub struct ExoscaleProvider {
    /// `scheme://host`.
    origin: String,
    /// The endpoint's path (`/v2`), part of what is signed.
    prefix: String,
    key: String,
    secret: String,
    client: ApiClient,
}

impl std::fmt::Debug for ExoscaleProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExoscaleProvider")
            .field("endpoint", &format!("{}{}", self.origin, self.prefix))
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Domains {
    #[serde(rename = "dns-domains", default)]
    domains: Vec<Domain>,
}

#[derive(Debug, Deserialize)]
struct Domain {
    id: String,
    #[serde(rename = "unicode-name")]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Records {
    #[serde(rename = "dns-domain-records", default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    content: String,
}

#[derive(Debug, Deserialize)]
struct Operation {
    id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
}

fn unexpected(what: &str, e: &serde_json::Error) -> DnsError {
    DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true)
}

impl ExoscaleProvider {
    pub fn new(config: &Exoscale) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        let endpoint = config.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/');
        let after_scheme = endpoint.find("://").map_or(0, |i| i + 3);
        let cut = endpoint[after_scheme..].find('/').map_or(endpoint.len(), |i| after_scheme + i);
        Ok(Self {
            origin: endpoint[..cut].to_owned(),
            prefix: endpoint[cut..].to_owned(),
            key: config.api_key.clone().ok_or_else(|| missing("api_key"))?,
            secret: config.api_secret.clone().ok_or_else(|| missing("api_secret"))?,
            client: ApiClient::new(PROVIDER)?,
        })
    }

    /// A signed call to `path` (after the endpoint's `/v2`); `Err` unless 2xx.
    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let full = format!("{}{path}", self.prefix);
        let body_text = body.map(ToString::to_string).unwrap_or_default();
        let expires = (SystemTime::now() + SIGNATURE_LIFETIME).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let authorization = sign(&self.key, &self.secret, &method, &full, &[], &body_text, expires);
        let headers = [("authorization", authorization), ("accept", "application/json".into())];
        let body = body.map(|_| ("application/json", body_text.into_bytes()));
        let answer = self.client.send(method.clone(), &format!("{}{full}", self.origin), &headers, body).await?;
        if !answer.status.is_success() {
            let detail =
                serde_json::from_slice::<ApiError>(&answer.body).map(|e| e.message).unwrap_or_else(|_| answer.text());
            return Err(answer.error(PROVIDER, &format!("{method} {}", generic(path)), &detail));
        }
        Ok(answer)
    }

    async fn domain(&self, fqdn: &str) -> Result<Domain, DnsError> {
        let answer = self.call(Method::GET, "/dns-domain", None).await?;
        let mut domains: Domains = serde_json::from_slice(&answer.body).map_err(|e| unexpected("GET /dns-domain", &e))?;
        let found = zone_candidates(fqdn)
            .iter()
            .find_map(|c| domains.domains.iter().position(|d| d.name.eq_ignore_ascii_case(c)))
            .ok_or_else(|| DnsError::provider(PROVIDER, format!("no DNS domain in this organization holds {fqdn}"), false))?;
        Ok(domains.domains.swap_remove(found))
    }

    /// Waits until the operation `answer` started has succeeded.
    async fn wait(&self, answer: &Answer, what: &str) -> Result<(), DnsError> {
        let mut operation: Operation = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        while operation.state == "pending" {
            if started.elapsed() > OPERATION_TIMEOUT {
                let message = format!("{what}: operation {} still pending after {OPERATION_TIMEOUT:?}", operation.id);
                return Err(DnsError::provider(PROVIDER, message, true));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let answer = self.call(Method::GET, &format!("/operation/{}", operation.id), None).await?;
            operation = serde_json::from_slice(&answer.body).map_err(|e| unexpected("GET /operation/<id>", &e))?;
        }
        if operation.state == "success" {
            return Ok(());
        }
        let why = [operation.reason, operation.message].into_iter().flatten().collect::<Vec<_>>().join(": ");
        Err(DnsError::provider(PROVIDER, format!("{what}: operation {} {}: {why}", operation.id, operation.state), true))
    }
}

/// A path with ids replaced, for messages: `/dns-domain/<id>/record`.
fn generic(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let named = |i: usize| i >= 1 && ["dns-domain", "record", "operation"].contains(&parts[i - 1]);
    parts.iter().enumerate().map(|(i, p)| if named(i) { "<id>" } else { p }).collect::<Vec<_>>().join("/")
}

/// `fqdn` relative to `zone` (`""` at the apex).
fn name_in(fqdn: &str, zone: &str) -> String {
    let full = relative(fqdn);
    full.strip_suffix(zone).map_or(full, |n| n.trim_end_matches('.')).to_owned()
}

#[async_trait]
impl DnsProvider for ExoscaleProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let body = serde_json::json!({
            "name": name_in(&record.fqdn, &domain.name),
            "type": "TXT",
            "content": record.value,
            "ttl": record.ttl,
        });
        let answer = self.call(Method::POST, &format!("/dns-domain/{}/record", domain.id), Some(&body)).await?;
        self.wait(&answer, "creating the TXT record").await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %domain.name, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let name = name_in(&record.fqdn, &domain.name);
        let answer = self.call(Method::GET, &format!("/dns-domain/{}/record", domain.id), None).await?;
        let records: Records =
            serde_json::from_slice(&answer.body).map_err(|e| unexpected("GET /dns-domain/<id>/record", &e))?;
        let ours = records.records.iter().find(|r| {
            r.kind == "TXT" && r.name.eq_ignore_ascii_case(&name) && r.content.trim_matches('"') == record.value
        });
        let Some(ours) = ours else { return Ok(()) };
        let path = format!("/dns-domain/{}/record/{}", domain.id, ours.id);
        let answer = match self.call(Method::DELETE, &path, None).await {
            Ok(answer) => answer,
            Err(DnsError::Provider { message, .. }) if message.contains(&format!("HTTP {}:", StatusCode::NOT_FOUND.as_u16())) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        self.wait(&answer, "deleting the TXT record").await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %domain.name, "TXT record deleted");
        Ok(())
    }
}

#[cfg(test)]
#[path = "exoscale_tests.rs"]
mod tests;
