//! `[post_deploy]`: the operator's program, run after a newly issued
//! certificate is stored and deployed, for proxies that read files (HAProxy,
//! Apache) or anything else. It gets the certificate in `PROXY_ACME_*`
//! environment variables; it runs without a shell and within a time limit.

use std::path::Path;
use std::time::Duration;

use super::settings::PostDeploy;
use crate::cert::CertInfo;
use crate::process::{self as command, CommandError};

/// The environment a hook sees for certificate `name`, whose PEM files are
/// in `live_dir` (`cert.pem`, `chain.pem`, `fullchain.pem`, `privkey.pem`).
pub fn environment(name: &str, domains: &[String], info: &CertInfo, live_dir: &Path) -> Vec<(&'static str, String)> {
    let file = |f: &str| live_dir.join(f).display().to_string();
    let not_after = time::OffsetDateTime::from(info.not_after)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    vec![
        ("PROXY_ACME_NAME", name.to_owned()),
        ("PROXY_ACME_DOMAINS", domains.join(" ")),
        ("PROXY_ACME_SERIAL", info.serial_hex.clone()),
        ("PROXY_ACME_NOT_AFTER", not_after),
        ("PROXY_ACME_CERT_DIR", live_dir.display().to_string()),
        ("PROXY_ACME_CERT", file("cert.pem")),
        ("PROXY_ACME_CHAIN", file("chain.pem")),
        ("PROXY_ACME_FULLCHAIN", file("fullchain.pem")),
        ("PROXY_ACME_PRIVKEY", file("privkey.pem")),
    ]
}

/// Runs the hook; its output is logged, a failure is returned.
pub async fn run(hook: &PostDeploy, env: &[(&str, String)]) -> Result<(), CommandError> {
    let output = command::run(&hook.command, env, Duration::from_secs(hook.timeout_secs)).await?;
    if !output.is_empty() {
        tracing::info!(output, "post_deploy hook output");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hook_sees_the_certificate_and_fails_loudly() {
        let bundle = crate::cert::placeholder(&["a.example".to_owned(), "b.example".to_owned()]).unwrap();
        let info = crate::cert::inspect(&bundle, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let env = environment("web", &["a.example".into(), "b.example".into()], &info, Path::new("/x/web/live"));
        let script = format!(
            "echo \"$PROXY_ACME_NAME|$PROXY_ACME_DOMAINS|$PROXY_ACME_PRIVKEY|$PROXY_ACME_SERIAL\" > {}",
            out.display()
        );
        let hook = PostDeploy { command: vec!["sh".into(), "-c".into(), script], timeout_secs: 5 };
        run(&hook, &env).await.unwrap();
        let seen = std::fs::read_to_string(&out).unwrap();
        assert_eq!(seen.trim(), format!("web|a.example b.example|/x/web/live/privkey.pem|{}", info.serial_hex));

        let failing =
            PostDeploy { command: vec!["sh".into(), "-c".into(), "echo broken >&2; exit 3".into()], timeout_secs: 5 };
        let err = run(&failing, &env).await.unwrap_err().to_string();
        assert!(err.contains("broken") && err.contains('3'), "{err}");
        let slow = PostDeploy { command: vec!["sleep".into(), "5".into()], timeout_secs: 1 };
        assert!(matches!(run(&slow, &env).await, Err(CommandError::Timeout { .. })));
    }
}
