//! `dnsimple`: DNSimple API v2 with an account API token (`Authorization:
//! Bearer`). The account is the one `GET /v2/whoami` names (user tokens,
//! which name no account, are refused as lego does); the zone is the record
//! name's longest suffix that `GET /v2/<account>/zones/<name>` finds.
//! `present` creates a TXT record with a name relative to the zone;
//! `cleanup` lists the TXT records at that name (every page) and deletes the
//! one holding our value.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "dnsimple";
/// DNSimple's smallest TTL.
const MIN_TTL: u32 = 60;

// === settings ===

/// `[dns_challenge.dnsimple]`: API v2 with an account token
/// (`DNSIMPLE_OAUTH_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dnsimple {
    #[serde(default)]
    pub oauth_token: Option<String>,
    #[serde(default)]
    pub oauth_token_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.dnsimple.com".into()
}

impl std::fmt::Debug for Dnsimple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsimple")
            .field("oauth_token", &redacted(self.oauth_token.as_ref()))
            .field("oauth_token_file", &self.oauth_token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Dnsimple {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.oauth_token_file.as_deref();
        env.secret(&format!("{field}.oauth_token"), &mut self.oauth_token, file, "DNSIMPLE_OAUTH_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.oauth_token"), self.oauth_token.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(DnsimpleProvider::new(self)?))
    }
}

// === impl DnsimpleProvider ===

pub struct DnsimpleProvider {
    base: String,
    token: String,
    client: ApiClient,
}

impl std::fmt::Debug for DnsimpleProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsimpleProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

/// `{"data": ...}`, with `pagination` on lists.
#[derive(Debug, Deserialize)]
struct Data<T> {
    data: T,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    total_pages: u32,
}

#[derive(Debug, Deserialize)]
struct Whoami {
    account: Option<Account>,
}

#[derive(Debug, Deserialize)]
struct Account {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct Zone {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: u64,
    #[serde(default)]
    content: String,
}

/// `{"message": "...", "errors": {"field": ["..."]}}`.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Option<serde_json::Value>,
}

fn unexpected(what: &str, e: &serde_json::Error) -> DnsError {
    DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true)
}

impl DnsimpleProvider {
    pub fn new(config: &Dnsimple) -> Result<Self, DnsError> {
        let token = config.oauth_token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no oauth_token", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), token, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("authorization", format!("Bearer {}", self.token)), ("accept", "application/json".into())];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn error(answer: &Answer, what: &str) -> DnsError {
        let detail = match serde_json::from_slice::<ApiError>(&answer.body) {
            Ok(ApiError { message, errors: Some(errors) }) if !errors.is_null() => format!("{message} {errors}"),
            Ok(e) => e.message,
            Err(_) => answer.text(),
        };
        answer.error(PROVIDER, what, &detail)
    }

    async fn account(&self) -> Result<u64, DnsError> {
        let what = "GET /v2/whoami";
        let answer = self.call(Method::GET, "/v2/whoami", None).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, what));
        }
        let whoami: Data<Whoami> = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
        whoami.data.account.map(|a| a.id).ok_or_else(|| {
            DnsError::provider(PROVIDER, "the token is a user token; use an account API token", false)
        })
    }

    /// The account and the zone holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<(u64, String), DnsError> {
        let account = self.account().await?;
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/v2/{account}/zones/{candidate}"), None).await?;
            match answer.status {
                s if s.is_success() => {
                    let zone: Data<Zone> =
                        serde_json::from_slice(&answer.body).map_err(|e| unexpected("GET zone", &e))?;
                    return Ok((account, zone.data.name));
                }
                StatusCode::NOT_FOUND => {}
                _ => return Err(Self::error(&answer, "GET /v2/<account>/zones/<zone>")),
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no zone in account {account} holds {fqdn}"), false))
    }
}

/// `fqdn` relative to `zone` (`""` at the apex).
fn name_in(fqdn: &str, zone: &str) -> String {
    let full = relative(fqdn);
    full.strip_suffix(zone).map_or(full, |n| n.trim_end_matches('.')).to_owned()
}

#[async_trait]
impl DnsProvider for DnsimpleProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let (account, zone) = self.zone(&record.fqdn).await?;
        let body = serde_json::json!({
            "name": name_in(&record.fqdn, &zone),
            "type": "TXT",
            "content": record.value,
            "ttl": record.ttl.max(MIN_TTL),
        });
        let answer = self.call(Method::POST, &format!("/v2/{account}/zones/{zone}/records"), Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, "POST /v2/<account>/zones/<zone>/records"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let (account, zone) = self.zone(&record.fqdn).await?;
        let name = name_in(&record.fqdn, &zone);
        let what = "GET /v2/<account>/zones/<zone>/records";
        let mut page = 1;
        loop {
            let path = format!("/v2/{account}/zones/{zone}/records?name={name}&type=TXT&page={page}&per_page=100");
            let answer = self.call(Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                return Err(Self::error(&answer, what));
            }
            let list: Data<Vec<Record>> = serde_json::from_slice(&answer.body).map_err(|e| unexpected(what, &e))?;
            // DNSimple may answer TXT content quoted.
            if let Some(ours) = list.data.iter().find(|r| r.content.trim_matches('"') == record.value) {
                let answer =
                    self.call(Method::DELETE, &format!("/v2/{account}/zones/{zone}/records/{}", ours.id), None).await?;
                if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
                    return Err(Self::error(&answer, "DELETE /v2/<account>/zones/<zone>/records/<id>"));
                }
                tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
                return Ok(());
            }
            if page >= list.pagination.map_or(1, |p| p.total_pages) {
                return Ok(());
            }
            page += 1;
        }
    }
}

#[cfg(test)]
#[path = "dnsimple_tests.rs"]
mod tests;
