//! The SDS server as a gRPC client (Envoy's role) sees it over the Unix
//! socket: versions, nonces, ACK and NACK handling, push on change.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
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

async fn connect_channel(path: std::path::PathBuf) -> Channel {
    Endpoint::from_static("http://sds.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to SDS socket")
}

async fn connect(path: std::path::PathBuf) -> SecretDiscoveryServiceClient<Channel> {
    SecretDiscoveryServiceClient::new(connect_channel(path).await)
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
    sink.deploy("web", &Arc::new(first.clone())).await.expect("deploy");
    sink.deploy("other", &Arc::new(placeholder(&["b.example".to_owned()]).expect("cert"))).await.expect("deploy");
    let r1 = next(&mut stream).await;
    assert_eq!(r1.resources.len(), 1, "only the subscribed secret is sent");
    assert_eq!(r1.type_url, SECRET_TYPE_URL);

    // An ACK is answered with silence, not a loop.
    tx.send(request(&["web"], &r1.version_info, &r1.nonce, None)).await.expect("ack");
    nothing_within(&mut stream, Duration::from_millis(300)).await;

    // A change to another secret is not pushed on this stream; a change to ours is.
    sink.deploy("other", &Arc::new(placeholder(&["c.example".to_owned()]).expect("cert"))).await.expect("deploy");
    nothing_within(&mut stream, Duration::from_millis(300)).await;
    let second = placeholder(&["a.example".to_owned()]).expect("cert");
    sink.deploy("web", &Arc::new(second.clone())).await.expect("deploy");
    let r2 = next(&mut stream).await;
    assert_ne!(r2.version_info, r1.version_info);
    assert_ne!(r2.nonce, r1.nonce);

    // A NACK keeps Envoy on its old secret; we do not resend the same thing.
    tx.send(request(&["web"], &r1.version_info, &r2.nonce, Some("bad key"))).await.expect("nack");
    nothing_within(&mut stream, Duration::from_millis(300)).await;
    // Deploying an identical bundle is no change.
    sink.deploy("web", &Arc::new(second.clone())).await.expect("deploy");
    nothing_within(&mut stream, Duration::from_millis(300)).await;

    // FetchSecrets answers with the current state.
    let fetched = client.fetch_secrets(request(&["web"], "", "", None)).await.expect("fetch").into_inner();
    assert_eq!(fetched.version_info, sink.snapshot().version.to_string());
    assert_eq!(fetched.resources, r2.resources);
}

/// ADS, incremental: one stream for many secrets, as the shipped Envoy
/// configs use it. Start-up arrives in bounded chunks, a change sends only
/// that secret, a reconnect naming what Envoy holds is sent nothing, and
/// requests for types we do not serve are ignored.
#[tokio::test]
async fn delta_ads_sends_changes_only_in_bounded_chunks() {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
    use proxy_acme::deploy::xds::CHUNK;

    async fn next_delta(stream: &mut tonic::Streaming<DeltaDiscoveryResponse>) -> DeltaDiscoveryResponse {
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(rsp))) => rsp,
            other => panic!("expected a response, got {other:?}"),
        }
    }
    fn subscribe(names: Vec<String>, nonce: &str, held: &[(String, String)]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            node: Some(Node { id: "delta-envoy".into(), ..Default::default() }),
            type_url: SECRET_TYPE_URL.into(),
            resource_names_subscribe: names,
            response_nonce: nonce.into(),
            initial_resource_versions: held.iter().cloned().collect(),
            ..Default::default()
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sds.sock");
    let sink = SdsSink::new();
    sds::serve_unix(&sink, &socket, std::future::pending()).await.expect("serve");
    let n = CHUNK * 2 + 7;
    let names: Vec<String> = (0..n).map(|i| format!("s{i:04}")).collect();
    let bundle = placeholder(&["a.example".to_owned()]).expect("cert");
    for name in &names {
        sink.deploy(name, &Arc::new(bundle.clone())).await.expect("deploy");
    }
    sink.deploy("unsubscribed", &Arc::new(bundle.clone())).await.expect("deploy");

    let channel = connect_channel(socket.clone()).await;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    // Another type first: ignored, the stream stays up.
    let listeners = DeltaDiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
        resource_names_subscribe: vec!["l".into()],
        ..Default::default()
    };
    tx.send(listeners).await.expect("send");
    tx.send(subscribe(names.clone(), "", &[])).await.expect("send");
    let mut stream = client.delta_aggregated_resources(ReceiverStream::new(rx)).await.expect("stream").into_inner();
    let mut got = std::collections::BTreeMap::new();
    let mut sizes = Vec::new();
    while got.len() < n {
        let rsp = next_delta(&mut stream).await;
        assert_eq!(rsp.type_url, SECRET_TYPE_URL);
        sizes.push(rsp.resources.len());
        for r in rsp.resources {
            assert!(got.insert(r.name.clone(), r.version.clone()).is_none(), "{} sent twice", r.name);
        }
        tx.send(subscribe(vec![], &rsp.nonce, &[])).await.expect("ack");
    }
    assert_eq!(sizes, [CHUNK, CHUNK, 7]);
    assert!(!got.contains_key("unsubscribed"));
    nothing_within_delta(&mut stream).await;

    // One change: one secret, with a new version.
    sink.deploy("s0003", &Arc::new(placeholder(&["b.example".to_owned()]).expect("cert"))).await.expect("deploy");
    let rsp = next_delta(&mut stream).await;
    assert_eq!(rsp.resources.len(), 1);
    assert_eq!(rsp.resources[0].name, "s0003");
    assert_ne!(rsp.resources[0].version, got["s0003"]);
    drop(tx);

    // A reconnecting Envoy that names the versions it holds gets only what it lacks.
    let (tx, rx) = mpsc::channel(8);
    let mut held: Vec<(String, String)> = got.clone().into_iter().collect();
    held.retain(|(name, _)| name != "s0010");
    tx.send(subscribe(names.clone(), "", &held)).await.expect("send");
    let mut stream = client.delta_aggregated_resources(ReceiverStream::new(rx)).await.expect("stream").into_inner();
    let rsp = next_delta(&mut stream).await;
    let sent: Vec<&str> = rsp.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(sent, ["s0003", "s0010"], "s0003 changed since, s0010 was not held");

    async fn nothing_within_delta(stream: &mut tonic::Streaming<DeltaDiscoveryResponse>) {
        if let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
            panic!("expected no response, got {msg:?}");
        }
    }
}
