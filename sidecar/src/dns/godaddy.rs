//! `godaddy`: GoDaddy Domains API v1 with an API key and secret
//! (`Authorization: sso-key KEY:SECRET`). The domain is the record name's
//! longest suffix that `GET /v1/domains/<domain>` finds. GoDaddy stores the
//! TXT values at a name as one set: `PUT /v1/domains/<domain>/records/TXT/<name>`
//! replaces the whole set, so `present` reads it and writes it back with our
//! value added, and `cleanup` writes back the others (or deletes the set
//! when ours was the last).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "godaddy";
/// GoDaddy's smallest TTL.
const MIN_TTL: u32 = 600;

// === settings ===

/// `[dns_challenge.godaddy]`: an API key and secret (`GODADDY_API_KEY`,
/// `GODADDY_API_SECRET`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoDaddy {
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub api_secret: Option<String>,
    #[serde(default)]
    pub api_secret_file: Option<PathBuf>,
    /// API base URL; change only for tests, a proxy or the OTE environment.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.godaddy.com".into()
}

impl std::fmt::Debug for GoDaddy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoDaddy")
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("api_secret", &redacted(self.api_secret.as_ref()))
            .field("api_secret_file", &self.api_secret_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for GoDaddy {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.api_key_file.as_deref();
        env.secret(&format!("{field}.api_key"), &mut self.api_key, file, "GODADDY_API_KEY")?;
        let file = self.api_secret_file.as_deref();
        env.secret(&format!("{field}.api_secret"), &mut self.api_secret, file, "GODADDY_API_SECRET")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.api_key"), self.api_key.as_ref())?;
        required(&format!("{field}.api_secret"), self.api_secret.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(GoDaddyProvider::new(self)?))
    }
}

// === impl GoDaddyProvider ===

pub struct GoDaddyProvider {
    base: String,
    /// `sso-key KEY:SECRET`.
    authorization: String,
    client: ApiClient,
    /// Held from reading a set to writing it back, so two certificates
    /// sharing a name, issued at once, do not drop each other's value.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GoDaddyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoDaddyProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

/// One value of the set, as GoDaddy answers and takes it.
#[derive(Debug, Deserialize, Serialize)]
struct Record {
    #[serde(default)]
    data: String,
    #[serde(default)]
    ttl: u32,
}

/// `{"code": "...", "message": "...", "fields": [...]}`.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: Vec<Field>,
}

#[derive(Debug, Deserialize)]
struct Field {
    #[serde(default)]
    path: String,
    #[serde(default)]
    message: String,
}

impl GoDaddyProvider {
    pub fn new(config: &GoDaddy) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        let key = config.api_key.as_deref().ok_or_else(|| missing("api_key"))?;
        let secret = config.api_secret.as_deref().ok_or_else(|| missing("api_secret"))?;
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            authorization: format!("sso-key {key}:{secret}"),
            client: ApiClient::new(PROVIDER)?,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("authorization", self.authorization.clone()), ("accept", "application/json".into())];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn error(answer: &Answer, what: &str) -> DnsError {
        let detail = match serde_json::from_slice::<ApiError>(&answer.body) {
            Ok(e) => {
                let fields: String = e.fields.iter().map(|f| format!(" [{}: {}]", f.path, f.message)).collect();
                format!("{}: {}{fields}", e.code, e.message)
            }
            Err(_) => answer.text(),
        };
        answer.error(PROVIDER, what, &detail)
    }

    async fn domain(&self, fqdn: &str) -> Result<String, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/v1/domains/{candidate}"), None).await?;
            match answer.status {
                s if s.is_success() => return Ok(candidate),
                StatusCode::NOT_FOUND => {}
                _ => return Err(Self::error(&answer, "GET /v1/domains/<domain>")),
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }

    /// The domain, the record name relative to it, and the TXT set there.
    async fn set(&self, fqdn: &str) -> Result<(String, String, Vec<Record>), DnsError> {
        let domain = self.domain(fqdn).await?;
        let full = relative(fqdn);
        let name = full.strip_suffix(&format!(".{domain}")).unwrap_or("@").to_owned();
        let what = "GET /v1/domains/<domain>/records/TXT/<name>";
        let answer = self.call(Method::GET, &format!("/v1/domains/{domain}/records/TXT/{name}"), None).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, what));
        }
        let records: Vec<Record> = serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
        // Empty (or blank) values are GoDaddy's placeholders, not records.
        let records = records.into_iter().filter(|r| !r.data.trim().is_empty()).collect();
        Ok((domain, name, records))
    }

    async fn replace(&self, domain: &str, name: &str, records: &[Record]) -> Result<(), DnsError> {
        let path = format!("/v1/domains/{domain}/records/TXT/{name}");
        let answer = if records.is_empty() {
            self.call(Method::DELETE, &path, None).await?
        } else {
            let body = serde_json::to_value(records).unwrap_or_default();
            self.call(Method::PUT, &path, Some(&body)).await?
        };
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND if records.is_empty() => Ok(()),
            _ if records.is_empty() => Err(Self::error(&answer, "DELETE /v1/domains/<domain>/records/TXT/<name>")),
            _ => Err(Self::error(&answer, "PUT /v1/domains/<domain>/records/TXT/<name>")),
        }
    }
}

#[async_trait]
impl DnsProvider for GoDaddyProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let _writing = self.writing.lock().await;
        let (domain, name, mut records) = self.set(&record.fqdn).await?;
        if records.iter().any(|r| r.data == record.value) {
            return Ok(());
        }
        records.push(Record { data: record.value.clone(), ttl: record.ttl.max(MIN_TTL) });
        for other in &mut records {
            other.ttl = other.ttl.max(MIN_TTL);
        }
        self.replace(&domain, &name, &records).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT value added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let _writing = self.writing.lock().await;
        let (domain, name, records) = self.set(&record.fqdn).await?;
        let before = records.len();
        let mut records: Vec<Record> = records.into_iter().filter(|r| r.data != record.value).collect();
        if records.len() == before {
            return Ok(());
        }
        for other in &mut records {
            other.ttl = other.ttl.max(MIN_TTL);
        }
        self.replace(&domain, &name, &records).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT value removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "godaddy_tests.rs"]
mod tests;
