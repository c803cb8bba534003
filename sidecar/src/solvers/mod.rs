//! Challenge solvers: what the CA's validator is shown. The ACME protocol
//! lives in `acme`; solvers only publish and withdraw answers, each challenge
//! type behind the [`Solver`] trait (`solver.rs`), implemented beside its
//! module: [`http01::Http01Solver`], [`tls_alpn::TlsAlpnSolver`],
//! [`dns01::Dns01Solver`], [`dns_persist::DnsPersistSolver`].

pub mod dns01;
pub mod dns_persist;
pub mod http01;
pub mod posts;
mod solver;
pub mod tls_alpn;
pub mod webroot;

#[cfg(test)]
mod solver_tests;

pub use solver::{finish_cleanups, is_ip, is_wildcard, spawn_cleanup, Challenge, Presented, Solver, SolverError};

use serde::Deserialize;

use http01::Http01Tokens;
use tls_alpn::TlsAlpnCerts;

/// The challenge types the sidecar can solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ChallengeKind {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    #[serde(rename = "dns-01")]
    Dns01,
    /// draft-ietf-acme-dns-persist: a TXT record the operator made once.
    #[serde(rename = "dns-persist-01")]
    DnsPersist01,
}

impl ChallengeKind {
    /// Every type, in the default `challenge_order`.
    pub const ALL: [Self; 4] = [Self::Http01, Self::TlsAlpn01, Self::Dns01, Self::DnsPersist01];

    /// The name in RFC 8555 / RFC 8737 and in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Dns01 => "dns-01",
            Self::DnsPersist01 => "dns-persist-01",
        }
    }

    pub fn acme_type(self) -> instant_acme::ChallengeType {
        match self {
            Self::Http01 => instant_acme::ChallengeType::Http01,
            Self::TlsAlpn01 => instant_acme::ChallengeType::TlsAlpn01,
            Self::Dns01 => instant_acme::ChallengeType::Dns01,
            // instant-acme has no variant for it: its name, as the CA sends it.
            Self::DnsPersist01 => instant_acme::ChallengeType::Unknown(self.as_str().to_owned()),
        }
    }
}

impl std::fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every solver's pending answers, shared by the order tasks and the
/// endpoints that show them to the CA.
#[derive(Debug, Clone, Default)]
pub struct Solvers {
    pub http01: Http01Tokens,
    pub tls_alpn: TlsAlpnCerts,
    /// Shared with other replicas (etcd store); `None`: this process alone.
    pub board: Option<std::sync::Arc<dyn crate::store::board::ChallengeBoard>>,
}
