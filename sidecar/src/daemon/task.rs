//! One certificate's task: a small driver over its [`Machine`]. It asks the
//! machine what to do, has the [`Issuer`] order, the [`Coordinator`] take
//! the replicas' lock, [`Serving`] deploy and the [`Reporter`] show the
//! result, answers the admin API's renew and revoke, and keeps the last
//! good certificate deployed through failures.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, Semaphore};

use super::bus::CertCommand;
use super::coordinator::{next_attempt, Coordinator, Turn};
use super::issuer::{AriPoll, Issuer};
use super::reporter::{Reporter, View};
use super::serving::Serving;
use super::RunError;
use crate::acme::AcmeError;
use crate::cert::{self, Bundle, CertInfo};
use crate::config::{Certificate, Resolver};
use crate::schedule::{self, Action, Clock, Failure, Machine, Policy, Served};

/// Longest sleep between two looks, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// What every certificate's task works through.
#[derive(Debug)]
pub(super) struct Parts {
    pub(super) issuer: Issuer,
    pub(super) coordinator: Coordinator,
    pub(super) serving: Serving,
    pub(super) reporter: Reporter,
    pub(super) clock: Arc<dyn Clock>,
    /// Admits first actions at start-up, a few at a time (FIFO).
    pub(super) first_actions: Semaphore,
}

