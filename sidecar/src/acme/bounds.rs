//! Every exchange with the CA is bounded (issue 21): a connect timeout, a
//! time limit on each request covering the answer's headers and its whole
//! body, a cap on the body, and a deadline on each order. The CA's
//! `Retry-After` on an error answer is kept for the error, and a refused
//! nonce is retried at once with the nonce the CA sent (RFC 8555 §6.5).
//!
//! [`Bounded`] is the `HttpClient` every instant-acme request goes
//! through. While an order runs inside [`within`], a task-local context
//! holds its current step (for the deadline's error) and the `Retry-After`
//! of the last answer, when that answer was an error.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::Connect;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::poll::FirstLooks;
use super::AcmeError;

/// Longest wait for a TCP connection to the CA.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one request may take, from sending it to the last byte of the
/// answer (TLS handshake included).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer's body that is read: ACME JSON and certificate
/// chains are a few kilobytes.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// Refused nonces in a row after which a step gives up. instant-acme itself
/// sends each request up to three times with the nonce the refusal carried,
/// so this is 3 × 50 requests: at a 90% refusal rate one step fails this
/// way about once in ten million.
pub(crate) const MAX_NONCE_REFUSALS: u32 = 50;
/// The longest `Retry-After` that is honoured; a later one is cut to this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why one request to the CA got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaRequestError {
    #[error("{what}: {cause}")]
    Send { what: String, cause: String },
    #[error("{what}: no complete answer within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("{what}: the answer's body is over {limit} bytes; refused")]
    TooLarge { what: String, limit: usize },
    #[error("{what}: reading the answer: {cause}")]
    Body { what: String, cause: String },
}

/// `error` and each of its sources, joined by `: `, so a user never sees
/// only `client error (Connect)`.
pub(crate) use crate::fetch::chain;

/// The hyper client to the CA, with the limits above.
pub(crate) struct Bounded<C> {
    inner: hyper_util::client::legacy::Client<C, BodyWrapper<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

impl<C> Bounded<C> {
    /// `inner` with [`REQUEST_TIMEOUT`] and [`MAX_BODY`].
    pub(crate) fn new(inner: hyper_util::client::legacy::Client<C, BodyWrapper<Bytes>>) -> Self {
        Self { inner, timeout: REQUEST_TIMEOUT, max_body: MAX_BODY }
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> HttpClient for Bounded<C> {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let what = format!("{} {}", req.method(), req.uri());
        let response = self.inner.request(req);
        let (timeout, max_body) = (self.timeout, self.max_body);
        Box::pin(async move {
            let exchange = async {
                let rsp = response.await.map_err(|e| CaRequestError::Send {
                    what: what.clone(),
                    cause: super::advice::explain_connection(chain(&e)),
                })?;
                let (parts, body) = rsp.into_parts();
                let body = read_capped(body, max_body, &what).await?;
                Ok::<_, CaRequestError>((parts, body))
            };
            let (parts, body) = match tokio::time::timeout(timeout, exchange).await {
                Ok(answer) => answer,
                Err(_) => Err(CaRequestError::Timeout { what, secs: timeout.as_secs() }),
            }
            .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            note_answer(parts.status, &parts.headers, SystemTime::now());
            Ok(BytesResponse { parts, body: Box::new(body) })
        })
    }
}

/// Reads `body` whole, refusing it past `max` bytes without buffering more.
async fn read_capped<B>(body: B, max: usize, what: &str) -> Result<Bytes, CaRequestError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(CaRequestError::TooLarge { what: what.to_owned(), limit: max })
        }
        Err(e) => Err(CaRequestError::Body { what: what.to_owned(), cause: chain(e.as_ref()) }),
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): seconds or an HTTP date, as a time.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    match u64::from_str(value) {
        Ok(secs) => now.checked_add(Duration::from_secs(secs)),
        Err(_) => httpdate::HttpDate::from_str(value).ok().map(SystemTime::from),
    }
}

// === the order's context ===

