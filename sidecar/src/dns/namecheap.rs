//! `namecheap`: the Namecheap XML API (`ApiUser`, `ApiKey`, `UserName`,
//! `ClientIp` in every request). Namecheap has no call that adds or removes
//! one record: `namecheap.domains.dns.setHosts` replaces every host record
//! of the domain. So both `present` and `cleanup` read all of them with
//! `getHosts` and write all of them back, with ours added or removed, and
//! the domain's `EmailType` kept (Namecheap wants `MX` there for MX records).
//!
//! The domain is found by asking `getHosts` for the record name's suffixes,
//! longest first (`SLD` its first label, `TLD` the rest), skipping those
//! Namecheap says are not in the account.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::http::{relative, zone_candidates, ApiClient};
use super::settings::{http_url, redacted, required, Env, ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};

#[path = "namecheap_xml.rs"]
mod xml;

const PROVIDER: &str = "namecheap";
/// Namecheap's smallest TTL.
const MIN_TTL: u32 = 60;
/// "Domain not found" and "Domain is not associated with your account":
/// the suffix is not a domain of this account; try a shorter one.
const NOT_OURS: [&str; 2] = ["2019166", "2016166"];

// === settings ===

/// `[dns_challenge.namecheap]`: API user and key (`NAMECHEAP_API_USER`,
/// `NAMECHEAP_API_KEY`), from a whitelisted client IP.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namecheap {
    #[serde(default)]
    pub api_user: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// The public IP the API sees (whitelisted in Namecheap); found with
    /// `client_ip_url` when not set.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// Where the public IP is asked when `client_ip` is not set (lego's).
    #[serde(default = "default_client_ip_url")]
    pub client_ip_url: String,
    /// API URL; the sandbox is `https://api.sandbox.namecheap.com/xml.response`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.namecheap.com/xml.response".into()
}

fn default_client_ip_url() -> String {
    "https://dynamicdns.park-your-domain.com/getip".into()
}

impl std::fmt::Debug for Namecheap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namecheap")
            .field("api_user", &self.api_user)
            .field("api_key", &redacted(self.api_key.as_ref()))
            .field("api_key_file", &self.api_key_file)
            .field("client_ip", &self.client_ip)
            .field("client_ip_url", &self.client_ip_url)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ProviderSettings for Namecheap {
    const NAME: &'static str = PROVIDER;

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        env.fill(&mut self.api_user, "NAMECHEAP_API_USER");
        let file = self.api_key_file.as_deref();
        env.secret(&format!("{field}.api_key"), &mut self.api_key, file, "NAMECHEAP_API_KEY")
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        required(&format!("{field}.api_user"), self.api_user.as_ref())?;
        required(&format!("{field}.api_key"), self.api_key.as_ref())?;
        if let Some(ip) = &self.client_ip {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| SettingsError::new(format!("{field}.client_ip"), "must be an IP address"))?;
        }
        http_url(&format!("{field}.client_ip_url"), &self.client_ip_url)?;
        http_url(&format!("{field}.base_url"), &self.base_url)
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(NamecheapProvider::new(self)?))
    }
}

// === impl NamecheapProvider ===

pub struct NamecheapProvider {
    base: String,
    user: String,
    key: String,
    client_ip_url: String,
    /// The configured or discovered client IP.
    client_ip: OnceCell<String>,
    client: ApiClient,
    /// Held from `getHosts` to `setHosts`: certificates of one domain
    /// issued at once would otherwise each write back a list without the
    /// other's record.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NamecheapProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamecheapProvider").field("base", &self.base).field("user", &self.user).finish_non_exhaustive()
    }
}

/// One host record as `getHosts` gives it and `setHosts` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    name: String,
    kind: String,
    address: String,
    mx_pref: String,
    ttl: String,
}

/// A domain's host records and its mail setting.
#[derive(Debug)]
struct Hosts {
    sld: String,
    tld: String,
    email_type: Option<String>,
    hosts: Vec<Host>,
}

