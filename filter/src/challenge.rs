//! The per-request decision: pass through, answer locally, or ask the
//! sidecar.
//!
//! Kept free of proxy-wasm so that every branch is unit-tested natively.
//! [`is_challenge_path`] is split out because the glue must be able to
//! decide "not ours" from `:path` alone, before reading anything else:
//! that check runs on every request Envoy proxies.

use crate::config::FilterConfig;
use crate::host::normalize_host;
use crate::reply::LocalReply;

/// Path prefix of ACME HTTP-01 challenges (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &[u8] = b"/.well-known/acme-challenge/";

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a challenge: let the request through untouched.
    Pass,
    /// Answer right away without asking the sidecar.
    Reply(LocalReply),
    /// Well-formed challenge: ask the sidecar for the key authorization.
    AskSidecar {
        /// The challenge token (base64url, validated).
        token: String,
        /// The normalized host the challenge is for.
        host: String,
    },
}

/// True when `path` is an ACME challenge path. Cheap: one prefix compare.
#[inline]
pub fn is_challenge_path(path: &[u8]) -> bool {
    path.starts_with(CHALLENGE_PREFIX)
}

/// Decides what to do with a request given its pseudo-headers as bytes
/// (`None` when the header is absent).
///
/// Checks, in order: the path prefix (else [`Decision::Pass`]), the method
/// (only GET: else 404, as the ACME server only ever GETs), the token
/// (else 400) and the host (else 400).
pub fn decide(path: &[u8], method: Option<&[u8]>, authority: Option<&[u8]>, config: &FilterConfig) -> Decision {
    let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) else {
        return Decision::Pass;
    };
    if method != Some(b"GET") {
        return Decision::Reply(LocalReply::not_found());
    }
    let Some(token) = valid_token(token, config.max_token_length) else {
        return Decision::Reply(LocalReply::bad_request());
    };
    let Some(host) = authority.and_then(normalize_host) else {
        return Decision::Reply(LocalReply::bad_request());
    };
    Decision::AskSidecar { token, host }
}

/// The sidecar path that serves `token`.
pub fn sidecar_path(token: &str) -> String {
    format!("/v1/http-01/{token}")
}

/// A token is 1..=`max_len` base64url characters (`[A-Za-z0-9_-]`); any
/// query string, slash, percent-escape, padding or dot makes it invalid.
fn valid_token(token: &[u8], max_len: usize) -> Option<String> {
    let ok = !token.is_empty()
        && token.len() <= max_len
        && token.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return None;
    }
    String::from_utf8(token.to_vec()).ok()
}

#[cfg(test)]
#[path = "challenge_tests.rs"]
mod tests;
