//! The challenge board of the file store: the answers of orders in flight
//! (HTTP-01 key authorizations, TLS-ALPN-01 certificates, DNS-01 records)
//! kept in `<dir>/challenges/<kind>/<key in hex>` as well as in memory, so
//! that a daemon killed after telling the CA "ready" answers the CA's
//! validator again as soon as it listens, before it has reopened the order
//! (the crash trials lost most of their extra orders that way: the
//! validator came while the sidecar restarted), and removes the DNS-01
//! records a killed run left.
//!
//! One process owns the file store: reads are served from the copy loaded
//! at open. A post is a file replaced by rename, not fsynced: what it
//! survives is a killed process (the page cache stays); after a power loss
//! the CA has long given up on the order. Each file holds its expiry
//! (seconds since the Unix epoch) on the first line, then the post.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::board::ChallengeBoard;
use super::spares::Spares;
use super::StoreError;
use crate::atomic;

/// The most read of one post (a TLS-ALPN-01 certificate and key is ~2 KiB).
const POST_CAP: u64 = 1 << 16;
/// The most posts loaded at open (a hostile directory cannot fill memory).
const MAX_POSTS: usize = 10_000;

type Posts = HashMap<(String, String), (Vec<u8>, u64)>;

/// Pending challenges under `<dir>/challenges`.
#[derive(Debug)]
pub struct FileBoard {
    dir: PathBuf,
    posts: Mutex<Posts>,
    /// Where taken-down posts go, for reuse (shared with the file store).
    spares: Arc<Spares>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(name: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> =
        (0..name.len()).step_by(2).map(|i| name.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

impl FileBoard {
    /// Opens (creating, 0700) `<root>/challenges` and loads the posts that
    /// have not expired; expired and unreadable ones are removed.
    #[cfg(test)]
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, Arc::new(Spares::open(root)?))
    }

    /// [`Self::open`], retiring spent posts into the store's `spares`.
    pub fn open_with(root: &Path, spares: Arc<Spares>) -> Result<Self, StoreError> {
        let dir = root.join("challenges");
        atomic::own_dir(&dir, 0o700)?;
        let mut posts = Posts::new();
        let now = now_secs();
        for kind in fs::read_dir(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?.flatten() {
            let kind_name = kind.file_name().to_string_lossy().into_owned();
            if !kind.file_type().is_ok_and(|t| t.is_dir()) || atomic::is_temp(&kind_name) {
                continue;
            }
            let Ok(entries) = fs::read_dir(kind.path()) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if atomic::is_temp(&name) {
                    continue;
                }
                match (unhex(&name), read_post(&entry.path())) {
                    (Some(key), Some((value, expires))) if expires > now && posts.len() < MAX_POSTS => {
                        posts.insert((kind_name.clone(), key), (value, expires));
                    }
                    _ => {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
        if !posts.is_empty() {
            tracing::info!(
                posts = posts.len(),
                "challenge answers of orders in flight before a restart are served again"
            );
        }
        Ok(Self { dir, posts: Mutex::new(posts), spares })
    }

    fn posts(&self) -> std::sync::MutexGuard<'_, Posts> {
        self.posts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, kind: &str, key: &str) -> PathBuf {
        self.dir.join(kind).join(hex(key))
    }
}

/// A post file: the expiry line, then the value.
fn read_post(path: &Path) -> Option<(Vec<u8>, u64)> {
    let data = atomic::read_file(path, POST_CAP).ok()?;
    let newline = data.iter().position(|b| *b == b'\n')?;
    let expires = std::str::from_utf8(&data[..newline]).ok()?.trim().parse().ok()?;
    Some((data[newline + 1..].to_vec(), expires))
}

#[async_trait]
impl ChallengeBoard for FileBoard {
    async fn post(&self, kind: &'static str, key: &str, value: &[u8], ttl_secs: i64) -> Result<(), StoreError> {
        let expires = now_secs().saturating_add(u64::try_from(ttl_secs).unwrap_or(0));
        let (dir, path) = (self.dir.join(kind), self.path(kind, key));
        let mut data = format!("{expires}\n").into_bytes();
        data.extend_from_slice(value);
        let spares = Arc::clone(&self.spares);
        let written = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            atomic::own_dir(&dir, 0o700)?;
            Ok(spares.write(&path, &data, 0o600)?)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())));
        // Served from memory even when the disk refused it: the order goes
        // on; only a restart would miss it.
        self.posts().insert((kind.to_owned(), key.to_owned()), (value.to_vec(), expires));
        written
    }

    async fn take_down(&self, kind: &'static str, key: &str) {
        self.posts().remove(&(kind.to_owned(), key.to_owned()));
        let (path, spares) = (self.path(kind, key), Arc::clone(&self.spares));
        let _ = tokio::task::spawn_blocking(move || spares.retire(&path)).await;
    }

    async fn read(&self, kind: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = now_secs();
        Ok(self.posts().get(&(kind.to_owned(), key.to_owned())).filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone()))
    }

    fn copied(&self) -> bool {
        true
    }

    async fn list(&self, kind: &'static str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let now = now_secs();
        Ok(self
            .posts()
            .iter()
            .filter(|((k, _), (_, exp))| k == kind && *exp > now)
            .map(|((_, key), (value, _))| (key.clone(), value.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_survive_a_restart_until_taken_down_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let board = FileBoard::open(dir.path()).unwrap();
        board.post("http-01", "tok-1", b"{\"a\":1}", 600).await.unwrap();
        board.post("http-01", "tok-2", b"gone", 600).await.unwrap();
        board.post("dns-01", "_acme-challenge.a.test", b"rec", 600).await.unwrap();
        board.post("http-01", "old", b"expired", 0).await.unwrap();
        board.take_down("http-01", "tok-2").await;
        let file = dir.path().join("challenges/http-01").join(hex("tok-1"));
        assert_eq!(
            fs::metadata(&file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777).unwrap(),
            0o600
        );
        // A killed process: a new board reads what the old one left.
        let reopened = FileBoard::open(dir.path()).unwrap();
        assert_eq!(reopened.read("http-01", "tok-1").await.unwrap().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(reopened.read("http-01", "tok-2").await.unwrap(), None);
        assert_eq!(reopened.read("http-01", "old").await.unwrap(), None, "expired");
        assert!(!dir.path().join("challenges/http-01").join(hex("old")).exists(), "expired posts are removed at open");
        assert_eq!(reopened.list("dns-01").await.unwrap(), [("_acme-challenge.a.test".to_owned(), b"rec".to_vec())]);
        assert!(reopened.copied());
    }

    #[tokio::test]
    async fn hostile_files_in_the_board_are_dropped_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let kind = dir.path().join("challenges/http-01");
        fs::create_dir_all(&kind).unwrap();
        fs::write(kind.join("zz-not-hex"), "99999999999\nx").unwrap();
        fs::write(kind.join(hex("no-expiry")), "garbage").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", kind.join(hex("link"))).unwrap();
        let board = FileBoard::open(dir.path()).unwrap();
        for key in ["zz-not-hex", "no-expiry", "link"] {
            assert_eq!(board.read("http-01", key).await.unwrap(), None, "{key}");
        }
        assert_eq!(fs::read_dir(&kind).unwrap().count(), 0, "all removed");
        assert!(unhex("zz").is_none() && unhex(&hex("é.test")).as_deref() == Some("é.test"));
    }
}
