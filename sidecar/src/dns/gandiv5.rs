//! `gandiv5`: Gandi LiveDNS (API v5) with a personal access token
//! (`Authorization: Bearer`, permission "Manage domain name technical
//! configurations") or a legacy API key (`Authorization: Apikey`).
//!
//! The zone is the record name's longest suffix that `GET /domains/<name>`
//! finds. A TXT rrset holds every value at its name, so `present` and
//! `cleanup` read it and `PUT` it back whole (or `DELETE` it when our value
//! was the last).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "gandiv5";
/// LiveDNS's smallest TTL.
const MIN_TTL: u32 = 300;

// === settings ===

/// `[dns_challenge.gandiv5]`: a personal access token
/// (`GANDIV5_PERSONAL_ACCESS_TOKEN`) or an API key (`GANDIV5_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GandiV5 {
    #[serde(default)]
    pub personal_access_token: Option<String>,
    #[serde(default)]
    pub personal_access_token_file: Option<PathBuf>,
    /// Deprecated by Gandi; used only without a personal access token.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.gandi.net/v5/livedns".into()
}

impl std::fmt::Debug for GandiV5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GandiV5")
            .field("personal_access_token", &redacted(self.personal_access_token.as_ref()))
            .field("personal_access_token_file", &self.personal_access_token_file)
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for GandiV5 {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let (key, file) = (format!("{field}.personal_access_token"), self.personal_access_token_file.as_deref());
        env.secret(&key, &mut self.personal_access_token, file, "GANDIV5_PERSONAL_ACCESS_TOKEN")?;
        env.secret(&format!("{field}.api_key"), &mut self.api_key, self.api_key_file.as_deref(), "GANDIV5_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        if self.personal_access_token.is_none() && self.api_key.is_none() {
            return Err(SettingsError::new(
                format!("{field}.personal_access_token"),
                "is required, or api_key (inline, _file, or lego's environment variable)",
            ));
        }
        Ok(())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(GandiV5Provider::new(self)?))
    }
}

// === impl GandiV5Provider ===

pub struct GandiV5Provider {
    base: String,
    /// The `Authorization` header's value.
    authorization: String,
    client: ApiClient,
}

impl std::fmt::Debug for GandiV5Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GandiV5Provider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct RrSet {
    #[serde(default)]
    rrset_values: Vec<String>,
}

/// Gandi's error body: `{"code":401,"message":"...","object":"HTTPUnauthorized","cause":"Unauthorized"}`.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match (body["message"].as_str(), body["cause"].as_str()) {
        (Some(message), Some(cause)) => format!("{message} ({cause})"),
        (Some(message), None) => message.to_owned(),
        _ => answer.text(),
    }
}

impl GandiV5Provider {
    pub fn new(config: &GandiV5) -> Result<Self, DnsError> {
        let authorization = match (&config.personal_access_token, &config.api_key) {
            (Some(token), _) => format!("Bearer {token}"),
            (None, Some(key)) => format!("Apikey {key}"),
            (None, None) => return Err(DnsError::provider(PROVIDER, "no personal_access_token or api_key", false)),
        };
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            authorization,
            client: ApiClient::new(PROVIDER)?,
        })
    }

    /// A call; 404 is returned, any other failure is an error naming `what`.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Answer, DnsError> {
        let headers = [("authorization", self.authorization.clone()), ("accept", "application/json".to_owned())];
        let answer = self.client.json(method, &format!("{}{path}", self.base), &headers, body).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        Ok(answer)
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/domains/{candidate}"), None, "GET /domains/<fqdn>").await?;
            if answer.status.is_success() {
                return Ok(candidate);
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no LiveDNS domain in this account holds {fqdn}"), false))
    }

    /// Sets the TXT values at `record`'s name to `edit(values)`.
    async fn update(&self, record: &TxtRecord, edit: impl Fn(&mut Vec<String>)) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let full = relative(&record.fqdn);
        let name = full.strip_suffix(&format!(".{zone}")).unwrap_or(full);
        let path = format!("/domains/{zone}/records/{name}/TXT");
        let answer = self.call(Method::GET, &path, None, "GET /domains/<fqdn>/records/<name>/TXT").await?;
        let before = if answer.status.is_success() {
            let set: RrSet = serde_json::from_slice(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("GET rrset: unexpected answer: {e}"), true))?;
            set.rrset_values
        } else {
            Vec::new()
        };
        let mut values = before.clone();
        edit(&mut values);
        if values == before {
            return Ok(());
        }
        let (what, answer) = if values.is_empty() {
            ("DELETE /domains/<fqdn>/records/<name>/TXT", self.call(Method::DELETE, &path, None, "DELETE rrset").await?)
        } else {
            let body = json!({ "rrset_ttl": record.ttl.max(MIN_TTL), "rrset_values": values });
            ("PUT /domains/<fqdn>/records/<name>/TXT", self.call(Method::PUT, &path, Some(&body), "PUT rrset").await?)
        };
        if answer.status == StatusCode::NOT_FOUND && !values.is_empty() {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        Ok(())
    }
}

/// Gandi shows TXT values quoted.
fn same(data: &str, value: &str) -> bool {
    data.trim_matches('"') == value
}

#[async_trait]
impl DnsProvider for GandiV5Provider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, |values| {
            if !values.iter().any(|v| same(v, &record.value)) {
                values.push(record.value.clone());
            }
        })
        .await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, |values| values.retain(|v| !same(v, &record.value))).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "gandiv5_tests.rs"]
mod tests;
