//! `proxy-acme check --online`: what `check` cannot see without the
//! network and the disk. One line per check, `ok` or `FAIL` with the reason;
//! any `FAIL` makes the command exit 1.
//!
//! - each resolver's CA: the directory answers, over TLS this resolver
//!   trusts (its `ca_certificate`, else the platform's roots), through the
//!   egress proxy if one is set; EAB given when the CA requires it; the
//!   `profile` offered; ARI, informational;
//! - the staging directory `renew --dry-run` uses, when it is another one;
//! - the store: opened and written (`Store::health`);
//! - the sockets' directories: they exist and can be written.
//!
//! - each DNS provider, read-only, for the zones its certificates need
//!   (where the provider has such a call; a write would change the zone);
//! - dns-persist-01: for each certificate of a resolver with `dns_persist`,
//!   whether every nameserver answers the record proving its names for the
//!   stored account, looked at once; a `FAIL` names the record to create.

use std::path::Path;

use crate::config::{Config, Resolver};
use crate::dns::DnsPersist;

/// One check's outcome, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:4} {}: {}", if self.ok { "ok" } else { "FAIL" }, self.what, self.detail)
    }
}

fn line(ok: bool, what: impl Into<String>, detail: impl Into<String>) -> Line {
    Line { ok, what: what.into(), detail: detail.into() }
}

/// The longest a provider's read-only call may take.
const ONLINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every check, in order.
pub async fn check(config: &Config) -> Vec<Line> {
    crate::egress::configure(&config.network);
    let mut lines = Vec::new();
    let opened = crate::store::open(&config.storage).await.map(|o| o.store);
    for (name, resolver) in &config.resolvers {
        lines.extend(ca(name, resolver).await);
        if let Some(dns) = &resolver.dns_challenge {
            let domains =
                config.certificates.iter().filter(|c| c.resolvers.contains(name)).flat_map(|c| c.domains.iter());
            lines.extend(dns_provider(name, dns, domains).await);
        }
        if let Some(settings) = &resolver.dns_persist {
            lines.extend(dns_persist(config, opened.as_deref().ok(), name, resolver, settings).await);
        }
    }
    lines.push(match &opened {
        Ok(store) => match store.health().await {
            Ok(()) => line(true, "store", "opened and written"),
            Err(e) => line(false, "store", e.to_string()),
        },
        Err(e) => line(false, "store", e.to_string()),
    });
    if let Some(socket) = &config.envoy.sds_socket {
        lines.push(socket_dir("envoy.sds_socket", socket));
    }
    if let Some(socket) = config.admin.socket() {
        lines.push(socket_dir("admin.socket", socket));
    }
    lines
}

/// The resolver's DNS provider: a read-only call per zone its certificates'
/// names need (the credentials are accepted, the zone is found), or a line
/// saying the provider has none.
async fn dns_provider<'a>(
    name: &str,
    dns: &crate::dns::DnsChallenge,
    domains: impl Iterator<Item = &'a String>,
) -> Vec<Line> {
    let what = format!("dns:{name}");
    let provider = dns.provider_name();
    let solver = match crate::dns::build(dns) {
        Ok(solver) => solver,
        Err(e) => return vec![line(false, what, e.to_string())],
    };
    let mut lines = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for domain in domains {
        let record = crate::dns::TxtRecord::new(domain, "", 0);
        if !seen.insert(record.fqdn.clone()) {
            continue;
        }
        let call = tokio::time::timeout(ONLINE_TIMEOUT, solver.provider.verify(&record.fqdn)).await;
        lines.push(match call {
            Ok(Ok(Some(zone))) => {
                line(true, &what, format!("{provider}: credentials accepted; {} is in zone {zone}", record.fqdn))
            }
            Ok(Ok(None)) => {
                return vec![line(
                    true,
                    what,
                    format!("{provider}: credentials not tried (no read-only call; `renew --dry-run` tries them)"),
                )]
            }
            Ok(Err(e)) => line(false, &what, format!("{}: {e}", record.fqdn)),
            Err(_) => line(false, &what, format!("{provider}: no answer within {}s", ONLINE_TIMEOUT.as_secs())),
        });
    }
    if lines.is_empty() {
        lines.push(line(true, what, format!("{provider}: no certificate uses this resolver; nothing to look up")));
    }
    lines
}

