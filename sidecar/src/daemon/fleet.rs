//! The certificates being managed: the configured ones for the whole run,
//! and the discovered ones (`[discover]`) as they come and go. Each has a
//! task ([`CertTask`]); with `listener_directory`, the HTTPS listener file
//! is rewritten whenever the set changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::bus::Bus;
use super::inbox::inbox;
use super::task::CertTask;
use super::{Parts, RunError};
use crate::config::{Certificate, Resolver};
use crate::deploy::lds::ListenerFile;
use crate::discover::Request;
use crate::serve::health::Readiness;

/// Where a managed certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// `[[certificates]]`: for the whole run.
    Configured,
    /// `[discover]`: while the routes name it, then for the grace period.
    Discovered,
    /// `[on_demand]`: for the whole run.
    OnDemand,
}

/// Commands a certificate's task holds before senders wait (renew,
/// revoke and dry runs from the admin API, the replicas' stored
/// certificates, "the CA is back").
const INBOX: usize = 4;

/// Certificates read from the store in one go at start-up (one blocking
/// call for all of them), and such reads at once.
const START_CHUNK: usize = 32;
const START_CONCURRENCY: usize = 8;

struct Running {
    domains: Vec<String>,
    origin: Origin,
    handle: JoinHandle<()>,
    /// When discovery last stopped naming it.
    gone_since: Option<SystemTime>,
}

/// All certificate tasks.
pub(super) struct Fleet {
    parts: Arc<Parts>,
    bus: Bus,
    readiness: Readiness,
    /// Shared by every task on the resolver (not a copy per certificate).
    resolvers: BTreeMap<String, Arc<Resolver>>,
    running: BTreeMap<String, Running>,
    listener: Option<ListenerFile>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("certificates", &self.running.keys().collect::<Vec<_>>()).finish()
    }
}

impl Fleet {
    pub(super) fn new(
        parts: Arc<Parts>,
        bus: Bus,
        readiness: Readiness,
        resolvers: BTreeMap<String, Resolver>,
        listener: Option<ListenerFile>,
    ) -> Self {
        let resolvers = resolvers.into_iter().map(|(name, r)| (name, Arc::new(r))).collect();
        Self { parts, bus, readiness, resolvers, running: BTreeMap::new(), listener }
    }

    /// Starts a certificate's task: loads and deploys what is stored (or a
    /// placeholder) at once, orders if due.
    pub(super) async fn start(&mut self, certificate: Certificate, origin: Origin) -> Result<(), RunError> {
        let (tx, rx) = inbox(INBOX);
        let resolvers = self.resolvers_of(&certificate);
        let name = certificate.name.clone();
        let domains = certificate.domains.clone();
        let task = CertTask::start(Arc::clone(&self.parts), certificate, resolvers, rx).await?;
        self.bus.add(&name, tx);
        let handle = tokio::spawn(task.run());
        self.running.insert(name, Running { domains, origin, handle, gone_since: None });
        Ok(())
    }

    /// The settings of each of `certificate`'s resolvers (`None`: unknown).
    fn resolvers_of(&self, certificate: &Certificate) -> Vec<Option<Arc<Resolver>>> {
        certificate.resolvers.iter().map(|name| self.resolvers.get(name).cloned()).collect()
    }

