//! `azuredns`: Azure DNS through Azure Resource Manager (`Microsoft.Network/
//! dnsZones`, api-version 2018-05-01), with a Microsoft Entra ID token from a
//! client secret, a workload identity's federated token (a client assertion
//! read from `AZURE_FEDERATED_TOKEN_FILE`), or the VM's managed identity
//! (the instance metadata service). Tokens are kept until shortly before
//! they expire.
//!
//! The zone is `zone_name`, or the record name's longest suffix that the
//! resource group holds. A TXT record set holds every value at its name, so
//! `present` and `cleanup` read it and `PUT` it back whole with `If-Match`
//! on its etag (or `DELETE` it when our value was the last).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{relative, zone_candidates, Answer, ApiClient};
use super::oauth::{form, oauth_error, TokenAnswer, TokenCache};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "azuredns";
const API_VERSION: &str = "2018-05-01";
/// The resource tokens are asked for: Azure Resource Manager.
const RESOURCE: &str = "https://management.azure.com/";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Tries of a write that raced with another writer of the same set.
const TRIES: u32 = 3;

// === settings ===

/// `[dns_challenge.azuredns]`: the zone's subscription and resource group,
/// and one way to sign in: client secret, workload identity or managed
/// identity (lego's `AZURE_*` variables).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureDns {
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub resource_group: Option<String>,
    /// The DNS zone; found by name in the resource group when absent.
    #[serde(default)]
    pub zone_name: Option<String>,
    /// `env` (client secret), `wli` (workload identity) or `msi` (managed
    /// identity); by default the first whose settings are there.
    #[serde(default)]
    pub auth_method: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The workload identity's token file (read at each sign-in: it rotates).
    #[serde(default)]
    pub federated_token_file: Option<PathBuf>,
    /// Microsoft Entra ID (`AZURE_AUTHORITY_HOST`).
    #[serde(default)]
    pub authority_host: Option<String>,
    /// The instance metadata service, for managed identity.
    #[serde(default = "default_imds_url")]
    pub imds_url: String,
    /// Azure Resource Manager; change only for tests or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_imds_url() -> String {
    "http://169.254.169.254".into()
}

fn default_base_url() -> String {
    "https://management.azure.com".into()
}

impl std::fmt::Debug for AzureDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDns")
            .field("subscription_id", &self.subscription_id)
            .field("resource_group", &self.resource_group)
            .field("zone_name", &self.zone_name)
            .field("auth_method", &self.auth_method)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(self.client_secret.as_ref()))
            .field("client_secret_file", &self.client_secret_file)
            .field("federated_token_file", &self.federated_token_file)
            .field("authority_host", &self.authority_host)
            .field("imds_url", &self.imds_url)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// How the provider signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignIn {
    ClientSecret,
    Workload,
    Managed,
}

/// An `auth_method` that is none of lego's three; the operator's to fix.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not env, wli or msi")]
struct UnknownAuthMethod(String);

impl AzureDns {
    fn method(&self) -> Result<SignIn, UnknownAuthMethod> {
        match self.auth_method.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("env") => Ok(SignIn::ClientSecret),
            Some("wli") => Ok(SignIn::Workload),
            Some("msi") => Ok(SignIn::Managed),
            Some(other) => Err(UnknownAuthMethod(other.to_owned())),
            None if self.client_secret.is_some() => Ok(SignIn::ClientSecret),
            None if self.federated_token_file.is_some() => Ok(SignIn::Workload),
            None => Ok(SignIn::Managed),
        }
    }
}

