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

fn default_grace() -> u64 {
    86_400
}

impl Discover {
    /// The allow/deny policy; `wildcards` when the resolver has DNS-01.
    pub fn policy(&self, wildcards: bool) -> Result<Policy, ConfigError> {
        let parse = |field: &str, list: &[String]| -> Result<Vec<Pattern>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Pattern::parse(p).map_err(|e| ConfigError::invalid(format!("discover.{field}[{i}]"), e.why))
                })
                .collect()
        };
        Ok(Policy {
            allow: parse("allow", &self.allow)?,
            deny: parse("deny", &self.deny)?,
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
        self.policy(resolver.dns_challenge.is_some()).map(drop)
    }
}
