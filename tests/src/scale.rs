//! What the scale benches share: a store filled with `n` certificates
//! through the library's own `FileStore::save_certificate`, and the
//! machine's description for their Markdown sections.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_acme::cert::{Bundle, SecretPem};
use proxy_acme::store::{FileStore, Store};

use super::StackPorts;

/// The `i`-th certificate's name: `c-00001`, ...
pub fn name(i: usize) -> String {
    format!("c-{:05}", i + 1)
}

/// A local CA and `n` leaves from it, saved through the store's API.
pub async fn fill_store(state: &Path, n: usize) -> Duration {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let started = Instant::now();
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "scale bench CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}")).pem();
    let issuer = Arc::new(Issuer::new(ca_params, ca_key));
    let store = Arc::new(FileStore::open(state).unwrap_or_else(|e| panic!("{e}")));
    let now = time::OffsetDateTime::now_utc();
    let mut set = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..n {
        let (issuer, store, ca_pem) = (Arc::clone(&issuer), Arc::clone(&store), ca_pem.clone());
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap_or_else(|e| panic!("{e}"));
        set.spawn(async move {
            let name = name(i);
            let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
            let mut params = CertificateParams::new(vec![format!("{name}.test")]).unwrap_or_else(|e| panic!("{e}"));
            params.distinguished_name.push(DnType::CommonName, format!("{name}.test"));
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(90);
            // As a real CA's leaf: ARI identifies a certificate by its AKI.
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
            let bundle = Bundle {
                fullchain_pem: format!("{}{ca_pem}", cert.pem()),
                key_pem: SecretPem::new(key.serialize_pem()),
            };
            store.save_certificate(&name, &bundle).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            drop(permit);
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap_or_else(|e| panic!("{e}"));
    }
    started.elapsed()
}

/// `12345` as `12,345`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or_else(|| "?".into(), |m| m.trim().to_owned())
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// Envoy's bootstrap: admin, and an HTTPS listener with one filter chain per
/// name, each with its SDS secret from the sidecar's Unix socket.
pub fn envoy_bootstrap(n: usize, ports: &StackPorts, sds_socket: &Path) -> String {
    use serde_json::json;
    let chains: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let name = name(i);
            json!({
                "filter_chain_match": { "server_names": [format!("{name}.test")] },
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {
                            "tls_certificate_sds_secret_configs": [{
                                "name": name,
                                "sds_config": {
                                    "resource_api_version": "V3",
                                    "initial_fetch_timeout": "0s",
                                    "ads": {}
                                }
                            }]
                        }
                    }
                },
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "https",
                        "route_config": { "virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "direct_response": { "status": 200 } }]
                        }] },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                        }]
                    }
                }]
            })
        })
        .collect();
    json!({
        "node": { "id": "scale-bench", "cluster": "bench" },
        // As the shipped envoy.yaml: every secret over one incremental ADS stream.
        "dynamic_resources": { "ads_config": {
            "api_type": "DELTA_GRPC",
            "transport_api_version": "V3",
            "set_node_on_first_message_only": true,
            "grpc_services": [{ "envoy_grpc": {
                "cluster_name": "proxy_acme_sds",
                "retry_policy": { "retry_back_off": { "base_interval": "0.05s", "max_interval": "0.2s" } }
            } }]
        } },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": ports.admin } } },
        "static_resources": {
            "listeners": [{
                "name": "https",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": ports.https } },
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" }
                }],
                "filter_chains": chains
            }],
            "clusters": [{
                "name": "proxy_acme_sds",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "load_assignment": { "cluster_name": "proxy_acme_sds", "endpoints": [{ "lb_endpoints": [{
                    "endpoint": { "address": { "pipe": { "path": sds_socket } } }
                }] }] }
            }]
        }
    })
    .to_string()
}

/// When the sidecar logged its `n`-th SDS snapshot update: every stored
/// certificate loaded and ready to push (one update each at start-up).
pub fn loaded_at(log: &Path, n: usize) -> Option<time::OffsetDateTime> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("SDS snapshot updated") && l.ends_with(&format!(" version={n}")))?;
    let stamp = line.split_whitespace().next()?;
    time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
}
