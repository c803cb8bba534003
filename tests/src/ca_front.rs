//! A CA fault front: a TLS proxy in front of Pebble that passes every
//! request through unchanged, except those whose path starts with a
//! programmed prefix, which get a fault instead (an error status, a 503
//! with `Retry-After`, a body that is not JSON, an empty or a huge body, no
//! answer at all, a closed connection). It can also refuse every
//! connection, or rate-limit a path prefix with a token bucket (429
//! `rateLimited` with `Retry-After` beyond it, as Let's Encrypt answers).
//! Each request is logged with its arrival, its answer's time and what it got.
//!
//! The `Host` header is passed on, so Pebble builds every URL it sends
//! (directory, orders, authorizations, certificates) on the front's port
//! and the client keeps talking to the front. Pebble's paths:
//! `/dir`, `/nonce-plz`, `/sign-me-up` (newAccount), `/order-plz`
//! (newOrder), `/authZ/`, `/chalZ/`, `/finalize-order/`, `/my-order/`,
//! `/certZ/`, `/revoke-cert`.
//!
//! Like the ARI front, it serves the certificate and key it is given
//! (Pebble's listener files cover `127.0.0.1`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What a faulty request gets instead of Pebble's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with an `application/problem+json` body
    /// (`serverInternal` for 5xx, `rateLimited` for 429, else `malformed`).
    Status(u16),
    /// 503 with `Retry-After: <secs>` and a `serverInternal` problem.
    RetryAfter(u64),
    /// 429 with `Retry-After: <secs>` and a `rateLimited` problem, as
    /// Let's Encrypt answers beyond a rate limit.
    RateLimited(u64),
    /// 403 `unauthorized`, as Boulder answers a deactivated account:
    /// `Account is not valid, has status "deactivated"`.
    Deactivated,
    /// 200 `application/json` with a body that is not JSON.
    Malformed,
    /// 200 `application/json` with an empty body.
    Empty,
    /// 200 `application/json` with this many bytes of body.
    Huge(usize),
    /// The request is read and never answered.
    Stall,
    /// The connection is closed without an answer.
    Close,
}

/// One request the front saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When its headers arrived.
    pub arrived: SystemTime,
    /// When it was answered.
    pub at: SystemTime,
    pub method: String,
    pub path: String,
    /// `pebble <status>` or the fault, e.g. `RetryAfter(5)`.
    pub answer: String,
}

#[derive(Debug)]
struct Rule {
    prefix: String,
    fault: Fault,
    /// How many more requests get it; `None`: all.
    left: Option<u32>,
}

