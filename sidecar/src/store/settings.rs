//! `[storage]`: the embedded file store (default) or a shared etcd store
//! for several replicas (`store = "etcd"` + `[storage.etcd]`). The store
//! owns these settings; `config` reads their secrets and validates them.

use std::path::PathBuf;

use serde::Deserialize;

/// The environment variable holding the etcd encryption key (base64 of 32
/// bytes) when `encryption_key_file` is not set.
pub const ENCRYPTION_KEY_ENV: &str = "PROXY_ACME_ENCRYPTION_KEY";

/// Where accounts and certificates live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// State directory; created with mode 0700 when missing, refused when
    /// readable by group or others. With etcd it only holds local files.
    #[serde(default = "default_storage_dir")]
    pub directory: PathBuf,
    /// `file` (default) or `etcd`.
    #[serde(default)]
    pub store: StoreKind,
    /// Settings of the etcd store; required with `store = "etcd"`.
    #[serde(default)]
    pub etcd: Option<Etcd>,
}

impl Default for Storage {
    fn default() -> Self {
        Self { directory: default_storage_dir(), store: StoreKind::File, etcd: None }
    }
}

fn default_storage_dir() -> PathBuf {
    PathBuf::from("/var/lib/proxy-acme")
}

/// Which store backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    File,
    Etcd,
}

/// `[storage.etcd]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    /// Client URLs of the cluster members, e.g. `https://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix, so several installations can
    /// share a cluster.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This replica's name in locks and logs (default: the host name).
    #[serde(default)]
    pub replica: Option<String>,
    /// CA bundle that signed the members' certificates (enables TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// etcd user for role-based access control.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// File holding the key (base64 of 32 random bytes) that encrypts
    /// private keys and accounts before they reach etcd; else the
    /// `PROXY_ACME_ENCRYPTION_KEY` environment variable.
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
    /// The key, read by `Config::load`.
    #[serde(skip)]
    pub encryption_key: Option<[u8; 32]>,
    /// Lifetime of a lock's lease: how long a crashed holder blocks others.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_secs: u64,
    /// How long one request to etcd may take before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("tls", &self.ca_file.is_some())
            .field("username", &self.username)
            .field("lock_ttl_secs", &self.lock_ttl_secs)
            .finish_non_exhaustive()
    }
}

fn default_prefix() -> String {
    "/proxy-acme/".to_owned()
}

fn default_lock_ttl() -> u64 {
    15
}

fn default_timeout() -> u64 {
    5
}

impl Etcd {
    /// The replica name: configured, else the host name, else the pid.
    pub fn replica_name(&self) -> String {
        self.replica.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("pid-{}", std::process::id()))
        })
    }
}
