//! The SDS/ADS stream's handling of Envoy's requests, state of the world
//! and incremental: what a request subscribes to, whether it ACKs or NACKs
//! (and whether for the last response), and what is pushed after it. The
//! requests are decoded with prost, as tonic does.
//!
//! Input: one byte for the protocol (even: `DiscoveryRequest`, odd:
//! `DeltaDiscoveryRequest`), then records of a flags byte, a little-endian
//! u16 length and that many bytes of an encoded request. Flags: bit 0,
//! push what is due before the request; bit 1, a certificate changes
//! (bits 2-3 pick which).
#![no_main]

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use libfuzzer_sys::fuzz_target;
use proxy_acme::cert::{Bundle, SecretPem};
use proxy_acme::deploy::snapshot::{Snapshot, SECRET_TYPE_URL};
use proxy_acme::deploy::xds::{Delta, Protocol, Received, Sotw, Stream};

/// The certificates the sidecar holds (see the seeds' resource names).
const NAMES: [&str; 4] = ["a", "b", "example-com", "wild"];
/// A small chunk, so that pushes take several responses.
const LIMIT: usize = 2;

fn bundle(name: &str, generation: u32) -> Arc<Bundle> {
    Arc::new(Bundle {
        fullchain_pem: format!("chain of {name} #{generation}"),
        key_pem: SecretPem::new(format!("key of {name} #{generation}")),
    })
}

/// Drives one stream the way `xds::drive` does, checking what it decides.
struct Harness<P: Protocol> {
    stream: Stream<P>,
    snapshot: Snapshot,
    nonce: u64,
    last_nonce: String,
    generation: u32,
}

impl<P: Protocol> Harness<P> {
    fn new() -> Self {
        let mut snapshot = Snapshot::default();
        for name in NAMES {
            snapshot.set(name, &bundle(name, 0));
        }
        Self { stream: Stream::default(), snapshot, nonce: 0, last_nonce: String::new(), generation: 0 }
    }

    /// Pushes until nothing is due; every secret goes out at most once, so
    /// this ends within a bounded number of responses.
    fn push_all(&mut self) {
        let bound = NAMES.len().div_ceil(LIMIT) + 1;
        for _ in 0..bound {
            let due = self.stream.due(&self.snapshot, LIMIT);
            if due.is_empty() {
                return;
            }
            assert!(due.len() <= LIMIT);
            assert!(due.windows(2).all(|w| w[0].0 < w[1].0), "due in name order, once each");
            self.nonce += 1;
            self.last_nonce = self.nonce.to_string();
            let _response = self.stream.respond(self.snapshot.version, &due, self.last_nonce.clone());
        }
        panic!("still due after {bound} pushes: {:?}", self.stream.due(&self.snapshot, LIMIT));
    }

    fn receive(&mut self, request: P::Request) {
        let (inbound, received) = self.stream.receive(request);
        let secret = inbound.type_url.is_empty() || inbound.type_url == SECRET_TYPE_URL;
        match received {
            Received::OtherType { .. } => assert!(!secret, "{:?}", inbound.type_url),
            Received::Subscription => assert!(inbound.nonce.is_empty()),
            Received::Ack { stale } | Received::Nack { stale } => {
                assert!(!inbound.nonce.is_empty());
                assert_eq!(stale, inbound.nonce != self.last_nonce);
                assert_eq!(matches!(received, Received::Nack { .. }), inbound.error.is_some());
            }
        }
    }

    fn change(&mut self, which: u8) {
        self.generation += 1;
        let name = NAMES[usize::from(which) % NAMES.len()];
        self.snapshot.set(name, &bundle(name, self.generation));
    }
}

fn run<P: Protocol>(mut records: &[u8], decode: impl Fn(&[u8]) -> Option<P::Request>) {
    let mut harness = Harness::<P>::new();
    while let [flags, lo, hi, rest @ ..] = records {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (bytes, next) = rest.split_at(len);
        records = next;
        if flags & 1 != 0 {
            harness.push_all();
        }
        if flags & 2 != 0 {
            harness.change(flags >> 2);
        }
        if let Some(request) = decode(bytes) {
            harness.receive(request);
        }
    }
    harness.push_all();
}

fuzz_target!(|data: &[u8]| {
    let Some((protocol, records)) = data.split_first() else { return };
    if protocol % 2 == 0 {
        run::<Sotw>(records, |b| <DiscoveryRequest as prost::Message>::decode(b).ok());
    } else {
        run::<Delta>(records, |b| <DeltaDiscoveryRequest as prost::Message>::decode(b).ok());
    }
});
