//! One certificate's task: a small driver over its [`Machine`]. It asks the
//! machine what to do, has the [`Issuer`] order, the [`Coordinator`] take
//! the replicas' lock, [`Serving`] deploy and the [`Reporter`] show the
//! result, answers the admin API's renew and revoke, and keeps the last
//! good certificate deployed through failures.
//!
//! [`Issuer`]: super::issuer::Issuer
//! [`Coordinator`]: super::coordinator::Coordinator
//! [`Serving`]: super::serving::Serving
//! [`Reporter`]: super::reporter::Reporter

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::bus::{CertCommand, OpError};
use super::coordinator::Turn;
use super::inbox::Receiver;
use super::issuer::Issued;
use super::reporter::View;
use super::resume::{resume, Resumed};
use super::{Parts, RunError};
use crate::acme::AcmeError;
use crate::cert::{Bundle, CertInfo};
use crate::config::{Certificate, Resolver};
use crate::schedule::{self, Action, AfterFailure, Fallback, Machine};
use crate::store::{StoreError, Stored};
use unsaved::Unsaved;

/// Longest sleep between two looks, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// When the CA answers again after an outage, the certificates that waited
/// for it order within this long (each at a random point in it).
pub(super) const CA_BACK_SPREAD: Duration = Duration::from_secs(30);
pub(super) struct CertTask {
    parts: Arc<Parts>,
    certificate: Certificate,
    /// The certificate's resolvers, in the order they are tried.
    resolvers: Vec<Arc<Resolver>>,
    /// Which of them the next order goes to, and which issued the current
    /// certificate.
    fallback: Fallback,
    machine: Machine,
    /// The last good certificate: what is deployed while it exists.
    current: Option<(Arc<Bundle>, CertInfo)>,
    last_error: Option<String>,
    /// When an order last succeeded.
    last_success: Option<SystemTime>,
    /// Set while the current certificate waits to be written to the store.
    unsaved: Option<Unsaved>,
    inbox: Receiver<CertCommand>,
}

impl CertTask {
    /// Loads what is stored, builds the machine, deploys what should be served.
    pub(super) async fn start(
        parts: Arc<Parts>,
        certificate: Certificate,
        resolvers: Vec<Option<Arc<Resolver>>>,
        inbox: Receiver<CertCommand>,
    ) -> Result<Self, RunError> {
        let stored = parts.coordinator.stored(&certificate.name).await;
        Self::start_loaded(parts, certificate, resolvers, inbox, stored).await
    }

