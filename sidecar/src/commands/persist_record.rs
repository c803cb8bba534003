//! `proxy-acme dns-persist-record NAME`: the TXT records an operator
//! creates once so that certificate NAME is proven by dns-persist-01. The
//! account is the one the daemon uses (loaded from the same store, or
//! registered there now), so the records name the account that will order.

use super::CommandError;
use crate::config::Config;
use crate::dns::persist;
use crate::store;

/// The records for certificate `name`, zone-file lines (without TTL): for
/// each of its resolvers with `dns_persist` (with issuer fallback, one
/// record per CA at the same name; the draft lets several coexist).
pub async fn records(config: &Config, name: &str) -> Result<Vec<String>, CommandError> {
    let managed = config.managed();
    let c = managed.iter().find(|c| c.name == name).ok_or_else(|| CommandError::UnknownCertificate(name.to_owned()))?;
    let store = store::open(&config.storage).await?.store;
    let mut lines = Vec::new();
    for resolver_name in &c.resolvers {
        let resolver =
            config.resolvers.get(resolver_name).ok_or_else(|| CommandError::UnknownResolver(resolver_name.clone()))?;
        let Some(settings) = resolver.dns_persist.as_ref() else { continue };
        let account = crate::acme::account(store.as_ref(), resolver_name, resolver).await?;
        let issuer = match settings.issuer() {
            Some(issuer) => issuer,
            None => {
                let directory = crate::acme::directory(resolver, &resolver.ca_server).await?;
                first_caa_identity(&directory).ok_or_else(|| CommandError::NoIssuerDomain(resolver_name.clone()))?
            }
        };
        tracing::info!(certificate = name, resolver = %resolver_name, account = account.id(), issuer, "dns-persist-01 records");
        lines.extend(persist::records_for(&c.domains, &issuer, account.id(), settings.wildcard_policy()));
    }
    if lines.is_empty() {
        return Err(CommandError::NoDnsPersist(c.resolver.clone()));
    }
    Ok(lines)
}

/// The first of the directory's `meta.caaIdentities` (RFC 8555 §7.1.1),
/// the CA's issuer domain names, lower case.
pub(crate) fn first_caa_identity(directory: &serde_json::Value) -> Option<String> {
    let first = directory.get("meta")?.get("caaIdentities")?.as_array()?.first()?.as_str()?;
    let first = first.trim().trim_end_matches('.').to_ascii_lowercase();
    (!first.is_empty()).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_comes_from_the_directorys_caa_identities() {
        let directory = serde_json::json!({"newNonce": "x", "meta": {"caaIdentities": ["CA.Example.", "b"]}});
        assert_eq!(first_caa_identity(&directory).as_deref(), Some("ca.example"));
        assert_eq!(first_caa_identity(&serde_json::json!({"meta": {}})), None);
        assert_eq!(first_caa_identity(&serde_json::json!({"meta": {"caaIdentities": []}})), None);
    }
}