/// dns-persist-01: the records the operator made, looked at once for each
/// certificate of resolver `name`, for the account stored for it (none
/// stored: said, with the command that registers it and prints them).
/// `store` is `None` when it did not open (its own line says why).
async fn dns_persist(
    config: &Config,
    store: Option<&dyn crate::store::Store>,
    name: &str,
    resolver: &Resolver,
    settings: &DnsPersist,
) -> Vec<Line> {
    let what = format!("dns-persist:{name}");
    let certificates: Vec<_> = config.certificates.iter().filter(|c| c.resolvers.iter().any(|r| r == name)).collect();
    let Some(first) = certificates.first() else {
        return vec![line(true, what, "no certificate uses this resolver; nothing to look up")];
    };
    let Some(store) = store else {
        return vec![line(false, what, "cannot read the account: the store did not open (see `store`)")];
    };
    let account = match crate::acme::stored_account_uri(store, name, resolver).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            let advice = format!(
                "no account stored for {} yet: `proxy-acme dns-persist-record {}` registers it and prints the records \
                 to create",
                resolver.ca_server, first.name
            );
            return vec![line(false, what, advice)];
        }
        Err(e) => return vec![line(false, what, format!("cannot read the account: {e}"))],
    };
    let issuer = match settings.issuer() {
        Some(issuer) => issuer,
        None => match crate::acme::directory(resolver, &resolver.ca_server).await {
            Ok(directory) => match super::persist_record::first_caa_identity(&directory) {
                Some(issuer) => issuer,
                None => {
                    let advice = "the CA's directory names no caaIdentities: set `dns_persist.issuer_domain`";
                    return vec![line(false, what, advice)];
                }
            },
            Err(e) => return vec![line(false, what, e.to_string())],
        },
    };
    let mut lines = Vec::new();
    for c in certificates {
        if c.domains.iter().all(|d| crate::solvers::is_ip(d)) {
            continue; // an IP address has no record to look at
        }
        let look = crate::solvers::dns_persist::look_once(settings, &c.domains, &issuer, &account);
        lines.push(match tokio::time::timeout(ONLINE_TIMEOUT, look).await {
            Ok(Ok(())) => line(true, &what, format!("{}: every nameserver has the record for {account}", c.name)),
            Ok(Err(e)) => line(false, &what, format!("{}: {e}", c.name)),
            Err(_) => line(false, &what, format!("{}: no answer within {}s", c.name, ONLINE_TIMEOUT.as_secs())),
        });
    }
    lines
}

/// The CA's directory and what it says about this resolver's settings.
async fn ca(name: &str, resolver: &Resolver) -> Vec<Line> {
    let what = format!("ca:{name}");
    let directory = match crate::acme::directory(resolver, &resolver.ca_server).await {
        Ok(directory) => directory,
        Err(e) => return vec![line(false, what, e.to_string())],
    };
    let meta = directory.get("meta");
    let mut lines = vec![line(true, what.clone(), format!("{} answers", resolver.ca_server))];
    let eab_required = meta.and_then(|m| m.get("externalAccountRequired")).and_then(|v| v.as_bool()) == Some(true);
    if eab_required && resolver.eab.is_none() {
        lines.push(line(
            false,
            what.clone(),
            format!("the CA requires external account binding: set [resolvers.{name}.eab] kid and hmac_key"),
        ));
    }
    if let Some(profile) = &resolver.profile {
        let offered = meta.and_then(|m| m.get("profiles")).and_then(|p| p.as_object());
        let known = offered.is_some_and(|p| p.contains_key(profile));
        if !known {
            let names: Vec<&str> = offered.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
            lines.push(line(
                false,
                what.clone(),
                format!("profile '{profile}' is not offered (offered: {})", names.join(", ")),
            ));
        }
    }
    let ari = if directory.get("renewalInfo").is_some() { "yes" } else { "no (the lifetime rule decides)" };
    lines.push(line(true, what.clone(), format!("renewal information (ARI): {ari}")));
    let staging = resolver.staging_directory();
    if staging != resolver.ca_server {
        lines.push(match crate::acme::directory(resolver, staging).await {
            Ok(_) => line(true, what, format!("staging directory {staging} answers (for renew --dry-run)")),
            Err(e) => line(false, what, format!("staging directory: {e}")),
        });
    }
    lines
}

/// The directory a socket goes in exists and can be written.
fn socket_dir(field: &str, socket: &Path) -> Line {
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = dir.join(format!(".proxy-acme-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            line(true, field, format!("{} can be created", socket.display()))
        }
        Err(e) => line(false, field, format!("cannot create files in {}: {e}", dir.display())),
    }
}
