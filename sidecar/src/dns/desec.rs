//! `desec`: deSEC's API (`desec.io/api/v1`) with a token (`Authorization:
//! Token`). The domain is the one `GET /domains/?owns_qname=` says is
//! responsible for the record name. A TXT RRset holds every value at its
//! name: `present` reads it and writes it back whole with our value added
//! (`PATCH`, or `POST` when there is none), `cleanup` writes it back without
//! our value (an empty set deletes it). The TTL is at least the domain's
//! `minimum_ttl` (3600 s unless deSEC lowered it for the account).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "desec";
/// deSEC's minimum TTL when the domain does not say.
const MIN_TTL: u32 = 3600;

// === settings ===

/// `[dns_challenge.desec]`: an API token (`DESEC_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desec {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://desec.io/api/v1".into()
}

impl std::fmt::Debug for Desec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desec")
            .field("token", &redacted(self.token.as_ref()))
            .field("token_file", &self.token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Desec {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.token_file.as_deref();
        env.secret(&format!("{field}.token"), &mut self.token, file, "DESEC_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        required(&format!("{field}.token"), self.token.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(DesecProvider::new(self)?))
    }
}

// === impl DesecProvider ===

pub struct DesecProvider {
    base: String,
    token: String,
    client: ApiClient,
}

impl std::fmt::Debug for DesecProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesecProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Domain {
    name: String,
    #[serde(default)]
    minimum_ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Rrset {
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    records: Vec<String>,
}

/// deSEC's error bodies: `{"detail": ...}`, or field errors
/// (`{"records": ["..."]}`, or a list of them for bulk requests).
fn detail(answer: &Answer) -> String {
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match &json {
        serde_json::Value::Object(map) if map.contains_key("detail") => {
            map["detail"].as_str().map_or_else(|| map["detail"].to_string(), str::to_owned)
        }
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => json.to_string(),
        _ => answer.text(),
    }
}

impl DesecProvider {
    pub fn new(config: &Desec) -> Result<Self, DnsError> {
        let token = config.token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no token", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), token, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("authorization", format!("Token {}", self.token))];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn fail(answer: &Answer, what: &str) -> DnsError {
        answer.error(PROVIDER, what, &detail(answer))
    }

    fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, DnsError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))
    }

    /// The account's domain responsible for `fqdn` (the longest suffix).
    async fn domain(&self, fqdn: &str) -> Result<Domain, DnsError> {
        let answer = self.call(Method::GET, &format!("/domains/?owns_qname={}", relative(fqdn)), None).await?;
        if !answer.status.is_success() {
            return Err(Self::fail(&answer, "GET /domains/"));
        }
        let domains: Vec<Domain> = Self::parse(&answer, "GET /domains/")?;
        domains
            .into_iter()
            .max_by_key(|d| d.name.len())
            .ok_or_else(|| DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }

    /// The TXT RRset at `subname`, if there is one.
    async fn rrset(&self, domain: &str, subname: &str) -> Result<Option<Rrset>, DnsError> {
        let answer = self.call(Method::GET, &rrset_path(domain, subname), None).await?;
        match answer.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Self::parse(&answer, "GET /domains/<domain>/rrsets/<subname>/TXT/").map(Some),
            _ => Err(Self::fail(&answer, "GET /domains/<domain>/rrsets/<subname>/TXT/")),
        }
    }
}

/// The record's name relative to `domain` (`_acme-challenge.www`).
fn subname<'a>(fqdn: &'a str, domain: &str) -> &'a str {
    let full = relative(fqdn);
    full.strip_suffix(domain).and_then(|s| s.strip_suffix('.')).unwrap_or(full)
}

fn rrset_path(domain: &str, subname: &str) -> String {
    format!("/domains/{domain}/rrsets/{subname}/TXT/")
}

#[async_trait]
impl DnsProvider for DesecProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.domain(fqdn).await.map(|domain| Some(domain.name))
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let sub = subname(&record.fqdn, &domain.name);
        let quoted = format!("\"{}\"", record.value);
        let ttl = record.ttl.max(domain.minimum_ttl.unwrap_or(MIN_TTL));
        let answer = match self.rrset(&domain.name, sub).await? {
            Some(set) if set.records.contains(&quoted) => return Ok(()),
            Some(set) => {
                let mut records = set.records;
                records.push(quoted);
                let body = serde_json::json!({ "records": records, "ttl": set.ttl.max(ttl) });
                self.call(Method::PATCH, &rrset_path(&domain.name, sub), Some(&body)).await?
            }
            None => {
                let body = serde_json::json!({ "subname": sub, "type": "TXT", "ttl": ttl, "records": [quoted] });
                self.call(Method::POST, &format!("/domains/{}/rrsets/", domain.name), Some(&body)).await?
            }
        };
        if !answer.status.is_success() {
            return Err(Self::fail(&answer, "writing the TXT RRset"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain = %domain.name, "TXT RRset written");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let sub = subname(&record.fqdn, &domain.name);
        let quoted = format!("\"{}\"", record.value);
        let Some(set) = self.rrset(&domain.name, sub).await? else { return Ok(()) };
        if !set.records.contains(&quoted) {
            return Ok(());
        }
        let rest: Vec<&String> = set.records.iter().filter(|r| **r != quoted).collect();
        // An empty `records` deletes the RRset (204).
        let answer =
            self.call(Method::PATCH, &rrset_path(&domain.name, sub), Some(&serde_json::json!({ "records": rest }))).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(Self::fail(&answer, "PATCH /domains/<domain>/rrsets/<subname>/TXT/"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, left = rest.len(), "TXT value removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "desec_tests.rs"]
mod tests;
