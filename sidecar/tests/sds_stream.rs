//! The SDS server as a gRPC client (Envoy's role) sees it over the Unix
//! socket: versions, nonces, ACK and NACK handling, push on change.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use hyper_util::rt::TokioIo;
use proxy_acme::cert::placeholder;
use proxy_acme::deploy::sds::{self, SdsSink};
use proxy_acme::deploy::snapshot::SECRET_TYPE_URL;
use proxy_acme::deploy::Sink;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

async fn connect(path: std::path::PathBuf) -> SecretDiscoveryServiceClient<Channel> {
    let channel = Endpoint::from_static("http://sds.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to SDS socket");
    SecretDiscoveryServiceClient::new(channel)
}

fn request(names: &[&str], version: &str, nonce: &str, error: Option<&str>) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node { id: "test-envoy".into(), cluster: "test".into(), ..Default::default() }),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        type_url: SECRET_TYPE_URL.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        error_detail: error.map(|m| RpcStatus { code: 3, message: m.into(), details: vec![] }),
        ..Default::default()
    }
}

async fn next(stream: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Ok(Some(rsp))) => rsp,
        other => panic!("expected a response, got {other:?}"),
    }
}

async fn nothing_within(stream: &mut tonic::Streaming<DiscoveryResponse>, wait: Duration) {
    if let Ok(msg) = tokio::time::timeout(wait, stream.message()).await {
        panic!("expected no response, got {msg:?}");
    }
}

#[tokio::test]
async fn stream_pushes_each_change_once_with_fresh_version_and_nonce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sds.sock");
    let sink = SdsSink::new();
    sds::serve_unix(&sink, &socket, std::future::pending()).await.expect("serve");
    let mode = std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    let mut client = connect(socket).await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(request(&["web"], "", "", None)).await.expect("send");
    let mut stream = client.stream_secrets(ReceiverStream::new(rx)).await.expect("stream").into_inner();

    // Nothing to send until the secret exists; then it arrives at once.
    nothing_within(&mut stream, Duration::from_millis(300)).await;
    let first = placeholder(&["a.example".to_owned()]).expect("cert");
    sink.deploy("web", &first).await.expect("deploy");
    sink.deploy("other", &placeholder(&["b.example".to_owned()]).expect("cert")).await.expect("deploy");
    let r1 = next(&mut stream).await;
    assert_eq!(r1.resources.len(), 1, "only the subscribed secret is sent");
    assert_eq!(r1.type_url, SECRET_TYPE_URL);

    // An ACK is answered with silence, not a loop.
    tx.send(request(&["web"], &r1.version_info, &r1.nonce, None)).await.expect("ack");
    nothing_within(&mut stream, Duration::from_millis(300)).await;

    // A change to another secret is not pushed on this stream; a change to ours is.
    sink.deploy("other", &placeholder(&["c.example".to_owned()]).expect("cert")).await.expect("deploy");
    nothing_within(&mut stream, Duration::from_millis(300)).await;
    let second = placeholder(&["a.example".to_owned()]).expect("cert");
    sink.deploy("web", &second).await.expect("deploy");
    let r2 = next(&mut stream).await;
    assert_ne!(r2.version_info, r1.version_info);
    assert_ne!(r2.nonce, r1.nonce);

    // A NACK keeps Envoy on its old secret; we do not resend the same thing.
    tx.send(request(&["web"], &r1.version_info, &r2.nonce, Some("bad key"))).await.expect("nack");
    nothing_within(&mut stream, Duration::from_millis(300)).await;
    // Deploying an identical bundle is no change.
    sink.deploy("web", &second).await.expect("deploy");
    nothing_within(&mut stream, Duration::from_millis(300)).await;

    // FetchSecrets answers with the current state.
    let fetched = client.fetch_secrets(request(&["web"], "", "", None)).await.expect("fetch").into_inner();
    assert_eq!(fetched.version_info, sink.snapshot().version.to_string());
    assert_eq!(fetched.resources, r2.resources);
}
