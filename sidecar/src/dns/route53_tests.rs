use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::*;
use crate::dns::mock_tests::{query, serve, Seen};

#[test]
fn signs_the_aws_sigv4_test_suite_get_vanilla_request() {
    // aws-sig-v4-test-suite "get-vanilla".
    let authorization = sign(
        "GET",
        "/",
        "",
        "example.amazonaws.com",
        "20150830T123600Z",
        b"",
        ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ("us-east-1", "service"),
    );
    assert_eq!(
        authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
}

type Sets = Arc<Mutex<BTreeMap<String, (u32, Vec<String>)>>>;

fn error(code: &str, message: &str) -> String {
    format!("<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")
}

/// Route 53's documented subset; every request's SigV4 signature is
/// recomputed from what the server received.
fn api(sets: Sets) -> impl Fn(&Seen) -> (StatusCode, String) {
    move |seen| {
        let header = |name: &str| seen.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (path, query_string) = seen.target.split_once('?').unwrap_or((seen.target.as_str(), ""));
        let expected = sign(
            seen.method.as_str(),
            path,
            query_string,
            &header("host"),
            &header("x-amz-date"),
            seen.body.as_bytes(),
            ("AKIATEST", "secret-key"),
            ("us-east-1", "route53"),
        );
        if header("authorization") != expected {
            return (
                StatusCode::FORBIDDEN,
                error("SignatureDoesNotMatch", "The request signature we calculated does not match"),
            );
        }
        let mut sets = sets.lock().unwrap();
        match (seen.method.as_str(), path) {
            ("GET", "/2013-04-01/hostedzonesbyname") => {
                let name = query(&seen.target, "dnsname").unwrap_or_default();
                let zone = if name == "example.com" {
                    "<HostedZone><Id>/hostedzone/Z1EXAMPLE</Id><Name>example.com.</Name><CallerReference>c</CallerReference></HostedZone>"
                } else {
                    // Route 53 lists from `dnsname` on: the next zone, not a match.
                    "<HostedZone><Id>/hostedzone/Z9OTHER</Id><Name>zzz.org.</Name><CallerReference>c</CallerReference></HostedZone>"
                };
                (StatusCode::OK, format!("<ListHostedZonesByNameResponse xmlns=\"{XMLNS}\"><HostedZones>{zone}</HostedZones><DNSName>{name}</DNSName><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListHostedZonesByNameResponse>"))
            }
            ("GET", "/2013-04-01/hostedzone/Z1EXAMPLE/rrset") => {
                let name = query(&seen.target, "name").unwrap_or_default().to_owned();
                let body = match sets.get(&name) {
                    Some((ttl, values)) => {
                        let records: String = values.iter().map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>")).collect();
                        format!("<ResourceRecordSet><Name>{name}</Name><Type>TXT</Type><TTL>{ttl}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet>")
                    }
                    None => String::new(),
                };
                (StatusCode::OK, format!("<ListResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ResourceRecordSets>{body}</ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>"))
            }
            ("POST", "/2013-04-01/hostedzone/Z1EXAMPLE/rrset/") => {
                assert!(seen.body.contains(XMLNS));
                let (action, name) = (first(&seen.body, "Action").unwrap_or_default(), first(&seen.body, "Name").unwrap_or_default());
                let ttl: u32 = first(&seen.body, "TTL").and_then(|t| t.parse().ok()).unwrap_or(0);
                let values = tags(&seen.body, "Value");
                match action.as_str() {
                    "UPSERT" => {
                        sets.insert(name, (ttl, values));
                    }
                    "DELETE" if sets.get(&name) == Some(&(ttl, values)) => {
                        sets.remove(&name);
                    }
                    _ => return (StatusCode::BAD_REQUEST, error("InvalidChangeBatch", "Tried to delete resource record set but it was not found")),
                }
                (StatusCode::OK, format!("<ChangeResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2026-11-28T00:00:00.000Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>"))
            }
            ("GET", "/2013-04-01/change/C2682N5HXP0BZ4") => (StatusCode::OK, format!("<GetChangeResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>INSYNC</Status></ChangeInfo></GetChangeResponse>")),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, error("InternalFailure", "boom")),
        }
    }
}

fn provider(url: &str, secret: &str) -> Route53Provider {
    Route53Provider::new(&Route53 {
        access_key_id: Some("AKIATEST".into()),
        secret_access_key: Some(secret.into()),
        secret_access_key_file: None,
        region: "us-east-1".into(),
        hosted_zone_id: None,
        endpoint: url.into(),
    })
    .unwrap()
}

#[tokio::test]
async fn values_share_the_record_set_and_cleanup_removes_only_ours() {
    let sets: Sets = Arc::new(Mutex::new(BTreeMap::new()));
    let (url, _) = serve(Arc::new(api(Arc::clone(&sets)))).await;
    let route53 = provider(&url, "secret-key");
    let (apex, wildcard) = (TxtRecord::new("example.com", "v-apex", 60), TxtRecord::new("*.example.com", "v-wild", 60));
    route53.present(&apex).await.unwrap();
    route53.present(&wildcard).await.unwrap();
    let name = "_acme-challenge.example.com.";
    assert_eq!(sets.lock().unwrap()[name], (60, vec!["\"v-apex\"".to_owned(), "\"v-wild\"".to_owned()]));
    route53.cleanup(&wildcard).await.unwrap();
    assert_eq!(sets.lock().unwrap()[name].1, ["\"v-apex\""]);
    route53.cleanup(&wildcard).await.unwrap();
    route53.cleanup(&apex).await.unwrap();
    assert!(sets.lock().unwrap().is_empty(), "the last value deletes the set");

    let forged = provider(&url, "wrong-secret");
    let err = forged.present(&apex).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    let unknown = route53.present(&TxtRecord::new("other.org", "v", 60)).await.unwrap_err();
    assert!(unknown.to_string().contains("no hosted zone"), "{unknown}");
}
