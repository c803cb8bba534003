//! `[resolvers.<name>.dns_challenge]`: DNS-01 settings, the propagation
//! check, and one provider sub-table (`rfc2136`, `exec`, `httpreq`,
//! `acme_dns`, `cloudflare`, `route53` or `digitalocean`).
//!
//! Credentials live per resolver, so two zones with two accounts work in one
//! process. Every secret can be given inline, as `<key>_file` (a path), or
//! through lego's environment variable or its `_FILE` form, in that order.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// DNS-01 for one resolver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsChallenge {
    /// Recursive DNS servers used to find each zone and its nameservers;
    /// empty means those in /etc/resolv.conf.
    #[serde(default)]
    pub resolvers: Vec<SocketAddr>,
    /// Wait this long after presenting the records before checking.
    #[serde(default)]
    pub delay_before_check_secs: u64,
    /// Give up the propagation check after this long.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Time between two rounds of checks.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Tell the CA to validate without checking first.
    #[serde(default)]
    pub disable_checks: bool,
    /// Check every authoritative nameserver of the zone (default); `false`
    /// asks only the `resolvers`.
    #[serde(default = "default_true")]
    pub check_all_nameservers: bool,
    /// The port authoritative nameservers are asked on.
    #[serde(default = "default_dns_port")]
    pub nameserver_port: u16,
    /// TTL of the TXT records we create.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub rfc2136: Option<Rfc2136>,
    #[serde(default)]
    pub exec: Option<Exec>,
    #[serde(default)]
    pub httpreq: Option<HttpReq>,
    #[serde(default)]
    pub acme_dns: Option<AcmeDns>,
    #[serde(default)]
    pub cloudflare: Option<Cloudflare>,
    #[serde(default)]
    pub route53: Option<Route53>,
    #[serde(default)]
    pub digitalocean: Option<DigitalOcean>,
}

fn default_timeout_secs() -> u64 {
    120
}
fn default_interval_secs() -> u64 {
    2
}
fn default_true() -> bool {
    true
}
fn default_dns_port() -> u16 {
    53
}
fn default_ttl() -> u32 {
    60
}

/// RFC 2136 dynamic update, signed with TSIG (lego's `RFC2136_*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136 {
    /// The primary nameserver that takes updates (`RFC2136_NAMESERVER`).
    pub nameserver: SocketAddr,
    /// The zone to update; found with an SOA lookup when absent.
    #[serde(default)]
    pub zone: Option<String>,
    /// TSIG key name (`RFC2136_TSIG_KEY`); no TSIG when absent.
    #[serde(default)]
    pub tsig_key: Option<String>,
    /// `hmac-sha256` (default) or `hmac-sha512` (`RFC2136_TSIG_ALGORITHM`).
    #[serde(default = "default_tsig_algorithm")]
    pub tsig_algorithm: String,
    /// Base64 TSIG secret (`RFC2136_TSIG_SECRET`).
    #[serde(default)]
    pub tsig_secret: Option<String>,
    #[serde(default)]
    pub tsig_secret_file: Option<PathBuf>,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}

/// A program called as `program present|cleanup FQDN VALUE` (lego's `EXEC_PATH`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub program: PathBuf,
    #[serde(default = "default_exec_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_exec_timeout_secs() -> u64 {
    60
}

/// lego's HTTP request contract: `POST <endpoint>/present` and `/cleanup`
/// with `{"fqdn", "value"}` (`HTTPREQ_*`).
#[derive(Debug, Clone, Deserialize)]
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

/// joohoi/acme-dns: one registration per domain, stored in `storage_file`;
/// `_acme-challenge.<domain>` must be a CNAME to its `fulldomain`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeDns {
    /// The acme-dns API, e.g. `https://auth.example.org` (`ACME_DNS_API_BASE`).
    pub api_base: String,
    /// JSON file of registrations (`ACME_DNS_STORAGE_PATH`), 0600.
    pub storage_file: PathBuf,
}

/// Cloudflare API v4 with an API token (`CF_DNS_API_TOKEN`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloudflare {
    #[serde(default)]
    pub api_token: Option<String>,
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// API base URL; change only for tests or a proxy.
    #[serde(default = "default_cloudflare_url")]
    pub base_url: String,
}

fn default_cloudflare_url() -> String {
    "https://api.cloudflare.com/client/v4".into()
}

/// AWS Route 53 with an access key (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53 {
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Signing region (`AWS_REGION`); Route 53 is global, `us-east-1` by default.
    #[serde(default = "default_aws_region")]
    pub region: String,
    /// The hosted zone (`AWS_HOSTED_ZONE_ID`); found by name when absent.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// API endpoint; change only for tests or a proxy.
    #[serde(default = "default_route53_url")]
    pub endpoint: String,
}

fn default_aws_region() -> String {
    "us-east-1".into()
}
fn default_route53_url() -> String {
    "https://route53.amazonaws.com".into()
}

/// DigitalOcean API v2 with a token (`DO_AUTH_TOKEN`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitalOcean {
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    #[serde(default = "default_digitalocean_url")]
    pub base_url: String,
}

fn default_digitalocean_url() -> String {
    "https://api.digitalocean.com".into()
}

