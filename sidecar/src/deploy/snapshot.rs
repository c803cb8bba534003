//! The set of secrets every connected Envoy should have, and the pure
//! function that turns it into an SDS response for one stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret, TlsCertificate};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::cert::Bundle;

/// Type URL of an SDS `Secret`.
pub const SECRET_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// One certificate as Envoy will get it, with the snapshot version at which
/// it last changed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: u64,
    /// Shared, so a snapshot copy never copies PEM text.
    pub bundle: Arc<Bundle>,
}

/// An immutable set of secrets; every change makes a new snapshot with a
/// higher version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    pub secrets: Arc<BTreeMap<String, Entry>>,
}

impl Snapshot {
    /// A new snapshot with `name` set to `bundle`, or `self` unchanged when
    /// the bundle is identical (no needless pushes).
    pub fn with(&self, name: &str, bundle: Bundle) -> Option<Self> {
        let mut next = self.clone();
        next.set(name, &bundle).then_some(next)
    }

    /// Sets `name` to `bundle` in place; false when it already was. The map
    /// is copied only while a stream still reads the previous snapshot, so a
    /// burst of updates (start-up with thousands of certificates) costs one
    /// insertion each, not a copy of everything each.
    pub fn set(&mut self, name: &str, bundle: &Bundle) -> bool {
        if self.secrets.get(name).is_some_and(|e| *e.bundle == *bundle) {
            return false;
        }
        self.version += 1;
        let entry = Entry { version: self.version, bundle: Arc::new(bundle.clone()) };
        Arc::make_mut(&mut self.secrets).insert(name.to_owned(), entry);
        true
    }

    /// A new snapshot without `name`, if it was there.
    pub fn without(&self, name: &str) -> Option<Self> {
        if !self.secrets.contains_key(name) {
            return None;
        }
        let mut secrets = (*self.secrets).clone();
        secrets.remove(name);
        Some(Self { version: self.version + 1, secrets: Arc::new(secrets) })
    }

    /// Versions of the subscribed secrets we have, by name: what a stream
    /// compares with what it last sent to decide whether to send again.
    pub fn versions_for(&self, names: &[String]) -> BTreeMap<String, u64> {
        self.selected(names).into_iter().map(|(name, entry)| (name.clone(), entry.version)).collect()
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
        let resources = self.selected(names).into_iter().map(|(name, entry)| to_any(name, &entry.bundle)).collect();
        DiscoveryResponse {
            version_info: self.version.to_string(),
            resources,
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce,
            ..Default::default()
        }
    }
}

fn to_any(name: &str, bundle: &Bundle) -> Any {
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
        assert_eq!(s2.versions_for(&["a".into()]), BTreeMap::from([("a".into(), 2)]));
        let s3 = s2.with("b", bundle("1")).expect("changed");
        assert_eq!(s3.versions_for(&["a".into()]), BTreeMap::from([("a".into(), 2)]));
        assert!(s3.without("zzz").is_none());
        assert_eq!(s3.without("a").expect("removed").versions_for(&[]).len(), 1);
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
