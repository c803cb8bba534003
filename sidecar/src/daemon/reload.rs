//! Reload without a restart: on SIGHUP or `POST /v1/reload`, the file is
//! read and validated again; a bad file is refused (logged, and the reason
//! returned) and the running configuration stays. A good one is applied:
//!
//! - resolvers: every resolver is made anew from the file (secrets read
//!   again, DNS-01 providers rebuilt); an added one is usable at once, a
//!   changed one (its CA, email, EAB, key type, challenges...) loads its
//!   account again as at a restart, and the certificates using it restart;
//! - certificates: new ones start (stored certificate or placeholder at
//!   once, an order if due), removed ones stop (what Envoy holds stays
//!   served until it stops asking; the files stay), changed ones (names or
//!   resolver) restart and order for their new names.
//!
//! Nothing already served is interrupted. What is wired at start (the
//! listeners, the store, the proxies' targets, discovery and on-demand and
//! the resolvers they use, a first TLS-ALPN-01 resolver) is not: a file
//! that changes it is refused as a whole, saying what needs a restart, so a
//! reload never applies half of what the operator wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, Mutex};

use super::bus::{OpError, Reply};
use super::fleet::{Fleet, Origin};
use crate::config::{Certificate, Config};
use crate::solvers::Solvers;

/// What a reload needs of the start-up wiring: the challenge answers the
/// listeners show (new solvers share them), the readiness probe's list of
/// resolvers, and whether the TLS-ALPN-01 listener runs.
pub(super) struct Wiring {
    pub(super) solvers: Solvers,
    pub(super) probed: tokio::sync::watch::Sender<BTreeMap<String, super::probe::Probed>>,
    pub(super) tls_alpn: bool,
}

/// Applies reloads until the daemon stops: SIGHUP, or a reply channel from
/// the admin API.
pub(super) async fn run(
    fleet: Arc<Mutex<Fleet>>,
    mut current: Config,
    mut requests: mpsc::Receiver<Reply>,
    mut hangups: Option<Signal>,
    wiring: Wiring,
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
        let result = reload(&fleet, &mut current, &path, &wiring).await;
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

/// Why a file was not applied. All are the operator's to fix (the file,
/// or a restart); retrying the same file gives the same answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The file does not pass `check`.
    #[error("{}", source.in_file(path))]
    Invalid { path: PathBuf, source: crate::config::ConfigError },
    /// It changes what is wired at start.
    #[error("{} changed, which needs a restart (`systemctl restart proxy-acme`); nothing was applied", sections.join(", "))]
    NeedsRestart { sections: Vec<String> },
    /// A resolver's DNS-01 provider cannot be made from it.
    #[error("resolvers.{resolver}.dns_challenge: {source}; nothing was applied")]
    Dns { resolver: String, source: crate::dns::DnsError },
}

