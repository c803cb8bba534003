//! `httpreq`: lego's HTTP request contract, for DNS set-ups behind the
//! operator's own service: `POST <endpoint>/present` and
//! `POST <endpoint>/cleanup` with the JSON body
//! `{"fqdn": "_acme-challenge.example.com.", "value": "..."}`, HTTP basic
//! authentication when a username and password are set. Any 2xx succeeds.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use http::Method;
use serde::Deserialize;

use super::http::ApiClient;
use super::settings::{http_url, redacted, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "httpreq";

// === settings ===

/// `[dns_challenge.httpreq]`: lego's HTTP request contract (`HTTPREQ_*`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpReq {
    pub endpoint: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for HttpReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReq")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &redacted(self.password.as_ref()))
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl ProviderSettings for HttpReq {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.password_file.as_deref();
        env.secret(&format!("{field}.password"), &mut self.password, file, "HTTPREQ_PASSWORD")?;
        env.fill(&mut self.username, "HTTPREQ_USERNAME");
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        http_url(&format!("{field}.endpoint"), &self.endpoint)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(HttpReqProvider::new(self)?))
    }
}

// === impl HttpReqProvider ===

pub struct HttpReqProvider {
    endpoint: String,
    authorization: Option<String>,
    client: ApiClient,
}

impl std::fmt::Debug for HttpReqProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReqProvider")
            .field("endpoint", &self.endpoint)
            .field("basic_auth", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpReqProvider {
    pub fn new(config: &HttpReq) -> Result<Self, DnsError> {
        let authorization = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
            _ => None,
        };
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        Ok(Self { endpoint, authorization, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, action: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let body = serde_json::json!({ "fqdn": record.fqdn, "value": record.value });
        let headers: Vec<(&str, String)> = self.authorization.iter().map(|a| ("authorization", a.clone())).collect();
        let url = format!("{}/{action}", self.endpoint);
        let answer = self.client.json(Method::POST, &url, &headers, Some(&body)).await?;
        if answer.status.is_success() {
            tracing::info!(provider = PROVIDER, action, fqdn = %record.fqdn, "request accepted");
            Ok(())
        } else {
            Err(answer.error(PROVIDER, &format!("POST /{action}"), &answer.text()))
        }
    }
}

#[async_trait]
impl DnsProvider for HttpReqProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.call("present", record).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.call("cleanup", record).await
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::dns::mock_tests::serve;

    #[tokio::test]
    async fn posts_legos_json_with_basic_auth() {
        let (url, log) = serve(Arc::new(|seen| {
            let auth = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            // base64("user:pass")
            if auth != "Basic dXNlcjpwYXNz" {
                return (StatusCode::UNAUTHORIZED, "bad credentials".into());
            }
            (StatusCode::OK, String::new())
        }))
        .await;
        let config = HttpReq {
            endpoint: format!("{url}/dns/"),
            username: Some("user".into()),
            password: Some("pass".into()),
            password_file: None,
        };
        let provider = HttpReqProvider::new(&config).unwrap();
        let record = TxtRecord::new("example.com", "the-value", 60);
        provider.present(&record).await.unwrap();
        provider.cleanup(&record).await.unwrap();
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 2);
        assert_eq!((log[0].method.as_str(), log[0].target.as_str()), ("POST", "/dns/present"));
        assert_eq!(log[1].target, "/dns/cleanup");
        assert_eq!(log[0].headers.get("content-type").unwrap(), "application/json");
        let body: serde_json::Value = serde_json::from_str(&log[0].body).unwrap();
        assert_eq!(body, serde_json::json!({"fqdn": "_acme-challenge.example.com.", "value": "the-value"}));
    }

    #[tokio::test]
    async fn errors_carry_the_status_and_body_and_say_if_retrying_helps() {
        let (url, _) = serve(Arc::new(|seen| {
            if seen.target.ends_with("/present") {
                (StatusCode::UNAUTHORIZED, "bad credentials".into())
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "database down".into())
            }
        }))
        .await;
        let config = HttpReq { endpoint: url, username: None, password: None, password_file: None };
        let provider = HttpReqProvider::new(&config).unwrap();
        let record = TxtRecord::new("example.com", "v", 60);
        let denied = provider.present(&record).await.unwrap_err();
        assert!(denied.to_string().contains("401") && denied.to_string().contains("bad credentials"), "{denied}");
        assert!(!denied.is_retryable());
        let down = provider.cleanup(&record).await.unwrap_err();
        assert!(down.is_retryable() && down.to_string().contains("database down"), "{down}");
    }
}
