//! `[discover]`: looks at the proxy's routes every `interval_secs` and
//! brings the discovered certificates in line. A source that does not
//! answer is reported and skipped for that round: names are never dropped
//! because Envoy or nginx could not be asked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use tokio::sync::Mutex;

use super::fleet::Fleet;
use crate::config::Discover;
use crate::discover::{self, Policy, Skipped};
use crate::fetch::{FetchError, MaxBody};

type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

async fn config_dump(client: &Client, admin: &str) -> Result<serde_json::Value, FetchError> {
    let url = format!("{}/config_dump", admin.trim_end_matches('/'));
    // Tens of thousands of routes are tens of megabytes.
    crate::fetch::get_json(client, &url, Duration::from_secs(10), MaxBody(256 << 20)).await
}

/// What the sources name now; `None` when one of them did not answer.
async fn look(client: &Client, settings: &Discover) -> Option<Vec<Vec<String>>> {
    let mut found = Vec::new();
    let mut complete = true;
    if let Some(admin) = &settings.envoy_admin {
        match config_dump(client, admin).await {
            Ok(dump) => found.extend(discover::envoy::virtual_hosts(&dump)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read Envoy's routes; keeping the discovered certificates as they are");
                complete = false;
            }
        }
    }
    if let Some(command) = &settings.nginx_command {
        match crate::process::run(command, &[], Duration::from_secs(30)).await {
            Ok(text) => found.extend(discover::nginx::tls_server_names(&text)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read nginx's configuration; keeping the discovered certificates as they are");
                complete = false;
            }
        }
    }
    complete.then_some(found)
}

pub(super) async fn run(fleet: Arc<Mutex<Fleet>>, settings: Discover, policy: Policy) {
    let client: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let grace = Duration::from_secs(settings.grace_secs);
    let mut reported: BTreeSet<Skipped> = BTreeSet::new();
    // The listener file is written (if its contents changed) after the
    // first complete round, even when no certificate changed.
    let mut first_round = true;
    loop {
        if let Some(found) = look(&client, &settings).await {
            let (requests, skipped) = discover::requests(&found, &policy);
            let mut fleet = fleet.lock().await;
            for skip in &skipped {
                if reported.contains(skip) {
                    continue;
                }
                // A configured certificate already has it (a wildcard with
                // its own DNS-01 resolver, say): nothing is missing.
                if fleet.configured_names(&skip.name) {
                    tracing::debug!(name = %skip.name, "discovered name covered by a configured certificate");
                } else {
                    tracing::info!(name = %skip.name, reason = %skip.why, "discovered name not ordered");
                }
            }
            reported = skipped.into_iter().collect();
            if fleet.reconcile(&requests, &settings.resolver, grace).await || first_round {
                fleet.write_listener().await;
            }
            first_round = false;
        }
        tokio::time::sleep(Duration::from_secs(settings.interval_secs)).await;
    }
}
