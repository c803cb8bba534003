//! The reporter: what a certificate's task shows the outside after every
//! step: its metrics, its `/readyz` check and its status for `certs`.

use std::time::SystemTime;

use super::bus::Bus;
use crate::cert::CertInfo;
use crate::config::Certificate;
use crate::serve::admin::CertStatus;
use crate::serve::health::Readiness;
use crate::serve::metrics::{metrics, CertificateState};

/// One certificate as of `now`, as the task sees it.
#[derive(Debug)]
pub(super) struct View<'a> {
    pub(super) now: SystemTime,
    pub(super) info: Option<&'a CertInfo>,
    /// The next order and why.
    pub(super) renew_at: Option<(SystemTime, &'static str)>,
    pub(super) failures: u32,
    pub(super) last_success: Option<SystemTime>,
    /// The schedule's own words.
    pub(super) state: String,
    pub(super) last_error: Option<&'a str>,
    pub(super) orders_remaining: Option<u32>,
    /// The resolver that issued the current certificate.
    pub(super) issued_by: Option<&'a str>,
    /// Why the last fallback to a later resolver happened.
    pub(super) fallback: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub(super) struct Reporter {
    bus: Bus,
    readiness: Readiness,
}

impl Reporter {
    pub(super) fn new(bus: Bus, readiness: Readiness) -> Self {
        Self { bus, readiness }
    }

    pub(super) fn publish(&self, certificate: &Certificate, view: &View<'_>) {
        let metrics = metrics();
        metrics.certificate(
            &certificate.name,
            &CertificateState {
                not_after: view.info.map(|i| i.not_after),
                renew_at: view.renew_at,
                failures: view.failures,
                last_success: view.last_success,
            },
        );
        if let Some(remaining) = view.orders_remaining {
            metrics.orders_remaining(&certificate.resolver, remaining);
        }
        if let Some(issued_by) = view.issued_by.filter(|_| certificate.resolvers.len() > 1) {
            metrics.issued_by(&certificate.name, issued_by);
        }
        let deployed = match view.info {
            Some(i) if i.not_after > view.now => Ok(()),
            Some(_) => Err("the deployed certificate has expired".to_owned()),
            None => Err(view.last_error.unwrap_or("no certificate issued yet").to_owned()),
        };
        self.readiness.set(format!("certificate:{}", certificate.name), deployed);
        self.bus.statuses.set(CertStatus {
            name: certificate.name.clone(),
            domains: certificate.domains.clone(),
            resolver: certificate.resolvers.join(", "),
            serial: view.info.map(|i| i.serial_hex.clone()),
            not_after: view.info.map(|i| crate::schedule::rfc3339(i.not_after)),
            state: view.state.clone(),
            last_error: view.last_error.map(str::to_owned),
            issued_by: view.issued_by.map(str::to_owned),
            fallback: view.fallback.map(str::to_owned),
        });
    }
}
