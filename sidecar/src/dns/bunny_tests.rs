use std::sync::Mutex;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

/// (record id, zone id, type, name, value, ttl)
type Records = Arc<Mutex<Vec<(u64, u64, u64, String, String, u64)>>>;

/// (id, domain), listed two per page to force `HasMoreItems`.
const ZONES: [(u64, &str); 4] = [(1, "example.com"), (2, "other.net"), (4, "myexample.com"), (3, "sub.example.com")];

/// The DNS zone API's documented subset: zones with their records, paged;
/// records added with `PUT` and deleted by id; `AccessKey`; the
/// `{"ErrorKey","Field","Message"}` error bodies.
fn api(records: Records) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let key = seen.headers.get("accesskey").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if key != "bunny-key" {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"ErrorKey":"auth.failed","Field":"","Message":"The request authorization failed"}"#.into(),
            );
        }
        let path = seen.target.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut records = records.lock().unwrap();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["dnszone"]) => {
                let page: usize = query(&seen.target, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let search = query(&seen.target, "search").unwrap_or_default();
                let found: Vec<_> = ZONES.iter().filter(|(_, domain)| domain.contains(search)).collect();
                let items: Vec<String> = found
                    .iter()
                    .skip((page - 1) * 2)
                    .take(2)
                    .map(|(id, domain)| {
                        let rows: Vec<String> = records
                            .iter()
                            .filter(|r| r.1 == *id)
                            .map(|r| {
                                format!(
                                    r#"{{"Id":{},"Type":{},"Ttl":{},"Value":{},"Name":"{}","Weight":0,"Priority":0,"Port":0,"Flags":0,"Tag":"","Accelerated":false,"Disabled":false,"Comment":null}}"#,
                                    r.0,
                                    r.2,
                                    r.5,
                                    serde_json::Value::String(r.4.clone()),
                                    r.3
                                )
                            })
                            .collect();
                        format!(
                            r#"{{"Id":{id},"Domain":"{domain}","Records":[{}],"Nameserver1":"kiki.bunny.net","Nameserver2":"coco.bunny.net","DnsSecEnabled":false}}"#,
                            rows.join(",")
                        )
                    })
                    .collect();
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"Items":[{}],"CurrentPage":{page},"TotalItems":{},"HasMoreItems":{}}}"#,
                        items.join(","),
                        found.len(),
                        page * 2 < found.len()
                    ),
                )
            }
            ("PUT", ["dnszone", zone, "records"]) => {
                let zone: u64 = zone.parse().unwrap_or(0);
                let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
                if body["Type"].as_u64().is_none() || body["Name"].as_str().is_none() {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"ErrorKey":"validation.error","Field":"Type","Message":"Invalid record type."}"#.into(),
                    );
                }
                let id = 100 + records.len() as u64;
                records.push((
                    id,
                    zone,
                    body["Type"].as_u64().unwrap_or(0),
                    body["Name"].as_str().unwrap_or_default().to_owned(),
                    body["Value"].as_str().unwrap_or_default().to_owned(),
                    body["Ttl"].as_u64().unwrap_or(0),
                ));
                (StatusCode::CREATED, format!(r#"{{"Id":{id},"Type":3,"Name":{},"Ttl":60}}"#, body["Name"]))
            }
            ("DELETE", ["dnszone", zone, "records", id]) => {
                let (zone, id): (u64, u64) = (zone.parse().unwrap_or(0), id.parse().unwrap_or(0));
                let before = records.len();
                records.retain(|r| !(r.0 == id && r.1 == zone));
                if records.len() == before {
                    return (
                        StatusCode::NOT_FOUND,
                        r#"{"ErrorKey":"not.found","Field":"id","Message":"The DNS record with the requested ID does not exist"}"#.into(),
                    );
                }
                (StatusCode::NO_CONTENT, String::new())
            }
            _ => (StatusCode::NOT_FOUND, r#"{"ErrorKey":"not.found","Field":"","Message":"Not found"}"#.into()),
        }
    }
}

fn provider(url: &str, key: &str) -> BunnyProvider {
    BunnyProvider::new(&Bunny { api_key: Some(key.into()), api_key_file: None, base_url: url.into() }).unwrap()
}

#[tokio::test]
async fn values_coexist_and_cleanup_deletes_only_ours() {
    let records: Records = Arc::new(Mutex::new(vec![
        (10, 1, 3, "_acme-challenge".into(), "someone-else".into(), 300),
        (11, 1, 0, "_acme-challenge".into(), "v-apex".into(), 300), // an A record: not ours
    ]));
    let (url, log) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let bunny = provider(&url, "bunny-key");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 10), TxtRecord::new("*.example.com", "v-wild", 120));
    bunny.present(&apex).await.unwrap();
    bunny.present(&wildcard).await.unwrap();
    {
        let records = records.lock().unwrap();
        assert_eq!(records[2], (102, 1, 3, "_acme-challenge".to_owned(), "v-apex".to_owned(), 60), "TTL at least 60");
        assert_eq!(records[3].5, 120);
    }
    bunny.cleanup(&wildcard).await.unwrap();
    bunny.cleanup(&wildcard).await.unwrap(); // gone: no error
    bunny.cleanup(&apex).await.unwrap();
    let left: Vec<u64> = records.lock().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(left, [10, 11]);
    let asked: Vec<String> = log.lock().unwrap().iter().map(|s| s.target.clone()).collect();
    assert!(asked.contains(&"/dnszone?page=2&perPage=1000&search=example.com".to_owned()), "every page read: {asked:?}");
}

#[tokio::test]
async fn the_longest_zone_suffix_wins_and_errors_name_the_cause() {
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&records)))).await;
    let bunny = provider(&url, "bunny-key");
    bunny.present(&TxtRecord::new("a.sub.example.com", "v", 60)).await.unwrap(); // sub.example.com is on page 2
    let created = records.lock().unwrap()[0].clone();
    assert_eq!((created.1, created.3.as_str()), (3, "_acme-challenge.a"));

    let unknown = bunny.present(&TxtRecord::new("example.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no DNS zone in this account holds"), "{unknown}");
    let refused = provider(&url, "wrong").present(&TxtRecord::new("example.com", "v", 60)).await.unwrap_err();
    assert!(!refused.is_retryable());
    assert_eq!(refused.to_string(), "bunny: GET /dnszone: HTTP 401: The request authorization failed (auth.failed)");
}

#[test]
fn the_secret_comes_from_legos_variable_and_never_shows_in_debug() {
    let mut settings: crate::dns::DnsChallenge = toml::from_str("[bunny]\n").unwrap();
    settings.read_secrets_from("dns", &Env::from_vars([("BUNNY_API_KEY", "prefix.bunny-secret")])).unwrap();
    settings.validate("dns").unwrap();
    let table = settings.provider_settings::<Bunny>().unwrap();
    assert_eq!(table.api_key.as_deref(), Some("prefix.bunny-secret"));
    assert!(!format!("{settings:?}").contains("bunny-secret"));
}
