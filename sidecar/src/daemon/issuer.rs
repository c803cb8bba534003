//! The issuer: everything between "order now" and a stored certificate.
//! The self-imposed limits (order budget, failed authorizations), a new
//! order at once when the CA forgot the account (a refused nonce is sent
//! again inside the order, `acme::bounds`), the fallback from one challenge
//! type to the next, and the fenced save that refuses to write once the
//! lock is lost. An order is recorded in the store as soon as the CA
//! created it, so a restart resumes it (proves, finalizes, downloads)
//! instead of ordering again; a certificate the store cannot take is
//! returned anyway (`unsaved`), never thrown away. Also the
//! account's other calls: renewal information and revocation.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::accounts::Accounts;
use super::ca::Ca;
use crate::acme::{AcmeError, Checkpoint, OrderRequest, Reopened};
use crate::cert::SecretPem;
use crate::cert::{self, Bundle, CertInfo};
use crate::config::{Certificate, Resolver};
use crate::schedule::{AriAnswer, Clock, Failure};
use crate::solvers::{Solver, SolverError};
use crate::store::{Lock, PendingOrder, Store, StoreError};

/// A certificate the CA issued. `unsaved`: the store could not take it; it
/// is deployed all the same and its write retried ([`Issuer::persist`]).
#[derive(Debug)]
pub(super) struct Issued {
    pub(super) bundle: Bundle,
    pub(super) info: CertInfo,
    pub(super) unsaved: Option<StoreError>,
}

/// A dry run that got no certificate: its report, step by step, and
/// whether every attempt failed for good (a rejected name, a CA refusing
/// the account) rather than for something that may pass later.
#[derive(Debug, thiserror::Error)]
#[error("{report}")]
pub(crate) struct DryRunFailed {
    pub(crate) report: String,
    pub(crate) permanent: bool,
}

/// Each resolver's solvers by resolver name, in the order they are tried.
pub(super) type ResolverSolvers = BTreeMap<String, Vec<Arc<dyn Solver>>>;

#[derive(Debug)]
pub(super) struct Issuer {
    ca: Arc<dyn Ca>,
    store: Arc<dyn Store>,
    /// The resolvers' limits and what their CAs support.
    accounts: Arc<Accounts>,
    /// Each resolver's solvers, in the order they are tried; a reload
    /// swaps the map, an order keeps the solvers it started with.
    solvers: std::sync::RwLock<Arc<ResolverSolvers>>,
    clock: Arc<dyn Clock>,
}

impl Issuer {
    pub(super) fn new(
        ca: Arc<dyn Ca>,
        store: Arc<dyn Store>,
        accounts: Arc<Accounts>,
        solvers: Arc<ResolverSolvers>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { ca, store, accounts, solvers: std::sync::RwLock::new(solvers), clock }
    }

    /// Resolver `name`'s solvers, in the order they are tried.
    fn solvers(&self, name: &str) -> Vec<Arc<dyn Solver>> {
        self.solvers.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned().unwrap_or_default()
    }

    /// A reload's resolvers: their accounts and solvers. Returns the
    /// resolvers added or changed.
    pub(super) fn apply(&self, resolvers: &BTreeMap<String, Resolver>, solvers: ResolverSolvers) -> Vec<String> {
        *self.solvers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(solvers);
        self.accounts.apply(resolvers)
    }

    /// Whether an order for `certificate` is within the resolver's limits
    /// now; takes one order from the budget when it is.
    pub(super) fn admit(&self, certificate: &Certificate) -> Result<(), AcmeError> {
        let now = self.clock.now();
        self.accounts
            .check_authz(&certificate.resolver, &certificate.domains, now)
            .and_then(|()| self.accounts.take_order(&certificate.resolver, now))
    }

    /// Orders, proves, stores (fenced by `lock`) and returns the new
    /// certificate. A forgotten account (re-registered at once) orders
    /// again: that is no failure of this certificate. (A refused nonce is
    /// sent again within the order: `acme::bounds`.)
    /// Stops as soon as `lock` is lost, so nothing is written after another
    /// replica may have taken over.
    pub(super) async fn issue(
        &self,
        certificate: &Certificate,
        resolver: &Resolver,
        current: Option<&Bundle>,
        lock: &Lock,
    ) -> Result<Issued, AcmeError> {
        // Stops as soon as the lock is lost: nothing is written after that.
        let fenced = || async {
            tokio::select! {
                result = self.issue_once(certificate, resolver, current, lock) => result,
                () = lock.lost() => Err(AcmeError::Store(StoreError::LockLost(certificate.name.clone()))),
            }
        };
        let mut result = fenced().await;
        for _ in 0..2 {
            let Err(e) = &result else { break };
            let forgotten = self.ca.recover(&certificate.resolver, e).await;
            if !forgotten {
                break;
            }
            tracing::info!(certificate = %certificate.name, error = %e, "ordering again at once");
            result = fenced().await;
        }
        result
    }

