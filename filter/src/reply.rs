//! Local replies, and the mapping from the sidecar's answer to one.
//!
//! The sidecar is trusted to know the challenges, but not to be bug-free:
//! whatever it returns for a 200 is checked to look like the RFC 8555 key
//! authorization for *this* token (`token.thumbprint`) before it is sent
//! to the ACME server, so that a misbehaving sidecar cannot make Envoy
//! serve arbitrary content on `/.well-known/acme-challenge/`.

use std::borrow::Cow;
use std::fmt;

/// Largest key authorization accepted from the sidecar, in bytes.
pub const MAX_KEY_AUTHORIZATION_LEN: usize = 4096;
/// Header set on every local reply.
pub const CONTENT_TYPE: (&str, &str) = ("content-type", "text/plain");

/// A response the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status code.
    pub status: u32,
    /// Body, sent with [`CONTENT_TYPE`].
    pub body: Cow<'static, [u8]>,
}

/// What the sidecar's answer means for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarAnswer {
    /// A well-formed key authorization: serve it with 200.
    KeyAuthorization(Vec<u8>),
    /// The sidecar does not know the token (or the host): 404.
    NotFound,
    /// Unreachable or misbehaving sidecar: 503, and worth a warning.
    Failed(SidecarFailure),
}

/// Why a sidecar answer was not usable; `Display` is the log reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarFailure {
    /// No response headers: Envoy's signal for connect failure or timeout.
    NoResponse,
    /// Response without a `:status` header.
    MissingStatus,
    /// A status other than 200 or 404 (lossy, truncated rendering).
    Status(String),
    /// 200 with a body over [`MAX_KEY_AUTHORIZATION_LEN`] bytes.
    BodyTooLarge(usize),
    /// Fewer body bytes could be read than announced.
    BodyTruncated,
    /// 200 with an empty body.
    EmptyBody,
    /// Body has bytes outside visible ASCII (spaces, newlines, UTF-8...).
    BodyNotPrintable,
    /// Body is not `<token>.<something>`.
    WrongToken,
}

// === impl LocalReply ===

impl LocalReply {
    /// 400: the challenge request itself is malformed.
    pub const fn bad_request() -> Self {
        Self::fixed(400, b"bad request\n")
    }

    /// 404: unknown challenge, or not a GET.
    pub const fn not_found() -> Self {
        Self::fixed(404, b"not found\n")
    }

    /// 503: the sidecar could not give a usable answer.
    pub const fn unavailable() -> Self {
        Self::fixed(503, b"service unavailable\n")
    }

    /// 200 carrying exactly the key authorization (no trailing newline:
    /// the ACME server compares the body byte for byte).
    pub fn key_authorization(body: Vec<u8>) -> Self {
        Self { status: 200, body: Cow::Owned(body) }
    }

    const fn fixed(status: u32, body: &'static [u8]) -> Self {
        Self { status, body: Cow::Borrowed(body) }
    }
}

// === impl SidecarAnswer ===

impl SidecarAnswer {
    /// Interprets the sidecar's response.
    ///
    /// `status` is the `:status` header, `None` when the response had no
    /// headers at all or no `:status`; `has_headers` tells the two apart
    /// for the log. `body_size` is the size Envoy announced, `body` what
    /// was actually read (at most [`MAX_KEY_AUTHORIZATION_LEN`] bytes).
    pub fn from_response(
        token: &str,
        has_headers: bool,
        status: Option<&[u8]>,
        body_size: usize,
        body: Vec<u8>,
    ) -> Self {
        match status {
            None if !has_headers => Self::Failed(SidecarFailure::NoResponse),
            None => Self::Failed(SidecarFailure::MissingStatus),
            Some(b"200") => match check_key_authorization(token, body_size, &body) {
                Ok(()) => Self::KeyAuthorization(body),
                Err(failure) => Self::Failed(failure),
            },
            Some(b"404") => Self::NotFound,
            Some(other) => Self::Failed(SidecarFailure::Status(render_status(other))),
        }
    }

    /// The sidecar did not answer at all (no response: connect failure or
    /// timeout) or Envoy answered for it (503, no healthy host): it may be
    /// restarting, and is worth asking again.
    pub fn sidecar_down(&self) -> bool {
        matches!(self, Self::Failed(SidecarFailure::NoResponse))
            || matches!(self, Self::Failed(SidecarFailure::Status(s)) if s == "503")
    }

    /// The local reply to send for this answer.
    pub fn into_reply(self) -> LocalReply {
        match self {
            Self::KeyAuthorization(body) => LocalReply::key_authorization(body),
            Self::NotFound => LocalReply::not_found(),
            Self::Failed(_) => LocalReply::unavailable(),
        }
    }
}

/// A key authorization is `token "." thumbprint` in visible ASCII.
fn check_key_authorization(token: &str, body_size: usize, body: &[u8]) -> Result<(), SidecarFailure> {
    if body_size > MAX_KEY_AUTHORIZATION_LEN || body.len() > MAX_KEY_AUTHORIZATION_LEN {
        return Err(SidecarFailure::BodyTooLarge(body_size.max(body.len())));
    }
    if body.len() < body_size {
        return Err(SidecarFailure::BodyTruncated);
    }
    if body.is_empty() {
        return Err(SidecarFailure::EmptyBody);
    }
    if !body.iter().all(u8::is_ascii_graphic) {
        return Err(SidecarFailure::BodyNotPrintable);
    }
    let thumbprint = body.strip_prefix(token.as_bytes()).and_then(|rest| rest.strip_prefix(b"."));
    match thumbprint {
        Some(t) if !t.is_empty() => Ok(()),
        _ => Err(SidecarFailure::WrongToken),
    }
}

/// Renders an unexpected status for the log without trusting its bytes.
fn render_status(status: &[u8]) -> String {
    let shown = status.get(..16).unwrap_or(status);
    String::from_utf8_lossy(shown).escape_debug().to_string()
}

// === impl SidecarFailure ===

impl fmt::Display for SidecarFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoResponse => f.write_str("no response (connection failure or timeout)"),
            Self::MissingStatus => f.write_str("response without :status"),
            Self::Status(s) => write!(f, "unexpected status {s} (503/504 usually mean unreachable or timed out)"),
            Self::BodyTooLarge(n) => write!(f, "key authorization too large ({n} bytes)"),
            Self::BodyTruncated => f.write_str("key authorization body truncated"),
            Self::EmptyBody => f.write_str("empty key authorization"),
            Self::BodyNotPrintable => f.write_str("key authorization is not printable ASCII"),
            Self::WrongToken => f.write_str("key authorization does not match the token"),
        }
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
