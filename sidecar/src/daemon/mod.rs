//! `proxy-acme run`: wires config, store, solvers, ACME, sinks and the admin
//! API together. Data flows one way: certificate request -> order -> store
//! -> deploy. Each certificate has its own task driving its
//! [`Machine`](crate::schedule::Machine).

mod accounts;
pub(crate) mod bus;
mod ca;
mod coordinator;
mod discovery;
mod fleet;
mod inbox;
mod issuer;
mod on_demand;
mod pace;
mod probe;
mod reload;
mod replicas;
mod reporter;
mod resume;
mod serving;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::cert::{self, Bundle, CertInfo, SecretPem};
use crate::config::Config;
use crate::deploy::nginx::NginxSink;
use crate::deploy::sds::{self, SdsSink};
use crate::deploy::{DeployError, Sink};
use crate::dns::DnsSolver;
use crate::schedule::Clock;
use crate::serve::admin::{self, Operations};
use crate::serve::api;
use crate::solvers::dns01::Dns01Solver;
use crate::solvers::dns_persist::DnsPersistSolver;
use crate::solvers::http01::Http01Solver;
use crate::solvers::tls_alpn::TlsAlpnSolver;
use crate::solvers::{ChallengeKind, Solver, Solvers};
use crate::store::{Store, StoreError};

use accounts::Accounts;
use bus::{Bus, Rollover};
use ca::LiveCa;
use coordinator::Coordinator;
use issuer::{Issuer, ResolverSolvers};
use reporter::Reporter;
use serving::Serving;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error("default_certificate: {0}")]
    DefaultCertificate(String),
    #[error("no resolver named {0}")]
    UnknownResolver(String),
    #[error("discover: {0}")]
    Discover(String),
    #[error("resolvers.{resolver}.dns_challenge: {source}")]
    Dns { resolver: String, source: crate::dns::DnsError },
}

/// What every certificate's task works through.
#[derive(Debug)]
struct Parts {
    issuer: Issuer,
    coordinator: Coordinator,
    serving: Serving,
    reporter: Reporter,
    clock: Arc<dyn Clock>,
    /// Spreads backoffs: a number in [0, 1).
    jitter: fn() -> f64,
    /// Spreads a certificate's renewal: a number in [0, 1) that is the same
    /// at every start and on every replica (from its serial number).
    spread: fn(&CertInfo) -> f64,
}

impl Parts {
    fn jitter(&self) -> f64 {
        (self.jitter)()
    }

    fn spread(&self, info: &CertInfo) -> f64 {
        (self.spread)(info)
    }
}

/// The production [`Parts::spread`].
fn spread_by_serial(info: &CertInfo) -> f64 {
    crate::schedule::stable_jitter(info.serial_hex.as_bytes())
}

/// Raises the soft open-file limit to the hard one (at most 2^20), as Go's
/// runtime does: the listeners' connection caps together need more than
/// the usual soft 1024, and the hard limit is what the operator allows.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else { return };
    let target = limit.maximum.unwrap_or(1 << 20).min(1 << 20);
    if target > current {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }) {
            Ok(()) => tracing::debug!(from = current, to = target, "raised the open-file limit"),
            Err(e) => tracing::warn!(limit = current, error = %e, "cannot raise the open-file limit"),
        }
    }
}

