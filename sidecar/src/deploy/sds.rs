//! Envoy's Secret Discovery Service over gRPC (tonic + envoy-types), on a
//! Unix socket (0600) and optionally TCP.
//!
//! The same secrets are served four ways, all through [`xds::drive`]:
//! `SecretDiscoveryService` (one stream per secret, as Envoy opens it for an
//! `api_config_source`) and `AggregatedDiscoveryService` (one stream for all
//! secrets, as Envoy opens it for `ads: {}`), each state of the world or
//! incremental. ADS is what the shipped configs use: 10,000 secrets are one
//! stream, not 10,000.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::snapshot::Snapshot;
use super::xds::{self, Delta, Protocol, Sotw};
use super::{DeployError, Sink};
use crate::cert::Bundle;

/// The deploy side: publishes bundles into the snapshot every stream watches.
#[derive(Debug, Clone)]
pub struct SdsSink {
    snapshots: Arc<watch::Sender<Snapshot>>,
}

impl Default for SdsSink {
    fn default() -> Self {
        Self::new()
    }
}

impl SdsSink {
    pub fn new() -> Self {
        Self { snapshots: Arc::new(watch::Sender::new(Snapshot::default())) }
    }

    /// The gRPC services (SDS and ADS) answering Envoy from this sink's
    /// snapshots.
    pub fn service(&self) -> SecretDiscoveryServiceServer<SdsService> {
        SecretDiscoveryServiceServer::new(self.handler())
    }

    /// The same secrets over the aggregated service.
    pub fn ads_service(&self) -> AggregatedDiscoveryServiceServer<SdsService> {
        AggregatedDiscoveryServiceServer::new(self.handler())
    }

    fn handler(&self) -> SdsService {
        SdsService { snapshots: self.snapshots.subscribe(), nonces: Arc::default() }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshots.borrow().clone()
    }

    fn router(&self) -> tonic::transport::server::Router {
        tonic::transport::Server::builder().add_service(self.service()).add_service(self.ads_service())
    }
}

#[async_trait]
impl Sink for SdsSink {
    async fn deploy(&self, name: &str, bundle: &Arc<Bundle>) -> Result<(), DeployError> {
        let changed = self.snapshots.send_if_modified(|snap| snap.set(name, bundle));
        if changed {
            tracing::info!(certificate = name, version = self.snapshots.borrow().version, "SDS snapshot updated");
        }
        Ok(())
    }
}

/// The tonic service; one per server, cheap to clone per stream.
#[derive(Debug)]
pub struct SdsService {
    snapshots: watch::Receiver<Snapshot>,
    nonces: Arc<AtomicU64>,
}

impl SdsService {
    fn open<P: Protocol>(&self, inbound: Streaming<P::Request>) -> ReceiverStream<Result<P::Response, Status>> {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(xds::drive::<P>(self.snapshots.clone(), Arc::clone(&self.nonces), tx, inbound));
        ReceiverStream::new(rx)
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Ok(Response::new(self.open::<Delta>(request.into_inner())))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        Ok(Response::new(self.open::<Sotw>(request.into_inner())))
    }

    async fn fetch_secrets(&self, request: Request<DiscoveryRequest>) -> Result<Response<DiscoveryResponse>, Status> {
        let names = request.into_inner().resource_names;
        let snapshot = self.snapshots.borrow().clone();
        Ok(Response::new(snapshot.response(&names, xds::next_nonce(&self.nonces))))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for SdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.open::<Sotw>(request.into_inner())))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.open::<Delta>(request.into_inner())))
    }
}

/// Serves SDS on a Unix socket (mode 0600) until `shutdown` resolves.
pub async fn serve_unix(
    sink: &SdsSink,
    path: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, DeployError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| DeployError::Listen { address: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let incoming = crate::serve::door::incoming(listener, "sds");
    let router = sink.router();
    tracing::info!(socket = %path.display(), "SDS listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(error = %e, "SDS server (unix) failed");
        }
    }))
}

/// Serves SDS on TCP until `shutdown` resolves.
pub async fn serve_tcp(
    sink: &SdsSink,
    address: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, DeployError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| DeployError::Listen { address: address.to_string(), source })?;
    let incoming = crate::serve::door::incoming(listener, "sds_tcp");
    let router = sink.router();
    tracing::info!(%address, "SDS listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(error = %e, "SDS server (tcp) failed");
        }
    }))
}
