//! Scale: many stored certificates, one real Envoy 1.40 that references
//! every one of them (one filter chain per certificate, by SNI, each with
//! its SDS secret from the sidecar).
//!
//! For each size (100 as the same-run baseline, then `SCALE_BENCH_CERTS`,
//! default 10 000): certificates from a local test CA are written into the
//! file store, Envoy starts and waits for its secrets, the sidecar starts,
//! and the clock runs until Envoy is LIVE (its listener warmed: every
//! secret delivered). Then the sidecar's RSS, and the time from `renew NAME
//! --force` returning (a real order from Pebble) to Envoy serving the new
//! serial, with Envoy's listener-drain counters read before and after.
//!
//! `cargo bench -p proxy-acme --bench scale` (part of `make bench`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proxy_acme::cert::{Bundle, SecretPem};
use proxy_acme::store::{FileStore, Store};
use support::mesh::{indent, item};
use support::*;

fn name(i: usize) -> String {
    format!("c-{i:05}")
}

fn domain(i: usize) -> String {
    format!("c-{i:05}.scale.test")
}

/// `count` certificates signed by one local CA, written with the store's own API.
async fn fill_store(store: &FileStore, count: usize) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let now = time::OffsetDateTime::now_utc();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..count {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = CertificateParams::new(vec![domain(i)]).unwrap_or_else(|e| panic!("{e}"));
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(89);
        let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| panic!("{e}"));
        let bundle = Bundle { fullchain_pem: cert.pem(), key_pem: SecretPem::new(key.serialize_pem()) };
        let store = store.clone();
        writes.spawn(async move { store.save_certificate(&name(i), &bundle).await.unwrap_or_else(|e| panic!("{e}")) });
        while writes.len() >= 64 {
            writes.join_next().await;
        }
    }
    while writes.join_next().await.is_some() {}
}