impl ProviderSettings for AzureDns {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let file = self.client_secret_file.as_deref();
        env.secret(&format!("{field}.client_secret"), &mut self.client_secret, file, "AZURE_CLIENT_SECRET")?;
        env.fill(&mut self.subscription_id, "AZURE_SUBSCRIPTION_ID");
        env.fill(&mut self.resource_group, "AZURE_RESOURCE_GROUP");
        env.fill(&mut self.zone_name, "AZURE_ZONE_NAME");
        env.fill(&mut self.auth_method, "AZURE_AUTH_METHOD");
        env.fill(&mut self.tenant_id, "AZURE_TENANT_ID");
        env.fill(&mut self.client_id, "AZURE_CLIENT_ID");
        env.fill(&mut self.authority_host, "AZURE_AUTHORITY_HOST");
        if self.federated_token_file.is_none() {
            let mut path = None;
            env.fill(&mut path, "AZURE_FEDERATED_TOKEN_FILE");
            self.federated_token_file = path.map(PathBuf::from);
        }
        Ok(())
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.subscription_id"), self.subscription_id.as_ref())?;
        required(&format!("{field}.resource_group"), self.resource_group.as_ref())?;
        http_url(&format!("{field}.base_url"), &self.base_url)?;
        http_url(&format!("{field}.imds_url"), &self.imds_url)?;
        if let Some(host) = &self.authority_host {
            http_url(&format!("{field}.authority_host"), host)?;
        }
        let method = self.method().map_err(|e| SettingsError::new(format!("{field}.auth_method"), e.to_string()))?;
        if method != SignIn::Managed {
            required(&format!("{field}.tenant_id"), self.tenant_id.as_ref())?;
            required(&format!("{field}.client_id"), self.client_id.as_ref())?;
        }
        match method {
            SignIn::ClientSecret => required(&format!("{field}.client_secret"), self.client_secret.as_ref()),
            SignIn::Workload if self.federated_token_file.is_none() => Err(SettingsError::new(
                format!("{field}.federated_token_file"),
                "is required for workload identity (or AZURE_FEDERATED_TOKEN_FILE)",
            )),
            _ => Ok(()),
        }
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(AzureDnsProvider::new(self)?))
    }
}

// === impl AzureDnsProvider ===

pub struct AzureDnsProvider {
    /// `<base>/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/dnsZones`
    zones: String,
    zone_name: Option<String>,
    settings: AzureDns,
    method: SignIn,
    token: TokenCache,
    client: ApiClient,
}

impl std::fmt::Debug for AzureDnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureDnsProvider")
            .field("zones", &self.zones)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// ARM's error body: `{"error":{"code":"...","message":"..."}}`; Entra ID's
/// is OAuth's.
fn error_text(answer: &Answer) -> String {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => oauth_error(&answer.body).unwrap_or_else(|| answer.text()),
    }
}

