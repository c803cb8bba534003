//! The daemon's one boundary to the CA: order with one solver, ask
//! for renewal information, revoke. [`LiveCa`] does it over ACME with each
//! resolver's account, each exchange admitted by the pace of the
//! resolver's CA (`pace`); unit tests put an in-memory CA in its place.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::accounts::Accounts;
use super::pace::{Answer, Gated, Kind, Outcome, Paces, MAX_GATE_WAIT};
use crate::acme::bounds::{self, within};
use crate::acme::{self, AcmeError, Checkpoint, OrderRequest, Reopened, Window};
use crate::cert::Bundle;
use crate::solvers::Solver;
use crate::store::{PendingOrder, Store};

#[async_trait]
pub(super) trait Ca: Send + Sync + std::fmt::Debug {
    /// One order for `request`, proven with `solver`: the issued chain and
    /// key. The order's URL and key go to `checkpoint` as soon as it exists.
    async fn issue(
        &self,
        resolver: &str,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Bundle, AcmeError>;
    /// Reopens an order an earlier run recorded (proving it with `solver`
    /// if it still needs it) and downloads its certificate.
    async fn resume(
        &self,
        resolver: &str,
        pending: &PendingOrder,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
    ) -> Result<Reopened, AcmeError>;
    /// The CA's renewal window for `bundle`; `None` when it has no ARI.
    async fn renewal_info(&self, resolver: &str, bundle: &Bundle) -> Result<Option<Window>, AcmeError>;
    async fn revoke(&self, resolver: &str, bundle: &Bundle, reason: Option<u8>) -> Result<(), AcmeError>;
    /// After a failed request: whether the same order may go again at once
    /// (the CA forgot the account, and a new one is registered).
    async fn recover(&self, resolver: &str, error: &AcmeError) -> bool;
    /// A dry run: one order at `directory` for `request` with a throwaway
    /// account kept in memory, proven with `solver`. Nothing is stored.
    async fn dry_run(
        &self,
        resolver: &str,
        directory: &str,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
    ) -> Result<Bundle, AcmeError>;
}

/// Where a dry run's order is recorded: nowhere.
struct Discard;

#[async_trait]
impl Checkpoint for Discard {
    async fn record(&self, _: &str, _: &crate::cert::SecretPem) {}
}

/// A new order the CA throttled before creating it (429 or 503 with a
/// `Retry-After` at most [`MAX_GATE_WAIT`] ahead) is sent again once the
/// CA's gate opens, up to this many times, instead of failing the
/// certificate: a retry the protocol expects.
const THROTTLED_ORDER_RETRIES: u32 = 5;

/// The error of an exchange not sent because the CA's gate stays closed.
fn gated(directory: &str, Gated(until): Gated) -> AcmeError {
    let why = format!("waiting for {directory} to accept requests again");
    AcmeError::CaSaidWait { source: Box::new(AcmeError::RateLimited(why)), until }
}

/// The CA over ACME, with each resolver's account (registered on first use).
#[derive(Debug)]
pub(super) struct LiveCa {
    pub(super) accounts: Arc<Accounts>,
    pub(super) store: Arc<dyn Store>,
    /// Each CA's pace, shared by every resolver using it.
    pub(super) paces: Arc<Paces>,
}

impl LiveCa {
    /// `work` (one exchange with `directory`, the CA of `resolver`) once
    /// that CA's pace admits it (given where to report the answer to its
    /// new order, if it makes one), within the resolver's order deadline; its
    /// outcome goes back to the pace. The outcome is `None` when the CA's
    /// gate stays closed longer than the deadline: nothing was sent, and
    /// the error says until when.
    async fn paced_at<T, Fut>(
        &self,
        resolver: &str,
        (directory, kind): (&str, Kind),
        first_step: &'static str,
        work: impl FnOnce(Answer) -> Fut,
    ) -> (Result<T, AcmeError>, Option<Outcome>)
    where
        Fut: Future<Output = Result<T, AcmeError>>,
    {
        let deadline = self.accounts.deadline(resolver);
        let pace = self.paces.of(directory);
        let permit = match pace.acquire(deadline.min(MAX_GATE_WAIT), kind).await {
            Ok(permit) => permit,
            Err(closed) => return (Err(gated(directory, closed)), None),
        };
        let refused = AtomicU32::new(0);
        // Boxed: an order's state is about 12 KiB, and inline it would
        // make every certificate waiting for the pace above hold that much
        // (1,000 waiting: 11.6 MiB of a 20 MiB heap, heaptrack).
        let work = Box::pin(work(permit.answer()));
        let result = within(deadline, first_step, Some(pace.looks()), async {
            let result = work.await;
            refused.store(bounds::refused_nonces(), Ordering::Relaxed);
            result
        })
        .await;
        let outcome = permit.finish_with(&result, refused.load(Ordering::Relaxed));
        (result, Some(outcome))
    }

