//! Envoy file SDS: for each certificate, `<root>/<name>/secret.json` holds
//! an SDS `Secret` with the PEM inline, for Envoy's `path_config_source`
//! with `watched_directory: <root>/<name>`:
//!
//! ```text
//! <root>/<name>/secret.json -> ..data/secret.json    (created once)
//! <root>/<name>/..data      -> ..v<nanos>/           (swapped by rename)
//! <root>/<name>/..v<nanos>/secret.json               (0600)
//! ```
//!
//! A new version directory is written and fsynced, then `..data` is
//! replaced with one `rename(2)`: the move Envoy watches for. Envoy never
//! reads a half-written file; the old version is removed afterwards. One
//! directory per certificate keeps a change to one secret from touching the
//! others, however many there are.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{DeployError, Sink};
use crate::cert::Bundle;

const DATA: &str = "..data";
const FILE: &str = "secret.json";

/// Writes SDS resource files for Envoy to watch.
#[derive(Debug, Clone)]
pub struct FileSdsSink {
    root: PathBuf,
}

impl FileSdsSink {
    /// Creates `root` (0700) if missing.
    pub fn new(root: &Path) -> Result<Self, DeployError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|source| DeployError::Directory { path: root.display().to_string(), source })?;
        Ok(Self { root: root.to_owned() })
    }

    /// The file Envoy's `path_config_source.path` names for `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name).join(FILE)
    }
}

/// The SDS resource file: one `Secret` named `name`, PEM inline.
pub fn resource(name: &str, bundle: &Bundle) -> String {
    serde_json::json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": name,
            "tls_certificate": {
                "certificate_chain": { "inline_string": bundle.fullchain_pem },
                "private_key": { "inline_string": bundle.key_pem.expose() },
            }
        }]
    })
    .to_string()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::Directory { path: path.display().to_string(), source }
}

/// Writes a new version of `name`'s file and swaps `..data`; `false` when
/// the file already holds this bundle.
fn write_version(root: &Path, name: &str, contents: &str) -> Result<bool, DeployError> {
    write_watched(&root.join(name), FILE, contents)
}

/// Writes `contents` as `<dir>/<file>` behind a `..data` symlink swap, for
/// an Envoy `path_config_source` with `watched_directory: <dir>`; `false`
/// when the file already holds `contents`.
pub fn write_watched(dir: &Path, file_name: &str, contents: &str) -> Result<bool, DeployError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    if fs::read_to_string(dir.join(file_name)).is_ok_and(|current| current == contents) {
        return Ok(false);
    }
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let version = format!("..v{nanos:024}");
    let tmp = dir.join(format!(".tmp{version}"));
    fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(io(&tmp))?;
    let file_path = tmp.join(file_name);
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file_path).map_err(io(&file_path))?;
    file.write_all(contents.as_bytes()).map_err(io(&file_path))?;
    file.sync_all().map_err(io(&file_path))?;
    drop(file);
    fs::File::open(&tmp).and_then(|d| d.sync_all()).map_err(io(&tmp))?;
    fs::rename(&tmp, dir.join(&version)).map_err(io(dir))?;

    let link_tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(&version, &link_tmp).map_err(io(&link_tmp))?;
    fs::rename(&link_tmp, dir.join(DATA)).map_err(io(dir))?;
    let file_link = dir.join(file_name);
    if fs::symlink_metadata(&file_link).is_err() {
        std::os::unix::fs::symlink(format!("{DATA}/{file_name}"), &file_link).map_err(io(&file_link))?;
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if (entry_name.starts_with("..v") && entry_name != version) || entry_name.starts_with(".tmp..v") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(true)
}

#[async_trait]
impl Sink for FileSdsSink {
    async fn deploy(&self, name: &str, bundle: &Arc<Bundle>) -> Result<(), DeployError> {
        let (root, owned, contents) = (self.root.clone(), name.to_owned(), resource(name, bundle));
        let written =
            tokio::task::spawn_blocking(move || write_version(&root, &owned, &contents)).await.map_err(|e| {
                DeployError::Directory { path: name.to_owned(), source: std::io::Error::other(e.to_string()) }
            })??;
        if written {
            tracing::info!(certificate = name, file = %self.path(name).display(), "SDS file written");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn each_change_is_a_new_version_behind_one_symlink_swap() {
        let root = tempfile::tempdir().unwrap();
        let sink = FileSdsSink::new(root.path()).unwrap();
        let first = crate::cert::placeholder(&["a.example".to_owned()]).unwrap();
        let second = crate::cert::placeholder(&["a.example".to_owned()]).unwrap();
        sink.deploy("web", &Arc::new(first.clone())).await.unwrap();
        sink.deploy("other", &Arc::new(second.clone())).await.unwrap();
        let path = sink.path("web");
        let parsed: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(parsed["resources"][0]["name"], "web");
        assert_eq!(
            parsed["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"],
            first.fullchain_pem
        );
        let data_before = fs::read_link(root.path().join("web/..data")).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        sink.deploy("web", &Arc::new(second.clone())).await.unwrap();
        let data_after = fs::read_link(root.path().join("web/..data")).unwrap();
        assert_ne!(data_before, data_after);
        assert!(!root.path().join("web").join(&data_before).exists(), "the old version is removed");
        let chain = |path: &Path| {
            let parsed: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
            parsed["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"].as_str().unwrap().to_owned()
        };
        assert_eq!(chain(&path), second.fullchain_pem);
        assert_eq!(chain(&sink.path("other")), second.fullchain_pem);

        sink.deploy("web", &Arc::new(second.clone())).await.unwrap();
        assert_eq!(fs::read_link(root.path().join("web/..data")).unwrap(), data_after, "unchanged: no new version");
    }
}
