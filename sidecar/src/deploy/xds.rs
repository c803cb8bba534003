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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::snapshot::{secret_any, secret_resource, Cursor, Entry, Snapshot, SECRET_TYPE_URL};

/// At most this many secrets per response (about 3 KB each).
pub const CHUNK: usize = 500;

/// What one stream subscribed to and which content it was last sent.
#[derive(Debug, Default)]
pub struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Name → digest of what Envoy has.
    sent: HashMap<String, Arc<str>>,
    /// Subscribed names that changed since they were last sent or looked
    /// at, in name order: the only ones that can be due.
    backlog: BTreeSet<String>,
    /// The snapshot `backlog` is up to date with; `None` after the
    /// subscription changed, when every secret is looked at once.
    cursor: Option<Cursor>,
    /// Counts changes to the subscription.
    generation: u64,
}

impl Subscription {
    /// SotW: `names` is the whole subscription; empty means every secret.
    pub fn replace(&mut self, names: Vec<String>) {
        let wildcard = names.is_empty();
        let names: BTreeSet<String> = names.into_iter().collect();
        if wildcard == self.wildcard && names == self.names {
            return;
        }
        self.wildcard = wildcard;
        self.names = names;
        if !self.wildcard {
            let names = &self.names;
            self.sent.retain(|name, _| names.contains(name));
        }
        self.changed();
    }

    /// Delta: adds names; `*` subscribes to every secret.
    pub fn subscribe(&mut self, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        for name in names {
            if name == "*" {
                self.wildcard = true;
            } else {
                self.names.insert(name);
            }
        }
        self.changed();
    }

    /// Delta: drops names (and what was sent for them, so a later
    /// subscription gets the secret again); `*` ends the wildcard.
    pub fn unsubscribe(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
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
        self.changed();
    }

    /// Delta: Envoy already holds `name` at `digest` (a reconnect).
    pub fn holds(&mut self, name: String, digest: &str) {
        self.sent.insert(name, digest.into());
        self.changed();
    }

    fn changed(&mut self) {
        self.cursor = None;
        self.generation += 1;
    }

    /// Counts changes to the subscription: when it moved, names it asks for
    /// may be missing.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Up to `limit` subscribed secrets whose content differs from what this
    /// stream was sent, in name order. Names the snapshot lacks are skipped
    /// (Envoy waits for them, or its `initial_fetch_timeout`). Looks only at
    /// what changed since the last call, unless the subscription changed or
    /// the snapshot no longer remembers that far back.
    pub fn due(&mut self, snapshot: &Snapshot, limit: usize) -> Vec<(String, Entry)> {
        match self.cursor.and_then(|c| snapshot.changed_since(c)) {
            Some(changed) => {
                let changed: Vec<String> = changed.filter(|n| self.wants(n)).cloned().collect();
                self.backlog.extend(changed);
            }
            None if self.wildcard => self.backlog = snapshot.secrets.keys().cloned().collect(),
            None => self.backlog = self.names.iter().filter(|n| snapshot.secrets.contains_key(*n)).cloned().collect(),
        }
        self.cursor = Some(snapshot.cursor());
        let mut due = Vec::new();
        let mut done = Vec::new();
        for name in &self.backlog {
            if due.len() == limit {
                break;
            }
            match snapshot.secrets.get(name) {
                Some(entry) if self.sent.get(name) != Some(&entry.digest) => due.push((name.clone(), entry.clone())),
                _ => done.push(name.clone()),
            }
        }
        for name in done {
            self.backlog.remove(&name);
        }
        due
    }

    /// Subscribed names the snapshot lacks (none for a wildcard).
    pub fn unknown<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = &'a String> + 'a {
        self.names.iter().filter(|n| !snapshot.secrets.contains_key(*n))
    }

