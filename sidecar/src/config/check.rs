//! `[served_check]`: where the proxy serves the certificates, so the sidecar
//! can look at what a TLS client is actually given.

use serde::Deserialize;

use super::ConfigError;

/// Connect to each endpoint with SNI = each name of each certificate and
/// compare the served certificate with the deployed one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedCheck {
    /// TLS endpoints, `host:port` (the proxy's HTTPS listeners).
    pub endpoints: Vec<String>,
    /// Seconds between two rounds.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Connect and handshake timeout per name, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_interval() -> u64 {
    60
}

fn default_timeout() -> u64 {
    3000
}

impl ServedCheck {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::invalid("served_check.endpoints", "must name at least one host:port"));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let valid = endpoint
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !valid {
                return Err(ConfigError::invalid(
                    format!("served_check.endpoints[{i}]"),
                    format!("'{endpoint}' is not host:port"),
                ));
            }
        }
        if self.interval_secs == 0 {
            return Err(ConfigError::invalid("served_check.interval_secs", "must be at least 1"));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::invalid("served_check.timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}
