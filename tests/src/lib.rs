//! Real components for the end-to-end suites (tests/) and the benches
//! (benches/): each is a drop-guarded child process on free loopback ports
//! in the test's temp dir, killed by pid on drop. A missing component fails
//! the test with what to install; nothing skips.
//!
//! The suites and benches run the `proxy-acme` binary found by
//! [`proxy_acme_bin`]; `make test` and `make bench` build it first.

// Test-support code, not an API: its public types are process guards and
// connections the suites hold, never print, and would gain nothing from a
// Debug impl. (As `mod support;` inside each test binary the workspace lint
// never saw them as public.)
#![allow(missing_debug_implementations)]

pub mod a2c;
pub mod ari_front;
pub mod bind;
pub mod ca_front;
pub mod etcd;
pub mod guides;
pub mod mesh;
pub mod net;
pub mod nginx;
pub mod pdns;
pub mod procs;
pub mod scale;
pub mod stack;
pub mod stats;
pub mod strict_csr;
pub mod tinyproxy;

use std::path::{Path, PathBuf};

pub use a2c::{A2c, A2cOptions};
pub use bind::Bind;
pub use net::*;
pub use nginx::{shipped_site, Nginx};
pub use pdns::PowerDns;
pub use procs::*;
pub use stack::*;

/// The workspace root (where `make` runs): this crate is its `tests/`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `proxy-acme` binary under test: `PROXY_ACME_BIN` if set, else the one
/// cargo built into the profile directory of the running test or bench
/// (`target/<profile>/deps/<name>-<hash>` runs `target/<profile>/proxy-acme`).
///
/// Cargo gives `CARGO_BIN_EXE_*` only to the binary's own package, so the
/// binary is built beforehand, with the features the test or bench build
/// resolves so the two share the sidecar library: `make test` runs `cargo
/// build --workspace --bins --tests` (debug, as the tests), `make bench`
/// `cargo build --profile bench -p proxy-acme -p proxy-acme-e2e --bins
/// --benches` (target/release, as `cargo bench`). Nothing here rebuilds it,
/// but a binary older than a file of sidecar/src is refused, so a suite run
/// by hand after an edit never tests yesterday's daemon.
pub fn proxy_acme_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PROXY_ACME_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "PROXY_ACME_BIN={} is not a file", path.display());
        return path;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("where is this test executable? {e}"));
    let mut dir = exe.parent().unwrap_or_else(|| panic!("{} has no directory", exe.display()));
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join("proxy-acme");
    if !path.is_file() {
        let build = if dir.ends_with("release") {
            "`cargo build --profile bench -p proxy-acme -p proxy-acme-e2e --bins --benches` (`make bench` does)"
        } else {
            "`cargo build --workspace --bins --tests` (`make test` does)"
        };
        panic!("{} is missing: build it with {build}, or point PROXY_ACME_BIN at one", path.display());
    }
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    if let (Some(built), Some((source, edited))) = (built, newest(&workspace_root().join("sidecar/src"))) {
        assert!(
            edited <= built,
            "{} is older than {}: build it again (`make test` and `make bench` do)",
            path.display(),
            source.display()
        );
    }
    path
}

/// The most recently modified file under `dir`, and when.
fn newest(dir: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let mut best: Option<(PathBuf, std::time::SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok().map(|t| (path, t))
        };
        if let Some((p, t)) = candidate {
            if best.as_ref().is_none_or(|(_, b)| t > *b) {
                best = Some((p, t));
            }
        }
    }
    best
}

/// The wasm filter, built by `make wasm` (or `PROXY_ACME_WASM`).
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("PROXY_ACME_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip1/release/proxy_acme_filter.wasm"));
    assert!(path.exists(), "{} is missing: run `make wasm` (or `make test`, which builds it)", path.display());
    path
}

/// Substitutes `(from, to)` pairs in a shipped config, failing loudly when a
/// `from` is not there: the shipped file and the test must not drift apart.
pub fn render(template: &str, substitutions: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (from, to) in substitutions {
        assert!(out.contains(from), "shipped config no longer contains {from:?}");
        out = out.replace(from, to);
    }
    out
}

/// Polls `f` every 200 ms until it returns `Ok` or `timeout` passes; returns
/// the last error on time-out.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// Ports of one stack: Envoy's listeners and admin, the app, the sidecar.
#[derive(Debug, Clone, Copy)]
pub struct StackPorts {
    pub http: u16,
    pub https: u16,
    pub admin: u16,
    pub app: u16,
    pub sidecar: u16,
    /// The sidecar's ops listener (`/healthz`, `/readyz`, `/metrics`).
    pub ops: u16,
    /// The sidecar's TLS-ALPN-01 responder.
    pub tls_alpn: u16,
}

impl StackPorts {
    pub fn free() -> Self {
        Self {
            http: free_port(),
            https: free_port(),
            admin: free_port(),
            app: free_port(),
            sidecar: free_port(),
            ops: free_port(),
            tls_alpn: free_port(),
        }
    }
}