    /// [`start`](Self::start) with what the store holds, read already
    /// (`Fleet::start_all` reads many in one go).
    pub(super) async fn start_loaded(
        parts: Arc<Parts>,
        certificate: Certificate,
        resolvers: Vec<Option<Arc<Resolver>>>,
        inbox: Receiver<CertCommand>,
        stored: Result<Stored, StoreError>,
    ) -> Result<Self, RunError> {
        let resolvers = resolvers
            .into_iter()
            .zip(&certificate.resolvers)
            .map(|(resolver, name)| resolver.ok_or_else(|| RunError::UnknownResolver(name.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if resolvers.is_empty() {
            return Err(RunError::UnknownResolver(certificate.resolver.clone()));
        }
        let Resumed { machine, current, revoked, issued_by } =
            resume(&parts, &certificate, &resolvers, stored?).await?;
        let fallback = Fallback::new(certificate.fallback.clone(), resolvers.len(), issued_by);
        // Until a new order: the stored certificate's notBefore.
        let last_success = current.as_ref().map(|(_, info)| info.not_before);
        let task = Self {
            parts,
            certificate,
            resolvers,
            fallback,
            machine,
            current,
            last_error: None,
            last_success,
            unsaved: None,
            inbox,
        };
        let now = task.parts.clock.now();
        task.parts.serving.fall_back(&task.certificate, task.current.as_ref(), now, revoked).await;
        task.publish();
        Ok(task)
    }

    pub(super) fn name(&self) -> &str {
        &self.certificate.name
    }

    /// Runs forever. A first action due at start-up (an order, or an ARI
    /// poll) waits for its turn at its CA's pace (`daemon::pace`, as every
    /// exchange with the CA does), so thousands of certificates do not all
    /// ask the CA in the same second after a restart, yet a start goes as
    /// fast as the CA answers.
    ///
    /// Not an `async fn`: one keeps its `self` argument and the copy moved
    /// into its body side by side (rust-lang/rust#62958), twice the task's
    /// 600 bytes in each of thousands of futures that live for the whole
    /// run; an `async move` block uses what it captured in place.
    #[allow(clippy::manual_async_fn, reason = "an async fn would hold the task twice")]
    pub(super) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let first = self.machine.next_action(self.parts.clock.now());
            if matches!(first, Action::Order | Action::PollAri) {
                self.act(first).await;
            }
            loop {
                if let Some(sleep) = self.step().await {
                    self.wait(sleep).await;
                }
            }
        }
    }

    /// Does what the machine says is due now; else says how long to sleep.
    /// A certificate the store did not take is written first, when due.
    pub(super) async fn step(&mut self) -> Option<Duration> {
        let now = self.parts.clock.now();
        if self.unsaved.is_some_and(|u| u.next <= now) {
            Box::pin(self.store_unsaved()).await;
            self.publish();
            return None;
        }
        let sleep = match self.machine.next_action(now) {
            Action::WaitUntil(at) => at.duration_since(now).unwrap_or_default().min(MAX_SLEEP),
            Action::Idle => MAX_SLEEP,
            action => {
                self.act(action).await;
                return None;
            }
        };
        Some(self.unsaved.map_or(sleep, |u| sleep.min(u.next.duration_since(now).unwrap_or_default())))
    }

    /// An order or an ARI poll. Boxed: the ACME futures are kilobytes, and a
    /// task spends nearly all its life asleep, so its own future stays small.
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

    /// Sleeps, waking early for a command.
    async fn wait(&mut self, duration: Duration) {
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
                let now = self.parts.clock.now();
                if force {
                    // The revocation mark stays until a new certificate is
                    // stored, so a revoked one is never adopted back.
                    self.machine.force();
                } else if !matches!(self.machine.next_action(now), Action::Order) {
                    let state = self.machine.describe(now);
                    let _ = reply.send(Err(OpError::NotDue(state)));
                    return;
                }
                let result = self.order().await;
                let name = self.certificate.name.clone();
                match result {
                    // Answered once the proxies serve it (nginx reloads
                    // after a delay and a check), without holding the task.
                    Ok(serial) => {
                        let settled = self.parts.serving.settled(&name);
                        tokio::spawn(async move {
                            let answer = match settled.await {
                                Ok(()) => Ok(format!("renewed {name}: serial {serial}, served")),
                                Err(reason) => Err(OpError::NotServed { name, serial, reason }),
                            };
                            let _ = reply.send(answer);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            CertCommand::DryRun { reply } => {
                // Its own task: the certificate's schedule goes on meanwhile.
                let (certificate, resolver) = self.attempt();
                let parts = Arc::clone(&self.parts);
                tokio::spawn(async move {
                    let report = parts.issuer.dry_run(&certificate, &resolver).await;
                    let _ = reply.send(report.map_err(OpError::DryRun));
                });
            }
            CertCommand::Revoke { reason, reply } => {
                let _ = reply.send(self.revoke(reason).await);
            }
            CertCommand::CaBack(resolver) if resolver == self.resolver_name(self.fallback.next()) => {
                // Spread over CA_BACK_SPREAD, so a thousand certificates
                // that waited out one outage do not all order in one second.
                let now = self.parts.clock.now();
                let at = now + CA_BACK_SPREAD.mul_f64(self.parts.jitter());
                if self.machine.ca_back(at) {
                    tracing::info!(certificate = %self.certificate.name, next = %self.machine.describe(now), "the CA answers again: retrying soon");
                }
            }
            CertCommand::CaBack(_) => {}
            CertCommand::Stored(bundle) => {
                self.adopt(*bundle).await;
            }
        }
        self.publish();
    }

    /// Orders at the resolver whose turn it is; when that one is given up
    /// ([`Fallback`]), at the next one at once, so a renewal the operator
    /// asked for answers with the last resolver's outcome.
    async fn order(&mut self) -> Result<String, OpError> {
        let mut result = self.order_at().await;
        for _ in 1..self.resolvers.len() {
            match result {
                Err(Moved::On(_)) => result = self.order_at().await,
                _ => break,
            }
        }
        result.map_err(Moved::into_error)
    }

    /// The certificate as ordered now (its `resolver` the one whose turn
    /// it is) and that resolver's settings.
    fn attempt(&self) -> (Certificate, Arc<Resolver>) {
        self.at(self.fallback.next())
    }

    /// The name of the certificate's `i`-th resolver.
    fn resolver_name(&self, i: usize) -> &str {
        let names = &self.certificate.resolvers;
        names.get(i).or(names.first()).map_or("", String::as_str)
    }

    /// The certificate at its `i`-th resolver.
    fn at(&self, i: usize) -> (Certificate, Arc<Resolver>) {
        let i = i.min(self.resolvers.len() - 1);
        (self.certificate.at(&self.certificate.resolvers[i]), Arc::clone(&self.resolvers[i]))
    }

    /// One order within the limits and under the lock; success deploys everywhere.
    async fn order_at(&mut self) -> Result<String, Moved> {
        let now = self.parts.clock.now();
        let (certificate, resolver) = self.attempt();
        if let Err(e) = self.parts.issuer.admit(&certificate) {
            return Err(self.failed(e, now));
        }
        let lock = match self.parts.coordinator.take_turn(&certificate).await {
            Turn::Ours { lock, stored } => {
                if let Some(stored) = stored {
                    if self.adopt(stored).await {
                        return self.current_serial("another replica").map_err(Moved::Not);
                    }
                }
                lock
            }
            Turn::Held(holder) => {
                let retry = now + Duration::from_millis(1000 + (self.parts.jitter() * 1000.0) as u64);
                self.machine.deferred(retry, &format!("{holder} is ordering it"));
                return self.current_serial(&holder).map_err(Moved::Not);
            }
            Turn::Unreachable(e) => {
                let error = OpError::NoLock(e);
                self.machine.deferred(now + Duration::from_secs(5), &error.to_string());
                self.last_error = Some(error.to_string());
                return Err(Moved::Not(error));
            }
        };
        self.machine.order_started(now);
        let started = std::time::Instant::now();
        let current = self.current.as_ref().map(|(b, _)| &**b);
        let result = self.parts.issuer.issue(&certificate, &resolver, current, &lock).await;
        let now = self.parts.clock.now();
        crate::serve::metrics::metrics().order(&certificate.resolver, result.is_ok(), started.elapsed());
        match result {
            Ok(Issued { bundle, info, unsaved }) => {
                let serial = info.serial_hex.clone();
                self.fallback.succeeded();
                self.take_new(bundle, info, now).await;
                if let Some(e) = unsaved {
                    self.unsaved = Some(Unsaved::after(0, now));
                    self.last_error = Some(format!("serial {serial} is served but not stored yet: {e}"));
                }
                let (parts, certificate) = (&self.parts, &self.certificate);
                if let Some((_, info)) = &self.current {
                    parts.serving.post_deploy(certificate, info).await;
                }
                self.parts.coordinator.share(&self.certificate.name, None).await;
                Ok(serial)
            }
            Err(e) => {
                let moved = self.failed(e, now);
                if let schedule::State::Backoff { attempt, next, error } = self.machine.state() {
                    let backoff = Some((*attempt, *next, error.as_str()));
                    self.parts.coordinator.share(&self.certificate.name, backoff).await;
                }
                Err(moved)
            }
        }
    }

    /// The serial served now: what an order that was not needed answers.
    fn current_serial(&self, holder: &str) -> Result<String, OpError> {
        match &self.current {
            Some((_, info)) => Ok(info.serial_hex.clone()),
            None => Err(OpError::Elsewhere(holder.to_owned())),
        }
    }

    /// A certificate read from the shared store: served and scheduled when
    /// the coordinator finds it newer. Returns whether it was adopted.
    async fn adopt(&mut self, bundle: Bundle) -> bool {
        let current = self.current.as_ref().map(|(_, i)| i);
        let issued_by = match self.resolvers.len() {
            1 => Some(0),
            _ => self.parts.issuer.issued_by(&self.certificate.name).await.and_then(|r| self.index_of(&r)),
        };
        let key_type = self.certificate.key_type(&self.at(issued_by.unwrap_or(0)).1);
        let Some(info) = self.parts.coordinator.adoptable(&self.certificate, key_type, current, &bundle).await else {
            return false;
        };
        self.fallback.adopted(issued_by);
        tracing::info!(certificate = %self.certificate.name, serial = %info.serial_hex, "new certificate from the shared store");
        let issued_at = info.not_before;
        self.take_new(bundle, info, issued_at).await;
        self.publish();
        true
    }

    /// A new certificate, issued here or stored by another replica: deployed
    /// everywhere and scheduled; `succeeded_at` is when its order succeeded.
    async fn take_new(&mut self, bundle: Bundle, info: CertInfo, succeeded_at: SystemTime) {
        let bundle = Arc::new(bundle);
        self.parts.serving.deploy(&self.certificate.name, &bundle).await;
        self.machine.issued(info.not_before, info.not_after, self.parts.clock.now(), self.parts.spread(&info));
        self.last_success = Some(succeeded_at);
        self.last_error = None;
        self.unsaved = None;
        self.current = Some((bundle, info));
    }

    /// Where resolver `name` is in the certificate's list.
    fn index_of(&self, name: &str) -> Option<usize> {
        self.certificate.resolvers.iter().position(|r| r == name)
    }

    /// Records a failed order in the machine and the logs; says whether
    /// the next resolver is to be tried at once.
    fn failed(&mut self, error: AcmeError, now: SystemTime) -> Moved {
        let (certificate, _) = self.attempt();
        let failure = self.parts.issuer.record_failure(&certificate, &error);
        self.last_error = Some(failure.message.clone());
        match self.fallback.failed(&failure, now) {
            AfterFailure::BackOff(failure) => {
                self.machine.failed(&failure, now, self.parts.jitter());
                tracing::error!(
                    certificate = %self.certificate.name,
                    resolver = %certificate.resolver,
                    error = %error,
                    permanent = failure.permanent,
                    next = %self.machine.describe(now),
                    "order failed; the last good certificate stays deployed"
                );
                Moved::Not(error.into())
            }
            AfterFailure::MoveOn { from, to, why } => {
                let (from, to) = (&self.certificate.resolvers[from], &self.certificate.resolvers[to]);
                crate::serve::metrics::metrics().fallback(&self.certificate.name, from, to);
                tracing::warn!(
                    certificate = %self.certificate.name,
                    from = %from,
                    to = %to,
                    why = %why,
                    "order failed; falling back to the next resolver"
                );
                self.machine.deferred(now, &format!("falling back from {from} to {to}: {why}"));
                Moved::On(error.into())
            }
        }
    }

    /// Asks the CA for renewal information (RFC 9773) about the current certificate.
    async fn poll_ari(&mut self) {
        // Renewal information comes from the CA that issued the certificate.
        let (issuer_side, _) = self.at(self.fallback.issued_by());
        let answer = match &self.current {
            Some((bundle, _)) => self.parts.issuer.poll_ari(&issuer_side, bundle).await,
            None => None,
        };
        // The answer's time, not the ask's: its Retry-After counts from
        // the answer, and the ask may have waited its turn at the CA's
        // pace (in a mass renewal, for tens of seconds: polls then came
        // that much before the Retry-After).
        let now = self.parts.clock.now();
        // The same spread as the rule's: a restart lands on the same time.
        let spread = self.current.as_ref().map_or_else(|| self.parts.jitter(), |(_, info)| self.parts.spread(info));
        let Some(answer) = answer else { return self.machine.set_ari(false, now, spread) };
        if let Some(warning) = self.machine.ari_answer(&answer, now, spread) {
            tracing::warn!(certificate = %self.certificate.name, "{warning}");
        }
    }

    /// Revokes the current certificate at the CA and stops serving it.
    async fn revoke(&mut self, reason: Option<u8>) -> Result<String, OpError> {
        let Some((bundle, info)) = self.current.clone() else {
            return Err(OpError::NothingToRevoke(self.certificate.name.clone()));
        };
        let (issuer_side, _) = self.at(self.fallback.issued_by());
        self.parts.issuer.revoke(&issuer_side, &bundle, &info.serial_hex, reason).await?;
        let now = self.parts.clock.now();
        self.current = None;
        self.machine.failed(&super::issuer::revoked(&self.certificate.name, &info.serial_hex), now, 0.0);
        let served = self.parts.serving.fall_back(&self.certificate, None, now, true).await;
        tracing::info!(certificate = %self.certificate.name, serial = %info.serial_hex, ?served, "certificate revoked");
        Ok(format!("revoked {} (serial {}); now serving: {served:?}", self.certificate.name, info.serial_hex))
    }

    fn publish(&self) {
        let now = self.parts.clock.now();
        let view = View {
            now,
            info: self.current.as_ref().map(|(_, i)| i),
            renew_at: self.machine.next_order(now),
            failures: self.machine.failures(),
            last_success: self.last_success,
            state: self.machine.describe_for(&self.certificate.name, now),
            last_error: self.last_error.as_deref(),
            orders_remaining: self.parts.issuer.orders_remaining(self.resolver_name(self.fallback.next())),
            issued_by: self.current.as_ref().map(|_| self.resolver_name(self.fallback.issued_by())),
            fallback: self.fallback.why(),
        };
        self.parts.reporter.publish(&self.certificate, &view);
    }
}

/// How an order at one resolver ended, when it failed.
enum Moved {
    /// The fallback moved on: the next resolver is to be tried at once.
    On(OpError),
    /// Nothing more to try now.
    Not(OpError),
}

impl Moved {
    fn into_error(self) -> OpError {
        match self {
            Self::On(e) | Self::Not(e) => e,
        }
    }
}

#[path = "unsaved.rs"]
mod unsaved;

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
