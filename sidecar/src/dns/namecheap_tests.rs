use std::collections::BTreeMap;
use std::sync::Mutex;

use http::StatusCode;

use super::*;
use crate::dns::mock_tests::{serve, Seen};

/// The domains in the account: (SLD, TLD) -> (EmailType, hosts as
/// (Name, Type, Address, MXPref, TTL)).
type Domains = Arc<Mutex<BTreeMap<(String, String), (String, Vec<[String; 5]>)>>>;

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn response(status: &str, command: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<ApiResponse Status="{status}" xmlns="http://api.namecheap.com/xml.response">
  {inner}
  <Warnings />
  <RequestedCommand>{command}</RequestedCommand>
  <Server>PHX01SBAPI01</Server>
  <GMTTimeDifference>--5:00</GMTTimeDifference>
  <ExecutionTime>0.1</ExecutionTime>
</ApiResponse>"#
    )
}

fn error(number: &str, text: &str) -> String {
    response("ERROR", "", &format!(r#"<Errors><Error Number="{number}">{text}</Error></Errors>"#))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
}

/// The XML API's documented subset: every call a form POST to
/// `/xml.response` carrying ApiUser, ApiKey, UserName, ClientIp and Command;
/// errors as `Status="ERROR"` with HTTP 200; `getHosts` answers every host
/// record of the domain and `setHosts` replaces them all. Also the IP echo.
fn api(domains: Domains) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        if seen.target == "/getip" {
            return (StatusCode::OK, "203.0.113.7\n".into());
        }
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/xml.response"));
        let form: BTreeMap<String, String> =
            seen.body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect();
        let get = |key: &str| form.get(key).cloned().unwrap_or_default();
        if get("ApiUser") != "nc-user" || get("UserName") != "nc-user" || get("ApiKey") != "nc-key" {
            return (StatusCode::OK, error("1011102", "API Key is invalid or API access has not been enabled"));
        }
        if get("ClientIp") != "203.0.113.7" {
            return (StatusCode::OK, error("1011150", &format!("Invalid request IP: {}", get("ClientIp"))));
        }
        let mut domains = domains.lock().unwrap();
        let Some((email_type, hosts)) = domains.get_mut(&(get("SLD"), get("TLD"))) else {
            return (StatusCode::OK, error("2019166", "Domain not found"));
        };
        let domain = format!("{}.{}", get("SLD"), get("TLD"));
        match get("Command").as_str() {
            "namecheap.domains.dns.getHosts" => {
                let rows: String = hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        format!(
                            r#"<host HostId="{}" Name="{}" Type="{}" Address="{}" MXPref="{}" TTL="{}" AssociatedAppTitle="" FriendlyName="" IsActive="true" IsDDNSEnabled="false" />"#,
                            1000 + i,
                            escape(&h[0]),
                            h[1],
                            escape(&h[2]),
                            h[3],
                            h[4]
                        )
                    })
                    .collect();
                let inner = format!(
                    r#"<Errors /><CommandResponse Type="namecheap.domains.dns.getHosts"><DomainDNSGetHostsResult Domain="{domain}" EmailType="{email_type}" IsUsingOurDNS="true">{rows}</DomainDNSGetHostsResult></CommandResponse>"#
                );
                (StatusCode::OK, response("OK", "namecheap.domains.dns.getHosts", &inner))
            }
            "namecheap.domains.dns.setHosts" => {
                // The mail setting goes with the records.
                *email_type = get("EmailType");
                *hosts = (1..)
                    .map_while(|n| {
                        form.get(&format!("HostName{n}")).map(|name| {
                            let field = |key: &str| get(&format!("{key}{n}"));
                            [name.clone(), field("RecordType"), field("Address"), field("MXPref"), field("TTL")]
                        })
                    })
                    .collect();
                let inner = format!(
                    r#"<Errors /><CommandResponse Type="namecheap.domains.dns.setHosts"><DomainDNSSetHostsResult Domain="{domain}" IsSuccess="true"><Warnings /></DomainDNSSetHostsResult></CommandResponse>"#
                );
                (StatusCode::OK, response("OK", "namecheap.domains.dns.setHosts", &inner))
            }
            other => (StatusCode::OK, error("1010101", &format!("Invalid command: {other}"))),
        }
    }
}

fn host(name: &str, kind: &str, address: &str, ttl: &str) -> [String; 5] {
    [name.into(), kind.into(), address.into(), "10".into(), ttl.into()]
}

fn settings(url: &str, key: &str, client_ip: Option<&str>) -> Namecheap {
    Namecheap {
        api_user: Some("nc-user".into()),
        api_key: Some(key.into()),
        api_key_file: None,
        client_ip: client_ip.map(Into::into),
        client_ip_url: format!("{url}/getip"),
        base_url: format!("{url}/xml.response"),
    }
}

