//! Settings of the file-based targets: PEM files for nginx with checked,
//! coalesced reloads, and a post-deploy hook for any other program.
//! `config` composes and validates them.

use std::path::PathBuf;

use serde::Deserialize;

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
