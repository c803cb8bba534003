//! Following the shared store: every certificate written by any replica
//! reaches this replica's certificate task (which deploys it to its own
//! proxy) within moments, without asking the CA; `/readyz` says whether the
//! store is reachable.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::bus::{Bus, CertCommand};
use crate::serve::health::Readiness;
use crate::store::{EtcdStore, Store};

/// How often the store is probed for `/readyz`.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Runs until aborted.
pub(super) async fn follow(store: Arc<EtcdStore>, bus: Bus, readiness: Readiness) {
    let (healthy_tx, mut healthy_rx) = watch::channel(Err("connecting".to_owned()));
    let mut certificates = store.watch_certificates(healthy_tx);
    let probe = {
        let (store, readiness) = (Arc::clone(&store), readiness.clone());
        tokio::spawn(async move {
            loop {
                let watching = healthy_rx.borrow_and_update().clone();
                let result =
                    store.health().await.map_err(|e| e.to_string()).and(watching.map_err(|w| format!("watch: {w}")));
                readiness.set("store", result);
                let _ = tokio::time::timeout(PROBE_EVERY, healthy_rx.changed()).await;
            }
        })
    };
    while let Some((name, bundle)) = certificates.recv().await {
        if let Some(inbox) = bus.inbox(&name) {
            let _ = inbox.send(CertCommand::Stored(Box::new(bundle))).await;
        }
    }
    probe.abort();
}
