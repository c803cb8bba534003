//! `route53`: AWS Route 53's REST API (2013-04-01), requests signed with
//! Signature Version 4. IAM actions: `route53:ListHostedZonesByName`,
//! `route53:ListResourceRecordSets`, `route53:ChangeResourceRecordSets`,
//! `route53:GetChange`.
//!
//! A TXT record set holds all values at a name, so both `present` and
//! `cleanup` read the set and write it back whole with `UPSERT` (or
//! `DELETE` it, exactly as it is, when our value was the last), then wait
//! until the change is `INSYNC`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use ring::{digest, hmac};
use serde::Deserialize;

use super::http::{zone_candidates, Answer, ApiClient};
use super::settings::{redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

const PROVIDER: &str = "route53";
const API: &str = "/2013-04-01";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const INSYNC_TIMEOUT: Duration = Duration::from_secs(60);

// === settings ===

/// `[dns_challenge.route53]`: an access key (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53 {
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Signing region (`AWS_REGION`); Route 53 is global, `us-east-1` by default.
    #[serde(default = "default_region")]
    pub region: String,
    /// The hosted zone (`AWS_HOSTED_ZONE_ID`); found by name when absent.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// API endpoint; change only for tests or a proxy.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_endpoint() -> String {
    "https://route53.amazonaws.com".into()
}

impl std::fmt::Debug for Route53 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(self.secret_access_key.as_ref()))
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("region", &self.region)
            .field("hosted_zone_id", &self.hosted_zone_id)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl ProviderSettings for Route53 {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        let (key, file) = (format!("{field}.secret_access_key"), self.secret_access_key_file.as_deref());
        env.secret(&key, &mut self.secret_access_key, file, "AWS_SECRET_ACCESS_KEY")?;
        env.secret(&format!("{field}.access_key_id"), &mut self.access_key_id, None, "AWS_ACCESS_KEY_ID")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.access_key_id"), self.access_key_id.as_ref())?;
        required(&format!("{field}.secret_access_key"), self.secret_access_key.as_ref())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(Route53Provider::new(self)?))
    }
}

// === impl Route53Provider ===

pub struct Route53Provider {
    endpoint: String,
    host: String,
    access_key_id: String,
    secret_access_key: String,
    region: String,
    hosted_zone_id: Option<String>,
    client: ApiClient,
}

impl std::fmt::Debug for Route53Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Provider")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// SigV4 for one request: the `Authorization` header value.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    path: &str,
    query: &str,
    host: &str,
    amz_date: &str,
    payload: &[u8],
    (access_key_id, secret): (&str, &str),
    (region, service): (&str, &str),
) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let payload_hash = hex(digest::digest(&digest::SHA256, payload).as_ref());
    let canonical =
        format!("{method}\n{path}\n{query}\nhost:{host}\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{payload_hash}");
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mac = |key: &[u8], data: &str| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes());
    let k_date = mac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = mac(k_date.as_ref(), region);
    let k_service = mac(k_region.as_ref(), service);
    let k_signing = mac(k_service.as_ref(), "aws4_request");
    let signature = hex(mac(k_signing.as_ref(), &to_sign).as_ref());
    format!("AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}")
}

/// RFC 3986 encoding of a query value, as SigV4 wants it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The texts of every `<tag>...</tag>` in `xml`, in order.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].replace("&quot;", "\"").replace("&amp;", "&"));
        rest = &after[end + close.len()..];
    }
    out
}

fn first(xml: &str, tag: &str) -> Option<String> {
    tags(xml, tag).into_iter().next()
}

/// The TXT record set at a name as Route 53 has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordSet {
    ttl: u32,
    values: Vec<String>,
}