    async fn issue_once(
        &self,
        certificate: &Certificate,
        resolver: &Resolver,
        current: Option<&Bundle>,
        lock: &Lock,
    ) -> Result<Issued, AcmeError> {
        let ari = self.accounts.ari(&certificate.resolver) == Some(true);
        let key_type = certificate.key_type(resolver);
        // `reuse_key`: the current key, when it is of the configured type.
        let reuse_key = current
            .filter(|_| resolver.reuse_key)
            .filter(|b| cert::inspect(b, None).is_ok_and(|info| info.key_type == Some(key_type)))
            .map(|b| &b.key_pem);
        let request = OrderRequest {
            domains: &certificate.domains,
            key_type,
            profile: resolver.profile.as_deref(),
            common_name: resolver.common_name,
            preferred_chain: resolver.preferred_chain.as_deref(),
            replaces: current.filter(|_| ari),
            reuse_key,
        };
        let bundle = match self.resume_pending(certificate, &request).await? {
            Some(bundle) => bundle,
            None => self.with_fallback(certificate, &request).await?,
        };
        let info = cert::inspect(&bundle, Some(&certificate.domains))?;
        let unsaved = match self.persist(certificate, &bundle, lock).await {
            Ok(()) => None,
            // Another replica holds the lock now; the recorded order stays
            // in the shared store for it to download.
            Err(e @ StoreError::LockLost(_)) => return Err(e.into()),
            Err(e) => {
                tracing::error!(
                    certificate = %certificate.name,
                    serial = %info.serial_hex,
                    error = %e,
                    "the issued certificate cannot be stored: it is deployed and its write retried"
                );
                Some(e)
            }
        };
        Ok(Issued { bundle, info, unsaved })
    }

    /// Stores an issued certificate (fenced by `lock`), then forgets the
    /// revocation mark and the pending order. With several resolvers, the
    /// one that issued it (`certificate.resolver`) is recorded next.
    pub(super) async fn persist(
        &self,
        certificate: &Certificate,
        bundle: &Bundle,
        lock: &Lock,
    ) -> Result<(), StoreError> {
        let name = &certificate.name;
        let unforgotten = self.store.save_issued(name, bundle, lock).await?;
        if let Some(e) = unforgotten {
            // Harmless: the next order downloads the same certificate once.
            tracing::warn!(certificate = name, error = %e, "cannot forget the pending order");
        }
        if certificate.resolvers.len() > 1 {
            self.store.save_issuer(name, &certificate.resolver).await?;
        }
        Ok(())
    }

