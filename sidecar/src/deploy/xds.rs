//! One Envoy stream of secrets, whichever way Envoy asked: SDS or ADS, state
//! of the world (SotW) or incremental (delta).
//!
//! The pure part is [`Subscription`]: what the stream asked for and what it
//! was sent, and from that which secrets are due. Secrets are not Listener or
//! Cluster resources, so in both protocol variants a response may carry only
//! the secrets that changed (Envoy leaves the others alone); a stream sends
//! each change once and at most [`CHUNK`] secrets per response, which keeps a
//! 10,000-secret start-up to a few bounded messages instead of one huge one.
//!
//! Removals are not sent: Envoy rejects an SDS update without the secret, and
//! a secret a listener still names is better served stale than not at all.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::snapshot::{secret_any, secret_resource, Entry, Snapshot, SECRET_TYPE_URL};

/// At most this many secrets per response (about 3 KB each).
pub const CHUNK: usize = 500;

/// What one stream subscribed to and which content it was last sent.
#[derive(Debug, Default)]
pub struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Name → digest of what Envoy has.
    sent: HashMap<String, Arc<str>>,
}

impl Subscription {
    /// SotW: `names` is the whole subscription; empty means every secret.
    pub fn replace(&mut self, names: Vec<String>) {
        self.wildcard = names.is_empty();
        self.names = names.into_iter().collect();
        if !self.wildcard {
            let names = &self.names;
            self.sent.retain(|name, _| names.contains(name));
        }
    }

    /// Delta: adds names; `*` subscribes to every secret.
    pub fn subscribe(&mut self, names: Vec<String>) {
        for name in names {
            if name == "*" {
                self.wildcard = true;
            } else {
                self.names.insert(name);
            }
        }
    }

    /// Delta: drops names (and what was sent for them, so a later
    /// subscription gets the secret again); `*` ends the wildcard.
    pub fn unsubscribe(&mut self, names: &[String]) {
        for name in names {
            if name == "*" {
                self.wildcard = false;
            } else {
                self.names.remove(name);
            }
        }
        if !self.wildcard {
            let names = &self.names;
            self.sent.retain(|name, _| names.contains(name));
        }
    }

    /// Delta: Envoy already holds `name` at `digest` (a reconnect).
    pub fn holds(&mut self, name: String, digest: &str) {
        self.sent.insert(name, digest.into());
    }

    /// Up to `limit` subscribed secrets whose content differs from what this
    /// stream was sent, in name order. Names the snapshot lacks are skipped
    /// (Envoy waits for them, or its `initial_fetch_timeout`).
    pub fn due(&self, snapshot: &Snapshot, limit: usize) -> Vec<(String, Entry)> {
        let stale = |(name, entry): (&String, &Entry)| {
            (self.sent.get(name) != Some(&entry.digest)).then(|| (name.clone(), entry.clone()))
        };
        if self.wildcard {
            snapshot.secrets.iter().filter_map(stale).take(limit).collect()
        } else {
            self.names.iter().filter_map(|n| snapshot.secrets.get_key_value(n)).filter_map(stale).take(limit).collect()
        }
    }

    /// Records that `due` went out.
    pub fn sent(&mut self, due: &[(String, Entry)]) {
        for (name, entry) in due {
            self.sent.insert(name.clone(), Arc::clone(&entry.digest));
        }
    }
}

/// The fields of a request that matter besides the subscription.
#[derive(Debug)]
pub struct Inbound {
    pub node: Option<String>,
    pub type_url: String,
    pub version: String,
    pub nonce: String,
    pub error: Option<(i32, String)>,
}

/// One protocol variant: how a request changes the subscription and how
/// due secrets become a response.
pub trait Protocol: Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const NAME: &'static str;

    /// Applies a request to `sub` (only when it is for secrets) and returns
    /// its other fields.
    fn read(request: Self::Request, sub: &mut Subscription, first: bool) -> Inbound;
    /// The response carrying `due`, from the snapshot at `version`.
    fn response(version: u64, due: &[(String, Entry)], nonce: String) -> Self::Response;
}

/// State of the world: every request lists the whole subscription.
#[derive(Debug)]
pub struct Sotw;

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "SotW";

    fn read(request: DiscoveryRequest, sub: &mut Subscription, _first: bool) -> Inbound {
        if is_secret(&request.type_url) {
            sub.replace(request.resource_names);
        }
        Inbound {
            node: request.node.map(|n| n.id),
            type_url: request.type_url,
            version: request.version_info,
            nonce: request.response_nonce,
            error: request.error_detail.map(|e| (e.code, e.message)),
        }
    }

    fn response(version: u64, due: &[(String, Entry)], nonce: String) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.to_string(),
            resources: due.iter().map(|(name, entry)| secret_any(name, entry)).collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce,
            ..Default::default()
        }
    }
}

