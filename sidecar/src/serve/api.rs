//! The challenge API (hyper): challenge answers for the Envoy filter and
//! for nginx `proxy_pass`, and the filter's on-demand reports. No business
//! logic: it looks tokens up in `Http01Tokens` (and, with a shared store,
//! in the board's copy of other replicas' posts) and answers. The ops
//! endpoints have their own listener ([`crate::serve::ops`]).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/http-01/<token>` + `x-proxy-acme-host: <host>` | the filter's call |
//! | `GET /.well-known/acme-challenge/<token>` + `Host` | the public path, for nginx |
//! | `POST /v1/on-demand` + `x-proxy-acme-host: <host>` | the filter's report of a host (`[on_demand]`): 202 queued, 400 not a host name, 429 queue full, 404 off |

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::names;
use crate::serve::door::{self, Limits};
use crate::serve::health::Readiness;
use crate::solvers::http01::Http01Tokens;
use crate::solvers::posts::Http01Post;
use crate::solvers::ChallengeKind;
use crate::store::board::ChallengeBoard;

/// The header the filter passes the validated request's host in.
pub const HOST_HEADER: &str = "x-proxy-acme-host";
const FILTER_PREFIX: &str = "/v1/http-01/";
const PUBLIC_PREFIX: &str = "/.well-known/acme-challenge/";
const MAX_TOKEN_LEN: usize = 256;

type Reply = Response<Full<Bytes>>;

