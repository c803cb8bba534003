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

/// One check's result: passing, or failing with the reason `/readyz`
/// shows (a status for people, not an error to handle).
pub type Check = Result<(), String>;

/// The named checks behind `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<String, Check>>>,
}

impl Readiness {
    pub fn set(&self, check: impl Into<String>, result: Check) {
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
}
