//! An "ARI front" for Pebble 2.4, which has no ACME Renewal Information
//! (RFC 9773): a small HTTPS server whose `/dir` is Pebble's real directory
//! plus a `renewalInfo` URL pointing back at the front. Every other directory
//! URL still points at Pebble, so an ACME client talks to Pebble directly for
//! everything except renewal information, which the test programs here.
//!
//! The front serves the certificate and key it is given; tests pass Pebble's
//! own listener files (`minica.cert_path`, `minica.key_path`, which cover
//! `localhost` and `127.0.0.1`), so a client trusting Pebble's listener CA
//! trusts the front too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::net::https_get_with_headers;

/// The path of the renewal-info resource; certIDs are appended as `/<certID>`.
pub const RENEWAL_INFO_PATH: &str = "/renewal-info";

/// The `Retry-After` (seconds) sent with [`Answer::Malformed`] and
/// [`Answer::Status`]: instant-acme rejects a renewal-info response without
/// `Retry-After` before it looks at the status or the body, so without one
/// those answers would never reach the paths they are meant to test.
pub const ERROR_RETRY_AFTER_SECS: u64 = 60;

/// What `GET /renewal-info/<certID>` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 `{"suggestedWindow": {"start": .., "end": ..}}` (RFC 3339) with
    /// `Retry-After: <retry_after_secs>`.
    Window { start: SystemTime, end: SystemTime, retry_after_secs: u64 },
    /// 200 with this body verbatim (content-type application/json) and
    /// `Retry-After: ERROR_RETRY_AFTER_SECS`.
    Malformed(String),
    /// This status with an `application/problem+json` body and
    /// `Retry-After: ERROR_RETRY_AFTER_SECS`.
    Status(u16),
}

impl Answer {
    fn validate(&self) {
        match self {
            Self::Status(code) => {
                let status = StatusCode::from_u16(*code).unwrap_or_else(|e| panic!("Answer::Status({code}): {e}"));
                assert!(!status.is_informational(), "Answer::Status({code}): a 1xx status is not a final answer");
            }
            Self::Window { start, end, .. } => {
                assert!(start <= end, "Answer::Window: start {start:?} is after end {end:?}");
            }
            Self::Malformed(_) => {}
        }
    }
}

#[derive(Debug)]
struct State {
    default: Answer,
    answers: HashMap<String, Answer>,
    requests: Vec<String>,
    /// Each request: certID, when, and the `Retry-After` it was answered.
    timed: Vec<(String, SystemTime, u64)>,
}

