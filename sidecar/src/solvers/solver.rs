//! The [`Solver`] trait: one per challenge type. A solver says which
//! identifiers it can prove, shows the CA's validator an answer until the
//! returned [`Presented`] guard is dropped, and says when its answers are
//! visible. The ACME side (`acme::prove`) drives it without knowing which
//! challenge type it is.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::dns_persist::PersistError;
use super::tls_alpn::TlsAlpnError;
use super::webroot::WebrootError;
use super::ChallengeKind;
use crate::dns::DnsError;
use crate::store::StoreError;

/// One challenge to answer.
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    /// The identifier being proven: a DNS name (`*.` for a wildcard) or an
    /// IP address.
    pub identifier: &'a str,
    /// The CA's token (base64url).
    pub token: &'a str,
    /// `<token>.<account key thumbprint>` (RFC 8555 §8.1).
    pub key_authorization: &'a str,
    /// The account the order is for: the challenge's `accounturi` when the
    /// CA sent one (dns-persist-01), else the account's URL.
    pub account_uri: &'a str,
    /// dns-persist-01: the challenge's `issuer-domain-names`; empty when the
    /// CA sent none (and for the other types).
    pub issuer_domain_names: &'a [String],
}

impl Challenge<'_> {
    /// SHA-256 of the key authorization (TLS-ALPN-01's certificate extension).
    pub fn digest(&self) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.key_authorization.as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// The digest, base64url without padding (DNS-01's TXT value).
    pub fn dns_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.digest())
    }
}

/// Why an answer could not be presented or checked.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    #[error("no configured challenge type can prove {0}")]
    NoSolver(String),
    #[error("{kind} cannot prove {identifier}")]
    Unsupported { kind: ChallengeKind, identifier: String },
    #[error("webroot: {0}")]
    Webroot(#[from] WebrootError),
    #[error(transparent)]
    TlsAlpn(#[from] TlsAlpnError),
    /// The DNS provider failed, or the records did not propagate.
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The answer could not be shared with the other replicas.
    #[error("cannot post the answer for other replicas: {0}")]
    Board(#[from] StoreError),
}

impl SolverError {
    /// Fails again the same way until the configuration changes.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Persist(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// A challenge type's solver, built once per resolver.
#[async_trait]
pub trait Solver: Send + Sync + fmt::Debug {
    fn kind(&self) -> ChallengeKind;

    /// Whether this challenge type can prove `identifier`.
    fn supports(&self, identifier: &str) -> bool;

    /// Shows the validator the answer to `challenge` until the returned
    /// guard is dropped (also when the order task is aborted) or given to
    /// [`Solver::clean_up`].
    async fn present(&self, challenge: Challenge<'_>) -> Result<Presented, SolverError>;

    /// Whether an answer is visible as soon as `present` returns, so the CA
    /// may be told at once. When not (DNS-01), the order presents every
    /// answer, waits in [`Solver::wait_visible`], then tells the CA.
    fn visible_at_once(&self) -> bool {
        true
    }

    /// Returns once the validator can see every answer in `presented`.
    async fn wait_visible(&self, _presented: &[Presented]) -> Result<(), SolverError> {
        Ok(())
    }

    /// Withdraws `presented` and returns when it is done; dropping the
    /// guards does the same without waiting.
    async fn clean_up(&self, presented: Vec<Presented>) {
        drop(presented);
    }
}

/// A wildcard needs DNS-01 (RFC 8555 §7.1.3).
pub fn is_wildcard(identifier: &str) -> bool {
    identifier.starts_with("*.")
}

/// An IP address identifier (RFC 8738): HTTP-01 and TLS-ALPN-01 only.
pub fn is_ip(identifier: &str) -> bool {
    identifier.parse::<IpAddr>().is_ok()
}

/// A presented answer. It holds the parts that show the answer (a token in
/// memory, a file, a board post, a DNS record), each withdrawing itself when
/// dropped, first to last.
pub struct Presented {
    kind: ChallengeKind,
    identifier: String,
    parts: Vec<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("kind", &self.kind)
            .field("identifier", &self.identifier)
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Presented {
    pub fn new(kind: ChallengeKind, identifier: &str) -> Self {
        Self { kind, identifier: identifier.to_owned(), parts: Vec::new() }
    }

    /// Adds a part withdrawn when the answer is.
    #[must_use]
    pub fn with(mut self, part: impl Any + Send + Sync) -> Self {
        self.parts.push(Box::new(part));
        self
    }

    pub fn kind(&self) -> ChallengeKind {
        self.kind
    }

    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// The parts of type `T`, for the solver that added them.
    pub fn parts<T: Any>(&self) -> impl Iterator<Item = &T> {
        self.parts.iter().filter_map(|p| p.downcast_ref::<T>())
    }

    /// The parts of type `T`, mutable.
    pub fn parts_mut<T: Any>(&mut self) -> impl Iterator<Item = &mut T> {
        self.parts.iter_mut().filter_map(|p| p.downcast_mut::<T>())
    }
}

/// Clean-ups spawned by dropped answers and not finished yet.
static SPAWNED_CLEANUPS: AtomicUsize = AtomicUsize::new(0);

/// Runs `cleanup` in the background (counted for [`finish_cleanups`]), for
/// a guard dropped without the chance to await its clean-up. Returns false
/// when there is no runtime to run it on.
pub fn spawn_cleanup(cleanup: impl Future<Output = ()> + Send + 'static) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return false };
    SPAWNED_CLEANUPS.fetch_add(1, Ordering::SeqCst);
    runtime.spawn(async move {
        cleanup.await;
        SPAWNED_CLEANUPS.fetch_sub(1, Ordering::SeqCst);
    });
    true
}

/// Waits (up to `limit`) for the clean-ups of interrupted orders, so a
/// stopping daemon leaves no DNS-01 record behind.
pub async fn finish_cleanups(limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while SPAWNED_CLEANUPS.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
