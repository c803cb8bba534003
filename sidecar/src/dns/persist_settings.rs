//! `dns_persist = { ... }` on a resolver: dns-persist-01 needs no DNS
//! provider and no credentials, only what to expect of the one record the
//! operator creates, and the same propagation check settings as
//! `[dns_challenge]` (its `resolvers`, `nameserver_port`, `timeout_secs`,
//! ...), which say where the record is looked for before the CA is told.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::persist::POLICY_WILDCARD;
use super::settings::DNS_PERSIST;
use super::{DnsChallenge, SettingsError};

/// The keys of the table, for the unknown-key error.
const KEYS: &str = "issuer_domain, policy, resolvers, delay_before_check_secs, timeout_secs, interval_secs, \
                    disable_checks, check_all_nameservers, nameserver_port";

/// dns-persist-01 for one resolver.
#[derive(Debug, Clone)]
pub struct DnsPersist {
    /// The CA's issuer domain name the record names (and `dns-persist-record`
    /// prints). Default: the first of the challenge's `issuer-domain-names`
    /// (for the command: the first of the directory's `caaIdentities`).
    pub issuer_domain: Option<String>,
    /// `policy = "wildcard"`: the record printed for every name carries
    /// `policy=wildcard` (it then also proves `*.<name>`). Records for
    /// wildcard names always do.
    pub policy: Option<String>,
    /// Where and how long the record is looked for (no provider).
    pub check: DnsChallenge,
}

impl Default for DnsPersist {
    fn default() -> Self {
        let mut check = DnsChallenge::default();
        check.table = DNS_PERSIST;
        Self { issuer_domain: None, policy: None, check }
    }
}

impl DnsPersist {
    /// Whether every record printed carries `policy=wildcard`.
    pub fn wildcard_policy(&self) -> bool {
        self.policy.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(POLICY_WILDCARD))
    }

    /// The configured issuer domain, lower case without a final dot.
    pub fn issuer(&self) -> Option<String> {
        self.issuer_domain.as_deref().map(|i| i.trim().trim_end_matches('.').to_ascii_lowercase())
    }

    /// Checks the settings; `field` is this table's path.
    pub fn validate(&self, field: &str) -> Result<(), SettingsError> {
        if let Some(issuer) = &self.issuer_domain {
            let name = issuer.trim().trim_end_matches('.').to_ascii_lowercase();
            if let Err(why) = crate::names::validate_dns_name(&name) {
                return Err(SettingsError::new(format!("{field}.issuer_domain"), format!("'{issuer}' {why}")));
            }
        }
        if let Some(policy) = self.policy.as_deref().filter(|p| !p.eq_ignore_ascii_case(POLICY_WILDCARD)) {
            return Err(SettingsError::new(
                format!("{field}.policy"),
                format!("'{policy}' is not a policy: the only one is \"{POLICY_WILDCARD}\""),
            ));
        }
        self.check.validate_check(field)
    }
}

impl<'de> Deserialize<'de> for DnsPersist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> Visitor<'de> for Fields {
            type Value = DnsPersist;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dns_persist table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DnsPersist, A::Error> {
                let mut out = DnsPersist::default();
                while let Some(key) = map.next_key::<String>()? {
                    if out.check.read_check_setting(&key, &mut map)? {
                        continue;
                    }
                    match key.as_str() {
                        "issuer_domain" => out.issuer_domain = Some(map.next_value()?),
                        "policy" => out.policy = Some(map.next_value()?),
                        other => {
                            map.next_value::<de::IgnoredAny>()?;
                            return Err(de::Error::custom(format!(
                                "unknown dns_persist setting '{other}'; settings: {KEYS} (dns-persist-01 needs no \
                                 DNS provider)"
                            )));
                        }
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DnsPersist, toml::de::Error> {
        #[derive(Deserialize)]
        struct Wrap {
            dns_persist: DnsPersist,
        }
        toml::from_str::<Wrap>(text).map(|w| w.dns_persist)
    }

    #[test]
    fn an_empty_table_takes_the_defaults_and_names_itself_in_advice() {
        let persist = parse("dns_persist = {}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(persist.issuer(), None);
        assert!(!persist.wildcard_policy());
        assert_eq!(persist.check.table, "dns_persist");
        assert_eq!(persist.check.timeout_secs, DnsChallenge::default().timeout_secs);
        assert!(persist.validate("resolvers.a.dns_persist").is_ok());
    }

    #[test]
    fn reads_its_keys_and_the_check_settings() {
        let text = "dns_persist = { issuer_domain = \"CA.Example.\", policy = \"wildcard\", resolvers = \
                    [\"127.0.0.1:5353\"], nameserver_port = 5353, timeout_secs = 5 }";
        let persist = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(persist.issuer().as_deref(), Some("ca.example"));
        assert!(persist.wildcard_policy());
        assert_eq!(persist.check.nameserver_port, 5353);
        assert_eq!(persist.check.timeout_secs, 5);
        assert_eq!(persist.check.resolvers.len(), 1);
    }

    #[test]
    fn refusals_name_the_field() {
        let unknown = parse("dns_persist = { rfc2136 = {} }").map(drop).unwrap_err().to_string();
        assert!(unknown.contains("unknown dns_persist setting 'rfc2136'"), "{unknown}");
        let ttl = parse("dns_persist = { ttl = 60 }").map(drop).unwrap_err().to_string();
        assert!(ttl.contains("'ttl'"), "{ttl}");
        let field = "resolvers.a.dns_persist";
        let policy = parse("dns_persist = { policy = \"all\" }").unwrap_or_else(|e| panic!("{e}"));
        let e = policy.validate(field).map(drop).unwrap_err();
        assert_eq!(e.field, "resolvers.a.dns_persist.policy");
        let issuer = parse("dns_persist = { issuer_domain = \"not a name\" }").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(issuer.validate(field).map(drop).unwrap_err().field, "resolvers.a.dns_persist.issuer_domain");
        let zero = parse("dns_persist = { timeout_secs = 0 }").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(zero.validate(field).map(drop).unwrap_err().field, "resolvers.a.dns_persist.timeout_secs");
    }
}