/// Removes the temps a killed writer left (`.<name>.tmp-<pid>-<n>`) in
/// the file store and the directories proxies read, before anything is
/// written: a `kill -9` mid-write leaves one, and a failed write on a disk
/// that was read-only may not have been able to remove its own.
fn sweep_crashed_writes(config: &Config) {
    let mut roots = Vec::new();
    if config.storage.store == crate::store::StoreKind::File {
        roots.push(config.storage.directory.clone());
    }
    roots.extend(config.envoy.sds_directory.clone());
    roots.extend(config.nginx.as_ref().map(|n| n.directory.clone()));
    for root in roots {
        let removed = crate::atomic::sweep_temps(&root, 3);
        if removed > 0 {
            tracing::info!(directory = %root.display(), removed, "removed temps left by interrupted writes");
        }
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config, clock: Arc<dyn Clock>) -> Result<(), RunError> {
    raise_open_file_limit();
    let hangups = reload::hangups();
    crate::egress::configure(&config.network);
    let opened = crate::store::open(&config.storage).await?;
    sweep_crashed_writes(&config);
    if let (Some(etcd), Some(settings)) = (&opened.etcd, &config.storage.etcd) {
        tracing::info!(endpoints = ?settings.endpoints, prefix = %settings.prefix, replica = etcd.replica(), "shared store: etcd");
    }
    let replica = opened.replica();
    let (store, etcd) = (Arc::clone(&opened.store), opened.etcd.clone());
    if let Some(etcd) = &etcd {
        // Before any listener or order: lookups answer from the copy.
        etcd.mirror_challenges();
    }
    let default_certificate = load_default(&config)?;
    let solvers = Solvers { board: opened.board(), ..Solvers::default() };
    let sds = SdsSink::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let readiness = crate::serve::health::Readiness::default();
    let address = config.listen.http;
    let (reports_tx, reports_rx) = mpsc::channel(on_demand::QUEUE);
    let shared_ops = config.listen.ops == address;
    let endpoints = api::Api {
        tokens: solvers.http01.clone(),
        ops: shared_ops.then(|| readiness.clone()),
        on_demand: config.on_demand.is_some().then_some(reports_tx),
        board: solvers.board.clone(),
    };
    let _api = api::serve(address, endpoints)
        .await
        .map_err(|source| RunError::Listen { address: address.to_string(), source })?;
    if !shared_ops {
        let address = config.listen.ops;
        crate::serve::ops::serve(address, readiness.clone())
            .await
            .map_err(|source| RunError::Listen { address: address.to_string(), source })?;
    }
    let _tls_alpn = if config.resolvers.values().any(|r| r.tls_challenge.is_some()) {
        let address = config.listen.tls_alpn;
        let responder = crate::serve::tls_alpn::serve(address, solvers.tls_alpn.clone(), solvers.board.clone())
            .await
            .map_err(|source| RunError::Listen { address: address.to_string(), source })?;
        Some(responder)
    } else {
        None
    };
    if let Some(path) = config.envoy.socket() {
        sds::serve_unix(&sds, path, stopped()).await?;
    }
    if let Some(address) = config.envoy.sds_address {
        sds::serve_tcp(&sds, address, stopped()).await?;
    }

    let mut sinks: Vec<Arc<dyn Sink>> = vec![Arc::new(sds)];
    if let Some(dir) = &config.envoy.sds_directory {
        sinks.push(Arc::new(crate::deploy::file_sds::FileSdsSink::new(dir)?));
    }
    let mut _reloader = None;
    if let Some(nginx) = &config.nginx {
        let (sink, task) = NginxSink::start(nginx)?;
        sinks.push(Arc::new(sink));
        _reloader = Some(task);
    }
    // The hook sees the files the proxy reads: nginx's, else the store's.
    let files_root = match &config.nginx {
        Some(nginx) => nginx.directory.clone(),
        None => config.storage.directory.join("certificates"),
    };
    let (by_resolver, dns) =
        wire_resolvers(&config.resolvers, &solvers).map_err(|(resolver, source)| RunError::Dns { resolver, source })?;
    let (rollover_tx, rollover_rx) = mpsc::channel(4);
    let bus = Bus::new(Some(rollover_tx));
    let accounts = Arc::new(Accounts::new(&config.resolvers));
    let (by_resolver, dns) = (Arc::new(by_resolver), Arc::new(dns));
    let parts = Arc::new(Parts {
        issuer: Issuer::new(
            Arc::new(LiveCa {
                accounts: Arc::clone(&accounts),
                store: Arc::clone(&store),
                paces: Arc::new(pace::Paces::new(Arc::clone(&clock))),
            }),
            Arc::clone(&store),
            Arc::clone(&accounts),
            by_resolver,
            Arc::clone(&clock),
        ),
        coordinator: Coordinator::new(Arc::clone(&store), opened.board(), dns, replica),
        serving: Serving {
            sinks,
            default_certificate: default_certificate.map(Arc::new),
            placeholder: config.envoy.placeholder,
            post_deploy: config.post_deploy.clone().map(|hook| (hook, files_root)),
        },
        reporter: Reporter::new(bus.clone(), readiness.clone()),
        clock: Arc::clone(&clock),
        jitter: rand::random::<f64>,
        spread: spread_by_serial,
    });
    let operations: Arc<dyn Operations> = Arc::new(bus.clone());
    if let (Some(address), Some(token)) = (config.admin.address, config.admin.token.clone()) {
        admin::serve_tcp(address, Arc::clone(&operations), token)
            .await
            .map_err(|source| RunError::Listen { address: address.to_string(), source })?;
    }
    if let Some(socket) = config.admin.socket() {
        admin::serve(socket, operations)
            .await
            .map_err(|source| RunError::Listen { address: socket.display().to_string(), source })?;
    }

    let mut tasks = vec![tokio::spawn(rollovers(Arc::clone(&accounts), Arc::clone(&store), rollover_rx))];
    let (used_tx, used) = watch::channel(used_resolvers(&config));
    tasks.push(tokio::spawn(probe::probe(
        readiness.clone(),
        etcd.is_none().then(|| Arc::clone(&store)),
        used,
        Arc::clone(&clock),
        Some((Arc::clone(&accounts), bus.clone())),
    )));
    if let Some(check) = config.served_check.clone() {
        tasks.push(tokio::spawn(crate::serve::served::run(check, bus.statuses.clone(), readiness.clone())));
    }

    let listener = match config.discover.as_ref().map(|d| (&d.listener_directory, &d.listener_template)) {
        Some((Some(dir), Some(template))) => Some(crate::deploy::lds::ListenerFile::load(dir, template)?),
        _ => None,
    };
    let mut fleet =
        fleet::Fleet::new(Arc::clone(&parts), bus.clone(), readiness.clone(), config.resolvers.clone(), listener);
    let managed = config.managed();
    let discover = config.discover.clone().map(|d| {
        let dns = config.resolvers.get(&d.resolver).is_some_and(|r| r.proves_wildcards());
        (d, dns)
    });
    let on_demand = config.on_demand.clone();
    // Moved, not copied: the reloader's is the only copy of the
    // configuration kept (a copy held 250 B per certificate, heaptrack).
    let running = config;
    fleet.start_all(managed, fleet::Origin::Configured).await?;
    // Loading thousands of certificates frees as much as it keeps.
    crate::serve::door::release_memory();
    fleet.write_listener_at_start().await;
    let fleet = Arc::new(tokio::sync::Mutex::new(fleet));
    let (reload_tx, reload_rx) = mpsc::channel(4);
    bus.set_reloader(reload_tx);
    let wiring = reload::Wiring { solvers, probed: used_tx, tls_alpn: _tls_alpn.is_some() };
    tasks.push(tokio::spawn(reload::run(Arc::clone(&fleet), running, reload_rx, hangups, wiring)));
    if let Some(etcd) = &etcd {
        tasks.push(tokio::spawn(replicas::follow(Arc::clone(etcd), bus.clone(), readiness.clone())));
    }
    if let Some((discover, dns)) = discover {
        let policy = discover.policy(dns).map_err(|e| RunError::Discover(e.to_string()))?;
        tasks.push(tokio::spawn(discovery::run(Arc::clone(&fleet), discover, policy)));
    }
    if let Some(settings) = on_demand {
        let policy = settings.policy().map_err(|e| RunError::Discover(e.to_string()))?;
        tasks.push(tokio::spawn(on_demand::run(Arc::clone(&fleet), settings, policy, reports_rx, clock)));
    }

    // Stores loaded, listeners bound, every certificate served (stored or
    // placeholder): what `Type=notify` waits for.
    crate::notify::notify(&format!("READY=1\nSTATUS=managing {} certificates", fleet.lock().await.count()));
    wait_for_signal().await;
    crate::notify::notify("STOPPING=1");
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for task in &tasks {
        task.abort();
    }
    fleet.lock().await.shutdown().await;
    for task in tasks {
        let _ = task.await;
    }
    // Orders stopped mid-way remove their DNS-01 records before we exit.
    crate::solvers::finish_cleanups(std::time::Duration::from_secs(10)).await;
    Ok(())
}

/// The resolvers something uses (a certificate, discovery, on-demand):
/// those whose CA the readiness probe asks.
fn used_resolvers(config: &Config) -> BTreeMap<String, probe::Probed> {
    let alone = |name: &String| {
        config.certificates.iter().any(|c| c.resolvers == [name.clone()])
            || config.discover.as_ref().is_some_and(|d| &d.resolver == name)
            || config.on_demand.as_ref().is_some_and(|d| &d.resolver == name)
    };
    config
        .resolvers
        .iter()
        .filter(|(name, _)| alone(name) || config.certificates.iter().any(|c| c.resolvers.contains(name)))
        .map(|(name, r)| (name.clone(), probe::Probed { resolver: r.clone(), backed_up: !alone(name) }))
        .collect()
}

/// Each resolver's solvers and DNS-01 providers (at start, and at a reload).
pub(super) fn wire_resolvers(
    resolvers: &BTreeMap<String, crate::config::Resolver>,
    shared: &Solvers,
) -> Result<(ResolverSolvers, BTreeMap<String, DnsSolver>), (String, crate::dns::DnsError)> {
    let mut dns = BTreeMap::new();
    for (name, resolver) in resolvers {
        if let Some(settings) = &resolver.dns_challenge {
            let solver = crate::dns::build(settings).map_err(|source| (name.clone(), source))?;
            dns.insert(name.clone(), solver);
        }
    }
    Ok((resolver_solvers(resolvers, shared, &dns), dns))
}

/// Each resolver's solvers, in its challenge order, sharing the answers
/// the endpoints show (`shared`) and each resolver's DNS-01 provider.
fn resolver_solvers(
    resolvers: &BTreeMap<String, crate::config::Resolver>,
    shared: &Solvers,
    dns: &BTreeMap<String, DnsSolver>,
) -> ResolverSolvers {
    let board = || shared.board.clone();
    let solver = |name: &str, resolver: &crate::config::Resolver, kind| -> Option<Arc<dyn Solver>> {
        Some(match kind {
            ChallengeKind::Http01 => {
                let webroot = resolver.http_challenge.as_ref().and_then(|h| h.webroot.clone());
                Arc::new(Http01Solver::new(shared.http01.clone(), webroot, board()))
            }
            ChallengeKind::TlsAlpn01 => Arc::new(TlsAlpnSolver::new(shared.tls_alpn.clone(), board())),
            ChallengeKind::Dns01 => Arc::new(
                Dns01Solver::new(dns.get(name)?.clone(), board())
                    .observe_propagation(|ok, took| crate::serve::metrics::metrics().dns_propagation(ok, took)),
            ),
            ChallengeKind::DnsPersist01 => Arc::new(DnsPersistSolver::new(resolver.dns_persist.clone()?)),
        })
    };
    resolvers
        .iter()
        .map(|(name, resolver)| {
            let solvers = resolver.challenges().into_iter().filter_map(|kind| solver(name, resolver, kind)).collect();
            (name.clone(), solvers)
        })
        .collect()
}

/// Account operations from the admin API.
async fn rollovers(accounts: Arc<Accounts>, store: Arc<dyn Store>, mut inbox: mpsc::Receiver<Rollover>) {
    while let Some(Rollover { resolver, reply }) = inbox.recv().await {
        let result = accounts.rollover(store.as_ref(), &resolver).await;
        let _ = reply.send(result.map(|id| format!("rolled over the key of {id}")));
    }
}

pub(crate) fn load_default(config: &Config) -> Result<Option<Bundle>, RunError> {
    let Some(default) = &config.default_certificate else { return Ok(None) };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| RunError::DefaultCertificate(format!("{}: {e}", path.display())))
    };
    let bundle = Bundle { fullchain_pem: read(&default.cert_file)?, key_pem: SecretPem::new(read(&default.key_file)?) };
    cert::inspect(&bundle, None).map_err(|e| RunError::DefaultCertificate(e.to_string()))?;
    Ok(Some(bundle))
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
