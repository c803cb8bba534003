//! `[resolvers.<name>]`: one ACME CA account and how it proves control,
//! in Traefik's `certificatesResolvers` vocabulary.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, DnsChallenge, DnsPersist, LETS_ENCRYPT_PRODUCTION};
use crate::cert::KeyType;
use crate::names;
use crate::solvers::ChallengeKind;

/// One named ACME resolver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolver {
    /// Contact address registered with the account.
    #[serde(default)]
    pub email: Option<String>,
    /// ACME directory URL.
    #[serde(default = "default_ca_server")]
    pub ca_server: String,
    /// The directory `renew --dry-run` orders from. Default: Let's
    /// Encrypt's staging for Let's Encrypt, Google's staging for Google
    /// Trust Services, else `ca_server` itself (a private CA).
    #[serde(default)]
    pub staging_server: Option<String>,
    /// PEM file with the root that signs the CA server's own HTTPS
    /// certificate, for private CAs and Pebble (lego's `LEGO_CA_CERTIFICATES`).
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// Key type of issued certificates.
    #[serde(default)]
    pub key_type: KeyType,
    /// External account binding (ZeroSSL, Google, step-ca, ...).
    #[serde(default)]
    pub eab: Option<Eab>,
    /// Prefer the alternate chain whose topmost issuer has this common name.
    #[serde(default)]
    pub preferred_chain: Option<String>,
    /// Certificate profile, when the CA's directory advertises profiles.
    #[serde(default)]
    pub profile: Option<String>,
    /// Put the first name in the CSR's subject common name (only when it
    /// is a DNS name of at most 64 bytes; never an IP address). `false`
    /// leaves the subject empty, as Let's Encrypt's newer profiles issue.
    #[serde(default = "yes")]
    pub common_name: bool,
    /// Keep the certificate's private key across renewals (for pinned keys,
    /// DANE TLSA 3 1 1): a renewal's CSR is signed with the current key
    /// when it is of the configured key type. Off by default.
    #[serde(default)]
    pub reuse_key: bool,
    /// Solve HTTP-01 through the Envoy filter or nginx `proxy_pass`.
    #[serde(default)]
    pub http_challenge: Option<HttpChallenge>,
    /// Solve TLS-ALPN-01 (RFC 8737) on the TLS port, through the responder
    /// at `[listen] tls_alpn`.
    #[serde(default)]
    pub tls_challenge: Option<TlsChallenge>,
    /// Solve DNS-01 through a DNS provider: wildcards, and names the CA
    /// cannot reach.
    #[serde(default)]
    pub dns_challenge: Option<DnsChallenge>,
    /// Solve dns-persist-01 (draft-ietf-acme-dns-persist): one TXT record
    /// the operator creates once at `_validation-persist.<domain>` (see
    /// `proxy-acme dns-persist-record`); no DNS credentials.
    #[serde(default)]
    pub dns_persist: Option<DnsPersist>,
    /// The order in which configured challenge types are tried; an order
    /// whose challenge fails is placed again with the next type. Default:
    /// `["http-01", "tls-alpn-01", "dns-01", "dns-persist-01"]`, limited to
    /// the configured ones.
    #[serde(default)]
    pub challenge_order: Option<Vec<ChallengeKind>>,
    /// Self-imposed ACME rate limits, below the CA's.
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// When to renew: a duration before expiry (`"30d"`, `"1d12h"`) or the
    /// share of the lifetime left (`"33%"`). Default: one third of the
    /// lifetime left, one half for lifetimes under ten days.
    #[serde(default)]
    pub renew_before: Option<crate::schedule::RenewBefore>,
    /// Longest one order may take, from loading the account to the
    /// downloaded certificate; past it the order fails and backs off.
    #[serde(default = "default_order_timeout_secs")]
    pub order_timeout_secs: u64,
}

fn default_order_timeout_secs() -> u64 {
    600
}

