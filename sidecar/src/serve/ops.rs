//! The ops listener (`[listen] ops`): `/healthz`, `/readyz` and `/metrics`
//! for the kubelet and Prometheus, on an address of its own so that probing
//! the sidecar never exposes the challenge API or on-demand reports.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /healthz` | `200 ok` while the process answers |
//! | `GET /readyz` | `200 ready` or `503 not ready`, one line per check |
//! | `GET /metrics` | the OpenMetrics text |

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::serve::door::{self, Limits, Reply};
use crate::serve::health::Readiness;

/// The answer to an ops request, or `None` for any other path.
pub fn route<B>(readiness: &Readiness, req: &Request<B>) -> Option<Reply> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    Some(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/metrics" => {
            let mut rsp = text(StatusCode::OK, crate::serve::metrics::metrics().encode());
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            rsp
        }
        "/readyz" => {
            let (ready, report) = readiness.report();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, if ready { format!("ready\n{report}") } else { format!("not ready\n{report}") })
        }
        _ => return None,
    })
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut rsp = Response::new(Full::new(body.into()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    rsp.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    rsp
}

/// Binds `address` and serves the ops endpoints until the task is aborted.
pub async fn serve(address: SocketAddr, readiness: Readiness) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "ops listener (healthz, readyz, metrics) listening");
    Ok(door::serve_http(listener, "ops", Limits::OPERATOR, move |req| {
        let answer = route(&readiness, &req).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"));
        async move { answer }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn get(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap_or_else(|e| panic!("bad test request: {e}"))
    }

    async fn body(rsp: Reply) -> (StatusCode, String) {
        let status = rsp.status();
        let bytes = rsp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn readyz_says_which_check_fails_and_metrics_encode() {
        let readiness = Readiness::default();
        let answer = |path| route(&readiness, &get(path)).unwrap_or_else(|| panic!("no answer for {path}"));
        readiness.set("store", Ok(()));
        assert_eq!(body(answer("/readyz")).await, (StatusCode::OK, "ready\nok store\n".into()));
        readiness.set("certificate:web", Err("no certificate issued yet".into()));
        let (status, text) = body(answer("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("fail certificate:web: no certificate issued yet"), "{text}");
        let (status, text) = body(answer("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(body(answer("/healthz")).await, (StatusCode::OK, "ok\n".into()));
        assert!(route(&readiness, &get("/.well-known/acme-challenge/tok")).is_none());
        assert!(route(&readiness, &get("/v1/on-demand")).is_none());
    }
}
