//! `digitalocean`: DigitalOcean API v2 with a token (`Authorization:
//! Bearer`, scope `domain:read`/`domain:update` or write). The domain is the
//! record name's longest suffix that `GET /v2/domains/<name>` finds; records
//! are created with a name relative to it, and `cleanup` follows
//! `links.pages.next` to find and delete the record holding our value.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::settings::{redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "digitalocean";
const MIN_TTL: u32 = 30;

// === settings ===

/// `[dns_challenge.digitalocean]`: API v2 with a token (`DO_AUTH_TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitalOcean {
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.digitalocean.com".into()
}

impl std::fmt::Debug for DigitalOcean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigitalOcean")
            .field("auth_token", &redacted(self.auth_token.as_ref()))
            .field("auth_token_file", &self.auth_token_file)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for DigitalOcean {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.auth_token_file.as_deref();
        env.secret(&format!("{field}.auth_token"), &mut self.auth_token, file, "DO_AUTH_TOKEN")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.auth_token"), self.auth_token.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(DigitalOceanProvider::new(self)?))
    }
}

// === impl DigitalOceanProvider ===

pub struct DigitalOceanProvider {
    base: String,
    token: String,
    client: ApiClient,
}

impl std::fmt::Debug for DigitalOceanProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigitalOceanProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct RecordPage {
    #[serde(default)]
    domain_records: Vec<Record>,
    #[serde(default)]
    links: Links,
}

#[derive(Debug, Deserialize)]
struct Record {
    id: u64,
    #[serde(default)]
    data: String,
}

#[derive(Debug, Default, Deserialize)]
struct Links {
    #[serde(default)]
    pages: Pages,
}

#[derive(Debug, Default, Deserialize)]
struct Pages {
    next: Option<String>,
}

impl DigitalOceanProvider {
    pub fn new(config: &DigitalOcean) -> Result<Self, DnsError> {
        let token = config.auth_token.clone().ok_or_else(|| DnsError::provider(PROVIDER, "no auth_token", false))?;
        Ok(Self { base: config.base_url.trim_end_matches('/').to_owned(), token, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, url: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("authorization", format!("Bearer {}", self.token))];
        self.client.json(method, url, &headers, body).await
    }

    fn error(answer: &Answer, what: &str) -> DnsError {
        let detail = serde_json::from_slice::<ApiError>(&answer.body)
            .map(|e| format!("{} ({})", e.message, e.id))
            .unwrap_or_else(|_| answer.text());
        answer.error(PROVIDER, what, &detail)
    }

    async fn domain(&self, fqdn: &str) -> Result<String, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("{}/v2/domains/{candidate}", self.base), None).await?;
            match answer.status {
                s if s.is_success() => return Ok(candidate),
                StatusCode::NOT_FOUND => continue,
                _ => return Err(Self::error(&answer, "GET /v2/domains")),
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }
}

