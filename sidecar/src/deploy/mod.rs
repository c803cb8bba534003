//! Deployment sinks: where a stored certificate goes so proxies serve it:
//! SDS over gRPC or files for Envoy, PEM files + a checked reload for nginx.

pub mod file_sds;
pub mod hook;
pub mod lds;
pub mod nginx;
mod nginx_master;
pub mod sds;
pub mod settings;
pub mod snapshot;
pub mod xds;

use std::sync::Arc;

use async_trait::async_trait;

use crate::cert::Bundle;

/// A deployment failure.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("writing PEM files: {0}")]
    Files(#[from] crate::store::StoreError),
    /// Deployed, and the proxy does not serve it (yet).
    #[error(transparent)]
    NotServed(#[from] nginx::NotLoaded),
}

impl From<crate::atomic::FileError> for DeployError {
    fn from(e: crate::atomic::FileError) -> Self {
        Self::Directory { path: e.path.display().to_string(), source: e.source }
    }
}

impl DeployError {
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Listen { .. } | Self::Directory { .. } => true,
            Self::Files(e) => e.is_permanent(),
            Self::NotServed(_) => false,
        }
    }
}

/// Something that makes proxies serve a certificate.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Deploys `bundle` under `name`, replacing what was there.
    async fn deploy(&self, name: &str, bundle: &Arc<Bundle>) -> Result<(), DeployError>;

    /// Waits until the proxy serves what the last `deploy` of `name` gave
    /// it, or says why it does not. Sinks that serve at once (SDS: Envoy is
    /// sent the secret by `deploy`) answer at once. The caller bounds it.
    async fn settled(&self, _name: &str) -> Result<(), DeployError> {
        Ok(())
    }
}
