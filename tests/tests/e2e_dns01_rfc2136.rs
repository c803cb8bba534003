//! DNS-01 end to end with a real BIND 9 that owns the test zone: the sidecar
//! adds the `_acme-challenge` TXT records by RFC 2136 dynamic update signed
//! with TSIG (hickory-dns), waits until BIND answers them, Pebble (using
//! that BIND as its DNS) validates, and the wildcard + apex certificate
//! comes back over SDS; Envoy serves it for `a.wild.test` and `wild.test`.
//! The records are gone afterwards.
//!
//! The provider and the propagation check are also driven directly against
//! the same BIND: two values at one name coexist and cleanup removes only
//! ours; a check that times out names the server and what it answered.
//!
//! One BIND, one Pebble, one Envoy and one sidecar for the whole binary.

use proxy_acme::dns::rfc2136::{Rfc2136, Rfc2136Provider};
use proxy_acme::dns::{propagation, DnsChallenge, DnsProvider, TxtRecord};
use proxy_acme_e2e::*;

const ZONE: &str = "wild.test";

fn settings(bind: &Bind, secret: Option<&str>, timeout_secs: u64) -> DnsChallenge {
    let text = format!(
        "resolvers = [\"{a}\"]\nnameserver_port = {port}\ntimeout_secs = {timeout_secs}\ninterval_secs = 1\n\
         [rfc2136]\nnameserver = \"{a}\"\ntsig_key = \"{key}\"\ntsig_secret = \"{secret}\"\n",
        a = bind.address,
        port = bind.address.port(),
        key = bind.key_name,
        secret = secret.unwrap_or(&bind.secret),
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn provider(settings: &DnsChallenge) -> Rfc2136Provider {
    let config: &Rfc2136 = settings.provider_settings().unwrap_or_else(|| panic!("no rfc2136"));
    Rfc2136Provider::new(config, 60).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_apex_through_rfc2136_and_real_bind_served_by_envoy() {
    let bind_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bind = Bind::start(bind_dir.path(), ZONE);

    // 1. The provider and the check, straight against BIND.
    let direct = settings(&bind, None, 30);
    let rfc2136 = provider(&direct);
    let apex = TxtRecord::new("check.wild.test", "value-for-apex", 60);
    let wildcard = TxtRecord::new("*.check.wild.test", "value-for-wildcard", 60);
    rfc2136.present(&apex).await.unwrap_or_else(|e| panic!("{e}\n--- named\n{}", bind.proc.tail()));
    rfc2136.present(&wildcard).await.unwrap_or_else(|e| panic!("{e}\n--- named\n{}", bind.proc.tail()));
    assert_eq!(txt_values(bind.address, &apex.fqdn).await, ["value-for-apex", "value-for-wildcard"]);
    propagation::wait_for(&[apex.clone(), wildcard.clone()], &direct)
        .await
        .unwrap_or_else(|e| panic!("{e}\n--- named\n{}", bind.proc.tail()));
    rfc2136.cleanup(&wildcard).await.unwrap_or_else(|e| panic!("{e}\n--- named\n{}", bind.proc.tail()));
    assert_eq!(txt_values(bind.address, &apex.fqdn).await, ["value-for-apex"], "cleanup removes only its value");
    rfc2136.cleanup(&wildcard).await.unwrap_or_else(|e| panic!("cleaning up twice: {e}"));

    // A check that cannot succeed says which server answered what.
    let stale = TxtRecord::new("check.wild.test", "some-other-value", 60);
    let missing = TxtRecord::new("nowhere.wild.test", "x", 60);
    let impatient = settings(&bind, None, 2);
    let err = propagation::wait_for(&[stale, missing], &impatient).await.map(|()| "passed".to_owned());
    let err = err.unwrap_err().to_string();
    assert!(err.contains("ns1.wild.test."), "{err}");
    assert!(err.contains(&bind.address.to_string()), "{err}");
    assert!(err.contains("stale values [\"value-for-apex\"]"), "{err}");
    assert!(err.contains("_acme-challenge.nowhere.wild.test.") && err.contains("NXDOMAIN"), "{err}");
    assert!(err.contains("raise `dns_challenge.timeout_secs`, now 2"), "no advice: {err}");

    // A nameserver that does not answer (the wrong port): named once, with
    // the setting to change.
    let mut closed = settings(&bind, None, 2);
    closed.nameserver_port = free_port();
    let err = propagation::wait_for(std::slice::from_ref(&apex), &closed).await.map(|()| "passed".to_owned());
    let err = err.unwrap_err().to_string();
    let address = format!("127.0.0.1:{}", closed.nameserver_port);
    assert_eq!(err.matches(&address).count(), 1, "the server must be named once: {err}");
    assert!(err.contains("no answer") && err.contains(&format!("port {}", closed.nameserver_port)), "{err}");
    assert!(err.contains("`dns_challenge.nameserver_port`"), "{err}");

    // A zone the resolvers do not know: which servers were asked, and what to set.
    let unknown = TxtRecord::new("www.not-served.test", "x", 60);
    let err = propagation::wait_for(&[unknown], &impatient).await.map(|()| "passed".to_owned());
    let err = err.unwrap_err().to_string();
    assert!(err.contains("cannot find the nameservers of _acme-challenge.www.not-served.test."), "{err}");
    assert!(err.contains(&format!("asked {} (dns_challenge.resolvers)", bind.address)), "{err}");
    assert!(err.contains("check_all_nameservers = false"), "{err}");
    rfc2136.cleanup(&apex).await.unwrap_or_else(|e| panic!("{e}\n--- named\n{}", bind.proc.tail()));

    // A wrong TSIG secret is refused by BIND, and said so.
    let wrong = settings(&bind, Some("c2VjcmV0LXRoYXQtYmluZC1kb2VzLW5vdC1rbm93"), 2);
    let refused = provider(&wrong).present(&TxtRecord::new("x.wild.test", "v", 60)).await;
    let refused = refused.map(|()| "accepted".to_owned()).unwrap_err().to_string();
    assert!(refused.contains("rfc2136"), "{refused}");
    assert!(txt_values(bind.address, "_acme-challenge.x.wild.test.").await.is_empty());

    // 2. The whole flow: wildcard + apex in one certificate, over SDS.
    let tail = |pebble: &Pebble| {
        let resolver = resolver(pebble, "bind", "").replace("http_challenge = {}\n", "");
        format!(
            "{resolver}\n[resolvers.bind.dns_challenge]\nresolvers = [\"{a}\"]\nnameserver_port = {port}\n\
             timeout_secs = 30\ninterval_secs = 1\n\n[resolvers.bind.dns_challenge.rfc2136]\nnameserver = \"{a}\"\n\
             tsig_key = \"{key}\"\ntsig_algorithm = \"hmac-sha256\"\ntsig_secret_file = \"{file}\"\n\n{cert}",
            a = bind.address,
            port = bind.address.port(),
            key = bind.key_name,
            file = bind.secret_file.display(),
            cert = certificate("wild", &["*.wild.test", "wild.test"], "bind"),
        )
    };
    let options = PebbleOptions { dns_server: Some(bind.address), ..PebbleOptions::default() };
    let mut stack = Stack::start(&options, "", tail, |c| with_secrets(c, &["wild"])).await;
    assert_wildcard_issued(&mut stack, "wild.test", bind.address).await;
}