/// Incremental: requests carry subscription changes.
#[derive(Debug)]
pub struct Delta;

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn read(request: DeltaDiscoveryRequest, sub: &mut Subscription, first: bool) -> Inbound {
        if is_secret(&request.type_url) {
            // An empty first subscription is the legacy wildcard.
            if first && request.resource_names_subscribe.is_empty() {
                sub.subscribe(vec!["*".to_owned()]);
            }
            sub.subscribe(request.resource_names_subscribe);
            sub.unsubscribe(&request.resource_names_unsubscribe);
            for (name, digest) in request.initial_resource_versions {
                sub.holds(name, &digest);
            }
        }
        Inbound {
            node: request.node.map(|n| n.id),
            type_url: request.type_url,
            version: String::new(),
            nonce: request.response_nonce,
            error: request.error_detail.map(|e| (e.code, e.message)),
        }
    }

    fn response(version: u64, due: &[(String, Entry)], nonce: String) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: version.to_string(),
            resources: due.iter().map(|(name, entry)| secret_resource(name, entry)).collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce,
            ..Default::default()
        }
    }
}

/// SDS streams may leave the type empty; ADS streams name it.
fn is_secret(type_url: &str) -> bool {
    type_url.is_empty() || type_url == SECRET_TYPE_URL
}

/// Serves one stream until Envoy hangs up or the sink is dropped.
pub async fn drive<P: Protocol>(
    mut snapshots: watch::Receiver<Snapshot>,
    nonces: Arc<AtomicU64>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
    mut inbound: Streaming<P::Request>,
) {
    let mut sub = Subscription::default();
    let mut node = String::from("?");
    let mut asked = false;
    let mut last_nonce = String::new();
    let mut ignored: BTreeSet<String> = BTreeSet::new();
    loop {
        // Read under the lock and let go: a snapshot held across the await
        // below would make every update copy the whole map (thousands of
        // entries per certificate loaded at start-up). Nothing is sent
        // before Envoy has said what it wants.
        let (version, due) = {
            let snapshot = snapshots.borrow_and_update();
            (snapshot.version, if asked { sub.due(&snapshot, CHUNK) } else { Vec::new() })
        };
        tokio::select! {
            biased;
            message = inbound.message() => match message {
                Ok(Some(request)) => {
                    let inbound = P::read(request, &mut sub, !asked);
                    if let Some(id) = inbound.node.clone().filter(|id| !id.is_empty()) {
                        node = id;
                    }
                    if !is_secret(&inbound.type_url) {
                        if ignored.insert(inbound.type_url.clone()) {
                            tracing::warn!(node, type_url = %inbound.type_url, "xDS request for a type proxy-acme does not serve (only secrets); ignored");
                        }
                        continue;
                    }
                    asked = true;
                    track_ack::<P>(&node, &inbound, &last_nonce);
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(node, %status, "xDS stream ended");
                    break;
                }
            },
            permit = tx.reserve(), if !due.is_empty() => {
                let Ok(permit) = permit else { break };
                last_nonce = next_nonce(&nonces);
                tracing::debug!(node, protocol = P::NAME, version, nonce = %last_nonce, secrets = due.len(), first = %due[0].0, "SDS push");
                permit.send(Ok(P::response(version, &due, last_nonce.clone())));
                sub.sent(&due);
                crate::serve::metrics::metrics().sds(&node).push();
            },
            changed = snapshots.changed() => if changed.is_err() { break },
        }
    }
}