/// The running front; the server (and its open connections) stop on drop.
#[derive(Debug)]
pub struct AriFront {
    pub port: u16,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl AriFront {
    /// Fetches Pebble's directory from `pebble_dir_url` (e.g.
    /// `https://127.0.0.1:14000/dir`), trusting only `trust_root_pem` (the CA
    /// of Pebble's listener), and serves it with `renewalInfo` added, over TLS
    /// with the PEM certificate chain and key at `cert_path` and `key_path`,
    /// on a free port of 127.0.0.1.
    ///
    /// Pebble's directory does not change while it runs, so it is fetched
    /// once, here: a wrong URL or trust root fails the test at start.
    pub async fn start(pebble_dir_url: &str, trust_root_pem: &str, cert_path: &Path, key_path: &Path) -> Self {
        let acceptor = TlsAcceptor::from(server_config(cert_path, key_path));
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).await.unwrap_or_else(|e| panic!("ARI front: bind 127.0.0.1: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("ARI front: local_addr: {e}"));
        let directory = Arc::new(front_directory(pebble_dir_url, trust_root_pem, port).await);
        let state = Arc::new(Mutex::new(State {
            default: Answer::Status(404),
            answers: HashMap::new(),
            requests: Vec::new(),
            timed: Vec::new(),
        }));
        let server = tokio::spawn(serve(listener, acceptor, directory, Arc::clone(&state)));
        Self { port, state, server }
    }

    /// `https://127.0.0.1:<port>/dir`: give this to the ACME client.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// `https://127.0.0.1:<port>/renewal-info`, as advertised in the directory.
    pub fn renewal_info_url(&self) -> String {
        format!("https://127.0.0.1:{}{RENEWAL_INFO_PATH}", self.port)
    }

    /// The answer for every certID without its own (initially `Status(404)`).
    pub fn set_default(&self, answer: Answer) {
        answer.validate();
        self.lock().default = answer;
    }

    /// The answer for `cert_id` (as in [`cert_id`]) from now on.
    pub fn set_answer_for(&self, cert_id: &str, answer: Answer) {
        answer.validate();
        self.lock().answers.insert(cert_id.to_owned(), answer);
    }

    /// Every certID polled so far, in order (repeats included).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Every request so far: certID, when it came, and the `Retry-After`
    /// (seconds) it was answered with.
    pub fn timed_requests(&self) -> Vec<(String, SystemTime, u64)> {
        self.lock().timed.clone()
    }

    /// Requests for a certID that came before the `Retry-After` of the
    /// previous answer for it had passed (RFC 9773 §4.3: a client polls no
    /// sooner), with `slack` for clock and scheduling noise.
    pub fn early_requests(&self, slack: Duration) -> usize {
        let mut last: HashMap<String, (SystemTime, u64)> = HashMap::new();
        let mut early = 0;
        for (id, at, retry_after) in self.timed_requests() {
            if let Some((before, secs)) = last.get(&id) {
                if at + slack < *before + Duration::from_secs(*secs) {
                    early += 1;
                }
            }
            last.insert(id, (at, retry_after));
        }
        early
    }

    /// Up to `k` certIDs with an early request ([`Self::early_requests`]),
    /// each with its requests' times (seconds since the first request of
    /// all) and the `Retry-After` each got: what a reader needs to tell why.
    pub fn early_examples(&self, slack: Duration, k: usize) -> Vec<String> {
        let timed = self.timed_requests();
        let Some(first) = timed.first().map(|(_, at, _)| *at) else { return Vec::new() };
        let mut by_id: HashMap<&str, Vec<(SystemTime, u64)>> = HashMap::new();
        for (id, at, retry_after) in &timed {
            by_id.entry(id.as_str()).or_default().push((*at, *retry_after));
        }
        let mut out = Vec::new();
        for (id, requests) in by_id {
            let early = requests.windows(2).any(|w| w[1].0 + slack < w[0].0 + Duration::from_secs(w[0].1));
            if early && out.len() < k {
                let since = |at: SystemTime| at.duration_since(first).unwrap_or_default().as_secs_f64();
                let times: Vec<String> =
                    requests.iter().map(|(at, ra)| format!("{:.2} s (Retry-After {ra})", since(*at))).collect();
                out.push(format!("{id}: {}", times.join(", ")));
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for AriFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panicking test thread must not hide the state from the others.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The RFC 9773 §4.1 certID of a DER certificate:
/// base64url(AKI keyIdentifier) "." base64url(serial DER content bytes).
pub fn cert_id(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).unwrap_or_else(|e| panic!("cert_id: not an X.509 certificate: {e}"));
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
        .unwrap_or_else(|| panic!("cert_id: the certificate has no Authority Key Identifier keyIdentifier"));
    format!("{}.{}", URL_SAFE_NO_PAD.encode(aki), URL_SAFE_NO_PAD.encode(cert.tbs_certificate.raw_serial()))
}

fn server_config(cert_path: &Path, key_path: &Path) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .unwrap_or_else(|e| panic!("ARI front: {}: {e}", cert_path.display()))
        .map(|c| c.unwrap_or_else(|e| panic!("ARI front: {}: {e}", cert_path.display())))
        .collect();
    assert!(!certs.is_empty(), "ARI front: no certificate in {}", cert_path.display());
    let key =
        PrivateKeyDer::from_pem_file(key_path).unwrap_or_else(|e| panic!("ARI front: {}: {e}", key_path.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("ARI front: {e}"))
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap_or_else(|e| panic!("ARI front: certificate/key: {e}"));
    // The server speaks HTTP/1.1 only; clients offering h2 too fall back.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Pebble's directory with `renewalInfo` pointing at the front.
async fn front_directory(pebble_dir_url: &str, trust_root_pem: &str, front_port: u16) -> String {
    let uri: Uri = pebble_dir_url.parse().unwrap_or_else(|e| panic!("ARI front: {pebble_dir_url:?}: {e}"));
    assert_eq!(uri.scheme_str(), Some("https"), "ARI front: {pebble_dir_url:?} is not https");
    let host = uri.host().unwrap_or_else(|| panic!("ARI front: {pebble_dir_url:?} has no host"));
    let port = uri.port_u16().unwrap_or(443);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let config = super::net::tls_config(trust_root_pem, &[]);
    // Not `net::https_get`: its Host header has no port, and Pebble would
    // then advertise URLs on port 443.
    let (status, _, body) = https_get_with_headers(config, (host, port), host, path).await;
    assert_eq!(status, 200, "ARI front: Pebble's {pebble_dir_url} answered {status}: {body}");
    let mut directory: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("ARI front: Pebble's directory is not JSON ({e}): {body}"));
    let object = directory
        .as_object_mut()
        .unwrap_or_else(|| panic!("ARI front: Pebble's directory is not a JSON object: {body}"));
    object.insert(
        "renewalInfo".to_owned(),
        serde_json::Value::String(format!("https://127.0.0.1:{front_port}{RENEWAL_INFO_PATH}")),
    );
    directory.to_string()
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, directory: Arc<String>, state: Arc<Mutex<State>>) {
    // Owned by this task: aborting it drops the set, which aborts every
    // connection still open.
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let (acceptor, directory, state) = (acceptor.clone(), Arc::clone(&directory), Arc::clone(&state));
        connections.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &directory, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

fn respond(request: &Request<Incoming>, directory: &str, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if request.method() != Method::GET {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "malformed",
            &format!("ARI front: no {} here", request.method()),
        );
    }
    if path == "/dir" {
        return response(StatusCode::OK, "application/json", directory.to_owned(), None);
    }
    let cert_id = path.strip_prefix(RENEWAL_INFO_PATH).and_then(|rest| rest.strip_prefix('/'));
    let Some(cert_id) = cert_id.filter(|id| !id.is_empty() && !id.contains('/')) else {
        return problem(StatusCode::NOT_FOUND, "malformed", &format!("ARI front: nothing at {path}"));
    };
    let answer = {
        let mut state = lock(state);
        state.requests.push(cert_id.to_owned());
        let answer = state.answers.get(cert_id).unwrap_or(&state.default).clone();
        let retry_after = match &answer {
            Answer::Window { retry_after_secs, .. } => *retry_after_secs,
            Answer::Malformed(_) | Answer::Status(_) => ERROR_RETRY_AFTER_SECS,
        };
        state.timed.push((cert_id.to_owned(), SystemTime::now(), retry_after));
        answer
    };
    match answer {
        Answer::Window { start, end, retry_after_secs } => {
            let body = serde_json::json!({
                "suggestedWindow": { "start": rfc3339(start), "end": rfc3339(end) }
            });
            response(StatusCode::OK, "application/json", body.to_string(), Some(retry_after_secs))
        }
        Answer::Malformed(body) => response(StatusCode::OK, "application/json", body, Some(ERROR_RETRY_AFTER_SECS)),
        Answer::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = match code {
                429 => "rateLimited",
                500.. => "serverInternal",
                _ => "malformed",
            };
            let mut response = problem(status, kind, &format!("ARI front: programmed to answer {code} for {cert_id}"));
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(ERROR_RETRY_AFTER_SECS));
            response
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("ARI front: {t:?} as RFC 3339: {e}"))
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail,
        "status": status.as_u16(),
    });
    response(status, "application/problem+json", body.to_string(), None)
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    retry_after_secs: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(secs) = retry_after_secs {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