#[tokio::test]
async fn every_unrelated_host_record_survives_and_cleanup_removes_only_ours() {
    let unrelated = vec![
        host("@", "A", "192.0.2.1", "1800"),
        host("www", "CNAME", "example.com.", "1799"),
        host("@", "MX", "mail.example.com.", "1800"),
        host("@", "TXT", "v=spf1 include:_spf.example.com ~all & \"quoted\"", "1799"),
        host("_acme-challenge", "TXT", "someone-else", "60"),
    ];
    let domains: Domains = Arc::new(Mutex::new(BTreeMap::from([
        (("example".into(), "com".into()), ("MX".into(), unrelated.clone())),
        (("example".into(), "co.uk".into()), ("FWD".into(), Vec::new())),
    ])));
    let (url, log) = serve(Arc::new(api(Arc::clone(&domains)))).await;
    let namecheap = NamecheapProvider::new(&settings(&url, "nc-key", None)).unwrap();
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 10), TxtRecord::new("*.example.com", "v-wild", 300));
    namecheap.present(&apex).await.unwrap();
    namecheap.present(&wildcard).await.unwrap();
    {
        let domains = domains.lock().unwrap();
        let (email_type, hosts) = &domains[&("example".to_owned(), "com".to_owned())];
        assert_eq!(email_type, "MX", "the mail setting is written back");
        assert_eq!(hosts[..5], unrelated[..], "every other record written back as it was");
        assert_eq!(hosts[5..], [host("_acme-challenge", "TXT", "v-apex", "60"), host("_acme-challenge", "TXT", "v-wild", "300")]);
    }
    namecheap.cleanup(&wildcard).await.unwrap();
    namecheap.cleanup(&wildcard).await.unwrap(); // gone: no error, no write
    namecheap.cleanup(&apex).await.unwrap();
    assert_eq!(domains.lock().unwrap()[&("example".to_owned(), "com".to_owned())].1, unrelated);
    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|s| s.target == "/getip").count(), 1, "the public IP is asked once");
    assert_eq!(log.iter().filter(|s| s.body.contains("setHosts")).count(), 4);
}

#[tokio::test]
async fn the_longest_domain_suffix_wins_and_errors_name_the_cause() {
    let domains: Domains = Arc::new(Mutex::new(BTreeMap::from([(
        ("example".into(), "co.uk".into()),
        ("FWD".into(), vec![host("@", "URL", "https://example.org/?a=1&b=2", "1800")]),
    )])));
    let (url, _) = serve(Arc::new(api(Arc::clone(&domains)))).await;
    let namecheap = NamecheapProvider::new(&settings(&url, "nc-key", Some("203.0.113.7"))).unwrap();
    namecheap.present(&TxtRecord::new("a.example.co.uk", "v", 60)).await.unwrap();
    assert_eq!(
        domains.lock().unwrap()[&("example".to_owned(), "co.uk".to_owned())].1,
        [host("@", "URL", "https://example.org/?a=1&b=2", "1800"), host("_acme-challenge.a", "TXT", "v", "60")]
    );
    let unknown = namecheap.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no domain in this account holds"), "{unknown}");

    let refused = NamecheapProvider::new(&settings(&url, "wrong", Some("203.0.113.7"))).unwrap();
    let err = refused.present(&TxtRecord::new("example.co.uk", "v", 60)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "namecheap: namecheap.domains.dns.getHosts: HTTP 200 with Status=\"ERROR\": API Key is invalid or API access has not been enabled [1011102]"
    );
    let wrong_ip = NamecheapProvider::new(&settings(&url, "nc-key", Some("198.51.100.1"))).unwrap();
    let err = wrong_ip.cleanup(&TxtRecord::new("example.co.uk", "v", 60)).await.unwrap_err();
    assert!(err.to_string().contains("Invalid request IP: 198.51.100.1 [1011150]"), "{err}");
}

#[test]
fn user_and_key_come_from_legos_variables_and_the_key_never_shows_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[namecheap]\n").unwrap();
    let env = Env::from_vars([("NAMECHEAP_API_USER", "alice"), ("NAMECHEAP_API_KEY", "nc-key-secret")]);
    settings.read_secrets_from("dns", &env).unwrap();
    settings.validate("dns").unwrap();
    let namecheap = settings.provider_settings::<Namecheap>().unwrap();
    assert_eq!((namecheap.api_user.as_deref(), namecheap.api_key.as_deref()), (Some("alice"), Some("nc-key-secret")));
    let debug = format!("{settings:?}");
    assert!(debug.contains("alice") && !debug.contains("nc-key-secret"), "{debug}");
    let bad_ip: crate::dns::DnsChallenge =
        toml::from_str("[namecheap]\napi_user = \"a\"\napi_key = \"k\"\nclient_ip = \"home\"\n").unwrap();
    assert_eq!(bad_ip.validate("dns").unwrap_err().field, "dns.namecheap.client_ip");
}

#[tokio::test]
async fn two_names_of_one_domain_presented_at_once_both_stay() {
    let domains: Domains =
        Arc::new(Mutex::new(BTreeMap::from([(("example".into(), "com".into()), ("MX".into(), Vec::new()))])));
    let (url, _) = serve(Arc::new(api(Arc::clone(&domains)))).await;
    let namecheap = NamecheapProvider::new(&settings(&url, "nc-key", Some("203.0.113.7"))).unwrap();
    let (a, b) = (TxtRecord::new("a.example.com", "v-a", 60), TxtRecord::new("b.example.com", "v-b", 60));
    let (first, second) = tokio::join!(namecheap.present(&a), namecheap.present(&b));
    first.unwrap();
    second.unwrap();
    let hosts = domains.lock().unwrap()[&("example".to_owned(), "com".to_owned())].1.clone();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
}
