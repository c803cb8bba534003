//! `vultr`: Vultr API v2 with an API key (`Authorization: Bearer`). Lists are
//! paginated with a cursor (`meta.links.next`). The domain is the record
//! name's longest suffix among `GET /domains` (every page); TXT data is sent
//! quoted, as Vultr expects, and `cleanup` lists the domain's records (every
//! page) and deletes the TXT record holding our value.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::oauth::encode;
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "vultr";
const PER_PAGE: u32 = 100;

// === settings ===

/// `[dns_challenge.vultr]`: API v2 with an API key (`VULTR_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vultr {
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.vultr.com/v2".into()
}

impl std::fmt::Debug for Vultr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vultr")
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Vultr {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        env.secret(&format!("{field}.api_key"), &mut self.api_key, self.api_key_file.as_deref(), "VULTR_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        required(&format!("{field}.api_key"), self.api_key.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(VultrProvider::new(self)?))
    }
}

// === impl VultrProvider ===

pub struct VultrProvider {
    base: String,
    api_key: String,
    client: ApiClient,
}

impl std::fmt::Debug for VultrProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VultrProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Domain {
    domain: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    data: String,
}

/// Vultr's error body: `{"error":"...","status":401}`.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    body["error"].as_str().filter(|e| !e.is_empty()).map_or_else(|| answer.text(), str::to_owned)
}

impl VultrProvider {
    pub fn new(config: &Vultr) -> Result<Self, DnsError> {
        let api_key = config.api_key.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no api_key", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), api_key, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Answer, DnsError> {
        let headers = [("authorization", format!("Bearer {}", self.api_key))];
        let answer = self.client.json(method, &format!("{}{path}", self.base), &headers, body).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        Ok(answer)
    }

    /// Every item under `key` of a cursor-paginated list.
    async fn all<T: DeserializeOwned>(&self, path: &str, key: &str, what: &str) -> Result<Vec<T>, DnsError> {
        let mut items = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut url = format!("{path}?per_page={PER_PAGE}");
            if !cursor.is_empty() {
                url.push_str(&format!("&cursor={}", encode(&cursor)));
            }
            let answer = self.call(Method::GET, &url, None, what).await?;
            let mut page: Value = serde_json::from_slice(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
            let list: Vec<T> = serde_json::from_value(page[key].take())
                .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
            items.extend(list);
            match page["meta"]["links"]["next"].as_str() {
                Some(next) if !next.is_empty() => cursor = next.to_owned(),
                _ => return Ok(items),
            }
        }
    }

    async fn domain(&self, fqdn: &str) -> Result<String, DnsError> {
        let domains: Vec<Domain> = self.all("/domains", "domains", "GET /domains").await?;
        zone_candidates(fqdn)
            .into_iter()
            .find(|candidate| domains.iter().any(|d| d.domain.eq_ignore_ascii_case(candidate)))
            .ok_or_else(|| DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }
}

fn name_in<'a>(fqdn: &'a str, domain: &str) -> &'a str {
    let full = relative(fqdn);
    full.strip_suffix(&format!(".{domain}")).unwrap_or(full)
}

#[async_trait]
impl DnsProvider for VultrProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.domain(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let body = json!({
            "name": name_in(&record.fqdn, &domain),
            "type": "TXT",
            "data": format!("\"{}\"", record.value),
            "ttl": record.ttl,
        });
        self.call(Method::POST, &format!("/domains/{domain}/records"), Some(&body), "POST /domains/<domain>/records")
            .await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let name = name_in(&record.fqdn, &domain);
        let path = format!("/domains/{domain}/records");
        let records: Vec<Record> = self.all(&path, "records", "GET /domains/<domain>/records").await?;
        let ours = records.iter().find(|r| r.kind == "TXT" && r.name == name && r.data.trim_matches('"') == record.value);
        if let Some(ours) = ours {
            self.call(Method::DELETE, &format!("{path}/{}", ours.id), None, "DELETE /domains/<domain>/records/<id>")
                .await?;
            tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "vultr_tests.rs"]
mod tests;
