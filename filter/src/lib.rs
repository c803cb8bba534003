//! proxy-wasm HTTP filter answering ACME HTTP-01 challenges for Envoy.
//!
//! Requests under `/.well-known/acme-challenge/` are validated and answered
//! with the key authorization fetched from the proxy-acme sidecar (an
//! Envoy cluster) through `dispatch_http_call`; everything else passes
//! after a single `:path` read.
//!
//! The decision logic lives in plain modules ([`config`], [`challenge`],
//! [`host`], [`reply`]) that are unit-tested natively; only this file
//! talks to proxy-wasm. It never panics on its own: all host calls go
//! through the `Result`-returning [`proxy_wasm::hostcalls`] functions,
//! because a panic aborts the wasm VM of the whole Envoy worker.

pub mod challenge;
pub mod config;
pub mod host;
pub mod on_demand;
pub mod reply;
pub mod retry;

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::challenge::{decide, is_challenge_path, sidecar_path, Decision};
use crate::config::FilterConfig;
use crate::on_demand::Reporter;
use crate::reply::{LocalReply, SidecarAnswer, CONTENT_TYPE, MAX_KEY_AUTHORIZATION_LEN};
use crate::retry::{Retries, Waiting, TICK_MS};

/// Prefix of every log line, so the filter's lines are easy to grep.
const LOG_PREFIX: &str = "proxy-acme-filter";
/// Header telling the sidecar which host the challenge (or report) is for.
const HOST_HEADER: &str = "x-proxy-acme-host";
/// The sidecar's path for on-demand reports.
const ON_DEMAND_PATH: &str = "/v1/on-demand";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AcmeRoot::default()) });
}}

/// Logs through the host; a failed log call is not worth failing over.
fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Reads a request header as bytes; absent or unreadable both mean `None`.
fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten()
}

/// Sends a local reply; returns false (after logging) if the host refused.
fn send_reply(reply: &LocalReply) -> bool {
    match hostcalls::send_http_response(reply.status, vec![CONTENT_TYPE], Some(&reply.body)) {
        Ok(()) => true,
        Err(status) => {
            log(LogLevel::Error, &format!("{LOG_PREFIX}: cannot send local reply {}: {status:?}", reply.status));
            false
        }
    }
}

/// Milliseconds since the Unix epoch, by the host's clock.
fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Dispatches the challenge call for `token` and `host` to the sidecar.
fn call_sidecar(config: &FilterConfig, token: &str, host: &str) -> Result<u32, proxy_wasm::types::Status> {
    let path = sidecar_path(token);
    let headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", config.authority.as_str()),
        (HOST_HEADER, host),
    ];
    hostcalls::dispatch_http_call(&config.cluster, headers, None, vec![], config.timeout)
}

/// The sidecar's answer to a challenge call, read in its callback.
fn read_answer(token: &str, num_headers: usize, body_size: usize) -> SidecarAnswer {
    // Zero headers is how Envoy reports connect failure or timeout.
    let has_headers = num_headers > 0;
    let status = if has_headers {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status").ok().flatten()
    } else {
        None
    };
    let body = if status.as_deref() == Some(b"200") && body_size > 0 {
        let max = body_size.min(MAX_KEY_AUTHORIZATION_LEN);
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, max).ok().flatten().unwrap_or_default()
    } else {
        Vec::new()
    };
    SidecarAnswer::from_response(token, has_headers, status.as_deref(), body_size, body)
}

/// Logs the answer and replies with it on the current stream; resumes the
/// request if the host refused the reply (rather than hang it).
fn answer_stream(answer: SidecarAnswer, token: &str, host: &str) {
    match &answer {
        SidecarAnswer::KeyAuthorization(_) => {
            log(LogLevel::Debug, &format!("{LOG_PREFIX}: answered challenge token {token} for host {host}"))
        }
        SidecarAnswer::NotFound => {
            log(LogLevel::Debug, &format!("{LOG_PREFIX}: no challenge for token {token} host {host}"))
        }
        SidecarAnswer::Failed(why) => {
            log(LogLevel::Warn, &format!("{LOG_PREFIX}: sidecar failed for token {token} host {host}: {why}"))
        }
    }
    if !send_reply(&answer.into_reply()) {
        if let Err(status) = hostcalls::resume_http_request() {
            log(LogLevel::Error, &format!("{LOG_PREFIX}: cannot resume request: {status:?}"));
        }
    }
}

