//! The set of secrets every connected Envoy should have, and the pure
//! functions that turn entries into xDS resources.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret, TlsCertificate};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryResponse, Resource};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::cert::Bundle;

/// Type URL of an SDS `Secret`.
pub const SECRET_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// One certificate as Envoy will get it, with the snapshot version at which
/// it last changed and a digest of its content.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: u64,
    /// SHA-256 of chain and key, hex, first 16 bytes: the resource version of
    /// incremental xDS. It depends on the content only, so an Envoy that
    /// reconnects to a restarted sidecar or another replica and names the
    /// version it holds is not sent the same secret again.
    pub digest: Arc<str>,
    /// Shared, so a snapshot copy never copies PEM text.
    pub bundle: Arc<Bundle>,
}

/// An immutable set of secrets; every change makes a new snapshot with a
/// higher version.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub secrets: Arc<BTreeMap<String, Entry>>,
    /// Which snapshots this one descends from: versions compare only within
    /// one lineage.
    lineage: u64,
    /// The names the last [`CHANGES_KEPT`] versions changed, oldest first,
    /// so a stream finds what changed since it last looked without going
    /// over every secret (at 10,000 secrets, each renewal would otherwise
    /// cost every stream 10,000 lookups).
    changes: Arc<VecDeque<(u64, String)>>,
}

/// How many changes a snapshot remembers; a stream further behind looks
/// at every secret once.
pub const CHANGES_KEPT: usize = 1024;

static LINEAGES: AtomicU64 = AtomicU64::new(0);

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            version: 0,
            secrets: Arc::default(),
            lineage: LINEAGES.fetch_add(1, Ordering::Relaxed),
            changes: Arc::default(),
        }
    }
}

/// Where a stream last looked: a snapshot's lineage and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    lineage: u64,
    version: u64,
}

impl Snapshot {
    /// Where this snapshot is, for [`changed_since`](Self::changed_since).
    pub fn cursor(&self) -> Cursor {
        Cursor { lineage: self.lineage, version: self.version }
    }

    /// The names changed (set or removed) after `cursor`, when this
    /// snapshot still remembers all of them; `None` when it does not (or
    /// `cursor` is from another lineage): then every secret may have.
    pub fn changed_since(&self, cursor: Cursor) -> Option<impl Iterator<Item = &String> + '_> {
        if cursor.lineage != self.lineage || cursor.version > self.version {
            return None;
        }
        let covered =
            cursor.version == self.version || self.changes.front().is_some_and(|(v, _)| *v <= cursor.version + 1);
        covered.then(|| self.changes.iter().filter(move |(v, _)| *v > cursor.version).map(|(_, name)| name))
    }

    fn log(&mut self, name: &str) {
        let changes = Arc::make_mut(&mut self.changes);
        if changes.len() == CHANGES_KEPT {
            changes.pop_front();
        }
        changes.push_back((self.version, name.to_owned()));
    }

    /// A new snapshot with `name` set to `bundle`, or `self` unchanged when
    /// the bundle is identical (no needless pushes).
    pub fn with(&self, name: &str, bundle: Bundle) -> Option<Self> {
        let mut next = self.clone();
        next.set(name, &Arc::new(bundle)).then_some(next)
    }

    /// Sets `name` to `bundle` in place; false when it already was. The map
    /// is copied only while a stream still reads the previous snapshot, so a
    /// burst of updates (start-up with thousands of certificates) costs one
    /// insertion each, not a copy of everything each.
    /// The bundle is shared with the certificate's task, not copied.
    pub fn set(&mut self, name: &str, bundle: &Arc<Bundle>) -> bool {
        if self.secrets.get(name).is_some_and(|e| *e.bundle == **bundle) {
            return false;
        }
        self.version += 1;
        let entry = Entry { version: self.version, digest: digest(bundle), bundle: Arc::clone(bundle) };
        Arc::make_mut(&mut self.secrets).insert(name.to_owned(), entry);
        self.log(name);
        true
    }

    /// A new snapshot without `name`, if it was there.
    pub fn without(&self, name: &str) -> Option<Self> {
        if !self.secrets.contains_key(name) {
            return None;
        }
        let mut next = self.clone();
        next.version += 1;
        Arc::make_mut(&mut next.secrets).remove(name);
        next.log(name);
        Some(next)
    }

    fn selected<'a>(&'a self, names: &'a [String]) -> Vec<(&'a String, &'a Entry)> {
        // An empty list is a wildcard subscription: everything. Otherwise one
        // lookup per name (Envoy subscribes to thousands at once).
        if names.is_empty() {
            return self.secrets.iter().collect();
        }
        let mut selected: Vec<_> = names.iter().filter_map(|n| self.secrets.get_key_value(n)).collect();
        selected.sort_by(|a, b| a.0.cmp(b.0));
        selected.dedup_by(|a, b| a.0 == b.0);
        selected
    }

    /// The state-of-the-world response for `names` (all when empty).
    pub fn response(&self, names: &[String], nonce: String) -> DiscoveryResponse {
        let resources = self.selected(names).into_iter().map(|(name, entry)| secret_any(name, entry)).collect();
        DiscoveryResponse {
            version_info: self.version.to_string(),
            resources,
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce,
            ..Default::default()
        }
    }
}