impl Route53Provider {
    pub fn new(config: &Route53) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        let host = endpoint.split_once("://").map_or(endpoint.as_str(), |(_, rest)| rest).to_owned();
        Ok(Self {
            endpoint,
            host,
            access_key_id: config.access_key_id.clone().ok_or_else(|| missing("access_key_id"))?,
            secret_access_key: config.secret_access_key.clone().ok_or_else(|| missing("secret_access_key"))?,
            region: config.region.clone(),
            hosted_zone_id: config.hosted_zone_id.clone(),
            client: ApiClient::new(PROVIDER)?,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Answer, DnsError> {
        let mut pairs: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, encode(v))).collect();
        pairs.sort();
        let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let amz_date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .map_err(|e| DnsError::provider(PROVIDER, e.to_string(), false))?;
        let payload = body.unwrap_or_default();
        let authorization = sign(
            method.as_str(),
            path,
            &query,
            &self.host,
            &amz_date,
            payload.as_bytes(),
            (&self.access_key_id, &self.secret_access_key),
            (&self.region, "route53"),
        );
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query}", self.endpoint)
        };
        let headers = [("host", self.host.clone()), ("x-amz-date", amz_date), ("authorization", authorization)];
        let body = (!payload.is_empty()).then(|| ("text/xml", payload.into_bytes()));
        let answer = self.client.send(method.clone(), &url, &headers, body).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let text = answer.text();
        let detail = match (first(&text, "Code"), first(&text, "Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => text,
        };
        Err(answer.error(PROVIDER, &format!("{method} {path}"), &detail))
    }

    async fn zone_id(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(id) = &self.hosted_zone_id {
            return Ok(id.trim_start_matches("/hostedzone/").to_owned());
        }
        for candidate in zone_candidates(fqdn) {
            let answer = self
                .call(
                    Method::GET,
                    &format!("{API}/hostedzonesbyname"),
                    &[("dnsname", &candidate), ("maxitems", "1")],
                    None,
                )
                .await?;
            let text = answer.text();
            let names = tags(&text, "Name");
            let ids = tags(&text, "Id");
            if let Some((id, _)) = ids.iter().zip(&names).find(|(_, name)| name.trim_end_matches('.') == candidate) {
                return Ok(id.trim_start_matches("/hostedzone/").to_owned());
            }
        }
        Err(DnsError::provider(PROVIDER, format!("no hosted zone in this account holds {fqdn}"), false))
    }

    async fn record_set(&self, zone: &str, fqdn: &str) -> Result<Option<RecordSet>, DnsError> {
        let path = format!("{API}/hostedzone/{zone}/rrset");
        let answer = self.call(Method::GET, &path, &[("name", fqdn), ("type", "TXT"), ("maxitems", "1")], None).await?;
        let text = answer.text();
        let Some(set) = first(&text, "ResourceRecordSet") else { return Ok(None) };
        let same_name = first(&set, "Name").is_some_and(|n| n.eq_ignore_ascii_case(fqdn));
        if !same_name || first(&set, "Type").as_deref() != Some("TXT") {
            return Ok(None);
        }
        let ttl = first(&set, "TTL").and_then(|t| t.parse().ok()).unwrap_or(60);
        Ok(Some(RecordSet { ttl, values: tags(&set, "Value") }))
    }

    async fn change(&self, zone: &str, action: &str, fqdn: &str, set: &RecordSet) -> Result<(), DnsError> {
        let values: String =
            set.values.iter().map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>")).collect();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch>\
             <Comment>proxy-acme DNS-01</Comment><Changes><Change><Action>{action}</Action><ResourceRecordSet>\
             <Name>{fqdn}</Name><Type>TXT</Type><TTL>{}</TTL><ResourceRecords>{values}</ResourceRecords>\
             </ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>",
            set.ttl
        );
        let answer = self.call(Method::POST, &format!("{API}/hostedzone/{zone}/rrset/"), &[], Some(body)).await?;
        let Some(change) = first(&answer.text(), "Id") else { return Ok(()) };
        let change = change.trim_start_matches("/change/").to_owned();
        let deadline = tokio::time::Instant::now() + INSYNC_TIMEOUT;
        loop {
            let status = self.call(Method::GET, &format!("{API}/change/{change}"), &[], None).await?;
            if first(&status.text(), "Status").as_deref() == Some("INSYNC") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DnsError::provider(
                    PROVIDER,
                    format!("change {change} not INSYNC after {INSYNC_TIMEOUT:?}"),
                    true,
                ));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[async_trait]
impl DnsProvider for Route53Provider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone_id(&record.fqdn).await?;
        let quoted = format!("\"{}\"", record.value);
        let mut set =
            self.record_set(&zone, &record.fqdn).await?.unwrap_or(RecordSet { ttl: record.ttl, values: Vec::new() });
        if !set.values.contains(&quoted) {
            set.values.push(quoted);
        }
        self.change(&zone, "UPSERT", &record.fqdn, &set).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, values = set.values.len(), "TXT record set written");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let zone = self.zone_id(&record.fqdn).await?;
        let quoted = format!("\"{}\"", record.value);
        let Some(set) = self.record_set(&zone, &record.fqdn).await? else { return Ok(()) };
        if !set.values.contains(&quoted) {
            return Ok(());
        }
        let rest = RecordSet { ttl: set.ttl, values: set.values.iter().filter(|v| **v != quoted).cloned().collect() };
        if rest.values.is_empty() {
            self.change(&zone, "DELETE", &record.fqdn, &set).await
        } else {
            self.change(&zone, "UPSERT", &record.fqdn, &rest).await
        }
    }
}

#[cfg(test)]
#[path = "route53_tests.rs"]
mod tests;