/// The shipped envoy/envoy-file-sds.yaml with this stack's ports and paths
/// under `sds`, and one file SDS secret per name.
pub fn shipped_file_sds_envoy_config(ports: &StackPorts, sds: &Path, names: &[&str]) -> String {
    let template =
        std::fs::read_to_string(workspace_root().join("envoy/envoy-file-sds.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let config = render(
        &template,
        &[
            ("port_value: 9901", format!("port_value: {}", ports.admin)),
            ("port_value: 8080", format!("port_value: {}", ports.http)),
            ("port_value: 8443", format!("port_value: {}", ports.https)),
            ("port_value: 8081", format!("port_value: {}", ports.app)),
            ("port_value: 8555", format!("port_value: {}", ports.sidecar)),
            ("port_value: 8556", format!("port_value: {}", ports.tls_alpn)),
            ("address: 0.0.0.0", "address: 127.0.0.1".to_owned()),
            ("/usr/local/lib/proxy-acme/proxy_acme_filter.wasm", wasm_path().display().to_string()),
            ("/etc/envoy/sds", sds.display().to_string()),
        ],
    );
    let start = config.find("            - name: demo").unwrap_or_else(|| panic!("no demo secret"));
    let end_marker = format!("path: {}/demo ", sds.display());
    let end = config[start..]
        .find(&end_marker)
        .and_then(|i| config[start + i..].find('\n').map(|j| start + i + j + 1))
        .unwrap_or_else(|| panic!("no watched_directory"));
    let block = &config[start..end];
    let blocks: String = names
        .iter()
        .map(|n| block.replace("name: demo", &format!("name: {n}")).replace("/demo", &format!("/{n}")))
        .collect();
    format!("{}{blocks}{}", &config[..start], &config[end..])
}

/// The shipped envoy/envoy.yaml with this stack's ports and paths.
pub fn shipped_envoy_config(ports: &StackPorts, sds_socket: &Path) -> String {
    let template = std::fs::read_to_string(workspace_root().join("envoy/envoy.yaml")).unwrap_or_else(|e| panic!("{e}"));
    render(
        &template,
        &[
            ("port_value: 9901", format!("port_value: {}", ports.admin)),
            ("port_value: 8080", format!("port_value: {}", ports.http)),
            ("port_value: 8443", format!("port_value: {}", ports.https)),
            ("port_value: 8081", format!("port_value: {}", ports.app)),
            ("port_value: 8555", format!("port_value: {}", ports.sidecar)),
            ("port_value: 8556", format!("port_value: {}", ports.tls_alpn)),
            ("address: 0.0.0.0", "address: 127.0.0.1".to_owned()),
            ("/usr/local/lib/proxy-acme/proxy_acme_filter.wasm", wasm_path().display().to_string()),
            ("/run/proxy-acme/sds.sock", sds_socket.display().to_string()),
        ],
    )
}

/// The shipped envoy/envoy.yaml changed as docs/getting-started-envoy.md
/// says for an Envoy whose ADS belongs to another control plane: no
/// `ads_config`, and the secret over its own SDS stream (`api_type` GRPC or
/// DELTA_GRPC), with the `sds_config` taken from that page.
pub fn per_secret_sds_envoy_config(ports: &StackPorts, sds_socket: &Path, api_type: &str) -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/getting-started-envoy.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let section = doc.split("**When another control plane owns ADS.**").nth(1).unwrap_or_else(|| panic!("no section"));
    let snippet =
        section.split("```yaml\n").nth(1).and_then(|s| s.split("```").next()).unwrap_or_else(|| panic!("no yaml"));
    let snippet = snippet.replace("api_type: GRPC          # or DELTA_GRPC", &format!("api_type: {api_type}"));
    let config = shipped_envoy_config(ports, sds_socket);
    // The shipped sds_config block, indented as in the listener.
    let start = config.find("              sds_config:\n").unwrap_or_else(|| panic!("no sds_config in envoy.yaml"));
    let end_marker = "ads: {}  # over dynamic_resources.ads_config above\n";
    let end =
        config[start..].find(end_marker).map(|i| start + i + end_marker.len()).unwrap_or_else(|| panic!("no ads"));
    let indented: String = snippet.lines().map(|l| format!("              {l}\n")).collect();
    let config = format!("{}{indented}{}", &config[..start], &config[end..]);
    let ads_start = config.find("dynamic_resources:\n").unwrap_or_else(|| panic!("no dynamic_resources"));
    let ads_end = config.find("\nstatic_resources:").unwrap_or_else(|| panic!("no static_resources"));
    format!("{}{}", &config[..ads_start], &config[ads_end + 1..])
}

/// A sidecar config for one Pebble: state, sockets and ports under `dir`.
/// `resolver_extra` and `tail` are appended TOML (resolver options and
/// further sections or certificates).
pub fn sidecar_config(
    dir: &Path,
    ports: &StackPorts,
    pebble: &Pebble,
    resolver_extra: &str,
    certificates: &str,
) -> String {
    use std::os::unix::fs::PermissionsExt;
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
    format!(
        r#"
[storage]
directory = "{state}"

[listen]
http = "127.0.0.1:{sidecar}"
ops = "127.0.0.1:{ops}"
tls_alpn = "127.0.0.1:{tls_alpn}"

[envoy]
sds_socket = "{dir}/sds.sock"

[admin]
socket = "{dir}/admin.sock"

[resolvers.pebble]
email = "ops@proxy-acme.test"
ca_server = "{directory}"
ca_certificate = "{ca}"
http_challenge = {{}}
{resolver_extra}

{certificates}
"#,
        state = state.display(),
        sidecar = ports.sidecar,
        ops = ports.ops,
        tls_alpn = ports.tls_alpn,
        dir = dir.display(),
        directory = pebble.directory_url(),
        ca = pebble.minica.root_pem_path.display(),
    )
}

/// One counter or gauge from Envoy's admin `/stats`; panics when Envoy has no such stat.
pub async fn envoy_stat(admin: u16, name: &str) -> u64 {
    let path = format!("/stats?filter=^{name}$");
    let (_, body) = http_get(("127.0.0.1", admin), "localhost", &path, &[]).await.unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no stat {name} in {body:?}"))
}
