//! Configuration: read (`Config::load`), parse (`Config::from_str`), validate
//! (`Config::validate`) as three separate steps.
//!
//! The vocabulary follows Traefik's `certificatesResolvers` so a Traefik user
//! recognises every option: named resolvers carry `email`, `ca_server`,
//! `key_type` and a challenge block; `[[certificates]]` name the domains and
//! the resolver that obtains them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

mod certificates;
mod check;
mod discover;
mod fallback;
mod files;
use crate::deploy::settings::{Nginx, PostDeploy};
use crate::serve::served::ServedCheck;
pub use crate::solvers::ChallengeKind;
pub use discover::{Discover, OnDemand};
mod dns;
pub mod env;
mod error;
mod resolver;
mod storage;
use crate::store::Storage;
pub use certificates::MAX_NAMES;
pub use dns::{DnsChallenge, DnsPersist};
pub use error::{escape_controls, ConfigError};
pub use fallback::{FallbackSettings, Renewals};
use resolver::validate_resolver;
pub use resolver::{Eab, HttpChallenge, RateLimit, Resolver, TlsChallenge};

/// Let's Encrypt's production directory: the default `ca_server`, as in Traefik.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A name may be in several `[[certificates]]` (say an RSA and an ECDSA
    /// certificate for the same names); without it that is refused as a
    /// mistake. A top-level key: it goes before the first table.
    #[serde(default)]
    pub allow_shared_domains: bool,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub listen: Listen,
    /// Named resolvers, like Traefik's `certificatesResolvers.<name>.acme`.
    #[serde(default)]
    pub resolvers: BTreeMap<String, Resolver>,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    #[serde(default)]
    pub envoy: Envoy,
    #[serde(default)]
    pub admin: Admin,
    /// Served when a certificate has never been issued and no placeholder is
    /// wanted, like Traefik's `tls.stores.default.defaultCertificate`.
    #[serde(default)]
    pub default_certificate: Option<DefaultCertificate>,
    /// PEM files for nginx, with checked and coalesced reloads.
    #[serde(default)]
    pub nginx: Option<Nginx>,
    /// A program run after each newly issued certificate is deployed.
    #[serde(default)]
    pub post_deploy: Option<PostDeploy>,
    /// Compare what the proxy serves with what was deployed.
    #[serde(default)]
    pub served_check: Option<ServedCheck>,
    /// Certificates for the names in the proxy's routes.
    #[serde(default)]
    pub discover: Option<Discover>,
    /// Certificates for hosts the filter reports, within a policy.
    #[serde(default)]
    pub on_demand: Option<OnDemand>,
    /// How the sidecar reaches the internet: a forward proxy.
    #[serde(default)]
    pub network: crate::egress::Network,
    /// The file this was read from (`Config::load`): what a reload reads.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The admin API socket (list, renew, revoke, account rollover).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Unix socket, mode 0600; `""` disables the admin API.
    #[serde(default = "default_admin_socket")]
    pub socket: PathBuf,
    /// Also serve the admin API on TCP; needs `token_file`.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// File holding the bearer token TCP clients must send.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The token, read from `token_file` by `Config::load`.
    #[serde(skip)]
    pub token: Option<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Self { socket: default_admin_socket(), address: None, token_file: None, token: None }
    }
}

impl Admin {
    /// The socket, unless disabled with `socket = ""`.
    pub fn socket(&self) -> Option<&Path> {
        Some(self.socket.as_path()).filter(|p| !p.as_os_str().is_empty())
    }
}

fn default_admin_socket() -> PathBuf {
    PathBuf::from("/run/proxy-acme/admin.sock")
}

/// PEM files of a certificate to serve when nothing better exists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultCertificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Addresses the sidecar listens on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// HTTP endpoint that answers challenges (for the Envoy filter and for
    /// nginx `proxy_pass`) and takes the filter's on-demand reports.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics`, for the kubelet and Prometheus.
    /// Set it to the `http` address to serve them on the challenge API.
    #[serde(default = "default_ops")]
    pub ops: SocketAddr,
    /// TLS-ALPN-01 responder, for Envoy's `acme-tls/1` filter chain
    /// (`tcp_proxy`) or nginx `stream` + `ssl_preread`. Bound only when a
    /// resolver has `tls_challenge`.
    #[serde(default = "default_tls_alpn")]
    pub tls_alpn: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self { http: default_http(), ops: default_ops(), tls_alpn: default_tls_alpn() }
    }
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8555))
}

