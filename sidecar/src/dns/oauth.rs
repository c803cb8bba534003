//! What the providers that sign in with OAuth 2.0 share (Google Cloud DNS,
//! Azure DNS): a cached access token that is fetched again shortly before it
//! expires, `application/x-www-form-urlencoded` bodies, and base64url.

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;

use super::DnsError;

/// A token is fetched again when less than this is left of its life.
const MARGIN: Duration = Duration::from_secs(120);

/// One access token, shared by a provider's calls until near its expiry.
#[derive(Default)]
pub(super) struct TokenCache {
    slot: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(...)")
    }
}

impl TokenCache {
    /// The cached token, or a new one from `fetch` (the token and its
    /// lifetime) when there is none or it expires within a couple of minutes.
    /// Concurrent callers wait for one fetch.
    pub(super) async fn get<F, Fut>(&self, fetch: F) -> Result<String, DnsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), DnsError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((token, expires)) = slot.as_ref() {
            if Instant::now() + MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = fetch().await?;
        *slot = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets the token (the API refused it).
    pub(super) async fn clear(&self) {
        *self.slot.lock().await = None;
    }
}

/// An `application/x-www-form-urlencoded` body (or query string).
pub(super) fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Unpadded base64url (JWT segments).
pub(super) fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The usual OAuth 2.0 token answer (RFC 6749 §5.1); `expires_in` is a number,
/// or a string in Azure's managed identity endpoint.
#[derive(Debug, serde::Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) expires_in: Option<serde_json::Value>,
}

impl TokenAnswer {
    /// The token and its lifetime (an hour when the answer does not say).
    pub(super) fn lifetime(self) -> (String, Duration) {
        let secs = match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        (self.access_token, Duration::from_secs(secs.unwrap_or(3600)))
    }
}

/// The OAuth 2.0 error body (RFC 6749 §5.2), as text for a message.
pub(super) fn oauth_error(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Error {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let e: Error = serde_json::from_slice(body).ok()?;
    Some(if e.error_description.is_empty() { e.error } else { format!("{}: {}", e.error, e.error_description) })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn forms_encode_reserved_characters() {
        assert_eq!(
            form(&[("a b", "x/y+z="), ("scope", "https://h/.default")]),
            "a%20b=x%2Fy%2Bz%3D&scope=https%3A%2F%2Fh%2F.default"
        );
    }

    #[tokio::test]
    async fn a_token_is_reused_until_near_its_expiry() {
        let cache = TokenCache::default();
        let fetches = AtomicU32::new(0);
        let fetch = |secs| {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok((format!("t{n}"), Duration::from_secs(secs))) }
        };
        assert_eq!(cache.get(|| fetch(3600)).await.unwrap(), "t0");
        assert_eq!(cache.get(|| fetch(3600)).await.unwrap(), "t0");
        cache.clear().await;
        assert_eq!(cache.get(|| fetch(60)).await.unwrap(), "t1");
        // 60 s is within the margin: fetched again
        assert_eq!(cache.get(|| fetch(60)).await.unwrap(), "t2");
    }

    #[test]
    fn token_answers_with_string_or_number_lifetimes() {
        let a: TokenAnswer = serde_json::from_str(r#"{"access_token":"a","expires_in":"3599"}"#).unwrap();
        assert_eq!(a.lifetime().1, Duration::from_secs(3599));
        let b: TokenAnswer = serde_json::from_str(r#"{"access_token":"b","expires_in":120}"#).unwrap();
        assert_eq!(b.lifetime().1, Duration::from_secs(120));
        assert_eq!(
            oauth_error(br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#).unwrap(),
            "invalid_grant: Invalid JWT Signature."
        );
    }
}
