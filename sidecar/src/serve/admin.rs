//! The admin API: list, renew, revoke, account key rollover, on a Unix
//! socket (mode 0600: whoever can open it is the operator) and, when
//! configured, on TCP, where every request needs `Authorization: Bearer
//! <token>` (no admin operation without authentication on TCP). The CLI's
//! `certs`, `renew`, `revoke` and `account rollover` use it while the daemon
//! runs, so the running daemon does the work and deploys the result.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/certificates` | JSON list of [`CertStatus`] |
//! | `POST /v1/certificates/<name>/renew[?force=true]` | 200 + serial, 4xx/5xx + error |
//! | `POST /v1/certificates/<name>/renew?dry_run=true` | 200 + report, 5xx + report |
//! | `POST /v1/certificates/<name>/revoke[?reason=N]` | 200, 4xx/5xx + error |
//! | `POST /v1/accounts/<resolver>/rollover` | 200 + account URL |
//! | `POST /v1/reload` | 200 + what changed, 500 + why the file was refused |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::serve::door::{self, Limits};

/// What `certs` shows for one certificate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertStatus {
    pub name: String,
    pub domains: Vec<String>,
    pub resolver: String,
    /// Serial of the certificate deployed now, if any.
    pub serial: Option<String>,
    pub not_after: Option<String>,
    /// The schedule's own words: next renewal and why, or the backoff.
    pub state: String,
    pub last_error: Option<String>,
    /// The resolver that issued the deployed certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<String>,
    /// Why the certificate's last fallback to a later resolver happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// Every certificate's [`CertStatus`], kept by the daemon's tasks and read
/// by the admin API and the served check.
#[derive(Debug, Clone, Default)]
pub struct Statuses(Arc<RwLock<BTreeMap<String, CertStatus>>>);

impl Statuses {
    /// Records a certificate's status.
    pub fn set(&self, status: CertStatus) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(status.name.clone(), status);
    }

    /// Forgets a certificate that is no longer managed.
    pub fn remove(&self, name: &str) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// All of them, by name.
    pub fn all(&self) -> Vec<CertStatus> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// How an operation ended, as the daemon tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text says what happened (200).
    Done(String),
    /// The operation ran and failed (500).
    Failed(String),
    /// No certificate or resolver of that name (404).
    Unknown(String),
    /// Nothing can take the operation now (503).
    Unavailable(String),
}

/// What the admin API asks of the daemon: the one boundary between HTTP
/// and the daemon's command bus.
#[async_trait::async_trait]
pub trait Operations: Send + Sync + std::fmt::Debug {
    fn statuses(&self) -> Vec<CertStatus>;
    async fn renew(&self, name: &str, force: bool) -> Outcome;
    async fn revoke(&self, name: &str, reason: Option<u8>) -> Outcome;
    async fn rollover(&self, resolver: &str) -> Outcome;
    /// `renew --dry-run`: an order at the staging directory, nothing kept.
    async fn dry_run(&self, name: &str) -> Outcome {
        Outcome::Unavailable(format!("no dry run for {name} here"))
    }
    /// Re-reads the configuration file (as SIGHUP does).
    async fn reload(&self) -> Outcome {
        Outcome::Unavailable("no reload here".into())
    }
}

async fn handle(operations: &dyn Operations, method: &Method, path: &str, query: &str) -> (StatusCode, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let outcome = match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "certificates"]) => {
            return (StatusCode::OK, serde_json::to_string_pretty(&operations.statuses()).unwrap_or_default());
        }
        (&Method::POST, ["v1", "certificates", name, "renew"]) if query_flag(query, "dry_run") => {
            operations.dry_run(name).await
        }
        (&Method::POST, ["v1", "certificates", name, "renew"]) => {
            operations.renew(name, query_flag(query, "force")).await
        }
        (&Method::POST, ["v1", "certificates", name, "revoke"]) => {
            match query_value(query, "reason").map(str::parse::<u8>).transpose() {
                Ok(reason) => operations.revoke(name, reason).await,
                Err(_) => return (StatusCode::BAD_REQUEST, "reason must be an RFC 5280 code 0-10\n".into()),
            }
        }
        (&Method::POST, ["v1", "accounts", resolver, "rollover"]) => operations.rollover(resolver).await,
        (&Method::POST, ["v1", "reload"]) => operations.reload().await,
        _ => return (StatusCode::NOT_FOUND, "no such admin operation\n".into()),
    };
    let (status, text) = match outcome {
        Outcome::Done(text) => (StatusCode::OK, text),
        Outcome::Failed(text) => (StatusCode::INTERNAL_SERVER_ERROR, text),
        Outcome::Unknown(text) => (StatusCode::NOT_FOUND, text),
        Outcome::Unavailable(text) => (StatusCode::SERVICE_UNAVAILABLE, text),
    };
    (status, format!("{text}\n"))
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn query_flag(query: &str, key: &str) -> bool {
    matches!(query_value(query, key), Some("true" | "1"))
}