/// Envoy with the HTTP listener (challenges) and one HTTPS listener whose
/// filter chains select each certificate by SNI.
fn bootstrap(ports: &StackPorts, sds: &Path, count: usize) -> String {
    let mut chains = String::new();
    for i in 0..count {
        chains.push_str(&item(&format!(
            "filter_chain_match: {{ server_names: [\"{d}\"] }}\ntransport_socket:\n  name: envoy.transport_sockets.tls\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n    common_tls_context:\n      tls_certificate_sds_secret_configs:\n      - name: {n}\n        sds_config: {{ resource_api_version: V3, initial_fetch_timeout: 0s, api_config_source: {{ api_type: GRPC, transport_api_version: V3, grpc_services: [{{ envoy_grpc: {{ cluster_name: proxy_acme_sds }} }}] }} }}\nfilters:\n- name: envoy.filters.network.tcp_proxy\n  typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: app, cluster: app }}\n",
            d = domain(i),
            n = name(i)
        )));
    }
    let filter = mesh::shipped_mesh_filter(&wasm_path());
    let http = mesh::http_bootstrap(
        ports.http,
        ports.admin,
        &["match: { prefix: \"/\" }\ndirect_response: { status: 200 }\n".to_owned()],
        &filter,
        &[("app", ports.app), ("proxy_acme_sidecar", ports.sidecar)],
    );
    // Add the HTTPS listener and the SDS cluster to the generated bootstrap.
    let https = format!(
        "  - name: https\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}\n    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }}\n    filter_chains:\n{}",
        ports.https,
        indent(&chains, 4)
    );
    let sds_cluster = format!(
        "  - name: proxy_acme_sds\n    type: STATIC\n    connect_timeout: 1s\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {{ http2_protocol_options: {{}} }}\n    load_assignment:\n      cluster_name: proxy_acme_sds\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ pipe: {{ path: {} }} }} }} }}] }}]\n",
        sds.display()
    );
    let http = http.replacen("  clusters:\n", &format!("{https}  clusters:\n{sds_cluster}"), 1);
    format!("node: {{ id: envoy-scale, cluster: edge }}\n{http}")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

/// What one size measured.
#[derive(Debug)]
struct Run {
    count: usize,
    fill: Duration,
    cold_start: Duration,
    rss_mib: f64,
    hwm_mib: f64,
    push: Duration,
    modified: u64,
    draining: u64,
}

async fn run(count: usize) -> Run {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ports = StackPorts::free();
    let pebble = Pebble::start_with(dir, ports.http, ports.https, &PebbleOptions::default());
    let certificates: String = (0..count)
        .map(|i| {
            format!("[[certificates]]\nname = \"{}\"\ndomains = [\"{}\"]\nresolver = \"pebble\"\n", name(i), domain(i))
        })
        .collect();
    let config = sidecar_config(dir, &ports, &pebble, "", &certificates);
    let store = FileStore::open(&dir.join("state")).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    fill_store(&store, count).await;
    let fill = started.elapsed();

    // Envoy first: it waits (initial_fetch_timeout 0s) for every secret.
    let envoy_bin = std::env::var_os("PROXY_ACME_ENVOY").unwrap_or_else(|| "envoy".into());
    let yaml = dir.join("envoy.yaml");
    write(&yaml, &bootstrap(&ports, &dir.join("sds.sock"), count));
    let envoy = Proc::spawn(
        "envoy",
        Command::new(envoy_bin).arg("-c").arg(&yaml).args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ]),
        dir,
    );
    let mut envoy = envoy;
    wait_for_port(ports.admin, Duration::from_secs(120), &mut envoy);

    let started = Instant::now();
    let mut sidecar = start_sidecar(dir, &config);
    let live = eventually(Duration::from_secs(300), || async {
        match http_get(("127.0.0.1", ports.admin), "localhost", "/ready", &[]).await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let cold_start = started.elapsed();
    live.unwrap_or_else(|e| panic!("Envoy never became LIVE with {count} secrets: {e}\n{}", sidecar.tail()));
    sidecar.assert_running();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = sidecar.pid();
    let (rss_mib, hwm_mib) = (status_kib(pid, "VmRSS:") as f64 / 1024.0, status_kib(pid, "VmHWM:") as f64 / 1024.0);

    // One changed certificate while all are loaded.
    let target = count / 2;
    let sni = domain(target);
    let https = ("127.0.0.1", ports.https);
    let before = serial_of(&tls_leaf(tls_config_unverified(), https, &sni).await.unwrap_or_else(|e| panic!("{e}")));
    let (modified_before, draining_before) = (
        envoy_stat(ports.admin, "listener_manager.listener_modified").await,
        envoy_stat(ports.admin, "listener_manager.total_filter_chains_draining").await,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-acme"))
        .args(["renew", &name(target), "--force", "--config"])
        .arg(dir.join("proxy-acme.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "renew: {}\n{}", String::from_utf8_lossy(&out.stderr), sidecar.tail());
    let renewed = Instant::now();
    loop {
        if let Ok(der) = tls_leaf(tls_config_unverified(), https, &sni).await {
            if serial_of(&der) != before {
                break;
            }
        }
        assert!(renewed.elapsed() < Duration::from_secs(60), "no new serial for {sni}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let push = renewed.elapsed();
    let modified = envoy_stat(ports.admin, "listener_manager.listener_modified").await - modified_before;
    let draining = envoy_stat(ports.admin, "listener_manager.total_filter_chains_draining").await.max(draining_before);
    drop((sidecar, envoy, pebble, tmp));
    Run { count, fill, cold_start, rss_mib, hwm_mib, push, modified, draining }
}

#[tokio::main]
async fn main() {
    let big: usize = std::env::var("SCALE_BENCH_CERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let sizes = [100, big];
    let mut runs = Vec::new();
    for count in sizes {
        let run = run(count).await;
        eprintln!("scale: {run:?}");
        runs.push(run);
    }
    let (small, large) = (&runs[0], &runs[1]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let mut table = String::new();
    for r in &runs {
        table.push_str(&format!(
            "| {} | {:.1} s | {:.0} ms | {:.1} MiB | {:.1} MiB | {:.0} ms | {} | {} |\n",
            r.count,
            r.fill.as_secs_f64(),
            ms(r.cold_start),
            r.rss_mib,
            r.hwm_mib,
            ms(r.push),
            r.modified,
            r.draining
        ));
    }
    let report = format!(
        "## Scale: {big} certificates\n\n\
         Certificates from a local test CA (ECDSA P-256) are written with the store's own API; one real Envoy \
         (`--concurrency 1`) has one filter chain per certificate, selected by SNI, each with its SDS secret from the \
         sidecar (gRPC, Unix socket), and waits for all of them; the sidecar is started and the clock runs until Envoy \
         is LIVE (every secret delivered). Then `renew NAME --force` orders one certificate from Pebble and the clock \
         runs from the CLI's return until a TLS client is served the new serial. 100 certificates is the same-run \
         baseline.\n\n\
         Command: `make bench` (`cargo bench -p proxy-acme --bench scale`; SCALE_BENCH_CERTS).\n\n\
         | certificates | store fill | cold start to Envoy LIVE | sidecar RSS | sidecar peak RSS | one-change push | listener modified | filter chains draining |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n{table}\n\
         - Goal: start-up < 5 s: **{}** ({:.2} s; {:.1}× the 100-certificate start-up).\n\
         - Goal: RSS < 100 MiB: **{}** ({:.1} MiB, peak {:.1} MiB).\n\
         - Goal: one-change push < 1 s with no drain: **{}** ({:.0} ms; listener modified {} times, {} filter chains draining).\n",
        verdict(large.cold_start < Duration::from_secs(5)),
        large.cold_start.as_secs_f64(),
        large.cold_start.as_secs_f64() / small.cold_start.as_secs_f64().max(1e-9),
        verdict(large.hwm_mib < 100.0),
        large.rss_mib,
        large.hwm_mib,
        verdict(large.push < Duration::from_secs(1) && large.modified == 0 && large.draining == 0),
        ms(large.push),
        large.modified,
        large.draining,
    );
    println!("{report}");
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(out.join("scale.md"), &report).unwrap_or_else(|e| panic!("{e}"));
}
