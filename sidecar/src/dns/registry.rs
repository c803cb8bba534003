//! The DNS provider registry: [`providers!`] declares each provider's
//! module and lists it, from one line per provider in `dns/mod.rs`.
//!
//! Adding a provider: a file in `dns/` whose settings type implements
//! [`ProviderSettings`] (its table name, secrets, validation, and the
//! [`DnsProvider`](super::DnsProvider) it builds), and one line in that list.
//! Parsing, the `name one provider table` and unknown-key messages, secrets,
//! validation and [`build`](super::build) all go through it.

use serde::de::{self, DeserializeSeed};
use serde::{Deserialize, Deserializer};

use super::settings::{Provider, ProviderSettings};
use super::PROVIDERS;

/// `module::Settings, ...`: declares `pub mod module;` for each provider
/// and lists `Settings` in `PROVIDERS`, in order.
macro_rules! providers {
    ($($module:ident::$settings:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Every provider, in the order messages and the documentation list them.
        const PROVIDERS: &[registry::Entry] = &[$(registry::Entry::of::<$module::$settings>()),+];
    };
}
pub(super) use providers;

/// A provider's table name and how its table is parsed.
pub(super) struct Entry {
    name: &'static str,
    parse: fn(toml::Value) -> Result<Provider, toml::de::Error>,
}

impl Entry {
    pub(super) const fn of<T: ProviderSettings>() -> Self {
        Self { name: T::NAME, parse: parse::<T> }
    }
}

fn parse<T: ProviderSettings>(table: toml::Value) -> Result<Provider, toml::de::Error> {
    T::deserialize(table).map(Provider::new)
}

/// The provider whose table is called `name`.
pub(super) fn find(name: &str) -> Option<&'static Entry> {
    PROVIDERS.iter().find(|entry| entry.name == name)
}

/// Every provider's name, as `a, b, c` (`last` is `", "`) or `a, b or c`.
pub(super) fn names(last: &str) -> String {
    let names: Vec<&str> = PROVIDERS.iter().map(|entry| entry.name).collect();
    match names.split_last() {
        Some((tail, [])) => (*tail).to_owned(),
        Some((tail, init)) => format!("{}{last}{tail}", init.join(", ")),
        None => String::new(),
    }
}

/// Parses the provider's table; errors point at the table.
impl<'de> DeserializeSeed<'de> for &Entry {
    type Value = Provider;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Provider, D::Error> {
        let table = toml::Value::deserialize(deserializer)?;
        (self.parse)(table).map_err(|e| de::Error::custom(e.to_string().trim_end()))
    }
}
