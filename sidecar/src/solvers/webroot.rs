//! HTTP-01 from disk: each pending token is written to
//! `<webroot>/.well-known/acme-challenge/<token>` (temp file + rename, so a
//! server never reads half a file) and removed when the order ends.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a token file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WebrootError {
    #[error("token {0:?} is not base64url; refusing to use it as a file name")]
    Token(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A token file, removed when dropped.
#[derive(Debug)]
pub struct WebrootFile {
    path: PathBuf,
}

impl WebrootFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `key_authorization` to the token's file under `webroot`, readable
/// by the web server (0644).
pub fn publish(webroot: &Path, token: &str, key_authorization: &str) -> Result<WebrootFile, WebrootError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(WebrootError::Token(token.to_owned()));
    }
    let dir = webroot.join(".well-known/acme-challenge");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WebrootError::Io { path, source }
    };
    fs::DirBuilder::new().recursive(true).mode(0o755).create(&dir).map_err(io(&dir))?;
    let path = dir.join(token);
    let tmp = dir.join(format!(".{token}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp).map_err(io(&tmp))?;
    file.set_permissions(fs::Permissions::from_mode(0o644)).map_err(io(&tmp))?;
    file.write_all(key_authorization.as_bytes()).map_err(io(&tmp))?;
    drop(file);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(WebrootError::Io { path, source: e });
    }
    tracing::debug!(path = %path.display(), "webroot token written");
    Ok(WebrootFile { path })
}

impl Drop for WebrootFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove webroot token");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_token_readable_and_removes_it_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let file = publish(root.path(), "tok_-1", "tok_-1.thumb").unwrap();
        let path = root.path().join(".well-known/acme-challenge/tok_-1");
        assert_eq!(file.path(), path);
        assert_eq!(fs::read_to_string(&path).unwrap(), "tok_-1.thumb");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn refuses_tokens_that_are_not_file_names() {
        let root = tempfile::tempdir().unwrap();
        for token in ["", "../x", "a/b", "a.b"] {
            assert!(matches!(publish(root.path(), token, "k"), Err(WebrootError::Token(_))), "{token:?}");
        }
    }
}