/// A fresh nonce, unique per server.
pub fn next_nonce(nonces: &AtomicU64) -> String {
    (nonces.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

/// Logs whether a request ACKs or NACKs one of our responses.
fn track_ack<P: Protocol>(node: &str, req: &Inbound, last_nonce: &str) {
    if req.nonce.is_empty() {
        tracing::debug!(node, protocol = P::NAME, "SDS subscription");
        return;
    }
    let stale = req.nonce != last_nonce;
    let counters = crate::serve::metrics::metrics().sds(node);
    match &req.error {
        Some((code, error)) => {
            counters.nack();
            tracing::warn!(
                node,
                nonce = %req.nonce,
                stale,
                code,
                error = %error,
                "Envoy rejected SDS update (NACK); it keeps its previous secret"
            );
        }
        None => {
            counters.ack();
            tracing::debug!(node, version = %req.version, nonce = %req.nonce, stale, "SDS ACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{Bundle, SecretPem};

    fn snapshot(entries: &[(&str, &str)]) -> Snapshot {
        let mut snap = Snapshot::default();
        for (name, tag) in entries {
            let bundle =
                Bundle { fullchain_pem: format!("chain-{tag}"), key_pem: SecretPem::new(format!("key-{tag}")) };
            snap.set(name, &Arc::new(bundle));
        }
        snap
    }

    fn names(due: &[(String, Entry)]) -> Vec<&str> {
        due.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn only_subscribed_changed_secrets_are_due_once() {
        let snap = snapshot(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let mut sub = Subscription::default();
        sub.replace(vec!["c".into(), "a".into(), "missing".into()]);
        let due = sub.due(&snap, CHUNK);
        assert_eq!(names(&due), ["a", "c"]);
        sub.sent(&due);
        assert!(sub.due(&snap, CHUNK).is_empty());
        let next = snapshot(&[("a", "1"), ("b", "2"), ("c", "2")]);
        assert_eq!(names(&sub.due(&next, CHUNK)), ["c"]);
    }

    #[test]
    fn due_is_chunked_and_resumes_where_it_stopped() {
        let many: Vec<(String, String)> = (0..7).map(|i| (format!("n{i}"), "1".to_owned())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let snap = snapshot(&refs);
        let mut sub = Subscription::default();
        sub.subscribe(vec!["*".into()]);
        let mut batches = Vec::new();
        loop {
            let due = sub.due(&snap, 3);
            if due.is_empty() {
                break;
            }
            batches.push(due.len());
            sub.sent(&due);
        }
        assert_eq!(batches, [3, 3, 1]);
    }

    #[test]
    fn sotw_resubscription_resends_and_empty_list_is_wildcard() {
        let snap = snapshot(&[("a", "1"), ("b", "1")]);
        let mut sub = Subscription::default();
        sub.replace(vec!["a".into()]);
        sub.sent(&sub.due(&snap, CHUNK));
        sub.replace(vec!["b".into()]);
        assert_eq!(names(&sub.due(&snap, CHUNK)), ["b"]);
        sub.replace(vec!["a".into(), "b".into()]);
        assert_eq!(names(&sub.due(&snap, CHUNK)), ["a", "b"]);
        sub.replace(vec![]);
        assert_eq!(names(&sub.due(&snap, CHUNK)), ["a", "b"]);
    }

    #[test]
    fn delta_initial_versions_skip_what_envoy_holds() {
        let snap = snapshot(&[("a", "1"), ("b", "1")]);
        let mut sub = Subscription::default();
        let request = DeltaDiscoveryRequest {
            type_url: SECRET_TYPE_URL.into(),
            resource_names_subscribe: vec!["a".into(), "b".into()],
            initial_resource_versions: [
                ("a".to_owned(), snap.secrets["a"].digest.to_string()),
                ("b".to_owned(), "old".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        Delta::read(request, &mut sub, true);
        assert_eq!(names(&sub.due(&snap, CHUNK)), ["b"]);
        let unsubscribe = DeltaDiscoveryRequest {
            type_url: SECRET_TYPE_URL.into(),
            resource_names_unsubscribe: vec!["b".into()],
            ..Default::default()
        };
        Delta::read(unsubscribe, &mut sub, false);
        assert!(sub.due(&snap, CHUNK).is_empty());
    }

    #[test]
    fn requests_for_other_types_leave_the_subscription_alone() {
        let snap = snapshot(&[("a", "1")]);
        let mut sub = Subscription::default();
        let listeners = DiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
            resource_names: vec!["a".into()],
            ..Default::default()
        };
        let inbound = Sotw::read(listeners, &mut sub, true);
        assert!(!is_secret(&inbound.type_url));
        assert!(sub.due(&snap, CHUNK).is_empty());
    }

    #[test]
    fn responses_carry_due_secrets_with_versions() {
        let snap = snapshot(&[("a", "1"), ("b", "1")]);
        let due: Vec<_> = sub_all(&snap);
        let sotw = Sotw::response(snap.version, &due, "7".into());
        assert_eq!((sotw.version_info.as_str(), sotw.nonce.as_str(), sotw.resources.len()), ("2", "7", 2));
        let delta = Delta::response(snap.version, &due, "8".into());
        assert_eq!(delta.resources[1].name, "b");
        assert_eq!(delta.resources[1].version, *snap.secrets["b"].digest);
        assert_eq!(delta.type_url, SECRET_TYPE_URL);
    }

    fn sub_all(snap: &Snapshot) -> Vec<(String, Entry)> {
        let mut sub = Subscription::default();
        sub.subscribe(vec!["*".into()]);
        sub.due(snap, CHUNK)
    }
}
