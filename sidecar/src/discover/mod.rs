//! Names from the proxy's own configuration, as Traefik's `onHostRule`: each
//! Envoy virtual host (or nginx TLS `server` block) becomes one certificate
//! request, its first name the main one and the others SANs. Pure: the
//! sources are parsed in [`envoy`] and [`nginx`], the policy is applied
//! here; fetching and ordering happen in the daemon.

pub mod envoy;
pub mod nginx;
mod policy;

pub use policy::{Pattern, PatternError, Policy};

use crate::names;

/// One certificate to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The certificate's name: the main domain (`*.` written `_.`).
    pub name: String,
    pub domains: Vec<String>,
}

/// A name left out, and why (logged once).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub name: String,
    pub why: String,
}

/// What a name found in a route or `server_name` becomes: `Ok(None)` for a
/// name to leave out silently (an empty one), `Err` for one to report.
fn clean(raw: &str, policy: &Policy) -> Result<Option<Vec<String>>, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw == "_" {
        return Ok(None);
    }
    if raw == "*" {
        return Err("a catch-all matches any name; no certificate can cover it".into());
    }
    if raw.starts_with('~') {
        return Err("a regular expression names no host to order for".into());
    }
    // nginx: `.example.com` is `example.com` and `*.example.com`.
    if let Some(base) = raw.strip_prefix('.') {
        let mut both = clean(base, policy)?.unwrap_or_default();
        both.extend(clean(&format!("*.{base}"), policy)?.unwrap_or_default());
        return Ok(Some(both));
    }
    if raw.chars().skip(1).any(|c| c == '*') {
        return Err("only a leading `*.` wildcard can be issued".into());
    }
    let Some(host) = names::normalize_host(raw).or_else(|| {
        // normalize_host refuses wildcards; check the base instead.
        raw.strip_prefix("*.")
            .and_then(names::normalize_host)
            .filter(|base| !base.contains(':') && base.parse::<std::net::IpAddr>().is_err())
            .map(|base| format!("*.{base}"))
    }) else {
        let why = names::validate_dns_name(&raw.to_ascii_lowercase()).err().unwrap_or("is not a host name");
        return Err(format!("'{raw}' {why}"));
    };
    if host.parse::<std::net::IpAddr>().is_ok() && !policy.ip_addresses {
        return Err("an IP address (set discover.ip_addresses = true to order for IPs)".into());
    }
    if host.starts_with("*.") && !policy.wildcards {
        return Err("a wildcard needs DNS-01: give the discover resolver a dns_challenge".into());
    }
    Ok(Some(vec![host]))
}

/// Applies the policy to what the sources found: one request per virtual
/// host or `server` block with at least one name left.
pub fn requests(found: &[Vec<String>], policy: &Policy) -> (Vec<Request>, Vec<Skipped>) {
    let mut requests: Vec<Request> = Vec::new();
    let mut skipped = Vec::new();
    for raw_names in found {
        let mut domains: Vec<String> = Vec::new();
        for raw in raw_names {
            match clean(raw, policy) {
                Ok(Some(hosts)) => {
                    for host in hosts {
                        if let Err(why) = policy.admits(&host) {
                            skipped.push(Skipped { name: host, why });
                        } else if !domains.contains(&host) {
                            domains.push(host);
                        }
                    }
                }
                Ok(None) => {}
                Err(why) => skipped.push(Skipped { name: raw.clone(), why }),
            }
        }
        let Some(main) = domains.first() else { continue };
        let name = main.replacen("*.", "_.", 1);
        if requests.iter().any(|r| r.name == name) {
            continue;
        }
        requests.push(Request { name, domains });
    }
    skipped.sort();
    skipped.dedup();
    (requests, skipped)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
