//! HTTP-01 (RFC 8555 §8.3): pending tokens and their key authorizations,
//! answered by `api` to the Envoy filter and to nginx `proxy_pass`, and
//! [`Http01Solver`], which publishes them (and the webroot file, and the
//! board post for other replicas).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::posts::Http01Post;
use super::{is_wildcard, webroot, Challenge, ChallengeKind, Presented, Solver, SolverError};
use crate::store::board::{self, ChallengeBoard};

/// A pending challenge: the identifier it proves and its key authorization.
#[derive(Clone)]
struct Pending {
    identifier: String,
    key_authorization: String,
}

/// Pending HTTP-01 tokens, shared between the order tasks and the API.
#[derive(Clone, Default)]
pub struct Http01Tokens {
    inner: Arc<RwLock<HashMap<String, Pending>>>,
}

impl fmt::Debug for Http01Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.inner.read().map_or(0, |m| m.len());
        f.debug_struct("Http01Tokens").field("pending", &n).finish()
    }
}

impl Http01Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `token` for `identifier` until the returned guard is dropped,
    /// so every exit path of an order withdraws it.
    pub fn publish(&self, token: &str, identifier: &str, key_authorization: &str) -> Published {
        let pending =
            Pending { identifier: identifier.to_ascii_lowercase(), key_authorization: key_authorization.to_owned() };
        self.inner.write().unwrap_or_else(|e| e.into_inner()).insert(token.to_owned(), pending);
        Published { tokens: self.clone(), token: token.to_owned() }
    }

    /// The key authorization for `token`, only when it was issued for `host`
    /// (already normalised): a token for one name is no proof for another.
    pub fn answer(&self, token: &str, host: &str) -> Option<String> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.get(token).filter(|p| p.identifier == host).map(|p| p.key_authorization.clone())
    }

    /// Number of pending tokens.
    pub fn len(&self) -> usize {
        self.inner.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Withdraws its token when dropped.
#[derive(Debug)]
pub struct Published {
    tokens: Http01Tokens,
    token: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.tokens.inner.write().unwrap_or_else(|e| e.into_inner()).remove(&self.token);
    }
}

/// HTTP-01: the token in memory (answered by the API), under the webroot
/// when one is configured, and on the board when replicas share one.
#[derive(Debug)]
pub struct Http01Solver {
    tokens: Http01Tokens,
    webroot: Option<PathBuf>,
    board: Option<Arc<dyn ChallengeBoard>>,
}

impl Http01Solver {
    pub fn new(tokens: Http01Tokens, webroot: Option<PathBuf>, board: Option<Arc<dyn ChallengeBoard>>) -> Self {
        Self { tokens, webroot, board }
    }
}

#[async_trait]
impl Solver for Http01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    /// Names and IP addresses (RFC 8738), not wildcards.
    fn supports(&self, identifier: &str) -> bool {
        !is_wildcard(identifier)
    }

    async fn present(&self, challenge: Challenge<'_>) -> Result<Presented, SolverError> {
        let Challenge { identifier, token, key_authorization, .. } = challenge;
        let mut presented = Presented::new(self.kind(), identifier);
        if let Some(root) = &self.webroot {
            presented = presented.with(webroot::publish(root, token, key_authorization)?);
        }
        presented = presented.with(self.tokens.publish(token, identifier, key_authorization));
        if let Some(shared) = &self.board {
            let post = Http01Post {
                identifier: identifier.to_ascii_lowercase(),
                key_authorization: key_authorization.to_owned(),
            };
            let kind = self.kind().as_str();
            presented = presented.with(board::Posted::post(shared, kind, token, &post, board::ANSWER_TTL).await?);
        }
        Ok(presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_the_identifier_it_was_issued_for() {
        let tokens = Http01Tokens::new();
        let _guard = tokens.publish("tok", "Example.com", "tok.thumb");
        assert_eq!(tokens.answer("tok", "example.com").as_deref(), Some("tok.thumb"));
        assert_eq!(tokens.answer("tok", "other.example"), None);
        assert_eq!(tokens.answer("nope", "example.com"), None);
    }

    #[test]
    fn dropping_the_guard_withdraws_the_token() {
        let tokens = Http01Tokens::new();
        {
            let _guard = tokens.publish("tok", "example.com", "tok.thumb");
            assert_eq!(tokens.len(), 1);
        }
        assert!(tokens.is_empty());
        assert_eq!(tokens.answer("tok", "example.com"), None);
    }
}