impl Resolver {
    /// The challenge types to try, in order (validated: each is configured).
    pub fn challenges(&self) -> Vec<ChallengeKind> {
        let configured = |kind: &ChallengeKind| match kind {
            ChallengeKind::Http01 => self.http_challenge.is_some(),
            ChallengeKind::TlsAlpn01 => self.tls_challenge.is_some(),
            ChallengeKind::Dns01 => self.dns_challenge.is_some(),
            ChallengeKind::DnsPersist01 => self.dns_persist.is_some(),
        };
        match &self.challenge_order {
            Some(order) => order.iter().copied().filter(configured).collect(),
            None => ChallengeKind::ALL.into_iter().filter(configured).collect(),
        }
    }

    /// Whether a challenge type that proves wildcards is configured
    /// (DNS-01 or dns-persist-01).
    pub fn proves_wildcards(&self) -> bool {
        self.dns_challenge.is_some() || self.dns_persist.is_some()
    }
}

/// External account binding: the key id and HMAC key the CA gave you.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eab {
    pub kid: String,
    /// Base64url HMAC key (Traefik's `hmacEncoded`); or use `hmac_key_file`.
    #[serde(default)]
    pub hmac_key: Option<String>,
    /// File holding the base64url HMAC key (the `_FILE` form for secrets).
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab").field("kid", &self.kid).field("hmac_key", &"...").finish_non_exhaustive()
    }
}

impl Eab {
    /// The decoded HMAC key. `Config::load` has already read `hmac_key_file`
    /// into `hmac_key`, and `validate` has checked it decodes.
    pub fn hmac(&self) -> Option<Vec<u8>> {
        self.hmac_key.as_deref().and_then(decode_base64url)
    }
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = text.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok().filter(|k| !k.is_empty())
}

/// Limits the sidecar keeps to so a misconfiguration cannot drain the CA's.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// New orders per account in `order_window_hours` (Let's Encrypt: 300 in 3 h).
    #[serde(default = "default_orders")]
    pub orders: u32,
    #[serde(default = "default_order_window_hours")]
    pub order_window_hours: u32,
    /// Failed authorizations per identifier per hour (Let's Encrypt: 5).
    #[serde(default = "default_failed_authorizations")]
    pub failed_authorizations_per_hour: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            orders: default_orders(),
            order_window_hours: default_order_window_hours(),
            failed_authorizations_per_hour: default_failed_authorizations(),
        }
    }
}

fn default_orders() -> u32 {
    300
}
fn default_order_window_hours() -> u32 {
    3
}
fn default_failed_authorizations() -> u32 {
    5
}

fn default_ca_server() -> String {
    LETS_ENCRYPT_PRODUCTION.to_owned()
}

/// Production directories and their staging twins.
const STAGING: [(&str, &str); 2] = [
    (LETS_ENCRYPT_PRODUCTION, "https://acme-staging-v02.api.letsencrypt.org/directory"),
    ("https://dv.acme-v02.api.pki.goog/directory", "https://dv.acme-v02.test-api.pki.goog/directory"),
];

impl Resolver {
    /// Where `renew --dry-run` orders: `staging_server`, else the known
    /// staging twin of `ca_server`, else `ca_server` itself.
    pub fn staging_directory(&self) -> &str {
        if let Some(staging) = &self.staging_server {
            return staging;
        }
        STAGING.iter().find(|(production, _)| *production == self.ca_server).map_or(&self.ca_server, |(_, s)| s)
    }
}

/// HTTP-01 settings; present (even empty) means HTTP-01 is enabled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpChallenge {
    /// Also write each pending token to
    /// `<webroot>/.well-known/acme-challenge/<token>`, for servers that
    /// answer challenges from disk.
    #[serde(default)]
    pub webroot: Option<PathBuf>,
}

/// TLS-ALPN-01 settings; present (even empty) means TLS-ALPN-01 is enabled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsChallenge {}

