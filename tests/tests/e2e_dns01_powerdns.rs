//! DNS-01 end to end with a real PowerDNS Authoritative server (SQLite
//! backend) that owns the test zone: the `pdns` provider writes the
//! `_acme-challenge` TXT RRset through PowerDNS's HTTP API, the sidecar waits
//! until PowerDNS answers it over DNS, Pebble (using that PowerDNS as its
//! DNS) validates, and the wildcard + apex certificate comes back over SDS;
//! Envoy serves it for `a.pdns.test` and `pdns.test`. The records are gone
//! afterwards.
//!
//! The provider is also driven directly against the same server, each step
//! seen through real DNS queries: values coexist with one put there by
//! someone else, cleanup removes only ours, and a wrong API key is refused
//! by PowerDNS with a 401 the error names.
//!
//! One PowerDNS, one Pebble, one Envoy and one sidecar for the whole binary.
//! A missing pdns_server fails the test with what to install (never a skip).

use proxy_acme::dns::pdns::{PowerDns as PdnsSettings, PowerDnsProvider};
use proxy_acme::dns::{propagation, DnsChallenge, DnsProvider, TxtRecord};
use proxy_acme_e2e::*;

const ZONE: &str = "pdns.test";

fn settings(pdns: &PowerDns, key: &str) -> DnsChallenge {
    let text = format!(
        "resolvers = [\"{a}\"]\nnameserver_port = {port}\ntimeout_secs = 30\ninterval_secs = 1\n\
         [pdns]\napi_url = \"{url}\"\napi_key = \"{key}\"\n",
        a = pdns.address,
        port = pdns.address.port(),
        url = pdns.api_url,
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn provider(settings: &DnsChallenge) -> PowerDnsProvider {
    let config: &PdnsSettings = settings.provider_settings().unwrap_or_else(|| panic!("no pdns"));
    PowerDnsProvider::new(config).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_apex_through_the_powerdns_api_served_by_envoy() {
    let pdns_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pdns = PowerDns::start(pdns_dir.path(), ZONE).await;
    let log = |pdns: &PowerDns| format!("\n--- pdns_server\n{}", pdns.proc.tail());

    // 1. The provider, straight against PowerDNS, seen over DNS. Someone
    // else's value is there first (put through the API by "another tool").
    let name = "_acme-challenge.check.pdns.test.";
    let foreign = serde_json::json!({"rrsets": [{"name": name, "type": "TXT", "ttl": 120, "changetype": "REPLACE",
        "records": [{"content": "\"someone-else\"", "disabled": false}]}]});
    let put =
        pdns::api(&pdns.api_url, &pdns.api_key, "PATCH", "/api/v1/servers/localhost/zones/pdns.test.", Some(&foreign))
            .await;
    assert!(matches!(put, Ok((204, _))), "{put:?}");
    assert_eq!(txt_values(pdns.address, name).await, ["someone-else"]);

    let direct = settings(&pdns, &pdns.api_key);
    let powerdns = provider(&direct);
    let apex = TxtRecord::new("check.pdns.test", "value-for-apex", 60);
    let wildcard = TxtRecord::new("*.check.pdns.test", "value-for-wildcard", 60);
    powerdns.present(&apex).await.unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    powerdns.present(&wildcard).await.unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    assert_eq!(txt_values(pdns.address, name).await, ["someone-else", "value-for-apex", "value-for-wildcard"]);
    propagation::wait_for(&[apex.clone(), wildcard.clone()], &direct)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    powerdns.cleanup(&wildcard).await.unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    assert_eq!(
        txt_values(pdns.address, name).await,
        ["someone-else", "value-for-apex"],
        "cleanup removes only its value"
    );
    powerdns.cleanup(&wildcard).await.unwrap_or_else(|e| panic!("cleaning up twice: {e}"));
    powerdns.cleanup(&apex).await.unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    assert_eq!(txt_values(pdns.address, name).await, ["someone-else"], "the other tool's value stays");

    // The RRset of a name we were alone at is deleted, not left empty.
    let alone = TxtRecord::new("alone.pdns.test", "v", 60);
    powerdns.present(&alone).await.unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    assert_eq!(txt_values(pdns.address, &alone.fqdn).await, ["v"]);
    powerdns.cleanup(&alone).await.unwrap_or_else(|e| panic!("{e}{}", log(&pdns)));
    assert!(txt_values(pdns.address, &alone.fqdn).await.is_empty());

    // A name in no zone of this server.
    let outside = powerdns.present(&TxtRecord::new("www.not-served.test", "x", 60)).await;
    let outside = outside.map(|()| "accepted".to_owned()).unwrap_err().to_string();
    assert!(outside.contains("pdns: no zone on this server holds _acme-challenge.www.not-served.test."), "{outside}");

    // 2. A wrong API key: PowerDNS answers 401, and the error says so.
    let wrong = provider(&settings(&pdns, "not-the-key"));
    let refused = wrong.present(&TxtRecord::new("x.pdns.test", "v", 60)).await;
    let refused = refused.map(|()| "accepted".to_owned()).unwrap_err();
    let text = refused.to_string();
    assert!(!refused.is_retryable(), "{text}");
    assert!(text.starts_with("pdns: ") && text.contains("HTTP 401"), "{text}");
    assert!(text.contains("PowerDNS refused the API key"), "{text}");
    assert!(txt_values(pdns.address, "_acme-challenge.x.pdns.test.").await.is_empty());

    // 3. The whole flow: wildcard + apex in one certificate, over SDS.
    let key_file = pdns_dir.path().join("pdns-api-key");
    write(&key_file, &format!("{}\n", pdns.api_key));
    let tail = |pebble: &Pebble| {
        let resolver = resolver(pebble, "powerdns", "").replace("http_challenge = {}\n", "");
        format!(
            "{resolver}\n[resolvers.powerdns.dns_challenge]\nresolvers = [\"{a}\"]\nnameserver_port = {port}\n\
             timeout_secs = 30\ninterval_secs = 1\n\n[resolvers.powerdns.dns_challenge.pdns]\napi_url = \"{url}\"\n\
             api_key_file = \"{file}\"\n\n{cert}",
            a = pdns.address,
            port = pdns.address.port(),
            url = pdns.api_url,
            file = key_file.display(),
            cert = certificate("wild", &["*.pdns.test", "pdns.test"], "powerdns"),
        )
    };
    let options = PebbleOptions { dns_server: Some(pdns.address), ..PebbleOptions::default() };
    let mut stack = Stack::start(&options, "", tail, |c| with_secrets(c, &["wild"])).await;
    assert_wildcard_issued(&mut stack, "pdns.test", pdns.address).await;
}