/// Answers one admin request; with `token`, requests without it get 401.
async fn answer(
    operations: Arc<dyn Operations>,
    token: Option<Arc<String>>,
    refusals: Arc<RefusalLog>,
    req: Request<Incoming>,
) -> door::Reply {
    if let Some(token) = &token {
        let given = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !given.and_then(bearer).is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            refusals.note(req.uri().path());
            let mut rsp = Response::new(Full::new(Bytes::from("missing or wrong bearer token\n")));
            *rsp.status_mut() = StatusCode::UNAUTHORIZED;
            rsp.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return rsp;
        }
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    let (status, body) = handle(operations.as_ref(), req.method(), req.uri().path(), &query).await;
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme
/// name is case-insensitive (RFC 9110 §11.1).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim_start_matches(' '))
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Logs refused admin requests at most once every [`RefusalLog::EVERY`],
/// with the count since the last line: a probe cannot flood the log.
#[derive(Debug, Default)]
struct RefusalLog(std::sync::Mutex<(Option<std::time::Instant>, u64)>);

impl RefusalLog {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn note(&self, path: &str) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        if state.0.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            tracing::warn!(path, refused = state.1, "admin API: missing or wrong bearer token");
            *state = (Some(std::time::Instant::now()), 0);
        }
    }
}

/// Serves the admin API on a Unix socket (0600) until the task is aborted.
pub async fn serve(path: &Path, operations: Arc<dyn Operations>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %path.display(), "admin API listening");
    let refusals = Arc::new(RefusalLog::default());
    Ok(door::serve_http(listener, "admin", Limits::OPERATOR, move |req| {
        answer(Arc::clone(&operations), None, Arc::clone(&refusals), req)
    }))
}

/// Serves the admin API on TCP, every request authenticated with `token`.
pub async fn serve_tcp(
    address: SocketAddr,
    operations: Arc<dyn Operations>,
    token: String,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "admin API listening on TCP (bearer token required)");
    let token = Arc::new(token);
    let refusals = Arc::new(RefusalLog::default());
    Ok(door::serve_http(listener, "admin_tcp", Limits::OPERATOR, move |req| {
        answer(Arc::clone(&operations), Some(Arc::clone(&token)), Arc::clone(&refusals), req)
    }))
}

/// Why the CLI could not use the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens: the daemon is not running (or uses another socket).
    #[error("the daemon is not running ({0})")]
    NotRunning(std::io::Error),
    #[error("admin API: {0}")]
    Http(String),
    /// The daemon answered with an error.
    #[error("{0}")]
    Failed(String),
}

/// Sends one request to the daemon's admin socket and returns the body.
pub async fn call(socket: &Path, method: Method, path_and_query: &str) -> Result<String, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(ClientError::NotRunning)?;
    send(stream, None, method, path_and_query).await
}

/// Sends one request to the daemon's TCP admin API with its bearer token.
pub async fn call_tcp(
    address: SocketAddr,
    token: &str,
    method: Method,
    path_and_query: &str,
) -> Result<String, ClientError> {
    let stream = tokio::net::TcpStream::connect(address).await.map_err(ClientError::NotRunning)?;
    send(stream, Some(token), method, path_and_query).await
}

