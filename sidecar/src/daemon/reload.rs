//! Reload without a restart: on SIGHUP or `POST /v1/reload`, the file is
//! read and validated again; a bad file is refused (logged, and the reason
//! returned) and the running configuration stays. A good one is applied to
//! the configured certificates: new ones start (stored certificate or
//! placeholder at once, an order if due), removed ones stop (what Envoy
//! holds stays served until it stops asking; the files stay), changed ones
//! (names or resolver) restart and order for their new names. Nothing
//! already served is interrupted.
//!
//! Everything else (resolvers, listeners, the store, the proxies' targets,
//! discovery) is wired at start: a file that changes it is refused as a
//! whole, saying which sections need a restart, so a reload never applies
//! half of what the operator wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, Mutex};

use super::bus::{OpError, Reply};
use super::fleet::{Fleet, Origin};
use crate::config::{Certificate, Config};

/// Applies reloads until the daemon stops: SIGHUP, or a reply channel from
/// the admin API.
pub(super) async fn run(
    fleet: Arc<Mutex<Fleet>>,
    mut current: Config,
    mut requests: mpsc::Receiver<Reply>,
    mut hangups: Option<Signal>,
) {
    let Some(path) = current.source.clone() else { return };
    loop {
        let reply = tokio::select! {
            Some(()) = async { hangups.as_mut()?.recv().await } => None,
            request = requests.recv() => match request {
                Some(reply) => Some(reply),
                None => return,
            },
        };
        crate::notify::notify("RELOADING=1");
        let result = reload(&fleet, &mut current, &path).await;
        crate::notify::notify("READY=1");
        match &result {
            Ok(done) => tracing::info!(file = %path.display(), changes = %done, "configuration reloaded"),
            Err(why) => {
                tracing::error!(file = %path.display(), error = %why, "configuration not reloaded; the running one stays")
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map_err(OpError::Reload));
        }
    }
}

/// SIGHUP, caught from the start of `run` (a SIGHUP during start-up is
/// applied once the certificates are up, instead of ending the process).
pub(super) fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: reload with `proxy-acme reload` only");
            None
        }
    }
}

/// Why a file was not applied. Both are the operator's to fix (the file,
/// or a restart); retrying the same file gives the same answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The file does not pass `check`.
    #[error("{}", source.in_file(path))]
    Invalid { path: PathBuf, source: crate::config::ConfigError },
    /// It changes sections that are wired at start.
    #[error("{} changed, which needs a restart (`systemctl restart proxy-acme`); nothing was applied", sections.join(", "))]
    NeedsRestart { sections: Vec<&'static str> },
}

/// Reads `path`, and applies it when only certificates changed.
async fn reload(fleet: &Mutex<Fleet>, current: &mut Config, path: &Path) -> Result<String, ReloadError> {
    let next = Config::load_valid(path).map_err(|source| ReloadError::Invalid { path: path.to_owned(), source })?;
    let sections = needs_restart(current, &next);
    if !sections.is_empty() {
        return Err(ReloadError::NeedsRestart { sections });
    }
    let plan = Plan::between(&current.certificates, &next.certificates);
    let summary = plan.summary();
    let mut fleet = fleet.lock().await;
    for name in plan.stop.iter().chain(plan.restart.iter().map(|c| &c.name)) {
        fleet.stop_configured(name);
    }
    for certificate in plan.start.into_iter().chain(plan.restart) {
        let name = certificate.name.clone();
        if let Err(e) = fleet.start(certificate, Origin::Configured).await {
            tracing::error!(certificate = %name, error = %e, "cannot start the certificate");
        }
    }
    fleet.write_listener().await;
    *current = next;
    Ok(summary)
}

