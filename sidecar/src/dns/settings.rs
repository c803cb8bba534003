//! `[resolvers.<name>.dns_challenge]`: the DNS-01 check settings, and one
//! provider table (`[resolvers.<name>.dns_challenge.cloudflare]`), parsed
//! by the provider that the registry (`providers!` in `dns/mod.rs`) lists
//! under that name.
//!
//! Each provider owns its settings: a type implementing [`ProviderSettings`]
//! that reads its secrets, validates itself and builds its [`DnsProvider`].
//! Errors are [`SettingsError`]s naming the field's path; `config` turns them
//! into its own errors, so nothing here depends on `config`.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{registry, DnsError, DnsProvider};

/// A bad DNS setting: the field's path and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

impl SettingsError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A provider's settings table: what it is called, how its secrets are read,
/// how it is checked, and the provider it builds.
pub trait ProviderSettings: DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// The table's name under `[resolvers.<name>.dns_challenge]`.
    const NAME: &'static str;

    /// Fills every secret not given inline with [`Env::secret`], from its
    /// `<key>_file` or lego's environment variables; `field` is the table's
    /// path. Most providers have none.
    fn read_secrets(&mut self, _field: &str, _env: &Env) -> Result<(), SettingsError> {
        Ok(())
    }

    /// Checks what can be checked without I/O; `field` is the table's path.
    fn validate(&self, field: &str) -> Result<(), SettingsError>;

    /// The provider; `ttl` is the TTL of the records it creates.
    fn build(&self, ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError>;
}

// === impl DnsChallenge ===

/// The table name of DNS-01's settings, as advice names them.
pub(super) const DNS_CHALLENGE: &str = "dns_challenge";
/// The table name of dns-persist-01's settings (the same check settings).
pub(super) const DNS_PERSIST: &str = "dns_persist";

/// DNS-01 for one resolver: the propagation check and the provider.
#[derive(Debug, Clone)]
pub struct DnsChallenge {
    /// Recursive DNS servers used to find each zone and its nameservers;
    /// empty means those in /etc/resolv.conf.
    pub resolvers: Vec<SocketAddr>,
    /// Wait this long after presenting the records before checking.
    pub delay_before_check_secs: u64,
    /// Give up the propagation check after this long.
    pub timeout_secs: u64,
    /// Time between two rounds of checks.
    pub interval_secs: u64,
    /// Tell the CA to validate without checking first.
    pub disable_checks: bool,
    /// Check every authoritative nameserver of the zone (default); `false`
    /// asks only the `resolvers`.
    pub check_all_nameservers: bool,
    /// The port authoritative nameservers are asked on.
    pub nameserver_port: u16,
    /// TTL of the TXT records we create.
    pub ttl: u32,
    /// The table these settings were read from ([`DNS_CHALLENGE`] or
    /// [`DNS_PERSIST`]), so that advice names the right one.
    pub table: &'static str,
    /// The provider tables in file order; `validate` wants exactly one.
    providers: Vec<Provider>,
}

impl Default for DnsChallenge {
    fn default() -> Self {
        Self {
            resolvers: Vec::new(),
            delay_before_check_secs: 0,
            timeout_secs: 120,
            interval_secs: 2,
            disable_checks: false,
            check_all_nameservers: true,
            nameserver_port: 53,
            ttl: 60,
            table: DNS_CHALLENGE,
            providers: Vec::new(),
        }
    }
}

/// The check settings, as named in the file.
const SETTINGS: [&str; 8] = [
    "resolvers",
    "delay_before_check_secs",
    "timeout_secs",
    "interval_secs",
    "disable_checks",
    "check_all_nameservers",
    "nameserver_port",
    "ttl",
];

