//! This replica's copy of every pending challenge on the shared board,
//! kept by an etcd watch. A validation request for a token or SNI (from
//! the CA, or from anyone on the internet) is answered from the copy:
//! an unknown one costs no store read. Only while the watch is down are
//! reads passed to etcd.
//!
//! A post returns once this replica's own watch has delivered it, so by the
//! time the CA is told to validate, the post is in the watch stream every
//! replica follows (one raft log; their members deliver it within moments,
//! long before a validator connects).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use super::etcd::EtcdStore;
use super::StoreError;

/// The copy. `None` in `posts`: not following the store now.
#[derive(Debug)]
pub struct Mirror {
    posts: RwLock<Option<HashMap<String, Vec<u8>>>>,
    /// The store revision the copy has reached.
    revision: watch::Sender<i64>,
}

impl Default for Mirror {
    fn default() -> Self {
        Self { posts: RwLock::new(None), revision: watch::channel(0).0 }
    }
}

impl Mirror {
    /// The post under `key` (`Some(None)`: none), or `None` while the copy
    /// is not live and only the store can tell.
    pub fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let posts = self.posts.read().unwrap_or_else(|e| e.into_inner());
        posts.as_ref().map(|posts| posts.get(key).cloned())
    }

    fn reset(&self, posts: HashMap<String, Vec<u8>>, revision: i64) {
        *self.posts.write().unwrap_or_else(|e| e.into_inner()) = Some(posts);
        self.revision.send_replace(revision);
    }

    fn apply(&self, key: String, value: Option<Vec<u8>>, revision: i64) {
        if let Some(posts) = self.posts.write().unwrap_or_else(|e| e.into_inner()).as_mut() {
            match value {
                Some(value) => posts.insert(key, value),
                None => posts.remove(&key),
            };
        }
        self.revision.send_if_modified(|seen| {
            let newer = revision > *seen;
            *seen = (*seen).max(revision);
            newer
        });
    }

    fn lost(&self) {
        *self.posts.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Waits until the copy has reached `revision`, for at most `within`;
    /// true when it has.
    pub async fn reached(&self, revision: i64, within: Duration) -> bool {
        let mut seen = self.revision.subscribe();
        tokio::time::timeout(within, seen.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Keeps `mirror` following `<prefix>challenges/` until the store is dropped.
pub(super) fn follow(store: &Arc<EtcdStore>, mirror: Arc<Mirror>) {
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        loop {
            let Some(live) = store.upgrade() else { return };
            let result = follow_once(&live, &mirror).await;
            drop(live);
            mirror.lost();
            let why = result.err().map_or_else(|| "the watch ended".to_owned(), |e| e.to_string());
            tracing::warn!(error = %why, "challenge watch lost; asking etcd directly until it is back");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

async fn follow_once(store: &EtcdStore, mirror: &Mirror) -> Result<(), StoreError> {
    let prefix = store.board_key("");
    let prefix = prefix.as_str();
    let listed = store.call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }).await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let name = |key: &[u8]| std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(prefix)).map(str::to_owned);
    let posts = listed.kvs().iter().filter_map(|kv| Some((name(kv.key())?, kv.value().to_vec()))).collect();
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = store
        .call(|mut c| {
            let options = options.clone();
            async move { c.watch(prefix, Some(options)).await }
        })
        .await?;
    mirror.reset(posts, revision);
    while let Some(response) = stream.message().await.map_err(|e| StoreError::Unavailable(e.to_string()))? {
        if response.canceled() {
            return Err(StoreError::Unavailable(format!("watch canceled: {}", response.cancel_reason())));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Some(key) = name(kv.key()) else { continue };
            let value = (event.event_type() == EventType::Put).then(|| kv.value().to_vec());
            mirror.apply(key, value, kv.mod_revision());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_from_the_copy_only_while_live() {
        let mirror = Mirror::default();
        assert_eq!(mirror.get("http-01/t"), None, "not live: ask the store");
        mirror.reset(HashMap::from([("http-01/t".to_owned(), b"a".to_vec())]), 5);
        assert_eq!(mirror.get("http-01/t"), Some(Some(b"a".to_vec())));
        assert_eq!(mirror.get("http-01/unknown"), Some(None), "live: unknown is unknown");
        mirror.apply("http-01/u".into(), Some(b"b".to_vec()), 7);
        assert!(mirror.reached(7, Duration::from_millis(10)).await);
        assert!(!mirror.reached(8, Duration::from_millis(10)).await);
        mirror.apply("http-01/t".into(), None, 8);
        assert_eq!(mirror.get("http-01/t"), Some(None));
        mirror.lost();
        assert_eq!(mirror.get("http-01/u"), None);
    }
}
