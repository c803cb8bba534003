//! One ACME account per resolver, shared by every certificate using it:
//! registered on first use, re-registered when the CA forgot it, rolled over
//! on request, with the resolver's self-imposed order budget.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::acme::AcmeAccount as Account;
use crate::schedule::rfc3339;
use tokio::sync::RwLock;

use crate::acme::{self, AcmeError};
use crate::config::Resolver;
use crate::schedule::{AuthzFailures, OrderBudget};
use crate::store::{Acquired, Store, StoreError};

/// Half-second waits for another replica registering the account.
const ACCOUNT_WAITS: u32 = 120;

/// What the daemon knows about one resolver's account.
struct Entry {
    resolver: Resolver,
    account: RwLock<Option<Account>>,
    budget: Mutex<OrderBudget>,
    authz_failures: Mutex<AuthzFailures>,
    /// Whether the CA answered renewal information; `None` until asked.
    ari: Mutex<Option<bool>>,
    /// An order failed because the CA was away, since the probe last looked.
    outage: std::sync::atomic::AtomicBool,
}

/// All resolvers' accounts. A reload replaces the entries of resolvers it
/// adds, changes or removes ([`apply`](Accounts::apply)); an order already
/// running keeps the entry it started with.
pub(super) struct Accounts {
    entries: std::sync::RwLock<BTreeMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.read().keys().cloned().collect();
        f.debug_struct("Accounts").field("resolvers", &names).finish_non_exhaustive()
    }
}