fn default_ops() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8558))
}

fn default_tls_alpn() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8556))
}

/// Deployment to Envoy over SDS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envoy {
    /// Unix socket for the SDS gRPC server (created with mode 0600); `""`
    /// disables it.
    #[serde(default = "default_sds_socket")]
    pub sds_socket: Option<PathBuf>,
    /// Optional TCP address for the SDS gRPC server, for Envoys that cannot
    /// share a socket with the sidecar.
    #[serde(default)]
    pub sds_address: Option<SocketAddr>,
    /// File SDS: one `<name>/secret.json` per certificate, swapped
    /// atomically for Envoy's `path_config_source` + `watched_directory`.
    #[serde(default)]
    pub sds_directory: Option<PathBuf>,
    /// Serve a self-signed placeholder for certificates not issued yet, so
    /// Envoy's TLS listener (which stays closed until its SDS secret exists)
    /// opens at once and the HTTP-01 listener beside it can start.
    #[serde(default = "default_true")]
    pub placeholder: bool,
}

impl Default for Envoy {
    fn default() -> Self {
        Self { sds_socket: default_sds_socket(), sds_address: None, sds_directory: None, placeholder: true }
    }
}

impl Envoy {
    /// The SDS socket, unless disabled with `sds_socket = ""`.
    pub fn socket(&self) -> Option<&Path> {
        self.sds_socket.as_deref().filter(|p| !p.as_os_str().is_empty())
    }
}

fn default_sds_socket() -> Option<PathBuf> {
    Some(PathBuf::from("/run/proxy-acme/sds.sock"))
}

fn default_true() -> bool {
    true
}

/// One certificate to obtain and keep valid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "fallback::CertificateToml")]
pub struct Certificate {
    /// Name of the certificate: the SDS secret name and the store directory.
    pub name: String,
    /// First is the main name (subject), the rest are SANs.
    pub domains: Vec<String>,
    /// Name of the resolver in `[resolvers]` an order goes to: the first of
    /// [`Self::resolvers`] (the one a fallback is trying, in a task).
    pub resolver: String,
    /// The resolvers in the order they are tried (`resolvers = ["le",
    /// "zerossl"]`); `resolver = "le"` is the one-element form. Never empty.
    pub resolvers: Vec<String>,
    /// When to move on to the next resolver, and whether renewals go back
    /// to the first.
    pub fallback: FallbackSettings,
    /// Key types, one certificate each for the same names (`["ec256",
    /// "rsa2048"]`: ECDSA for modern clients, RSA for old ones). The first
    /// keeps `name`; each other is `<name>-<key type>` (`www-rsa2048`), its
    /// own SDS secret and store directory, ordered and renewed on its own.
    /// Empty: one certificate of the resolver's `key_type`.
    #[serde(default)]
    pub key_types: Vec<crate::cert::KeyType>,
}

impl Certificate {
    /// The key type this certificate is ordered with.
    pub fn key_type(&self, resolver: &Resolver) -> crate::cert::KeyType {
        self.key_types.first().copied().unwrap_or(resolver.key_type)
    }

    /// One certificate per key type ([`Self::key_types`]); itself when it
    /// has at most one.
    pub fn per_key_type(&self) -> Vec<Self> {
        if self.key_types.len() <= 1 {
            return vec![self.clone()];
        }
        self.key_types
            .iter()
            .enumerate()
            .map(|(i, &key_type)| Self {
                name: if i == 0 { self.name.clone() } else { format!("{}-{}", self.name, key_type.name()) },
                domains: self.domains.clone(),
                resolver: self.resolver.clone(),
                resolvers: self.resolvers.clone(),
                fallback: self.fallback.clone(),
                key_types: vec![key_type],
            })
            .collect()
    }

    /// A certificate of one resolver (discovered, on demand).
    pub fn new(name: String, domains: Vec<String>, resolver: String) -> Self {
        Self {
            name,
            domains,
            resolvers: vec![resolver.clone()],
            resolver,
            fallback: FallbackSettings::default(),
            key_types: Vec::new(),
        }
    }

    /// The same certificate with its orders going to `resolver` (one of
    /// its [`Self::resolvers`]).
    pub fn at(&self, resolver: &str) -> Self {
        Self { resolver: resolver.to_owned(), ..self.clone() }
    }
}

