//! Configuration of the file-based targets: PEM files for nginx with checked,
//! coalesced reloads, and a post-deploy hook for any other program.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[nginx]`: PEM files per certificate and a checked reload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nginx {
    /// Where `<name>/live/{fullchain,privkey,chain,cert}.pem` are written.
    pub directory: PathBuf,
    /// nginx's master pid file; the reload is a SIGHUP to that pid.
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// `false`: only write the files; `proxy-acme watch` beside nginx (or
    /// anything else) reloads it.
    #[serde(default = "default_true")]
    pub reload: bool,
    /// Reload with this command (argv, no shell) instead of the pid file.
    #[serde(default)]
    pub reload_command: Option<Vec<String>>,
    /// Runs before every reload; a failure means no reload (argv, no shell;
    /// `[]` disables the check).
    #[serde(default = "default_check_command")]
    pub check_command: Vec<String>,
    /// Changes within this many milliseconds share one reload.
    #[serde(default = "default_reload_delay_ms")]
    pub reload_delay_ms: u64,
    /// After a failed check, try the same files again this many seconds later.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
    /// Longest a check or reload command may run.
    #[serde(default = "default_command_timeout_secs")]
    pub command_timeout_secs: u64,
}

fn default_true() -> bool {
    true
}
fn default_pid_file() -> PathBuf {
    PathBuf::from("/run/nginx.pid")
}
fn default_check_command() -> Vec<String> {
    ["nginx", "-t", "-q"].map(String::from).to_vec()
}
fn default_reload_delay_ms() -> u64 {
    1000
}
fn default_retry_secs() -> u64 {
    60
}
fn default_command_timeout_secs() -> u64 {
    30
}

/// `[post_deploy]`: a program run after each newly issued certificate is
/// stored and deployed (HAProxy, Apache, a copy to another host, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostDeploy {
    /// argv, no shell; the certificate is described in `PROXY_ACME_*`
    /// environment variables.
    pub command: Vec<String>,
    #[serde(default = "default_command_timeout_secs")]
    pub timeout_secs: u64,
}

pub(super) fn validate_nginx(nginx: &Nginx) -> Result<(), ConfigError> {
    if nginx.directory.as_os_str().is_empty() || !nginx.directory.is_absolute() {
        return Err(ConfigError::invalid("nginx.directory", "must be an absolute path"));
    }
    if let Some(command) = &nginx.reload_command {
        check_argv("nginx.reload_command", command)?;
    }
    if !nginx.check_command.is_empty() {
        check_argv("nginx.check_command", &nginx.check_command)?;
    }
    if nginx.reload_delay_ms > 60_000 {
        return Err(ConfigError::invalid("nginx.reload_delay_ms", "must be at most 60000"));
    }
    if nginx.retry_secs == 0 || nginx.command_timeout_secs == 0 {
        let field = if nginx.retry_secs == 0 { "nginx.retry_secs" } else { "nginx.command_timeout_secs" };
        return Err(ConfigError::invalid(field, "must be positive"));
    }
    Ok(())
}

pub(super) fn validate_post_deploy(hook: &PostDeploy) -> Result<(), ConfigError> {
    check_argv("post_deploy.command", &hook.command)?;
    if hook.timeout_secs == 0 {
        return Err(ConfigError::invalid("post_deploy.timeout_secs", "must be positive"));
    }
    Ok(())
}

fn check_argv(field: &str, argv: &[String]) -> Result<(), ConfigError> {
    match argv.first() {
        None => Err(ConfigError::invalid(field, "must name a program")),
        Some(program) if program.trim().is_empty() => Err(ConfigError::invalid(field, "the program name is empty")),
        Some(_) => Ok(()),
    }
}
