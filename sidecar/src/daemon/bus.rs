//! The daemon's command bus: every certificate task has an inbox, the
//! account task has one, and the statuses they publish are kept here. The
//! admin API reaches the daemon only through [`Operations`], which the bus
//! implements; the replica watch sends stored certificates the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::inbox::Sender;

use crate::acme::AcmeError;
use crate::cert::Bundle;
use crate::serve::admin::{CertStatus, Operations, Outcome, Statuses};
use crate::store::StoreError;

/// The outcome a task reports for an operation: what was done, or why not.
pub(crate) type Reply = oneshot::Sender<Result<String, OpError>>;

/// Why a renewal or revocation asked of a certificate's task did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpError {
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error("{0} is ordering it")]
    Elsewhere(String),
    #[error("not ordering without the lock: {0}")]
    NoLock(StoreError),
    #[error("{0} has no certificate to revoke")]
    NothingToRevoke(String),
    #[error("not due ({0}); add --force to renew anyway")]
    NotDue(String),
    #[error("{name} renewed and stored (serial {serial}), but not served yet: {reason}")]
    NotServed { name: String, serial: String, reason: super::serving::NotServed },
    /// A dry run that did not get a certificate: its report.
    #[error(transparent)]
    DryRun(#[from] super::issuer::DryRunFailed),
    /// A configuration file the reload refused: why.
    #[error(transparent)]
    Reload(#[from] super::reload::ReloadError),
}

/// Operations on one certificate, sent to its task.
#[derive(Debug)]
pub(crate) enum CertCommand {
    Renew {
        force: bool,
        reply: Reply,
    },
    Revoke {
        reason: Option<u8>,
        reply: Reply,
    },
    /// `renew --dry-run`: an order at the staging directory, nothing kept.
    DryRun {
        reply: Reply,
    },
    /// A certificate written to the shared store (by any replica).
    Stored(Box<Bundle>),
    /// Resolver `0`'s CA answers again after an outage.
    CaBack(String),
}

/// An account key rollover, sent to the account task.
#[derive(Debug)]
pub(crate) struct Rollover {
    pub(crate) resolver: String,
    pub(crate) reply: oneshot::Sender<Result<String, AcmeError>>,
}

/// The inboxes and the statuses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bus {
    pub(crate) statuses: Statuses,
    /// Each certificate task's inbox; discovered certificates come and go.
    certificates: Arc<RwLock<BTreeMap<String, Sender<CertCommand>>>>,
    accounts: Option<mpsc::Sender<Rollover>>,
    /// The reloader's inbox, once it runs.
    reloads: Arc<RwLock<Option<mpsc::Sender<Reply>>>>,
}

impl Bus {
    pub(crate) fn new(accounts: Option<mpsc::Sender<Rollover>>) -> Self {
        Self { accounts, ..Self::default() }
    }

    /// Registers a certificate task's inbox.
    pub(crate) fn add(&self, name: &str, inbox: Sender<CertCommand>) {
        self.certificates.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), inbox);
    }

    /// Tells every certificate that resolver `resolver`'s CA answers again;
    /// a task too busy to take it now (its inbox full) is ordering anyway.
    pub(crate) fn ca_back(&self, resolver: &str) -> usize {
        let inboxes = self.certificates.read().unwrap_or_else(|e| e.into_inner());
        inboxes.values().filter(|inbox| inbox.try_send(CertCommand::CaBack(resolver.to_owned())).is_ok()).count()
    }

    /// Where `POST /v1/reload` goes.
    pub(crate) fn set_reloader(&self, inbox: mpsc::Sender<Reply>) {
        *self.reloads.write().unwrap_or_else(|e| e.into_inner()) = Some(inbox);
    }

    /// Forgets a certificate that is no longer managed.
    pub(crate) fn remove(&self, name: &str) {
        self.statuses.remove(name);
        self.certificates.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    /// The inbox of certificate `name`, if it is managed.
    pub(crate) fn inbox(&self, name: &str) -> Option<Sender<CertCommand>> {
        self.certificates.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    async fn ask(&self, name: &str, command: impl FnOnce(Reply) -> CertCommand) -> Outcome {
        let Some(inbox) = self.inbox(name) else { return Outcome::Unknown(format!("no certificate named {name}")) };
        let (reply, answer) = oneshot::channel();
        if inbox.send(command(reply)).await.is_err() {
            return Outcome::Unavailable("certificate task is gone".into());
        }
        outcome(answer.await)
    }
}

fn outcome<E: std::fmt::Display>(answer: Result<Result<String, E>, oneshot::error::RecvError>) -> Outcome {
    match answer {
        Ok(Ok(text)) => Outcome::Done(text),
        Ok(Err(error)) => Outcome::Failed(error.to_string()),
        Err(_) => Outcome::Unavailable("the operation was dropped".into()),
    }
}

#[async_trait]
impl Operations for Bus {
    fn statuses(&self) -> Vec<CertStatus> {
        self.statuses.all()
    }

    async fn renew(&self, name: &str, force: bool) -> Outcome {
        self.ask(name, |reply| CertCommand::Renew { force, reply }).await
    }

    async fn dry_run(&self, name: &str) -> Outcome {
        self.ask(name, |reply| CertCommand::DryRun { reply }).await
    }

    async fn reload(&self) -> Outcome {
        let inbox = self.reloads.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(inbox) = inbox else { return Outcome::Unavailable("the reloader is not running".into()) };
        let (reply, answer) = oneshot::channel();
        if inbox.send(reply).await.is_err() {
            return Outcome::Unavailable("the reloader is gone".into());
        }
        outcome(answer.await)
    }

    async fn revoke(&self, name: &str, reason: Option<u8>) -> Outcome {
        self.ask(name, |reply| CertCommand::Revoke { reason, reply }).await
    }

    async fn rollover(&self, resolver: &str) -> Outcome {
        let Some(inbox) = &self.accounts else { return Outcome::Unavailable("accounts are not managed here".into()) };
        let (reply, answer) = oneshot::channel();
        if inbox.send(Rollover { resolver: resolver.to_owned(), reply }).await.is_err() {
            return Outcome::Unavailable("account task is gone".into());
        }
        outcome(answer.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_reach_the_named_task_and_its_answer_comes_back() {
        let bus = Bus::new(None);
        let (tx, mut rx) = super::super::inbox::inbox(1);
        bus.add("web", tx);
        tokio::spawn(async move {
            while let Some(command) = rx.recv().await {
                if let CertCommand::Renew { force, reply } = command {
                    let _ =
                        reply.send(if force { Ok("serial 01".into()) } else { Err(OpError::NotDue("valid".into())) });
                }
            }
        });
        assert_eq!(bus.renew("web", true).await, Outcome::Done("serial 01".into()));
        assert_eq!(
            bus.renew("web", false).await,
            Outcome::Failed("not due (valid); add --force to renew anyway".into())
        );
        assert_eq!(bus.renew("nope", true).await, Outcome::Unknown("no certificate named nope".into()));
        assert!(matches!(bus.rollover("le").await, Outcome::Unavailable(_)));
        bus.statuses.set(CertStatus { name: "web".into(), ..CertStatus::default() });
        bus.remove("web");
        assert!(bus.statuses().is_empty());
        assert_eq!(bus.renew("web", true).await, Outcome::Unknown("no certificate named web".into()));
    }
}
