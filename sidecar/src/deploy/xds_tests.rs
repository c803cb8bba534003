use super::*;
use crate::cert::{Bundle, SecretPem};

fn snapshot(entries: &[(&str, &str)]) -> Snapshot {
    let mut snap = Snapshot::default();
    for (name, tag) in entries {
        let bundle = Bundle { fullchain_pem: format!("chain-{tag}"), key_pem: SecretPem::new(format!("key-{tag}")) };
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
    let due = sub.due(&snap, CHUNK);
    sub.sent(&due);
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

fn sotw(type_url: &str, names: &[&str], nonce: &str, error: Option<&str>) -> DiscoveryRequest {
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        response_nonce: nonce.into(),
        error_detail: error.map(|message| RpcStatus { code: 3, message: message.into(), details: vec![] }),
        ..Default::default()
    }
}

#[test]
fn a_stream_sends_nothing_before_envoy_asks_then_tells_ack_from_nack() {
    let snap = snapshot(&[("a", "1")]);
    let mut stream = Stream::<Sotw>::default();
    assert!(stream.due(&snap, CHUNK).is_empty(), "nothing before a request");

    let (_, received) = stream.receive(sotw(SECRET_TYPE_URL, &["a"], "", None));
    assert_eq!(received, Received::Subscription);
    let due = stream.due(&snap, CHUNK);
    assert_eq!(names(&due), ["a"]);
    let response = stream.respond(snap.version, &due, "5".into());
    assert_eq!((response.nonce.as_str(), response.resources.len()), ("5", 1));
    assert!(stream.due(&snap, CHUNK).is_empty(), "sent once");

    let (_, received) = stream.receive(sotw(SECRET_TYPE_URL, &["a"], "5", None));
    assert_eq!(received, Received::Ack { stale: false });
    let (inbound, received) = stream.receive(sotw(SECRET_TYPE_URL, &["a"], "5", Some("bad key")));
    assert_eq!(received, Received::Nack { stale: false });
    assert_eq!(inbound.error, Some((3, "bad key".to_owned())));
    let (_, received) = stream.receive(sotw(SECRET_TYPE_URL, &["a"], "4", None));
    assert_eq!(received, Received::Ack { stale: true }, "an older nonce is a stale ACK");
}

#[test]
fn a_stream_ignores_other_types_and_warns_once_per_type() {
    let snap = snapshot(&[("a", "1")]);
    let mut stream = Stream::<Sotw>::default();
    let listener = "type.googleapis.com/envoy.config.listener.v3.Listener";
    let mut request = sotw(listener, &["a"], "", None);
    request.node = Some(envoy_types::pb::envoy::config::core::v3::Node { id: "edge-1".into(), ..Default::default() });
    let (_, received) = stream.receive(request);
    assert_eq!(received, Received::OtherType { first: true });
    assert_eq!(stream.node(), "edge-1");
    let (_, received) = stream.receive(sotw(listener, &[], "", None));
    assert_eq!(received, Received::OtherType { first: false });
    assert!(stream.due(&snap, CHUNK).is_empty(), "a listener request is not a request for secrets");
}

#[test]
fn a_secret_envoy_asks_for_and_nobody_manages_is_reported_once_after_the_grace() {
    let mut stream = Stream::<Sotw>::default();
    let snap = snapshot(&[("www", "a")]);
    stream.receive(sotw(SECRET_TYPE_URL, &["www", "wwww"], "", None));
    let t0 = Instant::now();
    let (overdue, next) = stream.unknown(&snap, t0);
    assert!(overdue.is_empty(), "reported before the grace: {overdue:?}");
    assert_eq!(next, Some(t0 + UNKNOWN_GRACE));
    let (overdue, next) = stream.unknown(&snap, t0 + UNKNOWN_GRACE);
    assert_eq!(overdue, ["wwww"]);
    assert_eq!(next, None);
    assert!(stream.unknown(&snap, t0 + UNKNOWN_GRACE * 2).0.is_empty(), "reported twice");

    // A secret that arrives within the grace (a placeholder at start-up) is never reported.
    let mut late = Stream::<Sotw>::default();
    late.receive(sotw(SECRET_TYPE_URL, &["new"], "", None));
    assert!(late.unknown(&snap, t0).0.is_empty());
    assert!(late.unknown(&snapshot(&[("new", "b")]), t0 + UNKNOWN_GRACE).0.is_empty());
}

#[test]
fn due_follows_changes_and_a_stream_too_far_behind_looks_at_everything() {
    let bundle = |tag: &str| Arc::new(Bundle { fullchain_pem: tag.into(), key_pem: SecretPem::new(tag.into()) });
    let mut snap = snapshot(&[("a", "1"), ("b", "1"), ("c", "1")]);
    let mut sub = Subscription::default();
    sub.replace(vec!["a".into(), "c".into()]);
    let due = sub.due(&snap, CHUNK);
    sub.sent(&due);

    // One change: only it is due (found through the snapshot's change log).
    snap.set("c", &bundle("2"));
    snap.set("b", &bundle("2"));
    let due = sub.due(&snap, CHUNK);
    assert_eq!(names(&due), ["c"]);
    sub.sent(&due);

    // More changes than the snapshot remembers: the early one is not lost.
    snap.set("a", &bundle("3"));
    for i in 0..crate::deploy::snapshot::CHANGES_KEPT + 5 {
        snap.set("b", &bundle(&format!("b{i}")));
    }
    assert_eq!(names(&sub.due(&snap, CHUNK)), ["a"]);

    // A change put back before the stream looked is not due.
    let due = sub.due(&snap, CHUNK);
    sub.sent(&due);
    snap.set("c", &bundle("9"));
    snap.set("c", &bundle("2"));
    assert!(sub.due(&snap, CHUNK).is_empty());
}
