//! Where a certificate's task starts after a (re)start: the stored
//! certificate, whether it still matches the configuration, the operator's
//! revocation, an order interrupted before its certificate was stored
//! (downloaded at once) and the backoff recorded by an earlier run or
//! another replica.

use std::sync::Arc;

use super::coordinator::next_attempt;
use super::{Parts, RunError};
use crate::cert::{Bundle, CertInfo};
use crate::config::{Certificate, Resolver};
use crate::schedule::{Machine, Policy};
use crate::store::Stored;

#[derive(Debug)]
pub(super) struct Resumed {
    pub(super) machine: Machine,
    /// The last good certificate, unless the operator revoked it.
    pub(super) current: Option<(Arc<Bundle>, CertInfo)>,
    pub(super) revoked: bool,
    /// Which of the certificate's resolvers issued the stored certificate,
    /// when recorded (or when it has one).
    pub(super) issued_by: Option<usize>,
}

/// `resolvers`: the certificate's, in order (at least one); `stored`:
/// what the store holds for it.
pub(super) async fn resume(
    parts: &Parts,
    certificate: &Certificate,
    resolvers: &[Arc<Resolver>],
    stored: Stored,
) -> Result<Resumed, RunError> {
    let (name, now) = (&certificate.name, parts.clock.now());
    let issued_by = match resolvers.len() {
        1 => Some(0),
        _ => stored.issuer.as_deref().and_then(|r| certificate.resolvers.iter().position(|n| n == r)),
    };
    // The issuing resolver's settings judge the stored certificate.
    let at = issued_by.unwrap_or(0);
    let (resolver, resolver_name) = (&resolvers[at], &certificate.resolvers[at]);
    let policy = Policy { renew_before: resolver.renew_before, ari: parts.issuer.ari(resolver_name) != Some(false) };
    let (revoked, renewal) = (stored.revoked, stored.renewal);
    let current = stored.bundle.map(|(b, info)| (Arc::new(b), info));
    let mut machine = match &current {
        Some((_, info)) => Machine::with_certificate(policy, info.not_before, info.not_after, now, parts.spread(info)),
        None => Machine::new(policy),
    };
    if let Some((_, info)) = &current {
        if let Err(e) = info.covers(&certificate.domains) {
            tracing::warn!(certificate = %name, error = %e, "stored certificate no longer matches the configuration");
            machine.config_changed();
        } else if info.key_type != Some(certificate.key_type(resolver)) {
            tracing::warn!(certificate = %name, stored = ?info.key_type, configured = ?certificate.key_type(resolver), "key type changed: ordering a new certificate");
            machine.config_changed();
        }
    }
    if stored.pending {
        tracing::info!(certificate = %name, "an order was interrupted before its certificate was stored: resuming it");
        machine.interrupted();
    }
    if let Some(state) = renewal {
        machine.restore_backoff(state.failures, next_attempt(&state), &state.last_error, now);
    }
    if let Some(serial) = &revoked {
        machine.failed(&super::issuer::revoked(name, serial), now, 0.0);
        return Ok(Resumed { machine, current: None, revoked: true, issued_by });
    }
    Ok(Resumed { machine, current, revoked: false, issued_by })
}
