//! Envoy's Secret Discovery Service, state of the world, over gRPC (tonic +
//! envoy-types) on a Unix socket (0600) and optionally TCP.
//!
//! Each stream remembers the secret versions it last sent. A request (first
//! subscription, changed resource names) or a new snapshot makes it compare
//! and, when anything differs, send a response with a new `version_info` and
//! a fresh nonce. ACKs are logged at debug, NACKs at warn with Envoy's error
//! detail; a NACK never triggers a resend loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
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

    /// The gRPC service answering Envoy from this sink's snapshots.
    pub fn service(&self) -> SecretDiscoveryServiceServer<SdsService> {
        SecretDiscoveryServiceServer::new(SdsService { snapshots: self.snapshots.subscribe(), nonces: Arc::default() })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshots.borrow().clone()
    }
}

#[async_trait]
impl Sink for SdsSink {
    async fn deploy(&self, name: &str, bundle: &Bundle) -> Result<(), DeployError> {
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

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented("proxy-acme serves state-of-the-world SDS; configure api_type: GRPC"))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let stream = Stream { snapshots: self.snapshots.clone(), nonces: Arc::clone(&self.nonces), tx };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(&self, request: Request<DiscoveryRequest>) -> Result<Response<DiscoveryResponse>, Status> {
        let names = request.into_inner().resource_names;
        let snapshot = self.snapshots.borrow().clone();
        Ok(Response::new(snapshot.response(&names, next_nonce(&self.nonces))))
    }
}

fn next_nonce(nonces: &AtomicU64) -> String {
    (nonces.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

/// One Envoy's `StreamSecrets` call.
struct Stream {
    snapshots: watch::Receiver<Snapshot>,
    nonces: Arc<AtomicU64>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl Stream {
    async fn run(mut self, mut inbound: Streaming<DiscoveryRequest>) {
        let mut node = String::from("?");
        let mut names: Option<Vec<String>> = None;
        let mut sent: Option<BTreeMap<String, u64>> = None;
        let mut last_nonce = String::new();
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(req)) => {
                        if let Some(n) = &req.node {
                            node.clone_from(&n.id);
                        }
                        track_ack(&node, &req, &last_nonce);
                        names = Some(req.resource_names);
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node, %status, "SDS stream ended");
                        break;
                    }
                },
                changed = self.snapshots.changed() => if changed.is_err() { break },
            }
            // Nothing is sent before Envoy has said what it wants.
            let Some(names) = &names else { continue };
            let snapshot = self.snapshots.borrow_and_update().clone();
            let versions = snapshot.versions_for(names);
            let unchanged = match &sent {
                Some(sent) => *sent == versions,
                None => versions.is_empty(),
            };
            if unchanged {
                continue;
            }
            last_nonce = next_nonce(&self.nonces);
            let response = snapshot.response(names, last_nonce.clone());
            tracing::debug!(node, version = %response.version_info, nonce = %last_nonce, secrets = ?names, "SDS push");
            if self.tx.send(Ok(response)).await.is_err() {
                break;
            }
            crate::metrics::metrics().sds(&node).push();
            sent = Some(versions);
        }
    }
}

/// Logs whether a request ACKs or NACKs our last response.
fn track_ack(node: &str, req: &DiscoveryRequest, last_nonce: &str) {
    if req.response_nonce.is_empty() {
        tracing::debug!(node, secrets = ?req.resource_names, "SDS subscription");
        return;
    }
    let stale = req.response_nonce != last_nonce;
    let counters = crate::metrics::metrics().sds(node);
    if req.error_detail.is_some() {
        counters.nack();
    } else {
        counters.ack();
    }
    match &req.error_detail {
        Some(error) => tracing::warn!(
            node,
            nonce = %req.response_nonce,
            stale,
            secrets = ?req.resource_names,
            code = error.code,
            error = %error.message,
            "Envoy rejected SDS update (NACK); it keeps its previous secret"
        ),
        None => tracing::debug!(node, version = %req.version_info, nonce = %req.response_nonce, stale, "SDS ACK"),
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
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let router = tonic::transport::Server::builder().add_service(sink.service());
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
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = tonic::transport::Server::builder().add_service(sink.service());
    tracing::info!(%address, "SDS listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(error = %e, "SDS server (tcp) failed");
        }
    }))
}