impl AzureDnsProvider {
    pub fn new(config: &AzureDns) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        let method = config.method().map_err(|e| DnsError::provider(PROVIDER, e.to_string(), false))?;
        let subscription = config.subscription_id.as_deref().ok_or_else(|| missing("subscription_id"))?;
        let group = config.resource_group.as_deref().ok_or_else(|| missing("resource_group"))?;
        let zones = format!(
            "{}/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/dnsZones",
            config.base_url.trim_end_matches('/')
        );
        Ok(Self {
            zones,
            zone_name: config.zone_name.as_deref().map(|z| relative(z).to_ascii_lowercase()),
            settings: config.clone(),
            method,
            token: TokenCache::default(),
            client: ApiClient::new(PROVIDER)?,
        })
    }

    async fn fetch_token(&self) -> Result<(String, Duration), DnsError> {
        let s = &self.settings;
        let (what, answer) = match self.method {
            SignIn::Managed => {
                let mut query = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
                if let Some(id) = &s.client_id {
                    query.push(("client_id", id));
                }
                let url = format!("{}{IMDS_PATH}?{}", s.imds_url.trim_end_matches('/'), form(&query));
                let headers = [("metadata", "true".to_owned())];
                ("getting a token (managed identity)", self.client.send(Method::GET, &url, &headers, None).await?)
            }
            SignIn::ClientSecret | SignIn::Workload => {
                let authority = s.authority_host.as_deref().unwrap_or("https://login.microsoftonline.com");
                let tenant = s.tenant_id.as_deref().unwrap_or_default();
                let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
                let scope = format!("{RESOURCE}.default");
                let client_id = s.client_id.as_deref().unwrap_or_default();
                let mut fields = vec![("grant_type", "client_credentials"), ("client_id", client_id), ("scope", &scope)];
                let assertion;
                let what = if self.method == SignIn::ClientSecret {
                    fields.push(("client_secret", s.client_secret.as_deref().unwrap_or_default()));
                    "getting a token (client secret)"
                } else {
                    let path = s.federated_token_file.as_deref().unwrap_or_else(|| std::path::Path::new(""));
                    assertion = std::fs::read_to_string(path).map_err(|e| {
                        DnsError::provider(PROVIDER, format!("reading the federated token {}: {e}", path.display()), true)
                    })?;
                    fields.push(("client_assertion_type", ASSERTION_TYPE));
                    fields.push(("client_assertion", assertion.trim()));
                    "getting a token (workload identity)"
                };
                let body = Some(("application/x-www-form-urlencoded", form(&fields).into_bytes()));
                (what, self.client.send(Method::POST, &url, &[], body).await?)
            }
        };
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, what, &error_text(&answer)));
        }
        let token: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| DnsError::provider(PROVIDER, format!("{what}: unexpected answer: {e}"), true))?;
        Ok(token.lifetime())
    }

    /// An ARM call on `path` under the resource group's `dnsZones`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, DnsError> {
        let url = format!("{}{path}?api-version={API_VERSION}", self.zones);
        let token = self.token.get(|| self.fetch_token()).await?;
        let mut all = vec![("authorization", format!("Bearer {token}"))];
        all.extend(headers.iter().cloned());
        let answer = self.client.json(method, &url, &all, body).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            self.token.clear().await;
        }
        Ok(answer)
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(zone) = &self.zone_name {
            return Ok(zone.clone());
        }
        for candidate in zone_candidates(fqdn) {
            let answer = self.call(Method::GET, &format!("/{candidate}"), &[], None).await?;
            match answer.status {
                s if s.is_success() => return Ok(candidate),
                StatusCode::NOT_FOUND => continue,
                _ => return Err(answer.error(PROVIDER, "GET dnsZones/<zone>", &error_text(&answer))),
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no DNS zone in the resource group holds {fqdn}"), false))
    }

    /// Sets the TXT values at `record`'s name to `edit(values)`, keeping the
    /// others; retries when another writer changed the set first.
    async fn update(&self, record: &TxtRecord, edit: impl Fn(&mut Vec<String>)) -> Result<(), DnsError> {
        let zone = self.zone(&record.fqdn).await?;
        let full = relative(&record.fqdn);
        let name = full.strip_suffix(&format!(".{zone}")).unwrap_or(full);
        let path = format!("/{zone}/TXT/{name}");
        for attempt in 1..=TRIES {
            let answer = self.call(Method::GET, &path, &[], None).await?;
            let current: Option<Value> = match answer.status {
                s if s.is_success() => Some(serde_json::from_slice(&answer.body).map_err(|e| {
                    DnsError::provider(PROVIDER, format!("GET TXT record set: unexpected answer: {e}"), true)
                })?),
                StatusCode::NOT_FOUND => None,
                _ => return Err(answer.error(PROVIDER, "GET TXT record set", &error_text(&answer))),
            };
            // Each TXT record is a list of strings: one value, split at 255 bytes.
            let before: Vec<String> = current
                .as_ref()
                .and_then(|c| c["properties"]["TXTRecords"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|r| r["value"].as_array().into_iter().flatten().filter_map(Value::as_str).collect())
                .collect();
            let mut values = before.clone();
            edit(&mut values);
            if values == before {
                return Ok(());
            }
            let precondition = match current.as_ref().and_then(|c| c["etag"].as_str()) {
                Some(etag) => ("if-match", etag.to_owned()),
                None => ("if-none-match", "*".to_owned()),
            };
            let (what, answer) = if values.is_empty() {
                ("DELETE TXT record set", self.call(Method::DELETE, &path, &[precondition], None).await?)
            } else {
                let records: Vec<Value> = values.iter().map(|v| json!({ "value": [v] })).collect();
                let body = json!({ "properties": { "TTL": record.ttl, "TXTRecords": records } });
                ("PUT TXT record set", self.call(Method::PUT, &path, &[precondition], Some(&body)).await?)
            };
            if answer.status == StatusCode::PRECONDITION_FAILED && attempt < TRIES {
                continue;
            }
            if !answer.status.is_success() {
                return Err(answer.error(PROVIDER, what, &error_text(&answer)));
            }
            return Ok(());
        }
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for AzureDnsProvider {
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        self.zone(fqdn).await.map(Some)
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, |values| {
            if !values.contains(&record.value) {
                values.push(record.value.clone());
            }
        })
        .await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(record, |values| values.retain(|v| *v != record.value)).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, "TXT value removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "azuredns_tests.rs"]
mod tests;
