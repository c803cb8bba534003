//! HTTP-01 (RFC 8555 §8.3): pending tokens and their key authorizations,
//! answered by `api` to the Envoy filter and to nginx `proxy_pass`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

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
