//! The container images, built by buildah from the shipped Containerfiles
//! as `make image` and `make image-filter` stage them (`FROM scratch`: no
//! registry needed) in a private image store, exported as OCI archives and
//! opened:
//! - the filter's, for Istio's `WasmPlugin`: one layer holding exactly
//!   `plugin.wasm`, the filter the tests run;
//! - the sidecar's: the static binary (`make image-binary`, musl), which
//!   runs from the extracted layer on this host with no library, the CA
//!   bundle, the example configuration it `check`s, a non-root user and
//!   the entrypoint. (This machine cannot run containers; the binary is run
//!   from the image's own layer instead.)

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

/// A private image store under `dir` (vfs: works without overlay support).
fn buildah(dir: &Path) -> Command {
    let mut command = Command::new(require("buildah", "apt-get install buildah"));
    command
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    command
}

/// Builds `containerfile` on `context` as `tag`, exports it and extracts
/// the OCI layout under `dir/<tag>`; returns the layout and its manifest.
fn build_and_open(
    dir: &Path,
    containerfile: &str,
    context: &Path,
    tag: &str,
) -> (std::path::PathBuf, serde_json::Value) {
    let file = workspace_root().join("packaging/container").join(containerfile);
    run(buildah(dir).args(["bud", "--quiet", "-f"]).arg(&file).args(["-t", tag]).arg(context));
    let archive = dir.join(format!("{tag}.tar").replace(':', "_"));
    run(buildah(dir).args(["push", "--quiet", tag]).arg(format!("oci-archive:{}", archive.display())));
    let layout = dir.join(tag.replace(':', "_"));
    std::fs::create_dir_all(&layout).unwrap_or_else(|e| panic!("{e}"));
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(&layout, &index["manifests"][0]["digest"]));
    (layout, manifest)
}

#[test]
fn the_sidecar_image_is_a_static_binary_its_ca_bundle_and_config_run_as_non_root() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = scratch.path();
    let binary = workspace_root().join("target/x86_64-unknown-linux-musl/release/proxy-acme");
    assert!(binary.is_file(), "{} is missing: `make image-binary` (make test runs it)", binary.display());
    let context = s.join("context");
    std::fs::create_dir_all(&context).unwrap_or_else(|e| panic!("{e}"));
    for (from, name) in [
        (binary, "proxy-acme"),
        (std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt"), "ca-certificates.crt"),
        (workspace_root().join("packaging/proxy-acme.toml"), "proxy-acme.toml"),
    ] {
        std::fs::copy(&from, context.join(name)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    let (layout, manifest) = build_and_open(s, "Containerfile", &context, "proxy-acme:test");
    let config = json(&blob(&layout, &manifest["config"]["digest"]));
    assert_eq!(config["config"]["User"], "65532:65532", "{config}");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/bin/proxy-acme"]), "{config}");
    let root = s.join("rootfs");
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
    let mut files = Vec::new();
    for layer in manifest["layers"].as_array().unwrap_or_else(|| panic!("{manifest}")) {
        let layer = blob(&layout, &layer["digest"]);
        let listed = String::from_utf8_lossy(&run(Command::new("tar").arg("-tf").arg(&layer)).stdout).into_owned();
        files.extend(listed.lines().filter(|l| !l.ends_with('/')).map(|l| l.trim_start_matches("./").to_owned()));
        run(Command::new("tar").arg("-xf").arg(&layer).arg("-C").arg(&root));
    }
    files.sort();
    assert_eq!(
        files,
        ["etc/proxy-acme/proxy-acme.toml", "etc/ssl/certs/ca-certificates.crt", "usr/bin/proxy-acme"],
        "nothing but the binary, the CA bundle and the example"
    );
    // Static: no program interpreter (PT_INTERP) in its ELF header, and it
    // runs from the layer with nothing else.
    let elf = std::fs::read(root.join("usr/bin/proxy-acme")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!elf.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"), "dynamically linked against glibc");
    let version = run(Command::new(root.join("usr/bin/proxy-acme")).arg("--version"));
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("proxy-acme {}", env!("CARGO_PKG_VERSION")));
    let checked = run(Command::new(root.join("usr/bin/proxy-acme"))
        .args(["check", "--config"])
        .arg(root.join("etc/proxy-acme/proxy-acme.toml")));
    assert!(String::from_utf8_lossy(&checked.stdout).contains(": ok (1 resolvers, 1 certificates)"));
}

#[test]
fn the_filter_image_holds_plugin_wasm_in_one_layer() {
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = scratch.path();
    let wasm = workspace_root().join("target/wasm32-wasip1/release/proxy_acme_filter.wasm");
    assert!(wasm.is_file(), "{} is missing: `make wasm`", wasm.display());
    let context = s.join("context");
    std::fs::create_dir_all(&context).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&wasm, context.join("plugin.wasm")).unwrap_or_else(|e| panic!("{e}"));
    let (layout, manifest) = build_and_open(s, "Containerfile.filter", &context, "proxy-acme-filter:test");
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
