//! `/readyz`: named checks, each passing or failing with a reason, set by
//! whoever knows (the store and CA probes, the certificate tasks, the
//! served-certificate check). Ready means every check passes.
//!
//! | check | passes when |
//! | --- | --- |
//! | `store` | the store answered its last probe |
//! | `ca:<resolver>` | the resolver's ACME directory answered within the last hour |
//! | `certificate:<name>` | a valid issued certificate is deployed (not a placeholder) |
//! | `served:<name>@<endpoint>` | the endpoint serves it for every name (`[served_check]`) |

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::Resolver;
use crate::schedule::Clock;
use crate::store::Store;

/// How long a CA may go unanswered before the sidecar reports not ready.
pub const CA_WINDOW: Duration = Duration::from_secs(3600);
/// How often the store and the CA directories are probed.
const PROBE_EVERY: Duration = Duration::from_secs(30);

/// The named checks behind `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<String, Result<(), String>>>>,
}

impl Readiness {
    pub fn set(&self, check: impl Into<String>, result: Result<(), String>) {
        self.checks.write().unwrap_or_else(|e| e.into_inner()).insert(check.into(), result);
    }

    pub fn remove(&self, check: &str) {
        self.checks.write().unwrap_or_else(|e| e.into_inner()).remove(check);
    }

    /// Ready or not, and one line per check (`ok NAME` / `fail NAME: why`).
    pub fn report(&self) -> (bool, String) {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner());
        let mut ready = true;
        let mut text = String::new();
        for (name, result) in checks.iter() {
            match result {
                Ok(()) => text.push_str(&format!("ok {name}\n")),
                Err(why) => {
                    ready = false;
                    text.push_str(&format!("fail {name}: {why}\n"));
                }
            }
        }
        (ready, text)
    }
}

/// Probes the store and every resolver's CA directory until dropped.
/// `store: None` leaves the `store` check to someone else (the shared
/// store's follower, which probes it more often).
pub async fn probe(
    readiness: Readiness,
    store: Option<Arc<dyn Store>>,
    resolvers: BTreeMap<String, Resolver>,
    clock: Arc<dyn Clock>,
) {
    let mut last_ok: BTreeMap<String, SystemTime> = BTreeMap::new();
    loop {
        if let Some(store) = &store {
            readiness.set("store", store.health().await.map_err(|e| e.to_string()));
        }
        for (name, resolver) in &resolvers {
            let now = clock.now();
            let result = crate::acme::directory_reachable(resolver).await;
            if result.is_ok() {
                last_ok.insert(name.clone(), now);
            }
            readiness.set(format!("ca:{name}"), ca_verdict(last_ok.get(name).copied(), result, now));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The CA check: answered now, or within [`CA_WINDOW`].
fn ca_verdict(last_ok: Option<SystemTime>, now_result: Result<(), String>, now: SystemTime) -> Result<(), String> {
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
    fn one_failing_check_makes_it_not_ready_and_says_why() {
        let r = Readiness::default();
        r.set("store", Ok(()));
        assert_eq!(r.report(), (true, "ok store\n".to_owned()));
        r.set("certificate:web", Err("serving a placeholder".into()));
        let (ready, text) = r.report();
        assert!(!ready);
        assert_eq!(text, "fail certificate:web: serving a placeholder\nok store\n");
    }

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