impl DnsChallenge {
    /// The configured provider's name; validation ensures exactly one.
    pub fn provider_name(&self) -> &'static str {
        self.providers().first().copied().unwrap_or("none")
    }

    fn providers(&self) -> Vec<&'static str> {
        let all = [
            ("rfc2136", self.rfc2136.is_some()),
            ("exec", self.exec.is_some()),
            ("httpreq", self.httpreq.is_some()),
            ("acme_dns", self.acme_dns.is_some()),
            ("cloudflare", self.cloudflare.is_some()),
            ("route53", self.route53.is_some()),
            ("digitalocean", self.digitalocean.is_some()),
        ];
        all.into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect()
    }

    /// Fills every secret from its `_file` key or lego's environment
    /// variables (`VAR`, then `VAR_FILE`) when it is not given inline.
    pub(super) fn read_secrets(&mut self, field: &str) -> Result<(), ConfigError> {
        if let Some(p) = &mut self.rfc2136 {
            secret(
                &format!("{field}.rfc2136.tsig_secret"),
                &mut p.tsig_secret,
                &p.tsig_secret_file,
                "RFC2136_TSIG_SECRET",
            )?;
            if p.tsig_key.is_none() {
                p.tsig_key = std::env::var("RFC2136_TSIG_KEY").ok();
            }
        }
        if let Some(p) = &mut self.httpreq {
            secret(&format!("{field}.httpreq.password"), &mut p.password, &p.password_file, "HTTPREQ_PASSWORD")?;
            if p.username.is_none() {
                p.username = std::env::var("HTTPREQ_USERNAME").ok();
            }
        }
        if let Some(p) = &mut self.cloudflare {
            secret(&format!("{field}.cloudflare.api_token"), &mut p.api_token, &p.api_token_file, "CF_DNS_API_TOKEN")?;
        }
        if let Some(p) = &mut self.route53 {
            let key_field = format!("{field}.route53.secret_access_key");
            secret(&key_field, &mut p.secret_access_key, &p.secret_access_key_file, "AWS_SECRET_ACCESS_KEY")?;
            secret(&format!("{field}.route53.access_key_id"), &mut p.access_key_id, &None, "AWS_ACCESS_KEY_ID")?;
        }
        if let Some(p) = &mut self.digitalocean {
            secret(
                &format!("{field}.digitalocean.auth_token"),
                &mut p.auth_token,
                &p.auth_token_file,
                "DO_AUTH_TOKEN",
            )?;
        }
        Ok(())
    }

    pub(super) fn validate(&self, field: &str) -> Result<(), ConfigError> {
        match self.providers().as_slice() {
            [_] => {}
            [] => {
                return Err(ConfigError::invalid(
                    field,
                    "name one provider table: rfc2136, exec, httpreq, acme_dns, cloudflare, route53 or digitalocean",
                ))
            }
            many => return Err(ConfigError::invalid(field, format!("one provider only, not {}", many.join(" and ")))),
        }
        if self.timeout_secs == 0 || self.interval_secs == 0 {
            return Err(ConfigError::invalid(format!("{field}.timeout_secs"), "timeout and interval must be positive"));
        }
        let missing = |key: &str| {
            ConfigError::invalid(
                format!("{field}.{key}"),
                "is required (inline, _file, or lego's environment variable)",
            )
        };
        if let Some(p) = &self.rfc2136 {
            if !matches!(p.tsig_algorithm.as_str(), "hmac-sha256" | "hmac-sha512") {
                return Err(ConfigError::invalid(
                    format!("{field}.rfc2136.tsig_algorithm"),
                    format!("'{}' is not hmac-sha256 or hmac-sha512", p.tsig_algorithm),
                ));
            }
            if p.tsig_key.is_some() != p.tsig_secret.is_some() {
                return Err(ConfigError::invalid(
                    format!("{field}.rfc2136.tsig_secret"),
                    "set both tsig_key and tsig_secret, or neither",
                ));
            }
        }
        if let Some(p) = &self.exec {
            if !p.program.is_absolute() {
                return Err(ConfigError::invalid(format!("{field}.exec.program"), "must be an absolute path"));
            }
        }
        if let Some(p) = &self.httpreq {
            if !p.endpoint.starts_with("http://") && !p.endpoint.starts_with("https://") {
                return Err(ConfigError::invalid(format!("{field}.httpreq.endpoint"), "must be an http(s):// URL"));
            }
        }
        if let Some(p) = &self.acme_dns {
            if !p.api_base.starts_with("http://") && !p.api_base.starts_with("https://") {
                return Err(ConfigError::invalid(format!("{field}.acme_dns.api_base"), "must be an http(s):// URL"));
            }
        }
        if self.cloudflare.as_ref().is_some_and(|p| p.api_token.is_none()) {
            return Err(missing("cloudflare.api_token"));
        }
        if let Some(p) = &self.route53 {
            if p.access_key_id.is_none() {
                return Err(missing("route53.access_key_id"));
            }
            if p.secret_access_key.is_none() {
                return Err(missing("route53.secret_access_key"));
            }
        }
        if self.digitalocean.as_ref().is_some_and(|p| p.auth_token.is_none()) {
            return Err(missing("digitalocean.auth_token"));
        }
        Ok(())
    }
}

/// `value` from itself, else `file`, else `$env`, else the file `$env_FILE`.
fn secret(field: &str, value: &mut Option<String>, file: &Option<PathBuf>, env: &str) -> Result<(), ConfigError> {
    let read = |path: &std::path::Path, field: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| ConfigError::invalid(field, format!("{}: {e}", path.display())))
    };
    if let Some(file) = file {
        if value.is_some() {
            return Err(ConfigError::invalid(format!("{field}_file"), "set either the secret or its _file, not both"));
        }
        *value = Some(read(file, &format!("{field}_file"))?);
        return Ok(());
    }
    if value.is_some() {
        return Ok(());
    }
    if let Ok(v) = std::env::var(env) {
        *value = Some(v.trim().to_owned());
    } else if let Ok(path) = std::env::var(format!("{env}_FILE")) {
        *value = Some(read(std::path::Path::new(&path), &format!("{env}_FILE"))?);
    }
    Ok(())
}
