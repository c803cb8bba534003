//! `porkbun`: Porkbun API v3 (JSON over `POST`), the API key and secret API
//! key in every request's body (`apikey`, `secretapikey`). The domain must
//! have "API Access" turned on at Porkbun.
//!
//! The domain is the record name's longest suffix among `/domain/listAll`
//! (every page of 1000); `present` creates a TXT record, `cleanup` reads the
//! TXT records at the name (`/dns/retrieveByNameType`) and deletes the one
//! holding our value.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "porkbun";
/// Porkbun's smallest TTL.
const MIN_TTL: u32 = 600;
/// `/domain/listAll` answers this many domains a call.
const LIST_PAGE: usize = 1000;

// === settings ===

/// `[dns_challenge.porkbun]`: API key and secret API key
/// (`PORKBUN_API_KEY`, `PORKBUN_SECRET_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Porkbun {
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_api_key: Option<String>,
    #[serde(default)]
    pub secret_api_key_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.porkbun.com/api/json/v3".into()
}

impl std::fmt::Debug for Porkbun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Porkbun")
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("secret_api_key", &redacted(self.secret_api_key.as_ref()))
            .field("secret_api_key_file", &self.secret_api_key_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Porkbun {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        env.secret(&format!("{field}.api_key"), &mut self.api_key, self.api_key_file.as_deref(), "PORKBUN_API_KEY")?;
        let (key, file) = (format!("{field}.secret_api_key"), self.secret_api_key_file.as_deref());
        env.secret(&key, &mut self.secret_api_key, file, "PORKBUN_SECRET_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        required(&format!("{field}.api_key"), self.api_key.as_ref())?;
        required(&format!("{field}.secret_api_key"), self.secret_api_key.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(PorkbunProvider::new(self)?))
    }
}

// === impl PorkbunProvider ===

pub struct PorkbunProvider {
    base: String,
    api_key: String,
    secret_api_key: String,
    client: ApiClient,
}

impl std::fmt::Debug for PorkbunProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PorkbunProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Record {
    /// A string in Porkbun's answers; a number is accepted too.
    id: Value,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    content: String,
}

/// Porkbun's answer: `{"status":"SUCCESS",...}` or `{"status":"ERROR","message":"..."}`.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    body["message"].as_str().map_or_else(|| answer.text(), str::to_owned)
}

impl PorkbunProvider {
    pub fn new(config: &Porkbun) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone().ok_or_else(|| missing("api_key"))?,
            secret_api_key: config.secret_api_key.clone().ok_or_else(|| missing("secret_api_key"))?,
            client: ApiClient::new(PROVIDER)?,
        })
    }

    /// `POST <path>` with the keys added to `fields`; the answer's JSON when
    /// its status is `SUCCESS`.
    async fn call(&self, path: &str, mut fields: Value, what: &str) -> Result<Value, DnsError> {
        fields["apikey"] = json!(self.api_key);
        fields["secretapikey"] = json!(self.secret_api_key);
        let answer = self.client.json(Method::POST, &format!("{}{path}", self.base), &[], Some(&fields)).await?;
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if !answer.status.is_success() || body["status"] != "SUCCESS" {
            if answer.status.is_success() {
                return Err(DnsError::provider(PROVIDER, format!("{what}: {}", error_text(&answer)), false));
            }
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        Ok(body)
    }

    async fn domain(&self, fqdn: &str) -> Result<String, DnsError> {
        let mut domains: Vec<String> = Vec::new();
        loop {
            let page = self.call("/domain/listAll", json!({ "start": domains.len().to_string() }), "listing domains").await?;
            let names: Vec<String> = page["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["domain"].as_str().map(str::to_ascii_lowercase))
                .collect();
            let last = names.len() < LIST_PAGE;
            domains.extend(names);
            if last {
                break;
            }
        }
        zone_candidates(fqdn)
            .into_iter()
            .find(|candidate| domains.contains(candidate))
            .ok_or_else(|| DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }
}

fn sub_domain<'a>(fqdn: &'a str, domain: &str) -> &'a str {
    let full = relative(fqdn);
    full.strip_suffix(&format!(".{domain}")).unwrap_or(full)
}

#[async_trait]
impl DnsProvider for PorkbunProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.domain(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let fields = json!({
            "name": sub_domain(&record.fqdn, &domain),
            "type": "TXT",
            "content": record.value,
            "ttl": record.ttl.max(MIN_TTL).to_string(),
        });
        self.call(&format!("/dns/create/{domain}"), fields, "POST /dns/create/<domain>").await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let path = format!("/dns/retrieveByNameType/{domain}/TXT/{}", sub_domain(&record.fqdn, &domain));
        let what = "POST /dns/retrieveByNameType/<domain>/TXT/<name>";
        let answer = self.call(&path, json!({}), what).await?;
        let records: Vec<Record> = serde_json::from_value(answer["records"].clone()).unwrap_or_default();
        if let Some(ours) = records.iter().find(|r| r.kind == "TXT" && r.content == record.value) {
            let id = ours.id.as_str().map_or_else(|| ours.id.to_string(), str::to_owned);
            self.call(&format!("/dns/delete/{domain}/{id}"), json!({}), "POST /dns/delete/<domain>/<id>").await?;
            tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "porkbun_tests.rs"]
mod tests;
