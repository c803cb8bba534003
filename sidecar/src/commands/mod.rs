//! The CLI verbs besides `run` (which is [`crate::daemon::run`]): each one
//! reads the configuration, opens the store with [`crate::store::open`] like
//! the daemon, does its work and reports for people. Exit codes live in
//! `main.rs`.

pub mod import;
pub mod nginx_config;
pub mod online;
pub mod operate;
pub mod persist_record;
pub mod prepare;
pub mod watch;

use crate::acme::AcmeError;
use crate::cert::CertError;
use crate::deploy::DeployError;
use crate::serve::admin::ClientError;
use crate::store::StoreError;

/// Why a command failed; `main` prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Daemon(#[from] ClientError),
    #[error("the daemon answered something unreadable: {0}")]
    Answer(#[from] serde_json::Error),
    #[error("the daemon is not running: start `proxy-acme run`; it orders what is missing or due")]
    NotRunning,
    #[error("no certificate named {0}")]
    UnknownCertificate(String),
    #[error("no resolver named {0}")]
    UnknownResolver(String),
    #[error("resolver {0} has no dns-persist-01: add `dns_persist = {{}}` to [resolvers.{0}]")]
    NoDnsPersist(String),
    #[error(
        "the CA of resolver {0} names no issuer domain (no caaIdentities in its directory): set          `dns_persist.issuer_domain` in [resolvers.{0}]"
    )]
    NoIssuerDomain(String),
    #[error("{0} has nothing stored to revoke")]
    NothingStored(String),
    #[error("no file target: set [envoy] sds_directory or [nginx] directory")]
    NoFileTarget,
    #[error("{certificate}: {source}")]
    Prepare { certificate: String, source: DeployError },
    #[error(transparent)]
    Default(#[from] crate::daemon::RunError),
    #[error("watching {path}: {source}")]
    Watch { path: String, source: notify::Error },
}
