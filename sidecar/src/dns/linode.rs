//! `linode`: Linode (Akamai) API v4 with a personal access token
//! (`Authorization: Bearer`, scope Domains read/write). The domain is the
//! record name's longest suffix among `GET /domains` (every page); records
//! are created with a name relative to it, and `cleanup` lists the domain's
//! records (every page) and deletes the TXT record holding our value.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "linode";
/// Linode rounds TTLs up to its list of values; lego's minimum.
const MIN_TTL: u32 = 300;
const PAGE_SIZE: u32 = 100;

// === settings ===

/// `[dns_challenge.linode]`: API v4 with a token (`LINODE_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linode {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.linode.com/v4".into()
}

impl std::fmt::Debug for Linode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linode")
            .field("token", &redacted(self.token.as_ref()))
            .field("token_file", &self.token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Linode {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.token_file.as_deref();
        env.secret(&format!("{field}.token"), &mut self.token, file, "LINODE_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        required(&format!("{field}.token"), self.token.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(LinodeProvider::new(self)?))
    }
}

// === impl LinodeProvider ===

pub struct LinodeProvider {
    base: String,
    token: String,
    client: ApiClient,
}

impl std::fmt::Debug for LinodeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinodeProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

/// One page of a v4 list.
#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    pages: u32,
}

#[derive(Debug, Deserialize)]
struct Domain {
    id: u64,
    domain: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: u64,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    target: String,
}

/// Linode's error body: `{"errors":[{"field":"...","reason":"..."}]}`.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let reasons: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let reason = e["reason"].as_str()?;
            Some(e["field"].as_str().map_or_else(|| reason.to_owned(), |field| format!("{field}: {reason}")))
        })
        .collect();
    if reasons.is_empty() {
        answer.text()
    } else {
        reasons.join("; ")
    }
}

impl LinodeProvider {
    pub fn new(config: &Linode) -> Result<Self, DnsError> {
        let token = config.token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no token", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), token, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Answer, DnsError> {
        let headers = [("authorization", format!("Bearer {}", self.token))];
        let answer = self.client.json(method, &format!("{}{path}", self.base), &headers, body).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        Ok(answer)
    }

    /// Every item of a paginated list.
    async fn all<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<Vec<T>, DnsError> {
        let mut items = Vec::new();
        let mut page = 1;
        loop {
            let answer = self.call(Method::GET, &format!("{path}?page={page}&page_size={PAGE_SIZE}"), None, what).await?;
            if !answer.status.is_success() {
                return Err(answer.error(PROVIDER, what, &error_text(&answer)));
            }
            let list: Page<T> = serde_json::from_slice(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
            items.extend(list.data);
            if page >= list.pages {
                return Ok(items);
            }
            page += 1;
        }
    }

    async fn domain(&self, fqdn: &str) -> Result<Domain, DnsError> {
        let mut domains: Vec<Domain> = self.all("/domains", "GET /domains").await?;
        let best = zone_candidates(fqdn)
            .into_iter()
            .find_map(|candidate| domains.iter().position(|d| d.domain.eq_ignore_ascii_case(&candidate)));
        if let Some(index) = best {
            return Ok(domains.swap_remove(index));
        }
        Err(DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }
}

fn name_in<'a>(fqdn: &'a str, domain: &str) -> &'a str {
    let full = relative(fqdn);
    full.strip_suffix(&format!(".{domain}")).unwrap_or(full)
}

#[async_trait]
impl DnsProvider for LinodeProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.domain(fqdn).await.map(|domain| Some(domain.domain))
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let body = json!({
            "type": "TXT",
            "name": name_in(&record.fqdn, &domain.domain),
            "target": record.value,
            "ttl_sec": record.ttl.max(MIN_TTL),
        });
        let what = "POST /domains/<id>/records";
        let answer = self.call(Method::POST, &format!("/domains/{}/records", domain.id), Some(&body), what).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain = %domain.domain, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let name = name_in(&record.fqdn, &domain.domain);
        let path = format!("/domains/{}/records", domain.id);
        let records: Vec<Record> = self.all(&path, "GET /domains/<id>/records").await?;
        let ours = records.iter().find(|r| r.kind == "TXT" && r.name.eq_ignore_ascii_case(name) && r.target == record.value);
        if let Some(ours) = ours {
            let what = "DELETE /domains/<id>/records/<id>";
            self.call(Method::DELETE, &format!("{path}/{}", ours.id), None, what).await?;
            tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "linode_tests.rs"]
mod tests;