/// A token bucket on a path prefix: `burst` requests at once, refilled
/// at `per_second`; a request finding it empty gets 429 with `Retry-After`
/// (whole seconds, rounded up) until the next token.
#[derive(Debug)]
struct Bucket {
    prefix: String,
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Bucket {
    /// Takes a token; without one, the seconds until the next.
    fn take(&mut self, now: std::time::Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err((((1.0 - self.tokens) / self.per_second).ceil() as u64).max(1))
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    buckets: Vec<Bucket>,
    seen: Vec<Seen>,
}

impl State {
    /// The fault for `path`, taking one use of its rule, else a token from
    /// its bucket: an empty bucket is a [`Fault::RateLimited`].
    fn fault(&mut self, path: &str) -> Option<Fault> {
        if let Some(fault) = self.rule(path) {
            return Some(fault);
        }
        let bucket = self.buckets.iter_mut().find(|b| path.starts_with(&b.prefix))?;
        bucket.take(std::time::Instant::now()).err().map(Fault::RateLimited)
    }

    /// Gives back the token a request to `path` took when Pebble refused
    /// its nonce: Boulder checks the JWS and its nonce before the rate
    /// limits, so such a request never counts against them.
    fn refund(&mut self, path: &str) {
        if let Some(bucket) = self.buckets.iter_mut().find(|b| path.starts_with(&b.prefix)) {
            bucket.tokens = (bucket.tokens + 1.0).min(bucket.burst);
        }
    }

    fn rule(&mut self, path: &str) -> Option<Fault> {
        let rule = self.rules.iter_mut().find(|r| path.starts_with(&r.prefix) && r.left != Some(0))?;
        if let Some(left) = &mut rule.left {
            *left -= 1;
        }
        Some(rule.fault.clone())
    }
}

/// Asynchronous finalization, as a CA that issues in the background: the
/// finalize answer and the next `polls` looks at the order say
/// `processing` with `Retry-After: secs`, then Pebble's answer goes through.
#[derive(Debug)]
struct Processing {
    secs: u64,
    polls: u32,
    /// Looks left per order id.
    orders: std::collections::HashMap<String, u32>,
}

struct Shared {
    state: Mutex<State>,
    processing: Mutex<Option<Processing>>,
    refuse: AtomicBool,
    /// Finalize requests whose CSR Boulder would refuse get its `badCSR`.
    strict: AtomicBool,
    pebble: (String, u16),
    client: Arc<rustls::ClientConfig>,
    /// Kept-alive connections to Pebble, as a CA's own front keeps them: a
    /// TLS handshake per request added about 45 ms to each, which the
    /// issuance behind the front measured as the CA's slowness.
    idle: Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
    /// At most this many requests at Pebble at once, when set
    /// ([`CaFront::upstream_limit`]).
    upstream: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

/// The running front; the server and its connections stop on drop.
pub struct CaFront {
    pub port: u16,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl CaFront {
    /// A front for Pebble's ACME API at `127.0.0.1:<pebble_port>`, trusting
    /// `trust_root_pem` (the CA of Pebble's listener), serving TLS with the
    /// PEM chain and key at `cert_path` and `key_path` on a free port.
    pub async fn start(pebble_port: u16, trust_root_pem: &str, cert_path: &Path, key_path: &Path) -> Self {
        let acceptor = TlsAcceptor::from(server_config(cert_path, key_path));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap_or_else(|e| panic!("CA front: bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("CA front: local_addr: {e}"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            processing: Mutex::new(None),
            refuse: AtomicBool::new(false),
            strict: AtomicBool::new(false),
            pebble: ("127.0.0.1".to_owned(), pebble_port),
            client: super::net::tls_config(trust_root_pem, &["http/1.1"]),
            idle: Mutex::new(Vec::new()),
            upstream: Mutex::new(None),
        });
        let server = tokio::spawn(serve(listener, acceptor, Arc::clone(&shared)));
        Self { port, shared, server }
    }

    /// `https://127.0.0.1:<port>/dir`: give this to the ACME client.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Requests whose path starts with `prefix` get `fault`, the next
    /// `times` of them (`None`: every one). Earlier rules match first.
    pub fn fault(&self, prefix: &str, fault: Fault, times: Option<u32>) {
        self.state().rules.push(Rule { prefix: prefix.to_owned(), fault, left: times });
    }

    /// At most `burst` requests whose path starts with `prefix` at once,
    /// refilled at `per_second`: beyond that, 429 `rateLimited` with
    /// `Retry-After` (logged as `RateLimited(secs)`). Rules come first.
    pub fn rate_limit(&self, prefix: &str, per_second: u32, burst: u32) {
        self.state().buckets.push(Bucket {
            prefix: prefix.to_owned(),
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: std::time::Instant::now(),
        });
    }

    /// No more faults or rate limits: everything goes to Pebble.
    pub fn clear(&self) {
        let mut state = self.state();
        state.rules.clear();
        state.buckets.clear();
    }

    /// While `on`, every connection is closed as soon as it is accepted.
    /// Judge every finalize request's CSR by Let's Encrypt's production
    /// rules (`strict_csr`) and refuse it with `badCSR` as Boulder does.
    pub fn strict_csr(&self, on: bool) {
        self.shared.strict.store(on, Ordering::SeqCst);
    }

    /// Passes at most `requests` requests to Pebble at once; the others
    /// wait their turn at the front, as behind a CA's own load balancer.
    /// Pebble 2.4's in-memory store deadlocks under a long storm of
    /// concurrent orders (benchmarks.md, mass renewal); a CA does not.
    pub fn upstream_limit(&self, requests: usize) {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(requests.max(1)));
        *self.shared.upstream.lock().unwrap_or_else(PoisonError::into_inner) = Some(semaphore);
    }

    pub fn refuse_connections(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Finalize asynchronously: each order stays `processing` (with
    /// `Retry-After: secs`) in the finalize answer and the next `polls`
    /// looks at it, as a CA whose issuance takes a while.
    pub fn processing(&self, secs: u64, polls: u32) {
        let mode = Processing { secs, polls, orders: std::collections::HashMap::new() };
        *self.shared.processing.lock().unwrap_or_else(PoisonError::into_inner) = Some(mode);
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for CaFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .unwrap_or_else(|e| panic!("CA front: {}: {e}", cert_path.display()))
        .map(|c| c.unwrap_or_else(|e| panic!("CA front: {}: {e}", cert_path.display())))
        .collect();
    let key =
        PrivateKeyDer::from_pem_file(key_path).unwrap_or_else(|e| panic!("CA front: {}: {e}", key_path.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("CA front: {e}"))
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap_or_else(|e| panic!("CA front: certificate/key: {e}"));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        if shared.refuse.load(Ordering::SeqCst) {
            drop(tcp);
            continue;
        }
        let (acceptor, shared) = (acceptor.clone(), Arc::clone(&shared));
        connections.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |request: Request<Incoming>| {
                let shared = Arc::clone(&shared);
                async move { answer(request, &shared).await }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// The error that makes hyper close the connection without an answer.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed by the CA front")
    }
}

impl std::error::Error for Closed {}

async fn answer(request: Request<Incoming>, shared: &Shared) -> Result<Response<Full<Bytes>>, Closed> {
    let arrived = SystemTime::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let fault = shared.state.lock().unwrap_or_else(PoisonError::into_inner).fault(&path);
    let strict = shared.strict.load(Ordering::SeqCst) && path.starts_with("/finalize-order/");
    let (response, answer) = match fault {
        None if strict => {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            match super::strict_csr::refusal(&body) {
                Some(why) => (Ok(bad_csr(&why)), format!("badCSR: {why}")),
                None => {
                    let response = forward(Request::from_parts(parts, Full::new(body)), shared).await;
                    let answer = format!("pebble {} (CSR as Boulder wants it)", response.status().as_u16());
                    (Ok(response), answer)
                }
            }
        }
        None => {
            let response = forward(request, shared).await;
            let answer = format!("pebble {}", response.status().as_u16());

            // Only what Pebble accepted (a refused nonce is sent again).
            let accepted = response.status().is_success();
            match if accepted { still_processing(&path, shared) } else { None } {
                Some(secs) => (Ok(as_processing(response, secs).await), format!("{answer}, made processing")),
                None => (Ok(response), answer),
            }
        }
        Some(fault) => (faulty(&fault), format!("{fault:?}")),
    };
    let seen = Seen { arrived, at: SystemTime::now(), method, path, answer };
    shared.state.lock().unwrap_or_else(PoisonError::into_inner).seen.push(seen);
    match response {
        Ok(response) => Ok(response),
        Err(Fault::Stall) => std::future::pending().await,
        Err(_) => Err(Closed),
    }
}

/// With asynchronous finalization on, whether this answer says
/// `processing` (and with which `Retry-After`): a finalize starts the count
/// of looks for its order.
fn still_processing(path: &str, shared: &Shared) -> Option<u64> {
    let mut mode = shared.processing.lock().unwrap_or_else(PoisonError::into_inner);
    let mode = mode.as_mut()?;
    if let Some(id) = path.strip_prefix("/finalize-order/") {
        mode.orders.insert(id.to_owned(), mode.polls);
        return Some(mode.secs);
    }
    let left = mode.orders.get_mut(path.strip_prefix("/my-order/")?)?;
    if *left == 0 {
        return None;
    }
    *left -= 1;
    Some(mode.secs)
}

/// Pebble's order answer rewritten as still `processing`, without its
/// certificate URL, with `Retry-After: secs`.
async fn as_processing(response: Response<Full<Bytes>>, secs: u64) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let Ok(mut order) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Response::from_parts(parts, Full::new(body));
    };
    if let Some(fields) = order.as_object_mut() {
        fields.insert("status".into(), "processing".into());
        fields.remove("certificate");
    }
    parts.headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    Response::from_parts(parts, Full::new(Bytes::from(order.to_string())))
}

/// The fault's answer, or `Err` for those that give none.
fn faulty(fault: &Fault) -> Result<Response<Full<Bytes>>, Fault> {
    let json = |status: StatusCode, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    match fault {
        Fault::Status(code) => Ok(problem(StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))),
        Fault::RetryAfter(secs) => {
            let mut response = problem(StatusCode::SERVICE_UNAVAILABLE);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(*secs));
            Ok(response)
        }
        Fault::RateLimited(secs) => {
            let mut response = problem(StatusCode::TOO_MANY_REQUESTS);
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(*secs));
            Ok(response)
        }
        Fault::Deactivated => {
            let body = serde_json::json!({
                "type": "urn:ietf:params:acme:error:unauthorized",
                "detail": "Account is not valid, has status \"deactivated\"",
                "status": 403,
            });
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            Ok(response)
        }
        Fault::Malformed => Ok(json(StatusCode::OK, Bytes::from_static(b"{\"status\": \"valid\", oops"))),
        Fault::Empty => Ok(json(StatusCode::OK, Bytes::new())),
        Fault::Huge(size) => Ok(json(StatusCode::OK, Bytes::from(vec![b' '; *size]))),
        Fault::Stall | Fault::Close => Err(fault.clone()),
    }
}

fn problem(status: StatusCode) -> Response<Full<Bytes>> {
    let kind = match status.as_u16() {
        429 => "rateLimited",
        500.. => "serverInternal",
        _ => "malformed",
    };
    let body = serde_json::json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": format!("CA front: programmed to answer {status}"),
        "status": status.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// Boulder's answer to a CSR it refuses.
fn bad_csr(why: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": "urn:ietf:params:acme:error:badCSR",
        "detail": format!("Error finalizing order :: {why}"),
        "status": 400,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// `request` sent to Pebble as it came (its `Host` too); Pebble's answer,
/// or a 502 saying why there is none.
async fn forward<B>(request: Request<B>, shared: &Shared) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    match try_forward(request, shared).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("CA front: {e}"))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn try_forward<B>(request: Request<B>, shared: &Shared) -> Result<Response<Full<Bytes>>, String>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let body = body.collect().await.map_err(|e| format!("reading the request: {e}"))?.to_bytes();
    let upstream = shared.upstream.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let _turn = match upstream {
        Some(semaphore) => Some(semaphore.acquire_owned().await.map_err(|e| format!("upstream limit: {e}"))?),
        None => None,
    };
    let mut sender = match idle_sender(shared) {
        Some(sender) => sender,
        None => connect(shared).await?,
    };
    let mut upstream = Request::from_parts(parts, Full::new(body));
    upstream.headers_mut().remove(TRANSFER_ENCODING);
    let response = sender.send_request(upstream).await.map_err(|e| format!("Pebble: {e}"))?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("Pebble's body: {e}"))?.to_bytes();
    shared.idle.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
    if parts.status == StatusCode::BAD_REQUEST && body.windows(8).any(|w| w == b"badNonce") {
        shared.state.lock().unwrap_or_else(PoisonError::into_inner).refund(&path);
    }
    parts.headers.remove(TRANSFER_ENCODING);
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A kept-alive connection to Pebble that can take a request, if any.
fn idle_sender(shared: &Shared) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let mut idle = shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
    while let Some(sender) = idle.pop() {
        if sender.is_ready() {
            return Some(sender);
        }
    }
    None
}

/// A new connection to Pebble.
async fn connect(shared: &Shared) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect((shared.pebble.0.as_str(), shared.pebble.1))
        .await
        .map_err(|e| format!("connect to Pebble: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("127.0.0.1".to_owned()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::clone(&shared.client))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to Pebble: {e}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP to Pebble: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}