pub(super) fn validate_resolver(name: &str, resolver: &Resolver) -> Result<(), ConfigError> {
    let field = format!("resolvers.{name}");
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ConfigError::invalid(&field, "resolver names use letters, digits, '-' and '_' only"));
    }
    if !resolver.ca_server.starts_with("https://") {
        return Err(ConfigError::invalid(
            format!("{field}.ca_server"),
            format!("'{}' must be an https:// ACME directory URL", resolver.ca_server),
        ));
    }
    if let Some(staging) = resolver.staging_server.as_deref().filter(|s| !s.starts_with("https://")) {
        return Err(ConfigError::invalid(
            format!("{field}.staging_server"),
            format!("'{staging}' must be an https:// ACME directory URL"),
        ));
    }
    if let Some(email) = &resolver.email {
        let (local, domain) = email.split_once('@').unwrap_or(("", ""));
        if local.is_empty() || names::validate_dns_name(domain).is_err() {
            return Err(ConfigError::invalid(format!("{field}.email"), format!("'{email}' is not an email address")));
        }
    }
    if let Some(eab) = &resolver.eab {
        if eab.kid.trim().is_empty() {
            return Err(ConfigError::invalid(format!("{field}.eab.kid"), "must not be empty"));
        }
        if eab.hmac_key.is_none() {
            return Err(ConfigError::invalid(format!("{field}.eab.hmac_key"), "set hmac_key or hmac_key_file"));
        }
        if eab.hmac().is_none() {
            return Err(ConfigError::invalid(format!("{field}.eab.hmac_key"), "is not base64url"));
        }
    }
    if !(10..=86_400).contains(&resolver.order_timeout_secs) {
        return Err(ConfigError::invalid(
            format!("{field}.order_timeout_secs"),
            format!("{} is not between 10 and 86400", resolver.order_timeout_secs),
        ));
    }
    let limits = &resolver.rate_limit;
    if limits.orders == 0 || limits.order_window_hours == 0 || limits.failed_authorizations_per_hour == 0 {
        return Err(ConfigError::invalid(format!("{field}.rate_limit"), "limits must be positive"));
    }
    if resolver.http_challenge.is_none()
        && resolver.tls_challenge.is_none()
        && resolver.dns_challenge.is_none()
        && resolver.dns_persist.is_none()
    {
        return Err(ConfigError::invalid(
            format!("{field}.http_challenge"),
            "no challenge configured: add `http_challenge = {}`, `tls_challenge = {}`, `dns_persist = {}` or a \
             [dns_challenge] table",
        ));
    }
    if let Some(dns) = &resolver.dns_challenge {
        dns.validate(&format!("{field}.dns_challenge"))?;
    }
    if let Some(persist) = &resolver.dns_persist {
        persist.validate(&format!("{field}.dns_persist"))?;
    }
    if let Some(webroot) = resolver.http_challenge.as_ref().and_then(|h| h.webroot.as_ref()) {
        if !webroot.is_absolute() {
            return Err(ConfigError::invalid(format!("{field}.http_challenge.webroot"), "must be an absolute path"));
        }
    }
    if let Some(order) = &resolver.challenge_order {
        let field = format!("{field}.challenge_order");
        if order.is_empty() {
            return Err(ConfigError::invalid(field, "must name at least one challenge type"));
        }
        for (i, kind) in order.iter().enumerate() {
            if order[..i].contains(kind) {
                return Err(ConfigError::invalid(&field, format!("'{kind}' is listed twice")));
            }
        }
        let block = |kind: &ChallengeKind| match kind {
            ChallengeKind::Http01 => ("http_challenge", resolver.http_challenge.is_some()),
            ChallengeKind::TlsAlpn01 => ("tls_challenge", resolver.tls_challenge.is_some()),
            ChallengeKind::Dns01 => ("dns_challenge", resolver.dns_challenge.is_some()),
            ChallengeKind::DnsPersist01 => ("dns_persist", resolver.dns_persist.is_some()),
        };
        if let Some((kind, (name, _))) = order.iter().map(|k| (k, block(k))).find(|(_, (_, on))| !on) {
            return Err(ConfigError::invalid(&field, format!("'{kind}' is listed but `{name}` is not configured")));
        }
    }
    Ok(())
}

fn yes() -> bool {
    true
}
