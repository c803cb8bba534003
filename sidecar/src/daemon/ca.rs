//! The daemon's one boundary to the CA: order with one solver, ask
//! for renewal information, revoke. [`LiveCa`] does it over ACME with each
//! resolver's account; unit tests put an in-memory CA in its place.

use std::sync::Arc;

use async_trait::async_trait;

use super::accounts::Accounts;
use crate::acme::bounds::within;
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

/// The CA over ACME, with each resolver's account (registered on first use).
#[derive(Debug)]
pub(super) struct LiveCa {
    pub(super) accounts: Arc<Accounts>,
    pub(super) store: Arc<dyn Store>,
}

#[async_trait]
impl Ca for LiveCa {
    /// Within the resolver's order deadline, account registration included.
    async fn issue(
        &self,
        resolver: &str,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Bundle, AcmeError> {
        within(self.accounts.deadline(resolver), "loading the account", async {
            let account = self.accounts.get(self.store.as_ref(), resolver).await?;
            acme::issue(&account, request, solver, checkpoint).await
        })
        .await
    }

    /// Within the resolver's order deadline, like a new order.
    async fn resume(
        &self,
        resolver: &str,
        pending: &PendingOrder,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
    ) -> Result<Reopened, AcmeError> {
        within(self.accounts.deadline(resolver), "loading the account", async {
            let account = self.accounts.get(self.store.as_ref(), resolver).await?;
            acme::resume(&account, &pending.url, &pending.key_pem, request, solver).await
        })
        .await
    }

    async fn renewal_info(&self, resolver: &str, bundle: &Bundle) -> Result<Option<Window>, AcmeError> {
        within(self.accounts.deadline(resolver), "loading the account", async {
            let account = self.accounts.get(self.store.as_ref(), resolver).await?;
            acme::renewal_info(&account, bundle).await
        })
        .await
    }

    async fn revoke(&self, resolver: &str, bundle: &Bundle, reason: Option<u8>) -> Result<(), AcmeError> {
        within(self.accounts.deadline(resolver), "loading the account", async {
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
        within(self.accounts.deadline(resolver), "registering a throwaway account", async {
            let account = acme::account(&crate::store::MemoryStore::new(), "dry-run", &staging).await?;
            acme::issue(&account, request, solver, &Discard).await
        })
        .await
    }
}
