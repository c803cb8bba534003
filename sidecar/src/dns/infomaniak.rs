//! `infomaniak`: the Infomaniak API v2 with an API token (`Authorization:
//! Bearer`, permissions `dns:read` and `dns:write`). The zone is the record
//! name's longest suffix that `GET /2/zones/<zone>/exists` confirms. `present`
//! creates a TXT record (`POST /2/zones/<zone>/records`) and remembers its
//! id; `cleanup` deletes exactly that id, as lego does, so other values at
//! the name are never touched. A record presented by an earlier run of the
//! process (the id forgotten) is left in place, with a warning.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "infomaniak";
/// Infomaniak's smallest TTL.
const MIN_TTL: u32 = 60;

// === settings ===

/// `[dns_challenge.infomaniak]`: an API token (`INFOMANIAK_ACCESS_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Infomaniak {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub access_token_file: Option<PathBuf>,
    /// API base URL (lego's `INFOMANIAK_ENDPOINT`); change only for tests or
    /// a proxy.
    #[serde(default)]
    pub base_url: Option<String>,
}

const DEFAULT_BASE_URL: &str = "https://api.infomaniak.com";

impl std::fmt::Debug for Infomaniak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infomaniak")
            .field("access_token", &redacted(self.access_token.as_ref()))
            .field("access_token_file", &self.access_token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Infomaniak {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        env.fill(&mut self.base_url, "INFOMANIAK_ENDPOINT");
        let file = self.access_token_file.as_deref();
        env.secret(&format!("{field}.access_token"), &mut self.access_token, file, "INFOMANIAK_ACCESS_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.access_token"), self.access_token.as_ref())?;
        http_url(&format!("{field}.base_url"), self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(InfomaniakProvider::new(self)?))
    }
}

// === impl InfomaniakProvider ===

pub struct InfomaniakProvider {
    base: String,
    token: String,
    client: ApiClient,
    /// (record name, value) -> (zone, record id) of the records we created.
    created: Mutex<HashMap<(String, String), (String, u64)>>,
}

impl std::fmt::Debug for InfomaniakProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfomaniakProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

/// `{"result": "success"|"error", "data": ..., "error": {...}}`.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    result: String,
    data: Option<T>,
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    errors: Vec<Self>,
}

impl ApiError {
    fn text(&self) -> String {
        let details: String = self.errors.iter().map(|e| format!(" ({}: {})", e.code, e.description)).collect();
        format!("[{}] {}{details}", self.code, self.description)
    }
}

#[derive(Debug, Deserialize)]
struct Created {
    id: u64,
}

impl InfomaniakProvider {
    pub fn new(config: &Infomaniak) -> Result<Self, DnsError> {
        let token =
            config.access_token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no access_token", false))?;
        Ok(Self {
            base: config.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL).trim_end_matches('/').to_owned(),
            token,
            client: ApiClient::new(PROVIDER)?,
            created: Mutex::new(HashMap::new()),
        })
    }

    /// Calls the API; the answer and its envelope when `result` is `success`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<(Answer, Envelope<T>), DnsError> {
        let headers = [("authorization", format!("Bearer {}", self.token)), ("accept", "application/json".into())];
        let answer = self.client.json(method, &format!("{}{path}", self.base), &headers, body).await?;
        let envelope: Envelope<T> = match serde_json::from_slice(&answer.body) {
            Ok(envelope) => envelope,
            Err(_) if !answer.status.is_success() => return Err(answer.error(PROVIDER, what, &answer.text())),
            Err(e) => return Err(DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true)),
        };
        if !answer.status.is_success() || envelope.result != "success" {
            let detail = envelope.error.as_ref().map_or_else(|| answer.text(), ApiError::text);
            return Err(answer.error(PROVIDER, what, &detail));
        }
        Ok((answer, envelope))
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let path = format!("/2/zones/{candidate}/exists");
            match self.call::<bool>(Method::GET, &path, None, "GET /2/zones/<zone>/exists").await {
                Ok((_, envelope)) if envelope.data == Some(true) => return Ok(candidate),
                Ok(_) => {}
                // "object_not_found": not a zone of this account.
                Err(DnsError::Provider { message, .. }) if message.contains("[object_not_found]") => {}
                Err(e) => return Err(e),
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no zone in this account holds {fqdn}"), false))
    }
}

#[async_trait]
impl DnsProvider for InfomaniakProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let key = (record.fqdn.clone(), record.value.clone());
        if self.created.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&key) {
            return Ok(());
        }
        let zone = self.zone(&record.fqdn).await?;
        let full = relative(&record.fqdn);
        let source = full.strip_suffix(&format!(".{zone}")).unwrap_or(full);
        let body = serde_json::json!({
            "source": source,
            "target": record.value,
            "ttl": record.ttl.max(MIN_TTL),
            "type": "TXT",
        });
        let path = format!("/2/zones/{zone}/records?with=idn");
        let (_, created) = self.call::<Created>(Method::POST, &path, Some(&body), "POST /2/zones/<zone>/records").await?;
        let id = created
            .data
            .map(|c| c.id)
            .ok_or_else(|| DnsError::provider(PROVIDER, "POST /2/zones/<zone>/records: no record id in the answer", true))?;
        self.created.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (zone.clone(), id));
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone, id, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let key = (record.fqdn.clone(), record.value.clone());
        let Some((zone, id)) = self.created.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned() else {
            tracing::warn!(
                provider = PROVIDER,
                fqdn = %record.fqdn,
                "no TXT record of ours is known at this name (created before a restart?); remove it in the Infomaniak manager if it is left"
            );
            return Ok(());
        };
        let path = format!("/2/zones/{zone}/records/{id}");
        match self.call::<serde_json::Value>(Method::DELETE, &path, None, "DELETE /2/zones/<zone>/records/<id>").await {
            Ok(_) => {}
            Err(DnsError::Provider { message, .. }) if message.contains(&format!("HTTP {}", StatusCode::NOT_FOUND.as_u16())) => {}
            Err(e) => return Err(e),
        }
        self.created.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone, id, "TXT record deleted");
        Ok(())
    }
}

#[cfg(test)]
#[path = "infomaniak_tests.rs"]
mod tests;
