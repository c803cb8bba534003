//! Real components for end-to-end tests: each is a drop-guarded child process
//! on free loopback ports in the test's temp dir, killed by pid on drop.
//! A missing component fails the test with what to install; nothing skips.

#![allow(dead_code, unreachable_pub)]

pub mod net;
pub mod procs;

use std::path::{Path, PathBuf};

pub use net::*;
pub use procs::*;

/// The workspace root (where `make` runs).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
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
