//! What a certificate's proxies are given: the deployment sinks (SDS, file
//! SDS, nginx), the fallbacks when there is no usable certificate (the
//! default certificate, a placeholder) and the post-deploy hook.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cert::{self, Bundle, CertInfo};
use crate::config::Certificate;
use crate::deploy::settings::PostDeploy;
use crate::deploy::Sink;
use crate::schedule::{choose_served, Served};

/// Longest `renew` waits for the proxies to load a new certificate (nginx:
/// the reload delay, the check, the reload and its new workers).
const SETTLE_BOUND: std::time::Duration = std::time::Duration::from_secs(90);

/// Why `renew` says a stored certificate is not served yet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotServed {
    /// The proxies are still loading it.
    #[error("the proxies have not loaded it after {secs} s")]
    Pending { secs: u64 },
    /// A proxy refused it (each target's reason).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<crate::deploy::DeployError>),
}

#[derive(Debug)]
pub(super) struct Serving {
    pub(super) sinks: Vec<Arc<dyn Sink>>,
    pub(super) default_certificate: Option<Arc<Bundle>>,
    /// Serve a self-signed placeholder until the first certificate.
    pub(super) placeholder: bool,
    /// The post-deploy hook and the directory whose `<name>/live` it is shown.
    pub(super) post_deploy: Option<(PostDeploy, PathBuf)>,
}

impl Serving {
    /// Gives `bundle` to every sink; a failing sink is logged, the others still get it.
    pub(super) async fn deploy(&self, name: &str, bundle: &Arc<Bundle>) {
        for sink in &self.sinks {
            if let Err(e) = sink.deploy(name, bundle).await {
                tracing::error!(certificate = name, sink = ?sink, error = %e, "deployment failed");
            }
        }
    }

    /// Waits (at most [`SETTLE_BOUND`]) until every proxy serves what was
    /// last deployed under `name`: the answer `renew` gives. Owned, so the
    /// task need not wait for it.
    pub(super) fn settled(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<(), NotServed>> + Send + 'static {
        let (sinks, name) = (self.sinks.clone(), name.to_owned());
        async move {
            let all = async {
                let mut refusals = Vec::new();
                for sink in &sinks {
                    if let Err(e) = sink.settled(&name).await {
                        refusals.push(e);
                    }
                }
                refusals
            };
            match tokio::time::timeout(SETTLE_BOUND, all).await {
                Err(_) => Err(NotServed::Pending { secs: SETTLE_BOUND.as_secs() }),
                Ok(refusals) if refusals.is_empty() => Ok(()),
                Ok(refusals) => Err(NotServed::Refused(refusals)),
            }
        }
    }

    /// Deploys what should be served now: the current certificate (valid
    /// or expired), else the default certificate, else a placeholder. After
    /// a revocation the placeholder is used even when disabled: SDS cannot
    /// take a secret away from Envoy, only replace it.
    pub(super) async fn fall_back(
        &self,
        certificate: &Certificate,
        current: Option<&(Arc<Bundle>, CertInfo)>,
        now: SystemTime,
        revoked: bool,
    ) -> Served {
        let validity = current.map(|(_, i)| (i.not_before, i.not_after));
        let has_default = self.default_certificate.is_some();
        let served = choose_served(validity, has_default, self.placeholder || revoked, now);
        let (name, current) = (&certificate.name, current.map(|(b, _)| b));
        let bundle = match served {
            Served::Current | Served::Expired => current.cloned(),
            Served::Default => self.default_certificate.clone(),
            Served::Placeholder => match cert::placeholder(&certificate.domains) {
                Ok(b) => Some(Arc::new(b)),
                Err(e) => {
                    tracing::warn!(certificate = %name, error = %e, "cannot build placeholder");
                    None
                }
            },
            Served::Nothing => None,
        };
        if let Some(bundle) = bundle {
            self.deploy(name, &bundle).await;
        }
        served
    }

    /// Runs the `[post_deploy]` hook for a newly issued certificate.
    pub(super) async fn post_deploy(&self, certificate: &Certificate, info: &CertInfo) {
        let Some((hook, root)) = &self.post_deploy else { return };
        let name = &certificate.name;
        let live = root.join(name).join("live");
        let env = crate::deploy::hook::environment(name, &certificate.domains, info, &live);
        match crate::deploy::hook::run(hook, &env).await {
            Ok(()) => tracing::info!(certificate = %name, "post_deploy hook succeeded"),
            Err(e) => tracing::error!(certificate = %name, error = %e, "post_deploy hook failed"),
        }
    }
}
