//! `cloudflare`: Cloudflare API v4 with an API token (`Authorization:
//! Bearer`, permissions Zone:Read and DNS:Edit). The zone is the record
//! name's longest suffix that `GET /zones?name=` knows; `present` creates a
//! TXT record, `cleanup` lists the TXT records at the name (all pages) and
//! deletes the one holding our value.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "cloudflare";
/// Cloudflare's smallest TTL other than 1 (automatic).
const MIN_TTL: u32 = 120;
/// "An identical record already exists."
const IDENTICAL_RECORD: u64 = 81058;

// === settings ===

/// `[dns_challenge.cloudflare]`: API v4 with an API token (`CF_DNS_API_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloudflare {
    #[serde(default)]
    pub api_token: Option<String>,
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.cloudflare.com/client/v4".into()
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("api_token", &redacted(self.api_token.as_ref()))
            .field("api_token_file", &self.api_token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Cloudflare {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.api_token_file.as_deref();
        env.secret(&format!("{field}.api_token"), &mut self.api_token, file, "CF_DNS_API_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.api_token"), self.api_token.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(CloudflareProvider::new(self)?))
    }
}

// === impl CloudflareProvider ===

pub struct CloudflareProvider {
    base: String,
    token: String,
    client: ApiClient,
}

impl std::fmt::Debug for CloudflareProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

/// The v4 envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiError>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: u64,
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: u32,
}

#[derive(Debug, Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct DnsRecord {
    id: String,
    content: String,
}

fn errors_text(errors: &[ApiError]) -> String {
    errors.iter().map(|e| format!("{} ({})", e.message, e.code)).collect::<Vec<_>>().join("; ")
}

impl CloudflareProvider {
    pub fn new(config: &Cloudflare) -> Result<Self, DnsError> {
        let token = config.api_token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no api_token", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), token, client: ApiClient::new(PROVIDER)? })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(Answer, Envelope<T>), DnsError> {
        let url = format!("{}{path}", self.base);
        let headers = [("authorization", format!("Bearer {}", self.token))];
        let answer = self.client.json(method.clone(), &url, &headers, body).await?;
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let envelope: Envelope<T> = match serde_json::from_slice(&answer.body) {
            Ok(envelope) => envelope,
            Err(_) if !answer.status.is_success() => return Err(answer.error(PROVIDER, &what, &answer.text())),
            Err(e) => return Err(DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true)),
        };
        if !answer.status.is_success() || !envelope.success {
            if envelope.errors.iter().any(|e| e.code == IDENTICAL_RECORD) {
                return Ok((answer, envelope));
            }
            return Err(answer.error(PROVIDER, &what, &errors_text(&envelope.errors)));
        }
        Ok((answer, envelope))
    }

    async fn zone(&self, fqdn: &str) -> Result<Zone, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let (_, envelope) = self.call::<Vec<Zone>>(Method::GET, &format!("/zones?name={candidate}"), None).await?;
            if let Some(zone) = envelope.result.unwrap_or_default().into_iter().find(|z| z.name == candidate) {
                return Ok(zone);
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no zone in this account holds {fqdn}"), false))
    }
}

