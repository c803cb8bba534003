//! `bunny`: bunny.net DNS with the account API key (`AccessKey` header).
//! `GET /dnszone?search=` lists the zones with their records (`page`,
//! `perPage`, followed while `HasMoreItems`); the zone is the longest one
//! whose domain is a suffix of the record name. `present` adds a TXT record
//! (`PUT /dnszone/<id>/records`); `cleanup` finds, in the zone's records,
//! the TXT record at the name holding our value and deletes it by id.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "bunny";
/// bunny.net's smallest TTL (lego's).
const MIN_TTL: u32 = 60;
/// The record type TXT in bunny.net's numbering (A is 0, AAAA 1, CNAME 2).
const TYPE_TXT: u64 = 3;

// === settings ===

/// `[dns_challenge.bunny]`: the account API key (`BUNNY_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bunny {
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.bunny.net".into()
}

impl std::fmt::Debug for Bunny {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bunny")
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Bunny {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.api_key_file.as_deref();
        env.secret(&format!("{field}.api_key"), &mut self.api_key, file, "BUNNY_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.api_key"), self.api_key.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(BunnyProvider::new(self)?))
    }
}

// === impl BunnyProvider ===

pub struct BunnyProvider {
    base: String,
    key: String,
    client: ApiClient,
}

impl std::fmt::Debug for BunnyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BunnyProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ZonePage {
    #[serde(default)]
    items: Vec<Zone>,
    #[serde(default)]
    has_more_items: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Zone {
    id: u64,
    domain: String,
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    id: u64,
    /// A number (3 for TXT), or the type's name in newer answers.
    #[serde(rename = "Type")]
    kind: serde_json::Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

impl Record {
    fn is_txt(&self) -> bool {
        self.kind.as_u64() == Some(TYPE_TXT) || self.kind.as_str() == Some("TXT")
    }
}

/// `{"ErrorKey": "...", "Field": "...", "Message": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    #[serde(default)]
    error_key: String,
    #[serde(default)]
    message: String,
}

impl BunnyProvider {
    pub fn new(config: &Bunny) -> Result<Self, DnsError> {
        let key = config.api_key.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no api_key", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), key, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("accesskey", self.key.clone()), ("accept", "application/json".into())];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn error(answer: &Answer, what: &str) -> DnsError {
        let detail = match serde_json::from_slice::<ApiError>(&answer.body) {
            Ok(e) if !e.message.is_empty() => format!("{} ({})", e.message, e.error_key),
            _ => answer.text(),
        };
        answer.error(PROVIDER, what, &detail)
    }

    /// The zone holding `fqdn`, with its records.
    async fn zone(&self, fqdn: &str) -> Result<Zone, DnsError> {
        let what = "GET /dnszone";
        let candidates = zone_candidates(fqdn);
        let mut best: Option<Zone> = None;
        // Every candidate ends with the shortest one: bunny.net's substring
        // search for it lists every zone that can hold the name.
        let search = candidates.last().cloned().unwrap_or_default();
        let mut page = 1;
        loop {
            let path = format!("/dnszone?page={page}&perPage=1000&search={search}");
            let answer = self.call(Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                return Err(Self::error(&answer, what));
            }
            let zones: ZonePage = serde_json::from_slice(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
            for zone in zones.items {
                let rank = candidates.iter().position(|c| c.eq_ignore_ascii_case(&zone.domain));
                let best_rank = best.as_ref().and_then(|b| candidates.iter().position(|c| c.eq_ignore_ascii_case(&b.domain)));
                if rank.is_some() && (best_rank.is_none() || rank < best_rank) {
                    best = Some(zone);
                }
            }
            if !zones.has_more_items {
                break;
            }
            page += 1;
        }
        best.ok_or_else(|| DnsError::provider(PROVIDER, format!("no DNS zone in this account holds {fqdn}"), false))
    }
}

/// `fqdn` relative to `zone` (`""` at the apex).
fn name_in(fqdn: &str, zone: &str) -> String {
    let full = relative(fqdn);
    let cut = full.len().saturating_sub(zone.len());
    if full[cut..].eq_ignore_ascii_case(zone) {
        full[..cut].trim_end_matches('.').to_owned()
    } else {
        full.to_owned()
    }
}

#[async_trait]
impl DnsProvider for BunnyProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let body = serde_json::json!({
            "Type": TYPE_TXT,
            "Name": name_in(&record.fqdn, &zone.domain),
            "Value": record.value,
            "Ttl": record.ttl.max(MIN_TTL),
        });
        let answer = self.call(Method::PUT, &format!("/dnszone/{}/records", zone.id), Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, "PUT /dnszone/<id>/records"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.domain, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let name = name_in(&record.fqdn, &zone.domain);
        let Some(ours) = zone
            .records
            .iter()
            .find(|r| r.is_txt() && r.name.eq_ignore_ascii_case(&name) && r.value == record.value)
        else {
            return Ok(());
        };
        let answer = self.call(Method::DELETE, &format!("/dnszone/{}/records/{}", zone.id, ours.id), None).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(Self::error(&answer, "DELETE /dnszone/<id>/records/<id>"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.domain, "TXT record deleted");
        Ok(())
    }
}

#[cfg(test)]
#[path = "bunny_tests.rs"]
mod tests;
