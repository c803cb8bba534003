//! One GET to a peer that is not the CA's ACME API (the CA's directory for
//! `/readyz`, Envoy's admin for discovery, the on-demand `ask` URL), with a
//! time limit, and an error that keeps its cause.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;

/// An error and each of its sources, joined with `: ` (a source whose text
/// is already there is skipped): hyper's "client error (Connect)" alone
/// hides the reason, such as a certificate webpki refused.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Why a GET did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not a URL: {source}")]
    Url { url: String, source: http::uri::InvalidUri },
    /// No answer: `cause` is the whole error chain (the TLS or socket reason).
    #[error("{url}: {cause}")]
    Request { url: String, cause: String },
    #[error("{url}: reading the answer (at most {limit} bytes): {source}")]
    Body { url: String, limit: usize, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{url} answered {status}")]
    Status { url: String, status: http::StatusCode },
    #[error("{url}: no answer within {} s", .limit.as_secs())]
    Timeout { url: String, limit: Duration },
    #[error("{url}: {source}")]
    Json { url: String, source: serde_json::Error },
}

/// The most of an answer's body that is read.
#[derive(Debug, Clone, Copy)]
pub struct MaxBody(pub usize);

/// GETs `url` within `limit`: the status and the body, read up to `max`.
pub async fn get<C>(
    client: &Client<C, http_body_util::Empty<bytes::Bytes>>,
    url: &str,
    limit: Duration,
    max: MaxBody,
) -> Result<(http::StatusCode, bytes::Bytes), FetchError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let uri: http::Uri = url.parse().map_err(|source| FetchError::Url { url: url.to_owned(), source })?;
    let fetch = async {
        let rsp = client
            .get(uri)
            .await
            .map_err(|source| FetchError::Request { url: url.to_owned(), cause: chain(&source) })?;
        let status = rsp.status();
        let body = http_body_util::Limited::new(rsp.into_body(), max.0)
            .collect()
            .await
            .map_err(|source| FetchError::Body { url: url.to_owned(), limit: max.0, source })?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(limit, fetch).await.unwrap_or_else(|_| Err(FetchError::Timeout { url: url.to_owned(), limit }))
}

/// GETs `url` within `limit` and parses a 2xx answer as JSON.
pub async fn get_json<C>(
    client: &Client<C, http_body_util::Empty<bytes::Bytes>>,
    url: &str,
    limit: Duration,
    max: MaxBody,
) -> Result<serde_json::Value, FetchError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let (status, body) = get(client, url, limit, max).await?;
    if !status.is_success() {
        return Err(FetchError::Status { url: url.to_owned(), status });
    }
    serde_json::from_slice(&body).map_err(|source| FetchError::Json { url: url.to_owned(), source })
}
