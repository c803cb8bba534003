//! `exec`: the operator's program, with lego's argument convention:
//! `program present <fqdn> <value>` and `program cleanup <fqdn> <value>`,
//! the fqdn absolute with its final dot. No shell; killed after
//! `timeout_secs`; its output goes into the error when it fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::settings::{ProviderSettings, SettingsError};
use super::{DnsError, DnsProvider, TxtRecord};
use crate::process::{self as command, CommandError};

const PROVIDER: &str = "exec";

// === settings ===

/// `[dns_challenge.exec]`: a program called as
/// `program present|cleanup FQDN VALUE` (lego's `EXEC_PATH`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub program: PathBuf,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    60
}

impl ProviderSettings for Exec {
    const NAME: &'static str = PROVIDER;

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        if !self.program.is_absolute() {
            return Err(SettingsError::new(format!("{field}.program"), "must be an absolute path"));
        }
        Ok(())
    }

    fn build(&self, _ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        Ok(Arc::new(ExecProvider::new(self)))
    }
}

// === impl ExecProvider ===

#[derive(Debug)]
pub struct ExecProvider {
    program: String,
    timeout: Duration,
}

impl ExecProvider {
    pub fn new(config: &Exec) -> Self {
        Self { program: config.program.display().to_string(), timeout: Duration::from_secs(config.timeout_secs) }
    }

    async fn call(&self, action: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let argv = [self.program.clone(), action.to_owned(), record.fqdn.clone(), record.value.clone()];
        match command::run(&argv, &[], self.timeout).await {
            Ok(output) => {
                tracing::info!(provider = PROVIDER, action, fqdn = %record.fqdn, output, "program succeeded");
                Ok(())
            }
            Err(e @ CommandError::Spawn { .. }) => Err(DnsError::provider(PROVIDER, e.to_string(), false)),
            Err(e) => Err(DnsError::provider(PROVIDER, format!("{action}: {e}"), true)),
        }
    }
}

#[async_trait]
impl DnsProvider for ExecProvider {
    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.call("present", record).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.call("cleanup", record).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> Exec {
        let path = dir.join("dns.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Exec { program: path, timeout_secs: 2 }
    }

    #[tokio::test]
    async fn calls_the_program_with_legos_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let provider = ExecProvider::new(&script(dir.path(), &format!("echo \"$1|$2|$3|$#\" >> {}", log.display())));
        let record = TxtRecord::new("*.Example.com", "abc-123_x", 60);
        provider.present(&record).await.unwrap();
        provider.cleanup(&record).await.unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls,
            "present|_acme-challenge.example.com.|abc-123_x|3\ncleanup|_acme-challenge.example.com.|abc-123_x|3\n"
        );
    }

    #[tokio::test]
    async fn a_failure_or_a_hang_is_an_error_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let record = TxtRecord::new("example.com", "v", 60);
        let failing = ExecProvider::new(&script(dir.path(), "echo 'zone not found' >&2; exit 2"));
        let err = failing.present(&record).await.unwrap_err().to_string();
        assert!(err.contains("zone not found") && err.contains("present"), "{err}");
        let hanging = ExecProvider::new(&script(dir.path(), "sleep 10"));
        let err = hanging.present(&record).await.unwrap_err().to_string();
        assert!(err.contains("did not finish"), "{err}");
        let missing = ExecProvider::new(&Exec { program: dir.path().join("nope"), timeout_secs: 1 });
        assert!(!missing.present(&record).await.unwrap_err().is_retryable());
    }
}