/// The sections a reload cannot change, that differ between `a` and `b`.
fn needs_restart(a: &Config, b: &Config) -> Vec<&'static str> {
    let same = |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| format!("{x:?}") == format!("{y:?}");
    let sections: [(&'static str, bool); 13] = [
        ("[resolvers]", same(&a.resolvers, &b.resolvers)),
        ("[storage]", same(&a.storage, &b.storage)),
        ("[listen]", same(&a.listen, &b.listen)),
        ("[envoy]", same(&a.envoy, &b.envoy)),
        ("[admin]", same(&a.admin, &b.admin)),
        ("[nginx]", same(&a.nginx, &b.nginx)),
        ("[post_deploy]", same(&a.post_deploy, &b.post_deploy)),
        ("[served_check]", same(&a.served_check, &b.served_check)),
        ("[discover]", same(&a.discover, &b.discover)),
        ("[on_demand]", same(&a.on_demand, &b.on_demand)),
        ("[default_certificate]", same(&a.default_certificate, &b.default_certificate)),
        ("[network]", same(&a.network, &b.network)),
        ("allow_shared_domains", a.allow_shared_domains == b.allow_shared_domains),
    ];
    sections.into_iter().filter(|(_, same)| !same).map(|(name, _)| name).collect()
}

/// What a reload does to the configured certificates.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    start: Vec<Certificate>,
    stop: Vec<String>,
    restart: Vec<Certificate>,
}

impl Plan {
    fn between(old: &[Certificate], new: &[Certificate]) -> Self {
        let old: BTreeMap<&str, &Certificate> = old.iter().map(|c| (c.name.as_str(), c)).collect();
        let new_names: BTreeMap<&str, &Certificate> = new.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut plan = Self::default();
        for (name, certificate) in &new_names {
            match old.get(name) {
                None => plan.start.push((*certificate).clone()),
                Some(was) if was.domains != certificate.domains || was.resolver != certificate.resolver => {
                    plan.restart.push((*certificate).clone());
                }
                Some(_) => {}
            }
        }
        plan.stop = old.keys().filter(|name| !new_names.contains_key(*name)).map(|n| (*n).to_owned()).collect();
        plan
    }

    fn summary(&self) -> String {
        let names = |list: Vec<&str>| if list.is_empty() { "none".to_owned() } else { list.join(", ") };
        format!(
            "added: {}; removed: {}; changed: {}",
            names(self.start.iter().map(|c| c.name.as_str()).collect()),
            names(self.stop.iter().map(String::as_str).collect()),
            names(self.restart.iter().map(|c| c.name.as_str()).collect()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, domains: &[&str], resolver: &str) -> Certificate {
        Certificate {
            name: name.into(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            resolver: resolver.into(),
        }
    }

    #[test]
    fn a_reload_starts_new_stops_removed_and_restarts_changed_certificates_only() {
        let old = [cert("a", &["a.test"], "le"), cert("b", &["b.test"], "le"), cert("c", &["c.test"], "le")];
        let new =
            [cert("a", &["a.test"], "le"), cert("c", &["c.test", "www.c.test"], "le"), cert("d", &["d.test"], "le")];
        let plan = Plan::between(&old, &new);
        assert_eq!(plan.start, [cert("d", &["d.test"], "le")]);
        assert_eq!(plan.stop, ["b"]);
        assert_eq!(plan.restart, [cert("c", &["c.test", "www.c.test"], "le")]);
        assert_eq!(plan.summary(), "added: d; removed: b; changed: c");
    }

    #[test]
    fn sections_a_reload_cannot_change_are_named() {
        let a: Config = "[resolvers.le]\nhttp_challenge = {}\n".parse().unwrap();
        let b: Config =
            "[resolvers.le]\nhttp_challenge = {}\nemail = \"ops@example.com\"\n[listen]\nhttp = \"127.0.0.1:9999\"\n"
                .parse()
                .unwrap();
        assert_eq!(needs_restart(&a, &b), ["[resolvers]", "[listen]"]);
        assert!(needs_restart(&a, &a.clone()).is_empty());
    }
}
