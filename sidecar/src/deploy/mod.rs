//! Deployment sinks: where a stored certificate goes so proxies serve it.
//! SDS gRPC today; SDS files and PEM + reload join behind the same trait.

pub mod sds;
pub mod snapshot;

use async_trait::async_trait;

use crate::cert::Bundle;

/// A deployment failure.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
}

impl DeployError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Listen { .. })
    }
}

/// Something that makes proxies serve a certificate.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Deploys `bundle` under `name`, replacing what was there.
    async fn deploy(&self, name: &str, bundle: &Bundle) -> Result<(), DeployError>;
}