    /// Records that `due` went out.
    pub fn sent(&mut self, due: &[(String, Entry)]) {
        for (name, entry) in due {
            self.backlog.remove(name);
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

/// What one request of a stream was, as far as the log and the metrics
/// care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// For a type proxy-acme does not serve; `first` the first time this
    /// stream asked for that type. The subscription is unchanged.
    OtherType { first: bool },
    /// A subscription (no nonce): nothing of ours to acknowledge.
    Subscription,
    /// Envoy applied the response with the request's nonce; `stale` when
    /// that is not the last response sent on this stream.
    Ack { stale: bool },
    /// Envoy rejected the response with the request's nonce and keeps its
    /// previous secret.
    Nack { stale: bool },
}

/// Everything one stream knows besides its channels: the subscription, the
/// node, the last nonce sent. Pure, so that [`drive`] only moves messages.
#[derive(Debug)]
pub struct Stream<P> {
    sub: Subscription,
    node: String,
    /// Envoy has asked for secrets: nothing is sent before.
    asked: bool,
    last_nonce: String,
    /// Types asked for that are not secrets, warned about once each.
    ignored: BTreeSet<String>,
    /// Secrets asked for that the snapshot lacks, since when; each is
    /// warned about once, after [`UNKNOWN_GRACE`].
    unknown: BTreeMap<String, Instant>,
    warned: BTreeSet<String>,
    protocol: std::marker::PhantomData<P>,
}

/// How long a secret Envoy asked for may be missing before it is reported:
/// at start-up Envoy may ask before the first placeholder is pushed.
pub const UNKNOWN_GRACE: Duration = Duration::from_secs(10);

impl<P: Protocol> Default for Stream<P> {
    fn default() -> Self {
        Self {
            sub: Subscription::default(),
            node: String::from("?"),
            asked: false,
            last_nonce: String::new(),
            ignored: BTreeSet::new(),
            unknown: BTreeMap::new(),
            warned: BTreeSet::new(),
            protocol: std::marker::PhantomData,
        }
    }
}

impl<P: Protocol> Stream<P> {
    /// Counts changes to what this stream subscribed to.
    pub fn generation(&self) -> u64 {
        self.sub.generation()
    }

    /// The node id Envoy gave (`?` until it did).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Applies one request; returns its fields and what it was.
    pub fn receive(&mut self, request: P::Request) -> (Inbound, Received) {
        let inbound = P::read(request, &mut self.sub, !self.asked);
        if let Some(id) = inbound.node.clone().filter(|id| !id.is_empty()) {
            self.node = id;
        }
        if !is_secret(&inbound.type_url) {
            let first = self.ignored.insert(inbound.type_url.clone());
            return (inbound, Received::OtherType { first });
        }
        self.asked = true;
        let received = if inbound.nonce.is_empty() {
            Received::Subscription
        } else {
            let stale = inbound.nonce != self.last_nonce;
            if inbound.error.is_some() {
                Received::Nack { stale }
            } else {
                Received::Ack { stale }
            }
        };
        (inbound, received)
    }

    /// Up to `limit` secrets to send now from `snapshot` (none before
    /// Envoy asked).
    pub fn due(&mut self, snapshot: &Snapshot, limit: usize) -> Vec<(String, Entry)> {
        if self.asked {
            self.sub.due(snapshot, limit)
        } else {
            Vec::new()
        }
    }

    /// Notes at `now` which asked-for secrets `snapshot` lacks; returns
    /// those missing for [`UNKNOWN_GRACE`] and not reported yet (each is
    /// returned once), and when to look again.
    pub fn unknown(&mut self, snapshot: &Snapshot, now: Instant) -> (Vec<String>, Option<Instant>) {
        let missing: BTreeSet<&String> = self.sub.unknown(snapshot).collect();
        self.unknown.retain(|name, _| missing.contains(name));
        for name in missing {
            self.unknown.entry(name.clone()).or_insert(now);
        }
        let mut overdue = Vec::new();
        let mut next = None::<Instant>;
        for (name, since) in &self.unknown {
            if self.warned.contains(name) {
                continue;
            }
            let at = *since + UNKNOWN_GRACE;
            if at <= now {
                overdue.push(name.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.warned.extend(overdue.iter().cloned());
        (overdue, next)
    }

    /// The response carrying `due` (from the snapshot at `version`) under
    /// `nonce`, recorded as sent.
    pub fn respond(&mut self, version: u64, due: &[(String, Entry)], nonce: String) -> P::Response {
        self.sub.sent(due);
        self.last_nonce.clone_from(&nonce);
        P::response(version, due, nonce)
    }
}

/// Serves one stream until Envoy hangs up or the sink is dropped.
pub async fn drive<P: Protocol>(
    mut snapshots: watch::Receiver<Snapshot>,
    nonces: Arc<AtomicU64>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
    mut inbound: Streaming<P::Request>,
) {
    let mut stream = Stream::<P>::default();
    // Secrets nobody manages are looked for only after a request (the
    // subscription changed) or when a grace period ends, not at every
    // snapshot change or push: at start-up those come thousands of times.
    let (mut recheck, mut look_again) = (false, None::<Instant>);
    loop {
        // Read under the lock and let go: a snapshot held across the await
        // below would make every update copy the whole map (thousands of
        // entries per certificate loaded at start-up).
        let (version, due, unknown) = {
            let snapshot = snapshots.borrow_and_update();
            let unknown = if std::mem::take(&mut recheck) {
                let (unknown, next) = stream.unknown(&snapshot, Instant::now());
                look_again = next;
                unknown
            } else {
                Vec::new()
            };
            (snapshot.version, stream.due(&snapshot, CHUNK), unknown)
        };
        if !unknown.is_empty() {
            tracing::warn!(
                node = stream.node(),
                secrets = ?unknown,
                "Envoy asked for secrets this sidecar does not manage; check that each secret name in Envoy's \
                 configuration is a certificate `name` in proxy-acme.toml"
            );
        }
        tokio::select! {
            biased;
            message = inbound.message() => match message {
                Ok(Some(request)) => {
                    let generation = stream.generation();
                    let (inbound, received) = stream.receive(request);
                    report::<P>(stream.node(), &inbound, &received);
                    // An ACK leaves the subscription alone: nothing new
                    // can be missing.
                    recheck |= stream.generation() != generation;
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(node = stream.node(), %status, "xDS stream ended");
                    break;
                }
            },
            permit = tx.reserve(), if !due.is_empty() => {
                let Ok(permit) = permit else { break };
                let nonce = next_nonce(&nonces);
                tracing::debug!(node = stream.node(), protocol = P::NAME, version, nonce = %nonce, secrets = due.len(), first = %due[0].0, "SDS push");
                permit.send(Ok(stream.respond(version, &due, nonce)));
                crate::serve::metrics::metrics().sds(stream.node()).push();
            },
            changed = snapshots.changed() => if changed.is_err() { break },
            () = sleep_until(look_again), if look_again.is_some() => recheck = true,
        }
    }
}

/// Sleeps until `at` (forever for `None`; the branch is off then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A fresh nonce, unique per server.
pub fn next_nonce(nonces: &AtomicU64) -> String {
    (nonces.fetch_add(1, Ordering::Relaxed) + 1).to_string()
}

/// Logs what a request was and counts ACKs and NACKs.
fn report<P: Protocol>(node: &str, req: &Inbound, received: &Received) {
    match received {
        Received::OtherType { first: true } => tracing::warn!(
            node,
            type_url = %req.type_url,
            "xDS request for a type proxy-acme does not serve (only secrets); ignored"
        ),
        Received::OtherType { first: false } => {}
        Received::Subscription => tracing::debug!(node, protocol = P::NAME, "SDS subscription"),
        Received::Nack { stale } => {
            crate::serve::metrics::metrics().sds(node).nack();
            let (code, error) = req.error.clone().unwrap_or_default();
            tracing::warn!(
                node,
                nonce = %req.nonce,
                stale,
                code,
                error = %error,
                "Envoy rejected SDS update (NACK); it keeps its previous secret"
            );
        }
        Received::Ack { stale } => {
            crate::serve::metrics::metrics().sds(node).ack();
            tracing::debug!(node, version = %req.version, nonce = %req.nonce, stale, "SDS ACK");
        }
    }
}

#[cfg(test)]
#[path = "xds_tests.rs"]
mod tests;
