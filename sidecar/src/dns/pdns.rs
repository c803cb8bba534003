//! `pdns`: the HTTP API (v1) of a PowerDNS Authoritative server, with its
//! API key (`X-API-Key`). The zone is the record name's longest suffix that
//! `GET /servers/<server>/zones?zone=` knows (or the configured one). A TXT
//! RRset holds every value at its name, so `present` and `cleanup` read the
//! RRset and `PATCH` it back whole (`changetype: REPLACE`), or `DELETE` it
//! when our value was the last; other values stay. For a zone of kind
//! `Master`, the secondaries are then notified.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "pdns";

// === settings ===

/// `[dns_challenge.pdns]`: a PowerDNS API URL (`PDNS_API_URL`) and key
/// (`PDNS_API_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerDns {
    /// The webserver's URL, e.g. `http://ns1.example.net:8081` (with or
    /// without `/api/v1`).
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// The server id in the API's paths (`PDNS_SERVER_NAME`), `localhost`
    /// unless behind a proxy that serves several.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The zone to change (`example.com`); found by name when absent.
    #[serde(default)]
    pub zone: Option<String>,
}

impl std::fmt::Debug for PowerDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDns")
            .field("api_url", &self.api_url)
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("server_name", &self.server_name)
            .field("zone", &self.zone)
            .finish()
    }
}

impl ProviderSettings for PowerDns {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        env.fill(&mut self.api_url, "PDNS_API_URL");
        env.fill(&mut self.server_name, "PDNS_SERVER_NAME");
        let file = self.api_key_file.as_deref();
        env.secret(&format!("{field}.api_key"), &mut self.api_key, file, "PDNS_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        let url_field = format!("{field}.api_url");
        match &self.api_url {
            Some(url) => http_url(&url_field, url)?,
            None => return Err(SettingsError::new(url_field, "is required (or PDNS_API_URL)")),
        }
        required(&format!("{field}.api_key"), self.api_key.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(PowerDnsProvider::new(self)?))
    }
}

// === impl PowerDnsProvider ===

pub struct PowerDnsProvider {
    /// `<api_url>/api/v1/servers/<server>`.
    base: String,
    key: String,
    zone: Option<String>,
    client: ApiClient,
}

impl std::fmt::Debug for PowerDnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDnsProvider").field("base", &self.base).field("zone", &self.zone).finish_non_exhaustive()
    }
}

/// A zone as `GET /zones` lists it.
#[derive(Debug, Deserialize)]
struct Zone {
    /// The zone's id in URLs (its name with the final dot, escaped).
    id: String,
    name: String,
    #[serde(default)]
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
struct ZoneRrsets {
    #[serde(default)]
    rrsets: Vec<Rrset>,
}

#[derive(Debug, Deserialize)]
struct Rrset {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct Record {
    content: String,
    #[serde(default)]
    disabled: bool,
}

impl PowerDnsProvider {
    pub fn new(config: &PowerDns) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        let url = config.api_url.as_deref().ok_or_else(|| missing("api_url"))?.trim_end_matches('/');
        let url = url.strip_suffix("/api/v1").unwrap_or(url);
        let server = config.server_name.as_deref().unwrap_or("localhost");
        Ok(Self {
            base: format!("{url}/api/v1/servers/{server}"),
            key: config.api_key.clone().ok_or_else(|| missing("api_key"))?,
            zone: config.zone.as_ref().map(|z| relative(z).to_ascii_lowercase()),
            client: ApiClient::new(PROVIDER)?,
        })
    }