    /// The certificate of an order an earlier run recorded (and was killed
    /// before storing its certificate, or could not store it): proven if
    /// it still needs it, finalized, downloaded, rather than ordered again.
    /// `None` when there is none, or the CA has nothing to give for it (the
    /// record is then forgotten). A CA that cannot be reached is an error:
    /// the record stays for the next try; a permanent error forgets it.
    async fn resume_pending(
        &self,
        certificate: &Certificate,
        request: &OrderRequest<'_>,
    ) -> Result<Option<Bundle>, AcmeError> {
        let name = &certificate.name;
        let pending = match self.store.load_pending(name).await {
            Ok(Some(pending)) => pending,
            Ok(None) => return Ok(None),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(certificate = %name, error = %e, "unreadable pending order: forgotten, ordering anew");
                self.forget_pending(name).await;
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(certificate = %name, error = %e, "cannot read the pending order; ordering anew");
                return Ok(None);
            }
        };
        // An order at another of the certificate's CAs (the fallback moved
        // on while it was open) is not this CA's to resume.
        let ordered_from = pending.resolver.as_deref().or(certificate.resolvers.first().map(String::as_str));
        if ordered_from != Some(certificate.resolver.as_str()) {
            tracing::info!(certificate = %name, order = %pending.url, ordered_from, resolver = %certificate.resolver, "the interrupted order was placed at another resolver's CA; ordering anew here");
            return Ok(None);
        }
        let solvers = self.solvers(&certificate.resolver);
        let Some(solver) = solvers.iter().find(|s| certificate.domains.iter().all(|d| s.supports(d))).cloned() else {
            return Ok(None);
        };
        let reopened = match self.ca.resume(&certificate.resolver, &pending, request, solver.as_ref()).await {
            Ok(reopened) => reopened,
            Err(e) if e.is_permanent() || e.is_challenge_failure() => {
                tracing::warn!(certificate = %name, order = %pending.url, error = %e, "the interrupted order failed; forgotten");
                self.forget_pending(name).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match reopened {
            Reopened::Issued(bundle) => {
                tracing::info!(certificate = %name, order = %pending.url, "downloaded the certificate of an interrupted order");
                Ok(Some(bundle))
            }
            Reopened::Gone(why) => {
                tracing::info!(certificate = %name, order = %pending.url, why, "the interrupted order has no certificate to give; ordering anew");
                self.forget_pending(name).await;
                Ok(None)
            }
        }
    }

    async fn forget_pending(&self, name: &str) {
        if let Err(e) = self.store.clear_pending(name).await {
            tracing::warn!(certificate = name, error = %e, "cannot forget the pending order");
        }
    }

    /// Tries the resolver's solvers in order, those that support every
    /// name (a wildcard needs DNS-01, an IP address cannot have it): when
    /// an order fails because of its challenge (the CA could not validate
    /// it, or did not offer it), the next solver gets a new order, within
    /// the order budget.
    async fn with_fallback(&self, certificate: &Certificate, request: &OrderRequest<'_>) -> Result<Bundle, AcmeError> {
        let solvers = self.solvers(&certificate.resolver);
        // Collected: a filter closure held across the awaits below would
        // make the task's future not `Send` (rust-lang/rust#102211).
        let usable: Vec<&Arc<dyn Solver>> =
            solvers.iter().filter(|s| certificate.domains.iter().all(|d| s.supports(d))).collect();
        let mut solvers = usable.into_iter().peekable();
        loop {
            let Some(solver) = solvers.next() else {
                return Err(SolverError::NoSolver(certificate.domains.join(", ")).into());
            };
            let kind = solver.kind();
            let started = std::time::Instant::now();
            let checkpoint =
                Recorder { store: self.store.as_ref(), name: &certificate.name, resolver: &certificate.resolver };
            let result = self.ca.issue(&certificate.resolver, request, solver.as_ref(), &checkpoint).await;
            let outcome = match &result {
                Ok(_) => "valid",
                Err(e) => e.challenge_result(),
            };
            crate::serve::metrics::metrics().challenge(kind.as_str(), outcome, started.elapsed());
            match result {
                Err(e) if e.is_challenge_failure() && solvers.peek().is_some() => {
                    let now = self.clock.now();
                    if let Some(identifier) = e.failed_identifier() {
                        self.accounts.record_authz_failure(&certificate.resolver, identifier, now);
                    }
                    let next = solvers.peek().map(|s| s.kind().as_str()).unwrap_or_default();
                    tracing::warn!(
                        certificate = %certificate.name,
                        challenge = %kind,
                        error = %e,
                        next,
                        "challenge failed; ordering again with the next challenge type"
                    );
                    self.accounts.take_order(&certificate.resolver, now)?;
                }
                result => return result,
            }
        }
    }

    /// `renew --dry-run`: one order at the resolver's staging directory
    /// with a throwaway account, each challenge type in turn until one
    /// works; nothing is stored or deployed. The report names each step;
    /// `Err` holds it too when no challenge type worked.
    pub(super) async fn dry_run(&self, certificate: &Certificate, resolver: &Resolver) -> Result<String, DryRunFailed> {
        let directory = resolver.staging_directory();
        let request = OrderRequest {
            domains: &certificate.domains,
            key_type: certificate.key_type(resolver),
            profile: resolver.profile.as_deref(),
            common_name: resolver.common_name,
            preferred_chain: resolver.preferred_chain.as_deref(),
            replaces: None,
            reuse_key: None,
        };
        let mut report = vec![format!(
            "dry run of {} at {directory}{}: a throwaway account, nothing stored or deployed",
            certificate.name,
            if directory == resolver.ca_server {
                " (ca_server itself: no staging directory known; set staging_server)"
            } else {
                ""
            }
        )];
        let solvers = self.solvers(&certificate.resolver);
        let usable = solvers.iter().filter(|s| certificate.domains.iter().all(|d| s.supports(d)));
        // Whether every attempt failed for good (waiting will not help).
        let mut permanent = true;
        for solver in usable {
            let kind = solver.kind();
            match self.ca.dry_run(&certificate.resolver, directory, &request, solver.as_ref()).await {
                Ok(bundle) => match cert::inspect(&bundle, Some(&certificate.domains)) {
                    Ok(info) => {
                        report.push(format!(
                            "{kind}: account registered, order created, every name proven ({})",
                            certificate.domains.join(", ")
                        ));
                        report.push(format!(
                            "certificate: serial {}, valid until {}, covers every name, matches its key",
                            info.serial_hex,
                            crate::schedule::rfc3339(info.not_after)
                        ));
                        report.push("ok: a real order for this certificate would succeed".to_owned());
                        return Ok(report.join("\n"));
                    }
                    Err(e) => report.push(format!("{kind}: the CA issued a certificate we refuse: {e}")),
                },
                Err(e) => {
                    permanent &= e.is_permanent();
                    report.push(format!("{kind}: {e}"));
                }
            }
        }
        if report.len() == 1 {
            report.push("no challenge type of this resolver can prove these names".to_owned());
        }
        report.push("failed: fix the first error above, then run the dry run again".to_owned());
        Err(DryRunFailed { report: report.join("\n"), permanent })
    }

    /// Counts a failed order against the limits (a failed authorization)
    /// and says what kind of failure it is for the schedule.
    pub(super) fn record_failure(&self, certificate: &Certificate, error: &AcmeError) -> Failure {
        if let Some(problem) = error.problem_type() {
            crate::serve::metrics::metrics().acme_error(problem);
        }
        if let Some(identifier) = error.failed_identifier() {
            self.accounts.record_authz_failure(&certificate.resolver, identifier, self.clock.now());
        }
        let outage = error.is_outage();
        if outage {
            self.accounts.note_outage(&certificate.resolver);
        }
        Failure {
            permanent: error.is_permanent(),
            rate_limited: error.is_rate_limited(),
            retry_after: error.retry_after(self.clock.now()),
            outage,
            message: error.to_string(),
        }
    }

    /// Asks the CA for renewal information (RFC 9773) about `bundle`;
    /// `None` when the CA has none.
    pub(super) async fn poll_ari(&self, certificate: &Certificate, bundle: &Bundle) -> Option<AriAnswer> {
        let resolver = &certificate.resolver;
        let answer = match self.ca.renewal_info(resolver, bundle).await {
            Ok(None) => {
                self.accounts.set_ari(resolver, false);
                return None;
            }
            Ok(Some(window)) => {
                self.accounts.set_ari(resolver, true);
                tracing::debug!(certificate = %certificate.name, ?window, "ARI window");
                AriAnswer::Window { start: window.start, end: window.end, retry_after: Some(window.retry_after) }
            }
            Err(e) => match e.cause() {
                AcmeError::Protocol(malformed @ (instant_acme::Error::Json(_) | instant_acme::Error::Str(_))) => {
                    AriAnswer::Malformed(malformed.to_string())
                }
                _ => match e.retry_after(self.clock.now()) {
                    Some(until) => AriAnswer::Later { problem: e.to_string(), until },
                    None => AriAnswer::Unavailable(e.to_string()),
                },
            },
        };
        Some(answer)
    }

    /// Revokes `bundle` at the CA and records it in the store.
    pub(super) async fn revoke(
        &self,
        certificate: &Certificate,
        bundle: &Bundle,
        serial: &str,
        reason: Option<u8>,
    ) -> Result<(), AcmeError> {
        self.ca.revoke(&certificate.resolver, bundle, reason).await?;
        Ok(self.store.mark_revoked(&certificate.name, serial).await?)
    }

    /// The resolver recorded as the issuer of `name`'s stored certificate.
    pub(super) async fn issued_by(&self, name: &str) -> Option<String> {
        self.store.load_issuer(name).await.unwrap_or_else(|e| crate::store::unreadable(name, "issuing resolver", &e))
    }

    /// Whether the resolver's CA answers renewal information (`None`: not asked yet).
    pub(super) fn ari(&self, resolver: &str) -> Option<bool> {
        self.accounts.ari(resolver)
    }

    /// Orders left in the resolver's budget now.
    pub(super) fn orders_remaining(&self, resolver: &str) -> Option<u32> {
        self.accounts.orders_remaining(resolver, self.clock.now())
    }
}

/// Records an order in the store as soon as the CA created it.
struct Recorder<'a> {
    store: &'a dyn Store,
    name: &'a str,
    /// The resolver ordered from.
    resolver: &'a str,
}

#[async_trait::async_trait]
impl Checkpoint for Recorder<'_> {
    async fn record(&self, order_url: &str, key_pem: &SecretPem) {
        let pending = PendingOrder {
            url: order_url.to_owned(),
            key_pem: key_pem.clone(),
            resolver: Some(self.resolver.to_owned()),
        };
        if let Err(e) = self.store.save_pending(self.name, &pending).await {
            // Ordered all the same: the certificate is kept in memory and
            // written once the store takes it; only a crash before that loses it.
            tracing::warn!(certificate = self.name, error = %e, "cannot record the order");
        }
    }
}

/// The permanent "failure" a revocation leaves: nothing is ordered until
/// the operator forces a renewal.
pub(super) fn revoked(name: &str, serial: &str) -> Failure {
    Failure {
        permanent: true,
        message: format!(
            "revoked by the operator (serial {serial}); `proxy-acme renew {name} --force` orders a new one"
        ),
        ..Failure::default()
    }
}
