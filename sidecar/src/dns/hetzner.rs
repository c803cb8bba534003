//! `hetzner`: with a Cloud API token (`api_token`, lego's
//! `HETZNER_API_TOKEN`), the Hetzner Cloud API (`hetzner_cloud`); with a DNS
//! Console token (`api_key`, `HETZNER_API_KEY`), the DNS Console API
//! (`dns.hetzner.com/api/v1`, `Auth-API-Token`), here. The zone is the
//! record name's longest suffix that `GET /zones?name=` finds; `present`
//! creates a TXT record named relative to it, `cleanup` lists the zone's
//! records (every page) and deletes those holding our value at our name.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::hetzner_cloud::HetznerCloudProvider;
use super::settings::{http_url, redacted, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "hetzner";
/// Hetzner's smallest TTL.
const MIN_TTL: u32 = 60;
const PER_PAGE: u32 = 100;

// === settings ===

/// `[dns_challenge.hetzner]`: a Cloud API token (`HETZNER_API_TOKEN`) or a
/// DNS Console API token (`HETZNER_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hetzner {
    /// Hetzner Cloud API token (zones in the Cloud Console).
    #[serde(default)]
    pub api_token: Option<String>,
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// Cloud API base URL; change only for tests or a proxy.
    #[serde(default = "default_cloud_base_url")]
    pub cloud_base_url: String,
    /// DNS Console API token (zones still in the DNS Console).
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://dns.hetzner.com/api/v1".into()
}

fn default_cloud_base_url() -> String {
    "https://api.hetzner.cloud/v1".into()
}

impl std::fmt::Debug for Hetzner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hetzner")
            .field("api_token", &redacted(self.api_token.as_ref()))
            .field("api_token_file", &self.api_token_file)
            .field("cloud_base_url", &self.cloud_base_url)
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Hetzner {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.api_token_file.as_deref();
        env.secret(&format!("{field}.api_token"), &mut self.api_token, file, "HETZNER_API_TOKEN")?;
        let file = self.api_key_file.as_deref();
        env.secret(&format!("{field}.api_key"), &mut self.api_key, file, "HETZNER_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        http_url(&format!("{field}.cloud_base_url"), &self.cloud_base_url)?;
        match (&self.api_token, &self.api_key) {
            (None, None) => Err(SettingsError::new(
                format!("{field}.api_token"),
                "is required (a Cloud API token: inline, _file or HETZNER_API_TOKEN; or api_key for the DNS Console)",
            )),
            _ => Ok(()),
        }
    }

    /// The Cloud API when there is a Cloud token (as lego), else the DNS Console.
    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        match &self.api_token {
            Some(token) => Ok(Arc::new(HetznerCloudProvider::new(&self.cloud_base_url, token.clone())?)),
            None => Ok(Arc::new(HetznerProvider::new(self)?)),
        }
    }
}

// === impl HetznerProvider ===

pub struct HetznerProvider {
    base: String,
    key: String,
    client: ApiClient,
}

impl std::fmt::Debug for HetznerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HetznerProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
struct Zones {
    #[serde(default)]
    zones: Vec<Zone>,
}

#[derive(Debug, Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct Records {
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    pagination: Pagination,
}

#[derive(Debug, Default, Deserialize)]
struct Pagination {
    #[serde(default)]
    last_page: u32,
}

impl HetznerProvider {
    pub fn new(config: &Hetzner) -> Result<Self, DnsError> {
        let key = config.api_key.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no api_key", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), key, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("auth-api-token", self.key.clone())];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    /// The error for a failed answer: Hetzner's `{"error": {"message",
    /// "code"}}`, or the gateway's `{"message"}` (a refused token).
    fn error(answer: &Answer, what: &str) -> DnsError {
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let detail = json["error"]["message"]
            .as_str()
            .or_else(|| json["message"].as_str())
            .map_or_else(|| answer.text(), str::to_owned);
        answer.error(PROVIDER, what, &detail)
    }

    fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, DnsError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))
    }

    async fn zone(&self, fqdn: &str) -> Result<Zone, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/zones?name={candidate}"), None).await?;
            match answer.status {
                // "zone not found" is a 404.
                StatusCode::NOT_FOUND => continue,
                s if !s.is_success() => return Err(Self::error(&answer, "GET /zones")),
                _ => {}
            }
            let zones: Zones = Self::parse(&answer, "GET /zones")?;
            if let Some(zone) = zones.zones.into_iter().find(|z| z.name.eq_ignore_ascii_case(&candidate)) {
                return Ok(zone);
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no zone in this account holds {fqdn}"), false))
    }
}

/// The record's name relative to `zone` (`_acme-challenge.www`).
fn subname<'a>(fqdn: &'a str, zone: &str) -> &'a str {
    let full = relative(fqdn);
    full.strip_suffix(zone).and_then(|s| s.strip_suffix('.')).unwrap_or(full)
}

#[async_trait]
impl DnsProvider for HetznerProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(|zone| Some(zone.name))
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let body = serde_json::json!({
            "zone_id": zone.id,
            "type": "TXT",
            "name": subname(&record.fqdn, &zone.name),
            "value": record.value,
            "ttl": record.ttl.max(MIN_TTL),
        });
        let answer = self.call(Method::POST, "/records", Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, "POST /records"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.name, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let name = subname(&record.fqdn, &zone.name);
        let mut ours = Vec::new();
        let mut page = 1;
        loop {
            let path = format!("/records?zone_id={}&page={page}&per_page={PER_PAGE}", zone.id);
            let answer = self.call(Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                return Err(Self::error(&answer, "GET /records"));
            }
            let found: Records = Self::parse(&answer, "GET /records")?;
            ours.extend(
                found
                    .records
                    .into_iter()
                    .filter(|r| r.kind == "TXT" && r.name.eq_ignore_ascii_case(name))
                    .filter(|r| r.value.trim_matches('"') == record.value)
                    .map(|r| r.id),
            );
            if page >= found.meta.pagination.last_page {
                break;
            }
            page += 1;
        }
        for id in ours {
            let answer = self.call(Method::DELETE, &format!("/records/{id}"), None).await?;
            if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
                return Err(Self::error(&answer, "DELETE /records/<id>"));
            }
            tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "hetzner_tests.rs"]
mod tests;
