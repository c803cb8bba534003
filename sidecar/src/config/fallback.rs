//! Issuer fallback on a certificate: `resolvers = ["le", "zerossl"]` is
//! tried in order, moving on when the current CA fails in a way waiting
//! will not fix soon ([`Fallback`]); `resolver = "le"` is the one-element
//! form. What to do with a failure is decided in
//! [`crate::schedule::Fallback`]; this is only the file's vocabulary.

use serde::Deserialize;

use super::Certificate;
pub use crate::schedule::{FallbackSettings, Renewals};

/// A `[[certificates]]` entry as written: `resolver` or `resolvers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateToml {
    name: String,
    domains: Vec<String>,
    resolver: Option<String>,
    resolvers: Option<Vec<String>>,
    fallback: Option<FallbackSettings>,
    #[serde(default)]
    key_types: Vec<crate::cert::KeyType>,
}

/// Why a `[[certificates]]` entry cannot be read (the parser adds where).
#[derive(Debug, thiserror::Error)]
pub(super) enum CertificateError {
    #[error("set either resolver or resolvers, not both")]
    Both(String),
    #[error("missing field `resolver` (or `resolvers = [...]`)")]
    Neither(String),
    #[error("resolvers must name at least one resolver")]
    Empty(String),
    #[error("resolvers lists '{1}' twice")]
    Twice(String, String),
    #[error("fallback needs resolvers = [...] with more than one resolver")]
    Alone(String),
}

impl TryFrom<CertificateToml> for Certificate {
    type Error = CertificateError;

    fn try_from(raw: CertificateToml) -> Result<Self, Self::Error> {
        let resolvers = match (raw.resolver, raw.resolvers) {
            (Some(_), Some(_)) => return Err(CertificateError::Both(raw.name)),
            (None, None) => return Err(CertificateError::Neither(raw.name)),
            (Some(one), None) => vec![one],
            (None, Some(list)) => list,
        };
        let Some(first) = resolvers.first().cloned() else { return Err(CertificateError::Empty(raw.name)) };
        if let Some((_, twice)) = resolvers.iter().enumerate().find(|(i, r)| resolvers[..*i].contains(r)) {
            return Err(CertificateError::Twice(raw.name, twice.clone()));
        }
        if raw.fallback.is_some() && resolvers.len() < 2 {
            return Err(CertificateError::Alone(raw.name));
        }
        Ok(Self {
            name: raw.name,
            domains: raw.domains,
            resolver: first,
            resolvers,
            fallback: raw.fallback.unwrap_or_default(),
            key_types: raw.key_types,
        })
    }
}
