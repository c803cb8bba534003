//! Prometheus metrics (prometheus-client), one registry for the process.
//!
//! The edges record (the certificate tasks, the SDS server, the nginx
//! reloader, the DNS-01 propagation check, the served-certificate check);
//! `GET /metrics` on the sidecar's HTTP listener encodes them in the text
//! format. Times are Unix seconds, durations seconds. Nothing secret is a
//! label: certificate names, resolver names, challenge types, Envoy node ids.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabels {
    pub certificate: String,
    pub endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuedByLabels {
    pub certificate: String,
    pub resolver: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub certificate: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResolverLabels {
    pub resolver: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    pub resolver: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChallengeLabels {
    #[prometheus(flatten)]
    pub kind: KindLabel,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub challenge: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    pub problem: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaLabels {
    /// The CA's directory URL.
    pub ca: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FirstLookLabels {
    /// The CA's directory URL.
    pub ca: String,
    /// `validation` or `issuance`.
    pub after: &'static str,
}

type Seconds = Family<ResolverLabels, Histogram, fn() -> Histogram>;

/// Every metric the sidecar exports.
pub struct Metrics {
    registry: Registry,
    /// Expiry, next order, failures and last success of each certificate.
    certificates: std::sync::Arc<super::cert_metrics::CertGauges>,
    pub served_match: Family<ServedLabels, Gauge>,
    pub orders: Family<OrderLabels, Counter>,
    pub order_seconds: Seconds,
    pub challenges: Family<ChallengeLabels, Counter>,
    pub challenge_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    pub dns_propagation_seconds: Family<ResultLabels, Histogram, fn() -> Histogram>,
    pub sds_pushes: Family<NodeLabels, Counter>,
    pub sds_acks: Family<NodeLabels, Counter>,
    pub sds_nacks: Family<NodeLabels, Counter>,
    pub nginx_reloads: Family<ResultLabels, Counter>,
    pub acme_errors: Family<ProblemLabels, Counter>,
    pub orders_remaining: Family<ResolverLabels, Gauge>,
    pub on_demand: Family<DecisionLabels, Counter>,
    pub connections: Family<ListenerLabels, Gauge>,
    pub board_lookups: Family<SourceLabels, Counter>,
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub issued_by: Family<IssuedByLabels, Gauge>,
    pub fallbacks: Family<FallbackLabels, Counter>,
    pub ca_limit: Family<CaLabels, Gauge>,
    pub ca_in_flight: Family<CaLabels, Gauge>,
    pub ca_backoffs: Family<CaLabels, Counter>,
    pub ca_gated_seconds: Family<CaLabels, Counter<f64, AtomicU64>>,
    pub ca_order_spacing: Family<CaLabels, Gauge<f64, AtomicU64>>,
    pub ca_first_look: Family<FirstLookLabels, Gauge<f64, AtomicU64>>,
    /// Likewise the issuing resolver per certificate.
    issuers: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn seconds_histogram() -> Histogram {
    // 10 ms .. ~5.5 min
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("proxy_acme");
        let metrics = Self {
            certificates: std::sync::Arc::default(),
            served_match: Family::default(),
            orders: Family::default(),
            order_seconds: Family::new_with_constructor(seconds_histogram),
            challenges: Family::default(),
            challenge_seconds: Family::new_with_constructor(seconds_histogram),
            dns_propagation_seconds: Family::new_with_constructor(seconds_histogram),
            sds_pushes: Family::default(),
            sds_acks: Family::default(),
            sds_nacks: Family::default(),
            nginx_reloads: Family::default(),
            acme_errors: Family::default(),
            orders_remaining: Family::default(),
            on_demand: Family::default(),
            connections: Family::default(),
            board_lookups: Family::default(),
            connections_closed: Family::default(),
            issued_by: Family::default(),
            fallbacks: Family::default(),
            ca_limit: Family::default(),
            ca_in_flight: Family::default(),
            ca_backoffs: Family::default(),
            ca_gated_seconds: Family::default(),
            ca_order_spacing: Family::default(),
            ca_first_look: Family::default(),
            issuers: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register_collector(Box::new(std::sync::Arc::clone(&metrics.certificates)));
        r.register(
            "certificate_served_match",
            "1 when the endpoint serves the stored certificate for every name, 0 on a mismatch or failure",
            metrics.served_match.clone(),
        );
        r.register("orders", "ACME orders by resolver and result", metrics.orders.clone());
        r.register("order_duration_seconds", "Time from order to certificate", metrics.order_seconds.clone());
        r.register("challenges", "Challenges by type and result", metrics.challenges.clone());
        r.register(
            "challenge_duration_seconds",
            "Time to prove control of every identifier of an order, by type",
            metrics.challenge_seconds.clone(),
        );
        r.register(
            "dns_propagation_seconds",
            "Time until every authoritative server answered the DNS-01 records",
            metrics.dns_propagation_seconds.clone(),
        );
        r.register("sds_pushes", "SDS responses sent, per Envoy node", metrics.sds_pushes.clone());
        r.register("sds_acks", "SDS responses Envoy accepted, per node", metrics.sds_acks.clone());
        r.register("sds_nacks", "SDS responses Envoy rejected, per node", metrics.sds_nacks.clone());
        r.register("nginx_reloads", "nginx reloads by result", metrics.nginx_reloads.clone());
        r.register("acme_errors", "ACME problem documents by type", metrics.acme_errors.clone());
        r.register(
            "orders_remaining",
            "Orders the self-imposed budget still allows in its window, per resolver",
            metrics.orders_remaining.clone(),
        );
        r.register(
            "on_demand_decisions",
            "Hosts reported by the filter, by decision (allowed, asked_yes, asked_no, denied, over_budget)",
            metrics.on_demand.clone(),
        );
        r.register(
            "challenge_board_lookups",
            "Lookups of challenges another replica may have posted, by source (copy: this replica's watched copy; store: an etcd read)",
            metrics.board_lookups.clone(),
        );
        r.register("connections_open", "Open connections per listener", metrics.connections.clone());
        r.register(
            "connections_closed",
            "Connections the sidecar closed itself, per listener and reason (timeout, cap, shed, descriptors)",
            metrics.connections_closed.clone(),
        );
        r.register(
            "certificate_issued_by",
            "1 for the resolver that issued the deployed certificate (certificates with several resolvers)",
            metrics.issued_by.clone(),
        );
        r.register(
            "resolver_fallbacks",
            "Orders that moved on from one resolver to the next, per certificate",
            metrics.fallbacks.clone(),
        );
        r.register(
            "ca_limit",
            "Exchanges (orders, ARI polls, revocations) the pace of this CA allows in flight now",
            metrics.ca_limit.clone(),
        );
        r.register("ca_in_flight", "Exchanges with this CA in flight now", metrics.ca_in_flight.clone());
        r.register(
            "ca_backoffs",
            "Times the CA's pace was halved (503, time-out, a burst of refused nonces, 429 without Retry-After)",
            metrics.ca_backoffs.clone(),
        );
        r.register(
            "ca_gated_seconds",
            "Time the CA was closed to new exchanges because it said Retry-After",
            metrics.ca_gated_seconds.clone(),
        );
        r.register(
            "ca_order_spacing_seconds",
            "Least time between two new orders at this CA, learned from its 429s (0: none learned)",
            metrics.ca_order_spacing.clone(),
        );
        r.register(
            "ca_first_look_seconds",
            "Wait before the first look at an order after this CA was told to validate or to issue, learned from its answers",
            metrics.ca_first_look.clone(),
        );
        Self { registry, ..metrics }
    }

    /// The whole registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Records one certificate's state.
    pub fn certificate(&self, name: &str, state: &CertificateState) {
        self.certificates.set(name, state);
    }

    /// One finished order.
    pub fn order(&self, resolver: &str, ok: bool, took: Duration) {
        let result = if ok { "success" } else { "failure" };
        self.orders.get_or_create(&OrderLabels { resolver: resolver.to_owned(), result: result.to_owned() }).inc();
        self.order_seconds.get_or_create(&ResolverLabels { resolver: resolver.to_owned() }).observe(took.as_secs_f64());
    }

    /// One challenge type's attempt at an order: `valid`, `invalid` (the CA
    /// could not validate) or `error` (anything else went wrong).
    pub fn challenge(&self, kind: &str, result: &str, took: Duration) {
        let kind = KindLabel { challenge: kind.to_owned() };
        self.challenges.get_or_create(&ChallengeLabels { kind: kind.clone(), result: result.to_owned() }).inc();
        self.challenge_seconds.get_or_create(&kind).observe(took.as_secs_f64());
    }

    pub fn dns_propagation(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "timeout" };
        self.dns_propagation_seconds
            .get_or_create(&ResultLabels { result: result.to_owned() })
            .observe(took.as_secs_f64());
    }

    pub fn acme_error(&self, problem: &str) {
        self.acme_errors.get_or_create(&ProblemLabels { problem: problem.to_owned() }).inc();
    }

    pub fn nginx_reload(&self, result: &str) {
        self.nginx_reloads.get_or_create(&ResultLabels { result: result.to_owned() }).inc();
    }

    pub fn sds(&self, node: &str) -> SdsCounters<'_> {
        SdsCounters { metrics: self, node: NodeLabels { node: node.to_owned() } }
    }

    pub fn orders_remaining(&self, resolver: &str, remaining: u32) {
        self.orders_remaining
            .get_or_create(&ResolverLabels { resolver: resolver.to_owned() })
            .set(i64::from(remaining));
    }

    /// One lookup on the shared challenge board, answered from the watched
    /// copy or by the store.
    pub fn board_lookup(&self, copied: bool) {
        let source = if copied { "copy" } else { "store" };
        self.board_lookups.get_or_create(&SourceLabels { source: source.to_owned() }).inc();
    }

    /// One connection opened (`1`) or closed (`-1`) on `listener`.
    pub fn connections_open(&self, listener: &str, delta: i64) {
        self.connections.get_or_create(&ListenerLabels { listener: listener.to_owned() }).inc_by(delta);
    }

    /// `count` connections the sidecar closed on `listener`, and why.
    pub fn connections_closed(&self, listener: &str, reason: &str, count: u64) {
        let labels = ClosedLabels { listener: listener.to_owned(), reason: reason.to_owned() };
        self.connections_closed.get_or_create(&labels).inc_by(count);
    }

    /// The resolver that issued `certificate`'s deployed certificate; a
    /// change replaces the series.
    pub fn issued_by(&self, certificate: &str, resolver: &str) {
        let mut issuers = self.issuers.lock().unwrap_or_else(|e| e.into_inner());
        let was = issuers.insert(certificate.to_owned(), resolver.to_owned());
        if let Some(was) = was.filter(|was| was != resolver) {
            self.issued_by.remove(&IssuedByLabels { certificate: certificate.to_owned(), resolver: was });
        }
        let labels = IssuedByLabels { certificate: certificate.to_owned(), resolver: resolver.to_owned() };
        self.issued_by.get_or_create(&labels).set(1);
    }

    /// An order for `certificate` moved on from resolver `from` to `to`.
    pub fn fallback(&self, certificate: &str, from: &str, to: &str) {
        let labels = FallbackLabels { certificate: certificate.to_owned(), from: from.to_owned(), to: to.to_owned() };
        self.fallbacks.get_or_create(&labels).inc();
    }

    /// One CA's pace now: its limit and the exchanges in flight.
    pub fn ca_pace(&self, ca: &str, limit: u32, in_flight: u32, spacing: Duration) {
        let labels = CaLabels { ca: ca.to_owned() };
        self.ca_limit.get_or_create(&labels).set(i64::from(limit));
        self.ca_in_flight.get_or_create(&labels).set(i64::from(in_flight));
        self.ca_order_spacing.get_or_create(&labels).set(spacing.as_secs_f64());
        // Present from the start, so a dashboard sees 0, not nothing.
        let _ = self.ca_backoffs.get_or_create(&labels);
        let _ = self.ca_gated_seconds.get_or_create(&labels);
    }

    /// One CA's learned first looks.
    pub fn ca_first_looks(&self, ca: &str, validation: Duration, issuance: Duration) {
        for (after, wait) in [("validation", validation), ("issuance", issuance)] {
            let labels = FirstLookLabels { ca: ca.to_owned(), after };
            self.ca_first_look.get_or_create(&labels).set(wait.as_secs_f64());
        }
    }

    /// The CA's pace was halved.
    pub fn ca_backoff(&self, ca: &str) {
        self.ca_backoffs.get_or_create(&CaLabels { ca: ca.to_owned() }).inc();
    }

    /// The CA's gate closed for `for_` more.
    pub fn ca_gated(&self, ca: &str, for_: Duration) {
        self.ca_gated_seconds.get_or_create(&CaLabels { ca: ca.to_owned() }).inc_by(for_.as_secs_f64());
    }

    pub fn on_demand(&self, decision: &str) {
        self.on_demand.get_or_create(&DecisionLabels { decision: decision.to_owned() }).inc();
    }

    pub fn served(&self, certificate: &str, endpoint: &str, matches: bool) {
        let labels = ServedLabels { certificate: certificate.to_owned(), endpoint: endpoint.to_owned() };
        self.served_match.get_or_create(&labels).set(i64::from(matches));
    }
}

/// SDS counters for one Envoy node.
#[derive(Debug)]
pub struct SdsCounters<'a> {
    metrics: &'a Metrics,
    node: NodeLabels,
}

impl SdsCounters<'_> {
    pub fn push(&self) {
        self.metrics.sds_pushes.get_or_create(&self.node).inc();
    }
    pub fn ack(&self) {
        self.metrics.sds_acks.get_or_create(&self.node).inc();
    }
    pub fn nack(&self) {
        self.metrics.sds_nacks.get_or_create(&self.node).inc();
    }
}

/// What the metrics show of one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateState {
    pub not_after: Option<SystemTime>,
    /// Next order and its reason, a short word (`lifetime`, `ari`, `backoff`, ...).
    pub renew_at: Option<(SystemTime, &'static str)>,
    pub failures: u32,
    pub last_success: Option<SystemTime>,
}

pub(super) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_reason_replaces_the_series() {
        let m = Metrics::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let state = CertificateState {
            not_after: Some(UNIX_EPOCH + Duration::from_secs(2_000)),
            renew_at: Some((at, "lifetime")),
            failures: 0,
            last_success: Some(UNIX_EPOCH + Duration::from_secs(500)),
        };
        m.certificate("web", &state);
        m.certificate("web", &CertificateState { renew_at: Some((at, "backoff")), failures: 2, ..state });
        let text = m.encode();
        assert!(
            text.contains("proxy_acme_certificate_renew_at_seconds{certificate=\"web\",reason=\"backoff\"} 1000"),
            "{text}"
        );
        assert!(!text.contains("reason=\"lifetime\""), "{text}");
        assert!(text.contains("proxy_acme_certificate_not_after_seconds{certificate=\"web\"} 2000"), "{text}");
        assert!(text.contains("proxy_acme_certificate_consecutive_failures{certificate=\"web\"} 2"), "{text}");
        assert!(text.contains("proxy_acme_certificate_last_success_seconds{certificate=\"web\"} 500"), "{text}");
    }

    #[test]
    fn a_certificate_without_expiry_or_success_shows_only_its_failures() {
        let m = Metrics::new();
        m.certificate("new", &CertificateState { failures: 1, ..CertificateState::default() });
        let text = m.encode();
        assert!(text.contains("proxy_acme_certificate_consecutive_failures{certificate=\"new\"} 1"), "{text}");
        assert!(text.contains("# TYPE proxy_acme_certificate_consecutive_failures gauge"), "{text}");
        assert!(!text.contains("certificate_not_after_seconds"), "{text}");
        assert!(!text.contains("certificate_last_success_seconds"), "{text}");
        assert!(!text.contains("certificate_renew_at_seconds"), "{text}");
    }

    #[test]
    fn counters_and_histograms_encode_with_their_labels() {
        let m = Metrics::new();
        m.order("pebble", true, Duration::from_millis(300));
        m.challenge("http-01", "valid", Duration::from_millis(100));
        m.sds("envoy-1").push();
        m.sds("envoy-1").nack();
        m.served("web", "127.0.0.1:8443", false);
        m.ca_pace("https://ca.test/dir", 4, 1, Duration::from_millis(52));
        m.ca_backoff("https://ca.test/dir");
        m.ca_gated("https://ca.test/dir", Duration::from_millis(1500));
        let text = m.encode();
        for line in [
            "proxy_acme_orders_total{resolver=\"pebble\",result=\"success\"} 1",
            "proxy_acme_challenges_total{challenge=\"http-01\",result=\"valid\"} 1",
            "proxy_acme_order_duration_seconds_count{resolver=\"pebble\"} 1",
            "proxy_acme_sds_pushes_total{node=\"envoy-1\"} 1",
            "proxy_acme_sds_nacks_total{node=\"envoy-1\"} 1",
            "proxy_acme_certificate_served_match{certificate=\"web\",endpoint=\"127.0.0.1:8443\"} 0",
            "proxy_acme_ca_limit{ca=\"https://ca.test/dir\"} 4",
            "proxy_acme_ca_in_flight{ca=\"https://ca.test/dir\"} 1",
            "proxy_acme_ca_backoffs_total{ca=\"https://ca.test/dir\"} 1",
            "proxy_acme_ca_gated_seconds_total{ca=\"https://ca.test/dir\"} 1.5",
            "proxy_acme_ca_order_spacing_seconds{ca=\"https://ca.test/dir\"} 0.052",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