// === impl AcmeRoot ===

/// Root context: owns the parsed configuration for the plugin.
#[derive(Debug, Default)]
struct AcmeRoot {
    /// `None` until a configuration was accepted.
    config: Option<Rc<FilterConfig>>,
    /// With `on_demand`: which hosts this worker reported, shared by its streams.
    reporter: Option<Rc<RefCell<Reporter>>>,
    /// Challenge requests waiting for a sidecar that did not answer.
    retries: Rc<RefCell<Retries>>,
}

impl AcmeRoot {
    /// Answers the waiting stream `waiting` (from the root context) and
    /// forgets it; a stream that is gone (the validator hung up) is skipped.
    fn answer_waiting(waiting: &Waiting, answer: SidecarAnswer) {
        if hostcalls::set_effective_context(waiting.context_id).is_ok() {
            answer_stream(answer, &waiting.token, &waiting.host);
        }
    }
}

impl Context for AcmeRoot {
    /// A call made for a waiting request: answered, or still no sidecar
    /// (held again until its deadline).
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(waiting) = self.retries.borrow_mut().answered(token_id) else { return };
        let answer = read_answer(&waiting.token, num_headers, body_size);
        if answer.sidecar_down() && self.retries.borrow_mut().hold(waiting.clone(), now_ms()) {
            return;
        }
        if !answer.sidecar_down() {
            log(
                LogLevel::Info,
                &format!("{LOG_PREFIX}: the sidecar answers again (token {} host {})", waiting.token, waiting.host),
            );
        }
        Self::answer_waiting(&waiting, answer);
    }
}

