//! `proxy-acme run`: wires config, store, solvers, ACME and sinks together.
//! Data flows one way: certificate request -> order -> store -> deploy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::Account;
use tokio::sync::{watch, OnceCell};

use crate::acme::{self, AcmeError};
use crate::api;
use crate::cert::{self, Bundle};
use crate::config::{Certificate, Config, Resolver};
use crate::deploy::sds::{self, SdsSink};
use crate::deploy::{DeployError, Sink};
use crate::schedule::{self, Clock, Next};
use crate::solvers::http01::Http01Tokens;
use crate::store::{FileStore, Store, StoreError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// Longest sleep between two looks at a valid certificate, so a changed
/// clock or a revoked certificate is noticed within the hour.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Everything a certificate's task needs, shared.
struct Shared {
    store: Arc<dyn Store>,
    sinks: Vec<Arc<dyn Sink>>,
    tokens: Http01Tokens,
    clock: Arc<dyn Clock>,
    accounts: HashMap<String, (Resolver, OnceCell<Account>)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("resolvers", &self.accounts.keys())
            .finish_non_exhaustive()
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config, clock: Arc<dyn Clock>) -> Result<(), RunError> {
    let store: Arc<dyn Store> = Arc::new(FileStore::open(&config.storage.directory)?);
    let tokens = Http01Tokens::new();
    let sds = SdsSink::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let address = config.listen.http;
    let _api = api::serve(address, tokens.clone())
        .await
        .map_err(|source| RunError::Listen { address: address.to_string(), source })?;
    if let Some(path) = config.envoy.socket() {
        sds::serve_unix(&sds, path, stopped()).await?;
    }
    if let Some(address) = config.envoy.sds_address {
        sds::serve_tcp(&sds, address, stopped()).await?;
    }

    let accounts = config.resolvers.iter().map(|(name, r)| (name.clone(), (r.clone(), OnceCell::new()))).collect();
    let shared = Arc::new(Shared { store, sinks: vec![Arc::new(sds)], tokens, clock, accounts });
    let mut tasks = Vec::new();
    for certificate in config.certificates {
        let current = initial(&shared, &certificate, config.envoy.placeholder).await?;
        tasks.push(tokio::spawn(manage(Arc::clone(&shared), certificate, current)));
    }

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Deploys what is stored for `certificate` (or a placeholder) and returns
/// the stored bundle when it still covers the configured names.
async fn initial(shared: &Shared, certificate: &Certificate, placeholder: bool) -> Result<Option<Bundle>, RunError> {
    let name = &certificate.name;
    let stored = shared.store.load_certificate(name).await?;
    let usable = stored.filter(|b| match cert::inspect(b, Some(&certificate.domains)) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(certificate = %name, error = %e, "stored certificate no longer matches the configuration");
            false
        }
    });
    let to_deploy = match &usable {
        Some(bundle) => Some(bundle.clone()),
        None if placeholder => match cert::placeholder(&certificate.domains) {
            Ok(bundle) => Some(bundle),
            Err(e) => {
                tracing::warn!(certificate = %name, error = %e, "cannot build placeholder");
                None
            }
        },
        None => None,
    };
    if let Some(bundle) = to_deploy {
        deploy(shared, name, &bundle).await;
    }
    Ok(usable)
}

/// Keeps one certificate valid: order when due, store, deploy, back off on
/// failure.
async fn manage(shared: Arc<Shared>, certificate: Certificate, mut current: Option<Bundle>) {
    let name = certificate.name.clone();
    let mut attempt = 0u32;
    loop {
        let info = current.as_ref().and_then(|b| cert::inspect(b, Some(&certificate.domains)).ok());
        let now = shared.clock.now();
        match schedule::next(info.as_ref(), now) {
            Next::RenewAt(at) => {
                let wait = at.duration_since(now).unwrap_or_default().min(MAX_SLEEP);
                tracing::debug!(certificate = %name, wait_secs = wait.as_secs(), "certificate valid; next look later");
                tokio::time::sleep(wait).await;
            }
            Next::OrderNow => match order(&shared, &certificate).await {
                Ok(bundle) => {
                    attempt = 0;
                    current = Some(bundle);
                }
                Err(e) => {
                    attempt += 1;
                    let delay = schedule::backoff(attempt, rand::random::<f64>());
                    tracing::error!(
                        certificate = %name,
                        error = %e,
                        permanent = e.is_permanent(),
                        attempt,
                        retry_in_secs = delay.as_secs(),
                        "order failed; the last good certificate stays deployed"
                    );
                    tokio::time::sleep(delay).await;
                }
            },
        }
    }
}

async fn order(shared: &Shared, certificate: &Certificate) -> Result<Bundle, AcmeError> {
    let Some((resolver, cell)) = shared.accounts.get(&certificate.resolver) else {
        return Err(AcmeError::UnknownResolver(certificate.resolver.clone()));
    };
    let account =
        cell.get_or_try_init(|| acme::account(shared.store.as_ref(), &certificate.resolver, resolver)).await?;
    let request = acme::OrderRequest {
        domains: &certificate.domains,
        key_type: resolver.key_type,
        profile: resolver.profile.as_deref(),
        replaces: None,
    };
    let bundle = acme::issue(account, &request, &shared.tokens).await?;
    shared.store.save_certificate(&certificate.name, &bundle).await?;
    deploy(shared, &certificate.name, &bundle).await;
    Ok(bundle)
}

async fn deploy(shared: &Shared, name: &str, bundle: &Bundle) {
    for sink in &shared.sinks {
        if let Err(e) = sink.deploy(name, bundle).await {
            tracing::error!(certificate = name, sink = ?sink, error = %e, "deployment failed");
        }
    }
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