pub(super) struct CertTask {
    parts: Arc<Parts>,
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
        parts: Arc<Parts>,
        certificate: Certificate,
        resolver: Option<Arc<Resolver>>,
        inbox: mpsc::Receiver<CertCommand>,
    ) -> Result<Self, RunError> {
        let resolver = resolver.ok_or_else(|| RunError::UnknownResolver(certificate.resolver.clone()))?;
        let (name, now) = (certificate.name.clone(), parts.clock.now());
        let policy =
            Policy { renew_before: resolver.renew_before, ari: parts.issuer.ari(&certificate.resolver) != Some(false) };
        let (stored, revoked) = parts.coordinator.stored(&name).await?;
        let current = stored.and_then(|b| cert::inspect(&b, None).ok().map(|info| (Arc::new(b), info)));
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
        if let Some(state) = parts.coordinator.renewal(&name).await {
            machine.restore_backoff(state.failures, next_attempt(&state), &state.last_error, now);
        }
        let last_success = current.as_ref().map(|(_, info)| info.not_before);
        let mut task = Self { parts, certificate, resolver, machine, current, last_error: None, last_success, inbox };
        if let Some(serial) = &revoked {
            task.machine.failed(&revoked_failure(&name, serial), now, 0.0);
            task.current = None;
        }
        task.deploy_served(now, revoked.is_some()).await;
        task.publish();
        Ok(task)
    }

    pub(super) fn name(&self) -> &str {
        &self.certificate.name
    }

    /// Runs forever. A first action due at start-up (an order, or an ARI
    /// poll) waits for its turn among the first actions in flight, so
    /// thousands of certificates do not all ask the CA in the same second
    /// after a restart, yet a start goes as fast as the CA answers.
    pub(super) async fn run(mut self) {
        let first = self.machine.next_action(self.parts.clock.now());
        if matches!(first, Action::Order | Action::PollAri) {
            let parts = Arc::clone(&self.parts);
            // The semaphore is never closed; without a permit, go anyway.
            let _permit = parts.first_actions.acquire().await.ok();
            self.act(first).await;
        }
        loop {
            let now = self.parts.clock.now();
            match self.machine.next_action(now) {
                Action::WaitUntil(at) => self.wait(at.duration_since(now).unwrap_or_default()).await,
                Action::Idle => self.wait(MAX_SLEEP).await,
                action => self.act(action).await,
            }
        }
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
                let now = self.parts.clock.now();
                if force {
                    // The revocation mark stays until a new certificate is
                    // stored, so a revoked one is never adopted back.
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

    /// One order within the limits and under the lock; success deploys everywhere.
    async fn order(&mut self) -> Result<String, String> {
        let now = self.parts.clock.now();
        if let Err(e) = self.parts.issuer.admit(&self.certificate) {
            return Err(self.failed(&e, now));
        }
        let lock = match self.parts.coordinator.take_turn(&self.certificate).await {
            Turn::Ours { lock, stored } => {
                if let Some(stored) = stored {
                    if self.adopt(stored).await {
                        return self.current_serial();
                    }
                }
                lock
            }
            Turn::Held(holder) => {
                let retry = now + Duration::from_millis(1000 + (jitter() * 1000.0) as u64);
                self.machine.deferred(retry, &format!("{holder} is ordering it"));
                return self.current_serial();
            }
            Turn::Unreachable(e) => {
                let why = format!("not ordering without the lock: {e}");
                self.machine.deferred(now + Duration::from_secs(5), &why);
                self.last_error = Some(why.clone());
                return Err(why);
            }
        };
        self.machine.order_started(now);
        let started = std::time::Instant::now();
        let current = self.current.as_ref().map(|(b, _)| &**b);
        let result = self.parts.issuer.issue(&self.certificate, &self.resolver, current, &lock).await;
        let now = self.parts.clock.now();
        crate::metrics::metrics().order(&self.certificate.resolver, result.is_ok(), started.elapsed());
        match result {
            Ok((bundle, info)) => {
                let bundle = Arc::new(bundle);
                self.last_success = Some(now);
                self.parts.serving.deploy(&self.certificate.name, &bundle).await;
                self.parts.serving.post_deploy(&self.certificate, &info).await;
                self.machine.issued(info.not_before, info.not_after, now, jitter());
                let serial = info.serial_hex.clone();
                self.current = Some((bundle, info));
                self.last_error = None;
                self.parts.coordinator.share(&self.certificate.name, None).await;
                Ok(serial)
            }
            Err(e) => {
                let message = self.failed(&e, now);
                if let schedule::State::Backoff { attempt, next, error } = self.machine.state() {
                    let backoff = Some((*attempt, *next, error.as_str()));
                    self.parts.coordinator.share(&self.certificate.name, backoff).await;
                }
                Err(message)
            }
        }
    }

    /// The serial served now: what an order that was not needed answers.
    fn current_serial(&self) -> Result<String, String> {
        match &self.current {
            Some((_, info)) => Ok(info.serial_hex.clone()),
            None => Err("another replica is ordering this certificate".to_owned()),
        }
    }

    /// A certificate read from the shared store: served and scheduled when
    /// the coordinator finds it newer. Returns whether it was adopted.
    async fn adopt(&mut self, bundle: Bundle) -> bool {
        let current = self.current.as_ref().map(|(_, i)| i);
        let key_type = self.resolver.key_type;
        let Some(info) = self.parts.coordinator.adoptable(&self.certificate, key_type, current, &bundle).await else {
            return false;
        };
        tracing::info!(certificate = %self.certificate.name, serial = %info.serial_hex, "new certificate from the shared store");
        let bundle = Arc::new(bundle);
        self.parts.serving.deploy(&self.certificate.name, &bundle).await;
        self.machine.issued(info.not_before, info.not_after, self.parts.clock.now(), jitter());
        self.last_success = Some(info.not_before);
        self.current = Some((bundle, info));
        self.last_error = None;
        self.publish();
        true
    }

    /// Records a failed order in the machine and the logs; returns the message.
    fn failed(&mut self, error: &AcmeError, now: SystemTime) -> String {
        self.parts.issuer.record_failure(&self.certificate, error);
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
        let now = self.parts.clock.now();
        let answer = match &self.current {
            None => None,
            Some((bundle, _)) => match self.parts.issuer.poll_ari(&self.certificate, bundle).await {
                AriPoll::Unsupported => None,
                AriPoll::Answer(answer) => Some(answer),
            },
        };
        let Some(answer) = answer else { return self.machine.set_ari(false, now, jitter()) };
        if let Some(warning) = self.machine.ari_answer(&answer, now, jitter()) {
            tracing::warn!(certificate = %self.certificate.name, "{warning}");
        }
    }

    /// Revokes the current certificate at the CA and stops serving it.
    async fn revoke(&mut self, reason: Option<u8>) -> Result<String, String> {
        let Some((bundle, info)) = self.current.clone() else {
            return Err(format!("{} has no certificate to revoke", self.certificate.name));
        };
        let revoked = self.parts.issuer.revoke(&self.certificate, &bundle, &info.serial_hex, reason).await;
        revoked.map_err(|e| e.to_string())?;
        let now = self.parts.clock.now();
        self.current = None;
        self.machine.failed(&revoked_failure(&self.certificate.name, &info.serial_hex), now, 0.0);
        let served = self.deploy_served(now, true).await;
        tracing::info!(certificate = %self.certificate.name, serial = %info.serial_hex, ?served, "certificate revoked");
        Ok(format!("revoked {} (serial {}); now serving: {served:?}", self.certificate.name, info.serial_hex))
    }

    /// Deploys what should be served now. After a revocation the placeholder
    /// is used even when disabled: SDS cannot take a secret away from Envoy,
    /// only replace it.
    async fn deploy_served(&self, now: SystemTime, revoked: bool) -> Served {
        let validity = self.current.as_ref().map(|(_, i)| (i.not_before, i.not_after));
        let serving = &self.parts.serving;
        let has_default = serving.default_certificate.is_some();
        let served = schedule::choose_served(validity, has_default, serving.placeholder || revoked, now);
        serving.deploy_served(&self.certificate, served, self.current.as_ref().map(|(b, _)| b)).await;
        served
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
            orders_remaining: self.parts.issuer.orders_remaining(&self.certificate.resolver),
        };
        self.parts.reporter.publish(&self.certificate, &view);
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
