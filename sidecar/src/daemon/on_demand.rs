//! `[on_demand]`: hosts the filter reports become certificates only where
//! the policy allows: deny list first, then the allow list, then the `ask`
//! URL (200 means yes), and never more than `orders_per_minute` orders.
//! Each host is decided once; a refusal is remembered for an hour.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Empty;
use tokio::sync::{mpsc, Mutex};

use super::fleet::{Fleet, Origin};
use crate::config::{Certificate, OnDemand};
use crate::discover::Policy;
use crate::fetch::{FetchError, MaxBody};
use crate::schedule::{Clock, OrderBudget};

/// How long a refused host is not asked about again.
const REMEMBER_NO: Duration = Duration::from_secs(3600);
/// Time to connect to the `ask` URL (or the proxy).
const ASK_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Hosts remembered before the memory starts over.
const MEMORY: usize = 10_000;

/// Reports waiting for a decision.
pub(super) const QUEUE: usize = 256;

type Client =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<crate::egress::Egress>, Empty<bytes::Bytes>>;

/// What the policy says about one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allowed,
    Asked(bool),
    Denied,
}

async fn ask(client: &Client, url: &str, host: &str) -> Result<bool, FetchError> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}domain={host}");
    let (status, _) = crate::fetch::get(client, &url, Duration::from_secs(5), MaxBody(64 << 10)).await?;
    Ok(status == http::StatusCode::OK)
}

async fn decide(policy: &Policy, settings: &OnDemand, client: Option<&Client>, host: &str) -> Decision {
    if policy.deny.iter().any(|p| p.matches(host)) {
        return Decision::Denied;
    }
    if policy.allow.iter().any(|p| p.matches(host)) {
        return Decision::Allowed;
    }
    let (Some(url), Some(client)) = (&settings.ask, client) else { return Decision::Denied };
    match ask(client, url, host).await {
        Ok(yes) => Decision::Asked(yes),
        Err(e) => {
            tracing::warn!(host, error = %e, "on-demand ask failed: not ordering");
            Decision::Asked(false)
        }
    }
}

pub(super) async fn run(
    fleet: Arc<Mutex<Fleet>>,
    settings: OnDemand,
    policy: Policy,
    mut reports: mpsc::Receiver<String>,
    clock: Arc<dyn Clock>,
) {
    let client: Option<Client> = match hyper_rustls::HttpsConnectorBuilder::new().try_with_platform_verifier() {
        Ok(builder) => Some(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(
            builder.https_or_http().enable_http1().wrap_connector(crate::egress::connector(ASK_CONNECT_TIMEOUT)),
        )),
        Err(e) => {
            tracing::error!(error = %e, "on-demand: no TLS roots for the ask URL; only the allow list applies");
            None
        }
    };
    let mut budget = OrderBudget::new(settings.orders_per_minute, Duration::from_secs(60));
    let mut refused: HashMap<String, Instant> = HashMap::new();
    while let Some(host) = reports.recv().await {
        if let Err(why) = crate::names::validate_hostname(&host) {
            // The API refuses these already; nothing reaches the budget.
            tracing::info!(host, why, "on-demand: not a host name, not ordering");
            continue;
        }
        if refused.get(&host).is_some_and(|at| at.elapsed() < REMEMBER_NO) || fleet.lock().await.manages(&host) {
            continue;
        }
        let decision = decide(&policy, &settings, client.as_ref(), &host).await;
        let yes = matches!(decision, Decision::Allowed | Decision::Asked(true));
        crate::serve::metrics::metrics().on_demand(match decision {
            Decision::Allowed => "allowed",
            Decision::Asked(true) => "asked_yes",
            Decision::Asked(false) => "asked_no",
            Decision::Denied => "denied",
        });
        if !yes {
            tracing::info!(host, ?decision, "on-demand: not ordering");
            if refused.len() >= MEMORY {
                refused.clear();
            }
            refused.insert(host, Instant::now());
            continue;
        }
        if budget.try_take(clock.now()).is_err() {
            crate::serve::metrics::metrics().on_demand("over_budget");
            tracing::warn!(
                host,
                orders_per_minute = settings.orders_per_minute,
                "on-demand: budget used up, not ordering"
            );
            continue;
        }
        tracing::info!(host, ?decision, "on-demand: ordering a certificate");
        let certificate = Certificate::new(host.clone(), vec![host.clone()], settings.resolver.clone());
        let mut fleet = fleet.lock().await;
        match fleet.start(certificate, Origin::OnDemand).await {
            Ok(()) => fleet.write_listener().await,
            Err(e) => tracing::error!(host, error = %e, "cannot start the on-demand certificate"),
        }
    }
}
