//! `[served_check]` (settings defined by [`crate::serve::served`]), validated.

use super::ConfigError;
use crate::serve::served::ServedCheck;

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