/// The incremental-xDS resource for one entry, versioned by its digest.
pub fn secret_resource(name: &str, entry: &Entry) -> Resource {
    Resource {
        name: name.to_owned(),
        version: entry.digest.to_string(),
        resource: Some(secret_any(name, entry)),
        ..Default::default()
    }
}

fn digest(bundle: &Bundle) -> Arc<str> {
    bundle.fingerprint(16).into()
}

/// One entry as an `Any`-wrapped SDS `Secret` with chain and key inline.
pub fn secret_any(name: &str, entry: &Entry) -> Any {
    let bundle = &entry.bundle;
    let inline = |pem: &str| {
        Some(DataSource { specifier: Some(Specifier::InlineBytes(pem.as_bytes().to_vec())), ..Default::default() })
    };
    let secret = Secret {
        name: name.to_owned(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&bundle.fullchain_pem),
            private_key: inline(bundle.key_pem.expose()),
            ..Default::default()
        })),
    };
    Any { type_url: SECRET_TYPE_URL.to_owned(), value: secret.encode_to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::SecretPem;

    fn bundle(tag: &str) -> Bundle {
        Bundle { fullchain_pem: format!("chain-{tag}"), key_pem: SecretPem::new(format!("key-{tag}")) }
    }

    fn decode(any: &Any) -> Secret {
        assert_eq!(any.type_url, SECRET_TYPE_URL);
        match Secret::decode(any.value.as_slice()) {
            Ok(s) => s,
            Err(e) => panic!("secret does not decode: {e}"),
        }
    }

    #[test]
    fn every_change_gets_a_new_version_and_identical_updates_none() {
        let s0 = Snapshot::default();
        let s1 = s0.with("a", bundle("1")).expect("changed");
        assert_eq!(s1.version, 1);
        assert!(s1.with("a", bundle("1")).is_none());
        let s2 = s1.with("a", bundle("2")).expect("changed");
        assert_eq!(s2.version, 2);
        assert_eq!(s2.secrets["a"].version, 2);
        let s3 = s2.with("b", bundle("1")).expect("changed");
        assert_eq!(s3.secrets["a"].version, 2);
        assert!(s3.without("zzz").is_none());
        assert_eq!(s3.without("a").expect("removed").secrets.len(), 1);
    }

    #[test]
    fn changes_are_remembered_within_one_lineage_and_up_to_a_bound() {
        let s0 = Snapshot::default();
        let start = s0.cursor();
        let s2 = s0.with("a", bundle("1")).and_then(|s| s.with("b", bundle("1"))).expect("changed");
        let changed = |s: &Snapshot, c| s.changed_since(c).map(|i| i.cloned().collect::<Vec<_>>());
        assert_eq!(changed(&s2, start), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(changed(&s2, s2.cursor()), Some(vec![]));
        let s3 = s2.without("a").expect("removed");
        assert_eq!(changed(&s3, s2.cursor()), Some(vec!["a".to_owned()]));
        assert_eq!(changed(&Snapshot::default(), start), None, "another lineage");
        let mut far = s3.clone();
        for i in 0..CHANGES_KEPT {
            far.set("c", &Arc::new(bundle(&i.to_string())));
        }
        assert_eq!(changed(&far, s3.cursor()).map(|c| c.len()), Some(CHANGES_KEPT));
        far.set("c", &Arc::new(bundle("x")));
        assert_eq!(changed(&far, s3.cursor()), None, "forgotten");
    }

    #[test]
    fn digest_follows_content_not_history() {
        let a = Snapshot::default().with("a", bundle("1")).expect("set");
        let b = Snapshot::default().with("x", bundle("0")).and_then(|s| s.with("a", bundle("1"))).expect("set");
        assert_ne!(a.secrets["a"].version, b.secrets["a"].version);
        assert_eq!(a.secrets["a"].digest, b.secrets["a"].digest);
        assert_eq!(a.secrets["a"].digest.len(), 32);
        assert_ne!(a.secrets["a"].digest, b.secrets["x"].digest);
        let key_only = Bundle { fullchain_pem: "chain-1".into(), key_pem: SecretPem::new("key-2".into()) };
        assert_ne!(a.with("a", key_only).expect("changed").secrets["a"].digest, a.secrets["a"].digest);
    }

    #[test]
    fn response_carries_only_subscribed_secrets_inline() {
        let snap = Snapshot::default().with("a", bundle("1")).and_then(|s| s.with("b", bundle("2"))).expect("built");
        let rsp = snap.response(&["b".into(), "missing".into()], "n1".into());
        assert_eq!(rsp.version_info, "2");
        assert_eq!(rsp.nonce, "n1");
        assert_eq!(rsp.resources.len(), 1);
        let secret = decode(&rsp.resources[0]);
        assert_eq!(secret.name, "b");
        let Some(secret::Type::TlsCertificate(tls)) = secret.r#type else { panic!("not a TLS certificate") };
        let chain = tls.certificate_chain.and_then(|d| d.specifier);
        assert_eq!(chain, Some(Specifier::InlineBytes(b"chain-2".to_vec())));
        assert_eq!(snap.response(&[], "n2".into()).resources.len(), 2);
    }
}
