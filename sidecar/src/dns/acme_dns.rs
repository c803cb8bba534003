//! `acme_dns`: a joohoi/acme-dns server. Each domain is registered once
//! (`POST /register`), the registration is kept in `storage_file` (0600), and
//! the operator points `_acme-challenge.<domain>` at its `fulldomain` with a
//! CNAME, once; from then on `POST /update` (headers `X-Api-User`,
//! `X-Api-Key`, body `{"subdomain", "txt"}`) sets the value. The
//! propagation check follows that CNAME.
//!
//! acme-dns keeps the two most recent values per subdomain, which is what a
//! wildcard and its apex need, and has no delete: `cleanup` does nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::http::ApiClient;
use super::settings::{http_url, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "acme-dns";

// === settings ===

/// `[dns_challenge.acme_dns]`: one registration per domain, stored in
/// `storage_file`; `_acme-challenge.<domain>` must be a CNAME to its
/// `fulldomain`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeDns {
    /// The acme-dns API, e.g. `https://auth.example.org` (`ACME_DNS_API_BASE`).
    pub api_base: String,
    /// JSON file of registrations (`ACME_DNS_STORAGE_PATH`), 0600.
    pub storage_file: PathBuf,
}

impl ProviderSettings for AcmeDns {
    const NAME: &'static str = "acme_dns";

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.api_base"), &self.api_base)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(AcmeDnsProvider::new(self)?))
    }
}

// === impl AcmeDnsProvider ===

/// One domain's acme-dns account.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registration {
    pub username: String,
    pub password: String,
    pub fulldomain: String,
    pub subdomain: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("fulldomain", &self.fulldomain).finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct AcmeDnsProvider {
    api_base: String,
    storage: PathBuf,
    client: ApiClient,
    /// Serialises registrations and writes of the storage file.
    lock: Mutex<()>,
}

fn permanent(message: impl Into<String>) -> DnsError {
    DnsError::provider(PROVIDER, message, false)
}

impl AcmeDnsProvider {
    pub fn new(config: &AcmeDns) -> Result<Self, DnsError> {
        Ok(Self {
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            storage: config.storage_file.clone(),
            client: ApiClient::new(PROVIDER)?,
            lock: Mutex::new(()),
        })
    }

    fn load(&self) -> Result<BTreeMap<String, Registration>, DnsError> {
        match std::fs::read(&self.storage) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| permanent(format!("{}: {e}", self.storage.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(permanent(format!("{}: {e}", self.storage.display()))),
        }
    }

    fn save(&self, all: &BTreeMap<String, Registration>) -> Result<(), DnsError> {
        let data = serde_json::to_vec_pretty(all).map_err(|e| permanent(e.to_string()))?;
        crate::atomic::write_file(&self.storage, &data, 0o600).map_err(|e| permanent(e.to_string()))
    }

    /// The domain's registration, registering it first if needed.
    async fn registration(&self, domain: &str) -> Result<Registration, DnsError> {
        let _guard = self.lock.lock().await;
        let mut all = self.load()?;
        if let Some(found) = all.get(domain) {
            return Ok(found.clone());
        }
        let url = format!("{}/register", self.api_base);
        let answer = self.client.json(Method::POST, &url, &[], Some(&serde_json::json!({}))).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, "POST /register", &answer.text()));
        }
        let registration: Registration = serde_json::from_slice(&answer.body)
            .map_err(|e| permanent(format!("POST /register: unexpected answer: {e}")))?;
        all.insert(domain.to_owned(), registration.clone());
        self.save(&all)?;
        tracing::warn!(
            provider = PROVIDER,
            domain,
            cname = %format!("_acme-challenge.{domain}. CNAME {}.", registration.fulldomain),
            "registered with acme-dns: create this CNAME once, or validation fails"
        );
        Ok(registration)
    }
}

#[async_trait]
impl DnsProvider for AcmeDnsProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let registration = self.registration(&record.domain).await?;
        let headers = [("x-api-user", registration.username.clone()), ("x-api-key", registration.password.clone())];
        let body = serde_json::json!({ "subdomain": registration.subdomain, "txt": record.value });
        let url = format!("{}/update", self.api_base);
        let answer = self.client.json(Method::POST, &url, &headers, Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, "POST /update", &answer.text()));
        }
        tracing::info!(provider = PROVIDER, domain = %record.domain, fulldomain = %registration.fulldomain, "TXT value set");
        Ok(())
    }

    async fn cleanup(&self, _record: &TxtRecord) -> Result<(), DnsError> {
        // acme-dns has no delete; it keeps only the two newest values.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use http::StatusCode;

    use super::*;
    use crate::dns::mock_tests::serve;

    #[tokio::test]
    async fn registers_once_then_updates_with_its_credentials() {
        let (url, log) = serve(Arc::new(|seen| match seen.target.as_str() {
            "/register" => (
                StatusCode::CREATED,
                r#"{"username":"u-1","password":"p-secret","fulldomain":"abc.auth.example.org","subdomain":"abc","allowfrom":[]}"#.into(),
            ),
            "/update" => {
                let user = seen.headers.get("x-api-user").and_then(|v| v.to_str().ok());
                let key = seen.headers.get("x-api-key").and_then(|v| v.to_str().ok());
                if (user, key) != (Some("u-1"), Some("p-secret")) {
                    return (StatusCode::UNAUTHORIZED, r#"{"error": "forbidden"}"#.into());
                }
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                (StatusCode::OK, format!(r#"{{"txt": {}}}"#, body["txt"]))
            }
            _ => (StatusCode::NOT_FOUND, String::new()),
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let config = AcmeDns { api_base: url, storage_file: dir.path().join("acme-dns.json") };
        let provider = AcmeDnsProvider::new(&config).unwrap();
        provider.present(&TxtRecord::new("*.example.com", "v1", 60)).await.unwrap();
        provider.present(&TxtRecord::new("example.com", "v2", 60)).await.unwrap();
        provider.cleanup(&TxtRecord::new("example.com", "v2", 60)).await.unwrap();
        let log = log.lock().unwrap().clone();
        let targets: Vec<&str> = log.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["/register", "/update", "/update"], "one registration per domain");
        let body: serde_json::Value = serde_json::from_str(&log[2].body).unwrap();
        assert_eq!(body, serde_json::json!({"subdomain": "abc", "txt": "v2"}));
        let mode = std::fs::metadata(&config.storage_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A new process reuses the stored registration.
        let again = AcmeDnsProvider::new(&config).unwrap();
        assert_eq!(again.registration("example.com").await.unwrap().subdomain, "abc");
        assert!(!format!("{:?}", again.registration("example.com").await.unwrap()).contains("p-secret"));
    }
}