#[async_trait]
impl DnsProvider for CloudflareProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(|zone| Some(zone.name))
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let body = serde_json::json!({
            "type": "TXT",
            "name": relative(&record.fqdn),
            "content": record.value,
            "ttl": record.ttl.max(MIN_TTL),
        });
        let path = format!("/zones/{}/dns_records", zone.id);
        self.call::<serde_json::Value>(Method::POST, &path, Some(&body)).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, zone = %zone.name, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let name = relative(&record.fqdn);
        let mut page = 1;
        loop {
            let path = format!("/zones/{}/dns_records?type=TXT&name={name}&page={page}&per_page=100", zone.id);
            let (_, envelope) = self.call::<Vec<DnsRecord>>(Method::GET, &path, None).await?;
            let total = envelope.result_info.as_ref().map_or(1, |i| i.total_pages.max(1));
            let ours =
                envelope.result.unwrap_or_default().into_iter().find(|r| r.content.trim_matches('"') == record.value);
            if let Some(found) = ours {
                let path = format!("/zones/{}/dns_records/{}", zone.id, found.id);
                self.call::<serde_json::Value>(Method::DELETE, &path, None).await?;
                tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
                return Ok(());
            }
            if page >= total {
                return Ok(());
            }
            page += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::StatusCode;

    use super::*;
    use crate::dns::mock_tests::{query, serve, Seen};

    /// Cloudflare's documented subset: zones by name, records with paging
    /// (two per page here, to force several pages), bearer auth.
    fn api(records: Arc<Mutex<Vec<(String, String, String)>>>) -> impl Fn(&Seen) -> (StatusCode, String) {
        move |seen| {
            let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if auth != "Bearer good-token" {
                return (StatusCode::FORBIDDEN, r#"{"success":false,"errors":[{"code":9109,"message":"Invalid access token"}],"messages":[],"result":null}"#.into());
            }
            let path = seen.target.split('?').next().unwrap_or_default();
            let mut records = records.lock().unwrap();
            match (seen.method.as_str(), path) {
                ("GET", "/zones") => {
                    let zones = if query(&seen.target, "name") == Some("example.com") {
                        r#"[{"id":"z1","name":"example.com"}]"#
                    } else {
                        "[]"
                    };
                    (
                        StatusCode::OK,
                        format!(
                            r#"{{"success":true,"errors":[],"messages":[],"result":{zones},"result_info":{{"page":1,"per_page":20,"total_pages":1,"count":0,"total_count":0}}}}"#
                        ),
                    )
                }
                ("POST", "/zones/z1/dns_records") => {
                    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                    assert_eq!(body["type"], "TXT");
                    assert!(body["ttl"].as_u64().unwrap_or(0) >= 120);
                    let id = format!("r{}", records.len() + 1);
                    records.push((
                        id.clone(),
                        body["name"].as_str().unwrap_or_default().to_owned(),
                        format!("\"{}\"", body["content"].as_str().unwrap_or_default()),
                    ));
                    (
                        StatusCode::OK,
                        format!(r#"{{"success":true,"errors":[],"messages":[],"result":{{"id":"{id}"}}}}"#),
                    )
                }
                ("GET", "/zones/z1/dns_records") => {
                    let name = query(&seen.target, "name").unwrap_or_default();
                    let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    let matching: Vec<_> = records.iter().filter(|r| r.1 == name).collect();
                    let pages = matching.len().div_ceil(2).max(1);
                    let items: Vec<String> = matching
                        .iter()
                        .skip((page - 1) * 2)
                        .take(2)
                        .map(|r| {
                            format!(
                                r#"{{"id":"{}","type":"TXT","name":"{}","content":{}}}"#,
                                r.0,
                                r.1,
                                serde_json::Value::String(r.2.clone())
                            )
                        })
                        .collect();
                    (
                        StatusCode::OK,
                        format!(
                            r#"{{"success":true,"errors":[],"messages":[],"result":[{}],"result_info":{{"page":{page},"per_page":2,"total_pages":{pages},"count":{},"total_count":{}}}}}"#,
                            items.join(","),
                            items.len(),
                            matching.len()
                        ),
                    )
                }
                ("DELETE", p) if p.starts_with("/zones/z1/dns_records/") => {
                    let id = p.rsplit('/').next().unwrap_or_default().to_owned();
                    records.retain(|r| r.0 != id);
                    (
                        StatusCode::OK,
                        format!(r#"{{"success":true,"errors":[],"messages":[],"result":{{"id":"{id}"}}}}"#),
                    )
                }
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"success":false,"errors":[{"code":10000,"message":"internal"}]}"#.into(),
                ),
            }
        }
    }

    #[tokio::test]
    async fn values_coexist_and_cleanup_deletes_only_ours_across_pages() {
        let records = Arc::new(Mutex::new(vec![(
            "r0".to_owned(),
            "_acme-challenge.example.com".to_owned(),
            "\"someone-else\"".to_owned(),
        )]));
        let (url, _) = serve(Arc::new(api(Arc::clone(&records)))).await;
        let config = Cloudflare { api_token: Some("good-token".into()), api_token_file: None, base_url: url.clone() };
        let provider = CloudflareProvider::new(&config).unwrap();
        let (apex, wildcard) =
            (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
        provider.present(&apex).await.unwrap();
        provider.present(&wildcard).await.unwrap();
        assert_eq!(records.lock().unwrap().len(), 3);
        provider.cleanup(&wildcard).await.unwrap(); // on the second page
        let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.2.clone()).collect();
        assert_eq!(left, ["\"someone-else\"", "\"v-apex\""]);
        provider.cleanup(&wildcard).await.unwrap();

        let bad = CloudflareProvider::new(&Cloudflare {
            api_token: Some("wrong".into()),
            api_token_file: None,
            base_url: url.clone(),
        })
        .unwrap();
        let err = bad.present(&apex).await.unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("Invalid access token (9109)"), "{err}");
        let unknown = provider.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
        assert!(unknown.to_string().contains("no zone"), "{unknown}");
    }
}