/// Reads `path`, and applies it unless it changes what needs a restart.
async fn reload(
    fleet: &Mutex<Fleet>,
    current: &mut Config,
    path: &Path,
    wiring: &Wiring,
) -> Result<String, ReloadError> {
    let next = Config::load_valid(path).map_err(|source| ReloadError::Invalid { path: path.to_owned(), source })?;
    let sections = needs_restart(current, &next, wiring.tls_alpn);
    if !sections.is_empty() {
        return Err(ReloadError::NeedsRestart { sections });
    }
    let (solvers, dns) = super::wire_resolvers(&next.resolvers, &wiring.solvers)
        .map_err(|(resolver, source)| ReloadError::Dns { resolver, source })?;
    let mut fleet = fleet.lock().await;
    let changed: BTreeSet<String> = fleet.apply_resolvers(&next.resolvers, solvers, dns).into_iter().collect();
    wiring.probed.send_replace(super::used_resolvers(&next));
    let plan = Plan::between(&current.managed(), &next.managed(), &changed);
    let summary = plan.summary(&changed, current.resolvers.keys().filter(|n| !next.resolvers.contains_key(*n)));
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

/// What differs between `a` and `b` that a reload cannot change.
fn needs_restart(a: &Config, b: &Config, tls_alpn_listening: bool) -> Vec<String> {
    let same = |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| format!("{x:?}") == format!("{y:?}");
    let sections: [(&'static str, bool); 12] = [
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
    let mut out: Vec<String> =
        sections.into_iter().filter(|(_, same)| !same).map(|(name, _)| name.to_owned()).collect();
    // Discovery and on-demand keep the resolver they started with.
    let users = [
        ("[discover]", a.discover.as_ref().map(|d| &d.resolver)),
        ("[on_demand]", a.on_demand.as_ref().map(|d| &d.resolver)),
    ];
    for (section, resolver) in users {
        let Some(name) = resolver else { continue };
        if !same(&a.resolvers.get(name), &b.resolvers.get(name)) {
            out.push(format!("resolvers.{name} (used by {section})"));
        }
    }
    if !tls_alpn_listening {
        for (name, _) in b.resolvers.iter().filter(|(_, r)| r.tls_challenge.is_some()) {
            out.push(format!("resolvers.{name}.tls_challenge (the TLS-ALPN-01 listener starts with the daemon)"));
        }
    }
    out
}

/// What a reload does to the configured certificates.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    start: Vec<Certificate>,
    stop: Vec<String>,
    restart: Vec<Certificate>,
}

impl Plan {
    /// `changed`: resolvers whose settings changed; their certificates
    /// restart (a changed key type then orders a new certificate).
    fn between(old: &[Certificate], new: &[Certificate], changed: &BTreeSet<String>) -> Self {
        let old: BTreeMap<&str, &Certificate> = old.iter().map(|c| (c.name.as_str(), c)).collect();
        let new_names: BTreeMap<&str, &Certificate> = new.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut plan = Self::default();
        for (name, certificate) in &new_names {
            match old.get(name) {
                None => plan.start.push((*certificate).clone()),
                Some(was)
                    if was.domains != certificate.domains
                        || was.resolvers != certificate.resolvers
                        || was.fallback != certificate.fallback
                        || was.key_types != certificate.key_types
                        || certificate.resolvers.iter().any(|r| changed.contains(r)) =>
                {
                    plan.restart.push((*certificate).clone());
                }
                Some(_) => {}
            }
        }
        plan.stop = old.keys().filter(|name| !new_names.contains_key(*name)).map(|n| (*n).to_owned()).collect();
        plan
    }

    fn summary<'a>(&self, resolvers: &BTreeSet<String>, removed: impl Iterator<Item = &'a String>) -> String {
        let names = |list: Vec<&str>| if list.is_empty() { "none".to_owned() } else { list.join(", ") };
        let removed: Vec<&str> = removed.map(String::as_str).collect();
        format!(
            "certificates added: {}; removed: {}; changed: {}; resolvers added or changed: {}; removed: {}",
            names(self.start.iter().map(|c| c.name.as_str()).collect()),
            names(self.stop.iter().map(String::as_str).collect()),
            names(self.restart.iter().map(|c| c.name.as_str()).collect()),
            names(resolvers.iter().map(String::as_str).collect()),
            names(removed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, domains: &[&str], resolver: &str) -> Certificate {
        Certificate::new(name.into(), domains.iter().map(|d| (*d).to_owned()).collect(), resolver.into())
    }

    #[test]
    fn a_reload_starts_new_stops_removed_and_restarts_changed_certificates_only() {
        let old = [cert("a", &["a.test"], "le"), cert("b", &["b.test"], "le"), cert("c", &["c.test"], "le")];
        let new =
            [cert("a", &["a.test"], "le"), cert("c", &["c.test", "www.c.test"], "le"), cert("d", &["d.test"], "le")];
        let plan = Plan::between(&old, &new, &BTreeSet::new());
        assert_eq!(plan.start, [cert("d", &["d.test"], "le")]);
        assert_eq!(plan.stop, ["b"]);
        assert_eq!(plan.restart, [cert("c", &["c.test", "www.c.test"], "le")]);
        let gone = ["old".to_owned()];
        assert_eq!(
            plan.summary(&BTreeSet::from(["zerossl".to_owned()]), gone.iter()),
            "certificates added: d; removed: b; changed: c; resolvers added or changed: zerossl; removed: old"
        );
    }

    #[test]
    fn the_certificates_of_a_changed_resolver_restart() {
        let old = [cert("a", &["a.test"], "le"), cert("b", &["b.test"], "zerossl")];
        let plan = Plan::between(&old, &old, &BTreeSet::from(["zerossl".to_owned()]));
        assert_eq!((plan.start, plan.stop, plan.restart), (vec![], vec![], vec![cert("b", &["b.test"], "zerossl")]));
    }

    #[test]
    fn what_a_reload_cannot_change_is_named() {
        let a: Config = "[resolvers.le]\nhttp_challenge = {}\n".parse().unwrap();
        let b: Config =
            "[resolvers.le]\nhttp_challenge = {}\nemail = \"ops@example.com\"\n[listen]\nhttp = \"127.0.0.1:9999\"\n"
                .parse()
                .unwrap();
        // Resolvers may change; listeners may not.
        assert_eq!(needs_restart(&a, &b, false), ["[listen]"]);
        assert!(needs_restart(&a, &a.clone(), false).is_empty());
        // A first TLS-ALPN-01 resolver needs its listener.
        let alpn: Config = "[resolvers.le]\ntls_challenge = {}\n".parse().unwrap();
        assert_eq!(
            needs_restart(&a, &alpn, false),
            ["resolvers.le.tls_challenge (the TLS-ALPN-01 listener starts with the daemon)"]
        );
        assert!(needs_restart(&a, &alpn, true).is_empty());
    }

    #[test]
    fn the_resolver_discovery_uses_needs_a_restart_to_change() {
        let a: Config =
            "[resolvers.le]\nhttp_challenge = {}\n[discover]\nresolver = \"le\"\nnginx_command = [\"nginx\", \"-T\"]\n"
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
        let mut b = a.clone();
        if let Some(r) = b.resolvers.get_mut("le") {
            r.email = Some("ops@example.com".into());
        }
        assert_eq!(needs_restart(&a, &b, false), ["resolvers.le (used by [discover])"]);
    }
}