    /// Sends a request; a non-2xx answer is an error quoting PowerDNS's
    /// `{"error": ...}` (or its text: `Unauthorized` for a wrong key).
    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let url = format!("{}{path}", self.base);
        let headers = [("x-api-key", self.key.clone()), ("accept", "application/json".to_owned())];
        let answer = self.client.json(method.clone(), &url, &headers, body).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut detail = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| answer.text());
        if matches!(answer.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            detail.push_str(" (PowerDNS refused the API key: compare api_key / PDNS_API_KEY with the server's api-key)");
        }
        Err(answer.error(PROVIDER, &what, &detail))
    }

    fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, DnsError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))
    }

    async fn zone(&self, fqdn: &str) -> Result<Zone, DnsError> {
        let candidates = match &self.zone {
            Some(zone) => vec![zone.clone()],
            None => zone_candidates(fqdn),
        };
        for candidate in candidates {
            let answer = self.call(Method::GET, &format!("/zones?zone={candidate}."), None).await?;
            let zones: Vec<Zone> = Self::parse(&answer, "GET /zones")?;
            if let Some(zone) = zones.into_iter().find(|z| relative(&z.name).eq_ignore_ascii_case(&candidate)) {
                return Ok(zone);
            }
        }
        match &self.zone {
            Some(zone) => Err(DnsError::provider(PROVIDER, format!("the server has no zone {zone}"), false)),
            None => Err(DnsError::provider(PROVIDER, format!("no zone on this server holds {fqdn}"), false)),
        }
    }

    /// The TXT RRset at `fqdn`: its TTL and records (none if absent).
    async fn rrset(&self, zone: &Zone, fqdn: &str) -> Result<(u32, Vec<Record>), DnsError> {
        // Servers before 4.8 ignore the filters and send the whole zone.
        let path = format!("/zones/{}?rrset_name={fqdn}&rrset_type=TXT", zone.id);
        let answer = self.call(Method::GET, &path, None).await?;
        let found: ZoneRrsets = Self::parse(&answer, "GET /zones/<zone>")?;
        let set = found.rrsets.into_iter().find(|s| s.kind == "TXT" && s.name.eq_ignore_ascii_case(fqdn));
        Ok(set.map_or((0, Vec::new()), |s| (s.ttl, s.records)))
    }

    /// Writes the RRset at `fqdn` as `records` (deletes it when empty).
    async fn write(&self, zone: &Zone, fqdn: &str, ttl: u32, records: &[Record]) -> Result<(), DnsError> {
        let rrset = if records.is_empty() {
            serde_json::json!({ "name": fqdn, "type": "TXT", "changetype": "DELETE" })
        } else {
            serde_json::json!({ "name": fqdn, "type": "TXT", "ttl": ttl, "changetype": "REPLACE", "records": records })
        };
        let body = serde_json::json!({ "rrsets": [rrset] });
        self.call(Method::PATCH, &format!("/zones/{}", zone.id), Some(&body)).await?;
        if zone.kind.eq_ignore_ascii_case("master") {
            // The record is in; a secondary that misses the NOTIFY catches up
            // at its refresh, and the propagation check waits for it.
            if let Err(e) = self.call(Method::PUT, &format!("/zones/{}/notify", zone.id), None).await {
                tracing::warn!(provider = PROVIDER, zone = %zone.name, error = %e, "NOTIFY to the secondaries failed");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for PowerDnsProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(|zone| Some(zone.name))
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let quoted = format!("\"{}\"", record.value);
        let (_, mut records) = self.rrset(&zone, &record.fqdn).await?;
        if !records.iter().any(|r| r.content == quoted) {
            records.push(Record { content: quoted, disabled: false });
        }
        self.write(&zone, &record.fqdn, record.ttl, &records).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.name, values = records.len(), "TXT RRset written");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let quoted = format!("\"{}\"", record.value);
        let (ttl, records) = self.rrset(&zone, &record.fqdn).await?;
        if !records.iter().any(|r| r.content == quoted) {
            return Ok(());
        }
        let rest: Vec<Record> = records.into_iter().filter(|r| r.content != quoted).collect();
        self.write(&zone, &record.fqdn, ttl.max(1), &rest).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, left = rest.len(), "TXT value removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "pdns_tests.rs"]
mod tests;
