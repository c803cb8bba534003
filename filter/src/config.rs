//! Plugin configuration: parsing and validation.
//!
//! The configuration arrives as the plugin's `configuration` string (raw
//! bytes from Envoy). Envoy refuses to activate the plugin when
//! `on_configure` returns false, so every problem must surface here as ONE
//! readable message that names the offending field: the operator sees it
//! once in the Envoy log and nowhere else.
//!
//! Fields are deserialized as loose JSON values first so that type errors
//! can name the field (serde's own type errors only give a line/column).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// Default `timeout_ms` for the sidecar call.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Accepted `timeout_ms` range (inclusive).
pub const TIMEOUT_MS_RANGE: (u64, u64) = (1, 60_000);
/// Default `:authority` sent to the sidecar.
pub const DEFAULT_AUTHORITY: &str = "proxy-acme";
/// Default `max_token_length`.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 128;
/// Accepted `max_token_length` range (inclusive).
pub const MAX_TOKEN_LENGTH_RANGE: (u64, u64) = (16, 1024);

/// Default `sidecar_retry_ms`: how long a challenge request waits for a
/// sidecar that does not answer (restarting) before it gets a 503.
pub const DEFAULT_SIDECAR_RETRY_MS: u64 = 3000;
/// Accepted `sidecar_retry_ms` range (inclusive); 0 turns waiting off.
pub const SIDECAR_RETRY_MS_RANGE: (u64, u64) = (0, 30_000);

/// Default `on_demand_per_second`.
pub const DEFAULT_ON_DEMAND_PER_SECOND: u64 = 10;
/// Accepted `on_demand_per_second` range (inclusive).
pub const ON_DEMAND_PER_SECOND_RANGE: (u64, u64) = (1, 1000);

/// Validated configuration, shared (via `Rc`) by every HTTP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Envoy cluster name of the proxy-acme sidecar.
    pub cluster: String,
    /// Timeout of the sidecar call.
    pub timeout: Duration,
    /// `:authority` header sent to the sidecar.
    pub authority: String,
    /// Longest accepted challenge token, in bytes.
    pub max_token_length: usize,
    /// Tell the sidecar about the hosts of ordinary requests (on-demand
    /// issuance; the sidecar's policy decides). Off by default.
    pub on_demand: bool,
    /// At most this many new hosts reported per second, per worker.
    pub on_demand_per_second: u64,
    /// A challenge request whose sidecar call finds no sidecar (connect
    /// failure, 503) is asked again until this much time has passed since
    /// the first call: a CA's validator that arrives while the sidecar
    /// restarts gets the answer instead of a 503. Zero: no waiting.
    pub sidecar_retry: Duration,
}

/// Why a configuration was rejected. `Display` yields the log line body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No configuration bytes at all (or only whitespace).
    Missing,
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Not JSON at all (syntax error or truncated input).
    Json(String),
    /// JSON, but not an object of the expected shape (unknown or duplicate
    /// field, not an object).
    Shape(String),
    /// A field has the wrong JSON type or an invalid value.
    Field {
        /// Field name as written in the JSON.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Raw shape: every field is an optional untyped value so that validation
/// below can name the field in its error; unknown fields are refused here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object with a \"cluster\" field")]
struct RawConfig {
    cluster: Option<Value>,
    timeout_ms: Option<Value>,
    authority: Option<Value>,
    max_token_length: Option<Value>,
    on_demand: Option<Value>,
    on_demand_per_second: Option<Value>,
    sidecar_retry_ms: Option<Value>,
}

// === impl ConfigError ===

impl ConfigError {
    fn field(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Field { field, problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str(
                "configuration is missing; expected a JSON object like {\"cluster\": \"proxy_acme_sidecar\"}",
            ),
            Self::NotUtf8 => f.write_str("configuration is not valid UTF-8"),
            Self::Json(err) => write!(f, "configuration is not valid JSON: {err}"),
            Self::Shape(err) => f.write_str(err),
            Self::Field { field, problem } => write!(f, "{field} {problem}"),
        }
    }
}

impl std::error::Error for ConfigError {}

// === impl FilterConfig ===

impl FilterConfig {
    /// Parses and validates the plugin configuration bytes.
    ///
    /// `None` (Envoy gave no configuration) and blank input are rejected:
    /// `cluster` has no sensible default.
    pub fn parse(bytes: Option<&[u8]>) -> Result<Self, ConfigError> {
        let bytes = bytes.unwrap_or_default();
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8)?;
        if text.trim().is_empty() {
            return Err(ConfigError::Missing);
        }
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                ConfigError::Shape(e.to_string())
            } else {
                ConfigError::Json(e.to_string())
            }
        })?;

        let cluster = required_string("cluster", raw.cluster)?;
        let timeout_ms = ranged_int("timeout_ms", raw.timeout_ms, DEFAULT_TIMEOUT_MS, TIMEOUT_MS_RANGE)?;
        let authority = match raw.authority {
            None => DEFAULT_AUTHORITY.to_owned(),
            Some(v) => authority_string(v)?,
        };
        let max_token_length = ranged_int(
            "max_token_length",
            raw.max_token_length,
            DEFAULT_MAX_TOKEN_LENGTH as u64,
            MAX_TOKEN_LENGTH_RANGE,
        )?;
        let max_token_length = usize::try_from(max_token_length)
            .map_err(|_| ConfigError::field("max_token_length", "does not fit in usize"))?;

        let on_demand = match raw.on_demand {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(other) => return Err(ConfigError::field("on_demand", format!("must be true or false, got {other}"))),
        };
        let on_demand_per_second = ranged_int(
            "on_demand_per_second",
            raw.on_demand_per_second,
            DEFAULT_ON_DEMAND_PER_SECOND,
            ON_DEMAND_PER_SECOND_RANGE,
        )?;

        let sidecar_retry_ms =
            ranged_int("sidecar_retry_ms", raw.sidecar_retry_ms, DEFAULT_SIDECAR_RETRY_MS, SIDECAR_RETRY_MS_RANGE)?;

        Ok(Self {
            cluster,
            timeout: Duration::from_millis(timeout_ms),
            sidecar_retry: Duration::from_millis(sidecar_retry_ms),
            authority,
            max_token_length,
            on_demand,
            on_demand_per_second,
        })
    }
}

/// A required, non-empty string (`null` counts as missing).
fn required_string(field: &'static str, value: Option<Value>) -> Result<String, ConfigError> {
    match value {
        None => Err(ConfigError::field(field, "is required")),
        Some(Value::String(s)) if s.is_empty() => Err(ConfigError::field(field, "must not be empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ConfigError::field(field, format!("must be a string, got {other}"))),
    }
}

/// The authority ends up verbatim in a request header, so it must be a
/// non-empty run of visible ASCII (no spaces or control characters).
fn authority_string(value: Value) -> Result<String, ConfigError> {
    let s = required_string("authority", Some(value))?;
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s)
    } else {
        Err(ConfigError::field("authority", "must contain only visible ASCII characters (no spaces)"))
    }
}

/// An optional integer in `lo..=hi`; `None` (absent or `null`) yields `default`.
fn ranged_int(
    field: &'static str,
    value: Option<Value>,
    default: u64,
    (lo, hi): (u64, u64),
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.as_u64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ if value.is_number() => Err(ConfigError::field(field, format!("must be between {lo} and {hi}, got {value}"))),
        _ => Err(ConfigError::field(field, format!("must be an integer between {lo} and {hi}, got {value}"))),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
