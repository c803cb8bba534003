//! DNS-01 (RFC 8555 §8.4): providers that create and remove the
//! `_acme-challenge` TXT records, and the propagation check that waits until
//! every authoritative nameserver answers them before the CA is told to look.
//!
//! One small trait per boundary: [`DnsProvider`] is all a provider does.
//! Providers keep other values at the same name (a wildcard and its apex
//! share `_acme-challenge.<apex>`), and remove only the value they added.
//!
//! Each provider's file also owns its settings table
//! ([`ProviderSettings`]); the `providers!` list below is the one list of
//! providers, and [`DnsChallenge`] the `[dns_challenge]` table that
//! `config` composes.

mod advice;
mod hetzner_cloud;
pub mod http;
mod oauth;
pub mod persist;
mod persist_settings;
pub mod propagation;
mod registry;
mod route53_credentials;
mod settings;

// The registry: one line per provider, `module::Settings` (its file in
// dns/ and its `ProviderSettings` type). Adding a provider is a new file
// and a line here; see docs/dns-providers.md.
registry::providers! {
    rfc2136::Rfc2136,
    exec::Exec,
    httpreq::HttpReq,
    acme_dns::AcmeDns,
    cloudflare::Cloudflare,
    route53::Route53,
    digitalocean::DigitalOcean,
    gcloud::Gcloud,
    azuredns::AzureDns,
    ovh::Ovh,
    linode::Linode,
    gandiv5::GandiV5,
    porkbun::Porkbun,
    vultr::Vultr,
    pdns::PowerDns,
    hetzner::Hetzner,
    desec::Desec,
    dnsimple::Dnsimple,
    godaddy::GoDaddy,
    namecheap::Namecheap,
    duckdns::DuckDns,
    scaleway::Scaleway,
    bunny::Bunny,
    ionos::Ionos,
    infomaniak::Infomaniak,
    exoscale::Exoscale,
}

#[cfg(test)]
mod mock_tests;

use std::sync::Arc;

use async_trait::async_trait;

pub use persist_settings::DnsPersist;
pub use settings::{DnsChallenge, Env, ProviderSettings, SettingsError};

/// One TXT record to present or clean up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxtRecord {
    /// The identifier being validated (`example.com` for `*.example.com`).
    pub domain: String,
    /// `_acme-challenge.<domain>.`, absolute, lower case, with the final dot.
    pub fqdn: String,
    /// The base64url SHA-256 of the key authorization.
    pub value: String,
    pub ttl: u32,
}

impl TxtRecord {
    /// The record for identifier `identifier` (a leading `*.` is dropped).
    pub fn new(identifier: &str, value: &str, ttl: u32) -> Self {
        let domain = identifier.strip_prefix("*.").unwrap_or(identifier).trim_end_matches('.').to_ascii_lowercase();
        Self { fqdn: format!("_acme-challenge.{domain}."), domain, value: value.to_owned(), ttl }
    }
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The provider refused or failed; `retryable` says whether the same
    /// request may work later (network, 5xx, rate limit).
    #[error("{provider}: {message}")]
    Provider { provider: &'static str, message: String, retryable: bool },
    #[error("DNS records did not propagate within {waited_secs}s: {detail}")]
    Propagation { waited_secs: u64, detail: String },
    /// The propagation check could not find where to look.
    #[error("cannot find the nameservers of {fqdn} to check it: {reason}; {advice}")]
    Zone { fqdn: String, reason: String, advice: String },
}

impl DnsError {
    pub fn provider(provider: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Self::Provider { provider, message: message.into(), retryable }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Provider { retryable, .. } => *retryable,
            Self::Propagation { .. } | Self::Zone { .. } => true,
        }
    }
}

/// Creates and removes TXT records at one DNS service.
#[async_trait]
pub trait DnsProvider: Send + Sync + std::fmt::Debug {
    /// Adds `record`'s value at its name, keeping any other values there.
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError>;
    /// Removes exactly `record`'s value; other values at the name stay.
    /// Removing a value that is not there is no error.
    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError>;
    /// A read-only call showing that the credentials are accepted and the
    /// zone of `fqdn` (`_acme-challenge.<domain>.`) is found, for
    /// `proxy-acme check --online`: the zone, or `None` when the provider
    /// has no such call (nothing was checked).
    async fn verify(&self, fqdn: &str) -> Result<Option<String>, DnsError> {
        let _ = fqdn;
        Ok(None)
    }
}

/// A resolver's DNS-01 solver: its provider and its check settings.
#[derive(Debug, Clone)]
pub struct DnsSolver {
    pub provider: Arc<dyn DnsProvider>,
    pub settings: DnsChallenge,
}

/// Builds the provider a validated `[dns_challenge]` names.
pub fn build(settings: &DnsChallenge) -> Result<DnsSolver, DnsError> {
    Ok(DnsSolver { provider: settings.build_provider()?, settings: settings.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_and_its_apex_share_one_record_name() {
        let wildcard = TxtRecord::new("*.Example.com", "v1", 60);
        let apex = TxtRecord::new("example.com", "v2", 60);
        assert_eq!(wildcard.fqdn, "_acme-challenge.example.com.");
        assert_eq!(wildcard.fqdn, apex.fqdn);
        assert_eq!(wildcard.domain, "example.com");
    }
}