async fn send<S>(stream: S, token: Option<&str>, method: Method, path_and_query: &str) -> Result<String, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path_and_query).header(http::header::HOST, "proxy-acme");
    if let Some(token) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::new())).map_err(|e| ClientError::Http(e.to_string()))?;
    let rsp = sender.send_request(req).await.map_err(|e| ClientError::Http(e.to_string()))?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
    let text = String::from_utf8_lossy(&body).trim_end().to_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(ClientError::Failed(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert!(query_flag("force=true", "force"));
        assert!(query_flag("a=b&force=1", "force"));
        assert!(!query_flag("force=no", "force"));
        assert!(!query_flag("forced=true", "force"));
        assert_eq!(query_value("reason=4", "reason"), Some("4"));
    }

    /// One certificate `web`: renewing needs `force`.
    #[derive(Debug, Default)]
    struct Fake(Statuses);

    #[async_trait::async_trait]
    impl Operations for Fake {
        fn statuses(&self) -> Vec<CertStatus> {
            self.0.all()
        }
        async fn renew(&self, name: &str, force: bool) -> Outcome {
            match (name, force) {
                ("web", true) => Outcome::Done("serial 01".into()),
                ("web", false) => Outcome::Failed("not due".into()),
                _ => Outcome::Unknown(format!("no certificate named {name}")),
            }
        }
        async fn revoke(&self, _: &str, reason: Option<u8>) -> Outcome {
            Outcome::Done(format!("reason {reason:?}"))
        }
        async fn rollover(&self, _: &str) -> Outcome {
            Outcome::Unavailable("accounts are not managed here".into())
        }
    }

    fn fake() -> Arc<dyn Operations> {
        let fake = Fake::default();
        fake.0.set(CertStatus { name: "web".into(), state: "valid".into(), ..Default::default() });
        Arc::new(fake)
    }

    #[tokio::test]
    async fn socket_round_trip_and_unknown_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        serve(&socket, fake()).await.expect("serve");
        let list = call(&socket, Method::GET, "/v1/certificates").await.expect("list");
        let parsed: Vec<CertStatus> = serde_json::from_str(&list).expect("json");
        assert_eq!(parsed[0].name, "web");
        assert_eq!(
            call(&socket, Method::POST, "/v1/certificates/web/renew?force=true").await.expect("renew"),
            "serial 01"
        );
        assert!(matches!(
            call(&socket, Method::POST, "/v1/certificates/web/renew").await,
            Err(ClientError::Failed(e)) if e == "not due"
        ));
        assert!(matches!(
            call(&socket, Method::POST, "/v1/certificates/nope/renew").await,
            Err(ClientError::Failed(e)) if e == "no certificate named nope"
        ));
        assert!(matches!(
            call(&socket, Method::POST, "/v1/certificates/web/revoke?reason=x").await,
            Err(ClientError::Failed(e)) if e.contains("RFC 5280")
        ));
        let missing = call(&dir.path().join("none.sock"), Method::GET, "/v1/certificates").await;
        assert!(matches!(missing, Err(ClientError::NotRunning(_))));
    }

    #[tokio::test]
    async fn tcp_needs_the_bearer_token() {
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = probe.local_addr().expect("addr");
        drop(probe);
        serve_tcp(address, fake(), "s3cret-token".into()).await.expect("serve");
        let list = call_tcp(address, "s3cret-token", Method::GET, "/v1/certificates").await.expect("with the token");
        assert!(list.contains("\"web\""), "{list}");
        for wrong in ["", "s3cret-tokeN", "s3cret-token-and-more"] {
            let refused = call_tcp(address, wrong, Method::GET, "/v1/certificates").await;
            assert!(
                matches!(&refused, Err(ClientError::Failed(e)) if e.contains("bearer token")),
                "{wrong:?}: {refused:?}"
            );
        }
        // The scheme name is case-insensitive (RFC 9110).
        let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let req = Request::get("/v1/certificates")
            .header(http::header::HOST, "proxy-acme")
            .header(http::header::AUTHORIZATION, "bearer s3cret-token")
            .body(Full::new(Bytes::new()))
            .expect("request");
        assert_eq!(sender.send_request(req).await.expect("send").status(), StatusCode::OK);
        assert_eq!(bearer("BEARER  tok"), Some("tok"));
        assert_eq!(bearer("Basic tok"), None);
        // No Authorization header at all.
        let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        let refused = send(stream, None, Method::POST, "/v1/certificates/web/renew?force=true").await;
        assert!(matches!(refused, Err(ClientError::Failed(e)) if e.contains("bearer token")));
    }
}