impl RootContext for AcmeRoot {
    /// Parses the plugin configuration. On error, logs one line naming the
    /// problem and returns false, so Envoy rejects the plugin; a previously
    /// accepted configuration (if any) is left in place.
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(status) => {
                log(LogLevel::Error, &format!("{LOG_PREFIX}: cannot read configuration: {status:?}"));
                return false;
            }
        };
        match FilterConfig::parse(bytes.as_deref()) {
            Ok(config) => {
                self.reporter =
                    config.on_demand.then(|| Rc::new(RefCell::new(Reporter::new(config.on_demand_per_second))));
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                log(LogLevel::Error, &format!("{LOG_PREFIX}: invalid configuration: {err}"));
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Must never return None: the SDK panics on it.
        Some(Box::new(AcmeHttp {
            context_id,
            config: self.config.clone(),
            reporter: self.reporter.clone(),
            retries: Rc::clone(&self.retries),
            pending: None,
        }))
    }

    /// While requests wait for the sidecar: calls for those due; the tick
    /// stops when none waits.
    fn on_tick(&mut self) {
        let Some(config) = self.config.clone() else { return };
        let now = now_ms();
        let due = self.retries.borrow_mut().due(now);
        for waiting in due {
            match call_sidecar(&config, &waiting.token, &waiting.host) {
                Ok(call) => self.retries.borrow_mut().called(call, waiting),
                Err(_) => Self::answer_waiting(&waiting, SidecarAnswer::Failed(reply::SidecarFailure::NoResponse)),
            }
        }
        if self.retries.borrow().is_empty() {
            let _ = hostcalls::set_tick_period(std::time::Duration::ZERO);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

// === impl AcmeHttp ===

/// Per-stream context.
#[derive(Debug)]
struct AcmeHttp {
    context_id: u32,
    /// Shared configuration; `None` only if the plugin was never configured,
    /// in which case the filter passes everything through.
    config: Option<Rc<FilterConfig>>,
    reporter: Option<Rc<RefCell<Reporter>>>,
    retries: Rc<RefCell<Retries>>,
    /// The outstanding sidecar call, if the stream is paused on one.
    pending: Option<Pending>,
}

/// A sidecar call in flight, with what is needed to check and log its answer.
#[derive(Debug)]
struct Pending {
    call: u32,
    /// The challenge token; `None` for an on-demand report.
    token: Option<String>,
    host: String,
    /// When the call was made (ms since the epoch).
    at_ms: u64,
}

impl AcmeHttp {
    /// Sends `reply` and tells Envoy to stop processing the request.
    fn reply_now(reply: &LocalReply) -> Action {
        if send_reply(reply) {
            Action::Pause
        } else {
            // No reply went out: fail open rather than hang the stream.
            Action::Continue
        }
    }

    /// Dispatches the sidecar call and pauses the request until it answers.
    fn ask_sidecar(&mut self, config: &FilterConfig, token: String, host: String) -> Action {
        match call_sidecar(config, &token, &host) {
            Ok(call) => {
                self.pending = Some(Pending { call, token: Some(token), host, at_ms: now_ms() });
                Action::Pause
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "{LOG_PREFIX}: cannot call sidecar cluster {:?} for token {token} host {host}: {status:?}",
                        config.cluster
                    ),
                );
                Self::reply_now(&LocalReply::unavailable())
            }
        }
    }

    /// Holds the request for the root context to ask the sidecar again
    /// (it did not answer: restarting?); `false` when it must be answered
    /// now (waiting is off, too long, or too many wait).
    fn wait_for_sidecar(&self, token: &str, host: &str, asked_ms: u64) -> bool {
        let Some(config) = &self.config else { return false };
        let window = u64::try_from(config.sidecar_retry.as_millis()).unwrap_or(u64::MAX);
        if window == 0 {
            return false;
        }
        let waiting = Waiting {
            context_id: self.context_id,
            token: token.to_owned(),
            host: host.to_owned(),
            deadline_ms: asked_ms.saturating_add(window),
            next_ms: 0,
        };
        if !self.retries.borrow_mut().hold(waiting, now_ms()) {
            return false;
        }
        log(
            LogLevel::Info,
            &format!("{LOG_PREFIX}: no sidecar for token {token} host {host}; waiting up to {window} ms"),
        );
        let _ = hostcalls::set_tick_period(std::time::Duration::from_millis(TICK_MS));
        true
    }
}

impl AcmeHttp {
    /// With `on_demand`: reports the request's host to the sidecar, once per
    /// host and within the rate, and holds the request until the sidecar
    /// has taken note (a loopback round trip; the order runs later).
    fn report_host(&mut self) -> Action {
        let (Some(config), Some(reporter)) = (&self.config, &self.reporter) else {
            return Action::Continue;
        };
        let Some(host) = request_header(":authority").and_then(|a| host::normalize_host(&a)) else {
            return Action::Continue;
        };
        if !reporter.borrow_mut().should_report(&host, now_ms()) {
            return Action::Continue;
        }
        let headers = vec![
            (":method", "POST"),
            (":path", ON_DEMAND_PATH),
            (":authority", config.authority.as_str()),
            (HOST_HEADER, host.as_str()),
        ];
        match hostcalls::dispatch_http_call(&config.cluster, headers, None, vec![], config.timeout) {
            Ok(call) => {
                self.pending = Some(Pending { call, token: None, host, at_ms: 0 });
                Action::Pause
            }
            Err(status) => {
                log(LogLevel::Warn, &format!("{LOG_PREFIX}: cannot report host {host} to the sidecar: {status:?}"));
                Action::Continue
            }
        }
    }
}

impl Context for AcmeHttp {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(Pending { token, host, at_ms, .. }) = self.pending.take_if(|p| p.call == token_id) else {
            return;
        };
        let Some(token) = token else {
            // An on-demand report: whatever the answer, the request goes on.
            if num_headers == 0 {
                log(LogLevel::Debug, &format!("{LOG_PREFIX}: sidecar did not answer the report for host {host}"));
            }
            if let Err(status) = hostcalls::resume_http_request() {
                log(LogLevel::Error, &format!("{LOG_PREFIX}: cannot resume request: {status:?}"));
            }
            return;
        };
        let answer = read_answer(&token, num_headers, body_size);
        if answer.sidecar_down() && self.wait_for_sidecar(&token, &host, at_ms) {
            return;
        }
        answer_stream(answer, &token, &host);
    }
}

impl HttpContext for AcmeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Hot path: one header read and one prefix compare for all traffic.
        let Ok(Some(path)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path") else {
            return Action::Continue;
        };
        if !is_challenge_path(&path) {
            return if self.reporter.is_some() { self.report_host() } else { Action::Continue };
        }
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };

        let method = request_header(":method");
        let authority = request_header(":authority");
        match decide(&path, method.as_deref(), authority.as_deref(), &config) {
            Decision::Pass => Action::Continue,
            Decision::Reply(reply) => Self::reply_now(&reply),
            Decision::AskSidecar { token, host } => self.ask_sidecar(&config, token, host),
        }
    }
}