impl DnsChallenge {
    /// The configured provider's name; validation ensures exactly one.
    pub fn provider_name(&self) -> &'static str {
        self.providers.first().map_or("none", Provider::name)
    }

    /// The provider's settings, if the provider is `T`.
    pub fn provider_settings<T: ProviderSettings>(&self) -> Option<&T> {
        self.providers.iter().find_map(|p| (p.0.as_ref() as &dyn Any).downcast_ref())
    }

    /// The provider's settings, to change, if the provider is `T`.
    pub fn provider_settings_mut<T: ProviderSettings>(&mut self) -> Option<&mut T> {
        self.providers.iter_mut().find_map(|p| (p.0.as_mut() as &mut dyn Any).downcast_mut())
    }

    /// Fills every provider secret not given inline from its `_file` key or
    /// lego's environment variables; `field` is this table's path.
    pub fn read_secrets(&mut self, field: &str) -> Result<(), SettingsError> {
        self.read_secrets_from(field, &Env::process())
    }

    /// [`read_secrets`](Self::read_secrets) with the variables in `env`.
    pub fn read_secrets_from(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        for provider in &mut self.providers {
            let path = format!("{field}.{}", provider.name());
            provider.0.read_secrets(&path, env)?;
        }
        Ok(())
    }

    /// Checks the settings and the provider's; `field` is this table's path.
    pub fn validate(&self, field: &str) -> Result<(), SettingsError> {
        let provider = match self.providers.as_slice() {
            [one] => one,
            [] => {
                return Err(SettingsError::new(field, format!("name one provider table: {}", registry::names(" or "))))
            }
            many => {
                let names: Vec<&str> = many.iter().map(Provider::name).collect();
                return Err(SettingsError::new(field, format!("one provider only, not {}", names.join(" and "))));
            }
        };
        self.validate_check(field)?;
        provider.0.validate(&format!("{field}.{}", provider.name()))
    }

    /// Checks the propagation check's settings alone; `field` is the table's path.
    pub fn validate_check(&self, field: &str) -> Result<(), SettingsError> {
        if self.timeout_secs == 0 || self.interval_secs == 0 {
            return Err(SettingsError::new(format!("{field}.timeout_secs"), "timeout and interval must be positive"));
        }
        Ok(())
    }

    /// Reads one of the check settings (all of [`SETTINGS`] but `ttl`) from
    /// `map` when `key` names one; `false` when it does not.
    pub(crate) fn read_check_setting<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "resolvers" => self.resolvers = map.next_value()?,
            "delay_before_check_secs" => self.delay_before_check_secs = map.next_value()?,
            "timeout_secs" => self.timeout_secs = map.next_value()?,
            "interval_secs" => self.interval_secs = map.next_value()?,
            "disable_checks" => self.disable_checks = map.next_value()?,
            "check_all_nameservers" => self.check_all_nameservers = map.next_value()?,
            "nameserver_port" => self.nameserver_port = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The one provider the settings name, built.
    pub(super) fn build_provider(&self) -> Result<Arc<dyn DnsProvider>, DnsError> {
        match self.providers.as_slice() {
            [one] => one.0.build(self.ttl),
            _ => Err(DnsError::provider("dns", "name exactly one provider table", false)),
        }
    }
}

