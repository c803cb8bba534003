//! Operator commands besides `run`: they ask the running daemon over the
//! admin socket, and work on the store directly when it is not running
//! (except `renew`, which needs the daemon to answer the CA's challenges).

use std::fmt::Write;

use http::Method;

use super::CommandError;
use crate::cert;
use crate::config::Config;
use crate::schedule::{self, rfc3339};
use crate::serve::admin::{self, CertStatus, ClientError};
use crate::store;

/// `proxy-acme certs`: one block per certificate.
pub async fn certs(config: &Config) -> Result<(), CommandError> {
    let statuses = match daemon(config, Method::GET, "/v1/certificates").await {
        Ok(Some(json)) => serde_json::from_str::<Vec<CertStatus>>(&json)?,
        Ok(None) => offline_statuses(config).await?,
        Err(e) => return Err(e.into()),
    };
    print!("{}", render(&statuses));
    Ok(())
}

fn render(statuses: &[CertStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let _ = writeln!(out, "{}", s.name);
        let _ = writeln!(out, "  domains:   {}", s.domains.join(", "));
        let _ = writeln!(out, "  resolver:  {}", s.resolver);
        let _ = writeln!(out, "  serial:    {}", s.serial.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "  not after: {}", s.not_after.as_deref().unwrap_or("-"));
        if let Some(issued_by) = &s.issued_by {
            let _ = writeln!(out, "  issued by: {issued_by}");
        }
        let _ = writeln!(out, "  state:     {}", s.state);
        if let Some(why) = &s.fallback {
            let _ = writeln!(out, "  fallback:  {why}");
        }
        if let Some(error) = &s.last_error {
            let _ = writeln!(out, "  last error: {error}");
        }
    }
    out
}

async fn offline_statuses(config: &Config) -> Result<Vec<CertStatus>, CommandError> {
    let store = store::open(&config.storage).await?.store;
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for c in &config.managed() {
        let stored = store.load_certificate(&c.name).await?;
        let info = stored.as_ref().and_then(|b| cert::inspect(b, None).ok());
        let revoked = store.revoked(&c.name).await?;
        let renew_before = config.resolvers.get(&c.resolver).and_then(|r| r.renew_before.as_ref());
        let state = match (&info, revoked) {
            (_, Some(serial)) => format!("revoked ({serial}); `proxy-acme renew {} --force` orders a new one", c.name),
            (None, None) => "not issued yet".to_owned(),
            (Some(info), None) => {
                let (at, why) = schedule::renew_time(info.not_before, info.not_after, renew_before);
                let when = if at <= now { "due now".to_owned() } else { format!("renew at {}", rfc3339(at)) };
                format!("{when} ({why}); daemon not running")
            }
        };
        out.push(CertStatus {
            name: c.name.clone(),
            domains: c.domains.clone(),
            resolver: c.resolvers.join(", "),
            serial: info.as_ref().map(|i| i.serial_hex.clone()),
            not_after: info.as_ref().map(|i| rfc3339(i.not_after)),
            state,
            last_error: None,
            issued_by: match (&info, c.resolvers.len()) {
                (None, _) => None,
                (Some(_), 1) => Some(c.resolver.clone()),
                (Some(_), _) => store.load_issuer(&c.name).await?.or_else(|| Some(c.resolver.clone())),
            },
            fallback: None,
        });
    }
    Ok(out)
}

/// `proxy-acme renew NAME [--force]`: only the running daemon can renew.
/// With `dry_run`, an order at the staging directory that keeps nothing.
pub async fn renew(config: &Config, name: &str, force: bool, dry_run: bool) -> Result<(), CommandError> {
    let query = match (force, dry_run) {
        (_, true) => "?dry_run=true",
        (true, false) => "?force=true",
        (false, false) => "",
    };
    let path = format!("/v1/certificates/{name}/renew{query}");
    match daemon(config, Method::POST, &path).await? {
        Some(answer) => {
            println!("{answer}");
            Ok(())
        }
        None => Err(CommandError::NotRunning),
    }
}

/// `proxy-acme revoke NAME [--reason N]`.
pub async fn revoke(config: &Config, name: &str, reason: Option<u8>) -> Result<(), CommandError> {
    let path = match reason {
        Some(r) => format!("/v1/certificates/{name}/revoke?reason={r}"),
        None => format!("/v1/certificates/{name}/revoke"),
    };
    if let Some(answer) = daemon(config, Method::POST, &path).await? {
        println!("{answer}");
        return Ok(());
    }
    let managed = config.managed();
    let c = managed.iter().find(|c| c.name == name).ok_or_else(|| CommandError::UnknownCertificate(name.to_owned()))?;
    let resolver = &config.resolvers[&c.resolver];
    let store = store::open(&config.storage).await?.store;
    let bundle = store.load_certificate(name).await?.ok_or_else(|| CommandError::NothingStored(name.to_owned()))?;
    let serial = cert::inspect(&bundle, None)?.serial_hex;
    let account = crate::acme::account(store.as_ref(), &c.resolver, resolver).await?;
    crate::acme::revoke(&account, &bundle, reason).await?;
    store.mark_revoked(name, &serial).await?;
    println!("revoked {name} (serial {serial}); it will not be deployed again");
    Ok(())
}

/// `proxy-acme account rollover RESOLVER`.
pub async fn rollover(config: &Config, resolver_name: &str) -> Result<(), CommandError> {
    let path = format!("/v1/accounts/{resolver_name}/rollover");
    if let Some(answer) = daemon(config, Method::POST, &path).await? {
        println!("{answer}");
        return Ok(());
    }
    let resolver =
        config.resolvers.get(resolver_name).ok_or_else(|| CommandError::UnknownResolver(resolver_name.to_owned()))?;
    let store = store::open(&config.storage).await?.store;
    let id = crate::acme::rollover(store.as_ref(), resolver_name, resolver).await?;
    println!("rolled over the key of {id}");
    Ok(())
}

/// `proxy-acme reload`: the running daemon reads its file again (as on
/// SIGHUP) and says what changed, or why it refused the file.
pub async fn reload(config: &Config) -> Result<(), CommandError> {
    match daemon(config, Method::POST, "/v1/reload").await? {
        Some(answer) => {
            println!("{answer}");
            Ok(())
        }
        None => Err(CommandError::NotRunning),
    }
}

/// Asks the daemon; `Ok(None)` when it is not running.
async fn daemon(config: &Config, method: Method, path: &str) -> Result<Option<String>, ClientError> {
    let answer = match (config.admin.socket(), config.admin.address, config.admin.token.as_deref()) {
        (Some(socket), _, _) => admin::call(socket, method, path).await,
        (None, Some(address), Some(token)) => admin::call_tcp(address, token, method, path).await,
        _ => return Ok(None),
    };
    match answer {
        Ok(body) => Ok(Some(body)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
