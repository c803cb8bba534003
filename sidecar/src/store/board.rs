//! Pending challenges shared between replicas. The replica that orders
//! posts each answer to the board before it tells the CA, and takes it down
//! afterwards; a replica the CA's validator reaches without the answer in
//! memory reads the board. Reads are linearizable, so an answer posted
//! before the CA was told is always found.
//!
//! Posts are kept apart by `kind`, the challenge type's name (`http-01`);
//! what a post holds is the solver's business (`solvers::posts`).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// Where pending challenges are shared.
#[async_trait]
pub trait ChallengeBoard: Send + Sync + std::fmt::Debug {
    /// Posts an answer for `ttl_secs`; returns once every replica can read it.
    async fn post(&self, kind: &'static str, key: &str, value: &[u8], ttl_secs: i64) -> Result<(), StoreError>;
    /// Takes an answer down (best effort: posts also expire).
    async fn take_down(&self, kind: &'static str, key: &str);
    /// The answer posted under `key`, if any: from this replica's copy of
    /// the board when it keeps one ([`Self::copied`]), else from the store.
    async fn read(&self, kind: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether [`Self::read`] answers from a local copy now (no store read).
    fn copied(&self) -> bool {
        false
    }
    /// Every post of `kind`: (key, value).
    async fn list(&self, kind: &'static str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// How long an HTTP-01 or TLS-ALPN-01 post outlives a crashed publisher.
pub const ANSWER_TTL: i64 = 600;
/// How long a DNS-01 record's post waits for a replica to remove the record
/// a crashed publisher left.
pub const DNS_TTL: i64 = 86_400;

/// Takes its post down when dropped, so every exit path of an order does.
#[derive(Debug)]
pub struct Posted {
    board: Arc<dyn ChallengeBoard>,
    kind: &'static str,
    key: String,
}

impl Posted {
    /// Posts `value` under `key` and returns the guard.
    pub async fn post(
        board: &Arc<dyn ChallengeBoard>,
        kind: &'static str,
        key: &str,
        value: &impl Serialize,
        ttl_secs: i64,
    ) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })?;
        board.post(kind, key, &bytes, ttl_secs).await?;
        Ok(Self { board: Arc::clone(board), kind, key: key.to_owned() })
    }
}

impl Drop for Posted {
    fn drop(&mut self) {
        let (board, kind, key) = (Arc::clone(&self.board), self.kind, std::mem::take(&mut self.key));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { board.take_down(kind, &key).await });
        }
    }
}
