//! The filter's OCI image for Istio's `WasmPlugin`, built by buildah from
//! the shipped `packaging/container/Containerfile.filter` (as `make
//! image-filter` does, `FROM scratch`: no registry needed) in a private
//! image store, exported as an OCI archive and opened: one layer, holding
//! exactly `plugin.wasm`, the filter the tests run.

use std::path::Path;
use std::process::{Command, Output};

use proxy_acme_e2e::*;

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `blobs/sha256/<hex>` of an OCI layout for `digest` (`sha256:<hex>`).
fn blob(layout: &Path, digest: &serde_json::Value) -> std::path::PathBuf {
    let digest = digest.as_str().unwrap_or_else(|| panic!("digest {digest}"));
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

#[test]
fn the_filter_image_holds_plugin_wasm_in_one_layer() {
    let buildah = require("buildah", "apt-get install buildah");
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = scratch.path();
    let wasm = workspace_root().join("target/wasm32-wasip1/release/proxy_acme_filter.wasm");
    assert!(wasm.is_file(), "{} is missing: `make wasm`", wasm.display());
    let context = s.join("context");
    std::fs::create_dir_all(&context).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&wasm, context.join("plugin.wasm")).unwrap_or_else(|e| panic!("{e}"));
    let store = |command: &mut Command| {
        command
            .arg("--root")
            .arg(s.join("storage"))
            .arg("--runroot")
            .arg(s.join("run"))
            .args(["--storage-driver", "vfs"]);
    };
    let mut build = Command::new(&buildah);
    store(&mut build);
    build
        .args(["bud", "--quiet", "-f"])
        .arg(workspace_root().join("packaging/container/Containerfile.filter"))
        .args(["-t", "proxy-acme-filter:test"])
        .arg(&context);
    run(&mut build);
    let archive = s.join("filter.tar");
    let mut push = Command::new(&buildah);
    store(&mut push);
    push.args(["push", "--quiet", "proxy-acme-filter:test"]).arg(format!("oci-archive:{}", archive.display()));
    run(&mut push);

    let layout = s.join("layout");
    std::fs::create_dir_all(&layout).unwrap_or_else(|e| panic!("{e}"));
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(&layout, &index["manifests"][0]["digest"]));
    let layers = manifest["layers"].as_array().unwrap_or_else(|| panic!("{manifest}"));
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = blob(&layout, &layers[0]["digest"]);
    let listed = String::from_utf8_lossy(&run(Command::new("tar").arg("-tf").arg(&layer)).stdout).into_owned();
    let files: Vec<&str> = listed.lines().filter(|l| !l.ends_with('/')).collect();
    assert_eq!(files.iter().map(|f| f.trim_start_matches("./")).collect::<Vec<_>>(), ["plugin.wasm"], "{listed}");
    let out = s.join("out");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    run(Command::new("tar").arg("-xf").arg(&layer).arg("-C").arg(&out));
    let shipped = std::fs::read(out.join("plugin.wasm")).unwrap_or_else(|e| panic!("{e}"));
    assert!(shipped == std::fs::read(&wasm).unwrap_or_default(), "plugin.wasm is the filter the tests run");
}
