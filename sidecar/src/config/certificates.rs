//! `[[certificates]]`, validated: names that can become directories and SDS
//! secret names, identifiers a CA can issue for, and each name in one
//! certificate only unless `allow_shared_domains` says otherwise.

use std::collections::BTreeMap;

use super::{Certificate, ConfigError, Resolver};
use crate::names::{self, Identifier};

/// Let's Encrypt's limit of names (identifiers) in one order.
pub const MAX_NAMES: usize = 100;

pub(super) fn validate(
    certificates: &[Certificate],
    resolvers: &BTreeMap<String, Resolver>,
    allow_shared_domains: bool,
) -> Result<(), ConfigError> {
    let mut names_seen = BTreeMap::new();
    // Normalised domain -> the first certificate that has it.
    let mut domains_seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, cert) in certificates.iter().enumerate() {
        let field = format!("certificates[{i}]");
        validate_certificate_name(&format!("{field}.name"), &cert.name)?;
        if let Some(first) = names_seen.insert(cert.name.as_str(), i) {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                format!("'{}' is already used by certificates[{first}]", cert.name),
            ));
        }
        if cert.domains.is_empty() {
            return Err(ConfigError::invalid(format!("{field}.domains"), "must name at least one domain"));
        }
        if cert.domains.len() > MAX_NAMES {
            return Err(ConfigError::invalid(
                format!("{field}.domains"),
                format!(
                    "has {} names; a certificate may have at most {MAX_NAMES} (Let's Encrypt's limit): split it",
                    cert.domains.len()
                ),
            ));
        }
        // A wildcard needs DNS-01 (or dns-persist-01) at every resolver it
        // may be ordered from.
        let without_dns = cert.resolvers.iter().find(|r| resolvers.get(*r).is_some_and(|r| !r.proves_wildcards()));
        for (j, domain) in cert.domains.iter().enumerate() {
            let field = format!("{field}.domains[{j}]");
            match names::classify(domain) {
                Err(why) => return Err(ConfigError::invalid(field, format!("'{domain}' {why}"))),
                Ok(Identifier::Dns) if domain.starts_with("*.") && without_dns.is_some() => {
                    return Err(ConfigError::invalid(
                        field,
                        format!(
                            "'{domain}' is a wildcard, which needs DNS-01 or dns-persist-01: give resolver '{}' a \
                             dns_challenge or dns_persist",
                            without_dns.map_or("", String::as_str)
                        ),
                    ));
                }
                Ok(_) => {}
            }
            let name = names::normalize_name(domain);
            if let Some(l) = cert.domains[..j].iter().position(|d| names::normalize_name(d) == name) {
                return Err(ConfigError::invalid(field, format!("'{domain}' is listed twice (also domains[{l}])")));
            }
            match domains_seen.get(&name) {
                Some(&k) if !allow_shared_domains => {
                    return Err(ConfigError::invalid(
                        field,
                        format!(
                            "'{domain}' is already in certificates[{k}]; to order it in both, set \
                             allow_shared_domains = true at the top of the file"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    domains_seen.insert(name, i);
                }
            }
        }
        for (k, key_type) in cert.key_types.iter().enumerate() {
            if let Some(first) = cert.key_types[..k].iter().position(|t| t == key_type) {
                return Err(ConfigError::invalid(
                    format!("{field}.key_types[{k}]"),
                    format!("'{}' is listed twice (also key_types[{first}])", key_type.name()),
                ));
            }
        }
        for sibling in cert.per_key_type().iter().skip(1) {
            validate_certificate_name(&format!("{field}.key_types"), &sibling.name)?;
            if let Some(other) = certificates.iter().position(|c| c.name == sibling.name) {
                return Err(ConfigError::invalid(
                    format!("{field}.key_types"),
                    format!(
                        "makes a certificate '{}' for its second key type, which is already certificates[{other}]'s name",
                        sibling.name
                    ),
                ));
            }
        }
        for (k, name) in cert.resolvers.iter().enumerate() {
            if !resolvers.contains_key(name) {
                let known: Vec<&str> = resolvers.keys().map(String::as_str).collect();
                let at = if cert.resolvers.len() == 1 { ".resolver".to_owned() } else { format!(".resolvers[{k}]") };
                return Err(ConfigError::invalid(
                    format!("{field}{at}"),
                    format!("no resolver named '{name}' (known: {})", known.join(", ")),
                ));
            }
        }
        if cert.fallback.after_failures == 0 {
            return Err(ConfigError::invalid(format!("{field}.fallback.after_failures"), "must be at least 1"));
        }
    }
    Ok(())
}

/// Certificate names become directory names and SDS secret names.
fn validate_certificate_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 128 || !ok_chars || name.starts_with('.') {
        return Err(ConfigError::invalid(
            field,
            format!("'{name}' must be 1-128 of letters, digits, '-', '_', '.', not starting with '.'"),
        ));
    }
    Ok(())
}
