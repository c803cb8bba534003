//! `ovh`: the OVHcloud API (`/1.0`) with an application key, application
//! secret and consumer key. Each request is signed: `X-Ovh-Signature` is
//! `$1$` and the hex SHA-1 of `AS+CK+METHOD+URL+BODY+TIMESTAMP`, the
//! timestamp in the API's clock (read once from `/auth/time`).
//!
//! The zone is the record name's longest suffix that `GET
//! /domain/zone/<name>` finds. `present` creates a TXT record and refreshes
//! the zone; `cleanup` lists the TXT records at the name, deletes the one
//! holding our value, and refreshes the zone. Rights needed: `GET`, `POST`
//! and `DELETE` on `/domain/zone/*`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use http::{Method, StatusCode};
use ring::digest;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "ovh";
/// OVH accepts 0 (the zone's default) or at least 60.
const MIN_TTL: u32 = 60;

/// lego's (and OVH's libraries') endpoint names.
const ENDPOINTS: [(&str, &str); 7] = [
    ("ovh-eu", "https://eu.api.ovh.com/1.0"),
    ("ovh-ca", "https://ca.api.ovh.com/1.0"),
    ("ovh-us", "https://api.us.ovhcloud.com/1.0"),
    ("kimsufi-eu", "https://eu.api.kimsufi.com/1.0"),
    ("kimsufi-ca", "https://ca.api.kimsufi.com/1.0"),
    ("soyoustart-eu", "https://eu.api.soyoustart.com/1.0"),
    ("soyoustart-ca", "https://ca.api.soyoustart.com/1.0"),
];

// === settings ===

/// `[dns_challenge.ovh]`: an endpoint (`OVH_ENDPOINT`) and application
/// credentials (`OVH_APPLICATION_KEY`, `OVH_APPLICATION_SECRET`,
/// `OVH_CONSUMER_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ovh {
    /// `ovh-eu` (default), `ovh-ca`, `ovh-us`, `kimsufi-eu`, `kimsufi-ca`,
    /// `soyoustart-eu`, `soyoustart-ca`, or the API's URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub application_key: Option<String>,
    #[serde(default)]
    pub application_secret: Option<String>,
    #[serde(default)]
    pub application_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub consumer_key: Option<String>,
    #[serde(default)]
    pub consumer_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Ovh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ovh")
            .field("endpoint", &self.endpoint)
            .field("application_key", &self.application_key)
            .field("application_secret", &redacted(self.application_secret.as_ref()))
            .field("application_secret_file", &self.application_secret_file)
            .field("consumer_key", &redacted(self.consumer_key.as_ref()))
            .field("consumer_key_file", &self.consumer_key_file)
            .finish()
    }
}

/// The API's base URL for an endpoint name or URL.
fn endpoint_url(endpoint: Option<&str>) -> Result<String, String> {
    let endpoint = endpoint.unwrap_or("ovh-eu");
    if let Some((_, url)) = ENDPOINTS.iter().find(|(name, _)| *name == endpoint) {
        return Ok((*url).to_owned());
    }
    if endpoint.starts_with("https://") || endpoint.starts_with("http://") {
        return Ok(endpoint.trim_end_matches('/').to_owned());
    }
    let names: Vec<&str> = ENDPOINTS.iter().map(|(name, _)| *name).collect();
    Err(format!("'{endpoint}' is not one of {} nor an http(s):// URL", names.join(", ")))
}

impl ProviderSettings for Ovh {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.application_secret_file.as_deref();
        env.secret(&format!("{field}.application_secret"), &mut self.application_secret, file, "OVH_APPLICATION_SECRET")?;
        let file = self.consumer_key_file.as_deref();
        env.secret(&format!("{field}.consumer_key"), &mut self.consumer_key, file, "OVH_CONSUMER_KEY")?;
        env.secret(&format!("{field}.application_key"), &mut self.application_key, None, "OVH_APPLICATION_KEY")?;
        env.fill(&mut self.endpoint, "OVH_ENDPOINT");
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        endpoint_url(self.endpoint.as_deref()).map_err(|e| SettingsError::new(format!("{field}.endpoint"), e))?;
        required(&format!("{field}.application_key"), self.application_key.as_ref())?;
        required(&format!("{field}.application_secret"), self.application_secret.as_ref())?;
        required(&format!("{field}.consumer_key"), self.consumer_key.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(OvhProvider::new(self)?))
    }
}

// === impl OvhProvider ===

pub struct OvhProvider {
    base: String,
    application_key: String,
    application_secret: String,
    consumer_key: String,
    /// The API's clock minus ours, in seconds; read once.
    delta: tokio::sync::OnceCell<i64>,
    client: ApiClient,
}

impl std::fmt::Debug for OvhProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvhProvider")
            .field("base", &self.base)
            .field("application_key", &self.application_key)
            .finish_non_exhaustive()
    }
}