impl Entry {
    /// A new entry; `was` (the resolver's entry before a reload) passes on
    /// the orders and failed authorizations counted so far when the limits
    /// did not change, so a reload is no way around them.
    fn new(resolver: &Resolver, was: Option<&Self>) -> Self {
        let limits = resolver.rate_limit;
        let same_limits = was.filter(|was| format!("{:?}", was.resolver.rate_limit) == format!("{limits:?}"));
        let budget = match same_limits {
            Some(was) => was.budget.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => OrderBudget::new(limits.orders, Duration::from_secs(u64::from(limits.order_window_hours) * 3600)),
        };
        let authz_failures = match same_limits {
            Some(was) => was.authz_failures.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => AuthzFailures::new(limits.failed_authorizations_per_hour, Duration::from_secs(3600)),
        };
        Self {
            resolver: resolver.clone(),
            account: RwLock::new(None),
            budget: Mutex::new(budget),
            authz_failures: Mutex::new(authz_failures),
            ari: Mutex::new(None),
            outage: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Accounts {
    pub(super) fn new(resolvers: &BTreeMap<String, Resolver>) -> Self {
        let entries = resolvers.iter().map(|(name, r)| (name.clone(), Arc::new(Entry::new(r, None)))).collect();
        Self { entries: std::sync::RwLock::new(entries) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>, AcmeError> {
        self.read().get(name).cloned().ok_or_else(|| AcmeError::UnknownResolver(name.to_owned()))
    }

    /// Takes a reloaded configuration's resolvers. Every entry is made anew
    /// from the file as read now (a secret read from a `*_file` may have
    /// been rotated); a resolver whose settings did not change keeps its
    /// account and what is known of its CA, a new or changed one loads its
    /// account again as at a restart (a changed `ca_server`, email or EAB
    /// takes effect), a removed one goes. Returns the names added or
    /// changed.
    pub(super) fn apply(&self, resolvers: &BTreeMap<String, Resolver>) -> Vec<String> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = Vec::new();
        let next = resolvers
            .iter()
            .map(|(name, resolver)| {
                let was = entries.get(name).map(Arc::as_ref);
                let mut entry = Entry::new(resolver, was);
                match was.filter(|was| format!("{:?}", was.resolver) == format!("{resolver:?}")) {
                    Some(was) => {
                        // An account being registered right now is loaded
                        // again from the store by the next order.
                        entry.account = RwLock::new(was.account.try_read().ok().and_then(|a| a.clone()));
                        entry.ari = Mutex::new(*was.ari.lock().unwrap_or_else(|e| e.into_inner()));
                    }
                    None => changed.push(name.clone()),
                }
                (name.clone(), Arc::new(entry))
            })
            .collect();
        *entries = next;
        changed
    }

    /// An order of resolver `name` failed because its CA was away.
    pub(super) fn note_outage(&self, name: &str) {
        if let Ok(entry) = self.entry(name) {
            entry.outage.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether an order of resolver `name` failed for an outage since the
    /// last call (which forgets it).
    pub(super) fn take_outage(&self, name: &str) -> bool {
        self.entry(name).is_ok_and(|e| e.outage.swap(false, std::sync::atomic::Ordering::Relaxed))
    }

    /// Resolver `name`'s settings.
    pub(super) fn resolver(&self, name: &str) -> Result<Resolver, AcmeError> {
        Ok(self.entry(name)?.resolver.clone())
    }

    /// The account for resolver `name`, loading or registering it once.
    pub(super) async fn get(&self, store: &dyn Store, name: &str) -> Result<Account, AcmeError> {
        let entry = self.entry(name)?;
        if let Some(account) = entry.account.read().await.as_ref() {
            return Ok(account.clone());
        }
        let mut slot = entry.account.write().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        // Replicas sharing a store register one account between them: the
        // first takes the lock and registers, the others then load it.
        let mut waits = 0;
        let account = loop {
            match store.lock(&format!("accounts/{name}")).await? {
                Acquired::Lock(_lock) => break acme::account(store, name, &entry.resolver).await?,
                Acquired::HeldBy(holder) if waits < ACCOUNT_WAITS => {
                    tracing::debug!(resolver = name, %holder, "another replica is registering the account");
                    waits += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Acquired::HeldBy(holder) => {
                    return Err(AcmeError::Store(StoreError::Unavailable(format!(
                        "{holder} has held the account lock of {name} for a minute"
                    ))))
                }
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Reacts to an order error: a CA that no longer knows the account (a
    /// reset private CA, a deactivated account) gets a fresh registration on
    /// the next attempt. Returns whether that happened (worth a retry).
    pub(super) async fn on_error(&self, store: &dyn Store, name: &str, error: &AcmeError) -> bool {
        let AcmeError::Protocol(instant_acme::Error::Api(problem)) = error.cause() else { return false };
        let kind = problem.r#type.as_deref().unwrap_or_default();
        let detail = problem.detail.as_deref().unwrap_or_default();
        // Boulder: `unauthorized` "Account is not valid, has status
        // "deactivated"" (or "revoked"); others: `accountDoesNotExist`.
        let deactivated = kind == "urn:ietf:params:acme:error:unauthorized"
            && (detail.contains("deactivated") || detail.contains("Account is not valid"));
        let gone = kind == "urn:ietf:params:acme:error:accountDoesNotExist" || deactivated;
        if let (true, Ok(entry)) = (gone, self.entry(name)) {
            let why = if deactivated {
                "the CA says our account is deactivated"
            } else {
                "the CA does not know our account any more"
            };
            tracing::warn!(
                resolver = name,
                ca_said = detail,
                "{why}; registering a new one (the old one is kept aside in the store)"
            );
            *entry.account.write().await = None;
            if let Err(e) = store.forget_account(name).await {
                tracing::warn!(resolver = name, error = %e, "cannot remove the stale account");
            }
            return true;
        }
        false
    }

    /// Longest one order (or another exchange with the CA) of resolver
    /// `name` may take: its `order_timeout_secs`.
    pub(super) fn deadline(&self, name: &str) -> Duration {
        Duration::from_secs(self.entry(name).map_or(600, |e| e.resolver.order_timeout_secs))
    }

    /// Takes one order from the resolver's budget, or says until when none is left.
    pub(super) fn take_order(&self, name: &str, now: SystemTime) -> Result<(), AcmeError> {
        let entry = self.entry(name)?;
        let mut budget = entry.budget.lock().unwrap_or_else(|e| e.into_inner());
        let taken = budget.try_take(now);
        crate::serve::metrics::metrics().orders_remaining(name, budget.remaining(now));
        taken.map_err(|free_at| AcmeError::RateLimited(format!("order budget used up until {}", rfc3339(free_at))))
    }

    /// Orders the resolver's budget still allows now.
    pub(super) fn orders_remaining(&self, name: &str, now: SystemTime) -> Option<u32> {
        let entry = self.entry(name).ok()?;
        let budget = entry.budget.lock().unwrap_or_else(|e| e.into_inner());
        Some(budget.remaining(now))
    }

    /// Checks the per-identifier failed-authorization limit for `domains`.
    pub(super) fn check_authz(&self, name: &str, domains: &[String], now: SystemTime) -> Result<(), AcmeError> {
        let entry = self.entry(name)?;
        let failures = entry.authz_failures.lock().unwrap_or_else(|e| e.into_inner());
        for domain in domains {
            if let Err(until) = failures.check(domain, now) {
                return Err(AcmeError::RateLimited(format!(
                    "too many failed authorizations for {domain}; next attempt after {}",
                    rfc3339(until)
                )));
            }
        }
        Ok(())
    }

    pub(super) fn record_authz_failure(&self, name: &str, identifier: &str, now: SystemTime) {
        if let Ok(entry) = self.entry(name) {
            entry.authz_failures.lock().unwrap_or_else(|e| e.into_inner()).record(identifier, now);
        }
    }

    /// Whether the CA has ARI, as far as we know (`None`: not asked yet).
    pub(super) fn ari(&self, name: &str) -> Option<bool> {
        self.entry(name).ok().and_then(|e| *e.ari.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn set_ari(&self, name: &str, supported: bool) {
        if let Ok(entry) = self.entry(name) {
            *entry.ari.lock().unwrap_or_else(|e| e.into_inner()) = Some(supported);
        }
    }

    /// Rolls the account key over and swaps the cached account for it,
    /// within the resolver's order deadline: the account is locked
    /// meanwhile, so a hung CA must not hold it longer.
    pub(super) async fn rollover(&self, store: &dyn Store, name: &str) -> Result<String, AcmeError> {
        let entry = self.entry(name)?;
        let mut slot = entry.account.write().await;
        acme::bounds::within(self.deadline(name), "rolling the account key over", None, async {
            let id = acme::rollover(store, name, &entry.resolver).await?;
            // The cached account still signs with the old key: reload from the store.
            *slot = Some(acme::account(store, name, &entry.resolver).await?);
            Ok(id)
        })
        .await
    }
}
