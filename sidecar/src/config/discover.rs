//! `[discover]`: certificates for the names in the proxy's own routes.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::discover::{Pattern, Policy};

/// Where to find names, and which may be ordered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    /// The resolver that orders discovered names.
    pub resolver: String,
    /// Envoy's admin address (`http://127.0.0.1:9901`): virtual hosts from `/config_dump`.
    #[serde(default)]
    pub envoy_admin: Option<String>,
    /// The command printing nginx's whole configuration (`["nginx", "-T"]`):
    /// `server_name`s of TLS server blocks.
    #[serde(default)]
    pub nginx_command: Option<Vec<String>>,
    /// Seconds between two looks.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Names that may be ordered: `a.example.com`, `.example.com` (every
    /// name under it), `~regex`. Empty: every name not denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names never ordered, same forms; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Order certificates for IP addresses found in routes (RFC 8738).
    #[serde(default)]
    pub ip_addresses: bool,
    /// A name gone from the routes is renewed for this long, then no more
    /// (its files are kept).
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    /// Envoy: write the HTTPS listener here (file LDS, `..data` swap) with one
    /// filter chain per certificate, from `listener_template`.
    #[serde(default)]
    pub listener_directory: Option<PathBuf>,
    /// The listener template (see docs/discovery.md); needed with `listener_directory`.
    #[serde(default)]
    pub listener_template: Option<PathBuf>,
}

fn default_interval() -> u64 {
    10
}

/// An allow or deny list; an entry that does not parse is `<field>[i]`'s error.
fn patterns(field: &str, list: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| Pattern::parse(p).map_err(|e| ConfigError::invalid(format!("{field}[{i}]"), e.why)))
        .collect()
}

fn default_grace() -> u64 {
    86_400
}

impl Discover {
    /// The allow/deny policy; `wildcards` when the resolver has DNS-01.
    pub fn policy(&self, wildcards: bool) -> Result<Policy, ConfigError> {
        Ok(Policy {
            allow: patterns("discover.allow", &self.allow)?,
            deny: patterns("discover.deny", &self.deny)?,
            ip_addresses: self.ip_addresses,
            wildcards,
        })
    }

    pub(super) fn validate(
        &self,
        resolvers: &std::collections::BTreeMap<String, super::Resolver>,
    ) -> Result<(), ConfigError> {
        let Some(resolver) = resolvers.get(&self.resolver) else {
            let known: Vec<&str> = resolvers.keys().map(String::as_str).collect();
            return Err(ConfigError::invalid(
                "discover.resolver",
                format!("no resolver named '{}' (known: {})", self.resolver, known.join(", ")),
            ));
        };
        if self.envoy_admin.is_none() && self.nginx_command.is_none() {
            return Err(ConfigError::invalid("discover", "set envoy_admin, nginx_command or both"));
        }
        if let Some(url) = &self.envoy_admin {
            if !url.starts_with("http://") || url.parse::<http::Uri>().is_err() {
                return Err(ConfigError::invalid("discover.envoy_admin", format!("'{url}' is not an http:// URL")));
            }
        }
        if let Some(command) = &self.nginx_command {
            if command.first().is_none_or(|p| p.is_empty()) {
                return Err(ConfigError::invalid("discover.nginx_command", "must name a program"));
            }
        }
        if self.interval_secs == 0 {
            return Err(ConfigError::invalid("discover.interval_secs", "must be at least 1"));
        }
        match (&self.listener_directory, &self.listener_template) {
            (Some(dir), Some(_)) if !dir.is_absolute() => {
                return Err(ConfigError::invalid("discover.listener_directory", "must be an absolute path"));
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid("discover.listener_template", "required with listener_directory"));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid("discover.listener_directory", "required with listener_template"));
            }
            _ => {}
        }
        self.policy(resolver.proves_wildcards()).map(drop)
    }
}

/// Certificates for hosts the Envoy filter reports (`on_demand: true` in its
/// configuration), only where the policy allows: an allow list, an `ask`
/// URL answering 200, and a global budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemand {
    /// The resolver that orders them.
    pub resolver: String,
    /// Names ordered without asking (same forms as `[discover] allow`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names never ordered; deny wins.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Asked `GET <ask>?domain=<host>` for names not on the allow list;
    /// 200 means order (as Caddy's `on_demand_tls ask`).
    #[serde(default)]
    pub ask: Option<String>,
    /// At most this many on-demand orders in any minute.
    #[serde(default = "default_orders_per_minute")]
    pub orders_per_minute: u32,
}

fn default_orders_per_minute() -> u32 {
    10
}

impl OnDemand {
    /// The allow/deny lists as a policy (no wildcards: a reported host is one name).
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        Ok(Policy {
            allow: patterns("on_demand.allow", &self.allow)?,
            deny: patterns("on_demand.deny", &self.deny)?,
            ip_addresses: false,
            wildcards: false,
        })
    }

    pub(super) fn validate(
        &self,
        resolvers: &std::collections::BTreeMap<String, super::Resolver>,
    ) -> Result<(), ConfigError> {
        if !resolvers.contains_key(&self.resolver) {
            let known: Vec<&str> = resolvers.keys().map(String::as_str).collect();
            return Err(ConfigError::invalid(
                "on_demand.resolver",
                format!("no resolver named '{}' (known: {})", self.resolver, known.join(", ")),
            ));
        }
        if self.allow.is_empty() && self.ask.is_none() {
            return Err(ConfigError::invalid(
                "on_demand",
                "set allow, ask or both: without a policy any Host a client sends would be ordered (a denial of service and a rate-limit drain)",
            ));
        }
        if let Some(url) = &self.ask {
            let valid = (url.starts_with("http://") || url.starts_with("https://")) && url.parse::<http::Uri>().is_ok();
            if !valid {
                return Err(ConfigError::invalid("on_demand.ask", format!("'{url}' is not an http(s):// URL")));
            }
        }
        if self.orders_per_minute == 0 {
            return Err(ConfigError::invalid("on_demand.orders_per_minute", "must be at least 1"));
        }
        self.policy().map(drop)
    }
}
