//! Validation of the file-based targets' settings (defined by `deploy`):
//! PEM files for nginx with checked reloads, and the post-deploy hook.

use super::ConfigError;
use crate::deploy::settings::{Nginx, PostDeploy};

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
