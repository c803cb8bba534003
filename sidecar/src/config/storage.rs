//! `[storage]` and `[storage.etcd]`: the settings the store defines
//! ([`crate::store::settings`]), their secrets read and validated here.

use super::ConfigError;
use crate::store::settings::{Etcd, Storage, StoreKind, ENCRYPTION_KEY_ENV};

impl Storage {
    /// Reads `password_file` and the encryption key (file or environment).
    pub(super) fn read_secrets(&mut self) -> Result<(), ConfigError> {
        let Some(etcd) = &mut self.etcd else { return Ok(()) };
        if let Some(file) = &etcd.password_file {
            if etcd.password.is_some() {
                return Err(ConfigError::invalid(
                    "storage.etcd.password_file",
                    "set either password or password_file, not both",
                ));
            }
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::invalid("storage.etcd.password_file", format!("{}: {e}", file.display())))?;
            etcd.password = Some(text.trim().to_owned());
        }
        let (field, text) = match &etcd.encryption_key_file {
            Some(file) => (
                "storage.etcd.encryption_key_file",
                std::fs::read_to_string(file).map_err(|e| {
                    ConfigError::invalid("storage.etcd.encryption_key_file", format!("{}: {e}", file.display()))
                })?,
            ),
            None => match std::env::var(ENCRYPTION_KEY_ENV) {
                Ok(text) => ("storage.etcd.encryption_key_file", text),
                Err(_) => return Ok(()),
            },
        };
        etcd.encryption_key = Some(parse_key(text.trim()).map_err(|why| ConfigError::invalid(field, why.to_string()))?);
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (self.store, &self.etcd) {
            (StoreKind::File, None) => Ok(()),
            (StoreKind::File, Some(_)) => Err(ConfigError::invalid(
                "storage.store",
                "[storage.etcd] is set but store is \"file\"; set store = \"etcd\" or remove [storage.etcd]",
            )),
            (StoreKind::Etcd, None) => {
                Err(ConfigError::invalid("storage.etcd", "required with store = \"etcd\" (at least endpoints)"))
            }
            (StoreKind::Etcd, Some(etcd)) => etcd.validate(),
        }
    }
}

impl Etcd {
    fn validate(&self) -> Result<(), ConfigError> {
        let field = |name: &str| format!("storage.etcd.{name}");
        if self.endpoints.is_empty() {
            return Err(ConfigError::invalid(
                field("endpoints"),
                "name at least one member, e.g. \"http://127.0.0.1:2379\"",
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !ok {
                return Err(ConfigError::invalid(
                    format!("storage.etcd.endpoints[{i}]"),
                    format!("'{endpoint}' must start with http:// or https://"),
                ));
            }
            if endpoint.starts_with("https://") && self.ca_file.is_none() {
                return Err(ConfigError::invalid(
                    field("ca_file"),
                    format!("required for the https endpoint '{endpoint}'"),
                ));
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            return Err(ConfigError::invalid(
                field("prefix"),
                format!("'{}' must start and end with '/'", self.prefix),
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::invalid(field("key_file"), "cert_file and key_file go together"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::invalid(
                field("password"),
                "username and password (or password_file) go together",
            ));
        }
        if self.encryption_key.is_none() {
            return Err(ConfigError::invalid(
                field("encryption_key_file"),
                format!(
                    "required (or the {ENCRYPTION_KEY_ENV} environment variable): private keys are encrypted before \
                     they reach etcd; make one with `head -c 32 /dev/urandom | base64`"
                ),
            ));
        }
        if !(3..=600).contains(&self.lock_ttl_secs) {
            return Err(ConfigError::invalid(field("lock_ttl_secs"), "must be 3-600 seconds"));
        }
        if !(1..=120).contains(&self.timeout_secs) {
            return Err(ConfigError::invalid(field("timeout_secs"), "must be 1-120 seconds"));
        }
        Ok(())
    }
}

/// Why an encryption key is unusable.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("not base64 ({0}); make one with `head -c 32 /dev/urandom | base64`")]
    Base64(base64::DecodeError),
    #[error("the key is {0} bytes; it must be 32 (`head -c 32 /dev/urandom | base64`)")]
    Length(usize),
}

/// A base64 key of exactly 32 bytes.
fn parse_key(text: &str) -> Result<[u8; 32], KeyError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(KeyError::Base64)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(parse_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(parse_key("AAAAAA==").unwrap_err().to_string().contains("4 bytes"));
        assert!(parse_key("not base64!").unwrap_err().to_string().contains("not base64"));
    }
}