impl FromStr for Config {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))
    }
}

impl Config {
    /// The certificates the daemon manages: `[[certificates]]`, each with
    /// several `key_types` made one certificate per key type.
    pub fn managed(&self) -> Vec<Certificate> {
        self.certificates.iter().flat_map(Certificate::per_key_type).collect()
    }

    /// Reads and parses a file and the secret files it names (`*_file`);
    /// does not validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::with_overrides(&text, &env::overrides(std::env::vars()))?;
        config.read_secret_files()?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// The file's text with the environment's overrides ([`env`]) on top.
    pub fn with_overrides(text: &str, overrides: &[env::Override]) -> Result<Self, ConfigError> {
        if overrides.is_empty() {
            return text.parse();
        }
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
        env::apply(&mut table, overrides)?;
        let names: Vec<&str> = overrides.iter().map(|o| o.variable.as_str()).collect();
        Self::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
            at: None,
            field: None,
            message: format!("{} (the file with {})", e.message().replace('\n', " "), names.join(", ")),
        })
    }

    /// Replaces each `*_file` secret with the file's contents, so secrets can
    /// come from Kubernetes or Docker secret mounts rather than the config.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        self.storage.read_secrets()?;
        if let Some(file) = &self.admin.token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::invalid("admin.token_file", format!("{}: {e}", file.display())))?;
            self.admin.token = Some(token.trim().to_owned());
        }
        for (name, resolver) in &mut self.resolvers {
            if let Some(dns) = &mut resolver.dns_challenge {
                dns.read_secrets(&format!("resolvers.{name}.dns_challenge"))?;
            }
            let Some(eab) = &mut resolver.eab else { continue };
            if let Some(file) = &eab.hmac_key_file {
                let field = format!("resolvers.{name}.eab.hmac_key_file");
                if eab.hmac_key.is_some() {
                    return Err(ConfigError::invalid(field, "set either hmac_key or hmac_key_file, not both"));
                }
                let key = std::fs::read_to_string(file)
                    .map_err(|e| ConfigError::invalid(&field, format!("{}: {e}", file.display())))?;
                eab.hmac_key = Some(key.trim().to_owned());
            }
        }
        Ok(())
    }

    /// Reads, parses and validates a file.
    pub fn load_valid(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::load(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything that can be checked without I/O. The first problem
    /// found is returned, with the field's path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.storage.validate()?;
        self.network.validate().map_err(|why| ConfigError::invalid("network.proxy", why.to_string()))?;
        for (name, resolver) in &self.resolvers {
            validate_resolver(name, resolver)?;
        }
        if let Some(nginx) = &self.nginx {
            files::validate_nginx(nginx)?;
        }
        if let Some(check) = &self.served_check {
            check.validate()?;
        }
        if let Some(discover) = &self.discover {
            discover.validate(&self.resolvers)?;
        }
        if let Some(on_demand) = &self.on_demand {
            on_demand.validate(&self.resolvers)?;
        }
        if self.admin.address.is_some() && self.admin.token_file.is_none() {
            return Err(ConfigError::invalid(
                "admin.token_file",
                "required with admin.address: the admin API is never served on TCP without a token",
            ));
        }
        if self.admin.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::invalid("admin.token_file", "the token must be at least 16 characters"));
        }
        if let Some(hook) = &self.post_deploy {
            files::validate_post_deploy(hook)?;
        }
        if let Some(dir) = &self.envoy.sds_directory {
            if !dir.is_absolute() {
                return Err(ConfigError::invalid("envoy.sds_directory", "must be an absolute path"));
            }
        }
        let envoy =
            self.envoy.socket().is_some() || self.envoy.sds_address.is_some() || self.envoy.sds_directory.is_some();
        if !envoy && self.nginx.is_none() {
            return Err(ConfigError::invalid(
                "envoy.sds_socket",
                "none of sds_socket, sds_address, sds_directory or [nginx] is set: no proxy would get certificates",
            ));
        }
        if self.certificates.is_empty() && self.discover.is_none() && self.on_demand.is_none() {
            return Err(ConfigError::invalid(
                "certificates",
                "nothing to do: no [[certificates]], [discover] or [on_demand] is configured",
            ));
        }
        certificates::validate(&self.certificates, &self.resolvers, self.allow_shared_domains)
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "refusals_tests.rs"]
mod refusals_tests;
