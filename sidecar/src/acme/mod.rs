//! ACME through instant-acme: accounts, orders, revocation, key rollover and
//! renewal information. No storage decisions and no scheduling here: `daemon`
//! calls these when the schedule says so, and stores what comes back.

mod account;
mod advice;
pub(crate) mod bounds;
mod chains;
mod order;
mod persist_fields;
mod poll;
mod prove;

pub(crate) use account::imported_account;
pub use account::{account, directory, directory_reachable, rollover, stored_account_uri, AcmeAccount};
pub use order::{issue, renewal_info, resume, revoke, Checkpoint, OrderRequest, Reopened, Window};
pub(crate) use poll::FirstLooks;

use std::time::SystemTime;

use instant_acme::OrderStatus;

use crate::cert::CertError;
use crate::solvers::SolverError;
use crate::store::StoreError;

/// Why an account or an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME request failed: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("cannot read CA certificate {path}: {source}")]
    CaCertificate { path: String, source: instant_acme::Error },
    #[error("authorization for {identifier} is {status}: {detail}")]
    Authorization { identifier: String, status: String, detail: String },
    #[error("the CA offered no {0} challenge for {1}")]
    NoChallenge(&'static str, String),
    #[error("cannot present the challenge: {0}")]
    Solver(#[source] SolverError),
    #[error("DNS-01: {0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("order ended {0:?}")]
    OrderStatus(OrderStatus),
    #[error("issued certificate rejected: {0}")]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored account is unreadable: {0}")]
    StoredAccount(serde_json::Error),
    #[error("no resolver named {0}")]
    UnknownResolver(String),
    #[error("the CA does not offer profile '{wanted}' (it offers: {offered})")]
    UnknownProfile { wanted: String, offered: String },
    #[error("the EAB HMAC key does not decode")]
    EabKey,
    #[error("self-imposed rate limit: {0}")]
    RateLimited(String),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("{0} is no ACME directory (no newNonce)")]
    NotADirectory(String),
    /// The order did not end within its deadline (see `acme::bounds`).
    #[error("order deadline of {secs} s passed while {step}")]
    Deadline { secs: u64, step: &'static str },
    /// The CA's error answer said when to come back (`Retry-After`).
    #[error("{source} (the CA asks to retry after {})", crate::schedule::rfc3339(*until))]
    CaSaidWait { source: Box<Self>, until: SystemTime },
}

impl From<SolverError> for AcmeError {
    /// A DNS provider's or the propagation check's failure stays a DNS one
    /// (its retryability says whether it is permanent), and a board that
    /// cannot be written is the store's failure, as before solvers had a
    /// trait.
    fn from(error: SolverError) -> Self {
        match error {
            SolverError::Dns(e) => Self::Dns(e),
            SolverError::Board(e) => Self::Store(e),
            e => Self::Solver(e),
        }
    }
}

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

impl AcmeError {
    /// Permanent errors will fail again the same way until config changes;
    /// the rest (network, CA outage, rate limits) are worth retrying.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::CaSaidWait { source, .. } => source.is_permanent(),
            Self::Protocol(instant_acme::Error::Api(problem)) => matches!(
                problem.r#type.as_deref(),
                Some(
                    "urn:ietf:params:acme:error:rejectedIdentifier"
                        | "urn:ietf:params:acme:error:unsupportedIdentifier"
                        | "urn:ietf:params:acme:error:malformed"
                        | "urn:ietf:params:acme:error:externalAccountRequired"
                        | "urn:ietf:params:acme:error:invalidProfile"
                )
            ),
            Self::Protocol(_)
            | Self::Authorization { .. }
            | Self::OrderStatus(_)
            | Self::NoChallenge(..)
            | Self::RateLimited(_)
            | Self::Deadline { .. }
            | Self::Fetch(_) => false,
            Self::Store(e) => e.is_permanent(),
            Self::Solver(e) => e.is_permanent(),
            Self::Dns(e) => !e.is_retryable(),
            Self::CaCertificate { .. }
            | Self::Certificate(_)
            | Self::StoredAccount(_)
            | Self::UnknownResolver(_)
            | Self::UnknownProfile { .. }
            | Self::EabKey
            | Self::NotADirectory(_) => true,
        }
    }

    /// Whether the CA (or our own budget) said to slow down.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::CaSaidWait { source, .. } => source.is_rate_limited(),
            Self::Protocol(instant_acme::Error::Api(problem)) => problem.r#type.as_deref() == Some(RATE_LIMITED),
            Self::RateLimited(_) => true,
            _ => false,
        }
    }

    /// When the CA said to come back, if it did, on the clock that says
    /// `now`: the `Retry-After` of its error answer, or of the order it
    /// polled. Never later than `now` + [`bounds::MAX_RETRY_AFTER`].
    pub fn retry_after(&self, now: SystemTime) -> Option<SystemTime> {
        let cap = now.checked_add(bounds::MAX_RETRY_AFTER).unwrap_or(now);
        let at = match self {
            Self::CaSaidWait { until, .. } => {
                // On the wall clock when the answer came; moved onto `now`'s.
                let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
                now.checked_add(wait).unwrap_or(now)
            }
            Self::Protocol(instant_acme::Error::Timeout(Some(at))) => {
                now + at.saturating_duration_since(std::time::Instant::now())
            }
            _ => return None,
        };
        Some(at.min(cap))
    }

    /// The CA could not be reached, or failed on its side: a connection
    /// refused or cut, a time-out (a request's, or the order deadline), a
    /// 5xx problem other than a rate limit. Worth retrying as soon as the CA
    /// answers again; a verdict (4xx) is not.
    pub fn is_outage(&self) -> bool {
        match self.cause() {
            Self::Protocol(instant_acme::Error::Api(problem)) => {
                problem.status.is_some_and(|s| s >= 500) && problem.r#type.as_deref() != Some(RATE_LIMITED)
            }
            Self::Protocol(instant_acme::Error::Other(_) | instant_acme::Error::Http(_)) | Self::Deadline { .. } => {
                true
            }
            Self::NotADirectory(_) => false,
            _ => false,
        }
    }

    /// The CA refused the request's nonce (RFC 8555 §6.5): the same request
    /// with a fresh nonce is expected to work.
    pub fn is_bad_nonce(&self) -> bool {
        match self.cause() {
            Self::Protocol(e) => bounds::is_bad_nonce(e),
            _ => false,
        }
    }

    /// The error without the CA's `Retry-After` around it.
    pub fn cause(&self) -> &Self {
        match self {
            Self::CaSaidWait { source, .. } => source.cause(),
            other => other,
        }
    }

    /// Whether the failure belongs to the challenge type, so the next
    /// configured type may succeed where this one did not: the CA's verdict
    /// ([`Self::is_invalid`]), the CA not offering the type, or the solver
    /// (a DNS provider, the propagation check) failing to present it.
    pub fn is_challenge_failure(&self) -> bool {
        self.is_invalid() || matches!(self.cause(), Self::NoChallenge(..) | Self::Solver(_) | Self::Dns(_))
    }

    /// The CA validated a challenge and found it invalid (an invalid
    /// authorization, or one of the validation errors of RFC 8555 §6.7).
    /// A provider or transport failure on our side is not this: it is an
    /// error worth retrying, and the challenge metric counts it as `error`.
    pub fn is_invalid(&self) -> bool {
        match self.cause() {
            Self::Authorization { .. } => true,
            Self::Protocol(instant_acme::Error::Api(problem)) => matches!(
                problem.r#type.as_deref(),
                Some(
                    "urn:ietf:params:acme:error:connection"
                        | "urn:ietf:params:acme:error:dns"
                        | "urn:ietf:params:acme:error:incorrectResponse"
                        | "urn:ietf:params:acme:error:tls"
                        | "urn:ietf:params:acme:error:unauthorized"
                )
            ),
            _ => false,
        }
    }

    /// The `result` label of `proxy_acme_challenges_total` for a failed
    /// attempt: `invalid` for the CA's verdict, `error` for the rest.
    pub fn challenge_result(&self) -> &'static str {
        if self.is_invalid() {
            "invalid"
        } else {
            "error"
        }
    }

    /// The CA's problem type (RFC 8555 §6.7) without its URN prefix, when
    /// the CA answered with a problem document.
    pub fn problem_type(&self) -> Option<&str> {
        match self.cause() {
            Self::Protocol(instant_acme::Error::Api(problem)) => {
                let kind = problem.r#type.as_deref().unwrap_or("about:blank");
                Some(kind.strip_prefix("urn:ietf:params:acme:error:").unwrap_or(kind))
            }
            _ => None,
        }
    }

    /// The identifier of a failed authorization, for the per-identifier limit.
    pub fn failed_identifier(&self) -> Option<&str> {
        match self.cause() {
            Self::Authorization { identifier, .. } => Some(identifier),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cas_verdict_counts_as_invalid() {
        let provider = AcmeError::Dns(crate::dns::DnsError::provider("rfc2136", "connection refused", true));
        assert_eq!(provider.challenge_result(), "error");
        assert!(provider.is_challenge_failure(), "a provider failure still falls back to the next challenge type");
        let not_offered = AcmeError::NoChallenge("dns-01", "a.test".into());
        assert_eq!(not_offered.challenge_result(), "error");
        let verdict = AcmeError::Authorization {
            identifier: "a.test".into(),
            status: "invalid".into(),
            detail: "incorrect TXT record".into(),
        };
        assert_eq!(verdict.challenge_result(), "invalid");
        assert!(verdict.is_challenge_failure());
        let refused = AcmeError::Protocol(instant_acme::Error::Api(instant_acme::Problem {
            r#type: Some("urn:ietf:params:acme:error:unauthorized".into()),
            detail: None,
            status: Some(403),
            subproblems: Vec::new(),
        }));
        assert_eq!(refused.challenge_result(), "invalid");
        let outage = AcmeError::Protocol(instant_acme::Error::Str("connection reset"));
        assert_eq!(outage.challenge_result(), "error");
    }
}