/// The check settings by name; any other key is a provider table, looked up
/// in the registry, so an unknown key is an error naming it.
impl<'de> Deserialize<'de> for DnsChallenge {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> Visitor<'de> for Fields {
            type Value = DnsChallenge;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dns_challenge table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DnsChallenge, A::Error> {
                let mut out = DnsChallenge::default();
                while let Some(key) = map.next_key::<String>()? {
                    if out.read_check_setting(&key, &mut map)? {
                        continue;
                    }
                    match key.as_str() {
                        "ttl" => out.ttl = map.next_value()?,
                        name => match registry::find(name) {
                            Some(entry) => out.providers.push(map.next_value_seed(entry)?),
                            None => map.next_value_seed(Unknown(name))?,
                        },
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

/// Fails on an unknown key's value, so the parser points at that key.
struct Unknown<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Unknown<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        de::IgnoredAny::deserialize(deserializer)?;
        Err(de::Error::custom(format!(
            "unknown DNS provider or setting '{}'; providers: {}; settings: {}",
            self.0,
            registry::names(", "),
            SETTINGS.join(", ")
        )))
    }
}

// === impl Provider ===

/// One parsed provider table.
pub(super) struct Provider(Box<dyn AnySettings>);

impl Provider {
    pub(super) fn new<T: ProviderSettings>(settings: T) -> Self {
        Self(Box::new(settings))
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl Clone for Provider {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

/// The settings' own `Debug`, which keeps secrets out.
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// [`ProviderSettings`] as a trait object.
trait AnySettings: fmt::Debug + Send + Sync + Any {
    fn name(&self) -> &'static str;
    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError>;
    fn validate(&self, field: &str) -> Result<(), SettingsError>;
    fn build(&self, ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError>;
    fn clone_box(&self) -> Box<dyn AnySettings>;
}

impl<T: ProviderSettings> AnySettings for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn read_secrets(&mut self, field: &str, env: &Env) -> Result<(), SettingsError> {
        ProviderSettings::read_secrets(self, field, env)
    }

    fn validate(&self, field: &str) -> Result<(), SettingsError> {
        ProviderSettings::validate(self, field)
    }

    fn build(&self, ttl: u32) -> Result<Arc<dyn DnsProvider>, DnsError> {
        ProviderSettings::build(self, ttl)
    }

    fn clone_box(&self) -> Box<dyn AnySettings> {
        Box::new(self.clone())
    }
}

// === impl Env ===

/// Where lego's environment variables are read: the process's environment,
/// or a fixed map (tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Option<BTreeMap<String, String>>,
}

impl Env {
    /// The process's environment.
    pub fn process() -> Self {
        Self { vars: None }
    }

    /// Exactly these variables.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self { vars: Some(vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()) }
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// Reads a secret that is not given inline: `value` from itself, else
    /// the file `file` (its `<key>_file`), else the variable `var`, else the
    /// file the variable `<var>_FILE` names. `field` is the secret's path.
    pub fn secret(
        &self,
        field: &str,
        value: &mut Option<String>,
        file: Option<&Path>,
        var: &str,
    ) -> Result<(), SettingsError> {
        let read = |path: &Path, field: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| SettingsError::new(field, format!("{}: {e}", path.display())))
        };
        if let Some(file) = file {
            if value.is_some() {
                return Err(SettingsError::new(
                    format!("{field}_file"),
                    "set either the secret or its _file, not both",
                ));
            }
            *value = Some(read(file, &format!("{field}_file"))?);
            return Ok(());
        }
        if value.is_some() {
            return Ok(());
        }
        if let Some(v) = self.var(var) {
            *value = Some(v.trim().to_owned());
        } else if let Some(path) = self.var(&format!("{var}_FILE")) {
            *value = Some(read(Path::new(&path), &format!("{var}_FILE"))?);
        }
        Ok(())
    }

    /// `value`, else the variable `var` (a setting that is not secret).
    pub fn fill(&self, value: &mut Option<String>, var: &str) {
        if value.is_none() {
            *value = self.var(var);
        }
    }
}

// === helpers for providers ===

/// A secret that neither the file nor the environment gave.
pub(super) fn required(field: &str, value: Option<&String>) -> Result<(), SettingsError> {
    match value {
        Some(_) => Ok(()),
        None => Err(SettingsError::new(field, "is required (inline, _file, or lego's environment variable)")),
    }
}

/// An `http://` or `https://` URL.
pub(super) fn http_url(field: &str, url: &str) -> Result<(), SettingsError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(SettingsError::new(field, "must be an http(s):// URL"))
    }
}

/// How a secret shows in `Debug`: whether it is set, never what it is.
pub(super) fn redacted(value: Option<&String>) -> Option<&'static str> {
    value.map(|_| "...")
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
