//! `ionos`: the IONOS DNS API (`/dns/v1`) with an API key
//! (`X-API-Key: <prefix>.<secret>`). The zone is the longest one
//! `GET /v1/zones` lists whose name is a suffix of the record name.
//! `PATCH /v1/zones/<id>` replaces every record of each name and type it
//! is given, so `present` reads the TXT records at the name
//! (`GET /v1/zones/<id>?suffix=&recordType=TXT`) and sends them back with
//! ours; `cleanup` deletes the record holding our value by its id.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "ionos";
/// The smallest TTL lego allows for IONOS.
const MIN_TTL: u32 = 300;

// === settings ===

/// `[dns_challenge.ionos]`: an API key, `<prefix>.<secret>` (`IONOS_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ionos {
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.hosting.ionos.com/dns".into()
}

impl std::fmt::Debug for Ionos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ionos")
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Ionos {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.api_key_file.as_deref();
        env.secret(&format!("{field}.api_key"), &mut self.api_key, file, "IONOS_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        // Not checked for the `<prefix>.<secret>` form: IONOS's 401 says more.
        required(&format!("{field}.api_key"), self.api_key.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(IonosProvider::new(self)?))
    }
}

// === impl IonosProvider ===

pub struct IonosProvider {
    base: String,
    key: String,
    client: ApiClient,
    /// Held from reading a name's TXT set to sending it back, so two
    /// certificates sharing the name, issued at once, keep both values.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for IonosProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IonosProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct CustomerZone {
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled: Option<bool>,
}

/// `[{"code": "...", "message": "..."}]`.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn unexpected(what: &str, e: &serde_json::Error) -> DnsError {
    DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true)
}

impl IonosProvider {
    pub fn new(config: &Ionos) -> Result<Self, DnsError> {
        let key = config.api_key.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no api_key", false))?;
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            key,
            client: ApiClient::new(PROVIDER)?,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("x-api-key", self.key.clone()), ("accept", "application/json".into())];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn error(answer: &Answer, what: &str) -> DnsError {
        let detail = match serde_json::from_slice::<Vec<ApiError>>(&answer.body) {
            Ok(errors) if !errors.is_empty() => {
                errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join(", ")
            }
            _ => answer.text(),
        };
        answer.error(PROVIDER, what, &detail)
    }

    async fn zone(&self, fqdn: &str) -> Result<Zone, DnsError> {
        let what = "GET /v1/zones";
        let answer = self.call(Method::GET, "/v1/zones", None).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, what));
        }
        let mut zones: Vec<Zone> = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
        // Candidates go from the longest: the first one listed wins.
        let found = zone_candidates(fqdn)
            .iter()
            .find_map(|c| zones.iter().position(|z| z.name.eq_ignore_ascii_case(c)))
            .ok_or_else(|| DnsError::provider(PROVIDER, format!("no zone in this account holds {fqdn}"), false))?;
        Ok(zones.swap_remove(found))
    }

    /// The TXT records named exactly `name` in the zone.
    async fn txt_records(&self, zone: &Zone, name: &str) -> Result<Vec<Record>, DnsError> {
        let what = "GET /v1/zones/<id>";
        let path = format!("/v1/zones/{}?suffix={name}&recordType=TXT", zone.id);
        let answer = self.call(Method::GET, &path, None).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, what));
        }
        let found: CustomerZone = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
        Ok(found.records.into_iter().filter(|r| r.kind == "TXT" && r.name.eq_ignore_ascii_case(name)).collect())
    }
}

/// IONOS answers TXT content quoted.
fn unquoted(content: &str) -> &str {
    content.strip_prefix('"').and_then(|c| c.strip_suffix('"')).unwrap_or(content)
}

#[async_trait]
impl DnsProvider for IonosProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let name = relative(&record.fqdn);
        let _writing = self.writing.lock().await;
        let mut records = self.txt_records(&zone, name).await?;
        if records.iter().any(|r| unquoted(&r.content) == record.value) {
            return Ok(());
        }
        records.push(Record {
            id: None,
            name: name.to_owned(),
            kind: "TXT".into(),
            content: record.value.clone(),
            ttl: Some(record.ttl.max(MIN_TTL)),
            disabled: None,
        });
        let body = serde_json::to_value(&records).unwrap_or_default();
        let answer = self.call(Method::PATCH, &format!("/v1/zones/{}", zone.id), Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, "PATCH /v1/zones/<id>"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.name, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let records = self.txt_records(&zone, relative(&record.fqdn)).await?;
        let Some(id) = records.into_iter().find(|r| unquoted(&r.content) == record.value).and_then(|r| r.id) else {
            return Ok(());
        };
        let answer = self.call(Method::DELETE, &format!("/v1/zones/{}/records/{id}", zone.id), None).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(Self::error(&answer, "DELETE /v1/zones/<id>/records/<id>"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.name, "TXT record deleted");
        Ok(())
    }
}

#[cfg(test)]
#[path = "ionos_tests.rs"]
mod tests;