/// The token and the normalised host of a challenge request, or the
/// response that refuses it (`None`: not a challenge path).
fn challenge_request<B>(req: &Request<B>) -> Option<Result<(&str, String), Reply>> {
    let path = req.uri().path();
    let (token, host_header) = if let Some(token) = path.strip_prefix(FILTER_PREFIX) {
        (token, req.headers().get(HOST_HEADER))
    } else if let Some(token) = path.strip_prefix(PUBLIC_PREFIX) {
        (token, req.headers().get(header::HOST))
    } else {
        return None;
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some(Err(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")));
    }
    if !valid_token(token) {
        return Some(Err(text(StatusCode::BAD_REQUEST, "malformed token\n")));
    }
    let host = host_header.and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).and_then(names::normalize_host);
    match host {
        Some(host) => Some(Ok((token, host))),
        None => Some(Err(text(StatusCode::BAD_REQUEST, "missing or invalid host\n"))),
    }
}

/// Answers one request. Pure apart from reading `tokens`.
pub fn handle<B>(tokens: &Http01Tokens, req: &Request<B>) -> Response<Full<Bytes>> {
    let (token, host) = match challenge_request(req) {
        None => return text(StatusCode::NOT_FOUND, "not found\n"),
        Some(Err(refused)) => return refused,
        Some(Ok(request)) => request,
    };
    match tokens.answer(token, &host) {
        Some(key_authorization) => {
            tracing::debug!(token, host, "answered http-01 challenge");
            text(StatusCode::OK, key_authorization)
        }
        None => {
            tracing::debug!(token, host, "unknown http-01 token");
            text(StatusCode::NOT_FOUND, "unknown token\n")
        }
    }
}

/// A token this replica does not hold may have been posted by another
/// replica (shared store): read the board before answering 404.
async fn answer_shared<B>(api: &Api, req: &Request<B>, local: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (Some(board), StatusCode::NOT_FOUND) = (&api.board, local.status()) else { return local };
    let Some(Ok((token, host))) = challenge_request(req) else { return local };
    crate::serve::metrics::metrics().board_lookup(board.copied());
    match board.read(ChallengeKind::Http01.as_str(), token).await {
        Ok(Some(bytes)) => match serde_json::from_slice::<Http01Post>(&bytes) {
            Ok(post) if post.identifier == host => {
                tracing::debug!(token, host, "answered http-01 challenge posted by another replica");
                text(StatusCode::OK, post.key_authorization)
            }
            _ => local,
        },
        Ok(None) => local,
        Err(e) => {
            tracing::warn!(token, error = %e, "cannot read the shared challenge board");
            text(StatusCode::SERVICE_UNAVAILABLE, "shared store unavailable\n")
        }
    }
}

/// What the endpoint serves from.
#[derive(Debug, Clone, Default)]
pub struct Api {
    pub tokens: Http01Tokens,
    /// `/healthz`, `/readyz` and `/metrics` here too: only when `[listen]
    /// ops` is the challenge API's own address.
    pub ops: Option<Readiness>,
    /// Reported hosts go here (`[on_demand]`); `None`: on-demand is off.
    pub on_demand: Option<tokio::sync::mpsc::Sender<String>>,
    /// Challenges posted by other replicas (shared store).
    pub board: Option<std::sync::Arc<dyn ChallengeBoard>>,
}

/// Queues a host the filter reported; the policy is applied later.
fn on_demand<B>(queue: Option<&tokio::sync::mpsc::Sender<String>>, req: &Request<B>) -> Response<Full<Bytes>> {
    let Some(queue) = queue else {
        return text(StatusCode::NOT_FOUND, "on-demand issuance is off\n");
    };
    let host = req.headers().get(HOST_HEADER).and_then(|h| h.to_str().ok()).and_then(names::normalize_host);
    let Some(host) = host else {
        return text(StatusCode::BAD_REQUEST, "missing or invalid host\n");
    };
    if let Err(why) = names::validate_hostname(&host) {
        return text(StatusCode::BAD_REQUEST, format!("not a host name: {why}\n"));
    }
    match queue.try_send(host) {
        Ok(()) => text(StatusCode::ACCEPTED, "noted\n"),
        Err(_) => text(StatusCode::TOO_MANY_REQUESTS, "on-demand queue full\n"),
    }
}

/// Answers one request: a challenge, an on-demand report, or (when the
/// ops endpoints share this listener) an ops request.
pub fn route<B>(api: &Api, req: &Request<B>) -> Response<Full<Bytes>> {
    if let Some(answer) = api.ops.as_ref().and_then(|readiness| crate::serve::ops::route(readiness, req)) {
        return answer;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/on-demand") => on_demand(api.on_demand.as_ref(), req),
        _ => handle(&api.tokens, req),
    }
}

fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

use crate::serve::ops::text;

/// Binds `address` and serves until the task is aborted, within
/// [`Limits::PUBLIC`]: the Envoy filter, nginx and the on-demand reports
/// come through here, and so may anyone who reaches the address.
pub async fn serve(address: SocketAddr, api: Api) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "challenge API listening");
    Ok(door::serve_http(listener, "challenge_api", Limits::PUBLIC, move |req| {
        let api = api.clone();
        async move {
            let rsp = route(&api, &req);
            answer_shared(&api, &req, rsp).await
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(Method::GET).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap_or_else(|e| panic!("bad test request: {e}"))
    }

    async fn body(rsp: Response<Full<Bytes>>) -> (StatusCode, String) {
        let status = rsp.status();
        let bytes = rsp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn filter_path_answers_for_the_right_host_only() {
        let tokens = Http01Tokens::new();
        let _g = tokens.publish("abc_-1", "example.com", "abc_-1.thumb");
        let ok = handle(&tokens, &get("/v1/http-01/abc_-1", &[(HOST_HEADER, "Example.com:80")]));
        assert_eq!(body(ok).await, (StatusCode::OK, "abc_-1.thumb".into()));
        let other = handle(&tokens, &get("/v1/http-01/abc_-1", &[(HOST_HEADER, "evil.example")]));
        assert_eq!(other.status(), StatusCode::NOT_FOUND);
        let missing = handle(&tokens, &get("/v1/http-01/abc_-1", &[]));
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn public_path_uses_the_host_header() {
        let tokens = Http01Tokens::new();
        let _g = tokens.publish("tok", "example.com", "tok.thumb");
        let ok = handle(&tokens, &get("/.well-known/acme-challenge/tok", &[("host", "example.com")]));
        assert_eq!(body(ok).await, (StatusCode::OK, "tok.thumb".into()));
    }

    #[test]
    fn hostile_requests_get_4xx() {
        let tokens = Http01Tokens::new();
        let long = format!("/v1/http-01/{}", "a".repeat(MAX_TOKEN_LEN + 1));
        for path in ["/v1/http-01/", "/v1/http-01/a.b", "/v1/http-01/a%2Fb", long.as_str()] {
            let rsp = handle(&tokens, &get(path, &[(HOST_HEADER, "example.com")]));
            assert_eq!(rsp.status(), StatusCode::BAD_REQUEST, "{path}");
        }
        let bad_host = handle(&tokens, &get("/v1/http-01/tok", &[(HOST_HEADER, "a..b")]));
        assert_eq!(bad_host.status(), StatusCode::BAD_REQUEST);
        let mut post = get("/v1/http-01/tok", &[(HOST_HEADER, "example.com")]);
        *post.method_mut() = Method::POST;
        assert_eq!(handle(&tokens, &post).status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(handle(&tokens, &get("/other", &[])).status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn ops_endpoints_only_when_they_share_this_listener() {
        let api = Api::default();
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(route(&api, &get(path, &[])).status(), StatusCode::NOT_FOUND, "{path} off by default");
        }
        let shared = Api { ops: Some(Readiness::default()), ..Api::default() };
        shared.ops.iter().for_each(|r| r.set("store", Ok(())));
        assert_eq!(body(route(&shared, &get("/readyz", &[]))).await, (StatusCode::OK, "ready\nok store\n".into()));
        let challenge = route(&shared, &get("/.well-known/acme-challenge/tok", &[("host", "a.test")]));
        assert_eq!(challenge.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn on_demand_reports_are_queued_bounded_and_checked() {
        let post = |host: &str| {
            let mut req = get("/v1/on-demand", &[(HOST_HEADER, host)]);
            *req.method_mut() = Method::POST;
            req
        };
        assert_eq!(route(&Api::default(), &post("a.test")).status(), StatusCode::NOT_FOUND, "off");
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let api = Api { on_demand: Some(tx), ..Api::default() };
        assert_eq!(route(&api, &post("A.test:80")).status(), StatusCode::ACCEPTED);
        assert_eq!(route(&api, &post("b.test")).status(), StatusCode::TOO_MANY_REQUESTS, "queue of one is full");
        assert_eq!(rx.recv().await.as_deref(), Some("a.test"));
        for hostile in ["a..b", "*.ondemand.example.test", "192.0.2.1", "[::1]:443", "a_b.test"] {
            assert_eq!(route(&api, &post(hostile)).status(), StatusCode::BAD_REQUEST, "{hostile}");
        }
        assert!(rx.try_recv().is_err(), "nothing refused reached the queue");
    }
}
