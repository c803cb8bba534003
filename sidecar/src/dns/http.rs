//! The HTTP client the API-based DNS providers share: https with the
//! platform's roots (or plain http, for tests and local endpoints), a time
//! limit, and answers as status + body. Credentials go in headers the caller
//! sets and never into errors or logs.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;

use super::DnsError;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a TCP connection to the provider's API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body that is read (a provider's JSON or XML
/// about one zone's records).
const MAX_BODY: usize = 4 << 20;
/// At most this much of an error body goes into a message.
const MAX_DETAIL: usize = 300;

/// A JSON/XML-over-HTTP client for one provider.
#[derive(Clone)]
pub struct ApiClient {
    provider: &'static str,
    client: Client<hyper_rustls::HttpsConnector<crate::egress::Egress>, Full<Bytes>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error for a non-2xx answer: 4xx permanent except 429, 5xx retryable.
    pub fn error(&self, provider: &'static str, what: &str, detail: &str) -> DnsError {
        let retryable = self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS;
        let mut detail = detail.trim().to_owned();
        if detail.len() > MAX_DETAIL {
            let cut = (0..=MAX_DETAIL).rev().find(|&i| detail.is_char_boundary(i)).unwrap_or(0);
            detail.truncate(cut);
            detail.push_str("...");
        }
        DnsError::provider(provider, format!("{what}: HTTP {}: {detail}", self.status.as_u16()), retryable)
    }
}

impl ApiClient {
    pub fn new(provider: &'static str) -> Result<Self, DnsError> {
        // Direct, or through the forward proxy of `[network]` / HTTPS_PROXY.
        let http = crate::egress::connector(CONNECT_TIMEOUT);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| DnsError::provider(provider, format!("TLS roots: {e}"), false))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Self { provider, client })
    }

    /// Sends a request; network errors and time-outs are retryable.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, DnsError> {
        let fail = |message: String| DnsError::provider(self.provider, message, true);
        let mut request = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(http::header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request =
            request.body(body).map_err(|e| DnsError::provider(self.provider, format!("bad request: {e}"), false))?;
        let path = request.uri().path().to_owned();
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| fail(format!("{method} {path}: no answer within {TIMEOUT:?}")))?
            .map_err(|e| fail(format!("{method} {path}: {e}")))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(TIMEOUT, http_body_util::Limited::new(body, MAX_BODY).collect())
            .await
            .map_err(|_| fail(format!("{method} {path}: body timed out")))?
            .map_err(|e| fail(format!("{method} {path}: reading the answer (at most {MAX_BODY} bytes): {e}")))?
            .to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    /// Sends JSON (or nothing) and returns the answer.
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, DnsError> {
        let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
        self.send(method, url, headers, body).await
    }
}

/// `name` without its final dot.
pub fn relative(name: &str) -> &str {
    name.trim_end_matches('.')
}

/// The zone candidates for a record name, longest first, never a bare TLD:
/// `_acme-challenge.a.example.com.` gives `a.example.com`, `example.com`.
pub fn zone_candidates(fqdn: &str) -> Vec<String> {
    let labels: Vec<&str> = relative(fqdn).split('.').collect();
    (1..labels.len().saturating_sub(1)).map(|i| labels[i..].join(".")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_candidates_go_from_longest_to_the_registrable_domain() {
        assert_eq!(zone_candidates("_acme-challenge.a.example.com."), ["a.example.com", "example.com"]);
        assert_eq!(zone_candidates("_acme-challenge.example.com."), ["example.com"]);
    }
}