/// `application/x-www-form-urlencoded` / query encoding.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn form(params: &[(String, String)]) -> String {
    params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

impl NamecheapProvider {
    pub fn new(config: &Namecheap) -> Result<Self, DnsError> {
        let missing = |what: &str| DnsError::provider(PROVIDER, format!("no {what}"), false);
        let client_ip = OnceCell::new();
        if let Some(ip) = &config.client_ip {
            let _ = client_ip.set(ip.clone());
        }
        Ok(Self {
            base: config.base_url.clone(),
            user: config.api_user.clone().ok_or_else(|| missing("api_user"))?,
            key: config.api_key.clone().ok_or_else(|| missing("api_key"))?,
            client_ip_url: config.client_ip_url.clone(),
            client_ip,
            client: ApiClient::new(PROVIDER)?,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    async fn client_ip(&self) -> Result<&str, DnsError> {
        let ip = self
            .client_ip
            .get_or_try_init(|| async {
                let answer = self.client.send(Method::GET, &self.client_ip_url, &[], None).await?;
                let what = format!("finding our public IP at {}", self.client_ip_url);
                if !answer.status.is_success() {
                    return Err(answer.error(PROVIDER, &what, &answer.text()));
                }
                let text = answer.text().trim().to_owned();
                match text.parse::<std::net::IpAddr>() {
                    Ok(_) => Ok(text),
                    Err(_) => Err(DnsError::provider(PROVIDER, format!("{what}: not an IP: {text:.60}"), true)),
                }
            })
            .await?;
        Ok(ip)
    }

    /// Calls `command` with the credentials and `params`; the answer's
    /// document when its `Status` is `OK`, else its errors.
    async fn call(&self, command: &str, params: Vec<(String, String)>) -> Result<String, DnsError> {
        let mut all = vec![
            ("ApiUser".to_owned(), self.user.clone()),
            ("ApiKey".to_owned(), self.key.clone()),
            ("UserName".to_owned(), self.user.clone()),
            ("Command".to_owned(), command.to_owned()),
            ("ClientIp".to_owned(), self.client_ip().await?.to_owned()),
        ];
        all.extend(params);
        let body = form(&all).into_bytes();
        let answer =
            self.client.send(Method::POST, &self.base, &[], Some(("application/x-www-form-urlencoded", body))).await?;
        let text = answer.text();
        if !answer.status.is_success() {
            return Err(answer.error(PROVIDER, command, &text));
        }
        let status = xml::elements(&text, "ApiResponse").into_iter().next().and_then(|e| e.attr("Status"));
        match status.as_deref() {
            Some("OK") => Ok(text),
            Some(_) => Err(api_error(command, answer.status, &text)),
            None => Err(DnsError::provider(PROVIDER, format!("{command}: unexpected answer: {text:.200}"), true)),
        }
    }

    /// The host records of the account's domain holding `fqdn`.
    async fn hosts(&self, fqdn: &str) -> Result<Hosts, DnsError> {
        const COMMAND: &str = "namecheap.domains.dns.getHosts";
        for candidate in zone_candidates(fqdn) {
            let Some((sld, tld)) = candidate.split_once('.') else { continue };
            let params = vec![("SLD".to_owned(), sld.to_owned()), ("TLD".to_owned(), tld.to_owned())];
            let text = match self.call(COMMAND, params).await {
                Ok(text) => text,
                Err(DnsError::Provider { message, .. }) if NOT_OURS.iter().any(|n| message.contains(n)) => continue,
                Err(e) => return Err(e),
            };
            let result = xml::elements(&text, "DomainDNSGetHostsResult").into_iter().next();
            let hosts = xml::elements(&text, "host")
                .into_iter()
                .map(|h| Host {
                    name: h.attr("Name").unwrap_or_default(),
                    kind: h.attr("Type").unwrap_or_default(),
                    address: h.attr("Address").unwrap_or_default(),
                    mx_pref: h.attr("MXPref").unwrap_or_else(|| "10".into()),
                    ttl: h.attr("TTL").unwrap_or_else(|| "1800".into()),
                })
                .collect();
            return Ok(Hosts {
                sld: sld.to_owned(),
                tld: tld.to_owned(),
                email_type: result.and_then(|r| r.attr("EmailType")),
                hosts,
            });
        }
        Err(DnsError::provider(PROVIDER, format!("no domain in this account holds {fqdn}"), false))
    }

    async fn set_hosts(&self, domain: &Hosts) -> Result<(), DnsError> {
        const COMMAND: &str = "namecheap.domains.dns.setHosts";
        let mut params = vec![("SLD".to_owned(), domain.sld.clone()), ("TLD".to_owned(), domain.tld.clone())];
        if let Some(email_type) = &domain.email_type {
            params.push(("EmailType".to_owned(), email_type.clone()));
        }
        for (i, host) in domain.hosts.iter().enumerate() {
            let n = i + 1;
            params.push((format!("HostName{n}"), host.name.clone()));
            params.push((format!("RecordType{n}"), host.kind.clone()));
            params.push((format!("Address{n}"), host.address.clone()));
            params.push((format!("MXPref{n}"), host.mx_pref.clone()));
            params.push((format!("TTL{n}"), host.ttl.clone()));
        }
        let text = self.call(COMMAND, params).await?;
        let result = xml::elements(&text, "DomainDNSSetHostsResult").into_iter().next();
        if result.and_then(|r| r.attr("IsSuccess")).as_deref() != Some("true") {
            return Err(DnsError::provider(PROVIDER, format!("{COMMAND}: not successful: {text:.200}"), true));
        }
        Ok(())
    }
}

/// The record's host name within the domain (`_acme-challenge.www`).
fn host_name(fqdn: &str, domain: &Hosts) -> String {
    let full = relative(fqdn);
    full.strip_suffix(&format!(".{}.{}", domain.sld, domain.tld)).unwrap_or(full).to_owned()
}

/// The error for an answer whose `Status` is not `OK`: its `Error`s, as
/// `text [number]`. Namecheap answers them with HTTP 200.
fn api_error(command: &str, status: http::StatusCode, text: &str) -> DnsError {
    let errors: Vec<String> = xml::errors(text).iter().map(|(number, text)| format!("{text} [{number}]")).collect();
    let message = format!("{command}: HTTP {} with Status=\"ERROR\": {}", status.as_u16(), errors.join("; "));
    DnsError::provider(PROVIDER, message, false)
}

#[async_trait]
impl DnsProvider for NamecheapProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let _writing = self.writing.lock().await;
        let mut domain = self.hosts(&record.fqdn).await?;
        let name = host_name(&record.fqdn, &domain);
        if domain.hosts.iter().any(|h| h.kind == "TXT" && h.name == name && h.address == record.value) {
            return Ok(());
        }
        domain.hosts.push(Host {
            name,
            kind: "TXT".into(),
            address: record.value.clone(),
            mx_pref: "10".into(),
            ttl: record.ttl.max(MIN_TTL).to_string(),
        });
        self.set_hosts(&domain).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, hosts = domain.hosts.len(), "TXT record added");
        Ok(())
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let _writing = self.writing.lock().await;
        let mut domain = self.hosts(&record.fqdn).await?;
        let name = host_name(&record.fqdn, &domain);
        let before = domain.hosts.len();
        domain.hosts.retain(|h| !(h.kind == "TXT" && h.name == name && h.address == record.value));
        if domain.hosts.len() == before {
            return Ok(());
        }
        self.set_hosts(&domain).await?;
        tracing::info!(provider = PROVIDER, fqdn = %record.fqdn, hosts = domain.hosts.len(), "TXT record removed");
        Ok(())
    }
}

#[cfg(test)]
#[path = "namecheap_tests.rs"]
mod tests;
