//! The daemon's own readiness probes: the store and every resolver's CA
//! directory, set as `/readyz` checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Resolver;
use crate::schedule::Clock;
use crate::serve::health::{Check, Readiness};
use crate::store::Store;

/// A resolver whose CA is probed.
#[derive(Debug, Clone)]
pub(super) struct Probed {
    pub(super) resolver: Resolver,
    /// Every certificate using it may fall back to another resolver (issuer
    /// fallback): its CA being away is logged, never a readiness failure.
    pub(super) backed_up: bool,
}

/// How long a CA may go unanswered before the sidecar reports not ready.
pub(super) const CA_WINDOW: Duration = Duration::from_secs(3600);
/// How often the store and the CA directories are probed.
const PROBE_EVERY: Duration = Duration::from_secs(30);

/// Probes the store and every resolver's CA directory until dropped.
/// `store: None` leaves the `store` check to someone else (the shared
/// store's follower, which probes it more often).
/// When a CA answers again after orders failed for its outage (or after
/// the probe itself found it away), every certificate of that resolver
/// waiting in such a backoff is told, and retries within
/// `task::CA_BACK_SPREAD` instead of at its next backoff step (10 min,
/// 100 min, then daily).
pub(super) async fn probe(
    readiness: Readiness,
    store: Option<Arc<dyn Store>>,
    resolvers: tokio::sync::watch::Receiver<BTreeMap<String, Probed>>,
    clock: Arc<dyn Clock>,
    outages: Option<(Arc<super::accounts::Accounts>, super::bus::Bus)>,
) {
    let mut last_ok: BTreeMap<String, SystemTime> = BTreeMap::new();
    let mut away: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        if let Some(store) = &store {
            readiness.set("store", store.health().await.map_err(|e| e.to_string()));
        }
        // A reload may have added, changed or removed resolvers.
        let resolvers = resolvers.borrow().clone();
        for gone in last_ok.keys().chain(away.keys()).filter(|n| !resolvers.contains_key(*n)) {
            readiness.remove(&format!("ca:{gone}"));
        }
        last_ok.retain(|name, _| resolvers.contains_key(name));
        away.retain(|name, _| resolvers.contains_key(name));
        for (name, Probed { resolver, backed_up }) in &resolvers {
            let now = clock.now();
            let result = crate::acme::directory_reachable(resolver).await.map_err(|e| e.to_string());
            if result.is_ok() {
                last_ok.insert(name.clone(), now);
            }
            if let Some((accounts, bus)) = &outages {
                let was_away = away.insert(name.clone(), result.is_err()).unwrap_or(false);
                // Read (and forget) the orders' verdict in both cases: an
                // outage the probe saw itself counts, as does one only the
                // orders saw between two probes.
                let orders_saw_it = accounts.take_outage(name);
                if result.is_ok() && (was_away || orders_saw_it) {
                    let told = bus.ca_back(name);
                    tracing::info!(resolver = %name, certificates = told, "the CA answers again; certificates waiting for it retry now");
                }
            }
            let verdict = match ca_verdict(last_ok.get(name).copied(), result, now) {
                Err(why) if *backed_up => {
                    tracing::warn!(resolver = %name, error = %why, "ACME directory unreachable; its certificates fall back to their next resolver");
                    Ok(())
                }
                verdict => verdict,
            };
            readiness.set(format!("ca:{name}"), verdict);
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The CA check: answered now, or within [`CA_WINDOW`].
fn ca_verdict(last_ok: Option<SystemTime>, now_result: Check, now: SystemTime) -> Check {
    let Err(why) = now_result else { return Ok(()) };
    match last_ok {
        Some(t) if now.duration_since(t).unwrap_or_default() < CA_WINDOW => {
            tracing::warn!(error = %why, "ACME directory unreachable (still within the readiness window)");
            Ok(())
        }
        _ => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_may_be_away_for_less_than_the_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000);
        let down = || Err("connection refused".to_owned());
        assert_eq!(ca_verdict(None, Ok(()), now), Ok(()));
        assert_eq!(ca_verdict(None, down(), now), down());
        assert_eq!(ca_verdict(Some(now - Duration::from_secs(60)), down(), now), Ok(()));
        assert_eq!(ca_verdict(Some(now - CA_WINDOW), down(), now), down());
    }
}