    /// Starts many certificates' tasks, reading [`START_CHUNK`] from the
    /// store in one go and [`START_CONCURRENCY`] such chunks at a time (the
    /// reads are file I/O on the blocking pool; one hand-off per
    /// certificate cost about a quarter of a 10,000-certificate start), so
    /// thousands are served in seconds. The first error stops the start.
    pub(super) async fn start_all(&mut self, certificates: Vec<Certificate>, origin: Origin) -> Result<(), RunError> {
        let permits = Arc::new(tokio::sync::Semaphore::new(START_CONCURRENCY));
        let mut loading = Vec::with_capacity(certificates.len().div_ceil(START_CHUNK));
        let mut certificates = certificates.into_iter().peekable();
        while certificates.peek().is_some() {
            let mut batch = Vec::with_capacity(START_CHUNK);
            let mut senders = Vec::with_capacity(START_CHUNK);
            for certificate in certificates.by_ref().take(START_CHUNK) {
                let (tx, rx) = inbox(INBOX);
                senders.push((tx, certificate.domains.clone()));
                let resolvers = self.resolvers_of(&certificate);
                batch.push((certificate, resolvers, rx));
            }
            let (parts, permits) = (Arc::clone(&self.parts), Arc::clone(&permits));
            let handle = tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let names = batch.iter().map(|(certificate, _, _)| certificate.name.clone()).collect();
                let stored = parts.coordinator.stored_many(names).await;
                let mut tasks = Vec::with_capacity(batch.len());
                for ((certificate, resolvers, rx), stored) in batch.into_iter().zip(stored) {
                    tasks.push(CertTask::start_loaded(Arc::clone(&parts), certificate, resolvers, rx, stored).await);
                }
                tasks
            });
            loading.push((handle, senders));
        }
        for (handle, senders) in loading {
            let tasks = match handle.await {
                Ok(tasks) => tasks,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            for (task, (tx, domains)) in tasks.into_iter().zip(senders) {
                let task = task?;
                let name = task.name().to_owned();
                self.bus.add(&name, tx);
                let handle = tokio::spawn(task.run());
                self.running.insert(name, Running { domains, origin, handle, gone_since: None });
            }
        }
        Ok(())
    }

    /// A reload's resolvers: certificates started from now on see them, as
    /// do the next orders of running ones (accounts, solvers, DNS-01
    /// providers). Returns the resolvers added or changed.
    pub(super) fn apply_resolvers(
        &mut self,
        resolvers: &BTreeMap<String, Resolver>,
        solvers: super::issuer::ResolverSolvers,
        dns: BTreeMap<String, crate::dns::DnsSolver>,
    ) -> Vec<String> {
        self.parts.coordinator.set_dns(dns);
        self.resolvers = resolvers.iter().map(|(name, r)| (name.clone(), Arc::new(r.clone()))).collect();
        self.parts.issuer.apply(resolvers, solvers)
    }

    /// How many certificates are managed now.
    pub(super) fn count(&self) -> usize {
        self.running.len()
    }

    /// Stops a configured certificate (a reload removed or changed it).
    pub(super) fn stop_configured(&mut self, name: &str) {
        if self.running.get(name).is_some_and(|r| r.origin == Origin::Configured) {
            self.stop(name);
        }
    }

    fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            running.handle.abort();
        }
        self.bus.remove(name);
        self.readiness.remove(&format!("certificate:{name}"));
    }

    /// Brings the discovered certificates in line with `requests`: new ones
    /// start, changed ones restart with their new names, ones no longer
    /// named stop after `grace` (their files stay). Returns whether the set
    /// changed.
    pub(super) async fn reconcile(&mut self, requests: &[Request], resolver: &str, grace: Duration) -> bool {
        let now = self.parts.clock.now();
        let mut changed = false;
        for request in requests {
            let existing = self.running.get_mut(&request.name);
            if let Some(running) = existing {
                running.gone_since = None;
                if running.origin != Origin::Discovered || running.domains == request.domains {
                    continue;
                }
                tracing::info!(certificate = %request.name, domains = ?request.domains, "discovered names changed");
                self.stop(&request.name);
            } else if self.covered(&request.domains) {
                continue;
            } else {
                tracing::info!(certificate = %request.name, domains = ?request.domains, "discovered a new certificate");
            }
            let certificate = Certificate::new(request.name.clone(), request.domains.clone(), resolver.to_owned());
            match self.start(certificate, Origin::Discovered).await {
                Ok(()) => changed = true,
                Err(e) => {
                    tracing::error!(certificate = %request.name, error = %e, "cannot start discovered certificate")
                }
            }
        }
        let gone: Vec<String> = self
            .running
            .iter_mut()
            .filter(|(name, r)| r.origin == Origin::Discovered && !requests.iter().any(|q| &q.name == *name))
            .filter_map(|(name, r)| {
                let since = *r.gone_since.get_or_insert_with(|| {
                    tracing::info!(certificate = %name, grace_secs = grace.as_secs(), "no longer in the routes; renewed until the grace period ends");
                    now
                });
                (now.duration_since(since).unwrap_or_default() >= grace).then(|| name.clone())
            })
            .collect();
        for name in gone {
            tracing::info!(certificate = %name, "grace period over: no longer renewed (files kept)");
            self.stop(&name);
            changed = true;
        }
        changed
    }

    /// A configured certificate already covers every one of `domains`.
    fn covered(&self, domains: &[String]) -> bool {
        self.running.values().any(|r| r.origin == Origin::Configured && domains.iter().all(|d| r.domains.contains(d)))
    }

    /// A configured certificate names `host` itself (a wildcard included):
    /// a discovered name it covers needs nothing, whatever discovery thinks.
    pub(super) fn configured_names(&self, host: &str) -> bool {
        self.running.values().any(|r| r.origin == Origin::Configured && r.domains.iter().any(|d| d == host))
    }

    /// Some managed certificate names `host` (or a wildcard covering it).
    pub(super) fn manages(&self, host: &str) -> bool {
        let wildcard = host.split_once('.').map(|(_, base)| format!("*.{base}"));
        self.running.values().any(|r| r.domains.iter().any(|d| d == host || Some(d) == wildcard.as_ref()))
    }

    /// Rewrites the HTTPS listener file for the current set, if configured.
    /// At start: writes the listener file only if there is none yet (the
    /// proxy needs one to start). An existing file also holds the
    /// discovered certificates of the last run; rewriting it with the
    /// configured ones alone, then again after the first discovery round,
    /// made Envoy drain those filter chains on every restart.
    pub(super) async fn write_listener_at_start(&self) {
        let Some(listener) = &self.listener else { return };
        if listener.path().exists() {
            tracing::info!(file = %listener.path().display(), "listener file kept until the first discovery round");
            return;
        }
        self.write_listener().await;
    }

    pub(super) async fn write_listener(&self) {
        let Some(listener) = &self.listener else { return };
        let certificates: Vec<(String, Vec<String>)> =
            self.running.iter().map(|(name, r)| (name.clone(), r.domains.clone())).collect();
        match listener.write(&certificates).await {
            Ok(true) => {
                tracing::info!(file = %listener.path().display(), certificates = certificates.len(), "listener file written")
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot write the listener file"),
        }
    }

    /// Stops every task and waits until each has (so that DNS-01 cleanups
    /// of aborted orders are registered before the daemon waits for them).
    pub(super) async fn shutdown(&mut self) {
        for running in self.running.values() {
            running.handle.abort();
        }
        for (_, running) in std::mem::take(&mut self.running) {
            let _ = running.handle.await;
        }
    }
}
