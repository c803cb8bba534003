//! Envoy bootstraps with one plain-HTTP listener and the HTTP filters a test
//! chooses: for the mesh-style filter entry (envoy/mesh-http-filter.yaml)
//! and the filter-cost benchmark.

use std::path::Path;

/// `text` with every line indented by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// `text` (a YAML mapping at column 0) as a list item.
pub fn item(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    std::iter::once(format!("- {first}\n")).chain(lines.map(|l| format!("  {l}\n"))).collect()
}

/// envoy/mesh-http-filter.yaml (a list item), with `wasm` as the module.
pub fn shipped_mesh_filter(wasm: &Path) -> String {
    let text = std::fs::read_to_string(super::workspace_root().join("envoy/mesh-http-filter.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let text =
        super::render(&text, &[("/usr/local/lib/proxy-acme/proxy_acme_filter.wasm", wasm.display().to_string())]);
    text.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect()
}

/// One listener on `port` (admin on `admin`): `routes` (YAML mappings) in one
/// virtual host, `http_filters` (YAML list items) before the router, and a
/// STATIC loopback cluster per `(name, port)`.
pub fn http_bootstrap(
    port: u16,
    admin: u16,
    routes: &[String],
    http_filters: &str,
    clusters: &[(&str, u16)],
) -> String {
    let routes: String = routes.iter().map(|r| item(r)).collect();
    let router = item(
        "name: envoy.filters.http.router\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
    );
    let clusters: String = clusters
        .iter()
        .map(|(name, port)| {
            item(&format!(
                "name: {name}\ntype: STATIC\nconnect_timeout: 1s\nload_assignment:\n  cluster_name: {name}\n  endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]\n"
            ))
        })
        .collect();
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            name: http
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{}          http_filters:
{}  clusters:
{}"#,
        indent(&routes, 14),
        indent(&format!("{http_filters}{router}"), 10),
        indent(&clusters, 2),
    )
}
