//! One certificate's task: drives its [`Machine`] with the real clock, runs
//! orders and ARI polls when it says, stores and deploys what comes back,
//! keeps the last good certificate deployed through failures, and answers
//! the admin API's renew and revoke.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::{RunError, Shared};
use crate::acme::{self, AcmeError, OrderRequest};
use crate::admin::{CertCommand, CertStatus};
use crate::cert::{self, Bundle, CertInfo};
use crate::config::{Certificate, Resolver};
use crate::schedule::{self, Action, AriAnswer, Failure, Machine, Policy, Served};
use crate::store::{Acquired, Lock, RenewalState, StoreError};

/// Longest sleep between two looks, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

pub(super) struct CertTask {
    shared: Arc<Shared>,
    certificate: Certificate,
    resolver: Arc<Resolver>,
    machine: Machine,
    /// The last good certificate: what is deployed while it exists.
    current: Option<(Arc<Bundle>, CertInfo)>,
    last_error: Option<String>,
    /// When an order last succeeded (at start: the stored certificate's notBefore).
    last_success: Option<SystemTime>,
    inbox: mpsc::Receiver<CertCommand>,
}

fn jitter() -> f64 {
    rand::random::<f64>()
}

impl CertTask {
    /// Loads what is stored, builds the machine, deploys what should be served.
    pub(super) async fn start(
        shared: Arc<Shared>,
        certificate: Certificate,
        resolver: Option<Arc<Resolver>>,
        inbox: mpsc::Receiver<CertCommand>,
    ) -> Result<Self, RunError> {
        let resolver = resolver.ok_or_else(|| RunError::UnknownResolver(certificate.resolver.clone()))?;
        let name = certificate.name.clone();
        let now = shared.clock.now();
        let policy = Policy {
            renew_before: resolver.renew_before,
            ari: shared.accounts.ari(&certificate.resolver) != Some(false),
        };
        let stored = shared.store.load_certificate(&name).await?;
        let current = stored.and_then(|b| cert::inspect(&b, None).ok().map(|info| (Arc::new(b), info)));
        let revoked = shared.store.revoked(&name).await?;
        let mut machine = match &current {
            Some((_, info)) => Machine::with_certificate(policy, info.not_before, info.not_after, now, jitter()),
            None => Machine::new(policy),
        };
        if let Some((_, info)) = &current {
            if let Err(e) = info.covers(&certificate.domains) {
                tracing::warn!(certificate = %name, error = %e, "stored certificate no longer matches the configuration");
                machine.config_changed();
            } else if info.key_type != Some(resolver.key_type) {
                tracing::warn!(certificate = %name, stored = ?info.key_type, configured = ?resolver.key_type, "key type changed: ordering a new certificate");
                machine.config_changed();
            }
        }
        match shared.store.load_renewal(&name).await {
            Ok(Some(state)) => {
                let next = std::time::UNIX_EPOCH + Duration::from_secs(state.next_attempt);
                machine.restore_backoff(state.failures, next, &state.last_error, now);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(certificate = %name, error = %e, "cannot read the shared renewal state"),
        }
        let last_success = current.as_ref().map(|(_, info)| info.not_before);
        let mut task = Self { shared, certificate, resolver, machine, current, last_error: None, last_success, inbox };
        let is_revoked = revoked.is_some();
        if let Some(serial) = revoked {
            task.machine.failed(&revoked_failure(&task.certificate.name, &serial), now, 0.0);
            task.current = None;
        }
        task.deploy_served(now, is_revoked).await;
        task.publish();
        Ok(task)
    }

    /// The certificate's name.
    pub(super) fn name(&self) -> &str {
        &self.certificate.name
    }

    /// Runs forever. A first action due at start-up (an order, or an ARI
    /// poll) waits for its turn among [`super::FIRST_ACTIONS_IN_FLIGHT`]:
    /// thousands of certificates do not all ask the CA in the same second
    /// after a restart, yet a start goes as fast as the CA answers.
    pub(super) async fn run(mut self) {
        let first = self.machine.next_action(self.shared.clock.now());
        if matches!(first, Action::Order | Action::PollAri) {
            // The semaphore is never closed; without a permit, go anyway.
            let shared = Arc::clone(&self.shared);
            let _permit = shared.first_actions.acquire().await.ok();
            self.act(first).await;
        }
        loop {
            let now = self.shared.clock.now();
            match self.machine.next_action(now) {
                Action::WaitUntil(at) => self.wait(at.duration_since(now).unwrap_or_default()).await,
                Action::Idle => self.wait(MAX_SLEEP).await,
                action => self.act(action).await,
            }
        }
    }

    /// An order or an ARI poll. Boxed: the ACME futures are kilobytes, and a
    /// task spends nearly all its life asleep, so its own future stays small
    /// (10,000 idle certificates, not 10,000 copies of an order's state).
    async fn act(&mut self, action: Action) {
        match action {
            Action::Order => {
                let _ = Box::pin(self.order()).await;
            }
            Action::PollAri => Box::pin(self.poll_ari()).await,
            Action::WaitUntil(_) | Action::Idle => {}
        }
        self.publish();
    }

    /// Sleeps, waking early for an admin command.
    async fn wait(&mut self, duration: Duration) {
        let duration = duration.min(MAX_SLEEP);
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            command = self.inbox.recv() => match command {
                Some(command) => Box::pin(self.command(command)).await,
                None => tokio::time::sleep(duration).await,
            },
        }
    }