/// `X-Ovh-Signature` for one request.
pub fn signature(application_secret: &str, consumer_key: &str, method: &str, url: &str, body: &str, ts: i64) -> String {
    let text = format!("{application_secret}+{consumer_key}+{method}+{url}+{body}+{ts}");
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    format!("$1${}", hash.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// OVH's error body: `{"class":"...","message":"...","errorCode":"..."}`.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match (body["message"].as_str(), body["errorCode"].as_str().or_else(|| body["class"].as_str())) {
        (Some(message), Some(code)) => format!("{message} ({code})"),
        (Some(message), None) => message.to_owned(),
        _ => answer.text(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    id: u64,
    #[serde(default)]
    target: String,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl OvhProvider {
    pub fn new(config: &Ovh) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        Ok(Self {
            base: endpoint_url(config.endpoint.as_deref()).map_err(|e| DnsError::provider(PROVIDER, e, false))?,
            application_key: config.application_key.clone().ok_or_else(|| missing("application_key"))?,
            application_secret: config.application_secret.clone().ok_or_else(|| missing("application_secret"))?,
            consumer_key: config.consumer_key.clone().ok_or_else(|| missing("consumer_key"))?,
            delta: tokio::sync::OnceCell::new(),
            client: ApiClient::new(PROVIDER)?,
        })
    }

    async fn delta(&self) -> Result<i64, DnsError> {
        let delta = self
            .delta
            .get_or_try_init(|| async {
                let answer = self.client.send(Method::GET, &format!("{}/auth/time", self.base), &[], None).await?;
                if !answer.status.is_success() {
                    return Err(answer.error(PROVIDER, "GET /auth/time", &error_text(&answer)));
                }
                let server: i64 = answer.text().trim().parse().map_err(|e| {
                    DnsError::provider(PROVIDER, format!("GET /auth/time: not a time: {e}"), true)
                })?;
                Ok(server - unix_now())
            })
            .await?;
        Ok(*delta)
    }

    /// A signed call; `what` names it in errors. 404 is returned, not an error.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Answer, DnsError> {
        let url = format!("{}{path}", self.base);
        let body_text = body.map(Value::to_string).unwrap_or_default();
        let ts = unix_now() + self.delta().await?;
        let headers = [
            ("x-ovh-application", self.application_key.clone()),
            ("x-ovh-consumer", self.consumer_key.clone()),
            ("x-ovh-timestamp", ts.to_string()),
            (
                "x-ovh-signature",
                signature(&self.application_secret, &self.consumer_key, method.as_str(), &url, &body_text, ts),
            ),
            ("accept", "application/json".to_owned()),
        ];
        let content = body.map(|_| ("application/json", body_text.clone().into_bytes()));
        let answer = self.client.send(method, &url, &headers, content).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        Ok(answer)
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/domain/zone/{candidate}"), None, "GET /domain/zone/<zone>").await?;
            if answer.status.is_success() {
                return Ok(candidate);
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no DNS zone in this account holds {fqdn}"), false))
    }

    async fn refresh(&self, zone: &str) -> Result<(), DnsError> {
        self.call(Method::POST, &format!("/domain/zone/{zone}/refresh"), None, "POST /domain/zone/<zone>/refresh")
            .await
            .map(drop)
    }

    fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, DnsError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))
    }
}

fn sub_domain<'a>(fqdn: &'a str, zone: &str) -> &'a str {
    let full = relative(fqdn);
    full.strip_suffix(&format!(".{zone}")).unwrap_or(full)
}

#[async_trait]
impl DnsProvider for OvhProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let body = json!({
            "fieldType": "TXT",
            "subDomain": sub_domain(&record.fqdn, &zone),
            "target": record.value,
            "ttl": record.ttl.max(MIN_TTL),
        });
        let what = "POST /domain/zone/<zone>/record";
        let answer = self.call(Method::POST, &format!("/domain/zone/{zone}/record"), Some(&body), what).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        self.refresh(&zone).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let sub = sub_domain(&record.fqdn, &zone);
        let what = "GET /domain/zone/<zone>/record";
        let list = format!("/domain/zone/{zone}/record?fieldType=TXT&subDomain={sub}");
        let ids: Vec<u64> = Self::parse(&self.call(Method::GET, &list, None, what).await?, what)?;
        for id in ids {
            let what = "GET /domain/zone/<zone>/record/<id>";
            let answer = self.call(Method::GET, &format!("/domain/zone/{zone}/record/{id}"), None, what).await?;
            if answer.status == StatusCode::NOT_FOUND {
                continue;
            }
            let found: Record = Self::parse(&answer, what)?;
            if found.target.trim_matches('"') != record.value {
                continue;
            }
            let what = "DELETE /domain/zone/<zone>/record/<id>";
            self.call(Method::DELETE, &format!("/domain/zone/{zone}/record/{}", found.id), None, what).await?;
            self.refresh(&zone).await?;
            tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
            return Ok(());
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "ovh_tests.rs"]
mod tests;
