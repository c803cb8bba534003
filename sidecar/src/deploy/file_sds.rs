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
//!
//! Below the root nothing is followed that this module did not create:
//! `<name>` must be a real directory, `..data` a link to a directory
//! beside it and `secret.json` the link to `..data/secret.json`;
//! anything else there is refused with an error naming it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{DeployError, Sink};
use crate::atomic;
use crate::cert::Bundle;

const DATA: &str = "..data";
const FILE: &str = "secret.json";
/// The most read back of a watched file (an SDS secret, a listener).
const READ_CAP: u64 = 16 << 20;

/// Writes SDS resource files for Envoy to watch.
#[derive(Debug, Clone)]
pub struct FileSdsSink {
    root: PathBuf,
}

impl FileSdsSink {
    /// Creates `root` (0700) if missing.
    pub fn new(root: &Path) -> Result<Self, DeployError> {
        atomic::create_dir(root, 0o700)?;
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

/// Writes a new version of `name`'s file and swaps `..data`; `false` when
/// the file already holds this bundle.
fn write_version(root: &Path, name: &str, contents: &str) -> Result<bool, DeployError> {
    let dir = root.join(name);
    atomic::own_dir(&dir, 0o700)?;
    write_watched(&dir, FILE, contents)
}

/// Writes `contents` as `<dir>/<file>` behind a `..data` symlink swap, for
/// an Envoy `path_config_source` with `watched_directory: <dir>`; `false`
/// when the file already holds `contents`.
pub fn write_watched(dir: &Path, file_name: &str, contents: &str) -> Result<bool, DeployError> {
    atomic::create_dir(dir, 0o700)?;
    let file_link = dir.join(file_name);
    let link_target = format!("{DATA}/{file_name}");
    let has_link = match fs::symlink_metadata(&file_link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(&file_link).map_err(atomic::on(&file_link))?;
            if target != Path::new(&link_target) {
                let why = atomic::Refused::StrayLink(target.display().to_string());
                return Err(atomic::FileError::refused(&file_link, why).into());
            }
            true
        }
        Ok(meta) => {
            let why = atomic::Refused::NotLink(atomic::kind_of(meta.file_type()));
            return Err(atomic::FileError::refused(&file_link, why).into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(atomic::on(&file_link)(e).into()),
    };
    if let Some(current) = atomic::own_link(dir, DATA)? {
        let current = atomic::read_text(&dir.join(current).join(file_name), READ_CAP);
        if has_link && current.is_ok_and(|current| current == contents) {
            return Ok(false);
        }
    }
    let version = atomic::version_name("..v");
    atomic::write_version(dir, &version, &[(file_name, contents.as_bytes(), 0o600)])?;
    atomic::point_link(dir, DATA, Path::new(&version))?;
    if !has_link {
        std::os::unix::fs::symlink(&link_target, &file_link).map_err(atomic::on(&file_link))?;
        atomic::sync_dir(dir)?;
    }
    atomic::prune(dir, |entry| entry.starts_with("..v") && entry != version);
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

    #[tokio::test]
    async fn links_planted_in_a_secret_directory_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let sink = FileSdsSink::new(root.path()).unwrap();
        let bundle = Arc::new(crate::cert::placeholder(&["a.example".to_owned()]).unwrap());
        let dir = root.path().join("web");
        std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
        let err = sink.deploy("web", &bundle).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: is a symlink proxy-acme did not create; refusing to write through it", dir.display())
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "written outside");

        // secret.json pointed elsewhere, ..data pointed out of the directory
        fs::remove_file(&dir).unwrap();
        sink.deploy("web", &bundle).await.unwrap();
        let file = dir.join(FILE);
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
        let err = sink.deploy("web", &bundle).await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: is a symlink to \"/dev/zero\"", file.display())), "{err}");
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(format!("{DATA}/{FILE}"), &file).unwrap();
        let data = dir.join(DATA);
        fs::remove_file(&data).unwrap();
        std::os::unix::fs::symlink(outside.path(), &data).unwrap();
        let err = sink.deploy("web", &bundle).await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: is a symlink to", data.display())), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "written outside");
    }
}
