//! `scaleway`: Scaleway Domains and DNS API (`domain/v2beta1`) with an API
//! secret key (`X-Auth-Token`). The zone is the record name's longest suffix
//! that `GET /domain/v2beta1/dns-zones?dns_zone=` lists (a zone is
//! `subdomain.domain`). `present` sends `PATCH .../dns-zones/<zone>/records`
//! with an `add` change; `cleanup` lists the TXT records at the name (every
//! page) and sends a `delete` change for the one holding our value, by id.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "scaleway";
/// Scaleway's smallest TTL.
const MIN_TTL: u32 = 60;
const PAGE_SIZE: u32 = 100;

// === settings ===

/// `[dns_challenge.scaleway]`: an API secret key (`SCW_SECRET_KEY`, or
/// lego's older `SCALEWAY_API_TOKEN`), optionally a project.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaleway {
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// Limits the zone lookup to one project.
    #[serde(default)]
    pub project_id: Option<String>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.scaleway.com".into()
}

impl std::fmt::Debug for Scaleway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaleway")
            .field("secret_key", &redacted(self.secret_key.as_ref()))
            .field("secret_key_file", &self.secret_key_file)
            .field("project_id", &self.project_id)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Scaleway {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let field = format!("{field}.secret_key");
        env.secret(&field, &mut self.secret_key, self.secret_key_file.as_deref(), "SCW_SECRET_KEY")?;
        env.secret(&field, &mut self.secret_key, None, "SCALEWAY_API_TOKEN")?;
        env.fill(&mut self.project_id, "SCW_PROJECT_ID");
        env.fill(&mut self.project_id, "SCALEWAY_PROJECT_ID");
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.secret_key"), self.secret_key.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(ScalewayProvider::new(self)?))
    }
}

// === impl ScalewayProvider ===

pub struct ScalewayProvider {
    base: String,
    secret_key: String,
    project_id: Option<String>,
    client: ApiClient,
}

impl std::fmt::Debug for ScalewayProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalewayProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Zones {
    #[serde(default)]
    dns_zones: Vec<Zone>,
    #[serde(default)]
    total_count: u32,
}

#[derive(Debug, Deserialize)]
struct Zone {
    domain: String,
    #[serde(default)]
    subdomain: String,
}

impl Zone {
    fn name(&self) -> String {
        if self.subdomain.is_empty() {
            self.domain.clone()
        } else {
            format!("{}.{}", self.subdomain, self.domain)
        }
    }
}

#[derive(Debug, Deserialize)]
struct Records {
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default)]
    total_count: u32,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    data: String,
}

/// `{"message": "...", "type": "...", ...}`.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: String,
}

fn unexpected(what: &str, e: &serde_json::Error) -> DnsError {
    DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true)
}

impl ScalewayProvider {
    pub fn new(config: &Scaleway) -> Result<Self, DnsError> {
        let secret_key =
            config.secret_key.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no secret_key", false))?;
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            secret_key,
            project_id: config.project_id.clone(),
            client: ApiClient::new(PROVIDER)?,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("x-auth-token", self.secret_key.clone())];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn error(answer: &Answer, what: &str) -> DnsError {
        let detail = serde_json::from_slice::<ApiError>(&answer.body)
            .map(|e| format!("{} ({})", e.message, e.kind))
            .unwrap_or_else(|_| answer.text());
        answer.error(PROVIDER, what, &detail)
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        let what = "GET /domain/v2beta1/dns-zones";
        let project = self.project_id.as_ref().map(|p| format!("&project_id={p}")).unwrap_or_default();
        for candidate in zone_candidates(fqdn) {
            let (mut page, mut seen) = (1, 0);
            loop {
                let path = format!(
                    "/domain/v2beta1/dns-zones?dns_zone={candidate}&page={page}&page_size={PAGE_SIZE}{project}"
                );
                let answer = self.call(Method::GET, &path, None).await?;
                if !answer.status.is_success() {
                    return Err(Self::error(&answer, what));
                }
                let zones: Zones = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
                if zones.dns_zones.iter().any(|z| z.name() == candidate) {
                    return Ok(candidate);
                }
                seen += zones.dns_zones.len();
                if zones.dns_zones.is_empty() || seen >= zones.total_count as usize {
                    break;
                }
                page += 1;
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no DNS zone in this account holds {fqdn}"), false))
    }

    async fn patch(&self, zone: &str, change: serde_json::Value) -> Result<(), DnsError> {
        let body = serde_json::json!({
            "changes": [change],
            "return_all_records": false,
            "disallow_new_zone_creation": true,
        });
        let answer = self.call(Method::PATCH, &format!("/domain/v2beta1/dns-zones/{zone}/records"), Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, "PATCH /domain/v2beta1/dns-zones/<zone>/records"));
        }
        Ok(())
    }
}

/// `fqdn` relative to `zone` (`""` at the apex).
fn name_in(fqdn: &str, zone: &str) -> String {
    let full = relative(fqdn);
    full.strip_suffix(zone).map_or(full, |n| n.trim_end_matches('.')).to_owned()
}

/// Scaleway keeps TXT data quoted.
fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

#[async_trait]
impl DnsProvider for ScalewayProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let add = serde_json::json!({ "add": { "records": [{
            "name": name_in(&record.fqdn, &zone),
            "type": "TXT",
            "data": quoted(&record.value),
            "ttl": record.ttl.max(MIN_TTL),
        }]}});
        self.patch(&zone, add).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let name = name_in(&record.fqdn, &zone);
        let what = "GET /domain/v2beta1/dns-zones/<zone>/records";
        let (mut page, mut seen) = (1, 0);
        loop {
            let path = format!(
                "/domain/v2beta1/dns-zones/{zone}/records?name={name}&type=TXT&page={page}&page_size={PAGE_SIZE}"
            );
            let answer = self.call(Method::GET, &path, None).await?;
            if answer.status == StatusCode::NOT_FOUND {
                return Ok(());
            }
            if !answer.status.is_success() {
                return Err(Self::error(&answer, what));
            }
            let list: Records = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
            if let Some(ours) = list.records.iter().find(|r| r.data.trim_matches('"') == record.value) {
                self.patch(&zone, serde_json::json!({ "delete": { "id": ours.id } })).await?;
                tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone, "TXT record deleted");
                return Ok(());
            }
            seen += list.records.len();
            if list.records.is_empty() || seen >= list.total_count as usize {
                return Ok(());
            }
            page += 1;
        }
    }
}

#[cfg(test)]
#[path = "scaleway_tests.rs"]
mod tests;