#[derive(Debug, Default)]
struct Context {
    step: &'static str,
    /// The `Retry-After` of the last answer, when it was an error.
    retry_after: Option<SystemTime>,
    /// The `Retry-After` of the last answer, whatever it was (an order
    /// still `processing` says when to look again).
    said: Option<SystemTime>,
    /// Requests sent again because the CA refused their nonce (each after
    /// instant-acme's own two tries): a CA that refuses many is overloaded.
    refused: u32,
    /// What the CA's first looks were learned to be (none: the defaults).
    looks: Option<Arc<FirstLooks>>,
}

tokio::task_local! {
    static ORDER: RefCell<Context>;
}

/// Records what the order is doing now (named by the deadline's error).
/// Outside [`within`], nothing.
pub(crate) fn set_step(step: &'static str) {
    let _ = ORDER.try_with(|c| c.borrow_mut().step = step);
}

/// Keeps an error answer's `Retry-After`; any other answer clears it.
fn note_answer(status: http::StatusCode, headers: &http::HeaderMap, now: SystemTime) {
    let error = status.is_client_error() || status.is_server_error();
    let said =
        headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, now));
    let _ = ORDER.try_with(|c| {
        let mut context = c.borrow_mut();
        context.retry_after = said.filter(|_| error);
        context.said = said;
    });
}

/// Counts a refused nonce in this order. Outside [`within`], nothing.
pub(crate) fn note_refused_nonce() {
    let _ = ORDER.try_with(|c| c.borrow_mut().refused += 1);
}

/// Refused nonces counted in this order so far (0 outside [`within`]).
pub(crate) fn refused_nonces() -> u32 {
    ORDER.try_with(|c| c.borrow().refused).unwrap_or_default()
}

/// The first looks learned for this order's CA (outside [`within`], or
/// when none were given, fresh defaults).
pub(crate) fn first_looks() -> Arc<FirstLooks> {
    ORDER.try_with(|c| c.borrow().looks.clone()).ok().flatten().unwrap_or_default()
}

/// The `Retry-After` of the last answer in this order, if it had one.
pub(crate) fn last_retry_after() -> Option<SystemTime> {
    ORDER.try_with(|c| c.borrow().said).ok().flatten()
}

/// Runs `work` (an order, an ARI poll, a revocation) within `deadline`.
/// Past it, `work` is dropped (a solver's answers are withdrawn by their
/// guards) and the error names the step it was at. An error that followed
/// an answer with `Retry-After` carries it (see [`AcmeError::retry_after`]).
/// `looks` are the CA's learned first looks, shared by its orders.
pub(crate) async fn within<T>(
    deadline: Duration,
    first_step: &'static str,
    looks: Option<Arc<FirstLooks>>,
    work: impl Future<Output = Result<T, AcmeError>>,
) -> Result<T, AcmeError> {
    let context = RefCell::new(Context { step: first_step, looks, ..Context::default() });
    ORDER
        .scope(context, async {
            let Ok(result) = tokio::time::timeout(deadline, work).await else {
                let step = ORDER.with(|c| c.borrow().step);
                return Err(AcmeError::Deadline { secs: deadline.as_secs(), step });
            };
            let retry_after = ORDER.with(|c| c.borrow().retry_after);
            match (result, retry_after) {
                (Err(e), Some(at)) => Err(AcmeError::CaSaidWait { source: Box::new(e), until: at }),
                (result, _) => result,
            }
        })
        .await
}

/// Whether the CA refused the request's nonce.
pub(crate) fn is_bad_nonce(error: &instant_acme::Error) -> bool {
    matches!(error, instant_acme::Error::Api(p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
}

/// `$call` (an instant-acme call with its `.await`) as step `$step`, sent
/// again at once while the CA refuses the nonce, up to
/// [`MAX_NONCE_REFUSALS`] times: a refused nonce is not a failure.
macro_rules! step {
    ($step:expr, $call:expr) => {{
        $crate::acme::bounds::set_step($step);
        let mut refused = 0_u32;
        loop {
            match $call {
                Err(e)
                    if $crate::acme::bounds::is_bad_nonce(&e) && refused < $crate::acme::bounds::MAX_NONCE_REFUSALS =>
                {
                    refused += 1;
                    $crate::acme::bounds::note_refused_nonce();
                    tracing::debug!(step = $step, refused, "the CA refused the nonce; sending again");
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use step;

#[cfg(test)]
#[path = "bounds_tests.rs"]
mod tests;
