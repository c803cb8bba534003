//! `[resolvers.<name>.dns_challenge]` is defined by the dns module, which
//! owns the check settings and every provider's table; configuration only
//! composes it into [`Resolver`](super::Resolver) and turns its errors into
//! configuration errors, with the same field paths and exit code.

pub use crate::dns::{DnsChallenge, DnsPersist};

use super::ConfigError;

impl From<crate::dns::SettingsError> for ConfigError {
    fn from(e: crate::dns::SettingsError) -> Self {
        Self::invalid(e.field, e.message)
    }
}
