//! `hetzner` through the Hetzner Cloud API (`api.hetzner.cloud/v1`), where
//! Hetzner moves DNS zones from the DNS Console, with an API token
//! (`Authorization: Bearer`, lego's `HETZNER_API_TOKEN`). RRsets change by
//! actions that add or remove single values, so other values at the name
//! stay; each action is polled until it succeeds.

use std::time::Duration;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "hetzner";
/// Hetzner's smallest TTL.
const MIN_TTL: u32 = 60;
/// How long an action may run.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
const ACTION_POLL: Duration = Duration::from_millis(500);

pub(super) struct HetznerCloudProvider {
    base: String,
    token: String,
    client: ApiClient,
}

impl std::fmt::Debug for HetznerCloudProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HetznerCloudProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct ActionAnswer {
    action: Action,
}

#[derive(Debug, Deserialize)]
struct Action {
    id: u64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<ErrorInfo>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorInfo {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `{"error": {"code", "message", "details"}}`.
fn error_info(answer: &Answer) -> ErrorInfo {
    #[derive(Deserialize)]
    struct Body {
        error: ErrorInfo,
    }
    serde_json::from_slice::<Body>(&answer.body)
        .map(|b| b.error)
        .unwrap_or_else(|_| ErrorInfo { code: String::new(), message: answer.text() })
}

impl HetznerCloudProvider {
    pub(super) fn new(base: &str, token: String) -> Result<Self, DnsError> {
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token, client: ApiClient::new(PROVIDER)? })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, DnsError> {
        let headers = [("authorization", format!("Bearer {}", self.token))];
        self.client.json(method, &format!("{}{path}", self.base), &headers, body).await
    }

    fn fail(answer: &Answer, what: &str) -> DnsError {
        let info = error_info(answer);
        let detail = if info.code.is_empty() { info.message } else { format!("{} ({})", info.message, info.code) };
        answer.error(PROVIDER, what, &detail)
    }

    /// The zone's name: the longest suffix `GET /zones/<name>` knows.
    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/zones/{candidate}"), None).await?;
            match answer.status {
                StatusCode::NOT_FOUND => continue,
                s if s.is_success() => return Ok(candidate),
                _ => return Err(Self::fail(&answer, "GET /zones/<zone>")),
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no zone in this project holds {fqdn}"), false))
    }

    /// Runs `add_records` or `remove_records` for our value and waits for
    /// the action; `None` when the API says there was nothing to remove.
    async fn act(&self, record: &TxtRecord, action: &str) -> Result<Option<()>, DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let full = relative(&record.fqdn);
        let name = full.strip_suffix(&zone).and_then(|s| s.strip_suffix('.')).unwrap_or(full);
        let records = serde_json::json!([{ "value": format!("\"{}\"", record.value) }]);
        let body = if action == "add_records" {
            serde_json::json!({ "ttl": record.ttl.max(MIN_TTL), "records": records })
        } else {
            serde_json::json!({ "records": records })
        };
        let path = format!("/zones/{zone}/rrsets/{name}/TXT/actions/{action}");
        let what = format!("POST /zones/<zone>/rrsets/<name>/TXT/actions/{action}");
        let answer = self.call(Method::POST, &path, Some(&body)).await?;
        if answer.status == StatusCode::NOT_FOUND && action == "remove_records" {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(Self::fail(&answer, &what));
        }
        let started: ActionAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
        self.wait(started.action).await.map(Some)
    }

    async fn wait(&self, mut action: Action) -> Result<(), DnsError> {
        let deadline = tokio::time::Instant::now() + ACTION_TIMEOUT;
        loop {
            match action.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let info = action.error.unwrap_or_default();
                    let message = format!("action {} failed: {} ({})", action.id, info.message, info.code);
                    return Err(DnsError::provider(PROVIDER, message, false));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    let message = format!("action {} still running after {ACTION_TIMEOUT:?}", action.id);
                    return Err(DnsError::provider(PROVIDER, message, true));
                }
                _ => tokio::time::sleep(ACTION_POLL).await,
            }
            let answer = self.call(Method::GET, &format!("/actions/{}", action.id), None).await?;
            if !answer.status.is_success() {
                return Err(Self::fail(&answer, "GET /actions/<id>"));
            }
            action = serde_json::from_slice::<ActionAnswer>(&answer.body)
                .map_err(|e| DnsError::provider(PROVIDER, format!("GET /actions/<id>: unexpected answer: {e}"), true))?
                .action;
        }
    }
}

#[async_trait]
impl DnsProvider for HetznerCloudProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.act(record, "add_records").await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value added (Cloud API)");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        if self.act(record, "remove_records").await?.is_some() {
            tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value removed (Cloud API)");
        }
        Ok(())
    }
}