    async fn command(&mut self, command: CertCommand) {
        match command {
            CertCommand::Renew { force, reply } => {
                let now = self.shared.clock.now();
                if force {
                    // The revocation mark stays until a new certificate is
                    // stored: until then the revoked one is never adopted
                    // back from a shared store.
                    self.machine.force();
                } else if !matches!(self.machine.next_action(now), Action::Order) {
                    let state = self.machine.describe(now);
                    let _ = reply.send(Err(format!("not due ({state}); add --force to renew anyway")));
                    return;
                }
                let result = self.order().await;
                let name = &self.certificate.name;
                let _ = reply.send(result.map(|serial| format!("renewed {name}: serial {serial}")));
            }
            CertCommand::Revoke { reason, reply } => {
                let _ = reply.send(self.revoke(reason).await);
            }
            CertCommand::Stored(bundle) => {
                self.adopt(*bundle).await;
            }
        }
        self.publish();
    }

    /// One order, with the self-imposed limits; success deploys everywhere.
    async fn order(&mut self) -> Result<String, String> {
        let now = self.shared.clock.now();
        let resolver_name = self.certificate.resolver.clone();
        let limits = self
            .shared
            .accounts
            .check_authz(&resolver_name, &self.certificate.domains, now)
            .and_then(|()| self.shared.accounts.take_order(&resolver_name, now));
        if let Err(e) = limits {
            return Err(self.failed(&e, now));
        }
        let lock = match self.lock().await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return match &self.current {
                    Some((_, info)) => Ok(info.serial_hex.clone()),
                    None => Err("another replica is ordering this certificate".to_owned()),
                }
            }
            Err(why) => return Err(why),
        };
        self.machine.order_started(now);
        let started = std::time::Instant::now();
        let mut result = self.order_fenced(&lock).await;
        for _ in 0..2 {
            let Err(e) = &result else { break };
            // A refused nonce, or a CA that forgot our account (which gets
            // a new one at once), is no failure of this certificate.
            let forgotten = self.shared.accounts.on_error(self.shared.store.as_ref(), &resolver_name, e).await;
            if !(forgotten || e.is_bad_nonce()) {
                break;
            }
            tracing::info!(certificate = %self.certificate.name, error = %e, "ordering again at once");
            result = self.order_fenced(&lock).await;
        }
        let now = self.shared.clock.now();
        crate::metrics::metrics().order(&resolver_name, result.is_ok(), started.elapsed());
        match result {
            Ok((bundle, info)) => {
                let bundle = Arc::new(bundle);
                self.last_success = Some(now);
                self.shared.deploy(&self.certificate.name, &bundle).await;
                self.post_deploy(&info).await;
                self.machine.issued(info.not_before, info.not_after, now, jitter());
                let serial = info.serial_hex.clone();
                self.current = Some((bundle, info));
                self.last_error = None;
                self.share_renewal(None).await;
                Ok(serial)
            }
            Err(e) => {
                let message = self.failed(&e, now);
                if let schedule::State::Backoff { attempt, next, error } = self.machine.state().clone() {
                    let next_attempt = next.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let replica = self.shared.replica.clone();
                    let state = RenewalState { failures: attempt, next_attempt, last_error: error, replica };
                    self.share_renewal(Some(&state)).await;
                }
                Err(message)
            }
        }
    }

    /// Takes the certificate's lock (always granted by a store of one
    /// process). `Ok(None)`: another replica holds it or already stored a
    /// new certificate, which is adopted; the machine waits a moment and
    /// looks again. `Err`: the shared store is unreachable; no order is
    /// placed without the lock.
    async fn lock(&mut self) -> Result<Option<Lock>, String> {
        let now = self.shared.clock.now();
        let retry = now + Duration::from_millis(1000 + (jitter() * 1000.0) as u64);
        let id = format!("certificates/{}", self.certificate.name);
        match self.shared.store.lock(&id).await {
            Ok(Acquired::Lock(lock)) if lock.token() == 0 => Ok(Some(lock)),
            Ok(Acquired::Lock(lock)) => {
                self.remove_orphaned_records().await;
                // A replica may have stored a new certificate just before
                // releasing the lock: adopt it rather than order again.
                match self.shared.store.load_certificate(&self.certificate.name).await {
                    Ok(Some(stored)) => Ok(if self.adopt(stored).await { None } else { Some(lock) }),
                    Ok(None) => Ok(Some(lock)),
                    Err(e) => {
                        let why = format!("cannot read the store: {e}");
                        self.machine.deferred(now + Duration::from_secs(5), &why);
                        Err(why)
                    }
                }
            }
            Ok(Acquired::HeldBy(holder)) => {
                tracing::debug!(certificate = %self.certificate.name, %holder, "another replica is ordering");
                self.machine.deferred(retry, &format!("{holder} is ordering it"));
                Ok(None)
            }
            Err(e) => {
                let why = format!("not ordering without the lock: {e}");
                tracing::warn!(certificate = %self.certificate.name, error = %e, "not ordering without the lock");
                self.machine.deferred(now + Duration::from_secs(5), &why);
                self.last_error = Some(why.clone());
                Err(why)
            }
        }
    }

    /// One order that stops as soon as `lock` is lost, so nothing is written
    /// after another replica may have taken over.
    async fn order_fenced(&self, lock: &Lock) -> Result<(Bundle, CertInfo), AcmeError> {
        tokio::select! {
            result = self.order_once(lock) => result,
            () = lock.lost() => Err(AcmeError::Store(StoreError::LockLost(self.certificate.name.clone()))),
        }
    }

    /// A certificate read from the shared store: served and scheduled when
    /// it is new to this replica, covers the names and is newer than the
    /// current one. Returns whether it was adopted.
    async fn adopt(&mut self, bundle: Bundle) -> bool {
        let Ok(info) = cert::inspect(&bundle, Some(&self.certificate.domains)) else { return false };
        if let Some((_, current)) = &self.current {
            if current.serial_hex == info.serial_hex || current.not_before > info.not_before {
                return false;
            }
        }
        // A revoked certificate stays in the store as the last one issued;
        // it is never served again.
        match self.shared.store.revoked(&self.certificate.name).await {
            Ok(Some(serial)) if serial.eq_ignore_ascii_case(&info.serial_hex) => return false,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(certificate = %self.certificate.name, error = %e, "cannot read the revocation mark");
                return false;
            }
        }
        if info.key_type != Some(self.resolver.key_type) {
            return false;
        }
        let now = self.shared.clock.now();
        tracing::info!(certificate = %self.certificate.name, serial = %info.serial_hex, "new certificate from the shared store");
        let bundle = Arc::new(bundle);
        self.shared.deploy(&self.certificate.name, &bundle).await;
        self.machine.issued(info.not_before, info.not_after, now, jitter());
        self.last_success = Some(info.not_before);
        self.current = Some((bundle, info));
        self.last_error = None;
        self.publish();
        true
    }

    /// DNS-01 records a crashed replica published for this certificate's
    /// names and never removed (their posts outlive it): removed now, under
    /// the lock, before a new order publishes its own.
    async fn remove_orphaned_records(&self) {
        let (Some(board), Some(dns)) = (&self.shared.solvers.board, self.shared.dns.get(&self.certificate.resolver))
        else {
            return;
        };
        let posts = match board.list(crate::solvers::ChallengeKind::Dns01.as_str()).await {
            Ok(posts) => posts,
            Err(e) => {
                tracing::warn!(certificate = %self.certificate.name, error = %e, "cannot list posted DNS-01 records");
                return;
            }
        };
        let ours = |domain: &str| self.certificate.domains.iter().any(|d| d.strip_prefix("*.").unwrap_or(d) == domain);
        for (key, value) in posts {
            let Ok(record) = serde_json::from_slice::<crate::dns::TxtRecord>(&value) else { continue };
            if !ours(&record.domain) {
                continue;
            }
            match dns.provider.cleanup(&record).await {
                Ok(()) => {
                    tracing::info!(certificate = %self.certificate.name, fqdn = %record.fqdn, "removed a DNS-01 record left by an interrupted order");
                    board.take_down(crate::solvers::ChallengeKind::Dns01.as_str(), &key).await;
                }
                Err(e) => {
                    tracing::warn!(fqdn = %record.fqdn, error = %e, "cannot remove a DNS-01 record left by an interrupted order")
                }
            }
        }
    }

    /// Records the renewal state where other replicas see it.
    async fn share_renewal(&self, state: Option<&RenewalState>) {
        if let Err(e) = self.shared.store.save_renewal(&self.certificate.name, state).await {
            tracing::warn!(certificate = %self.certificate.name, error = %e, "cannot share the renewal state");
        }
    }

    async fn order_once(&self, lock: &Lock) -> Result<(Bundle, CertInfo), AcmeError> {
        let shared = &self.shared;
        let account = shared.accounts.get(shared.store.as_ref(), &self.certificate.resolver).await?;
        let ari = shared.accounts.ari(&self.certificate.resolver) == Some(true);
        let request = OrderRequest {
            domains: &self.certificate.domains,
            key_type: self.resolver.key_type,
            profile: self.resolver.profile.as_deref(),
            preferred_chain: self.resolver.preferred_chain.as_deref(),
            replaces: self.current.as_ref().filter(|_| ari).map(|(b, _)| &**b),
            webroot: self.resolver.http_challenge.as_ref().and_then(|h| h.webroot.as_deref()),
            dns: shared.dns.get(&self.certificate.resolver),
        };
        let bundle = self.issue_with_fallback(&account, &request).await?;
        let info = cert::inspect(&bundle, Some(&self.certificate.domains))?;
        shared.store.save_certificate_fenced(&self.certificate.name, &bundle, lock).await?;
        shared.store.clear_revoked(&self.certificate.name).await?;
        Ok((bundle, info))
    }

    /// Tries the resolver's challenge types in order: when an order fails
    /// because of its challenge (the CA could not validate it, or did not
    /// offer it), the next type gets a new order, within the order budget.
    async fn issue_with_fallback(
        &self,
        account: &acme::AcmeAccount,
        request: &OrderRequest<'_>,
    ) -> Result<Bundle, AcmeError> {
        let shared = &self.shared;
        let mut kinds = self.resolver.challenges();
        // A wildcard can only be proven with DNS-01 (RFC 8555 §7.1.3).
        if self.certificate.domains.iter().any(|d| d.starts_with("*.")) {
            kinds.retain(|k| *k == crate::solvers::ChallengeKind::Dns01);
        }
        let mut kinds = kinds.iter().peekable();
        loop {
            let Some(&kind) = kinds.next() else {
                return Err(AcmeError::Solver("the resolver has no challenge type".into()));
            };
            let started = std::time::Instant::now();
            let result = acme::issue(account, request, &shared.solvers, kind).await;
            let outcome = match &result {
                Ok(_) => "valid",
                Err(e) if e.is_challenge_failure() => "invalid",
                Err(_) => "error",
            };
            crate::metrics::metrics().challenge(kind.as_str(), outcome, started.elapsed());
            match result {
                Err(e) if e.is_challenge_failure() && kinds.peek().is_some() => {
                    let now = shared.clock.now();
                    if let Some(identifier) = e.failed_identifier() {
                        shared.accounts.record_authz_failure(&self.certificate.resolver, identifier, now);
                    }
                    let next = kinds.peek().map(|k| k.as_str()).unwrap_or_default();
                    tracing::warn!(
                        certificate = %self.certificate.name,
                        challenge = %kind,
                        error = %e,
                        next,
                        "challenge failed; ordering again with the next challenge type"
                    );
                    shared.accounts.take_order(&self.certificate.resolver, now)?;
                }
                result => return result,
            }
        }
    }

    /// Runs the `[post_deploy]` hook for a newly issued certificate.
    async fn post_deploy(&self, info: &CertInfo) {
        let Some((hook, root)) = &self.shared.post_deploy else { return };
        let name = &self.certificate.name;
        let env =
            crate::deploy::hook::environment(name, &self.certificate.domains, info, &root.join(name).join("live"));
        match crate::deploy::hook::run(hook, &env).await {
            Ok(()) => tracing::info!(certificate = %name, "post_deploy hook succeeded"),
            Err(e) => tracing::error!(certificate = %name, error = %e, "post_deploy hook failed"),
        }
    }

    /// Records a failed order in the machine and the logs; returns the message.
    fn failed(&mut self, error: &AcmeError, now: SystemTime) -> String {
        if let Some(problem) = error.problem_type() {
            crate::metrics::metrics().acme_error(problem);
        }
        if let Some(identifier) = error.failed_identifier() {
            self.shared.accounts.record_authz_failure(&self.certificate.resolver, identifier, now);
        }
        let failure = Failure {
            permanent: error.is_permanent(),
            rate_limited: error.is_rate_limited(),
            retry_after: error.retry_after(),
            message: error.to_string(),
        };
        self.machine.failed(&failure, now, jitter());
        tracing::error!(
            certificate = %self.certificate.name,
            error = %error,
            permanent = failure.permanent,
            next = %self.machine.describe(now),
            "order failed; the last good certificate stays deployed"
        );
        self.last_error = Some(failure.message);
        error.to_string()
    }

    /// Asks the CA for renewal information (RFC 9773) about the current certificate.
    async fn poll_ari(&mut self) {
        let now = self.shared.clock.now();
        let resolver_name = self.certificate.resolver.clone();
        let Some((bundle, _)) = &self.current else {
            self.machine.set_ari(false, now, jitter());
            return;
        };
        let answer = match self.shared.accounts.get(self.shared.store.as_ref(), &resolver_name).await {
            Err(e) => AriAnswer::Unavailable(e.to_string()),
            Ok(account) => match acme::renewal_info(&account, bundle).await {
                Ok(None) => {
                    self.shared.accounts.set_ari(&resolver_name, false);
                    self.machine.set_ari(false, now, jitter());
                    return;
                }
                Ok(Some(window)) => {
                    self.shared.accounts.set_ari(&resolver_name, true);
                    tracing::debug!(certificate = %self.certificate.name, ?window, "ARI window");
                    AriAnswer::Window { start: window.start, end: window.end, retry_after: Some(window.retry_after) }
                }
                Err(AcmeError::Protocol(e @ (instant_acme::Error::Json(_) | instant_acme::Error::Str(_)))) => {
                    AriAnswer::Malformed(e.to_string())
                }
                Err(e) => AriAnswer::Unavailable(e.to_string()),
            },
        };
        if let Some(warning) = self.machine.ari_answer(&answer, now, jitter()) {
            tracing::warn!(certificate = %self.certificate.name, "{warning}");
        }
    }

    /// Revokes the current certificate at the CA and stops serving it.
    async fn revoke(&mut self, reason: Option<u8>) -> Result<String, String> {
        let Some((bundle, info)) = self.current.clone() else {
            return Err(format!("{} has no certificate to revoke", self.certificate.name));
        };
        let shared = Arc::clone(&self.shared);
        let account =
            shared.accounts.get(shared.store.as_ref(), &self.certificate.resolver).await.map_err(|e| e.to_string())?;
        acme::revoke(&account, &bundle, reason).await.map_err(|e| e.to_string())?;
        shared.store.mark_revoked(&self.certificate.name, &info.serial_hex).await.map_err(|e| e.to_string())?;
        let now = shared.clock.now();
        self.current = None;
        self.machine.failed(&revoked_failure(&self.certificate.name, &info.serial_hex), now, 0.0);
        let served = self.deploy_served(now, true).await;
        tracing::info!(certificate = %self.certificate.name, serial = %info.serial_hex, ?served, "certificate revoked");
        Ok(format!("revoked {} (serial {}); now serving: {served:?}", self.certificate.name, info.serial_hex))
    }

    /// Deploys what should be served now: the current certificate (valid or
    /// expired), else the default certificate, else a placeholder. After a
    /// revocation the placeholder is used even when disabled: SDS cannot
    /// take a secret away from Envoy, only replace it.
    async fn deploy_served(&self, now: SystemTime, revoked: bool) -> Served {
        let validity = self.current.as_ref().map(|(_, i)| (i.not_before, i.not_after));
        let has_default = self.shared.default_certificate.is_some();
        let served = schedule::choose_served(validity, has_default, self.shared.placeholder || revoked, now);
        let name = &self.certificate.name;
        let bundle = match served {
            Served::Current | Served::Expired => self.current.as_ref().map(|(b, _)| b.clone()),
            Served::Default => self.shared.default_certificate.as_ref().map(|b| Arc::new(b.clone())),
            Served::Placeholder => match cert::placeholder(&self.certificate.domains) {
                Ok(b) => Some(Arc::new(b)),
                Err(e) => {
                    tracing::warn!(certificate = %name, error = %e, "cannot build placeholder");
                    None
                }
            },
            Served::Nothing => None,
        };
        if let Some(bundle) = bundle {
            self.shared.deploy(name, &bundle).await;
        }
        served
    }

    fn publish(&self) {
        let now = self.shared.clock.now();
        let info = self.current.as_ref().map(|(_, i)| i);
        let metrics = crate::metrics::metrics();
        metrics.certificate(
            &self.certificate.name,
            &crate::metrics::CertificateState {
                not_after: info.map(|i| i.not_after),
                renew_at: self.machine.next_order(now),
                failures: self.machine.failures(),
                last_success: self.last_success,
            },
        );
        if let Some(remaining) = self.shared.accounts.orders_remaining(&self.certificate.resolver, now) {
            metrics.orders_remaining(&self.certificate.resolver, remaining);
        }
        let deployed = match info {
            Some(i) if i.not_after > now => Ok(()),
            Some(_) => Err("the deployed certificate has expired".to_owned()),
            None => Err(self.last_error.clone().unwrap_or_else(|| "no certificate issued yet".to_owned())),
        };
        self.shared.readiness.set(format!("certificate:{}", self.certificate.name), deployed);
        self.shared.control.set_status(CertStatus {
            name: self.certificate.name.clone(),
            domains: self.certificate.domains.clone(),
            resolver: self.certificate.resolver.clone(),
            serial: info.map(|i| i.serial_hex.clone()),
            not_after: info.map(|i| super::accounts::rfc3339(i.not_after)),
            state: self.machine.describe_for(&self.certificate.name, now),
            last_error: self.last_error.clone(),
        });
    }
}

fn revoked_failure(name: &str, serial: &str) -> Failure {
    Failure {
        permanent: true,
        message: format!(
            "revoked by the operator (serial {serial}); `proxy-acme renew {name} --force` orders a new one"
        ),
        ..Failure::default()
    }
}