    /// [`Self::paced_at`] the resolver's own CA, for an exchange that
    /// creates no order (a resumed order, an ARI poll, a revocation).
    async fn paced<T, Fut>(&self, resolver: &str, work: impl FnOnce() -> Fut) -> Result<T, AcmeError>
    where
        Fut: Future<Output = Result<T, AcmeError>>,
    {
        let directory = self.accounts.resolver(resolver)?.ca_server;
        self.paced_at(resolver, (&directory, Kind::Other), "loading the account", |_| work()).await.0
    }
}

/// Passes the order on to the real checkpoint, noting that it exists and
/// telling the CA's pace that the new order was answered.
struct Noting<'a> {
    inner: &'a dyn Checkpoint,
    created: &'a AtomicBool,
    answer: Answer,
}

#[async_trait]
impl Checkpoint for Noting<'_> {
    async fn record(&self, order_url: &str, key_pem: &crate::cert::SecretPem) {
        self.created.store(true, Ordering::Relaxed);
        self.answer.given();
        self.inner.record(order_url, key_pem).await;
    }
}

#[async_trait]
impl Ca for LiveCa {
    /// Within the resolver's order deadline, account registration
    /// included. Throttled before the CA created the order, it is sent
    /// again when the CA's gate opens (the pace waits for it).
    async fn issue(
        &self,
        resolver: &str,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Bundle, AcmeError> {
        let directory = self.accounts.resolver(resolver)?.ca_server;
        let pace = self.paces.of(&directory);
        let mut retries = 0;
        loop {
            let created = AtomicBool::new(false);
            let (result, outcome) = self
                .paced_at(resolver, (&directory, Kind::Order), "loading the account", |answer| async {
                    let noting = Noting { inner: checkpoint, created: &created, answer };
                    let account = self.accounts.get(self.store.as_ref(), resolver).await?;
                    // The CA may have said Retry-After since this was admitted.
                    pace.until_open().await.map_err(|closed| gated(&directory, closed))?;
                    acme::issue(&account, request, solver, &noting).await
                })
                .await;
            let soon = pace.now() + MAX_GATE_WAIT;
            let throttled = match outcome {
                Some(Outcome::RateLimited(Some(at)) | Outcome::Busy(Some(at))) => at <= soon,
                _ => false,
            };
            match result {
                Err(e) if throttled && !created.load(Ordering::Relaxed) && retries < THROTTLED_ORDER_RETRIES => {
                    retries += 1;
                    tracing::info!(resolver, error = %e, retries, "the CA throttled the new order; sending it again when it says");
                }
                result => return result,
            }
        }
    }

    /// Within the resolver's order deadline, like a new order, paced.
    async fn resume(
        &self,
        resolver: &str,
        pending: &PendingOrder,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
    ) -> Result<Reopened, AcmeError> {
        self.paced(resolver, || async {
            let account = self.accounts.get(self.store.as_ref(), resolver).await?;
            acme::resume(&account, &pending.url, &pending.key_pem, request, solver).await
        })
        .await
    }

    async fn renewal_info(&self, resolver: &str, bundle: &Bundle) -> Result<Option<Window>, AcmeError> {
        self.paced(resolver, || async {
            let account = self.accounts.get(self.store.as_ref(), resolver).await?;
            acme::renewal_info(&account, bundle).await
        })
        .await
    }

    async fn revoke(&self, resolver: &str, bundle: &Bundle, reason: Option<u8>) -> Result<(), AcmeError> {
        self.paced(resolver, || async {
            let account = self.accounts.get(self.store.as_ref(), resolver).await?;
            acme::revoke(&account, bundle, reason).await
        })
        .await
    }

    async fn recover(&self, resolver: &str, error: &AcmeError) -> bool {
        self.accounts.on_error(self.store.as_ref(), resolver, error).await
    }

    /// Within the resolver's order deadline, registration included.
    async fn dry_run(
        &self,
        resolver: &str,
        directory: &str,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
    ) -> Result<Bundle, AcmeError> {
        let mut staging = self.accounts.resolver(resolver)?;
        staging.ca_server = directory.to_owned();
        self.paced_at(resolver, (directory, Kind::Order), "registering a throwaway account", |_| async {
            let account = acme::account(&crate::store::MemoryStore::new(), "dry-run", &staging).await?;
            acme::issue(&account, request, solver, &Discard).await
        })
        .await
        .0
    }
}