#[async_trait]
impl DnsProvider for DigitalOceanProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.domain(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let full = relative(&record.fqdn);
        let name = full.strip_suffix(&format!(".{domain}")).unwrap_or(full);
        let body =
            serde_json::json!({ "type": "TXT", "name": name, "data": record.value, "ttl": record.ttl.max(MIN_TTL) });
        let answer =
            self.call(Method::POST, &format!("{}/v2/domains/{domain}/records", self.base), Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(Self::error(&answer, "POST /v2/domains/<domain>/records"));
        }
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, domain, "TXT record created");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let domain = self.domain(&record.fqdn).await?;
        let mut url = Some(format!(
            "{}/v2/domains/{domain}/records?type=TXT&name={}&per_page=200",
            self.base,
            relative(&record.fqdn)
        ));
        while let Some(page_url) = url.take() {
            let answer = self.call(Method::GET, &page_url, None).await?;
            if !answer.status.is_success() {
                return Err(Self::error(&answer, "GET /v2/domains/<domain>/records"));
            }
            let page: RecordPage = serde_json::from_slice(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("unexpected answer: {e}"), true))?;
            if let Some(ours) = page.domain_records.iter().find(|r| r.data == record.value) {
                let delete = format!("{}/v2/domains/{domain}/records/{}", self.base, ours.id);
                let answer = self.call(Method::DELETE, &delete, None).await?;
                if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
                    return Err(Self::error(&answer, "DELETE /v2/domains/<domain>/records/<id>"));
                }
                tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT record deleted");
                return Ok(());
            }
            url = page.links.pages.next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::dns::mock_tests::{query, serve, Seen};

    type Records = Arc<Mutex<Vec<(u64, String, String)>>>;

    /// DigitalOcean's documented subset, one record per page to force
    /// `links.pages.next`.
    fn api(records: Records, base: Arc<Mutex<String>>) -> impl Fn(&Seen) -> (StatusCode, String) {
        move |seen| {
            let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if auth != "Bearer do-token" {
                return (
                    StatusCode::UNAUTHORIZED,
                    r#"{"id":"unauthorized","message":"Unable to authenticate you."}"#.into(),
                );
            }
            let path = seen.target.split('?').next().unwrap_or_default();
            let mut records = records.lock().unwrap();
            match (seen.method.as_str(), path) {
                ("GET", "/v2/domains/example.com") => {
                    (StatusCode::OK, r#"{"domain":{"name":"example.com","ttl":1800}}"#.into())
                }
                ("GET", p) if p.starts_with("/v2/domains/") && !p.ends_with("/records") => (
                    StatusCode::NOT_FOUND,
                    r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#.into(),
                ),
                ("POST", "/v2/domains/example.com/records") => {
                    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                    assert_eq!(body["name"], "_acme-challenge", "names are relative to the domain");
                    let id = 100 + records.len() as u64;
                    records.push((
                        id,
                        body["name"].as_str().unwrap_or_default().into(),
                        body["data"].as_str().unwrap_or_default().into(),
                    ));
                    (StatusCode::CREATED, format!(r#"{{"domain_record":{{"id":{id},"type":"TXT"}}}}"#))
                }
                ("GET", "/v2/domains/example.com/records") => {
                    assert_eq!(query(&seen.target, "name"), Some("_acme-challenge.example.com"));
                    let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    let item = records
                        .get(page - 1)
                        .map(|r| format!(r#"{{"id":{},"type":"TXT","name":"{}","data":"{}"}}"#, r.0, r.1, r.2));
                    let next = if page < records.len() {
                        format!(
                            r#"{{"next":"{}/v2/domains/example.com/records?type=TXT&name=_acme-challenge.example.com&per_page=200&page={}"}}"#,
                            base.lock().unwrap(),
                            page + 1
                        )
                    } else {
                        "{}".into()
                    };
                    (
                        StatusCode::OK,
                        format!(
                            r#"{{"domain_records":[{}],"links":{{"pages":{next}}},"meta":{{"total":{}}}}}"#,
                            item.unwrap_or_default(),
                            records.len()
                        ),
                    )
                }
                ("DELETE", p) if p.starts_with("/v2/domains/example.com/records/") => {
                    let id: u64 = p.rsplit('/').next().and_then(|i| i.parse().ok()).unwrap_or(0);
                    records.retain(|r| r.0 != id);
                    (StatusCode::NO_CONTENT, String::new())
                }
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"id":"server_error","message":"Server was unable to give you a response."}"#.into(),
                ),
            }
        }
    }

    #[tokio::test]
    async fn values_coexist_and_cleanup_follows_pages_to_delete_only_ours() {
        let records: Records = Arc::new(Mutex::new(Vec::new()));
        let base = Arc::new(Mutex::new(String::new()));
        let (url, _) = serve(Arc::new(api(Arc::clone(&records), Arc::clone(&base)))).await;
        *base.lock().unwrap() = url.clone();
        let provider = DigitalOceanProvider::new(&DigitalOcean {
            auth_token: Some("do-token".into()),
            auth_token_file: None,
            base_url: url.clone(),
        })
        .unwrap();
        let (apex, wildcard) =
            (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
        provider.present(&apex).await.unwrap();
        provider.present(&wildcard).await.unwrap();
        provider.cleanup(&wildcard).await.unwrap(); // the second page
        let left: Vec<String> = records.lock().unwrap().iter().map(|r| r.2.clone()).collect();
        assert_eq!(left, ["v-apex"]);
        provider.cleanup(&wildcard).await.unwrap();

        let bad = DigitalOceanProvider::new(&DigitalOcean {
            auth_token: Some("nope".into()),
            auth_token_file: None,
            base_url: url,
        })
        .unwrap();
        let err = bad.present(&apex).await.unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("Unable to authenticate you. (unauthorized)"), "{err}");
    }
}
